-- Plain SQL is a first-class way to drive Outhook, so a change to an
-- endpoint made by plain SQL must reach the workers like one made by the
-- CLI or the API. Workers reuse an endpoint's settings while its
-- `updated_at` stays the same; these triggers move it on every change to
-- the endpoint's row and to its secrets, however the change was made.
CREATE FUNCTION outhook.endpoint_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := greatest(now(), OLD.updated_at + interval '1 microsecond');
    RETURN NEW;
END;
$$;

CREATE TRIGGER endpoint_touch BEFORE UPDATE ON outhook.endpoint
    FOR EACH ROW EXECUTE FUNCTION outhook.endpoint_touch();

CREATE FUNCTION outhook.endpoint_secret_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outhook.endpoint SET updated_at = now()
    WHERE id IN (SELECT DISTINCT endpoint_id FROM changed);
    RETURN NULL;
END;
$$;

CREATE TRIGGER endpoint_secret_insert AFTER INSERT ON outhook.endpoint_secret
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION outhook.endpoint_secret_touch();
CREATE TRIGGER endpoint_secret_update AFTER UPDATE ON outhook.endpoint_secret
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION outhook.endpoint_secret_touch();
CREATE TRIGGER endpoint_secret_delete AFTER DELETE ON outhook.endpoint_secret
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION outhook.endpoint_secret_touch();
