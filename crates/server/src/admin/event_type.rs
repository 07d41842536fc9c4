//! The event catalog: event types with descriptions, groups, schemas and
//! examples, for customers to pick from; and its strict mode.
//!
//! Admins write it; owners read it (their portal offers it). A provider can
//! keep the whole catalog in a file in its own repository and apply it
//! (`outhook event-type apply FILE`), as often as it likes.

use outhook_dispatcher::db::event_type::{
    EVENT_TYPE_NAME_RULE, EventType, EventTypeDef, catalog_strict_get, catalog_strict_set, event_type_delete,
    event_type_delete_except, event_type_get, event_type_list, event_type_name_ok, event_type_upsert,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::PgPool;

use super::{Error, Result, Scope};

/// The longest description, in characters.
const MAX_DESCRIPTION: usize = 2000;
/// The longest group name, in characters.
const MAX_GROUP: usize = 100;
/// At most this many examples per type.
const MAX_EXAMPLES: usize = 20;
/// At most this many bytes of schema and examples per type.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// An event type as the CLI, the API and the catalog file give it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTypeInput {
    /// Its name.
    pub name: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
    /// The group it is listed under.
    #[serde(default)]
    pub group: String,
    /// A JSON Schema for its payloads.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// Example payloads.
    #[serde(default)]
    pub examples: Vec<Box<RawValue>>,
    /// Check payloads against the schema at the API.
    #[serde(default)]
    pub validate: bool,
    /// No longer offered to new subscriptions.
    #[serde(default)]
    pub deprecated: bool,
}

/// Checks an event type name against the rule every path holds.
pub fn check_name(field: &'static str, name: &str) -> Result<()> {
    if event_type_name_ok(name) {
        Ok(())
    } else {
        let shown: String = name.chars().take(64).flat_map(char::escape_default).collect();
        Err(Error::parameter(
            field,
            format!("\"{shown}\" is not an event type name: {EVENT_TYPE_NAME_RULE}"),
        ))
    }
}

