//! Outhook's HTTP API mounted inside a provider's own axum application,
//! under `/webhooks`, beside the application's routes, with the worker in
//! the same runtime.
//!
//! Run: `cargo run --example mounted_api` (uses `DATABASE_URL`, or starts a
//! throwaway PostgreSQL). It prints an admin token; then, in another shell:
//!
//! ```sh
//! curl -H "Authorization: Bearer $TOKEN" localhost:3001/webhooks/v1/endpoints
//! curl localhost:3001/webhooks/.well-known/jwks.json
//! ```
//!
//! `--once` registers an endpoint and sends a message through the mounted
//! API itself, waits for the webhook at a demo receiver, and exits.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::get;
use outhook_dispatcher::Dispatcher;
use outhook_server::admin::{Scope, token};
use outhook_server::{AppState, ServerConfig};
use outhook_testkit::receiver::Receiver;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<()> {
    let once = std::env::args().any(|a| a == "--once");
    let (_cluster, url) = outhook_testkit::postgres::database_or_throwaway(&[]).await?;
    let pool = PgPool::connect(&url).await.context("connecting")?;
    outhook_dispatcher::migrate(&pool).await?;

    // The demo receiver listens on 127.0.0.1: allow loopback, as a test would.
    let loopback: outhook_dispatcher::IpNet = "127.0.0.0/8".parse()?;
    let config = ServerConfig {
        addresses: outhook_dispatcher::http::AddressPolicy {
            allow: vec![loopback],
            https_only: false,
        },
        ..ServerConfig::default()
    };
    let metrics = outhook_server::metrics::install()?;
    let webhooks = outhook_server::router(AppState::new(pool.clone(), config, Some(metrics)));
    let app = Router::new()
        .route("/", get(|| async { "the provider's own application\n" }))
        .nest("/webhooks", webhooks);

    let stop = CancellationToken::new();
    let dispatcher = Dispatcher::builder(pool.clone()).allow_network(loopback).build()?;
    let worker = tokio::spawn(dispatcher.run(stop.clone().cancelled_owned()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );

    let (_, admin) = token::create(&pool, "example", &Scope::Admin, None).await?;
    println!(
        "API at http://127.0.0.1:3001/webhooks/v1, admin token:\n{}",
        admin.expose()
    );

    if once {
        let receiver = Receiver::start().await?;
        let http = reqwest::Client::builder().build()?;
        let api = |path: &str| format!("http://127.0.0.1:3001/webhooks/v1{path}");
        let endpoint: serde_json::Value = http
            .post(api("/endpoints"))
            .bearer_auth(admin.expose())
            .json(&serde_json::json!({"owner": "acme", "url": receiver.url("/hook"), "scheme": "rheo"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let sent: serde_json::Value = http
            .post(api("/messages"))
            .bearer_auth(admin.expose())
            .json(&serde_json::json!({"event_type": "item.sold", "owner": "acme", "payload": {"item_id": "PART_001"}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let got = receiver.wait_for(1, Duration::from_secs(10)).await?;
        println!(
            "endpoint {} got message {} with X-Rheo-Signature {}",
            endpoint["id"],
            sent["uid"],
            got[0]
                .headers
                .get("x-rheo-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
        );
        if got[0].body.as_ref() != br#"{"item_id":"PART_001"}"# {
            bail!("unexpected body");
        }
    } else {
        tokio::signal::ctrl_c().await?;
    }
    stop.cancel();
    server.await??;
    worker.await??;
    Ok(())
}
