-- Oversized events are refused at the door, on every path: the API, the
-- CLI, the library and a plain INSERT all pass through this trigger. The
-- limit lives in the database, so a producer in any language meets it:
--
--     UPDATE outhook.ingest_setting SET max_payload_bytes = 1048576;
--
-- It matches the worker's default `--max-request-bytes` (4 MiB); keep the
-- worker's at least as large, or events the door let in become dead
-- letters unsent. Each payload is measured once, in the statement.
CREATE TABLE outhook.ingest_setting (
    one               boolean PRIMARY KEY DEFAULT true CHECK (one),
    max_payload_bytes integer NOT NULL DEFAULT 4194304
                      CHECK (max_payload_bytes BETWEEN 1 AND 268435456)
);
INSERT INTO outhook.ingest_setting DEFAULT VALUES;

CREATE FUNCTION outhook.outbox_payload_limit() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    largest bigint;
    lim integer := (SELECT max_payload_bytes FROM outhook.ingest_setting);
BEGIN
    SELECT max(octet_length(n.payload::text)) INTO largest FROM new_rows n;
    IF largest > lim THEN
        RAISE EXCEPTION 'payload of % bytes exceeds the limit of % bytes', largest, lim
            USING ERRCODE = 'check_violation', CONSTRAINT = 'outbox_payload_size',
                  HINT = 'send less, or raise outhook.ingest_setting.max_payload_bytes (and the worker''s --max-request-bytes)';
    END IF;
    RETURN NULL;
END;
$$;

-- Named to fire before `outbox_fan_out` (triggers fire in name order), so
-- a refused statement does no fan-out first.
CREATE TRIGGER outbox_a_payload_limit
    AFTER INSERT ON outhook.outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outhook.outbox_payload_limit();
