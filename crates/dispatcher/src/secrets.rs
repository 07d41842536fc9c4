//! Secrets at rest: endpoint secrets, RSA private keys and the server's own
//! keys (the portal's signing key) are sealed with AES-256-GCM (aws-lc-rs)
//! under a main key before they reach PostgreSQL.
//!
//! A sealed value reads `ohenc:v1:<key id>:<base64 of nonce, ciphertext and
//! tag>`; the key id is the first 8 hex digits of the main key's SHA-256, so
//! every row says which key sealed it. The additional data names the kind of
//! secret, so a sealed endpoint secret cannot be passed off as a private key.
//! A value without the prefix is plain text (written before a main key was
//! given, or by a process that has none) and is read as it is.
//!
//! The process's keyring comes from the environment on first use:
//! `OUTHOOK_MAIN_KEY` (base64 of 32 bytes, `outhook secrets new-main-key`)
//! or `OUTHOOK_MAIN_KEY_FILE`, plus, while a rotation is under way,
//! `OUTHOOK_OLD_MAIN_KEYS` (comma-separated) to read rows sealed with the
//! previous key. An embedding application may [`install`] its own keyring
//! before the first use instead.

use std::sync::OnceLock;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::error::{Error, Result};

/// What a sealed value is, bound into its additional data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A row of `outhook.endpoint_secret`.
    EndpointSecret,
    /// `outhook.signing_key.private_key_pem`.
    PrivateKey,
    /// `outhook.server_key.secret` (the portal's signing key).
    ServerKey,
    /// `outhook.endpoint_connection.secrets` (client keys, passwords,
    /// tokens, client secrets of one endpoint).
    ConnectionSecrets,
    /// `outhook.oauth_token.token` (an OAuth2 access token).
    OAuthToken,
}

impl Kind {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::EndpointSecret => b"outhook.endpoint_secret.secret",
            Self::PrivateKey => b"outhook.signing_key.private_key_pem",
            Self::ServerKey => b"outhook.server_key.secret",
            Self::ConnectionSecrets => b"outhook.endpoint_connection.secrets",
            Self::OAuthToken => b"outhook.oauth_token.token",
        }
    }
}

const PREFIX: &str = "ohenc:v1:";

/// One main key.
pub struct MainKey {
    id: String,
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for MainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MainKey({}, ***)", self.id)
    }
}

impl MainKey {
    /// A key from its base64 text (32 bytes).
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = zeroize::Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
            Error::Config("a main key is the base64 of 32 bytes (outhook secrets new-main-key)".into())
        })?);
        if bytes.len() != 32 {
            return Err(Error::Config(format!(
                "a main key is 32 bytes; this one is {}",
                bytes.len()
            )));
        }
        let digest = Sha256::digest(&bytes[..]);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| Error::Config("the main key was refused by AES-256-GCM".into()))?;
        Ok(Self { id, key })
    }

    /// A new random key, as base64.
    pub fn generate() -> Result<String> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| Error::Config("no randomness for a main key".into()))?;
        Ok(STANDARD.encode(&bytes[..]))
    }

    /// Its id: the first 8 hex digits of its SHA-256.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keys a process holds: the current one seals, every one opens.
#[derive(Debug, Default)]
pub struct Keyring {
    current: Option<MainKey>,
    old: Vec<MainKey>,
}

impl Keyring {
    /// No key: secrets are written in plain text.
    pub fn plain() -> Self {
        Self::default()
    }

    /// `current` seals; it and `old` open.
    pub fn new(current: Option<MainKey>, old: Vec<MainKey>) -> Self {
        Self { current, old }
    }

    /// From `OUTHOOK_MAIN_KEY` or `OUTHOOK_MAIN_KEY_FILE`, and
    /// `OUTHOOK_OLD_MAIN_KEYS`.
    pub fn from_env() -> Result<Self> {
        Self::from_values(
            std::env::var("OUTHOOK_MAIN_KEY").ok().as_deref(),
            std::env::var("OUTHOOK_MAIN_KEY_FILE").ok().as_deref(),
            std::env::var("OUTHOOK_OLD_MAIN_KEYS").ok().as_deref(),
        )
    }

    /// From the values of those three settings, wherever they were given
    /// (a settings file): the main key's base64, or a file holding it (the
    /// key wins), and the old keys, comma-separated. Blank counts as unset.
    pub fn from_values(
        main_key: Option<&str>,
        main_key_file: Option<&str>,
        old_main_keys: Option<&str>,
    ) -> Result<Self> {
        let current = match (main_key, main_key_file) {
            (Some(text), _) if !text.trim().is_empty() => Some(MainKey::from_base64(text)?),
            (_, Some(path)) if !path.trim().is_empty() => {
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(path.trim()).map_err(|e| {
                    Error::Config(format!("reading the main key file (OUTHOOK_MAIN_KEY_FILE) {path}: {e}"))
                })?);
                Some(MainKey::from_base64(&text)?)
            }
            _ => None,
        };
        let old = match old_main_keys {
            Some(list) => list
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(MainKey::from_base64)
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        Ok(Self { current, old })
    }

