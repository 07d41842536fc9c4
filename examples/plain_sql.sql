-- Enqueueing from any language: one INSERT in the application's own
-- transaction. The payload is kept byte for byte (a `json` column); text that
-- is not JSON is rejected here, at insert time.

BEGIN;
-- ... the application's own writes ...

-- Fan out to every enabled endpoint of an owner subscribed to the type:
INSERT INTO outhook.outbox (event_type, payload, owner)
VALUES ('check.completed', '{"event": "check.completed", "check": {"id": "abcdef"}}', 'customer_42');

-- Or to one endpoint, idempotently (a repeated event_id is ignored):
INSERT INTO outhook.outbox (event_type, payload, endpoint_id, event_id)
VALUES ('item.sold', '{"event": "item.sold", "item_id": "PART_001"}', :'endpoint_id', 'sale-2026-0001')
ON CONFLICT DO NOTHING;

-- Optional: skip the wake-up NOTIFY for this transaction (workers still poll).
-- SET LOCAL outhook.skip_notify = 'on';
COMMIT;
