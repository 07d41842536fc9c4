//! Enqueueing with plain SQL, as an application in any language would: the
//! statements in `examples/plain_sql.sql`, sent as text.
//!
//! Run: `cargo run --example plain_sql` (uses `DATABASE_URL`, or starts a
//! throwaway PostgreSQL). Prints the deliveries the inserts fanned out to.

use anyhow::{Context, Result};
use outhook_dispatcher::db::delivery::{DeliveryFilter, delivery_list};
use outhook_dispatcher::db::endpoint::{NewEndpoint, endpoint_insert};
use sqlx::PgPool;

#[tokio::main]
async fn main() -> Result<()> {
    // DATABASE_URL's server, or a throwaway PostgreSQL kept alive by `_cluster`.
    let (_cluster, url) = outhook_testkit::postgres::database_or_throwaway(&[]).await?;
    let pool = PgPool::connect(&url).await.context("connecting")?;
    outhook_dispatcher::migrate(&pool).await?;
    for owner in ["customer_42", "vendor_7"] {
        endpoint_insert(
            &pool,
            &NewEndpoint {
                owner: owner.into(),
                url: format!("https://{owner}.example/webhooks"),
                scheme: "rheo".into(),
                secret: Some(outhook_signer::Secret::new("whsec_demo")),
                ..Default::default()
            },
        )
        .await?;
    }
    let endpoint: uuid::Uuid = sqlx::query_scalar("SELECT id FROM outhook.endpoint WHERE owner = 'vendor_7'")
        .fetch_one(&pool)
        .await?;
    // psql's :'endpoint_id' variable, substituted as psql would.
    let sql = include_str!("plain_sql.sql").replace(":'endpoint_id'", &format!("'{endpoint}'"));
    for _ in 0..2 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&pool).await?;
    }
    println!("ran examples/plain_sql.sql twice; the idempotent insert counted once:");
    for d in delivery_list(&pool, &DeliveryFilter::default()).await? {
        println!(
            "  delivery {} of message {}: {} to endpoint {}",
            d.id, d.message_id, d.event_type, d.endpoint_id
        );
    }
    Ok(())
}
