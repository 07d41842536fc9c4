//! The README's main job: the whole path, from outbox row to verified
//! receiver, for each of the five seed schemes.
//!
//! Run: `cargo run --example quickstart`
//!
//! With `DATABASE_URL` unset it starts a throwaway PostgreSQL from the local
//! installation; with it set, it uses that server (creating a fresh
//! database there). It starts one local receiver per scheme that verifies
//! every request with Outhook's verifier (answering 401 when invalid),
//! enqueues the seed events, runs the dispatcher until every delivery is
//! final, prints the delivery log, and exits 0 only if all were delivered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use outhook_dispatcher::db::attempt::attempt_list;
use outhook_dispatcher::db::delivery::{DeliveryFilter, delivery_list};
use outhook_dispatcher::db::endpoint::{NewEndpoint, endpoint_insert};
use outhook_dispatcher::db::signing_key::signing_key_insert;
use outhook_dispatcher::{Dispatcher, Event, enqueue};
use outhook_signer::{RsaKeyPair, Scheme, Secret, Verifier};
use outhook_testkit::receiver::Receiver;
use sqlx::postgres::PgPoolOptions;

const EVENTS: &[(&str, &str, &str)] = &[
    (
        "trr",
        "vendor.notification",
        r#"{"type":"vendor.notification","vendor_id":"v_123","message":"Your item was authenticated"}"#,
    ),
    (
        "real-id",
        "check.completed",
        r#"{"event":"check.completed","created_at":"2022-12-09T15:20:35.136Z","check":{"id":"abcdef","step":"completed","testing":true}}"#,
    ),
    (
        "real-id",
        "customer.data_deletion_request",
        r#"{"event":"customer.data_deletion_request","created_at":"2022-12-09T15:20:35.136Z","check":{"id":"abcdef","testing":true}}"#,
    ),
    (
        "standard-webhooks",
        "check.completed",
        r#"{"type":"check.completed","data":{"id":"abcdef","verdict":"pass"}}"#,
    ),
    (
        "rheo",
        "item.sold",
        r#"{"event":"item.sold","data":{"item_id":"PART_001","price":{"amount":12900,"currency":"SEK"}}}"#,
    ),
    (
        "cometh",
        "ORDER_FILLED",
        r#"{"type":"ORDER_FILLED","order":{"id":"0x9f3c","collection":"0xabc","tokenId":"42","price":"1500000000000000000"}}"#,
    ),
];

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::var("DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        println!("using DATABASE_URL's server, in a fresh database");
    } else {
        println!("DATABASE_URL is unset: starting a throwaway PostgreSQL ...");
    }
    let (_cluster, url) = outhook_testkit::postgres::database_or_throwaway(&[]).await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .context("connecting")?;
    outhook_dispatcher::migrate(&pool).await?;
    match outhook_dispatcher::secrets::keyring()?.current_id() {
        Some(id) => println!("secrets are sealed at rest with main key {id}"),
        None => println!(
            "WARNING: secrets are stored in plain text (set OUTHOOK_MAIN_KEY, from `outhook secrets new-main-key`, to seal them)"
        ),
    }

    // The provider's RSA key for Cometh, published at a route in real life.
    let rsa = tokio::task::spawn_blocking(|| RsaKeyPair::generate(2048)).await??;
    let key = signing_key_insert(&pool, "cometh-indexer", &rsa).await?;

    let mut receivers = Vec::new();
    for scheme in ["trr", "real-id", "standard-webhooks", "rheo", "cometh"] {
        let receiver = Receiver::start().await?;
        let parsed = Scheme::by_name(scheme)?;
        let (secret, verify_key) = match scheme {
            "cometh" => (None, Secret::new(key.public_key_pem.clone())),
            _ => {
                let s = parsed.generate_secret()?;
                (Some(s.clone()), s)
            }
        };
        let endpoint = endpoint_insert(
            &pool,
            &NewEndpoint {
                owner: format!("customer-of-{scheme}"),
                url: receiver.url("/webhooks"),
                scheme: scheme.into(),
                secret,
                signing_key_id: (scheme == "cometh").then_some(key.id),
                description: format!("{scheme} receiver"),
                ..Default::default()
            },
        )
        .await?;
        let verifier = Arc::new(Verifier::new(parsed, &[verify_key])?);
        receiver.judge_with(Arc::new(move |headers, body| {
            if verifier.verify(headers, body).is_ok() {
                200
            } else {
                401
            }
        }));
        receivers.push((scheme, endpoint.owner, receiver));
    }

    // The application's side: rows in its own transaction.
    let mut tx = pool.begin().await?;
    for (scheme, event_type, payload) in EVENTS {
        let owner = format!("customer-of-{scheme}");
        enqueue(
            &mut *tx,
            &Event {
                event_type,
                payload,
                owner: Some(&owner),
                ..Default::default()
            },
        )
        .await?;
    }
    tx.commit().await?;
    println!("enqueued {} events; dispatching ...", EVENTS.len());

    let dispatcher = Dispatcher::builder(pool.clone())
        .allow_network("127.0.0.0/8".parse()?)
        .poll_interval(Duration::from_millis(100))
        .build()?;
    let watch = pool.clone();
    let started = Instant::now();
    let summary = dispatcher
        .run(async move {
            while started.elapsed() < Duration::from_secs(30) {
                let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.delivery WHERE status = 0")
                    .fetch_one(&watch)
                    .await
                    .unwrap_or(1);
                if pending == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await?;

    println!();
    println!(
        "{:<4} {:<32} {:<19} {:<9} {:>4} {:>6} {:>7}  signature header",
        "id", "event type", "scheme", "status", "try", "http", "ms"
    );
    let deliveries = delivery_list(&pool, &DeliveryFilter::default()).await?;
    for d in deliveries.iter().rev() {
        let endpoint: (String,) = sqlx::query_as("SELECT scheme FROM outhook.endpoint WHERE id = $1")
            .bind(d.endpoint_id)
            .fetch_one(&pool)
            .await?;
        for a in attempt_list(&pool, d.id).await? {
            let sig = a
                .request_headers
                .as_object()
                .and_then(|h| h.keys().find(|k| k.contains("signature")).cloned())
                .unwrap_or_default();
            println!(
                "{:<4} {:<32} {:<19} {:<9} {:>4} {:>6} {:>7}  {}",
                d.id,
                d.event_type,
                endpoint.0,
                d.status.as_str(),
                a.attempt,
                a.status_code.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                a.duration_ms,
                sig
            );
        }
    }
    println!();
    println!("{summary:?}");
    let verified: usize = receivers.iter().map(|(_, _, r)| r.received().len()).sum();
    ensure!(
        summary.delivered as usize == EVENTS.len(),
        "only {} of {} delivered",
        summary.delivered,
        EVENTS.len()
    );
    ensure!(verified == EVENTS.len(), "receivers saw {verified} requests");
    println!("all {} events delivered and verified by their receivers", EVENTS.len());
    Ok(())
}
