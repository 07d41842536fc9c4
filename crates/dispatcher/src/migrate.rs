//! The one entry point that creates and upgrades Outhook's schema.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::error::Result;

/// Outhook's migrations, embedded from the crate's own `migrations/` (the
/// workspace's top-level `migrations` is a link to it), so the published
/// crate carries them.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Creates or upgrades the `outhook` schema.
///
/// Bookkeeping goes to `outhook._migrations`, never to the host
/// application's `_sqlx_migrations`, so both can migrate the same database.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut migrator = Migrator::with_migrations(MIGRATOR.migrations.to_vec());
    migrator.create_schema("outhook");
    migrator.dangerous_set_table_name("outhook._migrations");
    migrator.run(pool).await?;
    Ok(())
}

/// Whether every migration this build knows has been applied: what
/// readiness checks ask before a server takes traffic.
pub async fn migrations_current(pool: &PgPool) -> Result<bool> {
    let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM outhook._migrations WHERE success")
        .fetch_all(pool)
        .await
    {
        Ok(v) => v,
        // No bookkeeping table yet: nothing applied.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    Ok(MIGRATOR.migrations.iter().all(|m| applied.contains(&m.version)))
}

/// Where a database stands against the migrations this build knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationState {
    /// Every migration is applied, and none this build does not know.
    Current,
    /// No `outhook` schema yet.
    Missing,
    /// This many migrations are not applied yet.
    Pending(usize),
    /// The database was migrated by a newer build: these versions are
    /// unknown here.
    Newer(Vec<i64>),
}

impl MigrationState {
    /// What an operator must do, or `None` when the database is current.
    pub fn advice(&self) -> Option<String> {
        match self {
            Self::Current => None,
            Self::Missing => Some("the database has no outhook schema: run `outhook migrate`".into()),
            Self::Pending(n) => Some(format!(
                "{n} migration{} not applied to this database: run `outhook migrate`",
                if *n == 1 { " is" } else { "s are" }
            )),
            Self::Newer(versions) => Some(format!(
                "the database was migrated by a newer outhook (migration {} is unknown to this one): \
                 upgrade this binary",
                versions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Compares the database's applied migrations with this build's.
pub async fn migration_state(pool: &PgPool) -> Result<MigrationState> {
    let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM outhook._migrations WHERE success")
        .fetch_all(pool)
        .await
    {
        Ok(v) => v,
        // No bookkeeping table (or no schema) yet.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P01" | "3F000")) => {
            return Ok(MigrationState::Missing);
        }
        Err(e) => return Err(e.into()),
    };
    let known: Vec<i64> = MIGRATOR.migrations.iter().map(|m| m.version).collect();
    let newer: Vec<i64> = applied.iter().copied().filter(|v| !known.contains(v)).collect();
    if !newer.is_empty() {
        return Ok(MigrationState::Newer(newer));
    }
    let pending = known.iter().filter(|v| !applied.contains(v)).count();
    Ok(if applied.is_empty() {
        MigrationState::Missing
    } else if pending > 0 {
        MigrationState::Pending(pending)
    } else {
        MigrationState::Current
    })
}
