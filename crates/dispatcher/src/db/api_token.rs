//! `outhook.api_token`: the HTTP API's bearer tokens, stored as hashes.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// A token as listed: never its secret.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ApiToken {
    /// Its id, also the token's visible prefix.
    pub id: Uuid,
    /// A label.
    pub name: String,
    /// The owner it is limited to; `None` for an admin token.
    pub owner: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What authentication needs: the stored hash and whether it still works.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenCredential {
    /// SHA-256 of the token's secret part.
    pub secret_hash: Vec<u8>,
    /// The owner it is limited to; `None` for an admin token.
    pub owner: Option<String>,
    /// Whether it is unexpired and unrevoked now.
    pub active: bool,
}

/// Stores a token's hash.
pub async fn api_token_insert(
    pool: &PgPool,
    name: &str,
    owner: Option<&str>,
    secret_hash: &[u8],
    expires_at: Option<DateTime<Utc>>,
) -> Result<ApiToken> {
    let mut tx = pool.begin().await?;
    let token = sqlx::query_as(
        "INSERT INTO outhook.api_token (name, owner, secret_hash, expires_at) VALUES ($1, $2, $3, $4)
         RETURNING id, name, owner, created_at, expires_at, revoked_at",
    )
    .bind(name)
    .bind(owner)
    .bind(secret_hash)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(token)
}

/// Every token, newest first.
pub async fn api_token_list(pool: &PgPool) -> Result<Vec<ApiToken>> {
    Ok(sqlx::query_as(
        "SELECT id, name, owner, created_at, expires_at, revoked_at FROM outhook.api_token ORDER BY created_at DESC",
    )
    .fetch_all(pool)
    .await?)
}

/// The credential of token `id`, if it exists.
pub async fn api_token_credential(pool: &PgPool, id: Uuid) -> Result<Option<ApiTokenCredential>> {
    Ok(sqlx::query_as(
        "SELECT secret_hash, owner, revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS active
         FROM outhook.api_token WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Revokes token `id`; revoking twice keeps the first time.
pub async fn api_token_revoke(pool: &PgPool, id: Uuid) -> Result<ApiToken> {
    let mut tx = pool.begin().await?;
    let token = sqlx::query_as(
        "UPDATE outhook.api_token SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
         RETURNING id, name, owner, created_at, expires_at, revoked_at",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(crate::Error::NotFound("token"))?;
    tx.commit().await?;
    Ok(token)
}
