//! The pipeline throughput benchmark: Swarm's ingest → features against hand-written floors, on
//! the local RabbitMQ and PostgreSQL, on quorum queues declared exactly as in production.
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
//! until their loop commits and acks the last batch. The floors are in `benches/floor/`. Measurements
//! run in rounds (`BENCH_ROUNDS`, default 3): the one-hop floor, then every Swarm configuration,
//! round after round, and the floor once more at the end; each row shows its median run, and
//! ratios are to the median of the floor's runs; its note also gives each run against the floor
//! runs just before and after it (paired ratios: the machine's drift cancels). For the time
//! series, each round also runs a *sequential* floor — the same loop with the features computed
//! after the samples are written, nothing overlapped — shown for reference (the ratios stay to
//! the one-hop floor; Swarm's notes add their ratio to it). Each row also shows the CPU it used per item:
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

mod floor;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use broker_schemas::{IngestV1, Sample, SampleKind};
use clap::Parser;
use futures_util::{StreamExt, TryStreamExt};
use swarm_runtime::db::Pool;
use swarm_runtime::{Publisher, Settings, Topology, WorkerHandle};
use uuid::Uuid;

use floor::{Batching, Compute};

/// Deliveries per transaction in every batched run (Swarm's `BATCH_SIZE` and the floors').
const BATCH: usize = 16;
/// How long a batch waits to fill (the runtime's default `BATCH_WAIT_MS`).
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// The argument that makes this binary a child running one traced measurement.
const CHILD: &str = "--child-tracing";
/// How long one measurement may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(600);
/// How often the database is asked whether a run is done.
const POLL: Duration = Duration::from_millis(20);
/// Messages published at once while pre-filling.
const PUBLISH_WINDOW: usize = 32;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = if args.iter().any(|a| a == CHILD) {
        runtime.block_on(child())
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

/// What is being pushed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Vectors of 64 float32, 100 per message.
    Vectors,
    /// 200 timepoints × 116 regions, 10 subjects per message.
    Timeseries,
}

#[derive(Debug, Clone, Copy)]
struct Workload {
    kind: Kind,
    messages: usize,
    per_message: usize,
}

impl Workload {
    fn new(kind: Kind, scale: f64) -> Self {
        let (full, per_message) = match kind {
            Kind::Vectors => (500, 100),
            Kind::Timeseries => (200, 10),
        };
        let messages = ((full as f64 * scale).round() as usize).max(1);
        Self {
            kind,
            messages,
            per_message,
        }
    }

    fn items(&self) -> usize {
        self.messages * self.per_message
    }

    fn unit(&self) -> &'static str {
        match self.kind {
            Kind::Vectors => "samples",
            Kind::Timeseries => "subjects",
        }
    }

    fn title(&self) -> String {
        match self.kind {
            Kind::Vectors => format!(
                "(b) {} vectors × 64 f32, {} per message",
                self.items(),
                self.per_message
            ),
            Kind::Timeseries => format!(
                "(c) {} subjects × 200 × 116 f32, {} per message",
                self.items(),
                self.per_message
            ),
        }
    }

    /// Message `i` of the workload: deterministic, a different subject in every sample.
    fn message(&self, i: usize) -> IngestV1 {
        let (project, kind, values, timepoints) = match self.kind {
            Kind::Vectors => ("bench-vectors", SampleKind::Vector, 64, None),
            Kind::Timeseries => (
                "bench-connectivity",
                SampleKind::Timeseries,
                200 * 116,
                Some(200),
            ),
        };
        IngestV1 {
            project: project.into(),
            site: "bench".into(),
            samples: (0..self.per_message)
                .map(|k| {
                    let n = i * self.per_message + k;
                    Sample {
                        subject: format!("sub-{n:06}"),
                        label: if n % 2 == 0 { "patient" } else { "control" }.into(),
                        kind,
                        values: noise(n as u64, values),
                        timepoints,
                        covariates: Default::default(),
                        text: None,
                    }
                })
                .collect(),
        }
    }
}

/// `n` values in [-1, 1) from a xorshift generator seeded by `seed`.
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Where the services are.
#[derive(Debug, Clone)]
struct Services {
    amqp_url: String,
    database_server: String,
}

