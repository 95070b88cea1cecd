//! The tracing rows: Swarm in child processes of this binary (the tracer provider is
//! process-global), exporting to a receiver in this process or not exporting at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::report::{retried, Measured, Row, Table};
use crate::rounds::again;
use crate::swarm::{self, Config, Stages};
use crate::workload::{Kind, Workload};
use crate::world::Services;

/// The argument that makes this binary a child running one traced measurement.
pub const CHILD: &str = "--child-tracing";

/// Counts what the OTLP receiver got.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) requests: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

/// An OTLP/HTTP receiver that accepts and discards; returns its endpoint.
pub(crate) async fn receiver(received: Arc<Received>) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                received.requests.fetch_add(1, Ordering::Relaxed);
                received
                    .bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("the OTLP receiver stopped: {error}");
        }
    });
    Ok(endpoint)
}

/// Runs this binary as a child measuring the traced workload; `endpoint` turns the exporter on.
pub(crate) async fn run_child(endpoint: Option<&str>) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe()?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg(CHILD)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    if let Some(endpoint) = endpoint {
        command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    }
    let output = command.output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("the child failed ({}): {stdout}", output.status);
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("no RESULT line from the child: {stdout}"))?;
    let numbers: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [items, secs, prefill] = numbers[..] else {
        bail!("a bad RESULT line: {line}");
    };
    Ok(Measured {
        items: items as usize,
        elapsed: Duration::from_secs_f64(secs),
        prefill: Duration::from_secs_f64(prefill),
        cpu: None,
    })
}

/// The child: the vectors workload through one replica of Swarm, per-message commits, with the
/// worker's telemetry (exporting if `OTEL_EXPORTER_OTLP_ENDPOINT` is set); prints `RESULT`.
pub(crate) async fn child() -> anyhow::Result<()> {
    let telemetry = swarm_runtime::telemetry::init_with("swarm-bench", "warn");
    let workload = Workload::new(Kind::Vectors, crate::scale()?);
    let config = Config {
        batch: 1,
        replicas: 1,
        stages: Stages::Both,
    };
    let measured = swarm::measure(&Services::from_env(), &workload, config)
        .await?
        .context("per-message settings")?;
    // Flushing the last spans is not part of the measurement.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    println!(
        "RESULT {} {} {}",
        measured.items,
        measured.elapsed.as_secs_f64(),
        measured.prefill.as_secs_f64()
    );
    Ok(())
}

pub(crate) async fn overhead(scale: f64, table: &mut Table) -> anyhow::Result<()> {
    let workload = Workload::new(Kind::Vectors, scale);
    table.section(format!(
        "tracing: {} vectors, Swarm 1 replica each, per-message commits, in child processes",
        workload.items()
    ));
    let received = Arc::new(Received::default());
    let endpoint = receiver(received.clone()).await?;
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut retries = 0;
    for exporting in [false, true, true, false] {
        let (m, failed) = again("traced child", || {
            run_child(exporting.then_some(endpoint.as_str()))
        })
        .await?;
        retries += failed;
        eprintln!(
            "   exporter {}: {:.0} samples/s",
            if exporting { "on" } else { "off" },
            m.rate()
        );
        if exporting {
            on.push(m);
        } else {
            off.push(m);
        }
    }
    let total = |runs: &[Measured]| Measured {
        items: runs.iter().map(|m| m.items).sum(),
        elapsed: runs.iter().map(|m| m.elapsed).sum(),
        prefill: runs.iter().map(|m| m.prefill).sum(),
        cpu: None,
    };
    let each = |runs: &[Measured]| {
        runs.iter()
            .map(|m| format!("{:.0}", m.rate()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (off_total, on_total) = (total(&off), total(&on));
    let off_rate = off_total.rate();
    let overhead = 100.0 * (1.0 - on_total.rate() / off_rate);
    table.push(Row {
        what: "exporter off (2 runs)".into(),
        measured: Some(off_total),
        unit: "samples",
        floor: None,
        note: format!("runs: {} samples/s{}", each(&off), retried(retries)),
    });
    table.push(Row {
        what: "exporter on (2 runs), to a local receiver".into(),
        measured: Some(on_total),
        unit: "samples",
        floor: Some(off_rate),
        note: format!(
            "runs: {} samples/s; overhead {overhead:.1} %; received {} requests, {} KiB",
            each(&on),
            received.requests.load(Ordering::Relaxed),
            received.bytes.load(Ordering::Relaxed) / 1024
        ),
    });
    Ok(())
}
