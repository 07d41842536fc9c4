-- Fairness between endpoints. Claims walk `delivery_due` in due order, so
-- one endpoint's backlog (a slow customer's server, 3,000 queued) fills
-- every slot of a worker before anyone else's newer rows are reached. A
-- worker whose endpoint holds more than its share of the slots claims the
-- other endpoints' due rows first, found through this index: one probe per
-- endpoint with pending rows (a skip scan over `endpoint_id`), then each
-- endpoint's oldest due rows in order. See `db/delivery/claim.rs`.
--
-- `endpoint_id IS NOT NULL` (always true) keeps the index out of the plain
-- claim's reach: a query can use it only if it says something of
-- `endpoint_id`. Without it, statistics from a quiet queue led the planner
-- to read every due row through this index and sort them, on every claim.
CREATE INDEX delivery_pending_endpoint ON outhook.delivery (endpoint_id, next_attempt_at)
    WHERE status = 0 AND endpoint_id IS NOT NULL;