impl Services {
    fn from_env() -> Self {
        Self {
            amqp_url: std::env::var("AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            database_server: std::env::var("BENCH_DATABASE_SERVER")
                .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into()),
        }
    }
}

/// One measurement's world: its own database and namespace, the topology declared.
struct World {
    services: Services,
    db_name: String,
    database_url: String,
    pool: Pool,
    topology: Topology,
    connection: lapin::Connection,
    publisher: Publisher,
}

impl World {
    async fn new(services: &Services) -> anyhow::Result<Self> {
        let id = Uuid::new_v4().simple().to_string()[..12].to_string();
        let db_name = format!("swarm_bench_{id}");
        let database_url = format!("{}/{db_name}", services.database_server);
        let pool = swarm_runtime::db::connect_and_migrate(&database_url, 2).await?;
        let connection = swarm_runtime::amqp::connect(&services.amqp_url, "swarm-bench").await?;
        let publisher = Publisher::new(&connection, "swarm-bench").await?;
        let topology = Topology::new(format!("bench-{id}"));
        topology.declare(publisher.channel()).await?;
        Ok(Self {
            services: services.clone(),
            db_name,
            database_url,
            pool,
            topology,
            connection,
            publisher,
        })
    }

    /// Publishes every message of `workload` (job `job`) with confirms; returns how long it took.
    async fn prefill(&self, workload: &Workload, job: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        futures_util::stream::iter(0..workload.messages)
            .map(|i| async move {
                let message = workload.message(i);
                self.publisher
                    .send(&self.topology, &message, Some(job))
                    .await
            })
            .buffer_unordered(PUBLISH_WINDOW)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(started.elapsed())
    }

    /// Brings the database server to the same state before every measured run: `CHECKPOINT`
    /// writes out what earlier runs left dirty (and fsyncs it), so no run pays for its
    /// predecessor's writes or has a checkpoint land in the middle of it. Needs a superuser (or
    /// `pg_checkpoint`); without one the runs go on unsettled, with a warning. Then the broker
    /// is given time to finish the prefill's background writes ([`broker_quiet`]).
    async fn settle(&self) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        if let Err(error) = client.batch_execute("CHECKPOINT").await {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!("   CHECKPOINT before each run failed ({error}); runs are not settled")
            });
        }
        broker_quiet().await;
        Ok(())
    }

    /// Waits until `table` (`samples` or `features`) has `expected` rows of the job.
    async fn wait_for_rows(
        &self,
        table: &'static str,
        job: &str,
        expected: usize,
    ) -> anyhow::Result<()> {
        let count = format!("SELECT count(*) FROM {table} WHERE job_id = $1");
        let what = format!("of {expected} {table} rows");
        // The last rows are polled for closely, so a measured run's end is seen within about
        // 2 ms instead of 20 (1–2 % of a one-second run); earlier polls are spaced out to take
        // little from the run.
        let interval = |n: i64| {
            if n as usize >= expected - expected / 10 {
                Duration::from_millis(2)
            } else {
                POLL
            }
        };
        self.poll_count(&count, &[&job], |n| n as usize >= expected, interval, &what)
            .await
    }

    /// Waits until the outbox is empty: every downstream message published and its row deleted.
    async fn wait_for_empty_outbox(&self) -> anyhow::Result<()> {
        self.poll_count(
            "SELECT count(*) FROM outbox",
            &[],
            |n| n == 0,
            |_| POLL,
            "outbox rows left",
        )
        .await
    }

    /// Runs `count` (one `bigint`) until `done` holds of it, waiting `interval(count)` between
    /// runs; an error saying "<count> <what>" if it does not within [`PATIENCE`].
    async fn poll_count(
        &self,
        count: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        done: impl Fn(i64) -> bool,
        interval: impl Fn(i64) -> Duration,
        what: &str,
    ) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let n: i64 = client.query_one(count, params).await?.get(0);
            if done(n) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{n} {what} after {PATIENCE:?}");
            }
            tokio::time::sleep(interval(n)).await;
        }
    }

    /// Rows in the dead queues (there should be none).
    async fn dead_letters(&self) -> anyhow::Result<i64> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one("SELECT count(*) FROM dead_letters", &[])
            .await?
            .get(0))
    }

    /// Swarm's settings for this world; `None` when `batch` is asked for but this runtime has no
    /// `BATCH_SIZE`.
    fn settings(&self, batch: usize) -> anyhow::Result<Option<Settings>> {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        let size = batch.to_string();
        let parsed = match Cli::try_parse_from(["bench", "--batch-size", &size]) {
            Ok(cli) => cli.settings,
            Err(e) if e.kind() == clap::error::ErrorKind::UnknownArgument && batch <= 1 => {
                Cli::try_parse_from(["bench"])?.settings
            }
            Err(e) if e.kind() == clap::error::ErrorKind::UnknownArgument => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut settings = parsed;
        settings.amqp_url = self.services.amqp_url.clone();
        settings.database_url = self.database_url.clone();
        settings.namespace = self.topology.namespace().to_string();
        settings.http_addr = None;
        settings.shutdown_timeout_secs = 10;
        Ok(Some(settings))
    }

    /// Deletes the namespace's queues and exchanges and drops the database; a failure is
    /// reported, not returned (a broker or database restart must not end the bench).
    async fn finish(self) -> anyhow::Result<()> {
        let db_name = self.db_name.clone();
        let namespace = self.topology.namespace().to_string();
        if let Err(error) = self.clean_up().await {
            eprintln!(
                "   could not clean up namespace {namespace} / database {db_name}: {error:#}"
            );
        }
        Ok(())
    }

    async fn clean_up(self) -> anyhow::Result<()> {
        let connection = if self.connection.status().connected() {
            self.connection
        } else {
            swarm_runtime::amqp::connect(&self.services.amqp_url, "swarm-bench").await?
        };
        let channel = connection.create_channel().await?;
        self.topology.delete(&channel).await;
        let _ = connection.close(200, "done".into()).await;
        self.pool.close();
        let (client, conn) = tokio_postgres::connect(
            &format!("{}/postgres", self.services.database_server),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.db_name
            ))
            .await?;
        Ok(())
    }
}