    /// The sealing key's id, if there is one.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(MainKey::id)
    }

    /// Whether it can open values sealed with key `id`.
    pub fn has(&self, id: &str) -> bool {
        self.current.iter().chain(&self.old).any(|k| k.id == id)
    }

    /// `plain` sealed with the current key, or `plain` itself without one.
    pub fn seal(&self, kind: Kind, plain: &str) -> Result<String> {
        let Some(key) = &self.current else {
            return Ok(plain.to_owned());
        };
        let mut in_out = plain.as_bytes().to_vec();
        let nonce = key
            .key
            .seal_in_place_append_tag(Aad::from(kind.aad()), &mut in_out)
            .map_err(|_| Error::Config("sealing a secret failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + in_out.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Ok(format!("{PREFIX}{}:{}", key.id, STANDARD.encode(out)))
    }

    /// A stored value opened: sealed values with their key, plain values
    /// as they are.
    pub fn open(&self, kind: Kind, stored: &str) -> Result<String> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, body) = rest
            .split_once(':')
            .ok_or_else(|| Error::Config("a sealed secret is malformed".into()))?;
        let key = self
            .current
            .iter()
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| {
                Error::Config(format!(
                    "a secret is sealed with main key {id}, which this process does not have (OUTHOOK_MAIN_KEY)"
                ))
            })?;
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| Error::Config("a sealed secret is malformed".into()))?;
        if bytes.len() < NONCE_LEN {
            return Err(Error::Config("a sealed secret is malformed".into()));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::Config("a sealed secret is malformed".into()))?;
        let mut in_out = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(kind.aad()), &mut in_out)
            .map_err(|_| {
                Error::Config(format!(
                    "a secret sealed with main key {id} does not open: altered or wrong key"
                ))
            })?;
        String::from_utf8(plain.to_vec()).map_err(|_| Error::Config("a sealed secret is not text".into()))
    }
}

/// The key id of a stored value, if it is sealed.
pub fn sealed_with(stored: &str) -> Option<&str> {
    stored.strip_prefix(PREFIX)?.split_once(':').map(|(id, _)| id)
}

static KEYRING: OnceLock<Keyring> = OnceLock::new();

/// Sets the process's keyring. Call before anything reads or writes a
/// secret; returns the keyring back if one is already in use.
pub fn install(keyring: Keyring) -> std::result::Result<(), Keyring> {
    KEYRING.set(keyring)
}

/// The process's keyring: the installed one, else the environment's.
pub fn keyring() -> Result<&'static Keyring> {
    if let Some(k) = KEYRING.get() {
        return Ok(k);
    }
    let k = Keyring::from_env()?;
    Ok(KEYRING.get_or_init(|| k))
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Secrets and private keys stored in plain text.
    pub plain: i64,
    /// Sealed ones, by key id.
    pub sealed: Vec<(String, i64)>,
}

/// Whether the connected role has `privilege` on `table`.
async fn may(pool: &PgPool, table: &str, privilege: &str) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT has_table_privilege($1, $2)")
        .bind(table)
        .bind(privilege)
        .fetch_one(pool)
        .await?)
}

/// Counts the stored secrets by how they are sealed, and fails when some
/// are sealed with a key `keyring` does not hold: starting then would only
/// fail every delivery to those endpoints (nothing is changed).
pub async fn check(pool: &PgPool, keyring: &Keyring) -> Result<Inventory> {
    // A worker's role (outhook_worker) may not read the portal's key: its
    // secrets are the API's to check.
    let server_key = if may(pool, "outhook.server_key", "SELECT").await? {
        "UNION ALL SELECT secret FROM outhook.server_key"
    } else {
        ""
    };
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CASE WHEN v LIKE 'ohenc:v1:%' THEN split_part(v, ':', 3) END AS key, count(*)
         FROM (SELECT secret AS v FROM outhook.endpoint_secret
               UNION ALL SELECT private_key_pem FROM outhook.signing_key
               UNION ALL SELECT secrets FROM outhook.endpoint_connection WHERE secrets IS NOT NULL
               UNION ALL SELECT token FROM outhook.oauth_token WHERE token IS NOT NULL
               {server_key}) s
         GROUP BY 1 ORDER BY 1"
    )))
    .fetch_all(pool)
    .await?;
    let mut inventory = Inventory {
        plain: 0,
        sealed: Vec::new(),
    };
    for (key, n) in rows {
        match key {
            None => inventory.plain = n,
            Some(k) => inventory.sealed.push((k, n)),
        }
    }
    let missing: Vec<&str> = inventory
        .sealed
        .iter()
        .filter(|(k, _)| !keyring.has(k))
        .map(|(k, _)| k.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "the database holds secrets sealed with main key {}, which this process does not have ({}); \
             set OUTHOOK_MAIN_KEY (and OUTHOOK_OLD_MAIN_KEYS during a rotation). Nothing was changed.",
            missing.join(", "),
            match keyring.current_id() {
                Some(id) => format!("its key is {id}"),
                None => "it has no main key".to_owned(),
            }
        )));
    }
    Ok(inventory)
}

