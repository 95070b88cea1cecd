//! Test helpers: a fresh namespace and database per test, workers in-process, polling with a
//! deadline (never sleeps as synchronisation).

use std::future::Future;
use std::time::{Duration, Instant};

use broker_schemas::Message;
use lapin::options::{BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use swarm_runtime::amqp::{Outgoing, Publisher};
use swarm_runtime::db::Pool;
use swarm_runtime::topology::WORKERS;
use swarm_runtime::{Settings, Topology, WorkerHandle};
use uuid::Uuid;

/// How long a test waits for the pipeline before it fails.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// One test's world: its own namespace on the shared broker and its own database.
pub struct TestEnv {
    pub settings: Settings,
    pub topology: Topology,
    pub pool: Pool,
    pub connection: lapin::Connection,
    pub publisher: Publisher,
    db_name: String,
}

impl TestEnv {
    pub async fn new() -> Self {
        swarm_runtime::telemetry::init_for_tests();
        let id = Uuid::new_v4().simple().to_string()[..12].to_string();
        let db_name = format!("swarm_test_{id}");
        let mut settings = Settings::local();
        let server = std::env::var("TEST_DATABASE_SERVER")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into());
        settings.database_url = format!("{server}/{db_name}");
        if let Ok(url) = std::env::var("AMQP_URL") {
            settings.amqp_url = url;
        }
        settings.namespace = format!("test-{id}");
        settings.shutdown_timeout_secs = 10;
        settings.db_pool_size = 4;
        let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 4)
            .await
            .expect("Postgres is reachable (run .ci/run or start it)");
        let connection = swarm_runtime::amqp::connect(&settings.amqp_url, "swarm-test")
            .await
            .expect("RabbitMQ is reachable (run .ci/run or start it)");
        let publisher = Publisher::new(&connection, "swarm-test").await.unwrap();
        let topology = Topology::new(settings.namespace.clone());
        topology.declare(publisher.channel()).await.unwrap();
        Self {
            settings,
            topology,
            pool,
            connection,
            publisher,
            db_name,
        }
    }

    /// Starts one worker of each kind.
    pub fn spawn_all(&self) -> Vec<WorkerHandle> {
        swarm::commands::demo::spawn_workers(&self.settings)
    }

    /// Publishes a message the way the CLI does; returns its message id.
    pub async fn send<M: Message>(&self, message: &M, job_id: &str) -> String {
        self.publisher
            .send(&self.topology, message, Some(job_id))
            .await
            .unwrap()
    }

    /// Publishes raw bytes with the given envelope to the namespace's exchange.
    pub async fn publish_raw(
        &self,
        routing_key: &str,
        message_type: &str,
        message_id: &str,
        body: Vec<u8>,
    ) {
        let out = Outgoing {
            exchange: self.topology.exchange(),
            routing_key: routing_key.into(),
            message_type: message_type.into(),
            message_id: message_id.into(),
            correlation_id: Some("raw-job".into()),
            headers: Default::default(),
            body,
        };
        self.publisher.publish(&out).await.unwrap();
    }

    /// One value of a query (e.g. a count).
    pub async fn scalar<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> T
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        let client = self.pool.get().await.unwrap();
        client.query_one(sql, params).await.unwrap().get(0)
    }

    /// Waits until `sql` (a count) returns `expected`, failing after [`PATIENCE`].
    pub async fn wait_count(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        expected: i64,
    ) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let n: i64 = self.scalar(sql, params).await;
            if n == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {n} rows, expected {expected}, after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes every message from a worker's dead queue, waiting until there are `expected`:
    /// returns each one's reason header and message id.
    pub async fn take_dead(&self, worker: &str, expected: usize) -> Vec<(String, String)> {
        let channel = self.connection.create_channel().await.unwrap();
        let queue = self.topology.dead_queue(worker);
        let deadline = Instant::now() + PATIENCE;
        let mut taken = Vec::new();
        while taken.len() < expected {
            match channel
                .basic_get(queue.clone().into(), BasicGetOptions::default())
                .await
                .unwrap()
            {
                Some(message) => {
                    let delivery = message.delivery;
                    let headers = swarm_runtime::dead::string_headers(&delivery);
                    let reason = headers
                        .get(swarm_runtime::dead::REASON_HEADER)
                        .cloned()
                        .unwrap_or_default();
                    let id = delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await
                        .unwrap();
                    taken.push((reason, id));
                }
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "{} of {expected} dead letters in {queue}",
                        taken.len()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        taken
    }

    /// Stops the workers, deletes the namespace's queues and exchanges and drops the database.
    pub async fn finish(self, workers: Vec<WorkerHandle>) {
        for w in workers {
            w.stop().await.expect("the worker stops cleanly");
        }
        let channel = self.connection.create_channel().await.unwrap();
        for (worker, _) in WORKERS {
            for q in [
                self.topology.queue(worker),
                self.topology.dead_queue(worker),
            ] {
                let _ = channel
                    .queue_delete(q.into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for e in [self.topology.exchange(), self.topology.dead_exchange()] {
            let _ = channel
                .exchange_delete(e.into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = self.connection.close(200, "done".into()).await;
        self.pool.close();
        let server = std::env::var("TEST_DATABASE_SERVER")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into());
        let (client, conn) =
            tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.db_name
            ))
            .await
            .unwrap();
    }
}

/// Polls `check` until it returns true, failing with `what` after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Python with pika and msgpack: `SWARM_PYTHON`, else the workspace's `.venv` (created with
/// `tests/python/requirements.txt` when missing, as `.ci/run` does).
pub fn python() -> String {
    if let Ok(python) = std::env::var("SWARM_PYTHON") {
        return python;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let venv = format!("{root}/.venv");
    let python = format!("{venv}/bin/python");
    let ready = std::process::Command::new(&python)
        .args(["-c", "import pika, msgpack"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv", &venv])
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "-r",
                    &format!("{root}/tests/python/requirements.txt"),
                ])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "could not create {venv} with pika and msgpack: run .ci/run, or set SWARM_PYTHON"
        );
    }
    python
}