/// One measured run.
#[derive(Debug, Clone)]
struct Measured {
    items: usize,
    elapsed: Duration,
    /// Publishing the pre-fill, with confirms.
    prefill: Duration,
    /// CPU spent while the clock ran.
    cpu: Option<Cpu>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }
}

/// CPU seconds: the whole machine's busy time (`/proc/stat`), this process's own
/// (`/proc/self/stat`), PostgreSQL's (every `postgres` process, with the backends that have
/// exited since, which the postmaster has reaped) and RabbitMQ's (its Erlang VM, `beam.smp`), so
/// a row shows where its work went — this process (the consumers), the database, the broker, or
/// the rest (the kernel's own threads writing pages back, anything else running).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    machine: f64,
    process: f64,
    postgres: f64,
    rabbitmq: f64,
}

/// `utime stime cutime cstime` of one `/proc/<pid>/stat`, in ticks, if its command is `comm`
/// (any command when `None`).
fn process_ticks(stat: &str, comm: Option<&str>) -> Option<[f64; 4]> {
    let (head, rest) = stat.rsplit_once(')')?;
    if comm.is_some_and(|c| head.split_once('(').map(|(_, name)| name) != Some(c)) {
        return None;
    }
    // After "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse().ok());
    Some([tick(11)?, tick(12)?, tick(13)?, tick(14)?])
}

/// The CPU ticks of every process named `comm`, reaped children included.
fn ticks_of(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| process_ticks(&stat, Some(comm)))
        .map(|t| t.iter().sum::<f64>())
        .sum()
}

/// Waits until RabbitMQ has used at most one tick of CPU in each of two successive 50 ms windows
/// (it writes what a prefill left in its quorum queues' log out to segment files in the
/// background, up to half a second after the prefill here), at most 10 s.
async fn broker_quiet() {
    let started = Instant::now();
    let mut last = ticks_of("beam.smp");
    let mut quiet = 0;
    while quiet < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = ticks_of("beam.smp");
        quiet = if now - last <= 1.0 { quiet + 1 } else { 0 };
        last = now;
    }
}

