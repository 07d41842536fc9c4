-- Content filters: the keyed lookup at fan-out, cheaper per event.
--
-- Measured on the keyed case that matters most (an owner with a hundred
-- endpoints, each on its own value of one field, 1 KiB payloads), the
-- lookup cost about 10 µs an event beside the payload's cast to jsonb.
-- Most of it was not the index probe but what surrounded it: two set-
-- returning functions an event (the key paths' unnest and the values'
-- jsonb_path_query, each run through a tuplestore), a hash aggregate set
-- up an event to group the values, and the two empty branches (no plain
-- endpoint, no unkeyed filter) probing the index anyway.
--
-- Now the fan-out finds the values at the owner's first key path once an
-- event (a jsonb array, no set-returning function), and when there is one
-- value there, as there is for a scalar field, the keyed endpoints are
-- found by one index probe on it. Only several values at that path (an
-- array), or an owner whose filters use more than one key path, take the
-- general lookup as before. Whether an owner has plain endpoints or
-- unkeyed filters is asked once a statement, and a branch with nothing to
-- find is skipped without a probe. The matches are the same: every
-- endpoint found is still evaluated whole (`@@`).
--
-- And while any endpoint is ordered (fifo), the fan-out no longer casts
-- and matches every payload twice, once to find the ordered endpoints to
-- lock and once to insert: it locks the ordered endpoints of the batch's
-- owners that take its event types, filter or not.

DROP FUNCTION outhook.endpoints_for(text, text, jsonb, text[], jsonpath[]);

-- The endpoints of `p_owner` an event of `p_event_type` goes to, given its
-- payload as jsonb (`p_doc`, NULL when the owner has no filtered endpoint);
-- whether the owner has endpoints without a filter (`p_plain`) and with a
-- filter without a key (`p_unkeyed`); the owner's key paths (`p_paths`,
-- from filter_key_paths, and the same parsed, `p_jsonpaths`); and the
-- values the payload holds at the first of them, as a jsonb array
-- (`p_first_values`, NULL when there is no key path).
CREATE FUNCTION outhook.endpoints_for(p_owner text, p_event_type text, p_doc jsonb,
                                      p_plain boolean, p_unkeyed boolean,
                                      p_paths text[], p_jsonpaths jsonpath[], p_first_values jsonb)
RETURNS TABLE (id uuid, enabled boolean, fifo boolean)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    -- Endpoints without a filter.
    SELECT e.id, e.enabled, e.fifo FROM outhook.endpoint e
    WHERE p_plain AND e.owner = p_owner AND e.content_filter_path IS NULL
      AND (cardinality(e.event_types) = 0 OR p_event_type = ANY (e.event_types))
    UNION ALL
    -- Filters without a key: each one evaluated.
    SELECT e.id, e.enabled, e.fifo FROM outhook.endpoint e
    WHERE p_unkeyed AND p_doc IS NOT NULL AND e.owner = p_owner
      AND e.content_filter_path IS NOT NULL AND e.content_filter_key_path IS NULL
      AND (cardinality(e.event_types) = 0 OR p_event_type = ANY (e.event_types))
      AND p_doc @@ e.content_filter_path
    UNION ALL
    -- Keyed filters on the first key path, which holds one value: one
    -- index probe by that value.
    SELECT k.id, k.enabled, k.fifo FROM outhook.endpoint k
    WHERE p_doc IS NOT NULL AND jsonb_array_length(p_first_values) = 1
      AND k.owner = p_owner AND k.content_filter_key_path = p_paths[1]
      AND k.content_filter_key_value = p_first_values -> 0
      AND (cardinality(k.event_types) = 0 OR p_event_type = ANY (k.event_types))
      AND p_doc @@ k.content_filter_path
    UNION ALL
    -- Every other key path, and the first when it holds several values:
    -- each value the event holds there is looked up once, and only what is
    -- found is evaluated (the OFFSET 0 keeps the planner from evaluating
    -- every filter of the owner first).
    SELECT e.id, e.enabled, e.fifo
    FROM unnest(p_paths, p_jsonpaths) WITH ORDINALITY AS kp(path, jsonpath, n)
    -- GROUP BY rather than DISTINCT: the same values for half the cost.
    CROSS JOIN LATERAL (SELECT v FROM jsonb_path_query(p_doc, kp.jsonpath) AS v GROUP BY v) found
    CROSS JOIN LATERAL (
        SELECT k.id, k.enabled, k.fifo, k.event_types, k.content_filter_path FROM outhook.endpoint k
        WHERE k.owner = p_owner AND k.content_filter_key_path = kp.path AND k.content_filter_key_value = found.v
        OFFSET 0) e
    WHERE p_doc IS NOT NULL
      AND (cardinality(p_paths) > 1 OR jsonb_array_length(p_first_values) > 1)
      AND (kp.n > 1 OR jsonb_array_length(p_first_values) > 1)
      AND (cardinality(e.event_types) = 0 OR p_event_type = ANY (e.event_types))
      AND p_doc @@ e.content_filter_path
