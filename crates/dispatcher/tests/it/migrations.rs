//! Outhook's migrations live beside the host application's own sqlx
//! migrations in one database without touching them.

use sqlx::migrate::{Migration, MigrationType, Migrator};

fn host_migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "host app tables".into(),
        MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str("CREATE TABLE orders (id bigint PRIMARY KEY, total numeric NOT NULL);"),
        false,
    )])
}

#[tokio::test(flavor = "multi_thread")]
async fn outhook_and_a_host_application_migrate_one_database_in_either_order() {
    for host_first in [true, false] {
        let (_, pool) = outhook_testkit::postgres::database().await.unwrap();
        if host_first {
            host_migrator().run(&pool).await.unwrap();
            outhook_dispatcher::migrate(&pool).await.unwrap();
        } else {
            outhook_dispatcher::migrate(&pool).await.unwrap();
            host_migrator().run(&pool).await.unwrap();
        }
        // Both run again cleanly: neither sees the other's migrations as missing.
        host_migrator().run(&pool).await.unwrap();
        outhook_dispatcher::migrate(&pool).await.unwrap();
        let host: Vec<i64> = sqlx::query_scalar("SELECT version FROM public._sqlx_migrations")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(host, vec![1]);
        let ours: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook._migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(ours >= 1);
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE '%outbox%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(tables, 0, "nothing of ours outside the outhook schema");
    }
}