/// Linux reports both in ticks of `USER_HZ`, 100 on every mainstream architecture.
const TICKS_PER_SECOND: f64 = 100.0;

impl Cpu {
    fn now() -> Option<Cpu> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // cpu user nice system idle iowait irq softirq steal ...: busy is all but idle/iowait.
        let ticks: Vec<f64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let busy: f64 = ticks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| v)
            .sum();
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let [utime, stime, _, _] = process_ticks(&own, None)?;
        Some(Cpu {
            machine: busy / TICKS_PER_SECOND,
            process: (utime + stime) / TICKS_PER_SECOND,
            postgres: ticks_of("postgres") / TICKS_PER_SECOND,
            rabbitmq: ticks_of("beam.smp") / TICKS_PER_SECOND,
        })
    }

    /// The CPU used since `start`.
    fn since(start: Option<Cpu>) -> Option<Cpu> {
        let (start, end) = (start?, Cpu::now()?);
        Some(Cpu {
            machine: end.machine - start.machine,
            process: end.process - start.process,
            postgres: end.postgres - start.postgres,
            rabbitmq: end.rabbitmq - start.rabbitmq,
        })
    }
}

/// One Swarm configuration of the bench.
#[derive(Debug, Clone, Copy)]
struct Config {
    /// `BATCH_SIZE` (1: per-message commits).
    batch: usize,
    /// Replicas of each worker.
    replicas: usize,
    /// Which workers are measured.
    stages: Stages,
}

/// The workers a Swarm run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stages {
    /// Ingest and features together, until every feature is stored.
    Both,
    /// Ingest alone, until every sample is stored: what the first hop costs.
    IngestAlone,
    /// Features alone, over the `features.v1` messages an unmeasured ingest run left queued:
    /// what the second hop costs.
    FeaturesAlone,
}

impl Config {
    /// The row's name.
    fn what(&self) -> String {
        let replicas = self.replicas;
        let commits = if self.batch == 1 {
            "per-message commits".to_string()
        } else {
            format!("BATCH_SIZE={}", self.batch)
        };
        match self.stages {
            Stages::Both => {
                let s = if replicas == 1 { "" } else { "s" };
                format!("Swarm, {replicas} replica{s} each, {commits}")
            }
            Stages::IngestAlone => {
                format!("Swarm's ingest alone ({replicas} replica, {commits}; no features worker)")
            }
            Stages::FeaturesAlone => format!(
                "Swarm's features alone ({replicas} replica, {commits}; over the queue ingest filled)"
            ),
        }
    }
}

