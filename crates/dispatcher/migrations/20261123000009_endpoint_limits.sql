-- Per-endpoint limits that hold across every worker: a rate (requests per
-- second, with a burst) and a maximum of attempts in flight. Their state is
-- here, not in a worker's memory.
--
-- The claim stays as it is for every endpoint. A worker that claimed rows of
-- a limited endpoint passes them through outhook.limit_admit, which, under
-- the endpoint's limiter row lock:
--   * sends the rows over the in-flight limit to wait with status 4, which
--     no claim reads; a completion on that endpoint promotes the oldest
--     waiting ones (outhook.limit_release);
--   * gives each row over the rate its own future slot (GCRA: the slot is
--     reserved, so it is not charged again when it comes due), which moves
--     it out of the due range of the claim index: a limited backlog costs
--     each row one extra update, and never blocks other endpoints' rows.
ALTER TABLE outhook.endpoint
    ADD COLUMN rate_limit double precision CHECK (rate_limit > 0 AND rate_limit <= 1000000),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst BETWEEN 1 AND 1000000),
    ADD COLUMN max_in_flight integer CHECK (max_in_flight BETWEEN 1 AND 1000000);

-- A limited endpoint's state, and the row every admission and release
-- locks. Two GCRA clocks: `tat` hands out slots to deferred rows (each row
-- reserves its own); `sent_tat` paces the admissions themselves, so a row
-- claimed late cannot go right before the next one on time.
CREATE TABLE outhook.endpoint_limiter (
    endpoint_id uuid PRIMARY KEY,
    tat         timestamptz NOT NULL DEFAULT now(),
    sent_tat    timestamptz NOT NULL DEFAULT now()
);

-- rate_slot: the row was given a rate slot when it was deferred, and is
-- not charged again. in_flight_until: while an attempt of a row of an
-- endpoint with max_in_flight runs, its lease end (an attempt whose worker
-- died stops counting when its lease ends).
ALTER TABLE outhook.delivery
    ADD COLUMN rate_slot boolean NOT NULL DEFAULT false,
    ADD COLUMN in_flight_until timestamptz;
CREATE INDEX delivery_in_flight ON outhook.delivery (endpoint_id, in_flight_until) WHERE in_flight_until IS NOT NULL;
-- status 4: waiting for a free in-flight place on its endpoint.
CREATE INDEX delivery_waiting ON outhook.delivery (endpoint_id, id) WHERE status = 4;