fn check(input: EventTypeInput) -> Result<EventTypeDef> {
    check_name("name", &input.name)?;
    super::rules::check_text("description", &input.description, MAX_DESCRIPTION)?;
    if input.group.chars().count() > MAX_GROUP || input.group.chars().any(char::is_control) {
        return Err(Error::parameter(
            "group",
            format!("at most {MAX_GROUP} characters, none of them control characters"),
        ));
    }
    if let Some(schema) = &input.schema
        && !schema.is_object()
    {
        // `true` would say nothing and `false` refuse every payload and
        // example: a schema here is an object (`{}` accepts everything).
        return Err(Error::parameter("schema", "a JSON Schema object"));
    }
    if input.schema.as_ref().is_some_and(super::rules::json_has_nul) {
        return Err(Error::parameter("schema", "no key or string in it may hold U+0000"));
    }
    if input.examples.len() > MAX_EXAMPLES {
        return Err(Error::parameter("examples", format!("at most {MAX_EXAMPLES}")));
    }
    for (i, e) in input.examples.iter().enumerate() {
        let first = e.get().trim_start().as_bytes().first();
        if !matches!(first, Some(b'{' | b'[')) {
            return Err(Error::parameter(
                "examples",
                format!("example {} is not a JSON object or array, as a payload must be", i + 1),
            ));
        }
    }
    let size = input.schema.as_ref().map_or(0, |s| s.to_string().len())
        + input.examples.iter().map(|e| e.get().len()).sum::<usize>();
    if size > MAX_DOCUMENT_BYTES {
        return Err(Error::parameter(
            "examples",
            format!("the schema and examples take at most {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    if let Some(schema) = &input.schema {
        // A schema that does not compile, or examples it refuses, are the
        // provider's mistakes: said now, not at the first event.
        let validator = super::schema::compile(schema)?;
        for (i, e) in input.examples.iter().enumerate() {
            let value: serde_json::Value =
                serde_json::from_str(e.get()).map_err(|err| Error::parameter("examples", err.to_string()))?;
            if let Some(f) = super::schema::failures(&validator, &value).first() {
                return Err(Error::parameter(
                    "examples",
                    format!(
                        "example {} does not match the schema at `{}`: {}",
                        i + 1,
                        f.path,
                        f.message
                    ),
                ));
            }
        }
    }
    if input.validate && input.schema.is_none() {
        return Err(Error::parameter("validate", "needs a schema to validate against"));
    }
    Ok(EventTypeDef {
        name: input.name,
        description: input.description,
        group: input.group.trim().to_owned(),
        schema: input.schema,
        examples: input.examples,
        validate: input.validate,
        deprecated: input.deprecated,
    })
}

fn admin_only(scope: &Scope) -> Result<()> {
    match scope {
        Scope::Admin => Ok(()),
        // The catalog is the provider's: an owner reads it, never writes it.
        Scope::Owner(_) => Err(Error::Forbidden("only an admin token changes the event catalog")),
    }
}

/// Adds or replaces an event type (admins only). Returns it and whether
/// anything changed.
pub async fn put(pool: &PgPool, scope: &Scope, input: EventTypeInput) -> Result<(EventType, bool)> {
    admin_only(scope)?;
    let def = check(input)?;
    let mut tx = pool.begin().await?;
    let put = event_type_upsert(&mut *tx, &def).await?;
    tx.commit().await?;
    Ok(put)
}

/// One event type (any scope: the catalog is what every customer picks
/// from).
pub async fn get(pool: &PgPool, name: &str) -> Result<EventType> {
    Ok(event_type_get(pool, name).await?)
}

/// The whole catalog, by group and name.
pub async fn list(pool: &PgPool) -> Result<Vec<EventType>> {
    Ok(event_type_list(pool).await?)
}

/// Removes an event type (admins only).
pub async fn delete(pool: &PgPool, scope: &Scope, name: &str) -> Result<()> {
    admin_only(scope)?;
    let mut tx = pool.begin().await?;
    event_type_delete(&mut *tx, name).await?;
    tx.commit().await?;
    Ok(())
}

/// Whether the catalog is strict.
pub async fn strict(pool: &PgPool) -> Result<bool> {
    Ok(catalog_strict_get(pool).await?)
}

/// Turns strict mode on or off (admins only). Strict mode needs a catalog:
/// turning it on with none would refuse every event.
pub async fn set_strict(pool: &PgPool, scope: &Scope, strict: bool) -> Result<()> {
    admin_only(scope)?;
    if strict && event_type_list(pool).await?.is_empty() {
        return Err(Error::Conflict(
            "strict: the catalog is empty: strict mode would refuse every event; add event types first".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    catalog_strict_set(&mut *tx, strict).await?;
    tx.commit().await?;
    Ok(())
}

/// A catalog file: the provider's event types, kept in its repository.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Refuse events of types not listed (absent: leave the setting).
    #[serde(default)]
    pub strict: Option<bool>,
    /// The event types.
    pub event_types: Vec<EventTypeInput>,
}

impl CatalogFile {
    /// Parses a catalog file's JSON text; an unknown key is an error that
    /// names it, with its line and column.
    pub fn parse(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::parameter("catalog file", e.to_string()))
    }
}

/// What applying a catalog file did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// Types added or changed.
    pub changed: Vec<String>,
    /// Types already as the file says.
    pub unchanged: Vec<String>,
    /// Types removed because the file no longer lists them (with `prune`).
    pub removed: Vec<String>,
    /// The strict setting after applying.
    pub strict: bool,
}

/// Applies a catalog file in one transaction: every type it lists is added
/// or replaced; with `prune`, types it does not list are removed. Applying
/// the same file again changes nothing.
pub async fn apply(pool: &PgPool, scope: &Scope, file: CatalogFile, prune: bool) -> Result<Applied> {
    admin_only(scope)?;
    let mut defs: Vec<EventTypeDef> = Vec::with_capacity(file.event_types.len());
    for input in file.event_types {
        let def = check(input)?;
        // A name listed twice: the later entry wins, as a later key does
        // in a JSON object.
        match defs.iter_mut().find(|d| d.name == def.name) {
            Some(earlier) => *earlier = def,
            None => defs.push(def),
        }
    }
    if file.strict == Some(true) && defs.is_empty() {
        return Err(Error::parameter(
            "strict",
            "the file lists no event types: strict mode would refuse every event",
        ));
    }
    let mut tx = pool.begin().await?;
    let mut applied = Applied::default();
    for def in &defs {
        let (_, changed) = event_type_upsert(&mut *tx, def).await?;
        if changed {
            applied.changed.push(def.name.clone());
        } else {
            applied.unchanged.push(def.name.clone());
        }
    }
    if prune {
        let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
        applied.removed = event_type_delete_except(&mut *tx, &names).await?;
    }
    if let Some(strict) = file.strict {
        catalog_strict_set(&mut *tx, strict).await?;
    }
    applied.strict = catalog_strict_get(&mut *tx).await?;
    tx.commit().await?;
    Ok(applied)
}
