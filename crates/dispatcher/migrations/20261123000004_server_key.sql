-- Keys the server makes for itself, shared by every `outhook serve` process
-- on this database: `portal` signs the portal's links, session cookies and
-- CSRF tokens. Made on first use; deleting the row signs everyone out.
CREATE TABLE outhook.server_key (
    name       text PRIMARY KEY,
    secret     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
