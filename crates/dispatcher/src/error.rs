//! Errors that stop the dispatcher or an administrative call.
//!
//! A failed delivery is not an error: it is an [`crate::Outcome`] stored in
//! the delivery log. `Error` means Outhook itself cannot work.

/// The dispatcher's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A database call failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The HTTP client could not be built.
    #[error("HTTP client setup failed")]
    Http(#[from] reqwest::Error),
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An endpoint's scheme, secret or key is unusable.
    #[error("invalid endpoint settings: {0}")]
    Endpoint(String),
    /// Key material could not be made or read.
    #[error("key error")]
    Key(#[from] outhook_signer::KeyError),
    /// An event the outbox refused: its type breaks the naming rule, or
    /// the catalog is strict and does not hold it.
    #[error("event refused: {0}")]
    EventRefused(String),
    /// An event whose payload is over the database's limit
    /// (`outhook.ingest_setting.max_payload_bytes`); nothing was enqueued.
    #[error("event refused: {0}")]
    PayloadTooLarge(String),
    /// An event for an owner whose endpoints filter content, with a payload
    /// that is valid JSON but that PostgreSQL's `jsonb` cannot hold, so the
    /// filters cannot be matched (a lone UTF-16 surrogate escape, a number
    /// beyond `numeric`'s range); nothing was enqueued.
    #[error("event refused: {0}")]
    PayloadUnreadable(String),
    /// An owner already has the most endpoints allowed.
    #[error("`{owner}` already has {limit} endpoints, the most allowed")]
    OwnerLimit {
        /// The owner.
        owner: String,
        /// The limit.
        limit: u32,
    },
    /// No row with that id.
    #[error("{0} not found")]
    NotFound(&'static str),
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
