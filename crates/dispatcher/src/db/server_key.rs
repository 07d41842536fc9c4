//! `outhook.server_key`: keys the server makes for itself (the portal's
//! signing key), shared by every server process on the database, and
//! sealed under the main key like every other secret
//! ([`crate::secrets`]).

use outhook_signer::Secret;
use sqlx::PgPool;

use crate::error::Result;
use crate::secrets::{Keyring, Kind};

/// The key named `name`; when there is none yet, `candidate` is stored
/// (sealed with the process's main key, if it has one) and returned.
/// Concurrent first calls agree on one key.
pub async fn server_key_get_or_insert(pool: &PgPool, name: &str, candidate: &Secret) -> Result<Secret> {
    server_key_get_or_insert_with(pool, crate::secrets::keyring()?, name, candidate).await
}

/// [`server_key_get_or_insert`] with this keyring.
pub async fn server_key_get_or_insert_with(
    pool: &PgPool,
    keyring: &Keyring,
    name: &str,
    candidate: &Secret,
) -> Result<Secret> {
    let sealed = Secret::new(keyring.seal(Kind::ServerKey, candidate.expose())?);
    // A racing first insert commits after this statement's snapshot: the
    // insert then does nothing and the select sees nothing, so ask again.
    for _ in 0..3 {
        if let Some(stored) = get_or_insert_once(pool, name, &sealed).await? {
            return Ok(Secret::new(keyring.open(Kind::ServerKey, stored.expose())?));
        }
    }
    Err(crate::Error::NotFound("server key"))
}

async fn get_or_insert_once(pool: &PgPool, name: &str, candidate: &Secret) -> Result<Option<Secret>> {
    let mut tx = pool.begin().await?;
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
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.map(|(s,)| Secret::new(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MainKey;

    fn ring() -> Keyring {
        Keyring::new(
            Some(MainKey::from_base64(&MainKey::generate().unwrap()).unwrap()),
            Vec::new(),
        )
    }

    async fn stored(pool: &PgPool) -> String {
        sqlx::query_scalar("SELECT secret FROM outhook.server_key WHERE name = 'portal'")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_portal_key_is_sealed_at_rest_and_every_process_reads_the_same_key() {
        let (_, pool) = outhook_testkit::postgres::database().await.unwrap();
        crate::migrate(&pool).await.unwrap();
        let ring = ring();
        let first = Secret::new("a".repeat(64));
        let got = server_key_get_or_insert_with(&pool, &ring, "portal", &first)
            .await
            .unwrap();
        assert_eq!(got.expose(), first.expose());
        let at_rest = stored(&pool).await;
        assert!(
            at_rest.starts_with("ohenc:v1:") && !at_rest.contains(first.expose()),
            "{at_rest}"
        );
        // A second process with its own candidate gets the stored key.
        let again = server_key_get_or_insert_with(&pool, &ring, "portal", &Secret::new("b".repeat(64)))
            .await
            .unwrap();
        assert_eq!(again.expose(), first.expose());
        // One without the main key is refused, rather than signing with another key.
        assert!(
            server_key_get_or_insert_with(&pool, &Keyring::plain(), "portal", &first)
                .await
                .is_err()
        );
        assert!(crate::secrets::check(&pool, &Keyring::plain()).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_portal_key_stored_in_plain_text_is_read_and_then_sealed_by_a_reseal() {
        let (_, pool) = outhook_testkit::postgres::database().await.unwrap();
        crate::migrate(&pool).await.unwrap();
        let plain = Secret::new("c".repeat(64));
        server_key_get_or_insert_with(&pool, &Keyring::plain(), "portal", &plain)
            .await
            .unwrap();
        assert_eq!(stored(&pool).await, plain.expose());
        let ring = ring();
        assert_eq!(crate::secrets::check(&pool, &ring).await.unwrap().plain, 1);
        let read = server_key_get_or_insert_with(&pool, &ring, "portal", &Secret::new("d".repeat(64)))
            .await
            .unwrap();
        assert_eq!(read.expose(), plain.expose());
        assert_eq!(crate::secrets::reseal_all(&pool, &ring, 10).await.unwrap(), 1);
        assert!(stored(&pool).await.starts_with("ohenc:v1:"));
        let read = server_key_get_or_insert_with(&pool, &ring, "portal", &Secret::new("e".repeat(64)))
            .await
            .unwrap();
        assert_eq!(read.expose(), plain.expose(), "the same key, sealed");
    }
}
