//! Logs to stderr and, when `--otlp-endpoint` is set, traces exported over
//! OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`: the API's `enqueue`
//! spans, and each delivery's `delivery` span with its `claim`, `sign`,
//! `request` and `complete` spans, in the trace of whatever enqueued it.
//! Off by default, and then no span is made for export.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// How log lines look (`--log-format`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For people, coloured or not.
    Text {
        /// ANSI colours.
        colour: bool,
    },
    /// One JSON object per line.
    Json,
}

/// The exporter, to be shut down (flushing what it holds) before exit.
pub struct Exporter(SdkTracerProvider);

impl Exporter {
    /// Sends what is left and stops.
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("warning: exporting the last traces failed: {e}");
        }
    }
}

/// Installs the logger (`filter` for its lines) and, with `otlp`, the
/// trace exporter.
pub fn install(format: Format, filter: EnvFilter, otlp: Option<&str>) -> anyhow::Result<Option<Exporter>> {
    let provider = match otlp {
        Some(endpoint) => {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .build()?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name("outhook")
                            .build(),
                    )
                    .build(),
            )
        }
        None => None,
    };
    // Outhook's own spans, down to debug (sign, request, claim, complete),
    // and none at all without an exporter. The filter wraps the optional
    // layer rather than the layer inside it: an absent layer says "always"
    // to every callsite, which made the deliveries' debug spans be built
    // and registered for nothing (more CPU and memory with traces off).
    let ours = if provider.is_some() {
        Targets::new()
            .with_target("outhook", Level::DEBUG)
            .with_target("outhook_dispatcher", Level::DEBUG)
            .with_target("outhook_server", Level::DEBUG)
    } else {
        Targets::new()
    };
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("outhook")))
        .with_filter(ours);
    let registry = tracing_subscriber::registry().with(traces);
    match format {
        Format::Text { colour } => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(colour)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .init(),
        Format::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .init(),
    }
    Ok(provider.map(Exporter))
}
