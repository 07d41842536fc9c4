//! `outhook.endpoint_connection` and `outhook.oauth_token`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::connection::{ExpiringCertificate, StoredConnection};
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    stored: StoredConnection,
    updated_at: DateTime<Utc>,
}

/// An endpoint's stored connection settings, if it has any, and when they
/// last changed.
pub async fn endpoint_connection_get(
    pool: &PgPool,
    endpoint: Uuid,
) -> Result<Option<(StoredConnection, DateTime<Utc>)>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT proxy, client_certificate, ca_certificates, pinned_certificates, auth, auth_settings, secrets,
                updated_at
         FROM outhook.endpoint_connection WHERE endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.stored, r.updated_at)))
}

/// Stores an endpoint's connection settings (`None`: it has none), in one
/// transaction with forgetting its OAuth2 token, which the old settings
/// fetched.
pub async fn endpoint_connection_put(pool: &PgPool, endpoint: Uuid, stored: Option<&StoredConnection>) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM outhook.oauth_token WHERE endpoint_id = $1")
        .bind(endpoint)
        .execute(&mut *tx)
        .await?;
    match stored {
        None => {
            sqlx::query("DELETE FROM outhook.endpoint_connection WHERE endpoint_id = $1")
                .bind(endpoint)
                .execute(&mut *tx)
                .await?;
        }
        Some(s) => {
            let expiring = s.soonest_expiry();
            sqlx::query(
                "INSERT INTO outhook.endpoint_connection
                     (endpoint_id, proxy, client_certificate, ca_certificates, pinned_certificates, auth,
                      auth_settings, secrets, certificate_expires_at, certificate_expiring)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (endpoint_id) DO UPDATE SET
                     proxy = excluded.proxy, client_certificate = excluded.client_certificate,
                     ca_certificates = excluded.ca_certificates, pinned_certificates = excluded.pinned_certificates,
                     auth = excluded.auth, auth_settings = excluded.auth_settings, secrets = excluded.secrets,
                     certificate_expires_at = excluded.certificate_expires_at,
                     certificate_expiring = excluded.certificate_expiring, updated_at = now()",
            )
            .bind(endpoint)
            .bind(&s.proxy)
            .bind(&s.client_certificate)
            .bind(&s.ca_certificates)
            .bind(&s.pinned_certificates)
            .bind(&s.auth)
            .bind(&s.auth_settings)
            .bind(&s.secrets)
            .bind(expiring.as_ref().map(|c| c.not_after))
            .bind(expiring.as_ref().map(sqlx::types::Json))
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// What is known of an endpoint's shared OAuth2 token (never the token).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct TokenState {
    /// When the current token expires, if there is one.
    pub expires_at: Option<DateTime<Utc>>,
    /// When a token was last fetched.
    pub fetched_at: DateTime<Utc>,
    /// Tokens fetched since the settings last changed, by every worker.
    pub fetches: i64,
}

/// The shared OAuth2 token's state of an endpoint.
pub async fn oauth_token_state(pool: &PgPool, endpoint: Uuid) -> Result<Option<TokenState>> {
    Ok(
        sqlx::query_as("SELECT expires_at, fetched_at, fetches FROM outhook.oauth_token WHERE endpoint_id = $1")
            .bind(endpoint)
            .fetch_optional(pool)
            .await?,
    )
}

/// The certificate that expires first in each endpoint's connection
/// settings, for the endpoints asked for that have one.
pub async fn certificate_expiry_list(
    pool: &PgPool,
    endpoints: &[Uuid],
) -> Result<Vec<(Uuid, sqlx::types::Json<ExpiringCertificate>)>> {
    Ok(sqlx::query_as(
        "SELECT endpoint_id, certificate_expiring FROM outhook.endpoint_connection
         WHERE endpoint_id = ANY($1) AND certificate_expiring IS NOT NULL",
    )
    .bind(endpoints)
    .fetch_all(pool)
    .await?)
}

/// Raises `endpoint.certificate_expiring` for each endpoint whose soonest
/// certificate expires within `within` (or has expired) and has not been
/// warned about for that expiry, and returns those endpoints. Run by every
/// worker's maintenance: the row's update is the claim, so each expiry is
/// raised once. Like the other operational events, nothing is written for
/// the operator's own endpoints, or while the operator has none.
pub async fn certificate_expiry_warn(pool: &PgPool, within: std::time::Duration) -> Result<Vec<Uuid>> {
    let within = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::days(30));
    Ok(sqlx::query_scalar(
        "WITH due AS (
             UPDATE outhook.endpoint_connection c SET certificate_warned_for = c.certificate_expires_at
             WHERE c.certificate_expires_at < now() + $1
               AND c.certificate_warned_for IS DISTINCT FROM c.certificate_expires_at
             RETURNING c.endpoint_id, c.certificate_expiring
         ), raised AS (
             INSERT INTO outhook.outbox (event_type, payload, owner)
             SELECT 'endpoint.certificate_expiring',
                    json_build_object(
                        'type', 'endpoint.certificate_expiring',
                        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                        'data', jsonb_build_object(
                            'endpoint_id', e.id, 'owner', e.owner,
                            'url', regexp_replace(e.url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', '\\1***@'),
                            'enabled', e.enabled,
                            'expired', (due.certificate_expiring->>'not_after')::timestamptz <= now(),
                            'certificate', due.certificate_expiring)),
                    'outhook:operator'
             FROM due JOIN outhook.endpoint e ON e.id = due.endpoint_id
             WHERE e.owner <> 'outhook:operator'
               AND EXISTS (SELECT 1 FROM outhook.endpoint WHERE owner = 'outhook:operator')
         )
         SELECT endpoint_id FROM due",
    )
    .bind(within)
    .fetch_all(pool)
    .await?)
}
