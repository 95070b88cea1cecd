//! The pipeline throughput benchmark: Swarm's ingest → features against hand-written floors, on
//! the local RabbitMQ and PostgreSQL, on quorum queues declared exactly as in production.
//! Modules: `workload` (the messages), `world` (a database and namespace per run), `swarm` and
//! `floor` (what is measured), `rounds` (a workload's section), `cpu`, `report` (the table),
//! `tracing` (the exporter's cost).
//!
//! ```sh
//! cargo bench --bench pipeline                       # everything, a few minutes on 2 cores
//! BENCH_SCALE=0.1 cargo bench --bench pipeline       # a tenth of every workload, for a quick look
//! cargo bench --bench pipeline -- vectors tracing    # only some sections (vectors, timeseries, tracing)
//! ```
//!
//! Every measurement gets a fresh database and a fresh namespace (dropped afterwards). Its queue is
//! **pre-filled** first — every `ingest.v1` message published with publisher confirms before any
//! consumer runs — then PostgreSQL is settled with a `CHECKPOINT` (so no run pays for the pages
//! an earlier run left dirty, or has a checkpoint land in it) and RabbitMQ given time to go quiet,
//! and the clock runs from the moment the consumers are consuming (start-up is not on it) until
//! the last row is committed: for Swarm, from its first worker consuming until
//! `SELECT count(*) FROM features WHERE job_id = $1` reaches the number of samples (polled every
//! 20 ms, every 2 ms over the last tenth); for the floors, from their consumer, set up beforehand,
//! until their loop commits and acks the last batch. The floors (`floor/`) write the same rows
//! with the same idempotency records and lineage columns as Swarm, a batch of deliveries per
//! transaction, two batches in flight (one written while the other commits), in one of two SQL
//! forms: binary `COPY` into temporary staging tables and one `INSERT … SELECT … ON CONFLICT`
//! per table, or multi-row upserts of `unnest`ed arrays.
//! Measurements run in rounds (`BENCH_ROUNDS`, default 3): the one-hop floor in both forms, the
//! reference floors, then every Swarm configuration, round after round, and the floor in both
//! forms once more at the end. The form with the higher median is *the* floor: each row shows
//! its median run, and ratios are to the median of that floor's runs; its note also gives each
//! run against the floor runs just before and after it (paired ratios: the machine's drift
//! cancels). The reference floors, shown but not targets: the other SQL form, the `COPY` loop
//! on a classic queue (the quorum queue's cost), and for the time series a *sequential* `COPY`
//! floor, the features computed after the samples are written, nothing overlapped within a
//! batch (Swarm's notes add their ratio to it). Each row also shows the CPU it used per item:
//! the whole machine's, this process's (the consumers), PostgreSQL's, RabbitMQ's and the rest's
//! (the kernel's threads, anything else). Two last Swarm rows run each hop alone: the ingest
//! worker until every sample is stored, and the features worker over the `features.v1` messages
//! an unmeasured ingest run left queued (its outbox emptied, the database settled again), until
//! every feature is stored.
//!
//! The tracing rows run Swarm in child processes of this binary (the tracer provider is
//! process-global): the same workload once with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a
//! receiver inside this process (an axum server on 127.0.0.1:0 answering `POST /v1/traces` with
//! 200) and once without, in the order off, on, on, off.
//!
//! Environment: `AMQP_URL` (default the local broker), `BENCH_DATABASE_SERVER` (default
//! `postgres://root@127.0.0.1:5432`), `BENCH_SCALE` (default 1), `BENCH_ROUNDS` (default 3). Swarm runs with the runtime's
//! defaults; `PREFETCH`, `CONCURRENCY`, `DB_POOL_SIZE`, `BATCH_WAIT_MS` and `BATCH_IDLE_MS` apply
//! if set.

mod cpu;
mod floor;
mod report;
mod rounds;
mod swarm;
mod tracing;
mod workload;
mod world;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use report::Table;
use workload::{Kind, Workload};
use world::{Services, World};

/// Deliveries per transaction in every batched run (Swarm's `BATCH_SIZE` and the floors').
const BATCH: usize = 16;
/// How long a batch waits to fill (the runtime's default `BATCH_WAIT_MS`).
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// Messages published at once while pre-filling.
const PUBLISH_WINDOW: usize = 32;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = if args.iter().any(|a| a == tracing::CHILD) {
        runtime.block_on(tracing::child())
    } else {
        runtime.block_on(parent(&args))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pipeline bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn scale() -> anyhow::Result<f64> {
    match std::env::var("BENCH_SCALE") {
        Ok(s) => {
            let scale: f64 = s
                .parse()
                .with_context(|| format!("BENCH_SCALE={s} is not a number"))?;
            if !(scale > 0.0 && scale <= 10.0) {
                bail!("BENCH_SCALE={s} is not in (0, 10]");
            }
            Ok(scale)
        }
        Err(_) => Ok(1.0),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn parent(args: &[String]) -> anyhow::Result<()> {
    // The in-process rows run with tracing on and no exporter, like the "exporter off" child.
    std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
    let _telemetry = swarm_runtime::telemetry::init_with("swarm-bench", "warn");
    let sections: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |s: &str| sections.is_empty() || sections.contains(&s);
    let scale = scale()?;
    let services = Services::from_env();
    let started = Instant::now();
    let batched = World::new(&services).await?;
    let batch_supported = batched.settings(BATCH)?.is_some();
    let defaults = batched.settings(1)?.context("per-message settings")?;
    batched.finish().await?;
    println!(
        "pipeline bench, {} UTC, BENCH_SCALE={scale}, {} cores, load average at start {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "Swarm: PREFETCH={} CONCURRENCY={} DB_POOL_SIZE={}; batched runs: BATCH_SIZE={BATCH} BATCH_WAIT_MS={} BATCH_IDLE_MS={}{}; floors: {BATCH} deliveries per transaction, prefetch {}",
        defaults.prefetch,
        defaults.concurrency,
        defaults.db_pool_size,
        defaults.batch_wait_ms,
        defaults.batch_idle_ms,
        if batch_supported { "" } else { " (not in this runtime: skipped)" },
        2 * BATCH,
    );
    println!();
    let mut table = Table { rows: Vec::new() };
    for kind in [Kind::Vectors, Kind::Timeseries] {
        let name = match kind {
            Kind::Vectors => "vectors",
            Kind::Timeseries => "timeseries",
        };
        if !wanted(name) {
            continue;
        }
        let workload = Workload::new(kind, scale);
        rounds::run_workload(&services, &workload, &mut table).await?;
    }
    if wanted("tracing") {
        tracing::overhead(scale, &mut table).await?;
    }
    table.print();
    println!();
    println!(
        "total {:.0} s; load average at the end {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(())
}