/// Swarm's ingest and features workers (or one of them alone), `replicas` of each, in this
/// process.
async fn swarm(
    services: &Services,
    workload: &Workload,
    config: Config,
) -> anyhow::Result<Option<Measured>> {
    let world = World::new(services).await?;
    let Some(settings) = world.settings(config.batch)? else {
        world.finish().await?;
        return Ok(None);
    };
    let job = Uuid::new_v4().to_string();
    let prefill = world.prefill(workload, &job).await?;
    if config.stages == Stages::FeaturesAlone {
        // Ingest first, off the clock, until every `features.v1` is published (its outbox
        // empty): the features queue is then as full as the ingest queue is for the others.
        let ingest: Vec<WorkerHandle> = (0..config.replicas)
            .map(|_| swarm_runtime::spawn(swarm_ingest::IngestHandler, settings.clone()))
            .collect();
        world
            .wait_for_rows("samples", &job, workload.items())
            .await?;
        world.wait_for_empty_outbox().await?;
        for w in ingest {
            w.stop().await?;
        }
    }
    world.settle().await?;
    let mut workers: Vec<WorkerHandle> = Vec::new();
    for _ in 0..config.replicas {
        if config.stages != Stages::FeaturesAlone {
            workers.push(swarm_runtime::spawn(
                swarm_ingest::IngestHandler,
                settings.clone(),
            ));
        }
        if config.stages != Stages::IngestAlone {
            workers.push(swarm_runtime::spawn(
                swarm_features::FeaturesHandler,
                settings.clone(),
            ));
        }
    }
    // The clock starts when the first worker consumes (the ingest queue is full by then): its
    // start-up (connecting, migrating, declaring the topology; 10–60 ms here) is not
    // throughput, and the floors are timed from their consumer too.
    let (cpu, started) = match first_consuming(&workers).await {
        true => (Cpu::now(), Instant::now()),
        false => {
            let stopped =
                futures_util::future::join_all(workers.into_iter().map(WorkerHandle::stop));
            let stopped = stopped.await;
            world.finish().await?;
            stopped
                .into_iter()
                .collect::<anyhow::Result<Vec<()>>>()
                .context("a worker failed to start")?;
            bail!("no worker started");
        }
    };
    let last = match config.stages {
        Stages::IngestAlone => "samples",
        Stages::Both | Stages::FeaturesAlone => "features",
    };
    let waited = world.wait_for_rows(last, &job, workload.items()).await;
    let elapsed = started.elapsed();
    let cpu = Cpu::since(cpu);
    for w in workers {
        w.stop().await?;
    }
    let dead = world.dead_letters().await;
    world.finish().await?;
    waited?;
    let dead = dead?;
    if dead > 0 {
        bail!("{dead} messages were dead-lettered");
    }
    Ok(Some(Measured {
        items: workload.items(),
        elapsed,
        prefill,
        cpu,
    }))
}

/// Waits until the first of `workers` consumes: false if none ever does (they all exited).
async fn first_consuming(workers: &[WorkerHandle]) -> bool {
    let mut starting: futures_util::stream::FuturesUnordered<_> =
        workers.iter().map(WorkerHandle::consuming).collect();
    while let Some(consuming) = starting.next().await {
        if consuming {
            return true;
        }
    }
    false
}

/// Which floor.
#[derive(Debug, Clone, Copy)]
enum Floor {
    BrokerAlone,
    OneHop(Compute),
}

async fn floor(services: &Services, workload: &Workload, which: Floor) -> anyhow::Result<Measured> {
    let world = World::new(services).await?;
    let job = Uuid::new_v4().to_string();
    let prefill = world.prefill(workload, &job).await?;
    world.settle().await?;
    let queue = world.topology.queue("ingest");
    let batching = Batching {
        size: BATCH,
        wait: BATCH_WAIT,
    };
    // Built before the clock, closed after the CPU is read, like Swarm's workers: its backends
    // then do not exit while the CPU is read (a backend reaped between the reading of the
    // postmaster's reaped children and its own `/proc` entry was counted in neither: one floor
    // run showed PostgreSQL at 0.00 ms per item).
    let pool = swarm_runtime::db::pool(&world.database_url, 2)?;
    // Connected and consuming before the clock starts, as Swarm's workers are when its clock
    // starts: both are timed from their first delivery's arrival to their last commit.
    let ready = async {
        let connection =
            swarm_runtime::amqp::connect(&services.amqp_url, "swarm-bench-floor").await?;
        drop(pool.get().await?);
        let (channel, consumer) = floor::consume(&connection, &queue, batching).await?;
        anyhow::Ok((connection, channel, consumer))
    };
    let (connection, channel, mut consumer) = match ready.await {
        Ok(ready) => ready,
        Err(error) => {
            pool.close();
            world.finish().await?;
            return Err(error);
        }
    };
    let cpu = Cpu::now();
    let started = Instant::now();
    let result = match which {
        Floor::BrokerAlone => floor::broker_alone(&mut consumer, workload.messages, batching).await,
        Floor::OneHop(compute) => {
            floor::one_hop(
                &mut consumer,
                &pool,
                &queue,
                workload.messages,
                batching,
                compute,
            )
            .await
        }
    };
    let elapsed = started.elapsed();
    let cpu = Cpu::since(cpu);
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    pool.close();
    if result.is_ok() {
        if let Floor::OneHop(_) = which {
            // The floor wrote what Swarm writes.
            world
                .wait_for_rows("features", &job, workload.items())
                .await?;
        }
    }
    world.finish().await?;
    result?;
    Ok(Measured {
        items: workload.items(),
        elapsed,
        prefill,
        cpu,
    })
}

