-- The event catalog, content filters and one rule for event type names.
--
-- Every rule here is enforced by the database, so an event is treated the
-- same whether it arrives through the API, the CLI, the library or a plain
-- INSERT.

-- Event type names: a letter or digit, then letters, digits, '.', '_', '-'
-- or ':', at most 128 characters. NOT VALID: rows already stored are kept
-- as they are; every new row is checked.
CREATE FUNCTION outhook.event_type_name_ok(name text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN name ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$';

CREATE FUNCTION outhook.event_type_names_ok(names text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (SELECT coalesce(bool_and(n ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'), true) FROM unnest(names) AS n);

ALTER TABLE outhook.outbox
    ADD CONSTRAINT outbox_event_type_name CHECK (event_type ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$') NOT VALID;
ALTER TABLE outhook.endpoint
    ADD CONSTRAINT endpoint_event_type_names CHECK (outhook.event_type_names_ok(event_types)) NOT VALID;

-- The catalog: what a provider sends, for its customers to pick from.
-- `examples` is a JSON array kept as written (json, not jsonb), so an
-- example is sent with its key order.
CREATE TABLE outhook.event_type (
    name        text PRIMARY KEY CHECK (outhook.event_type_name_ok(name)),
    description text NOT NULL DEFAULT '',
    group_name  text NOT NULL DEFAULT '',
    schema      jsonb CHECK (schema IS NULL OR jsonb_typeof(schema) IN ('object', 'boolean')),
    examples    json NOT NULL DEFAULT '[]' CHECK (json_typeof(examples) = 'array'),
    validate    boolean NOT NULL DEFAULT false,   -- the API checks payloads against `schema`
    deprecated  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Catalog-wide settings: one row. strict_event_types refuses events of a
-- type the catalog does not hold, on every path.
CREATE TABLE outhook.catalog_setting (
    one                boolean PRIMARY KEY DEFAULT true CHECK (one),
    strict_event_types boolean NOT NULL DEFAULT false
);
INSERT INTO outhook.catalog_setting DEFAULT VALUES;

-- Content filters: the filter as the customer wrote it, and the jsonpath
-- predicate Outhook compiled it to, which the fan-out evaluates. Set both
-- through the CLI, the API or the portal (they check the filter and say
-- where it is wrong); a plain UPDATE must set both.
--
-- A filter that is `path = value`, or an `and` with such a term, also has
-- a key: the path (as jsonpath, arrays unwrapped as a comparison unwraps
-- them) and the value. The fan-out looks keyed endpoints up by the values
-- an event holds at their paths, so an owner with a hundred endpoints, each
-- on its own collection, costs one index probe per event rather than a
-- hundred evaluations; what the probe finds is still evaluated whole. The
-- key is optional (an endpoint without one is evaluated on every event of
-- its owner), and it holds only for the predicate it was made for
-- (`content_filter_key_for`): a plain UPDATE that changes the predicate
-- and not the key drops the key, so it can never hide a match.
ALTER TABLE outhook.endpoint
    ADD COLUMN content_filter text,
    ADD COLUMN content_filter_path jsonpath,
    ADD COLUMN content_filter_key_path text,
    ADD COLUMN content_filter_key_value jsonb,
    ADD COLUMN content_filter_key_for jsonpath,
    ADD CONSTRAINT endpoint_content_filter_pair CHECK ((content_filter IS NULL) = (content_filter_path IS NULL)),
    ADD CONSTRAINT endpoint_content_filter_key CHECK (
        (content_filter_key_path IS NULL) = (content_filter_key_value IS NULL)
        AND (content_filter_key_path IS NULL OR content_filter_key_path::jsonpath IS NOT NULL));

CREATE FUNCTION outhook.endpoint_filter_key_current() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.content_filter_key_path IS NOT NULL
       AND NEW.content_filter_key_for::text IS DISTINCT FROM NEW.content_filter_path::text THEN
        NEW.content_filter_key_path := NULL;
        NEW.content_filter_key_value := NULL;
        NEW.content_filter_key_for := NULL;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER endpoint_filter_key_current
    BEFORE INSERT OR UPDATE OF content_filter_path, content_filter_key_path, content_filter_key_value, content_filter_key_for
    ON outhook.endpoint FOR EACH ROW EXECUTE FUNCTION outhook.endpoint_filter_key_current();

-- Which owners filter: the fan-out casts a payload to jsonb only for them.
CREATE INDEX endpoint_filtered ON outhook.endpoint (owner) WHERE content_filter_path IS NOT NULL;
-- The three ways an owner's endpoint is found once it filters.
CREATE INDEX endpoint_unfiltered ON outhook.endpoint (owner) WHERE content_filter_path IS NULL;
CREATE INDEX endpoint_filtered_unkeyed ON outhook.endpoint (owner)
    WHERE content_filter_path IS NOT NULL AND content_filter_key_path IS NULL;
CREATE INDEX endpoint_filter_key ON outhook.endpoint (owner, content_filter_key_path, content_filter_key_value)
    WHERE content_filter_key_path IS NOT NULL;

-- The key paths `p_owner`'s filters use: an index skip scan, one probe a
-- path, however many endpoints share it. PL/pgSQL, so that its plan is
-- kept for the session (a SQL function called from a query is planned
-- again for every statement).
CREATE FUNCTION outhook.filter_key_paths(p_owner text) RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN ARRAY(
        WITH RECURSIVE paths(path) AS (
            SELECT min(k.content_filter_key_path) FROM outhook.endpoint k
            WHERE k.owner = p_owner AND k.content_filter_key_path IS NOT NULL
            UNION ALL
            SELECT (SELECT min(k.content_filter_key_path) FROM outhook.endpoint k
                    WHERE k.owner = p_owner AND k.content_filter_key_path > paths.path)
            FROM paths WHERE paths.path IS NOT NULL)
        SELECT path FROM paths WHERE path IS NOT NULL);
END;
$$;

-- The endpoints of `p_owner` an event of `p_event_type` goes to, given its
-- payload as jsonb (`p_doc`, NULL when the owner has no filtered endpoint)
-- and the owner's key paths (`p_paths`, from filter_key_paths), with the
-- same paths parsed (`p_jsonpaths`): parsed once a statement rather than
-- once an event, which cost 4 µs an event, measured.
CREATE FUNCTION outhook.endpoints_for(p_owner text, p_event_type text, p_doc jsonb, p_paths text[], p_jsonpaths jsonpath[])
RETURNS TABLE (id uuid, enabled boolean, fifo boolean)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    -- Endpoints without a filter.
    SELECT e.id, e.enabled, e.fifo FROM outhook.endpoint e
    WHERE e.owner = p_owner AND e.content_filter_path IS NULL
      AND (cardinality(e.event_types) = 0 OR p_event_type = ANY (e.event_types))
    UNION ALL
    -- Filters without a key: each one evaluated.
    SELECT e.id, e.enabled, e.fifo FROM outhook.endpoint e
    WHERE p_doc IS NOT NULL AND e.owner = p_owner
      AND e.content_filter_path IS NOT NULL AND e.content_filter_key_path IS NULL
      AND (cardinality(e.event_types) = 0 OR p_event_type = ANY (e.event_types))
      AND p_doc @@ e.content_filter_path
    UNION ALL
    -- Keyed filters: for each key path, each value the event holds there is
    -- looked up, and only what is found is evaluated (the OFFSET 0 keeps
    -- the planner from evaluating every filter of the owner first).
    SELECT e.id, e.enabled, e.fifo
    FROM unnest(p_paths, p_jsonpaths) AS kp(path, jsonpath)
    -- GROUP BY rather than DISTINCT: the same values for half the cost.
    CROSS JOIN LATERAL (SELECT v FROM jsonb_path_query(p_doc, kp.jsonpath) AS v GROUP BY v) found
    CROSS JOIN LATERAL (
        SELECT k.id, k.enabled, k.fifo, k.event_types, k.content_filter_path FROM outhook.endpoint k
        WHERE k.owner = p_owner AND k.content_filter_key_path = kp.path AND k.content_filter_key_value = found.v
        OFFSET 0) e
    WHERE p_doc IS NOT NULL
      AND (cardinality(e.event_types) = 0 OR p_event_type = ANY (e.event_types))
      AND p_doc @@ e.content_filter_path
$$;

-- The fan-out as before, with the catalog's strict check first and each
-- owner's endpoint matched by its content filter as well as its types.
-- While no endpoint filters, the fan-out is the old one. Once one does,
-- each owner in the statement is looked at once (does it filter, which
-- key paths), and a payload is cast to jsonb once per event, only when
-- its owner filters (the materialized CTEs keep the planner from doing
-- either again per endpoint).
--
-- JIT is off here: the planner's estimates for the lookups are far above
-- the JIT threshold on any table, and compiling took 30 ms and more per
-- statement, where the statement itself takes microseconds.
--
-- Sequential scans are off here too. Once autovacuum has analyzed an
-- endpoint table of a hundred rows (five pages), the planner reads the
-- whole table for each event's keyed lookup instead of probing the index:
-- 40 µs an event instead of 3, measured. Every query below has an index
-- for its predicate, so the setting only stops that choice; a table
-- without one (catalog_setting) is still read, as the only plan there is.
CREATE OR REPLACE FUNCTION outhook.outbox_fan_out() RETURNS trigger
LANGUAGE plpgsql SET jit = off SET enable_seqscan = off AS $$
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
            SELECT o.owner, o.filters,
                   CASE WHEN o.filters THEN outhook.filter_key_paths(o.owner) ELSE '{}' END AS paths
            FROM (SELECT d.owner, filtered AND EXISTS (SELECT 1 FROM outhook.endpoint fe
                                                       WHERE fe.owner = d.owner AND fe.content_filter_path IS NOT NULL) AS filters
                  FROM (SELECT DISTINCT owner FROM new_rows WHERE endpoint_id IS NULL) d) o
        ), owners AS MATERIALIZED (
            SELECT op.*, ARRAY(SELECT p::jsonpath FROM unnest(op.paths) AS p) AS jsonpaths FROM owner_paths op
        ), docs AS MATERIALIZED (
            SELECT n.id, n.owner, n.event_type,
                   CASE WHEN w.filters THEN n.payload::jsonb END AS doc,
                   w.paths, w.jsonpaths
            FROM new_rows n JOIN owners w ON w.owner = n.owner WHERE n.endpoint_id IS NULL)
        INSERT INTO outhook.delivery (message_id, endpoint_id, next_attempt_at)
        SELECT d.id, e.id, CASE WHEN e.enabled THEN now() ELSE 'infinity' END
        FROM docs d CROSS JOIN LATERAL outhook.endpoints_for(d.owner, d.event_type, d.doc, d.paths, d.jsonpaths) e
        UNION ALL
        SELECT n.id, n.endpoint_id, now() FROM new_rows n WHERE n.endpoint_id IS NOT NULL;
    ELSE
        FOR f IN
            WITH owner_paths AS MATERIALIZED (
                SELECT o.owner, o.filters,
                       CASE WHEN o.filters THEN outhook.filter_key_paths(o.owner) ELSE '{}' END AS paths
                FROM (SELECT d.owner, filtered AND EXISTS (SELECT 1 FROM outhook.endpoint fe
                                                           WHERE fe.owner = d.owner AND fe.content_filter_path IS NOT NULL) AS filters
                      FROM (SELECT DISTINCT owner FROM new_rows WHERE endpoint_id IS NULL) d) o
            ), owners AS MATERIALIZED (
                SELECT op.*, ARRAY(SELECT p::jsonpath FROM unnest(op.paths) AS p) AS jsonpaths FROM owner_paths op
            ), docs AS MATERIALIZED (
                SELECT n.id, n.owner, n.event_type,
                       CASE WHEN w.filters THEN n.payload::jsonb END AS doc,
                       w.paths, w.jsonpaths
                FROM new_rows n JOIN owners w ON w.owner = n.owner WHERE n.endpoint_id IS NULL)
            SELECT DISTINCT e.id FROM docs d
            CROSS JOIN LATERAL outhook.endpoints_for(d.owner, d.event_type, d.doc, d.paths, d.jsonpaths) e
            WHERE e.fifo
            UNION
            SELECT e.id FROM new_rows n JOIN outhook.endpoint e ON e.fifo AND e.id = n.endpoint_id
            ORDER BY 1
        LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('outhook.fifo:' || f::text, 0));
        END LOOP;
        WITH owner_paths AS MATERIALIZED (
            SELECT o.owner, o.filters,
                   CASE WHEN o.filters THEN outhook.filter_key_paths(o.owner) ELSE '{}' END AS paths
            FROM (SELECT d.owner, filtered AND EXISTS (SELECT 1 FROM outhook.endpoint fe
                                                       WHERE fe.owner = d.owner AND fe.content_filter_path IS NOT NULL) AS filters
                  FROM (SELECT DISTINCT owner FROM new_rows WHERE endpoint_id IS NULL) d) o
        ), owners AS MATERIALIZED (
            SELECT op.*, ARRAY(SELECT p::jsonpath FROM unnest(op.paths) AS p) AS jsonpaths FROM owner_paths op
        ), docs AS MATERIALIZED (
            SELECT n.id, n.owner, n.event_type,
                   CASE WHEN w.filters THEN n.payload::jsonb END AS doc,
                   w.paths, w.jsonpaths
            FROM new_rows n JOIN owners w ON w.owner = n.owner WHERE n.endpoint_id IS NULL
        ), targets AS (
            SELECT d.id AS message_id, e.id AS endpoint_id, e.enabled, e.fifo
            FROM docs d CROSS JOIN LATERAL outhook.endpoints_for(d.owner, d.event_type, d.doc, d.paths, d.jsonpaths) e
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

-- Operational events: a changed filter is an update too.
CREATE OR REPLACE FUNCTION outhook.endpoint_operational_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    e outhook.endpoint;
    kind text;
    extra jsonb := '{}';
BEGIN
    IF TG_OP = 'DELETE' THEN e := OLD; ELSE e := NEW; END IF;
    IF e.owner = 'outhook:operator'
       OR NOT EXISTS (SELECT 1 FROM outhook.endpoint WHERE owner = 'outhook:operator') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        kind := 'endpoint.created';
    ELSIF TG_OP = 'DELETE' THEN
        kind := 'endpoint.deleted';
    ELSIF OLD.enabled AND NOT NEW.enabled THEN
        kind := 'endpoint.disabled';
        extra := jsonb_build_object('reason', NEW.disabled_reason, 'disabled_at', NEW.disabled_at);
    ELSIF NOT OLD.enabled AND NEW.enabled THEN
        kind := 'endpoint.enabled';
    ELSIF (OLD.url, OLD.scheme, OLD.scheme_settings::text, OLD.event_types, OLD.headers::text, OLD.description,
           OLD.message_id_header, OLD.auto_disable_after_secs, OLD.content_filter)
          IS DISTINCT FROM
          (NEW.url, NEW.scheme, NEW.scheme_settings::text, NEW.event_types, NEW.headers::text, NEW.description,
           NEW.message_id_header, NEW.auto_disable_after_secs, NEW.content_filter) THEN
        kind := 'endpoint.updated';
    ELSE
        RETURN NULL;
    END IF;
    INSERT INTO outhook.outbox (event_type, payload, owner)
    VALUES (kind,
            json_build_object(
                'type', kind,
                'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'data', jsonb_build_object('endpoint_id', e.id, 'owner', e.owner,
                                           'url', regexp_replace(e.url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', '\1***@'),
                                           'enabled', e.enabled, 'event_types', e.event_types,
                                           'filter', e.content_filter) || extra),
            'outhook:operator');
    RETURN NULL;
END;
$$;
