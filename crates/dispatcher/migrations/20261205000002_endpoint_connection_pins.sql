-- A pinned server certificate, and certificate expiry on the endpoint's
-- health.
--
-- pinned_certificates: PEM; when set, the receiver's server must present
-- one of these exact certificates (compared by SHA-256 of its DER bytes),
-- whatever its chain and names, instead of one the public roots (or
-- ca_certificates) vouch for.
--
-- certificate_expires_at and certificate_expiring: the soonest expiry of
-- the client certificate (leaf) and the pinned certificates, and that
-- certificate's public description ({"setting", "subject", "issuer",
-- "fingerprint_sha256", "not_after"}), written with the settings.
-- certificate_warned_for: the expiry an `endpoint.certificate_expiring`
-- operational event was last raised for, so each expiry raises one.
ALTER TABLE outhook.endpoint_connection
    ADD COLUMN pinned_certificates    text,
    ADD COLUMN certificate_expires_at timestamptz,
    ADD COLUMN certificate_expiring   jsonb,
    ADD COLUMN certificate_warned_for timestamptz;

-- Maintenance looks for expiries within its warning period.
CREATE INDEX endpoint_connection_certificate_expiry ON outhook.endpoint_connection (certificate_expires_at)
    WHERE certificate_expires_at IS NOT NULL;
