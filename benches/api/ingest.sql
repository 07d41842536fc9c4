-- pgbench script: the SQL path the API's POST /v1/messages stands beside,
-- one outbox row per transaction with the same 1 KiB payload.
INSERT INTO outhook.outbox (event_type, payload, owner)
VALUES ('item.sold', :'payload', :'owner');
