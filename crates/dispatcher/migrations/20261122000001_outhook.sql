-- Outhook's schema. Everything lives in the `outhook` schema, and Outhook's
-- own migration bookkeeping is outhook._migrations, so nothing collides with
-- the host application's tables or its sqlx migrations.

-- The provider's RSA key pairs, for schemes that sign with one (cometh).
CREATE TABLE outhook.signing_key (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL UNIQUE,
    algorithm       text NOT NULL DEFAULT 'rsa-sha256',
    private_key_pem text NOT NULL,
    public_key_pem  text NOT NULL,
    public_key_jwk  jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Where webhooks go: one row per customer URL.
CREATE TABLE outhook.endpoint (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner           text NOT NULL,                      -- the provider's customer, vendor or tenant id
    url             text NOT NULL,
    scheme          text NOT NULL,                      -- a signer scheme name, or 'hmac' with scheme_settings
    scheme_settings jsonb,
    event_types     text[] NOT NULL DEFAULT '{}',       -- empty: every event type
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    headers         jsonb NOT NULL DEFAULT '{}',        -- static headers added to every request
    description     text NOT NULL DEFAULT '',
    signing_key_id  uuid REFERENCES outhook.signing_key (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (enabled OR disabled_reason IS NOT NULL)
);
CREATE INDEX endpoint_owner ON outhook.endpoint (owner) WHERE enabled;

-- Shared secrets; every unexpired one signs (rotation).
CREATE TABLE outhook.endpoint_secret (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES outhook.endpoint (id) ON DELETE CASCADE,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);
CREATE INDEX endpoint_secret_endpoint ON outhook.endpoint_secret (endpoint_id);

-- The insertion interface, and the message store: an outbox row is the
-- message. `json`, not `jsonb`: it keeps the provider's bytes and key order,
-- and still rejects text that is not JSON at insert time.
CREATE TABLE outhook.outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid         uuid NOT NULL DEFAULT gen_random_uuid(),  -- sent as the message id (webhook-id), stable across retries
    event_id    text UNIQUE,                              -- optional idempotency key: a second insert conflicts
    event_type  text NOT NULL CHECK (event_type <> ''),
    payload     json NOT NULL,
    owner       text,                                     -- fan out to this owner's subscribed endpoints ...
    endpoint_id uuid,                                     -- ... or to this one endpoint (no FK: an unknown id is logged, not refused)
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (owner IS NOT NULL OR endpoint_id IS NOT NULL)
);

-- One row per message and endpoint: the hot, narrow queue table.
-- status: 0 pending, 1 delivered, 2 dead.
-- next_attempt_at is both the retry time and, while a worker holds the row,
-- its lease expiry; `lease` is bumped by every claim and fences completions.
CREATE TABLE outhook.delivery (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id      bigint NOT NULL,
    endpoint_id     uuid NOT NULL,
    status          smallint NOT NULL DEFAULT 0,
    attempts        integer NOT NULL DEFAULT 0,
    attempts_base   integer NOT NULL DEFAULT 0,           -- attempts before the last re-queue
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease           bigint NOT NULL DEFAULT 0,
    cycle_started_at timestamptz NOT NULL DEFAULT now(),  -- for the retry age limit; reset by a re-queue
    finished_at     timestamptz,
    last_error      text
) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
        autovacuum_analyze_scale_factor = 0.02);
-- The claim index holds pending rows only, so it stays as small as the backlog.
CREATE INDEX delivery_due ON outhook.delivery (next_attempt_at) WHERE status = 0;
CREATE INDEX delivery_message ON outhook.delivery (message_id);

-- The delivery log: one row per HTTP attempt (or per refusal to attempt).
CREATE TABLE outhook.attempt (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id        bigint NOT NULL,
    attempt            integer NOT NULL,
    started_at         timestamptz NOT NULL,
    duration_ms        integer NOT NULL,
    url                text NOT NULL,
    request_headers    jsonb NOT NULL,
    body_sha256        bytea,
    status_code        smallint,
    response_headers   jsonb,
    response_body      text,
    response_truncated boolean NOT NULL DEFAULT false,
    outcome            text NOT NULL,
    error              text,
    next_attempt_at    timestamptz
);
CREATE INDEX attempt_delivery ON outhook.attempt (delivery_id, attempt);

-- Fan-out, in the inserting transaction and for plain-SQL inserts too: one
-- statement per INSERT statement, whatever its row count.
CREATE FUNCTION outhook.outbox_fan_out() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outhook.delivery (message_id, endpoint_id)
    SELECT n.id, e.id
    FROM new_rows n
    JOIN outhook.endpoint e
      ON n.endpoint_id IS NULL AND e.owner = n.owner AND e.enabled
     AND (cardinality(e.event_types) = 0 OR n.event_type = ANY (e.event_types))
    UNION ALL
    SELECT n.id, n.endpoint_id FROM new_rows n WHERE n.endpoint_id IS NOT NULL;
    -- A hint to idle workers. Identical notifications fold into one per
    -- transaction; SET LOCAL outhook.skip_notify = 'on' (or ALTER ROLE ... SET)
    -- switches it off.
    IF coalesce(current_setting('outhook.skip_notify', true), '') <> 'on' THEN
        PERFORM pg_notify('outhook_delivery', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_fan_out
    AFTER INSERT ON outhook.outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outhook.outbox_fan_out();
