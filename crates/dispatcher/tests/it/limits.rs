//! Per-endpoint limits, held across dispatchers through PostgreSQL: a rate
//! with a burst, and a maximum of attempts in flight.

use std::time::{Duration, SystemTime};

use outhook_dispatcher::db::endpoint::{EndpointUpdate, Limits, NewEndpoint, endpoint_insert, endpoint_update};
use outhook_dispatcher::{Event, enqueue_many};
use outhook_testkit::receiver::{Receiver, Reply};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;

async fn limited_endpoint(pool: &PgPool, owner: &str, url: &str, limits: Limits) -> Uuid {
    endpoint_insert(
        pool,
        &NewEndpoint {
            owner: owner.into(),
            url: url.into(),
            scheme: "trr".into(),
            secret: Some(outhook_signer::Secret::new("s")),
            limits,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .id
}

async fn send(pool: &PgPool, owner: &str, n: usize) {
    let payloads: Vec<String> = (0..n).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    let events: Vec<Event> = payloads
        .iter()
        .map(|p| Event {
            event_type: "item.sold",
            payload: p,
            owner: Some(owner),
            ..Default::default()
        })
        .collect();
    enqueue_many(pool, &events).await.unwrap();
}

/// The most arrivals in any window of `width` starting at an arrival.
fn most_in_window(times: &[SystemTime], width: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| sorted[i..].iter().take_while(|t| **t < sorted[i] + width).count())
        .max()
        .unwrap_or(0)
}

fn arrivals(receiver: &Receiver, path: &str) -> Vec<SystemTime> {
    receiver
        .received()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.at)
        .collect()
}

/// Three dispatchers, one endpoint at 20/s (burst 1) beside an unlimited
/// one: the limited endpoint never sees more than 20 in a second (one more
/// at a window's edge), and the unlimited one's deliveries all arrive
/// while the limited backlog still drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_across_dispatchers_and_spares_other_endpoints() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let limits = Limits {
        rate: Some(20.0),
        ..Limits::default()
    };
    limited_endpoint(&pool, "slow", &receiver.url("/limited"), limits).await;
    limited_endpoint(&pool, "fast", &receiver.url("/free"), Limits::default()).await;
    send(&pool, "slow", 60).await;
    send(&pool, "fast", 600).await;
    let workers: Vec<Running> = (0..3).map(|_| Running::start(builder(&pool))).collect();
    assert_eq!(
        wait_for_count(&pool, DELIVERED, 660, Duration::from_secs(30)).await,
        660
    );
    for w in workers {
        w.stop().await;
    }
    let limited = arrivals(&receiver, "/limited");
    let free = arrivals(&receiver, "/free");
    assert_eq!((limited.len(), free.len()), (60, 600), "each delivered once");
    let most = most_in_window(&limited, Duration::from_secs(1));
    assert!(
        most <= 22,
        "{most} requests in one second to an endpoint limited to 20/s (22 is 10% over)"
    );
    let span = limited
        .iter()
        .max()
        .unwrap()
        .duration_since(*limited.iter().min().unwrap())
        .unwrap();
    assert!(
        span >= Duration::from_millis(2900),
        "60 requests at 20/s take 2.95 s, took {span:?}"
    );
    let free_done = free.iter().max().unwrap();
    let limited_done = limited.iter().max().unwrap();
    assert!(
        free_done < limited_done,
        "the unlimited endpoint waited for the limited one"
    );
    // Every deferral gave its attempt back: one attempt per delivery.
    let over: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.delivery WHERE attempts <> 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(over, 0, "deferred rows counted attempts they never made");
}

