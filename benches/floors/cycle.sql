-- pgbench script: the dispatcher's database work for one batch of 256
-- deliveries, without HTTP. Claim exactly as `delivery_claim` does, then
-- complete them as `delivery_complete_many` does (status update + one
-- attempt row each, with realistic header JSON).
WITH picked AS MATERIALIZED (
    SELECT id FROM outhook.delivery
    WHERE status = 0 AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT 256
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    UPDATE outhook.delivery d
    SET next_attempt_at = now() + make_interval(secs => 60), attempts = d.attempts + 1, lease = d.lease + 1
    FROM picked WHERE d.id = picked.id
    RETURNING d.id, d.message_id
), rows AS (
    SELECT c.id, o.uid, o.payload::text AS payload FROM claimed c JOIN outhook.outbox o ON o.id = c.message_id
)
SELECT coalesce(string_agg(id::text, ','), '0') AS ids FROM rows \gset
WITH updated AS (
    UPDATE outhook.delivery d SET status = 1, finished_at = now(), last_error = NULL
    WHERE d.id = ANY (ARRAY[:ids]::bigint[]) AND d.status = 0
    RETURNING d.id, d.attempts
)
INSERT INTO outhook.attempt (delivery_id, attempt, started_at, duration_ms, url, request_headers, body_sha256,
                             status_code, response_headers, response_body, response_truncated, outcome)
SELECT id, attempts, now(), 1, 'http://127.0.0.1:9/e0',
       '{"content-type":"application/json","user-agent":"Outhook/0.1.0","webhook-id":"msg_0123456789abcdef0123456789abcdef","webhook-timestamp":"1700000000","webhook-signature":"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}'::jsonb,
       sha256('x'), 200, '{"content-length":"0","date":"Sun, 22 Nov 2026 14:00:00 GMT"}'::jsonb, '', false, 'delivered'
FROM updated;
