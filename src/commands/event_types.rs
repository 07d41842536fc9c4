//! `outhook event-type ...`: the event catalog from the shell, and from a
//! file the provider keeps in its own repository.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use outhook_dispatcher::db::event_type::EventType;
use outhook_server::admin::Scope;
use outhook_server::admin::event_type::{self as admin, CatalogFile, EventTypeInput};
use serde_json::value::RawValue;

use crate::commands::worker::DbArgs;

/// On or off.
#[derive(Clone, Copy, ValueEnum)]
pub enum Switch {
    /// Refuse events of types not in the catalog.
    On,
    /// Accept events of any type.
    Off,
}

/// `outhook event-type ...`.
#[derive(Subcommand)]
pub enum EventTypeCommand {
    /// Add an event type, or replace every field of the one with its name.
    Add {
        /// Its name: a letter or digit, then letters, digits, `.`, `_`, `-` or `:`.
        name: String,
        /// What it means, for customers.
        #[arg(long, default_value = "")]
        description: String,
        /// The group it is listed under.
        #[arg(long, default_value = "")]
        group: String,
        /// A JSON Schema for its payloads: a file, or `-` for standard input.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// An example payload (JSON text); repeat for more.
        #[arg(long = "example")]
        examples: Vec<String>,
        /// Check payloads of this type against the schema at the API.
        #[arg(long)]
        validate: bool,
        /// No longer offered to new subscriptions (still sent).
        #[arg(long)]
        deprecated: bool,
    },
    /// List the catalog.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one event type as JSON.
    Show {
        /// Its name.
        name: String,
    },
    /// Remove an event type (subscriptions to it stay).
    Delete {
        /// Its name.
        name: String,
    },
    /// Apply a catalog file (JSON: `{"strict": true, "event_types": [...]}`)
    /// in one transaction; applying it again changes nothing.
    Apply {
        /// The file, or `-` for standard input.
        file: PathBuf,
        /// Also remove event types the file does not list.
        #[arg(long)]
        prune: bool,
    },
    /// Print the catalog as a file `apply` takes.
    Export,
    /// Show strict mode, or turn it on or off. On, events of types not in
    /// the catalog are refused on every path, plain SQL included.
    Strict {
        /// `on` or `off`; absent: print the current setting.
        #[arg(value_enum)]
        switch: Option<Switch>,
    },
}

fn read_text(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn line(t: &EventType) -> String {
    let mut flags = String::new();
    if t.deprecated {
        flags.push_str("  (deprecated)");
    }
    if t.schema.is_some() {
        flags.push_str(if t.validate { "  schema, validated" } else { "  schema" });
    }
    let group = if t.group.is_empty() { "-" } else { &t.group };
    format!(
        "{:<32} {:<16} {} example(s){flags}  {}",
        t.name,
        group,
        t.examples.len(),
        t.description
    )
}

/// One event type as a catalog file holds it.
#[derive(serde::Serialize)]
struct FileEntry<'a> {
    name: &'a str,
    description: &'a str,
    group: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<&'a serde_json::Value>,
    /// Kept byte for byte: a raw value is written as it was stored.
    examples: &'a [Box<RawValue>],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    validate: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deprecated: bool,
}

/// The catalog in the file format `apply` reads.
#[derive(serde::Serialize)]
struct File<'a> {
    strict: bool,
    event_types: Vec<FileEntry<'a>>,
}

fn as_file(strict: bool, types: &[EventType]) -> File<'_> {
    File {
        strict,
        event_types: types
            .iter()
            .map(|t| FileEntry {
                name: &t.name,
                description: &t.description,
                group: &t.group,
                schema: t.schema.as_ref(),
                examples: &t.examples,
                validate: t.validate,
                deprecated: t.deprecated,
            })
            .collect(),
    }
}

/// Runs an `event-type` subcommand as an admin, through the administration
/// layer the API uses.
pub async fn event_type(db: DbArgs, cmd: EventTypeCommand) -> Result<ExitCode> {
    let pool = db.connect(2).await?;
    let scope = Scope::Admin;
    match cmd {
        EventTypeCommand::Add {
            name,
            description,
            group,
            schema,
            examples,
            validate,
            deprecated,
        } => {
            let schema = schema
                .map(|p| {
                    let text = read_text(&p)?;
                    serde_json::from_str(&text).with_context(|| format!("--schema {}: not JSON", p.display()))
                })
                .transpose()?;
            let examples = examples
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    RawValue::from_string(e).with_context(|| format!("--example number {} is not JSON", i + 1))
                })
                .collect::<Result<Vec<_>>>()?;
            let (t, changed) = admin::put(
                &pool,
                &scope,
                EventTypeInput {
                    name,
                    description,
                    group,
                    schema,
                    examples,
                    validate,
                    deprecated,
                },
            )
            .await?;
            outln!("{} {}", if changed { "saved" } else { "unchanged" }, t.name)?;
        }
        EventTypeCommand::List { json } => {
            let types = admin::list(&pool).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&types)?)?;
            } else {
                for t in &types {
                    outln!("{}", line(t))?;
                }
            }
        }
        EventTypeCommand::Show { name } => {
            outln!("{}", serde_json::to_string_pretty(&admin::get(&pool, &name).await?)?)?;
        }
        EventTypeCommand::Delete { name } => {
            admin::delete(&pool, &scope, &name).await?;
            outln!("deleted {name}")?;
        }
        EventTypeCommand::Apply { file, prune } => {
            let text = read_text(&file)?;
            let catalog = CatalogFile::parse(&text).with_context(|| format!("{}", file.display()))?;
            let done = admin::apply(&pool, &scope, catalog, prune).await?;
            outln!(
                "{} changed, {} unchanged, {} removed; strict {}",
                done.changed.len(),
                done.unchanged.len(),
                done.removed.len(),
                if done.strict { "on" } else { "off" }
            )?;
            for name in &done.changed {
                outln!("  saved {name}")?;
            }
            for name in &done.removed {
                outln!("  removed {name}")?;
            }
        }
        EventTypeCommand::Export => {
            let strict = admin::strict(&pool).await?;
            let types = admin::list(&pool).await?;
            outln!("{}", serde_json::to_string_pretty(&as_file(strict, &types))?)?;
        }
        EventTypeCommand::Strict { switch } => {
            if let Some(switch) = switch {
                admin::set_strict(&pool, &scope, matches!(switch, Switch::On)).await?;
            }
            let on = admin::strict(&pool).await?;
            outln!("strict {}", if on { "on" } else { "off" })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
