//! Every setting of the library's builder is checked by `build()`: a NaN,
//! negative, zero or absurd value is an `Error::Config` that names it,
//! never a panic and never a worker that misbehaves. The table must hold
//! every setter the builder has, so a new one cannot go unchecked.

use std::time::Duration;

use outhook_dispatcher::{Dispatcher, DispatcherBuilder, Error, RetryPolicy};

type Set = fn(DispatcherBuilder) -> DispatcherBuilder;

const MS: fn(u64) -> Duration = Duration::from_millis;
const S: fn(u64) -> Duration = Duration::from_secs;
const DAY: u64 = 86_400;

/// (setting, a value it must refuse).
const BAD: &[(&str, Set)] = &[
    ("concurrency", |b| b.concurrency(0)),
    ("concurrency", |b| b.concurrency(1_000_000)),
    ("batch_size", |b| b.batch_size(0)),
    ("batch_size", |b| b.batch_size(100_000)),
    ("lease", |b| b.lease(Duration::ZERO)),
    ("lease", |b| b.lease(S(30 * DAY))),
    ("lease", |b| b.lease(S(10))),
    ("poll_interval", |b| b.poll_interval(Duration::ZERO)),
    ("poll_interval", |b| b.poll_interval(S(2 * 3600))),
    ("endpoint_cache_ttl", |b| b.endpoint_cache_ttl(S(2 * 3600))),
    ("shutdown_grace", |b| b.shutdown_grace(S(2 * 3600))),
    ("connect_timeout", |b| b.connect_timeout(Duration::ZERO)),
    ("connect_timeout", |b| b.connect_timeout(S(3600))),
    ("request_timeout", |b| b.request_timeout(Duration::ZERO)),
    ("request_timeout", |b| b.request_timeout(S(2 * 3600))),
    ("max_response_bytes", |b| b.max_response_bytes(4 << 20)),
    ("max_request_bytes", |b| b.max_request_bytes(0)),
    ("max_request_bytes", |b| b.max_request_bytes(300 << 20)),
    ("payload_budget", |b| b.payload_budget(0)),
    ("payload_budget", |b| b.payload_budget(1 << 20)),
    ("response_budget", |b| b.response_budget(1024)),
    ("max_lease_losses", |b| b.max_lease_losses(0)),
    ("max_lease_losses", |b| b.max_lease_losses(5000)),
    ("busy_polling", |b| b.busy_polling(Some(0))),
    ("busy_polling", |b| b.busy_polling(Some(u32::MAX))),
    ("retention", |b| b.retention(Some(S(1)))),
    ("retention", |b| b.retention(Some(Duration::ZERO))),
    ("auto_disable_after", |b| b.auto_disable_after(S(20_000 * DAY))),
    ("maintenance_interval", |b| b.maintenance_interval(Duration::ZERO)),
    ("maintenance_interval", |b| b.maintenance_interval(S(2 * DAY))),
    ("retry_policy", |b| {
        b.retry_policy(RetryPolicy::default().with_jitter(f64::NAN))
    }),
    ("retry_policy", |b| {
        b.retry_policy(RetryPolicy::default().with_jitter(-0.1))
    }),
    ("retry_policy", |b| {
        b.retry_policy(RetryPolicy::default().with_jitter(2.0))
    }),
    ("retry_policy", |b| {
        b.retry_policy(RetryPolicy::exponential(S(1), f64::NAN, S(60), 5))
    }),
    ("retry_policy", |b| {
        b.retry_policy(RetryPolicy::exponential(S(1), -2.0, S(60), 5))
    }),
    ("retry_policy", |b| {
        b.retry_policy(RetryPolicy::exponential(S(1), 0.5, S(60), 5))
    }),
    ("retry_policy", |b| {
        b.retry_policy(RetryPolicy::schedule(vec![S(1), Duration::ZERO]))
    }),
    ("retry_policy", |b| {
        b.retry_policy(RetryPolicy::default().with_max_age(Duration::ZERO))
    }),
];

/// Setters with nothing to refuse: switches, networks, pooling and the
/// proxy (typed: a `ProxyUrl` is checked when it is parsed).
const UNBOUNDED: &[&str] = &[
    "proxy",
    "listen",
    "pooling",
    "durable_claims",
    "busy_polling_on_rate_alone",
    "allow_network",
    "https_only",
];

#[tokio::test]
async fn every_builder_setting_refuses_nan_negative_zero_and_absurd_values_by_name() {
    // A pool that never connects: `build()` must not need the database.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://outhook@127.0.0.1:1/none")
        .unwrap();
    let source = include_str!("../../src/dispatcher.rs");
    let setters: Vec<&str> = source
        .split("    pub fn ")
        .skip(1)
        .filter_map(|rest| rest.split_once("(mut self"))
        .map(|(name, _)| name)
        .collect();
    assert!(setters.len() > 20, "{setters:?}");
    for setter in &setters {
        assert!(
            BAD.iter().any(|(name, _)| name == setter) || UNBOUNDED.contains(setter),
            "DispatcherBuilder::{setter} is not in the table: add what it must refuse"
        );
    }
    for (name, set) in BAD {
        match set(Dispatcher::builder(pool.clone())).build() {
            Err(Error::Config(why)) => assert!(why.contains(name), "{name}: the message does not name it: {why}"),
            Err(e) => panic!("{name}: not a configuration error: {e}"),
            Ok(_) => panic!("{name}: a bad value was accepted"),
        }
    }
    // The defaults, and values at the edges, are accepted.
    assert!(Dispatcher::builder(pool.clone()).build().is_ok());
    let edges = Dispatcher::builder(pool)
        .concurrency(1)
        .batch_size(10_000)
        .poll_interval(MS(1))
        .endpoint_cache_ttl(Duration::ZERO)
        .retention(Some(S(3600)))
        .retry_policy(RetryPolicy::default().with_jitter(1.0));
    assert!(edges.build().is_ok());
}
