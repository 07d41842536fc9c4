//! A small OTLP/HTTP trace collector on 127.0.0.1: it takes what an
//! exporter POSTs to `/v1/traces` (protobuf `ExportTraceServiceRequest`,
//! from the OpenTelemetry protocol's own definitions), answers 200, and
//! keeps every span it was sent, flattened, for tests to look at.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use tokio::sync::Notify;

/// One span as received.
#[derive(Debug, Clone)]
pub struct Span {
    /// Its name.
    pub name: String,
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// Its span id, 16 hex digits.
    pub span_id: String,
    /// The parent's span id, 16 hex digits; empty for a root.
    pub parent_span_id: String,
    /// Its attributes, each value as text.
    pub attributes: BTreeMap<String, String>,
    /// The resource's `service.name`.
    pub service: String,
}

#[derive(Default)]
struct Shared {
    /// Keep the spans, or only count them (a benchmark's hundreds of
    /// thousands).
    keep: bool,
    spans: Mutex<Vec<Span>>,
    counted: std::sync::atomic::AtomicU64,
    arrived: Notify,
}

/// The collector; it stops when dropped.
pub struct Collector {
    /// The address it listens on.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Collector {
    /// Starts a collector on a free 127.0.0.1 port that keeps every span.
    pub async fn start() -> Result<Self> {
        Self::start_with(true).await
    }

    /// Starts one that only counts the spans it decodes ([`Self::count`]).
    pub async fn start_counting() -> Result<Self> {
        Self::start_with(false).await
    }

    async fn start_with(keep: bool) -> Result<Self> {
        let shared = Arc::new(Shared {
            keep,
            ..Shared::default()
        });
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = crate::serve_until_dropped(listener, app);
        Ok(Self {
            addr,
            shared,
            _stop: stop,
        })
    }

    /// The endpoint to give an exporter: `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many spans were received.
    pub fn count(&self) -> u64 {
        self.shared.counted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every span received so far (none when only counting).
    pub fn spans(&self) -> Vec<Span> {
        self.shared.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `done` holds for the spans received, or `timeout` passes;
    /// returns the spans either way.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            let spans = self.spans();
            if done(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }
}

async fn traces(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut got = Vec::new();
    let n: usize = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    shared.counted.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    if !shared.keep {
        return StatusCode::OK;
    }
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref().and_then(|v| v.value.as_ref()).map(text))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                got.push(Span {
                    name: span.name,
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .filter_map(|a| Some((a.key.clone(), text(a.value.as_ref()?.value.as_ref()?))))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    if let Ok(mut spans) = shared.spans.lock() {
        spans.extend(got);
    }
    shared.arrived.notify_waiters();
    StatusCode::OK
}

/// An attribute's value as text.
fn text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}
