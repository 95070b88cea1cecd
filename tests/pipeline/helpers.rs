//! Test helpers: a fresh namespace and database per test, workers in-process or as processes,
//! polling with a deadline (never sleeps as synchronisation). Shared by several test binaries,
//! each of which uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use broker_schemas::{IngestV1, Message};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use swarm_runtime::amqp::{Outgoing, Publisher};
use swarm_runtime::db::Pool;
use swarm_runtime::{Settings, Topology, WorkerHandle};
use uuid::Uuid;

#[path = "../common/mod.rs"]
mod common;

// Not every binary that includes these helpers polls.
#[allow(unused_imports)]
pub use common::{counter, eventually, PATIENCE};

/// One test's world: its own namespace on the shared broker and its own database.
pub struct TestEnv {
    pub settings: Settings,
    pub topology: Topology,
    pub pool: Pool,
    pub connection: lapin::Connection,
    pub publisher: Publisher,
    pub db_name: String,
}

impl TestEnv {
    pub async fn new() -> Self {
        swarm_runtime::telemetry::init_for_tests();
        let id = Uuid::new_v4().simple().to_string()[..12].to_string();
        let db_name = format!("swarm_test_{id}");
        let mut settings = Settings::local();
        settings.database_url = format!("{}/{db_name}", common::database_server());
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
        self.publish_with_headers(
            routing_key,
            message_type,
            message_id,
            body,
            Default::default(),
        )
        .await
    }

    /// Publishes `message` as `ingest.v1` under the message id `id` (chosen, so a test can send
    /// the same id twice).
    pub async fn publish_ingest(&self, id: &str, message: &IngestV1) {
        self.publish_raw(
            IngestV1::TYPE,
            IngestV1::TYPE,
            id,
            broker_schemas::encode(message),
        )
        .await
    }

    /// How many messages of `worker`'s queue are recorded as processed.
    pub async fn processed(&self, worker: &str) -> i64 {
        let queue = self.topology.queue(worker);
        self.scalar(
            "SELECT count(*) FROM processed_messages WHERE queue = $1",
            &[&queue],
        )
        .await
    }

    /// Like [`TestEnv::publish_raw`], with AMQP headers.
    pub async fn publish_with_headers(
        &self,
        routing_key: &str,
        message_type: &str,
        message_id: &str,
        body: Vec<u8>,
        headers: std::collections::HashMap<String, String>,
    ) {
        let out = Outgoing {
            exchange: self.topology.exchange(),
            routing_key: routing_key.into(),
            message_type: message_type.into(),
            message_id: message_id.into(),
            correlation_id: Some("raw-job".into()),
            headers,
            body,
        };
        self.publisher.publish(&out).await.unwrap();
    }

    /// Ready messages in a worker's queue (unacked ones are not counted).
    pub async fn queue_depth(&self, worker: &str) -> u32 {
        let connection = swarm_runtime::amqp::connect(&self.settings.amqp_url, "swarm-test")
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = channel
            .queue_declare(
                self.topology.queue(worker).into(),
                passive,
                Default::default(),
            )
            .await
            .unwrap();
        let _ = connection.close(200, "done".into()).await;
        q.message_count()
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
        // Retried for a while: fault tests restart the database under it.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = match self.pool.get().await {
                Ok(client) => client
                    .query_one(sql, params)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(row) => return row.get(0),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("query failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("{sql}: {e}"),
            }
        }
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

    /// Waits until job `job_id` has `expected` features rows, failing after [`PATIENCE`].
    pub async fn wait_features(&self, what: &str, job_id: &str, expected: i64) {
        self.wait_count(
            what,
            "SELECT count(*) FROM features WHERE job_id = $1",
            &[&job_id],
            expected,
        )
        .await
    }

    /// Runs the `swarm` binary against the test's namespace and database; returns its stdout,
    /// failing if it fails.
    pub async fn cli(&self, args: &[&str]) -> String {
        self.cli_with_env(&[], args).await
    }