/// Attempts at one measurement: other engineers' fault tests close every broker connection and
/// restart Postgres now and then, which fails a run; it is then done again from scratch.
const ATTEMPTS: u32 = 3;

/// Runs `measure` until it succeeds (at most [`ATTEMPTS`] times); returns the result and how many
/// failed attempts came before it.
async fn again<T, F, Fut>(what: &str, mut measure: F) -> anyhow::Result<(T, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut failed = 0;
    loop {
        match measure().await {
            Ok(t) => return Ok((t, failed)),
            Err(error) if failed + 1 < ATTEMPTS => {
                failed += 1;
                eprintln!("   {what} failed ({error:#}); starting it again in 10 s");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(error) => return Err(error.context(format!("{what} failed {ATTEMPTS} times"))),
        }
    }
}

fn retried(failed: u32) -> String {
    if failed == 0 {
        String::new()
    } else {
        format!(
            " (run again after {failed} failed attempt{})",
            if failed == 1 { "" } else { "s" }
        )
    }
}

/// One line of the table.
struct Row {
    what: String,
    measured: Option<Measured>,
    unit: &'static str,
    /// Compared with this rate (the floor's), if any.
    floor: Option<f64>,
    note: String,
}

struct Table {
    rows: Vec<(String, Vec<Row>)>,
}

impl Table {
    fn section(&mut self, title: String) {
        eprintln!("== {title}");
        self.rows.push((title, Vec::new()));
    }

    fn push(&mut self, row: Row) {
        match &row.measured {
            Some(m) => eprintln!(
                "   {}: {:.0} {}/s ({:.2} s; CPU {})",
                row.what,
                m.rate(),
                row.unit,
                m.elapsed.as_secs_f64(),
                cpu_cell(m)
            ),
            None => eprintln!("   {}: {}", row.what, row.note),
        }
        self.rows.last_mut().expect("a section is open").1.push(row);
    }

    fn print(&self) {
        println!(
            "| workload | run | items | seconds | items/s | vs floor | CPU ms/item: all / bench / postgres / rabbitmq / rest | note |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---|");
        for (title, rows) in &self.rows {
            for (i, row) in rows.iter().enumerate() {
                let title = if i == 0 { title.as_str() } else { "" };
                let (items, secs, rate) = match &row.measured {
                    Some(m) => (
                        m.items.to_string(),
                        format!("{:.2}", m.elapsed.as_secs_f64()),
                        format!("{:.0} {}/s", m.rate(), row.unit),
                    ),
                    None => ("–".into(), "–".into(), "–".into()),
                };
                let ratio = match (&row.measured, row.floor) {
                    (Some(m), Some(f)) => format!("{:.0} %", 100.0 * m.rate() / f),
                    _ => String::new(),
                };
                let cpu = row.measured.as_ref().map(cpu_cell).unwrap_or_default();
                println!(
                    "| {title} | {} | {items} | {secs} | {rate} | {ratio} | {cpu} | {} |",
                    row.what, row.note
                );
            }
        }
    }
}

/// CPU milliseconds per item: the machine's, this process's (the consumers), PostgreSQL's,
/// RabbitMQ's, the rest's.
fn cpu_cell(m: &Measured) -> String {
    match m.cpu {
        Some(c) if m.items > 0 => {
            let per = |s: f64| 1000.0 * s / m.items as f64;
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} / {:.2}",
                per(c.machine),
                per(c.process),
                per(c.postgres),
                per(c.rabbitmq),
                // Tick rounding can take the difference a hair below zero.
                per((c.machine - c.process - c.postgres - c.rabbitmq).max(0.0))
            )
        }
        _ => String::new(),
    }
}

