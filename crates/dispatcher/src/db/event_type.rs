//! `outhook.event_type` and `outhook.catalog_setting`: the event catalog.
//!
//! The catalog is optional. Without it, events of any type flow. With its
//! strict mode on, the outbox trigger refuses an event whose type is not
//! here, on every path (API, CLI, library, plain `INSERT`).

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::{PgExecutor, Row};

use crate::error::Result;

/// The rule every event type name follows: a letter or digit, then
/// letters, digits, `.`, `_`, `-` or `:`, at most 128 characters. The
/// database holds the same rule (`outhook.event_type_name_ok`).
pub fn event_type_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

/// The rule in words, for error messages.
pub const EVENT_TYPE_NAME_RULE: &str =
    "a letter or digit, then letters, digits, `.`, `_`, `-` or `:`, at most 128 characters";

/// An event type in the catalog.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventType {
    /// Its name, such as `item.sold`.
    pub name: String,
    /// What it means, for the provider's customers.
    pub description: String,
    /// The group it is listed under (empty: none).
    pub group: String,
    /// A JSON Schema its payloads follow, if the provider gives one.
    pub schema: Option<serde_json::Value>,
    /// Example payloads, each kept byte for byte as written.
    pub examples: Vec<Box<RawValue>>,
    /// Whether the API checks payloads of this type against `schema`.
    pub validate: bool,
    /// Still sent, but no longer offered to new subscriptions.
    pub deprecated: bool,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// An event type to add or replace.
#[derive(Debug, Clone, Default)]
pub struct EventTypeDef {
    /// Its name (see [`event_type_name_ok`]).
    pub name: String,
    /// What it means.
    pub description: String,
    /// The group it is listed under.
    pub group: String,
    /// A JSON Schema (an object or a boolean).
    pub schema: Option<serde_json::Value>,
    /// Example payloads, as JSON texts.
    pub examples: Vec<Box<RawValue>>,
    /// Check payloads against the schema at the API.
    pub validate: bool,
    /// No longer offered to new subscriptions.
    pub deprecated: bool,
}

const COLUMNS: &str =
    "name, description, group_name, schema, examples::text AS examples, validate, deprecated, created_at, updated_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<EventType> {
    let examples: String = row.try_get("examples")?;
    let examples: Vec<Box<RawValue>> = serde_json::from_str(&examples)
        .map_err(|e| crate::Error::Config(format!("stored examples are not a JSON array: {e}")))?;
    Ok(EventType {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        group: row.try_get("group_name")?,
        schema: row.try_get("schema")?,
        examples,
        validate: row.try_get("validate")?,
        deprecated: row.try_get("deprecated")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The examples as one JSON array text, each element's bytes kept.
fn examples_json(examples: &[Box<RawValue>]) -> String {
    let parts: Vec<&str> = examples.iter().map(|e| e.get()).collect();
    format!("[{}]", parts.join(","))
}

/// Adds an event type, or replaces every field of the one with its name.
/// Returns it, and whether anything changed (an unchanged definition
/// keeps its `updated_at`, so applying a file twice changes nothing).
pub async fn event_type_upsert<'e>(executor: impl PgExecutor<'e>, def: &EventTypeDef) -> Result<(EventType, bool)> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH up AS (
             INSERT INTO outhook.event_type AS t (name, description, group_name, schema, examples, validate, deprecated)
             VALUES ($1, $2, $3, $4, $5::json, $6, $7)
             ON CONFLICT (name) DO UPDATE SET description = excluded.description, group_name = excluded.group_name,
                    schema = excluded.schema, examples = excluded.examples, validate = excluded.validate,
                    deprecated = excluded.deprecated, updated_at = now()
             WHERE (t.description, t.group_name, t.schema, t.examples::text, t.validate, t.deprecated)
                   IS DISTINCT FROM
                   (excluded.description, excluded.group_name, excluded.schema, excluded.examples::text,
                    excluded.validate, excluded.deprecated)
             RETURNING t.*)
         SELECT {COLUMNS}, true AS changed FROM up
         UNION ALL
         SELECT {COLUMNS}, false FROM outhook.event_type WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM up)"
    )))
    .bind(&def.name)
    .bind(&def.description)
    .bind(&def.group)
    .bind(&def.schema)
    .bind(examples_json(&def.examples))
    .bind(def.validate)
    .bind(def.deprecated)
    .fetch_one(executor)
    .await?;
    Ok((from_row(&row)?, row.try_get("changed")?))
}

/// One event type.
pub async fn event_type_get<'e>(executor: impl PgExecutor<'e>, name: &str) -> Result<EventType> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outhook.event_type WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(executor)
    .await?
    .ok_or(crate::Error::NotFound("event type"))?;
    from_row(&row)
}

/// The whole catalog, by group and name.
pub async fn event_type_list<'e>(executor: impl PgExecutor<'e>) -> Result<Vec<EventType>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outhook.event_type ORDER BY group_name, name"
    )))
    .fetch_all(executor)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Removes an event type. Events of that type already queued are sent;
/// endpoints subscribed to it keep the subscription.
pub async fn event_type_delete<'e>(executor: impl PgExecutor<'e>, name: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM outhook.event_type WHERE name = $1")
        .bind(name)
        .execute(executor)
        .await?;
    if done.rows_affected() == 0 {
        return Err(crate::Error::NotFound("event type"));
    }
    Ok(())
}

/// Removes every event type not named in `keep`; returns their names.
pub async fn event_type_delete_except<'e>(executor: impl PgExecutor<'e>, keep: &[String]) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("DELETE FROM outhook.event_type WHERE name <> ALL ($1) RETURNING name")
            .bind(keep)
            .fetch_all(executor)
            .await?,
    )
}

/// Whether the catalog is strict: events of a type it does not hold are
/// refused.
pub async fn catalog_strict_get<'e>(executor: impl PgExecutor<'e>) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT coalesce((SELECT strict_event_types FROM outhook.catalog_setting), false)")
            .fetch_one(executor)
            .await?,
    )
}

/// Turns the catalog's strict mode on or off.
pub async fn catalog_strict_set<'e>(executor: impl PgExecutor<'e>, strict: bool) -> Result<()> {
    sqlx::query(
        "INSERT INTO outhook.catalog_setting (one, strict_event_types) VALUES (true, $1)
         ON CONFLICT (one) DO UPDATE SET strict_event_types = excluded.strict_event_types",
    )
    .bind(strict)
    .execute(executor)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::event_type_name_ok;

    #[test]
    fn names_follow_one_rule() {
        for ok in [
            "item.sold",
            "ORDER_FILLED",
            "check.completed",
            "a",
            "v2:order-paid",
            &"x".repeat(128),
        ] {
            assert!(event_type_name_ok(ok), "{ok}");
        }
        for bad in ["", ".a", "<svg/onload=alert(1)>", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(!event_type_name_ok(bad), "{bad}");
        }
    }
}
