-- The HTTP API's tables: bearer tokens and idempotent POSTs.

-- Bearer tokens. The token itself is shown once and never stored: only the
-- SHA-256 of its secret part. owner NULL is the admin scope; otherwise the
-- token sees only that owner's endpoints, messages and deliveries.
CREATE TABLE outhook.api_token (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL DEFAULT '',
    owner       text,
    secret_hash bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);

-- A POST with an Idempotency-Key, answered once: a retry with the same key
-- (in the same scope) gets the first answer. status NULL while the first
-- request is still running.
CREATE TABLE outhook.idempotency (
    scope       text NOT NULL,
    key         text NOT NULL,
    fingerprint bytea NOT NULL,
    status      smallint,
    body        bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON outhook.idempotency (created_at);

-- Listing an endpoint's deliveries newest first, and the per-endpoint stats.
CREATE INDEX delivery_endpoint ON outhook.delivery (endpoint_id, id);
-- Counting dead letters (the metrics' gauge, the portal) without a scan:
-- dead letters are few, so this index is small.
CREATE INDEX delivery_dead ON outhook.delivery (id) WHERE status = 2;
-- Listing deliveries in a time window. The outbox is append-only and its
-- created_at follows insertion order, so a BRIN index finds a window's
-- messages for a few pages read, at almost no cost to inserts.
CREATE INDEX outbox_created_brin ON outhook.outbox USING brin (created_at);
