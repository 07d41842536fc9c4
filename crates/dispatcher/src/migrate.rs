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
