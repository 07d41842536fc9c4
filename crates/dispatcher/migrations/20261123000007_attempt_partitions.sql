-- The delivery log, partitioned by day of started_at, so retention drops
-- whole days instead of deleting rows (no bloat, no long DELETEs beside the
-- hot path). Partitions are named attempt_pYYYYMMDD; workers create them a
-- week ahead (outhook.attempt_partitions_ensure), and a default partition
-- catches anything outside them, so an insert never fails.
ALTER TABLE outhook.attempt RENAME TO attempt_unpartitioned;
ALTER INDEX outhook.attempt_delivery RENAME TO attempt_unpartitioned_delivery;
ALTER TABLE outhook.attempt_unpartitioned ALTER COLUMN id DROP IDENTITY IF EXISTS;

CREATE SEQUENCE outhook.attempt_id_seq AS bigint;
SELECT setval('outhook.attempt_id_seq', coalesce((SELECT max(id) FROM outhook.attempt_unpartitioned), 0) + 1, false);

CREATE TABLE outhook.attempt (
    id                 bigint NOT NULL DEFAULT nextval('outhook.attempt_id_seq'),
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
) PARTITION BY RANGE (started_at);
ALTER SEQUENCE outhook.attempt_id_seq OWNED BY outhook.attempt.id;
CREATE INDEX attempt_delivery ON outhook.attempt (delivery_id, attempt);
CREATE TABLE outhook.attempt_default PARTITION OF outhook.attempt DEFAULT;

-- Creates the daily partitions from `first` to `last` (dates, inclusive)
-- that do not exist yet. A day whose rows already sit in the default
-- partition is skipped (PostgreSQL refuses it) and stays there.
CREATE FUNCTION outhook.attempt_partitions_ensure(first date, last date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date := first;
    made integer := 0;
    name text;
BEGIN
    WHILE d <= last LOOP
        name := 'attempt_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass('outhook.' || name) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE outhook.%I PARTITION OF outhook.attempt FOR VALUES FROM (%L) TO (%L)',
                               name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
                made := made + 1;
            EXCEPTION WHEN check_violation OR invalid_object_definition THEN
                RAISE NOTICE 'attempt partition % skipped: %', name, SQLERRM;
            END;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN made;
END;
$$;

-- The daily partitions that end at or before `before`, oldest first: what
-- retention drops. (The worker empties each with TRUNCATE, which locks only
-- that partition, then drops it, which locks the parent only for a moment,
-- each in its own transaction.)
CREATE FUNCTION outhook.attempt_partitions_before(before timestamptz) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'outhook.attempt'::regclass AND c.relname ~ '^attempt_p[0-9]{8}$'
      AND (to_date(substr(c.relname, 10), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= before
    ORDER BY c.relname
$$;

-- The days the existing rows need, and a week ahead; then the rows.
SELECT outhook.attempt_partitions_ensure(d, d)
FROM (SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date AS d FROM outhook.attempt_unpartitioned) days;
SELECT outhook.attempt_partitions_ensure((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 7);
INSERT INTO outhook.attempt SELECT * FROM outhook.attempt_unpartitioned;
DROP TABLE outhook.attempt_unpartitioned;