$$;

-- The fan-out of 20261204000001_event_catalog.sql, passing the above what
-- it now takes; SECURITY DEFINER and its search_path as 20261204000006_roles.sql set them.
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
        WITH owner_paths AS MATERIALIZED (
            SELECT o.owner, o.filters, o.plain, o.unkeyed,
                   CASE WHEN o.filters THEN outhook.filter_key_paths(o.owner) ELSE '{}' END AS paths
            FROM (SELECT d.owner,
                         filtered AND EXISTS (SELECT 1 FROM outhook.endpoint fe
                                              WHERE fe.owner = d.owner AND fe.content_filter_path IS NOT NULL) AS filters,
                         EXISTS (SELECT 1 FROM outhook.endpoint pe
                                 WHERE pe.owner = d.owner AND pe.content_filter_path IS NULL) AS plain,
                         filtered AND EXISTS (SELECT 1 FROM outhook.endpoint ue
                                              WHERE ue.owner = d.owner AND ue.content_filter_path IS NOT NULL
                                                AND ue.content_filter_key_path IS NULL) AS unkeyed
                  FROM (SELECT DISTINCT owner FROM new_rows WHERE endpoint_id IS NULL) d) o
        ), owners AS MATERIALIZED (
            SELECT op.*, ARRAY(SELECT p::jsonpath FROM unnest(op.paths) AS p) AS jsonpaths FROM owner_paths op
        ), docs AS MATERIALIZED (
            -- The values at the first key path, found once an event (the
            -- OFFSET 0 keeps the cast from being done again for them).
            SELECT c.*, CASE WHEN cardinality(c.jsonpaths) > 0 THEN jsonb_path_query_array(c.doc, c.jsonpaths[1]) END AS first_values
            FROM (SELECT n.id, n.owner, n.event_type,
                         CASE WHEN w.filters THEN n.payload::jsonb END AS doc,
                         w.plain, w.unkeyed, w.paths, w.jsonpaths
                  FROM new_rows n JOIN owners w ON w.owner = n.owner WHERE n.endpoint_id IS NULL
                  OFFSET 0) c)
        INSERT INTO outhook.delivery (message_id, endpoint_id, next_attempt_at)
        SELECT d.id, e.id, CASE WHEN e.enabled THEN now() ELSE 'infinity' END
        FROM docs d CROSS JOIN LATERAL outhook.endpoints_for(d.owner, d.event_type, d.doc, d.plain, d.unkeyed, d.paths, d.jsonpaths, d.first_values) e
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
        WITH owner_paths AS MATERIALIZED (
            SELECT o.owner, o.filters, o.plain, o.unkeyed,
                   CASE WHEN o.filters THEN outhook.filter_key_paths(o.owner) ELSE '{}' END AS paths
            FROM (SELECT d.owner,
                         filtered AND EXISTS (SELECT 1 FROM outhook.endpoint fe
                                              WHERE fe.owner = d.owner AND fe.content_filter_path IS NOT NULL) AS filters,
                         EXISTS (SELECT 1 FROM outhook.endpoint pe
                                 WHERE pe.owner = d.owner AND pe.content_filter_path IS NULL) AS plain,
                         filtered AND EXISTS (SELECT 1 FROM outhook.endpoint ue
                                              WHERE ue.owner = d.owner AND ue.content_filter_path IS NOT NULL
                                                AND ue.content_filter_key_path IS NULL) AS unkeyed
                  FROM (SELECT DISTINCT owner FROM new_rows WHERE endpoint_id IS NULL) d) o
        ), owners AS MATERIALIZED (
            SELECT op.*, ARRAY(SELECT p::jsonpath FROM unnest(op.paths) AS p) AS jsonpaths FROM owner_paths op
        ), docs AS MATERIALIZED (
            -- The values at the first key path, found once an event (the
            -- OFFSET 0 keeps the cast from being done again for them).
            SELECT c.*, CASE WHEN cardinality(c.jsonpaths) > 0 THEN jsonb_path_query_array(c.doc, c.jsonpaths[1]) END AS first_values
            FROM (SELECT n.id, n.owner, n.event_type,
                         CASE WHEN w.filters THEN n.payload::jsonb END AS doc,
                         w.plain, w.unkeyed, w.paths, w.jsonpaths
                  FROM new_rows n JOIN owners w ON w.owner = n.owner WHERE n.endpoint_id IS NULL
                  OFFSET 0) c
        ), targets AS (
            SELECT d.id AS message_id, e.id AS endpoint_id, e.enabled, e.fifo
            FROM docs d CROSS JOIN LATERAL outhook.endpoints_for(d.owner, d.event_type, d.doc, d.plain, d.unkeyed, d.paths, d.jsonpaths, d.first_values) e
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

