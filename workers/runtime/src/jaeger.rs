//! An extract-only propagator for the legacy Jaeger header `uber-trace-id:
//! {trace-id}:{span-id}:{parent-span-id}:{flags}` (hex), so producers still on Jaeger clients
//! join the trace. The deprecated `opentelemetry-jaeger-propagator` lags the OpenTelemetry
//! version we use; the format is small enough to read here.

use opentelemetry::propagation::{
    text_map_propagator::FieldIter, Extractor, Injector, TextMapPropagator,
};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

/// The header name.
pub const HEADER: &str = "uber-trace-id";

/// Reads `uber-trace-id`; never writes it.
#[derive(Debug, Default, Clone, Copy)]
pub struct JaegerExtractor;

static FIELDS: [String; 0] = [];

/// Parses an `uber-trace-id` value into a remote span context.
pub fn parse(value: &str) -> Option<SpanContext> {
    let value = value.replace("%3A", ":").replace("%3a", ":");
    let parts: Vec<&str> = value.trim().split(':').collect();
    if parts.len() != 4 {
        return None;
    }
    let trace_id = TraceId::from_hex(&format!("{:0>32}", parts[0])).ok()?;
    let span_id = SpanId::from_hex(&format!("{:0>16}", parts[1])).ok()?;
    let flags = u8::from_str_radix(parts[3], 16).ok()?;
    if trace_id == TraceId::INVALID
        || span_id == SpanId::INVALID
        || parts[0].len() > 32
        || parts[1].len() > 16
    {
        return None;
    }
    let sampled = if flags & 1 == 1 {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Some(SpanContext::new(
        trace_id,
        span_id,
        sampled,
        true,
        TraceState::default(),
    ))
}

impl TextMapPropagator for JaegerExtractor {
    fn inject_context(&self, _cx: &Context, _injector: &mut dyn Injector) {}

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extractor.get(HEADER).and_then(parse) {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&FIELDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jaeger_headers() {
        let sc = parse("4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1").unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        // 64-bit trace ids and URL-encoded colons, as some clients send them.
        let sc = parse("a3ce929d0e0e4736%3Af067aa0ba902b7%3A0%3A0").unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "0000000000000000a3ce929d0e0e4736"
        );
        assert!(!sc.is_sampled());
        for bad in ["", "1:2:3", "zz:1:0:1", "0:1:0:1", "1:0:0:1"] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
