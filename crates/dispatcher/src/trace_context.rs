//! W3C trace context (`traceparent`) carried from whatever enqueued a
//! message to its delivery attempts, so that both sit in one trace when
//! the process exports traces (OpenTelemetry, through `tracing`). Without
//! an OpenTelemetry layer installed, nothing here has any effect.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span context a `traceparent` header names (version 00:
/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`), if it is one:
/// lower-case hex, ids not all zero.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.split('-');
    let (Some(version), Some(trace), Some(span), Some(flags), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if version != "00" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// Whether `traceparent` is one [`parse`] takes.
pub fn is_valid(traceparent: &str) -> bool {
    parse(traceparent).is_some()
}

/// Makes the span that `traceparent` names the parent of `span` (a span
/// not entered yet). An invalid value is ignored, as the W3C says.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(remote) = parse(traceparent) {
        // Only fails when no OpenTelemetry layer is installed: nothing to link.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// The `traceparent` of `span` as exported, if traces are exported (its
/// context is valid): what a message enqueued inside it carries.
pub fn of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span = context.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_w3c_form_only() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = parse(good).unwrap();
        assert_eq!(parsed.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parsed.is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
