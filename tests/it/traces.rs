//! OpenTelemetry: `outhook serve --otlp-endpoint` exports, to a real OTLP
//! collector (the testkit's, decoding the protocol's protobuf), one trace
//! per delivered event: the API's `enqueue` span as a child of the caller's
//! `traceparent`, and the delivery's `delivery`, `claim`, `sign`,
//! `request` and `complete` spans under it, with the message id as an
//! attribute. An event the library enqueues with a `traceparent` joins that
//! trace the same way.

use std::time::Duration;

use outhook_testkit::otlp::{Collector, Span};
use outhook_testkit::receiver::Receiver;
use reqwest::Method;
use serde_json::json;

use crate::api::{Server, cli};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const LIBRARY_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const LIBRARY_SPAN: &str = "b7ad6b7169203331";

fn in_trace<'a>(spans: &'a [Span], trace: &str, name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.trace_id == trace && s.name == name).collect()
}

/// Whether the trace holds a delivery with all its parts.
fn complete(spans: &[Span], trace: &str) -> bool {
    ["delivery", "claim", "sign", "request", "complete"]
        .iter()
        .all(|name| !in_trace(spans, trace, name).is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_one_trace_from_the_callers_traceparent_to_its_completion() {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    cli(&url, &["migrate"]);
    let receiver = Receiver::start().await.unwrap();
    crate::worker_process::add_endpoint(&url, "acme", &receiver.url("/hook"), &[]);
    let collector = Collector::start().await.unwrap();
    let endpoint = collector.endpoint();
    let server = Server::serve(url, pool.clone(), &["--otlp-endpoint", &endpoint], &[]).await;

    // Through the API, with the caller's trace context.
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let (status, sent) = server
        .raw(
            Method::POST,
            "/v1/messages",
            &[("content-type", "application/json"), ("traceparent", &traceparent)],
            serde_json::to_vec(&json!({"event_type": "item.sold", "owner": "acme", "payload": {"n": 1}})).unwrap(),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{sent}");
    let uid = sent["uid"].as_str().unwrap().to_owned();

    // Through the library, with another.
    let library = format!("00-{LIBRARY_TRACE}-{LIBRARY_SPAN}-01");
    outhook_dispatcher::enqueue(
        &pool,
        &outhook_dispatcher::Event {
            event_type: "item.sold",
            payload: r#"{"n":2}"#,
            owner: Some("acme"),
            traceparent: Some(&library),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    receiver.wait_for(2, Duration::from_secs(30)).await.unwrap();

    let spans = collector
        .wait_until(Duration::from_secs(30), |s| {
            complete(s, CALLER_TRACE) && complete(s, LIBRARY_TRACE)
        })
        .await;
    assert!(complete(&spans, CALLER_TRACE), "the API's trace: {spans:#?}");
    assert!(complete(&spans, LIBRARY_TRACE), "the library's trace: {spans:#?}");

    // The API's trace: caller → enqueue → delivery → its parts.
    let enqueue = in_trace(&spans, CALLER_TRACE, "enqueue");
    assert_eq!(enqueue.len(), 1, "{enqueue:#?}");
    assert_eq!(
        enqueue[0].parent_span_id, CALLER_SPAN,
        "the enqueue is the caller's child"
    );
    assert_eq!(enqueue[0].attributes.get("message_id"), Some(&uid));
    assert_eq!(enqueue[0].service, "outhook");
    let delivery = in_trace(&spans, CALLER_TRACE, "delivery");
    assert_eq!(delivery.len(), 1, "one attempt: {delivery:#?}");
    let delivery = delivery[0];
    assert_eq!(
        delivery.parent_span_id, enqueue[0].span_id,
        "the delivery is the enqueue's child"
    );
    assert_eq!(delivery.attributes.get("message_id"), Some(&uid), "{delivery:#?}");
    let parts: Vec<&str> = ["claim", "sign", "complete"]
        .iter()
        .map(|name| in_trace(&spans, CALLER_TRACE, name)[0].parent_span_id.as_str())
        .collect();
    assert_eq!(
        parts,
        vec![delivery.span_id.as_str(); 3],
        "claim, sign and complete are the delivery's"
    );
    let request = in_trace(&spans, CALLER_TRACE, "request")[0];
    let sign = in_trace(&spans, CALLER_TRACE, "sign")[0];
    assert!(
        request.parent_span_id == delivery.span_id || request.parent_span_id == sign.span_id,
        "the request is within the delivery: {request:#?}"
    );

    // The library's trace: the caller's span → delivery.
    let delivery = in_trace(&spans, LIBRARY_TRACE, "delivery");
    assert_eq!(delivery.len(), 1);
    assert_eq!(delivery[0].parent_span_id, LIBRARY_SPAN);
    assert!(delivery[0].attributes["message_id"].starts_with("msg_"));

    // A traceparent that is not one is refused by the library and the
    // database alike; the API ignores a bad header, as the W3C says.
    let err = outhook_dispatcher::enqueue(
        &pool,
        &outhook_dispatcher::Event {
            event_type: "item.sold",
            payload: "{}",
            owner: Some("acme"),
            traceparent: Some("00-nope"),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("is not a W3C traceparent"), "{err}");
    let err = sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, owner, traceparent) VALUES ('item.sold', '{}', 'acme', 'x')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("outbox_traceparent"), "{err}");
    let (status, _) = server
        .raw(
            Method::POST,
            "/v1/messages",
            &[("content-type", "application/json"), ("traceparent", "garbage")],
            serde_json::to_vec(&json!({"event_type": "item.sold", "owner": "acme", "payload": {"n": 3}})).unwrap(),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
}