    /// Runs the `swarm` binary against the test's namespace and database, whatever its exit.
    pub async fn cli_output(
        &self,
        extra_env: &[(&str, String)],
        args: &[&str],
    ) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(args)
            .env("AMQP_URL", &self.settings.amqp_url)
            .env("DATABASE_URL", &self.settings.database_url)
            .env("SWARM_NAMESPACE", &self.settings.namespace)
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .await
            .expect("the swarm binary runs")
    }

    /// Runs the `swarm` binary expecting it to fail; returns its stderr.
    pub async fn cli_fails(&self, args: &[&str]) -> String {
        let output = self.cli_output(&[], args).await;
        assert!(
            !output.status.success(),
            "swarm {args:?} should fail: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Like [`TestEnv::cli`], with more environment variables.
    pub async fn cli_with_env(&self, extra_env: &[(&str, String)], args: &[&str]) -> String {
        let output = self.cli_output(extra_env, args).await;
        assert!(
            output.status.success(),
            "swarm {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
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
    /// Trains `project` with `swarm train --cv 2 --wait` and returns the names of its report's
    /// top features (from `swarm report show --format json`).
    pub async fn top_features_after_training(&self, project: &str) -> Vec<String> {
        let out = self
            .cli(&[
                "train",
                "--project",
                project,
                "--cv",
                "2",
                "--wait",
                "--timeout",
                "120",
            ])
            .await;
        let run = out
            .split_whitespace()
            .find_map(|w| w.parse::<uuid::Uuid>().ok())
            .expect("train prints the run id");
        let json = self
            .cli(&["report", "show", &run.to_string(), "--format", "json"])
            .await;
        let json: serde_json::Value = serde_json::from_str(&json).expect("the JSON report parses");
        json["top_features"]
            .as_array()
            .expect("top features")
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect()
    }

    pub async fn finish(self, workers: Vec<WorkerHandle>) {
        for w in workers {
            w.stop().await.expect("the worker stops cleanly");
        }
        // A fresh connection: fault tests may have closed the first one.
        let connection = swarm_runtime::amqp::connect(&self.settings.amqp_url, "swarm-test")
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        self.topology.delete(&channel).await;
        let _ = connection.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
        self.pool.close();
        common::drop_database(&self.db_name).await;
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

/// A worker running as a `swarm worker <kind>` process of its own.
pub struct WorkerProcess {
    pub kind: String,
    /// The extra environment it was started with (to restart it alike).
    pub extra_env: Vec<(&'static str, String)>,
    child: tokio::process::Child,
}

impl WorkerProcess {
    /// Starts `swarm worker <kind>` against the test's namespace and database.
    pub fn start(env: &TestEnv, kind: &str, extra_env: &[(&'static str, String)]) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_swarm"));
        command
            .args(["worker", kind])
            .env("AMQP_URL", &env.settings.amqp_url)
            .env("DATABASE_URL", &env.settings.database_url)
            .env("SWARM_NAMESPACE", &env.settings.namespace)
            .env("SHUTDOWN_TIMEOUT", "10")
            .env("LOG_FORMAT", "json")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        if std::env::var_os("TEST_LOG").is_none() {
            command.stderr(std::process::Stdio::null());
        }
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command.spawn().expect("the swarm binary starts");
        Self {
            kind: kind.to_string(),
            extra_env: extra_env.to_vec(),
            child,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Sends SIGTERM and waits (up to 30 s) for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        signal("-TERM", &self.pid().to_string());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the worker exits within 30 s of SIGTERM")
            .unwrap()
    }

    /// SIGKILL, at once.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Sends `signal` (e.g. `-TERM`) to process `pid` with `kill`; panics if it cannot.
pub fn signal(signal: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP proxy the test can cut and restore, to make one worker lose its database (or broker)
/// without touching the shared server.
pub struct Proxy {
    pub port: u16,
    target: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// Forwards a free local port to `target` (e.g. `127.0.0.1:5432`).
    pub async fn start(target: &str) -> Self {
        let proxy = Self {
            port: free_port(),
            target: target.to_string(),
            tasks: Default::default(),
        };
        proxy.restore().await;
        proxy
    }

    /// Accepts and forwards connections again.
    pub async fn restore(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot rebind the proxy port: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let target = self.target.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Refuses new connections and drops the open ones.
    pub fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// The value of a Prometheus series whose line contains all of `parts`, or 0.
pub fn metric(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l.as_bytes().get(name.len()) == Some(&b'{')
                    || l.as_bytes().get(name.len()) == Some(&b' '))
        })
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// GET a URL; returns the status and body.
pub async fn http_get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}