-- Admits claimed rows of limited endpoints (the caller's lease is `leases`):
-- returns the rows that may be attempted now (due_in NULL) and those
-- deferred to a rate slot, with the seconds until it (the caller wakes
-- then); the others were set waiting for an in-flight place. Rows not
-- admitted have their attempt given back.
CREATE FUNCTION outhook.limit_admit(ids bigint[], leases bigint[], OUT row_id bigint, OUT due_in double precision)
RETURNS SETOF record
LANGUAGE plpgsql AS $$
DECLARE
    e record;
    r record;
    free integer;
    theoretical timestamptz;
    sent timestamptz;
    step interval;
    tau interval;
    slot timestamptz;
    t timestamptz;
BEGIN
    FOR e IN
        SELECT en.id, en.rate_limit, coalesce(en.rate_limit_burst, 1) AS burst, en.max_in_flight, en.fifo
        FROM outhook.endpoint en
        WHERE en.id IN (SELECT d.endpoint_id FROM outhook.delivery d WHERE d.id = ANY (ids))
        ORDER BY en.id
    LOOP
        INSERT INTO outhook.endpoint_limiter (endpoint_id) VALUES (e.id) ON CONFLICT DO NOTHING;
        SELECT l.tat, l.sent_tat INTO theoretical, sent FROM outhook.endpoint_limiter l WHERE l.endpoint_id = e.id FOR UPDATE;
        -- The time now, after any wait for the lock (now() is when the
        -- statement began).
        t := clock_timestamp();
        -- An ordered endpoint has one pending delivery at a time already; a
        -- waiting head would let the next one be promoted past it.
        IF e.max_in_flight IS NULL OR e.fifo THEN
            free := NULL;
        ELSE
            free := e.max_in_flight - (SELECT count(*) FROM outhook.delivery f
                                       WHERE f.endpoint_id = e.id AND f.in_flight_until > now()
                                         AND f.id <> ALL (ids));
        END IF;
        IF e.rate_limit IS NOT NULL THEN
            step := make_interval(secs => 1.0 / e.rate_limit);
            tau := step * (e.burst - 1);
            theoretical := greatest(theoretical, t);
        END IF;
        FOR r IN
            SELECT d.id, d.rate_slot FROM outhook.delivery d
            JOIN unnest(ids, leases) AS c(id, lease) ON c.id = d.id AND c.lease = d.lease
            WHERE d.endpoint_id = e.id AND d.status = 0
            ORDER BY d.id
        LOOP
            IF free IS NOT NULL AND free <= 0 THEN
                UPDATE outhook.delivery
                SET status = 4, next_attempt_at = now(), attempts = attempts - 1, in_flight_until = NULL
                WHERE id = r.id;
                CONTINUE;
            END IF;
            IF e.rate_limit IS NOT NULL THEN
                IF r.rate_slot THEN
                    slot := t;  -- its reserved slot has come
                ELSE
                    slot := theoretical - tau;
                    theoretical := theoretical + step;
                END IF;
                slot := greatest(slot, sent - tau);
                IF slot > t THEN
                    UPDATE outhook.delivery
                    SET next_attempt_at = slot, attempts = attempts - 1, rate_slot = true, in_flight_until = NULL
                    WHERE id = r.id;
                    row_id := r.id;
                    due_in := extract(epoch FROM slot - t);
                    RETURN NEXT;
                    CONTINUE;
                END IF;
                -- A row up to a tenth of a step late (the wake and the
                -- claim take a moment) keeps the schedule, so lateness does
                -- not add up into a slower rate; any window of length W
                -- still sees at most 1 + (W + step/10 + tau) / step.
                sent := greatest(sent, t - step / 10) + step;
            END IF;
            UPDATE outhook.delivery
            SET rate_slot = false,
                in_flight_until = CASE WHEN free IS NOT NULL THEN next_attempt_at END
            WHERE id = r.id;
            free := free - 1;
            row_id := r.id;
            due_in := NULL;
            RETURN NEXT;
        END LOOP;
        IF e.rate_limit IS NOT NULL THEN
            UPDATE outhook.endpoint_limiter SET tat = theoretical, sent_tat = sent WHERE endpoint_id = e.id;
        END IF;
    END LOOP;
END;
$$;

-- Promotes waiting rows of the given endpoints into their free in-flight
-- places, oldest first (all of them where the limit was lifted). Returns
-- how many.
CREATE FUNCTION outhook.limit_release(endpoints uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    e record;
    free integer;
    moved integer;
    n integer := 0;
BEGIN
    FOR e IN
        SELECT en.id, en.max_in_flight, en.enabled FROM outhook.endpoint en
        WHERE en.id IN (SELECT DISTINCT x FROM unnest(endpoints) x)
        ORDER BY en.id
    LOOP
        INSERT INTO outhook.endpoint_limiter (endpoint_id) VALUES (e.id) ON CONFLICT DO NOTHING;
        PERFORM 1 FROM outhook.endpoint_limiter l WHERE l.endpoint_id = e.id FOR UPDATE;
        IF e.max_in_flight IS NULL THEN
            free := NULL;
        ELSE
            free := e.max_in_flight - (SELECT count(*) FROM outhook.delivery f
                                       WHERE f.endpoint_id = e.id AND f.in_flight_until > now());
            CONTINUE WHEN free <= 0;
        END IF;
        -- A promoted row holds its place for a while (until a worker claims
        -- it, when the admission counts it as its own).
        UPDATE outhook.delivery d
        SET status = 0, in_flight_until = CASE WHEN free IS NOT NULL THEN now() + interval '10 seconds' END,
            next_attempt_at = CASE WHEN e.enabled THEN now() ELSE 'infinity' END
        FROM (SELECT w.id FROM outhook.delivery w WHERE w.endpoint_id = e.id AND w.status = 4
              ORDER BY w.id LIMIT free) AS p
        WHERE d.id = p.id;
        GET DIAGNOSTICS moved = ROW_COUNT;
        n := n + moved;
    END LOOP;
    IF n > 0 THEN
        PERFORM pg_notify('outhook_delivery', '');
    END IF;
    RETURN n;
END;
$$;
