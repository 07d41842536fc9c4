-- A disabled endpoint holds its deliveries instead of losing them: a held
-- delivery is pending with next_attempt_at = 'infinity', which the claim
-- never reaches (it reads the due index up to now()). Enabling the
-- endpoint makes them due again, in order. Messages fanned out while an
-- endpoint is disabled are held too, rather than skipped.

ALTER TABLE outhook.endpoint
    ADD COLUMN disabled_at timestamptz,
    -- When it was last enabled again: the failing window starts no earlier.
    ADD COLUMN enabled_at timestamptz,
    -- Disable after this many seconds of failures with no success; NULL:
    -- the worker's default (5 days), 0: never.
    ADD COLUMN auto_disable_after_secs integer CHECK (auto_disable_after_secs >= 0);
UPDATE outhook.endpoint SET disabled_at = updated_at WHERE NOT enabled;

-- The first failure after the last success: the start of the failing window.
ALTER TABLE outhook.endpoint_health ADD COLUMN failing_since timestamptz;

-- Fan-out now reaches disabled endpoints too, so the owner index covers
-- every endpoint.
DROP INDEX outhook.endpoint_owner;
CREATE INDEX endpoint_owner ON outhook.endpoint (owner);

CREATE OR REPLACE FUNCTION outhook.outbox_fan_out() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outhook.delivery (message_id, endpoint_id, next_attempt_at)
    SELECT n.id, e.id, CASE WHEN e.enabled THEN now() ELSE 'infinity' END
    FROM new_rows n
    JOIN outhook.endpoint e
      ON n.endpoint_id IS NULL AND e.owner = n.owner
     AND (cardinality(e.event_types) = 0 OR n.event_type = ANY (e.event_types))
    UNION ALL
    SELECT n.id, n.endpoint_id, now() FROM new_rows n WHERE n.endpoint_id IS NOT NULL;
    IF coalesce(current_setting('outhook.skip_notify', true), '') <> 'on' THEN
        PERFORM pg_notify('outhook_delivery', '');
    END IF;
    RETURN NULL;
END;
$$;
