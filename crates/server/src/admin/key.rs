//! The provider's public keys, published without a token.

use outhook_dispatcher::db::signing_key::{SigningKey, signing_key_get, signing_key_list};
use sqlx::PgPool;

use super::Result;

/// Every signing key's public half.
pub async fn list(pool: &PgPool) -> Result<Vec<SigningKey>> {
    Ok(signing_key_list(pool).await?)
}

/// One key's public half, by id or name.
pub async fn get(pool: &PgPool, key: &str) -> Result<SigningKey> {
    Ok(signing_key_get(pool, key).await?)
}

/// Every key as a JSON Web Key Set (RFC 7517), each with `kid` = its name.
pub fn jwks(keys: &[SigningKey]) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let mut jwk = k.public_key_jwk.clone();
            if let Some(map) = jwk.as_object_mut() {
                map.insert("kid".into(), k.name.clone().into());
            }
            jwk
        })
        .collect();
    serde_json::json!({ "keys": keys })
}