fn scale() -> anyhow::Result<f64> {
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
        run_workload(&services, &workload, &mut table).await?;
    }
    if wanted("tracing") {
        tracing_overhead(scale, &mut table).await?;
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

async fn run_workload(
    services: &Services,
    workload: &Workload,
    table: &mut Table,
) -> anyhow::Result<()> {
    let unit = workload.unit();
    table.section(workload.title());
    let (broker, failed) = again("broker alone", || {
        floor(services, workload, Floor::BrokerAlone)
    })
    .await?;
    let publish = Measured {
        items: broker.items,
        elapsed: broker.prefill,
        prefill: broker.prefill,
        cpu: None,
    };
    table.push(Row {
        what: "(a) broker alone: publish with confirms".into(),
        measured: Some(publish),
        unit,
        floor: None,
        note: format!("{} messages, {PUBLISH_WINDOW} in flight", workload.messages),
    });
    table.push(Row {
        what: "(a) broker alone: consume + ack".into(),
        measured: Some(broker),
        unit,
        floor: None,
        note: format!("multiple=true every {BATCH}{}", retried(failed)),
    });
    // Rounds: the floor, then every Swarm configuration, again and again, and the floor once
    // more at the end. Each row reports its median run and the floor reference is the median of
    // the floor's runs, so a burst of other work on this shared machine during one run moves
    // nothing much.
    let rounds = rounds()?;
    let mut configs: Vec<Config> = [1, BATCH]
        .into_iter()
        .flat_map(|batch| {
            [1, 2].map(|replicas| Config {
                batch,
                replicas,
                stages: Stages::Both,
            })
        })
        .collect();
    configs.extend(
        [Stages::IngestAlone, Stages::FeaturesAlone].map(|stages| Config {
            batch: BATCH,
            replicas: 1,
            stages,
        }),
    );
    let mut floors: Vec<Measured> = Vec::new();
    let mut floor_failed = 0;
    // Connectivity only: the same floor without its one overlap, for reference (not a target).
    let mut sequential: Vec<Measured> = Vec::new();
    let mut sequential_failed = 0;
    let mut swarm_runs: Vec<(Vec<Measured>, u32, bool)> =
        configs.iter().map(|_| (Vec::new(), 0, true)).collect();
    for round in 0..=rounds {
        let reference = Floor::OneHop(Compute::WhileWriting);
        let (m, failed) = again("floor", || floor(services, workload, reference)).await?;
        eprintln!("   floor (round {}): {:.0} {unit}/s", round + 1, m.rate());
        floors.push(m);
        floor_failed += failed;
        if round == rounds {
            break;
        }
        if workload.kind == Kind::Timeseries {
            let plain = Floor::OneHop(Compute::AfterWrites);
            let (m, failed) =
                again("sequential floor", || floor(services, workload, plain)).await?;
            eprintln!(
                "   sequential floor (round {}): {:.0} {unit}/s",
                round + 1,
                m.rate()
            );
            sequential.push(m);
            sequential_failed += failed;
        }
        for (&config, runs) in configs.iter().zip(swarm_runs.iter_mut()) {
            let (measured, failed) =
                again(&config.what(), || swarm(services, workload, config)).await?;
            runs.1 += failed;
            match measured {
                Some(m) => {
                    eprintln!(
                        "   {} (round {}): {:.0} {unit}/s",
                        config.what(),
                        round + 1,
                        m.rate()
                    );
                    runs.0.push(m);
                }
                None => runs.2 = false,
            }
        }
    }
    let floor_rates: Vec<f64> = floors.iter().map(Measured::rate).collect();
    let floor_rate = median(&floor_rates);
    let floor_row = median_run(floors);
    table.push(Row {
        what: format!("(a) floor: one hop, {BATCH} messages per transaction"),
        // The row shows one run (the one nearest below the median); the ratios below are to the
        // median itself, which the note gives.
        measured: floor_row,
        unit,
        floor: None,
        note: format!(
            "bare lapin + tokio-postgres; the reference: median {:.0} {unit}/s of {} runs ({}){}",
            floor_rate,
            floor_rates.len(),
            rates(&floor_rates),
            retried(floor_failed)
        ),
    });
    let sequential_rate = (!sequential.is_empty()).then(|| {
        let rates_: Vec<f64> = sequential.iter().map(Measured::rate).collect();
        let rate = median(&rates_);
        table.push(Row {
            what: "(a) sequential floor: the same, features computed after the samples are written".into(),
            measured: median_run(sequential),
            unit,
            floor: Some(floor_rate),
            note: format!(
                "for reference, not a target: nothing overlapped; median {rate:.0} {unit}/s of {} runs ({}){}",
                rates_.len(),
                rates(&rates_),
                retried(sequential_failed)
            ),
        });
        rate
    });
    for (config, (runs, failed, supported)) in configs.iter().zip(swarm_runs) {
        let run_rates: Vec<f64> = runs.iter().map(Measured::rate).collect();
        let paired = paired_ratios(&run_rates, &floor_rates);
        let path = match config.stages {
            Stages::Both => "ingest → features.v1 → features",
            Stages::IngestAlone => "ingest only, until every sample is stored",
            Stages::FeaturesAlone => "features only, until every feature is stored",
        };
        let note = if supported {
            let against_sequential = sequential_rate.map_or(String::new(), |rate| {
                format!(
                    "; {:.0} % of the sequential floor",
                    100.0 * median(&run_rates) / rate
                )
            });
            format!(
                "{path}; median of {} runs ({}); {}{against_sequential}{}",
                run_rates.len(),
                rates(&run_rates),
                paired_note(&paired),
                retried(failed)
            )
        } else {
            "skipped: this runtime has no BATCH_SIZE".into()
        };
        table.push(Row {
            what: config.what(),
            measured: median_run(runs),
            unit,
            floor: Some(floor_rate),
            note,
        });
    }
    Ok(())
}

/// Each run's rate against the floor runs just before and after it (round `i` sits between floor
/// runs `i` and `i + 1`; their geometric mean), so that the machine's drift over a bench — its
/// speed can change by a third from one minute to the next — cancels out of the ratio. Empty if a
/// run failed and the rounds no longer line up.
fn paired_ratios(runs: &[f64], floors: &[f64]) -> Vec<f64> {
    if floors.len() != runs.len() + 1 {
        return Vec::new();
    }
    runs.iter()
        .zip(floors.windows(2))
        .map(|(run, around)| run / (around[0] * around[1]).sqrt())
        .collect()
}

fn paired_note(paired: &[f64]) -> String {
    if paired.is_empty() {
        return "no paired ratios".into();
    }
    let percent: Vec<String> = paired.iter().map(|r| format!("{:.0}", 100.0 * r)).collect();
    format!(
        "against the floor runs around each: median {:.0} % ({} %)",
        100.0 * median(paired),
        percent.join(", ")
    )
}

/// Rounds of every measurement (`BENCH_ROUNDS`, default 3).
fn rounds() -> anyhow::Result<usize> {
    match std::env::var("BENCH_ROUNDS") {
        Ok(s) => match s.parse::<usize>() {
            Ok(n) if (1..=20).contains(&n) => Ok(n),
            _ => bail!("BENCH_ROUNDS={s} is not a whole number from 1 to 20"),
        },
        Err(_) => Ok(3),
    }
}

/// The median (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The run with the median rate (the lower middle one for an even count).
fn median_run(mut runs: Vec<Measured>) -> Option<Measured> {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let middle = runs.len().saturating_sub(1) / 2;
    runs.into_iter().nth(middle)
}

fn rates(values: &[f64]) -> String {
    values
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts what the OTLP receiver got.
#[derive(Debug, Default)]
struct Received {
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// An OTLP/HTTP receiver that accepts and discards; returns its endpoint.
async fn receiver(received: Arc<Received>) -> anyhow::Result<String> {
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
async fn run_child(endpoint: Option<&str>) -> anyhow::Result<Measured> {
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
async fn child() -> anyhow::Result<()> {
    let telemetry = swarm_runtime::telemetry::init_with("swarm-bench", "warn");
    let workload = Workload::new(Kind::Vectors, scale()?);
    let config = Config {
        batch: 1,
        replicas: 1,
        stages: Stages::Both,
    };
    let measured = swarm(&Services::from_env(), &workload, config)
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

async fn tracing_overhead(scale: f64, table: &mut Table) -> anyhow::Result<()> {
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
