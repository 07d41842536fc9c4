//! `outhook.server_key`: keys the server makes for itself (the portal's
//! signing key), shared by every server process on the database.

use outhook_signer::Secret;
use sqlx::PgPool;

use crate::error::Result;

/// The key named `name`; when there is none yet, `candidate` is stored and
/// returned. Concurrent first calls agree on one key.
pub async fn server_key_get_or_insert(pool: &PgPool, name: &str, candidate: &Secret) -> Result<Secret> {
    // A racing first insert commits after this statement's snapshot: the
    // insert then does nothing and the select sees nothing, so ask again.
    for _ in 0..3 {
        if let Some(secret) = get_or_insert_once(pool, name, candidate).await? {
            return Ok(secret);
        }
    }
    Err(crate::Error::NotFound("server key"))
}

async fn get_or_insert_once(pool: &PgPool, name: &str, candidate: &Secret) -> Result<Option<Secret>> {
    let row: Option<(String,)> = sqlx::query_as(
        "WITH new AS (
             INSERT INTO outhook.server_key (name, secret) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING RETURNING secret
         )
         SELECT secret FROM new
         UNION ALL
         SELECT secret FROM outhook.server_key WHERE name = $1
         LIMIT 1",
    )
    .bind(name)
    .bind(candidate.expose())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(s,)| Secret::new(s)))
}
