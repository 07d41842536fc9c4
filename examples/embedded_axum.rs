//! Outhook embedded in an axum application: the order and its webhook event
//! commit in one transaction, and the dispatcher runs in the same tokio
//! runtime, stopping with the server.
//!
//! Run: `cargo run --example embedded_axum` (uses `DATABASE_URL`, or starts
//! a throwaway PostgreSQL), then in another shell:
//!
//! ```sh
//! curl -X POST localhost:3000/orders -H 'content-type: application/json' -d '{"sku":"PART_001","price":12900}'
//! ```
//!
//! The webhook goes to a demo receiver inside the example, which prints it.
//! `--once` places one order itself, waits for its webhook, and exits.

use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use outhook_dispatcher::db::endpoint::{NewEndpoint, endpoint_insert};
use outhook_dispatcher::{Dispatcher, Event, enqueue};
use outhook_signer::Scheme;
use outhook_testkit::receiver::Receiver;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// POST /orders: store the order and enqueue `order.created` atomically.
async fn create_order(State(pool): State<PgPool>, Json(order): Json<serde_json::Value>) -> Result<String, StatusCode> {
    let fail = |_| StatusCode::INTERNAL_SERVER_ERROR;
    let mut tx = pool.begin().await.map_err(fail)?;
    let id: i64 = sqlx::query_scalar("INSERT INTO orders (body) VALUES ($1) RETURNING id")
        .bind(&order)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
    let payload = serde_json::json!({"type": "order.created", "order_id": id, "order": order}).to_string();
    enqueue(
        &mut *tx,
        &Event {
            event_type: "order.created",
            payload: &payload,
            owner: Some("shop-customer"),
            ..Default::default()
        },
    )
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    tx.commit().await.map_err(fail)?;
    Ok(format!("order {id} created\n"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let once = std::env::args().any(|a| a == "--once");
    // DATABASE_URL's server, or a throwaway PostgreSQL kept alive by `_cluster`.
    let (_cluster, url) = outhook_testkit::postgres::database_or_throwaway(&[]).await?;
    let pool = PgPool::connect(&url).await.context("connecting")?;
    outhook_dispatcher::migrate(&pool).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, body jsonb NOT NULL)")
        .execute(&pool)
        .await?;

    // A demo receiver standing in for the customer's server.
    let receiver = Receiver::start().await?;
    let secret = Scheme::by_name("standard-webhooks")?.generate_secret()?;
    endpoint_insert(
        &pool,
        &NewEndpoint {
            owner: "shop-customer".into(),
            url: receiver.url("/webhooks"),
            scheme: "standard-webhooks".into(),
            secret: Some(secret),
            ..Default::default()
        },
    )
    .await?;

    let stop = CancellationToken::new();
    let dispatcher = Dispatcher::builder(pool.clone())
        .allow_network("127.0.0.0/8".parse()?)
        .build()?;
    let dispatching = tokio::spawn({
        let stop = stop.clone();
        async move { dispatcher.run(stop.cancelled_owned()).await }
    });

    let app = Router::new()
        .route("/orders", post(create_order))
        .with_state(pool.clone());
    let listener = tokio::net::TcpListener::bind(if once { "127.0.0.1:0" } else { "127.0.0.1:3000" }).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}; POST /orders to create an order");
    let serving = tokio::spawn({
        let stop = stop.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });

    if once {
        let client = reqwest::Client::builder().build()?;
        let reply = client
            .post(format!("http://{addr}/orders"))
            .header("content-type", "application/json")
            .body(r#"{"sku":"PART_001","price":12900}"#)
            .send()
            .await?;
        println!("{}", reply.text().await?.trim());
        let got = receiver.wait_for(1, Duration::from_secs(15)).await?;
        println!(
            "webhook received: {} {}",
            got[0].headers["webhook-id"].to_str()?,
            String::from_utf8_lossy(&got[0].body)
        );
    } else {
        let _ = tokio::signal::ctrl_c().await;
    }
    stop.cancel();
    serving.await??;
    let summary = dispatching.await??;
    println!("dispatcher stopped: {summary:?}");
    Ok(())
}
