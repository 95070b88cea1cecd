//! One measurement's world: a fresh database and namespace, pre-filled, settled, and cleaned up
//! afterwards.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use futures_util::{StreamExt, TryStreamExt};
use swarm_runtime::db::Pool;
use swarm_runtime::{Publisher, Settings, Topology};
use uuid::Uuid;

use crate::cpu::broker_quiet;
use crate::workload::Workload;
use crate::PUBLISH_WINDOW;

/// How long one measurement may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(600);
/// How often the database is asked whether a run is done.
const POLL: Duration = Duration::from_millis(20);

/// Where the services are.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    pub(crate) amqp_url: String,
    pub(crate) database_server: String,
}

impl Services {
    pub(crate) fn from_env() -> Self {
        Self {
            amqp_url: std::env::var("AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            database_server: std::env::var("BENCH_DATABASE_SERVER")
                .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into()),
        }
    }
}

/// One measurement's world: its own database and namespace, the topology declared.
pub(crate) struct World {
    pub(crate) services: Services,
    pub(crate) db_name: String,
    pub(crate) database_url: String,
    pub(crate) pool: Pool,
    pub(crate) topology: Topology,
    pub(crate) connection: lapin::Connection,
    pub(crate) publisher: Publisher,
}

impl World {
    pub(crate) async fn new(services: &Services) -> anyhow::Result<Self> {
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
    pub(crate) async fn prefill(&self, workload: &Workload, job: &str) -> anyhow::Result<Duration> {
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
    pub(crate) async fn settle(&self) -> anyhow::Result<()> {
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
    pub(crate) async fn wait_for_rows(
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
    pub(crate) async fn wait_for_empty_outbox(&self) -> anyhow::Result<()> {
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
    pub(crate) async fn poll_count(
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
    pub(crate) async fn dead_letters(&self) -> anyhow::Result<i64> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one("SELECT count(*) FROM dead_letters", &[])
            .await?
            .get(0))
    }

    /// Swarm's settings for this world; `None` when `batch` is asked for but this runtime has no
    /// `BATCH_SIZE`.
    pub(crate) fn settings(&self, batch: usize) -> anyhow::Result<Option<Settings>> {
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
    pub(crate) async fn finish(self) -> anyhow::Result<()> {
        let db_name = self.db_name.clone();
        let namespace = self.topology.namespace().to_string();
        if let Err(error) = self.clean_up().await {
            eprintln!(
                "   could not clean up namespace {namespace} / database {db_name}: {error:#}"
            );
        }
        Ok(())
    }

    pub(crate) async fn clean_up(self) -> anyhow::Result<()> {
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
