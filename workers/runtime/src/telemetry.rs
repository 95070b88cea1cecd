//! Telemetry: the tracing subscriber, the OpenTelemetry tracer that gives spans their trace ids,
//! and W3C trace-context propagation through AMQP headers.
//!
//! Logs go to stderr as JSON lines carrying the trace id when stderr is not a terminal (human
//! format on one, or set `LOG_FORMAT=json|text`); `RUST_LOG` filters them.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Once;

use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
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
    /// Flushes and stops the tracer provider.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
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
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = tracer_provider(service);
    let tracer = provider.tracer(service.to_string());
    // lapin opens an io_loop span that would become a stray trace.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(
            Targets::new()
                .with_default(LevelFilter::TRACE)
                .with_target("lapin", LevelFilter::OFF),
        );
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
            .json()
            .with_current_span(true)
            .with_span_list(false)
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
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = tracer_provider("swarm-test");
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("swarm-test"))
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::TRACE)
                    .with_target("lapin", LevelFilter::OFF),
            );
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

fn tracer_provider(service: &str) -> SdkTracerProvider {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .build();
    SdkTracerProvider::builder().with_resource(resource).build()
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
    TraceContextPropagator::new().extract(&map)
}

/// The trace id of a span (32 hex digits), if it has a valid context.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