/// At most two attempts in flight across three dispatchers: no request
/// arrives while two others are still being answered, and the limit is
/// used (two do overlap).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_in_flight_limit_holds_across_dispatchers() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let answer = Duration::from_millis(100);
    receiver.set_default(Reply::Delayed(answer, 200));
    let limits = Limits {
        max_in_flight: Some(2),
        ..Limits::default()
    };
    limited_endpoint(&pool, "acme", &receiver.url("/limited"), limits).await;
    send(&pool, "acme", 30).await;
    let workers: Vec<Running> = (0..3).map(|_| Running::start(builder(&pool))).collect();
    assert_eq!(wait_for_count(&pool, DELIVERED, 30, Duration::from_secs(30)).await, 30);
    for w in workers {
        w.stop().await;
    }
    let times = arrivals(&receiver, "/limited");
    assert_eq!(times.len(), 30);
    // A place frees only after the answer, so requests arriving within one
    // answer's time of each other were in flight together.
    let together = most_in_window(&times, answer);
    assert_eq!(together, 2, "at most 2 in flight, and 2 used");
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outhook.delivery WHERE status = 4 OR in_flight_until IS NOT NULL OR attempts <> 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0, "no row left waiting or marked in flight, one attempt each");
}

/// Lifting a limit frees what it held back: rows deferred under a slow rate
/// are slotted again, rows waiting for an in-flight place are promoted.
#[tokio::test(flavor = "multi_thread")]
async fn lifting_a_limit_releases_what_it_held() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let limits = Limits {
        rate: Some(0.5),
        max_in_flight: Some(1),
        ..Limits::default()
    };
    let id = limited_endpoint(&pool, "acme", &receiver.url("/limited"), limits).await;
    send(&pool, "acme", 10).await;
    let running = Running::start(builder(&pool));
    receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    // One request every two seconds: the rest wait far into the future.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);
    endpoint_update(
        &pool,
        id,
        &EndpointUpdate {
            rate_limit: Some(0.0),
            max_in_flight: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(wait_for_count(&pool, DELIVERED, 10, Duration::from_secs(10)).await, 10);
    running.stop().await;
    assert_eq!(receiver.received().len(), 10);
}

/// Limits out of range, or a burst without a rate, are refused.
#[tokio::test]
async fn bad_limits_are_refused() {
    let pool = db().await;
    for limits in [
        Limits {
            rate: Some(0.0),
            ..Limits::default()
        },
        Limits {
            rate: Some(f64::NAN),
            ..Limits::default()
        },
        Limits {
            max_in_flight: Some(0),
            ..Limits::default()
        },
        Limits {
            burst: Some(5),
            ..Limits::default()
        },
    ] {
        let err = endpoint_insert(
            &pool,
            &NewEndpoint {
                owner: "acme".into(),
                url: "http://127.0.0.1:9/".into(),
                scheme: "trr".into(),
                secret: Some(outhook_signer::Secret::new("s")),
                limits,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, outhook_dispatcher::Error::Config(_)), "{limits:?}: {err}");
    }
}

/// Rows waiting for an in-flight place are pending to every reader, and
/// deleting their endpoint makes them dead letters like any pending row.
#[tokio::test]
async fn waiting_rows_are_listed_as_pending_and_die_with_their_endpoint() {
    use outhook_dispatcher::db::delivery::{DeliveryFilter, DeliveryStatus, delivery_list};
    let pool = db().await;
    let limits = Limits {
        max_in_flight: Some(1),
        ..Limits::default()
    };
    let id = limited_endpoint(&pool, "acme", "http://127.0.0.1:9/hook", limits).await;
    send(&pool, "acme", 3).await;
    // As the admission leaves rows over the limit.
    sqlx::query("UPDATE outhook.delivery SET status = 4 WHERE id > (SELECT min(id) FROM outhook.delivery)")
        .execute(&pool)
        .await
        .unwrap();
    let pending = delivery_list(
        &pool,
        &DeliveryFilter {
            status: Some(DeliveryStatus::Pending),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(pending.len(), 3, "waiting rows are pending");
    outhook_dispatcher::db::endpoint::endpoint_delete(&pool, id)
        .await
        .unwrap();
    let (dead, other): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 2), count(*) FILTER (WHERE status <> 2) FROM outhook.delivery",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (dead, other),
        (3, 0),
        "every row of the deleted endpoint is a dead letter"
    );
}
