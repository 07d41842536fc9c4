-- Poison rows: a delivery whose worker dies while holding it (the payload
-- crashes it, or it is killed) comes back when its lease runs out, and
-- would be claimed, and kill its worker, again and again. `leased` says a
-- claim holds the row and no result, release or deferral has come back
-- yet; a claim that finds it still set counts a lost lease. After the
-- worker's limit of lost leases (`--max-lease-losses`) the claim hands the
-- row over without its payload and the worker writes it off as a dead
-- letter with that reason (outcome `lease_lost`). A re-queue starts the
-- count over. Constant defaults: adding the columns rewrites nothing.
ALTER TABLE outhook.delivery
    ADD COLUMN leased boolean NOT NULL DEFAULT false,
    ADD COLUMN lease_losses smallint NOT NULL DEFAULT 0;
