-- Ordered (FIFO) endpoints: deliveries are attempted one at a time in
-- outbox order. Only the head is pending (status 0); the others wait with
-- status 3, which the claim never reads (its index holds status 0 only).
-- When the head is delivered or dead, the completion promotes the next.
-- Inserting and promoting for one ordered endpoint take the same advisory
-- lock, so "is there a head already?" is always answered after the other
-- side committed.
ALTER TABLE outhook.endpoint ADD COLUMN fifo boolean NOT NULL DEFAULT false;
CREATE INDEX delivery_queued ON outhook.delivery (endpoint_id, id) WHERE status = 3;
-- Each ordered endpoint's current head, so "is there a head?" is a key
-- lookup rather than a walk over the endpoint's whole history.
CREATE TABLE outhook.fifo_head (
    endpoint_id uuid PRIMARY KEY,
    delivery_id bigint NOT NULL
);
-- Lets fan-out see in one probe that no endpoint is ordered (the usual case).
CREATE INDEX endpoint_fifo ON outhook.endpoint (id) WHERE fifo;

CREATE OR REPLACE FUNCTION outhook.outbox_fan_out() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    f uuid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM outhook.endpoint WHERE fifo) THEN
        -- No ordered endpoint: the plain fan-out, as before.
        INSERT INTO outhook.delivery (message_id, endpoint_id, next_attempt_at)
        SELECT n.id, e.id, CASE WHEN e.enabled THEN now() ELSE 'infinity' END
        FROM new_rows n
        JOIN outhook.endpoint e
          ON n.endpoint_id IS NULL AND e.owner = n.owner
         AND (cardinality(e.event_types) = 0 OR n.event_type = ANY (e.event_types))
        UNION ALL
        SELECT n.id, n.endpoint_id, now() FROM new_rows n WHERE n.endpoint_id IS NOT NULL;
    ELSE
        FOR f IN
            SELECT DISTINCT e.id FROM new_rows n
            JOIN outhook.endpoint e
              ON e.fifo AND (e.id = n.endpoint_id
                             OR (n.endpoint_id IS NULL AND e.owner = n.owner
                                 AND (cardinality(e.event_types) = 0 OR n.event_type = ANY (e.event_types))))
            ORDER BY e.id
        LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('outhook.fifo:' || f::text, 0));
        END LOOP;
        WITH targets AS (
            SELECT n.id AS message_id, e.id AS endpoint_id, e.enabled, e.fifo
            FROM new_rows n
            JOIN outhook.endpoint e
              ON n.endpoint_id IS NULL AND e.owner = n.owner
             AND (cardinality(e.event_types) = 0 OR n.event_type = ANY (e.event_types))
            UNION ALL
            SELECT n.id, n.endpoint_id, true, coalesce(e.fifo, false)
            FROM new_rows n LEFT JOIN outhook.endpoint e ON e.id = n.endpoint_id
            WHERE n.endpoint_id IS NOT NULL
        ), ranked AS (
            SELECT t.*, row_number() OVER (PARTITION BY t.endpoint_id ORDER BY t.message_id) AS rn FROM targets t
        ), inserted AS (
            INSERT INTO outhook.delivery (message_id, endpoint_id, next_attempt_at, status)
            SELECT r.message_id, r.endpoint_id,
                   CASE WHEN r.enabled THEN now() ELSE 'infinity' END,
                   -- Behind a live head (pending), or not the first of this batch: wait.
                   CASE WHEN r.fifo AND (r.rn > 1 OR EXISTS (
                            SELECT 1 FROM outhook.fifo_head h JOIN outhook.delivery d ON d.id = h.delivery_id
                            WHERE h.endpoint_id = r.endpoint_id AND d.status = 0))
                        THEN 3 ELSE 0 END
            FROM ranked r
            RETURNING id, endpoint_id, status
        )
        INSERT INTO outhook.fifo_head (endpoint_id, delivery_id)
        SELECT i.endpoint_id, i.id FROM inserted i
        JOIN outhook.endpoint e ON e.id = i.endpoint_id AND e.fifo
        WHERE i.status = 0
        ON CONFLICT (endpoint_id) DO UPDATE SET delivery_id = excluded.delivery_id;
    END IF;
    IF coalesce(current_setting('outhook.skip_notify', true), '') <> 'on' THEN
        PERFORM pg_notify('outhook_delivery', '');
    END IF;
    RETURN NULL;
END;
$$;

-- Makes the oldest waiting delivery of each given ordered endpoint its head,
-- where it has none (called under each endpoint's advisory lock).
CREATE FUNCTION outhook.fifo_promote(endpoints uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    f uuid;
    n integer := 0;
    next_id bigint;
BEGIN
    FOR f IN SELECT DISTINCT x FROM unnest(endpoints) x ORDER BY x LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('outhook.fifo:' || f::text, 0));
        CONTINUE WHEN EXISTS (SELECT 1 FROM outhook.fifo_head h JOIN outhook.delivery d ON d.id = h.delivery_id
                              WHERE h.endpoint_id = f AND d.status = 0);
        SELECT min(q.id) INTO next_id FROM outhook.delivery q WHERE q.endpoint_id = f AND q.status = 3;
        CONTINUE WHEN next_id IS NULL;
        UPDATE outhook.delivery
        SET status = 0, cycle_started_at = now(),
            next_attempt_at = CASE WHEN (SELECT enabled FROM outhook.endpoint WHERE id = f) THEN now() ELSE 'infinity' END
        WHERE id = next_id;
        INSERT INTO outhook.fifo_head (endpoint_id, delivery_id) VALUES (f, next_id)
        ON CONFLICT (endpoint_id) DO UPDATE SET delivery_id = excluded.delivery_id;
        n := n + 1;
    END LOOP;
    -- The new head is due now: wake the workers rather than wait for a poll.
    IF n > 0 THEN
        PERFORM pg_notify('outhook_delivery', '');
    END IF;
    RETURN n;
END;
$$;
