-- Content filters: the producer may say what the payload holds at the
-- owner's key, so the fan-out need not parse the payload; and a payload
-- with a NUL no longer fails its statement.
--
-- An owner with a hundred endpoints, each filtering on its own value of
-- one field, is the case the filters were made for, and the fan-out's
-- largest cost there is no longer the lookup but the payload's cast to
-- jsonb (PostgreSQL 15 parses 1 KiB in about 6 µs; what it does with the
-- result is one index probe). So a producer that has the payload parsed
-- anyway, as `outhook serve` has, may send beside it the value it found
-- at the owner's key path: `filter_hint_path` (one of
-- `outhook.filter_key_paths(owner)`, as `outhook.filter_hint_path(owner)`
-- gives it) and `filter_hint_value` (the scalar there as JSON text, cast
-- by PostgreSQL itself; NULL when nothing is there). The fan-out takes the
-- hint only when it can stand in for the payload: the owner's filters all
-- use that one path, and each filter is only its key (`collection =
-- "0xabc"`, marked `content_filter_key_whole` when it is set). Otherwise,
-- or without a hint, the payload is cast and matched as before, so a
-- stale hint (the owner's filters changed since the producer asked) costs
-- the cast and nothing else. A wrong one sends the event where the hint
-- says: the columns are the producer's word, as its `endpoint_id` is.
--
-- A payload holding the escape \u0000 (a NUL in a string) is valid json
-- and is delivered byte for byte, but jsonb refuses it, so for an owner
-- that filters the cast failed the whole insert, and with it every other
-- event of the statement. The filters now read such a payload with each
-- NUL as U+FFFD. A payload jsonb cannot read otherwise (a lone UTF-16
-- surrogate escape, a number beyond numeric's range) still fails the
-- insert for an owner that filters; the API refuses that one event alone.

ALTER TABLE outhook.endpoint
    ADD COLUMN content_filter_key_whole boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT endpoint_content_filter_key_whole
        CHECK (NOT content_filter_key_whole OR content_filter_key_path IS NOT NULL);

-- A key that no longer holds for the predicate goes, and with it its
-- wholeness (as in 20261204000001_event_catalog.sql, which this replaces).
CREATE OR REPLACE FUNCTION outhook.endpoint_filter_key_current() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.content_filter_key_path IS NOT NULL
       AND NEW.content_filter_key_for::text IS DISTINCT FROM NEW.content_filter_path::text THEN
        NEW.content_filter_key_path := NULL;
        NEW.content_filter_key_value := NULL;
        NEW.content_filter_key_for := NULL;
    END IF;
    IF NEW.content_filter_key_path IS NULL THEN
        NEW.content_filter_key_whole := false;
    END IF;
    RETURN NEW;
END;
$$;
DROP TRIGGER endpoint_filter_key_current ON outhook.endpoint;
CREATE TRIGGER endpoint_filter_key_current
    BEFORE INSERT OR UPDATE OF content_filter_path, content_filter_key_path, content_filter_key_value,
                               content_filter_key_for, content_filter_key_whole
    ON outhook.endpoint FOR EACH ROW EXECUTE FUNCTION outhook.endpoint_filter_key_current();

-- Whether an owner has a filter that is more than its key: one probe.
CREATE INDEX endpoint_filter_not_whole ON outhook.endpoint (owner)
    WHERE content_filter_path IS NOT NULL AND NOT content_filter_key_whole;

ALTER TABLE outhook.outbox
    ADD COLUMN filter_hint_path text,
    ADD COLUMN filter_hint_value jsonb,
    ADD CONSTRAINT outbox_filter_hint CHECK (
        (filter_hint_path IS NOT NULL OR filter_hint_value IS NULL)
        AND jsonb_typeof(filter_hint_value) NOT IN ('array', 'object'));

-- The key path a producer should send a hint for, for `p_owner`: its one
-- key path when each of its filters is only its key; NULL otherwise (no
-- filter, several paths, or a filter the payload must be read for).
CREATE FUNCTION outhook.filter_hint_path(p_owner text) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    paths text[] := outhook.filter_key_paths(p_owner);
BEGIN
    IF cardinality(paths) <> 1 OR EXISTS (
        SELECT 1 FROM outhook.endpoint e
        WHERE e.owner = p_owner AND e.content_filter_path IS NOT NULL AND NOT e.content_filter_key_whole) THEN
        RETURN NULL;
    END IF;
    RETURN paths[1];
END;
$$;

-- The payload as the filters read it: jsonb, with each \u0000 escape (one
-- after an even run of backslashes, so not the text `\u0000` in a string)
-- read as \ufffd. SQL, so that it is inlined; the search costs a scan.
CREATE FUNCTION outhook.payload_doc(p json) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_catalog.strpos(p::text, '\u0000') > 0
                THEN pg_catalog.regexp_replace(p::text, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g')::jsonb
                ELSE p::jsonb END
$$;

-- The fan-out of 20261205000003_filter_probe.sql, with the hint and the
-- NUL-safe cast. Endpoints without a filter, and keyed ones found by a
-- hint, are now joined for the whole statement at once, as the plain
-- fan-out joins them; only events whose payload must be read go through
-- endpoints_for one by one. SECURITY DEFINER and its search_path as
-- 20261204000006_roles.sql set them.
CREATE OR REPLACE FUNCTION outhook.outbox_fan_out() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off SET enable_seqscan = off AS $$
DECLARE
    f uuid;
    unknown text;
    filtered boolean := EXISTS (SELECT 1 FROM outhook.endpoint WHERE content_filter_path IS NOT NULL);
BEGIN
    IF (SELECT strict_event_types FROM outhook.catalog_setting) THEN
        SELECT n.event_type INTO unknown FROM new_rows n
        WHERE n.owner IS DISTINCT FROM 'outhook:operator'
          AND NOT EXISTS (SELECT 1 FROM outhook.event_type t WHERE t.name = n.event_type)
        LIMIT 1;
        IF unknown IS NOT NULL THEN
            RAISE EXCEPTION 'unknown event type "%": the event catalog is strict, so every event''s type must be in it', unknown
                USING ERRCODE = 'check_violation', CONSTRAINT = 'outbox_event_type_known',
                      HINT = 'add the type to the catalog (outhook event-type add), or turn strict mode off';
        END IF;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM outhook.endpoint WHERE fifo) AND NOT filtered THEN
        -- No ordered endpoint and no filter: the plain fan-out, as before.
        INSERT INTO outhook.delivery (message_id, endpoint_id, next_attempt_at)
        SELECT n.id, e.id, CASE WHEN e.enabled THEN now() ELSE 'infinity' END
        FROM new_rows n
        JOIN outhook.endpoint e
          ON n.endpoint_id IS NULL AND e.owner = n.owner
         AND (cardinality(e.event_types) = 0 OR n.event_type = ANY (e.event_types))
        UNION ALL
        SELECT n.id, n.endpoint_id, now() FROM new_rows n WHERE n.endpoint_id IS NOT NULL;
    ELSIF NOT EXISTS (SELECT 1 FROM outhook.endpoint WHERE fifo) THEN
        WITH owners AS MATERIALIZED (
            SELECT d.owner,
                   filtered AND EXISTS (SELECT 1 FROM outhook.endpoint fe
                                        WHERE fe.owner = d.owner AND fe.content_filter_path IS NOT NULL) AS filters,
                   EXISTS (SELECT 1 FROM outhook.endpoint pe
                           WHERE pe.owner = d.owner AND pe.content_filter_path IS NULL) AS plain,
                   filtered AND EXISTS (SELECT 1 FROM outhook.endpoint ue
                                        WHERE ue.owner = d.owner AND ue.content_filter_path IS NOT NULL
                                          AND ue.content_filter_key_path IS NULL) AS unkeyed,
                   NOT EXISTS (SELECT 1 FROM outhook.endpoint we
                               WHERE we.owner = d.owner AND we.content_filter_path IS NOT NULL
                                 AND NOT we.content_filter_key_whole) AS whole
            FROM (SELECT DISTINCT owner FROM new_rows WHERE endpoint_id IS NULL) d
        ), hint_paths AS MATERIALIZED (
            -- The hints that stand in for the payload: at an owner's one
            -- key path, when each filter of the owner is only its key.
            SELECT h.owner, h.path
            FROM (SELECT DISTINCT owner, filter_hint_path AS path FROM new_rows
                  WHERE endpoint_id IS NULL AND filter_hint_path IS NOT NULL) h
            JOIN owners w ON w.owner = h.owner AND w.filters AND w.whole
            WHERE EXISTS (SELECT 1 FROM outhook.endpoint k
                          WHERE k.owner = h.owner AND k.content_filter_key_path = h.path)
              AND NOT EXISTS (SELECT 1 FROM outhook.endpoint k
                              WHERE k.owner = h.owner AND k.content_filter_key_path < h.path)
              AND NOT EXISTS (SELECT 1 FROM outhook.endpoint k
                              WHERE k.owner = h.owner AND k.content_filter_key_path > h.path)
        ), events AS MATERIALIZED (
            SELECT n.id, n.owner, n.event_type, n.filter_hint_path AS hint_path, n.filter_hint_value AS hint_value,
                   w.filters, w.plain, w.unkeyed, hp.owner IS NOT NULL AS hinted
            FROM new_rows n JOIN owners w ON w.owner = n.owner
            LEFT JOIN hint_paths hp ON hp.owner = n.owner AND hp.path = n.filter_hint_path
            WHERE n.endpoint_id IS NULL
        ), readers AS MATERIALIZED (
            -- The owners whose filters must read the payload, with their
            -- key paths, parsed once a statement.
            SELECT r.owner, r.paths, ARRAY(SELECT p::jsonpath FROM unnest(r.paths) AS p) AS jsonpaths
            FROM (SELECT o.owner, outhook.filter_key_paths(o.owner) AS paths
                  FROM (SELECT DISTINCT owner FROM events WHERE filters AND NOT hinted) o) r
        ), docs AS MATERIALIZED (
            -- The payload as jsonb and the values at the first key path,
            -- once an event (the OFFSET 0 keeps the cast from being done
            -- again for them).
            SELECT c.*, CASE WHEN cardinality(c.jsonpaths) > 0 THEN jsonb_path_query_array(c.doc, c.jsonpaths[1]) END AS first_values
            FROM (SELECT v.id, v.owner, v.event_type, v.unkeyed, r.paths, r.jsonpaths, outhook.payload_doc(n.payload) AS doc
                  FROM events v JOIN readers r ON r.owner = v.owner JOIN new_rows n ON n.id = v.id
                  WHERE v.filters AND NOT v.hinted
                  OFFSET 0) c
        )
        INSERT INTO outhook.delivery (message_id, endpoint_id, next_attempt_at)
        SELECT m.message_id, m.endpoint_id, CASE WHEN m.enabled THEN now() ELSE 'infinity' END
        FROM (
            -- Endpoints without a filter.
            SELECT v.id, e.id, e.enabled, e.fifo
            FROM events v JOIN outhook.endpoint e
              ON v.plain AND e.owner = v.owner AND e.content_filter_path IS NULL
             AND (cardinality(e.event_types) = 0 OR v.event_type = ANY (e.event_types))
            UNION ALL
            -- Keyed filters, each only its key, by the producer's hint.
            SELECT v.id, k.id, k.enabled, k.fifo
            FROM events v JOIN outhook.endpoint k
              ON v.hinted AND k.owner = v.owner AND k.content_filter_key_path = v.hint_path
             AND k.content_filter_key_value = v.hint_value
             AND (cardinality(k.event_types) = 0 OR v.event_type = ANY (k.event_types))
            UNION ALL
            -- Filters that read the payload.
            SELECT d.id, e.id, e.enabled, e.fifo
            FROM docs d CROSS JOIN LATERAL outhook.endpoints_for(d.owner, d.event_type, d.doc, false, d.unkeyed, d.paths, d.jsonpaths, d.first_values) e
        ) m (message_id, endpoint_id, enabled, fifo)
        UNION ALL
        SELECT n.id, n.endpoint_id, now() FROM new_rows n WHERE n.endpoint_id IS NOT NULL;
    ELSE
        -- Lock every ordered endpoint the batch may reach: of its owners,
        -- taking its event types, whatever its filter says. A filtered one
        -- the events do not match is locked for nothing, which costs no
        -- more than waiting; evaluating the filters here would cast and
        -- look up every payload twice.
        FOR f IN
            SELECT e.id
            FROM (SELECT DISTINCT owner FROM new_rows WHERE endpoint_id IS NULL) o
            JOIN outhook.endpoint e ON e.owner = o.owner AND e.fifo
            WHERE EXISTS (SELECT 1 FROM new_rows n
                          WHERE n.endpoint_id IS NULL AND n.owner = e.owner
                            AND (cardinality(e.event_types) = 0 OR n.event_type = ANY (e.event_types)))
            UNION
            SELECT e.id FROM new_rows n JOIN outhook.endpoint e ON e.fifo AND e.id = n.endpoint_id
            ORDER BY 1
        LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('outhook.fifo:' || f::text, 0));
        END LOOP;
        WITH owners AS MATERIALIZED (
            SELECT d.owner,
                   filtered AND EXISTS (SELECT 1 FROM outhook.endpoint fe
                                        WHERE fe.owner = d.owner AND fe.content_filter_path IS NOT NULL) AS filters,
                   EXISTS (SELECT 1 FROM outhook.endpoint pe
                           WHERE pe.owner = d.owner AND pe.content_filter_path IS NULL) AS plain,
                   filtered AND EXISTS (SELECT 1 FROM outhook.endpoint ue
                                        WHERE ue.owner = d.owner AND ue.content_filter_path IS NOT NULL
                                          AND ue.content_filter_key_path IS NULL) AS unkeyed,
                   NOT EXISTS (SELECT 1 FROM outhook.endpoint we
                               WHERE we.owner = d.owner AND we.content_filter_path IS NOT NULL
                                 AND NOT we.content_filter_key_whole) AS whole
            FROM (SELECT DISTINCT owner FROM new_rows WHERE endpoint_id IS NULL) d
        ), hint_paths AS MATERIALIZED (
            -- The hints that stand in for the payload: at an owner's one
            -- key path, when each filter of the owner is only its key.
            SELECT h.owner, h.path
            FROM (SELECT DISTINCT owner, filter_hint_path AS path FROM new_rows
                  WHERE endpoint_id IS NULL AND filter_hint_path IS NOT NULL) h
            JOIN owners w ON w.owner = h.owner AND w.filters AND w.whole
            WHERE EXISTS (SELECT 1 FROM outhook.endpoint k
                          WHERE k.owner = h.owner AND k.content_filter_key_path = h.path)
              AND NOT EXISTS (SELECT 1 FROM outhook.endpoint k
                              WHERE k.owner = h.owner AND k.content_filter_key_path < h.path)
              AND NOT EXISTS (SELECT 1 FROM outhook.endpoint k
                              WHERE k.owner = h.owner AND k.content_filter_key_path > h.path)
        ), events AS MATERIALIZED (
            SELECT n.id, n.owner, n.event_type, n.filter_hint_path AS hint_path, n.filter_hint_value AS hint_value,
                   w.filters, w.plain, w.unkeyed, hp.owner IS NOT NULL AS hinted
            FROM new_rows n JOIN owners w ON w.owner = n.owner
            LEFT JOIN hint_paths hp ON hp.owner = n.owner AND hp.path = n.filter_hint_path
            WHERE n.endpoint_id IS NULL
        ), readers AS MATERIALIZED (
            -- The owners whose filters must read the payload, with their
            -- key paths, parsed once a statement.
            SELECT r.owner, r.paths, ARRAY(SELECT p::jsonpath FROM unnest(r.paths) AS p) AS jsonpaths
            FROM (SELECT o.owner, outhook.filter_key_paths(o.owner) AS paths
                  FROM (SELECT DISTINCT owner FROM events WHERE filters AND NOT hinted) o) r
        ), docs AS MATERIALIZED (
            -- The payload as jsonb and the values at the first key path,
            -- once an event (the OFFSET 0 keeps the cast from being done
            -- again for them).
            SELECT c.*, CASE WHEN cardinality(c.jsonpaths) > 0 THEN jsonb_path_query_array(c.doc, c.jsonpaths[1]) END AS first_values
            FROM (SELECT v.id, v.owner, v.event_type, v.unkeyed, r.paths, r.jsonpaths, outhook.payload_doc(n.payload) AS doc
                  FROM events v JOIN readers r ON r.owner = v.owner JOIN new_rows n ON n.id = v.id
                  WHERE v.filters AND NOT v.hinted
                  OFFSET 0) c
        ), targets AS (
            -- Endpoints without a filter.
            SELECT v.id AS message_id, e.id AS endpoint_id, e.enabled, e.fifo
            FROM events v JOIN outhook.endpoint e
              ON v.plain AND e.owner = v.owner AND e.content_filter_path IS NULL
             AND (cardinality(e.event_types) = 0 OR v.event_type = ANY (e.event_types))
            UNION ALL
            -- Keyed filters, each only its key, by the producer's hint.
            SELECT v.id, k.id, k.enabled, k.fifo
            FROM events v JOIN outhook.endpoint k
              ON v.hinted AND k.owner = v.owner AND k.content_filter_key_path = v.hint_path
             AND k.content_filter_key_value = v.hint_value
             AND (cardinality(k.event_types) = 0 OR v.event_type = ANY (k.event_types))
            UNION ALL
            -- Filters that read the payload.
            SELECT d.id, e.id, e.enabled, e.fifo
            FROM docs d CROSS JOIN LATERAL outhook.endpoints_for(d.owner, d.event_type, d.doc, false, d.unkeyed, d.paths, d.jsonpaths, d.first_values) e
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

