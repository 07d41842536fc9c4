//! API tokens: made and revoked from the CLI, checked on every request.
//!
//! A token reads `oh_<id>_<secret>`. Only SHA-256 of the secret part is
//! stored; it is compared in constant time. The token is shown once.

use std::time::Duration;

use chrono::Utc;
use outhook_dispatcher::db::api_token::{
    ApiToken, api_token_credential, api_token_insert, api_token_list, api_token_revoke,
};
use outhook_signer::Secret;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Error, Result, Scope};

/// The prefix every token starts with, so secret scanners can find leaks.
pub const PREFIX: &str = "oh_";

/// Makes a token for `scope`, valid for `ttl` if given. Returns it as
/// stored and its text, which is never shown again.
pub async fn create(pool: &PgPool, name: &str, scope: &Scope, ttl: Option<Duration>) -> Result<(ApiToken, Secret)> {
    if let Scope::Owner(o) = scope
        && o.trim().is_empty()
    {
        return Err(Error::parameter("owner", "required"));
    }
    let secret = Secret::generate_hex().map_err(|e| Error::Internal(e.to_string()))?;
    let hash = Sha256::digest(secret.expose().as_bytes());
    let expires_at = ttl
        .map(|t| chrono::Duration::from_std(t).map(|t| Utc::now() + t))
        .transpose()
        .map_err(|_| Error::parameter("expires", "too far in the future"))?;
    let token = api_token_insert(pool, name, scope.owner(), &hash, expires_at).await?;
    let text = Secret::new(format!("{PREFIX}{}_{}", token.id.simple(), secret.expose()));
    Ok((token, text))
}

/// Every token (never their secrets).
pub async fn list(pool: &PgPool) -> Result<Vec<ApiToken>> {
    Ok(api_token_list(pool).await?)
}

/// Revokes a token by id.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<ApiToken> {
    Ok(api_token_revoke(pool, id).await?)
}

/// The id part of a token's text, if it has the token's shape.
pub fn id_of(text: &str) -> Option<Uuid> {
    parse(text).map(|(id, _)| id)
}

/// Splits `oh_<id>_<secret>`.
fn parse(text: &str) -> Option<(Uuid, &str)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    Some((Uuid::try_parse(id).ok()?, secret))
}

/// The scope of a bearer token, or `None` when it is malformed, unknown,
/// revoked or expired.
pub async fn authenticate(pool: &PgPool, text: &str) -> Result<Option<Scope>> {
    let Some((id, secret)) = parse(text) else {
        return Ok(None);
    };
    let Some(credential) = api_token_credential(pool, id).await? else {
        return Ok(None);
    };
    let presented = Sha256::digest(secret.as_bytes());
    let matches: bool = presented.as_slice().ct_eq(credential.secret_hash.as_slice()).into();
    if !matches || !credential.active {
        return Ok(None);
    }
    Ok(Some(match credential.owner {
        None => Scope::Admin,
        Some(o) => Scope::Owner(o),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_splits_into_id_and_secret() {
        let id = Uuid::new_v4();
        let text = format!("oh_{}_abc", id.simple());
        assert_eq!(parse(&text), Some((id, "abc")));
        assert_eq!(parse("oh_nope_abc"), None);
        assert_eq!(parse("Bearer x"), None);
        assert_eq!(parse(&format!("oh_{}", id.simple())), None);
    }
}
