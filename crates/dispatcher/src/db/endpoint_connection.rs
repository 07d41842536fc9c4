//! `outhook.endpoint_connection` and `outhook.oauth_token`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::connection::StoredConnection;
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
        "SELECT proxy, client_certificate, ca_certificates, auth, auth_settings, secrets, updated_at
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
            sqlx::query(
                "INSERT INTO outhook.endpoint_connection
                     (endpoint_id, proxy, client_certificate, ca_certificates, auth, auth_settings, secrets)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (endpoint_id) DO UPDATE SET
                     proxy = excluded.proxy, client_certificate = excluded.client_certificate,
                     ca_certificates = excluded.ca_certificates, auth = excluded.auth,
                     auth_settings = excluded.auth_settings, secrets = excluded.secrets, updated_at = now()",
            )
            .bind(endpoint)
            .bind(&s.proxy)
            .bind(&s.client_certificate)
            .bind(&s.ca_certificates)
            .bind(&s.auth)
            .bind(&s.auth_settings)
            .bind(&s.secrets)
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
