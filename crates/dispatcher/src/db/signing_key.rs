//! `outhook.signing_key`: the provider's RSA key pairs.

use chrono::{DateTime, Utc};
use outhook_signer::RsaKeyPair;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// A signing key's public side.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct SigningKey {
    /// Its id.
    pub id: Uuid,
    /// A unique name.
    pub name: String,
    /// `rsa-sha256`.
    pub algorithm: String,
    /// SubjectPublicKeyInfo PEM, for publication.
    pub public_key_pem: String,
    /// The same key as a JWK.
    pub public_key_jwk: serde_json::Value,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// Stores a key pair under `name` and returns its public side.
pub async fn signing_key_insert(pool: &PgPool, name: &str, key: &RsaKeyPair) -> Result<SigningKey> {
    let public = key.public_key()?;
    let jwk: serde_json::Value =
        serde_json::from_str(&public.to_jwk()).map_err(|e| crate::Error::Config(e.to_string()))?;
    let private = key.to_pkcs8_pem()?;
    let stored = crate::secrets::keyring()?.seal(crate::secrets::Kind::PrivateKey, private.as_str())?;
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query_as(
        "INSERT INTO outhook.signing_key (name, private_key_pem, public_key_pem, public_key_jwk)
         VALUES ($1, $2, $3, $4)
         RETURNING id, name, algorithm, public_key_pem, public_key_jwk, created_at",
    )
    .bind(name)
    .bind(stored)
    .bind(public.to_pem())
    .bind(jwk)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Every signing key's public side.
pub async fn signing_key_list(pool: &PgPool) -> Result<Vec<SigningKey>> {
    Ok(sqlx::query_as(
        "SELECT id, name, algorithm, public_key_pem, public_key_jwk, created_at FROM outhook.signing_key ORDER BY created_at",
    )
    .fetch_all(pool)
    .await?)
}

/// One signing key by id or name.
pub async fn signing_key_get(pool: &PgPool, id_or_name: &str) -> Result<SigningKey> {
    let id = Uuid::parse_str(id_or_name).ok();
    sqlx::query_as(
        "SELECT id, name, algorithm, public_key_pem, public_key_jwk, created_at FROM outhook.signing_key
         WHERE id = $1 OR name = $2",
    )
    .bind(id)
    .bind(id_or_name)
    .fetch_optional(pool)
    .await?
    .ok_or(crate::Error::NotFound("signing key"))
}
