-- Fairness between endpoints. Claims walk `delivery_due` in due order, so
-- one endpoint's backlog (a slow customer's server, 3,000 queued) fills
-- every slot of a worker before anyone else's newer rows are reached. A
-- worker whose endpoint holds more than its share of the slots claims the
-- other endpoints' due rows first, found through this index: one probe per
-- endpoint with rows waiting (a skip scan), then each endpoint's oldest due
-- rows in order. See `db/delivery/claim.rs`.
--
-- The key and the predicate are written so that only the fair claim's
-- queries can use this index, and those queries no other. The key is the
-- endpoint id's bytes: `delivery_endpoint`, on the id itself, would read
-- an endpoint's whole history for a probe. The predicate says
-- `status::bigint = 0`, which no other statement says: the plain claim
-- (`status = 0`) and the completion (`status::integer = 0`) cannot use this
-- index, and the fair claim cannot use `delivery_due`. With statistics from
-- a quiet queue the planner otherwise mixed them up, reading and sorting
-- every due row on every claim.
--
-- Rows in flight (`leased`) are left out: a claim's update adds no entry,
-- so a delivery costs this index one entry, at enqueue (and one per retry).
CREATE INDEX delivery_pending_endpoint
    ON outhook.delivery (uuid_send(endpoint_id), next_attempt_at)
    WHERE status::bigint = 0 AND NOT leased;
