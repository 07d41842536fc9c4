-- Least privilege. Four group roles (NOLOGIN), granted to the login roles
-- of each path:
--   outhook_producer  enqueues: INSERT on outhook.outbox (and SELECT of
--                     the ids and times an insert returns), nothing else;
--                     the fan-out runs as the schema's owner.
--   outhook_worker    `outhook run`: reads and writes the queue, the
--                     attempt log and the endpoints; not the API's tokens
--                     nor the portal's key.
--   outhook_api       `outhook serve` (with its worker): every table.
--   outhook_admin     the CLI's administration commands: every table.
-- Migrations stay with the schema's owner.
--
-- The roles are cluster-wide. They are made here when the migrating role
-- may (a superuser, or CREATEROLE); otherwise a DBA makes them and runs
-- `SELECT outhook.grant_roles()`, which this migration also runs.

-- What the producer's insert sets off runs as the schema's owner, with a
-- fixed search_path (every name in these bodies is qualified). A later
-- migration that redefines one of them must say SECURITY DEFINER again;
-- the roles test fails otherwise.
ALTER FUNCTION outhook.outbox_fan_out() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION outhook.outbox_payload_limit() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
-- The worker makes tomorrow's attempt partitions and drops expired ones,
-- which takes the owner's rights.
ALTER FUNCTION outhook.attempt_partitions_ensure(date, date) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Empties or drops one expired daily partition of the attempt log (`step`
-- 'truncate' or 'drop'), for a worker that does not own it. The name is
-- checked against the partitions' form.
CREATE FUNCTION outhook.attempt_partition_retire(name text, step text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name !~ '^attempt_p[0-9]{8}$' OR NOT EXISTS (
        SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'outhook.attempt'::regclass AND c.relname = name) THEN
        RAISE EXCEPTION '% is not a partition of outhook.attempt', name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF step = 'truncate' THEN
        EXECUTE format('TRUNCATE outhook.%I', name);
    ELSIF step = 'drop' THEN
        EXECUTE format('DROP TABLE outhook.%I', name);
    ELSE
        RAISE EXCEPTION 'step is truncate or drop, not %', step USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- (Re)grants every role its rights on the schema as it is now; a no-op for
-- a role that does not exist. Run by this migration, and by a DBA after
-- making the roles.
CREATE FUNCTION outhook.grant_roles() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'outhook_producer') THEN
        GRANT USAGE ON SCHEMA outhook TO outhook_producer;
        GRANT INSERT ON outhook.outbox TO outhook_producer;
        -- What an insert returns, and a repeated event_id's check: not the
        -- payloads, its own or anyone's.
        GRANT SELECT (id, uid, event_id, created_at) ON outhook.outbox TO outhook_producer;
        GRANT USAGE ON SEQUENCE outhook.outbox_id_seq TO outhook_producer;
    END IF;
    FOREACH r IN ARRAY ARRAY['outhook_worker', 'outhook_api', 'outhook_admin'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
        EXECUTE format('GRANT USAGE ON SCHEMA outhook TO %I', r);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA outhook TO %I', r);
        EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA outhook TO %I', r);
        EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outhook TO %I', r);
        -- Tables and sequences later migrations add (by this same owner).
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA outhook GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', r);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA outhook GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %I', r);
        -- The migrations' bookkeeping is read, not written.
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON outhook._migrations FROM %I', r);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'outhook_worker') THEN
        -- The API's token hashes, its idempotency keys and the portal's
        -- signing key are not the worker's.
        REVOKE ALL ON outhook.api_token, outhook.server_key, outhook.idempotency FROM outhook_worker;
    END IF;
END;
$$;

DO $$
DECLARE
    r text;
BEGIN
    IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
        FOREACH r IN ARRAY ARRAY['outhook_producer', 'outhook_worker', 'outhook_api', 'outhook_admin'] LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', r);
                -- Another database of the cluster, migrating at the same
                -- moment, made it first.
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                END;
            END IF;
        END LOOP;
    ELSE
        RAISE NOTICE 'outhook: % may not create roles; make outhook_producer, outhook_worker, outhook_api and outhook_admin, then run SELECT outhook.grant_roles()', current_user;
    END IF;
    PERFORM outhook.grant_roles();
END;
$$;
