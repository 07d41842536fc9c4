-- Operational events: Outhook tells the provider about itself through its
-- own outbox, to the endpoints of the reserved owner 'outhook:operator'
-- (signed like any delivery; the admin layer requires Standard Webhooks
-- for them). Endpoint changes are caught by a trigger, so every path (CLI,
-- API, portal, plain SQL, a 410, the auto-disable rule) emits them, in the
-- same transaction as the change. Changes to the operator's own endpoints
-- emit nothing, and nothing is written while no operator endpoint exists.
-- Credentials in a URL are replaced by ***; header values are never sent.
CREATE FUNCTION outhook.endpoint_operational_event() RETURNS trigger
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
           OLD.message_id_header, OLD.auto_disable_after_secs)
          IS DISTINCT FROM
          (NEW.url, NEW.scheme, NEW.scheme_settings::text, NEW.event_types, NEW.headers::text, NEW.description,
           NEW.message_id_header, NEW.auto_disable_after_secs) THEN
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
                                           'enabled', e.enabled, 'event_types', e.event_types) || extra),
            'outhook:operator');
    RETURN NULL;
END;
$$;

CREATE TRIGGER endpoint_operational_event
    AFTER INSERT OR UPDATE OR DELETE ON outhook.endpoint
    FOR EACH ROW EXECUTE FUNCTION outhook.endpoint_operational_event();
