-- What a receiver demands beyond a signed POST, per endpoint: a client
-- certificate (mutual TLS), extra trusted CA certificates, a proxy (or
-- none), and credentials (Basic, a bearer token, or OAuth2 client
-- credentials). A row only for endpoints that use any of it: endpoints
-- without one are sent as before, on the worker's shared client.
--
-- Secrets (the client key, a password, a token, a client secret) are one
-- JSON object in `secrets`, sealed under the main key like every other
-- secret; the rest is public and readable back.
CREATE TABLE outhook.endpoint_connection (
    endpoint_id         uuid PRIMARY KEY REFERENCES outhook.endpoint (id) ON DELETE CASCADE,
    -- NULL: the worker's proxy (--proxy), if any; '': none (direct);
    -- else this proxy's URL (http://, https://, socks5://, socks5h://).
    proxy               text,
    -- The client certificate chain (PEM), its key being in `secrets`.
    client_certificate  text,
    -- Extra CA certificates (PEM) trusted for this endpoint's server, on
    -- top of the public roots.
    ca_certificates     text,
    -- `basic`, `bearer` or `oauth2`.
    auth                text CONSTRAINT endpoint_connection_auth CHECK (auth IN ('basic', 'bearer', 'oauth2')),
    -- Public settings of `auth`: the username (basic); token_url,
    -- client_id, scope, audience (oauth2).
    auth_settings       jsonb NOT NULL DEFAULT '{}',
    secrets             text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- A change here reaches the workers like a change to the endpoint.
CREATE TRIGGER endpoint_connection_insert AFTER INSERT ON outhook.endpoint_connection
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION outhook.endpoint_secret_touch();
CREATE TRIGGER endpoint_connection_update AFTER UPDATE ON outhook.endpoint_connection
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION outhook.endpoint_secret_touch();
CREATE TRIGGER endpoint_connection_delete AFTER DELETE ON outhook.endpoint_connection
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION outhook.endpoint_secret_touch();

-- The OAuth2 access token of an endpoint, shared by every worker until
-- shortly before it expires (sealed). Fetched by one worker at a time: the
-- row is locked while its token is fetched.
CREATE TABLE outhook.oauth_token (
    endpoint_id  uuid PRIMARY KEY REFERENCES outhook.endpoint (id) ON DELETE CASCADE,
    token        text,
    expires_at   timestamptz,
    fetched_at   timestamptz NOT NULL DEFAULT now(),
    fetches      bigint NOT NULL DEFAULT 0
);
