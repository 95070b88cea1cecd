//! Traces across processes: worker processes (two replicas each) export OTLP/HTTP to a receiver
//! this test runs and decodes with the official protobuf types.

#[path = "../pipeline/helpers.rs"]
mod helpers;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use helpers::{TestEnv, WorkerProcess, PATIENCE};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use uuid::Uuid;

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    attributes: HashMap<String, String>,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
}

const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

type Spans = Arc<Mutex<Vec<Span>>>;

async fn receive(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut spans = spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| value(&kv.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(Span {
                    service: service.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), value(&kv.value)))
                        .collect(),
                    links: s
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// An OTLP/HTTP receiver on a free port; returns its endpoint and what it received.
async fn receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, spans)
}

/// Waits until the spans of `trace` satisfy `done`.
async fn wait_spans(spans: &Spans, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let all = spans.lock().unwrap().clone();
        if done(&all) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for spans: {what}; have {} spans",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn attr<'a>(span: &'a Span, key: &str) -> &'a str {
    span.attributes
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{} has no {key}: {:?}", span.name, span.attributes))
}

/// Checks a job's trace: every consumer span's parent is the producer span of the message it
/// handled, with the names, kinds and messaging attributes of the conventions.
fn check_hops(trace: &[Span], exchange: &str, hops: &[(&str, &str)], job: &str) {
    for (message_type, worker) in hops {
        let queue = format!("{exchange}.{worker}");
        let producers: Vec<&Span> = trace
            .iter()
            .filter(|s| s.name == format!("send {exchange}:{message_type}"))
            .collect();
        let consumers: Vec<&Span> = trace
            .iter()
            .filter(|s| s.name == format!("process {exchange}:{message_type}:{queue}"))
            .collect();
        assert!(!producers.is_empty(), "a send span for {message_type}");
        assert_eq!(
            producers.len(),
            consumers.len(),
            "one process span per sent {message_type}"
        );
        for c in consumers {
            assert_eq!(c.kind, CONSUMER, "{}", c.name);
            assert_eq!(c.service, format!("swarm-{worker}"));
            let id = attr(c, "messaging.message.id");
            let p = producers
                .iter()
                .find(|p| attr(p, "messaging.message.id") == id)
                .unwrap_or_else(|| panic!("the producer span of message {id}"));
            assert_eq!(p.kind, PRODUCER, "{}", p.name);
            assert_eq!(
                c.parent_span_id, p.span_id,
                "the consumer of {id} is a child of its producer"
            );
            for s in [c, *p] {
                assert_eq!(attr(s, "messaging.system"), "rabbitmq");
                assert_eq!(attr(s, "messaging.destination.name"), exchange);
                assert_eq!(
                    attr(s, "messaging.rabbitmq.destination.routing_key"),
                    *message_type
                );
                assert_eq!(attr(s, "messaging.message.conversation_id"), job);
                assert!(
                    attr(s, "messaging.message.body.size")
                        .parse::<u64>()
                        .unwrap()
                        > 0
                );
            }
            assert_eq!(attr(c, "messaging.operation.type"), "process");
            assert_eq!(attr(p, "messaging.operation.type"), "send");
            assert_eq!(attr(c, "messaging.operation.name"), "process");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_is_one_trace_across_worker_processes() {
    let env = TestEnv::new().await;
    let (endpoint, spans) = receiver().await;
    let otel = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    let mut workers = Vec::new();
    for kind in ["ingest", "features", "train", "report"] {
        for _ in 0..2 {
            workers.push(WorkerProcess::start(&env, kind, &otel));
        }
    }
    let exchange = env.topology.exchange();

    // An ingest job of three batches, published by the CLI (which exports its send spans too).
    let dir = std::env::temp_dir().join(format!("swarm-otel-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("subject,label,a,b,c");
    for (_, s) in swarm::synth::vector_dataset(&["x"], 30, 3, 4) {
        csv.push_str(&format!(
            "\n{},{},{},{},{}",
            s.subject, s.label, s.values[0], s.values[1], s.values[2]
        ));
    }
    let file = dir.join("x.csv");
    std::fs::write(&file, csv).unwrap();
    let job = env
        .cli_with_env(
            &otel,
            &[
                "publish",
                "--project",
                "p",
                "--site",
                "x",
                "--batch-size",
                "10",
                file.to_str().unwrap(),
            ],
        )
        .await
        .trim()
        .to_string();
    env.wait_features("features", &job, 30).await;
    let ingest_trace: String = env.scalar("SELECT min(trace_id) FROM samples", &[]).await;
    let all = wait_spans(&spans, "the ingest job", |all| {
        all.iter()
            .filter(|s| s.trace_id == ingest_trace && s.name.starts_with("process "))
            .count()
            == 6
    })
    .await;
    let trace: Vec<Span> = all
        .iter()
        .filter(|s| s.trace_id == ingest_trace)
        .cloned()
        .collect();
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["swarm", "swarm-features", "swarm-ingest"]),
        "one trace across the CLI, ingest and features"
    );
    let job_spans = all
        .iter()
        .filter(|s| s.attributes.get("messaging.message.conversation_id") == Some(&job))
        .count();
    let job_spans_in_trace = trace
        .iter()
        .filter(|s| s.attributes.get("messaging.message.conversation_id") == Some(&job))
        .count();
    assert_eq!(
        job_spans, job_spans_in_trace,
        "every messaging span of the job is in its one trace"
    );
    check_hops(
        &trace,
        &exchange,
        &[("ingest.v1", "ingest"), ("features.v1", "features")],
        &job,
    );
    for child in ["transaction", "validate", "ingest", "features", "extract"] {
        assert!(
            trace.iter().any(|s| s.name == child),
            "a {child} span in the ingest trace"
        );
    }

    // A training job: one trace across the CLI, train and report.
    let out = env
        .cli_with_env(
            &otel,
            &[
                "train",
                "--project",
                "p",
                "--cv",
                "3",
                "--wait",
                "--timeout",
                "120",
            ],
        )
        .await;
    let run = out.lines().next().unwrap().to_string();
    let train_trace: String = env
        .scalar(
            "SELECT trace_id FROM runs WHERE id = $1::text::uuid",
            &[&run],
        )
        .await;
    // The job, its units (one validating the 3 folds, one assembling the run), the report.
    let all = wait_spans(&spans, "the train job", |all| {
        all.iter()
            .filter(|s| s.trace_id == train_trace && s.name.starts_with("process "))
            .count()
            == 4
    })
    .await;
    let trace: Vec<Span> = all
        .iter()
        .filter(|s| s.trace_id == train_trace)
        .cloned()
        .collect();
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["swarm", "swarm-report", "swarm-train"])
    );
    check_hops(
        &trace,
        &exchange,
        &[
            ("train.v1", "train"),
            ("train.unit.v1", "train"),
            ("report.v1", "report"),
        ],
        &run,
    );
    for child in ["transaction", "fold", "render"] {
        assert!(
            trace.iter().any(|s| s.name == child),
            "a {child} span in the train trace"
        );
    }
    let folds = trace.iter().filter(|s| s.name == "fold").count();
    assert_eq!(folds, 3, "one span per CV fold");

    for w in workers {
        let kind = w.kind.clone();
        let status = w.terminate().await;
        assert!(
            status.success(),
            "swarm worker {kind} exits 0 on SIGTERM: {status:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    env.finish(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commit_links_every_message_it_handled() {
    let env = TestEnv::new().await;
    let (endpoint, spans) = receiver().await;
    let otel = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    // Three messages wait in the queue; the worker takes them as one batch.
    for i in 0..3 {
        let samples = swarm::synth::vector_dataset(&["x"], 2, 3, i)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let batch = broker_schemas::IngestV1 {
            project: "b".into(),
            site: format!("site-{i}"),
            samples,
        };
        env.send(&batch, "batch-job").await;
    }
    let mut batched = otel.clone();
    batched.push(("BATCH_SIZE", "10".to_string()));
    batched.push(("BATCH_WAIT_MS", "1000".to_string()));
    let worker = WorkerProcess::start(&env, "ingest", &batched);
    env.wait_count("samples", "SELECT count(*) FROM samples", &[], 6)
        .await;
    let exchange = env.topology.exchange();
    let name = format!("process {exchange}:{}", env.topology.queue("ingest"));
    let all = wait_spans(&spans, "the batch span", |all| {
        all.iter().any(|s| s.name == name)
    })
    .await;
    let batch = all.iter().find(|s| s.name == name).unwrap();
    assert_eq!(batch.kind, CONSUMER);
    assert_eq!(attr(batch, "messaging.batch.message_count"), "3");
    assert_eq!(
        batch.links.len(),
        3,
        "one link per message: {:?}",
        batch.links
    );
    let linked: BTreeSet<&str> = batch.links.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(linked.len(), 3, "the three producers' traces");
    assert!(worker.terminate().await.success());
    env.finish(Vec::new()).await;
}
