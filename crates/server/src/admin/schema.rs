//! Payloads checked against their event type's JSON Schema, at the API.
//!
//! Off by default. A type's `validate` flag turns it on for that type; the
//! server's `--validate-event-schemas` for every type that has a schema.
//! Validators are compiled once per version of a type and the catalog is
//! read again at most once a second, so a request pays one JSON parse and
//! the validation itself, and nothing when its type has no schema.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use outhook_dispatcher::db::event_type::event_type_list;
use sqlx::PgPool;

use super::{Error, Result};

/// At most this many failures are listed in an answer.
const MAX_FAILURES: usize = 20;

/// One failing place of a payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// A JSON Pointer to the failing value (empty: the whole payload).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// Compiles a schema, naming what is wrong with it.
pub fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator> {
    jsonschema::validator_for(schema).map_err(|e| Error::parameter("schema", format!("not a usable JSON Schema: {e}")))
}

/// The failures of `instance` against `validator`, at most 20.
pub fn failures(validator: &jsonschema::Validator, instance: &serde_json::Value) -> Vec<Failure> {
    validator
        .iter_errors(instance)
        .take(MAX_FAILURES)
        .map(|e| Failure {
            path: e.instance_path().as_str().to_owned(),
            message: e.to_string(),
        })
        .collect()
}

struct Compiled {
    updated_at: DateTime<Utc>,
    validate: bool,
    validator: Arc<jsonschema::Validator>,
}

/// Compiled schemas by event type name.
type Schemas = Arc<HashMap<String, Arc<Compiled>>>;

/// The catalog's compiled schemas, read again when older than a second.
pub struct SchemaCache {
    ttl: Duration,
    /// When the catalog was last read, and what it held.
    state: Mutex<(Option<Instant>, Schemas)>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for SchemaCache {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(1),
            state: Mutex::new((None, Arc::default())),
            refresh: tokio::sync::Mutex::new(()),
        }
    }
}

impl SchemaCache {
    fn current(&self) -> (Option<Instant>, Schemas) {
        match self.state.lock() {
            Ok(s) => (s.0, s.1.clone()),
            Err(poisoned) => {
                let s = poisoned.into_inner();
                (s.0, s.1.clone())
            }
        }
    }

    async fn schemas(&self, pool: &PgPool) -> Result<Schemas> {
        let (at, map) = self.current();
        if at.is_some_and(|t| t.elapsed() < self.ttl) {
            return Ok(map);
        }
        // One refresh at a time; the others wait for it and use its result.
        let _one = self.refresh.lock().await;
        let (at, map) = self.current();
        if at.is_some_and(|t| t.elapsed() < self.ttl) {
            return Ok(map);
        }
        let mut next = HashMap::new();
        for t in event_type_list(pool).await? {
            let Some(schema) = &t.schema else { continue };
            let reuse = map.get(&t.name).filter(|c| c.updated_at == t.updated_at).cloned();
            let compiled = match reuse {
                Some(c) => c,
                None => match compile(schema) {
                    Ok(v) => Arc::new(Compiled {
                        updated_at: t.updated_at,
                        validate: t.validate,
                        validator: Arc::new(v),
                    }),
                    // Refused when it was stored; a schema written by plain
                    // SQL that does not compile checks nothing.
                    Err(e) => {
                        tracing::warn!(event_type = %t.name, error = %e, "an event type's schema does not compile");
                        continue;
                    }
                },
            };
            next.insert(t.name.clone(), compiled);
        }
        let next = Arc::new(next);
        if let Ok(mut s) = self.state.lock() {
            *s = (Some(Instant::now()), next.clone());
        }
        Ok(next)
    }

    /// Checks `payload` of `event_type` when its schema is to be enforced:
    /// the type's own flag, or `everywhere` for any type with a schema.
    pub async fn check(&self, pool: &PgPool, everywhere: bool, event_type: &str, payload: &str) -> Result<()> {
        let schemas = self.schemas(pool).await?;
        let Some(compiled) = schemas.get(event_type) else {
            return Ok(());
        };
        if !(everywhere || compiled.validate) {
            return Ok(());
        }
        let instance: serde_json::Value =
            serde_json::from_str(payload).map_err(|e| Error::Payload(format!("payload: {e}")))?;
        let found = failures(&compiled.validator, &instance);
        if found.is_empty() {
            Ok(())
        } else {
            Err(Error::SchemaMismatch {
                event_type: event_type.to_owned(),
                failures: found,
            })
        }
    }
}
