-- Busy polling. A transaction that has called pg_notify takes a
-- database-wide lock at commit and holds it through the commit's WAL flush,
-- so notifying producers commit one at a time (a few thousand single-event
-- transactions a second at most). When producers queue for that lock, a
-- claimer stops waiting for notifications and polls instead, and says so
-- here: the epoch millisecond until which some claimer is polling.
-- Producers read it (sequences are read outside MVCC, so they see the
-- latest value at once) and skip the notification while it lies ahead.
--
-- No wake-up is lost: a producer reads this after its rows are inserted,
-- so it holds a transaction id by then. A claimer that stops polling first
-- lets the value run out, then takes a snapshot and keeps polling until
-- every transaction running in it has ended; a producer that saw the value
-- ahead of the clock is one of those, or committed before the snapshot.
CREATE SEQUENCE outhook.claimer_polling_until MINVALUE 0 START WITH 0 NO CYCLE;

-- The outbox's hint to idle workers: a notification unless a claimer is
-- polling anyway. Identical notifications fold into one per transaction;
-- SET LOCAL outhook.skip_notify = 'on' (or ALTER ROLE ... SET) switches it
-- off. SECURITY DEFINER: a producer's role needs no right on the sequence.
CREATE FUNCTION outhook.wake_workers() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(current_setting('outhook.skip_notify', true), '') = 'on' THEN
        RETURN;
    END IF;
    IF coalesce(pg_sequence_last_value('outhook.claimer_polling_until'), 0)
       > (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
        RETURN;
    END IF;
    PERFORM pg_notify('outhook_delivery', '');
END;
$$;

-- The fan-out as before, waking workers through wake_workers().
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
    PERFORM outhook.wake_workers();
    RETURN NULL;
END;
$$;
