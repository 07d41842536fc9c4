//! The administration layer: validation, authorisation by scope, and the
//! calls into `outhook_dispatcher::db`. The CLI, the HTTP API and the
//! portal all call these functions, so every rule lives here once.
//!
//! A caller acts within a [`Scope`]: an admin sees everything; an owner's
//! scope sees only that owner's endpoints, messages and deliveries, and
//! another owner's resources are [`Error::NotFound`], never "forbidden", so
//! ids do not leak.

pub mod connection;
pub mod delivery;
pub mod endpoint;
pub mod event_type;
pub mod key;
pub mod message;
pub mod portal;
pub mod rules;
pub mod schema;
pub mod token;

use outhook_dispatcher::http::UrlError;

/// Who is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything: the provider's own staff and backend.
    Admin,
    /// One owner's resources only: a provider's customer.
    Owner(String),
}

impl Scope {
    /// The owner this scope is limited to, if any.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Self::Admin => None,
            Self::Owner(o) => Some(o),
        }
    }

    /// Whether this scope sees resources of `owner`.
    pub fn sees(&self, owner: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::Owner(o) => o == owner,
        }
    }

    /// A stable text form, for keying per-scope state (idempotency keys).
    pub fn key(&self) -> String {
        match self {
            Self::Admin => "admin".to_owned(),
            Self::Owner(o) => format!("owner:{o}"),
        }
    }
}

/// Why an administrative call was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such resource in the caller's scope.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The endpoint URL is malformed, not http(s), or a refused IP literal.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The endpoint's host resolves only to refused addresses.
    #[error("{0}")]
    AddressRefused(String),
    /// No signer has this scheme name.
    #[error("unknown scheme `{0}`; use one of {known} or `hmac` with settings", known = outhook_signer::Scheme::NAMES.join(", "))]
    UnknownScheme(String),
    /// Scheme settings, a secret or a key that cannot be used.
    #[error("{0}")]
    Settings(String),
    /// A request that does not fit the resource as it is now (another
    /// scheme's settings or secret, a burst without a rate limit, strict
    /// mode on an empty catalog).
    #[error("{0}")]
    Conflict(String),
    /// A message payload that is not a JSON object or array.
    #[error("{0}")]
    Payload(String),
    /// An event the outbox refused: its type breaks the naming rule, or the
    /// catalog is strict and does not hold it.
    #[error("{0}")]
    EventRefused(String),
    /// A payload over the database's limit (`outhook.ingest_setting`).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A payload that does not match its event type's JSON Schema.
    #[error("the payload does not match the schema of `{event_type}`: {}", failures.first().map(|f| format!("{} at `{}`", f.message, f.path)).unwrap_or_default())]
    SchemaMismatch {
        /// The event type.
        event_type: String,
        /// Where and why, at most 20.
        failures: Vec<schema::Failure>,
    },
    /// A content filter that does not parse.
    #[error("filter: {0}")]
    Filter(#[from] outhook_dispatcher::filter::FilterError),
    /// An owner already has as many endpoints as the operator allows.
    #[error("`{owner}` already has {limit} endpoints, the most allowed; delete one first")]
    EndpointLimit {
        /// The owner.
        owner: String,
        /// The limit.
        limit: u32,
    },
    /// The caller's scope may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A parameter out of range or malformed.
    #[error("{name}: {reason}")]
    Parameter {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The database failed.
    #[error("database error")]
    Database(#[source] outhook_dispatcher::Error),
    /// A shared batch could not be written (the database's error, as text).
    #[error("the database refused the batch: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// A [`Error::Parameter`].
    pub fn parameter(name: &'static str, reason: impl Into<String>) -> Self {
        Self::Parameter {
            name,
            reason: reason.into(),
        }
    }
}

impl From<outhook_dispatcher::Error> for Error {
    fn from(e: outhook_dispatcher::Error) -> Self {
        match e {
            outhook_dispatcher::Error::NotFound(what) => Self::NotFound(what),
            outhook_dispatcher::Error::Key(k) => Self::Settings(k.to_string()),
            outhook_dispatcher::Error::Endpoint(s) => Self::Settings(s),
            outhook_dispatcher::Error::Config(s) => Self::Internal(s),
            outhook_dispatcher::Error::EventRefused(s) => Self::EventRefused(s),
            outhook_dispatcher::Error::PayloadTooLarge(s) => Self::PayloadTooLarge(s),
            outhook_dispatcher::Error::PayloadUnreadable(s) => Self::Payload(s),
            outhook_dispatcher::Error::Database(sqlx::Error::Database(db)) if is_input_error(db.code().as_deref()) => {
                // PostgreSQL refused the data itself (a NUL in text, a value
                // out of range): the caller's input, not an outage.
                Self::parameter("input", db.message().to_owned())
            }
            other => Self::Database(other),
        }
    }
}

/// SQLSTATE classes 22 (data exception) and 23 (integrity constraint
/// violation) are caused by the values sent, not by the database's health.
fn is_input_error(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        outhook_dispatcher::Error::from(e).into()
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// This page.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `limit + 1` rows asked for: the extra row, when it came,
    /// only says that another page follows, whose cursor is the last kept
    /// row's.
    pub(crate) fn from_overfetch(mut data: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Self {
        let keep = usize::try_from(limit).unwrap_or(0);
        let next_cursor = if data.len() > keep {
            data.truncate(keep);
            data.last().map(cursor)
        } else {
            None
        };
        Self { data, next_cursor }
    }
}

/// Page sizes: 1 to 250, 50 unless asked.
pub fn page_limit(limit: Option<i64>) -> Result<i64> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=250) => Ok(n),
        Some(n) => Err(Error::parameter("limit", format!("{n} is out of range 1..=250"))),
    }
}
