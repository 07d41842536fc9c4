-- A re-queue on an ordered endpoint (a retry, a recovery, a replay) takes
-- its turn. Before, it made the delivery pending at once, beside the
-- endpoint's head, so both could be attempted together and out of order.
-- Now, under the endpoint's lock, a re-queued delivery that is not the
-- endpoint's pending head waits (status 3); being older than what arrived
-- after it, it is the next one promoted. An endpoint left with no pending
-- head gets one at once.
CREATE FUNCTION outhook.fifo_requeued(ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    f uuid;
    head bigint;
    waiting integer;
    n integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM outhook.endpoint WHERE fifo) THEN
        RETURN 0;
    END IF;
    FOR f IN SELECT DISTINCT d.endpoint_id FROM outhook.delivery d
             JOIN outhook.endpoint e ON e.id = d.endpoint_id AND e.fifo
             WHERE d.id = ANY (ids) ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('outhook.fifo:' || f::text, 0));
        head := NULL;
        SELECT h.delivery_id INTO head FROM outhook.fifo_head h JOIN outhook.delivery d ON d.id = h.delivery_id
        WHERE h.endpoint_id = f AND d.status = 0;
        UPDATE outhook.delivery SET status = 3
        WHERE id = ANY (ids) AND endpoint_id = f AND status = 0 AND id IS DISTINCT FROM head;
        GET DIAGNOSTICS waiting = ROW_COUNT;
        n := n + waiting;
        IF head IS NULL THEN
            PERFORM outhook.fifo_promote(ARRAY[f]);
        END IF;
    END LOOP;
    RETURN n;
END;
$$;