/// Seals, with the keyring's current key, every stored secret that is
/// plain or sealed with another key, `batch` rows per transaction (each row
/// locked while it is rewritten, so workers keep running). Returns how many
/// were rewritten. Without a current key it does nothing.
pub async fn reseal_all(pool: &PgPool, keyring: &Keyring, batch: i64) -> Result<u64> {
    let Some(current) = keyring.current_id() else {
        return Ok(0);
    };
    let current_prefix = format!("{PREFIX}{current}:%");
    let mut total = 0;
    for (table, column, key_column, kind) in [
        ("endpoint_secret", "secret", "id::text", Kind::EndpointSecret),
        ("signing_key", "private_key_pem", "id::text", Kind::PrivateKey),
        ("server_key", "secret", "name", Kind::ServerKey),
        (
            "endpoint_connection",
            "secrets",
            "endpoint_id::text",
            Kind::ConnectionSecrets,
        ),
        ("oauth_token", "token", "endpoint_id::text", Kind::OAuthToken),
    ] {
        // What this role may not rewrite, a role that may seals.
        if !may(pool, &format!("outhook.{table}"), "UPDATE").await? {
            continue;
        }
        loop {
            let mut tx = pool.begin().await?;
            let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {key_column}, {column} FROM outhook.{table} WHERE {column} NOT LIKE $1
                 ORDER BY {key_column} LIMIT $2 FOR UPDATE SKIP LOCKED"
            )))
            .bind(&current_prefix)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for (id, stored) in &rows {
                let plain = zeroize::Zeroizing::new(keyring.open(kind, stored)?);
                let sealed = keyring.seal(kind, &plain)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE outhook.{table} SET {column} = $2 WHERE {key_column} = $1"
                )))
                .bind(id)
                .bind(sealed)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            total += rows.len() as u64;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MainKey {
        MainKey::from_base64(&MainKey::generate().unwrap()).unwrap()
    }

    #[test]
    fn sealed_values_open_with_their_key_and_kind_only() {
        let ring = Keyring::new(Some(key()), Vec::new());
        let sealed = ring.seal(Kind::EndpointSecret, "whsec_abc").unwrap();
        assert!(sealed.starts_with("ohenc:v1:") && !sealed.contains("whsec_abc"));
        assert_eq!(sealed_with(&sealed), ring.current_id());
        assert_eq!(ring.open(Kind::EndpointSecret, &sealed).unwrap(), "whsec_abc");
        assert!(ring.open(Kind::PrivateKey, &sealed).is_err(), "another kind");
        let other = Keyring::new(Some(key()), Vec::new());
        assert!(other.open(Kind::EndpointSecret, &sealed).is_err(), "another key");
        assert_ne!(
            ring.seal(Kind::EndpointSecret, "whsec_abc").unwrap(),
            sealed,
            "fresh nonces"
        );
    }

    #[test]
    fn plain_values_pass_through_and_old_keys_still_open() {
        let old = key();
        let old_ring = Keyring::new(
            Some(MainKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap()),
            Vec::new(),
        );
        let sealed = old_ring.seal(Kind::PrivateKey, "pem").unwrap();
        let ring = Keyring::new(
            Some(old),
            vec![MainKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap()],
        );
        assert_eq!(ring.open(Kind::PrivateKey, &sealed).unwrap(), "pem");
        assert_eq!(ring.open(Kind::PrivateKey, "plain").unwrap(), "plain");
        assert_eq!(Keyring::plain().seal(Kind::PrivateKey, "pem").unwrap(), "pem");
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let ring = Keyring::new(Some(key()), Vec::new());
        let sealed = ring.seal(Kind::EndpointSecret, "s3cret").unwrap();
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(ring.open(Kind::EndpointSecret, &tampered).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(MainKey::from_base64("not base64!").is_err());
        assert!(MainKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert_eq!(MainKey::from_base64(&STANDARD.encode([1u8; 32])).unwrap().id().len(), 8);
    }
}
