//! Telemetry: the tracing subscriber, the OpenTelemetry tracer that gives spans their trace ids
//! and exports them over OTLP, and trace-context propagation through AMQP headers (W3C
//! `traceparent`/`tracestate`; a legacy Jaeger `uber-trace-id` is accepted on the way in).
//!
//! Export follows the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (HTTP/protobuf, e.g.
//! `http://jaeger:4318`; unset means no exporter, logs only), `OTEL_SERVICE_NAME` (default the
//! process's name), `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (read by the SDK).
//!
//! Logs go to stderr as JSON lines carrying the trace id when stderr is not a terminal (human
//! format on one, or set `LOG_FORMAT=json|text`); `RUST_LOG` filters them.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Once;

use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::jaeger::JaegerExtractor;
use crate::logfmt::JsonWithTrace;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// Keeps the tracer provider alive; flushes spans when dropped via [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the tracer provider (blocking: call from a blocking thread).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
    }
}

/// Default log filter of the workers (`RUST_LOG` overrides it).
pub const WORKER_LOG_FILTER: &str = "info,tokio_postgres=warn";

/// Installs the global subscriber and propagator for a worker named `service`, logging at
/// [`WORKER_LOG_FILTER`]. Installing twice is harmless (the first one stays).
pub fn init(service: &str) -> Telemetry {
    init_with(service, WORKER_LOG_FILTER)
}

/// Like [`init`], with another default log filter (the CLI logs only warnings).
pub fn init_with(service: &str, default_filter: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(propagator());
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| service.to_string());
    let provider = tracer_provider(&service, otlp_endpoint().is_some());
    let tracer = provider.tracer(service.clone());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(span_filter());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    // Logs go to stderr: stdout is for results (ids, reports).
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(JsonWithTrace)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter))
        .try_init()
        .is_ok();
    Telemetry {
        provider: installed.then_some(provider),
    }
}

/// For tests: installs the subscriber once per process, silent unless `TEST_LOG` is set.
pub fn init_for_tests() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        opentelemetry::global::set_text_map_propagator(propagator());
        let provider = tracer_provider("swarm-test", false);
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("swarm-test"))
            .with_filter(span_filter());
        let fmt = std::env::var_os("TEST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
        });
        let _ = tracing_subscriber::registry()
            .with(otel)
            .with(fmt)
            .try_init();
        // Keep the provider for the life of the test process.
        std::mem::forget(provider);
    });
}

/// What becomes spans and span events: our INFO and above. Not lapin (its `io_loop` span would
/// be a stray trace), and not tokio-postgres, whose DEBUG statement logs (with every parameter)
/// cost half the CPU of a worker and would export sample values into traces.
fn span_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("lapin", LevelFilter::OFF)
        .with_target("tokio_postgres", LevelFilter::OFF)
}

/// The OTLP endpoint, if one is configured.
pub fn otlp_endpoint() -> Option<String> {
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// A provider that gives spans ids (so context propagates) and, with `export`, sends them over
/// OTLP/HTTP in batches.
fn tracer_provider(service: &str, export: bool) -> SdkTracerProvider {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    if !export {
        return builder.build();
    }
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
    {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(error) => {
            eprintln!("OTLP exporter not started, spans stay local: {error}");
            builder.build()
        }
    }
}

/// Extracts W3C trace context, or a Jaeger `uber-trace-id` from older producers (W3C wins when
/// both are present); injects W3C only.
pub fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(JaegerExtractor),
        Box::new(TraceContextPropagator::new()),
    ])
}

/// The W3C headers (`traceparent`, `tracestate`) of a span's context.
pub fn headers_of(span: &tracing::Span) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
    headers
}

/// The trace-context headers as an AMQP header table.
pub fn to_field_table(headers: &HashMap<String, String>) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert(
            k.clone().into(),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    table
}

/// Reads the trace context a producer put in the AMQP headers (long or short strings).
pub fn extract(headers: Option<&FieldTable>) -> Context {
    let mut map = HashMap::new();
    if let Some(table) = headers {
        for (k, v) in table {
            let value = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_string(),
                _ => continue,
            };
            map.insert(k.as_str().to_ascii_lowercase(), value);
        }
    }
    propagator().extract(&map)
}

/// The trace id of a span (32 hex digits), if it has a valid context.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
