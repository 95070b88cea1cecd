//! Test helpers: a fresh database per test, a namespace on the shared broker, a RabbitMQ vhost
//! and users of the test's own (made with `rabbitmqctl`, removed when dropped), and polling with
//! a deadline (never sleeps as synchronisation).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use broker_schemas::TrainV1;
use serde_json::json;
use swarm_runtime::amqp::Publisher;
use swarm_runtime::db::Pool;
use swarm_runtime::{Settings, Topology};
use uuid::Uuid;

#[path = "../common/mod.rs"]
mod common;

pub use common::{counter, database_server, drop_database, eventually, PATIENCE};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A short random id for names.
pub fn short_id() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Where a child process of a test writes its stdout and stderr: the test's own with `TEST_LOG`
/// set, else nowhere.
pub fn child_output() -> Stdio {
    if std::env::var_os("TEST_LOG").is_none() {
        Stdio::null()
    } else {
        Stdio::inherit()
    }
}

/// A `train.v1` of logistic regression with the defaults for `project`. Built from JSON so that
/// new optional fields of the contract need no change here.
pub fn train_request(run_id: Uuid, project: &str) -> TrainV1 {
    serde_json::from_value(json!({
        "run_id": run_id,
        "project": project,
        "model": "logistic",
    }))
    .unwrap()
}

/// A fresh database `swarm_test_<id>`, migrated as the owner; dropped with the value.
pub struct TestDb {
    pub name: String,
    /// A pool connected as the owner.
    pub owner: Pool,
}

impl TestDb {
    pub async fn new() -> Self {
        swarm_runtime::telemetry::init_for_tests();
        let name = format!("swarm_test_{}", short_id());
        let owner = swarm_runtime::db::connect_and_migrate(&Self::url_as(&name, None), 4)
            .await
            .expect("Postgres is reachable (run .ci/run or start it)");
        Self { name, owner }
    }

    fn url_as(name: &str, role: Option<&str>) -> String {
        let server = database_server();
        match role {
            // The server URL names the owner; swap the user for the role (local trust auth).
            Some(role) => {
                let (scheme, rest) = server.split_once("://").expect("a URL");
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{role}@{host}/{name}")
            }
            None => format!("{server}/{name}"),
        }
    }

    /// The URL of this database as `role` (no password: the local server trusts 127.0.0.1).
    pub fn url(&self, role: Option<&str>) -> String {
        Self::url_as(&self.name, role)
    }

    /// A pool connected as `role`, without migrating (as a worker with `MIGRATE=false`).
    pub fn pool_as(&self, role: &str) -> Pool {
        swarm_runtime::db::pool(&self.url(Some(role)), 2).expect("a valid URL")
    }

    /// Runs a SQL file with `psql` as the owner, stopping at the first error.
    pub fn psql_file(&self, file: &Path) {
        let output = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(None))
            .arg("-f")
            .arg(file)
            .output()
            .expect("psql is installed");
        assert!(
            output.status.success(),
            "psql -f {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.owner.close();
        let _ = Command::new("psql")
            .args(["-X", "-q", "-d"])
            .arg(format!("{}/postgres", database_server()))
            .arg("-c")
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// A namespace `test-<id>` on the shared broker (vhost `/`, guest), declared; its queues and
/// exchanges are deleted by [`TestBroker::finish`].
pub struct TestBroker {
    pub topology: Topology,
    pub connection: lapin::Connection,
    pub publisher: Publisher,
}

impl TestBroker {
    pub async fn new() -> Self {
        let url = amqp_url();
        let connection = swarm_runtime::amqp::connect(&url, "swarm-security-test")
            .await
            .expect("RabbitMQ is reachable (run .ci/run or start it)");
        let publisher = Publisher::new(&connection, "swarm-security-test")
            .await
            .unwrap();
        let topology = Topology::new(format!("test-{}", short_id()));
        topology.declare(publisher.channel()).await.unwrap();
        Self {
            topology,
            connection,
            publisher,
        }
    }

    /// Deletes the namespace's queues and exchanges.
    pub async fn finish(self) {
        let channel = self.connection.create_channel().await.unwrap();
        self.topology.delete(&channel).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// The broker the tests use: `AMQP_URL`, else the local default.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| Settings::local().amqp_url)
}

/// Host and port of [`amqp_url`], for URLs with other users and vhosts.
pub fn amqp_authority() -> String {
    let url = amqp_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Runs `rabbitmqctl` (as root, on the broker's machine) and returns its stdout.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl is installed (the tests run on the broker's machine)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A vhost and users of the test's own, deleted (all at once) when dropped, pass or fail.
pub struct BrokerAccounts {
    pub vhost: String,
    pub users: Vec<String>,
}

impl Drop for BrokerAccounts {
    fn drop(&mut self) {
        let mut children = Vec::new();
        for user in &self.users {
            children.push(
                Command::new("rabbitmqctl")
                    .args(["-q", "delete_user", user])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn(),
            );
        }
        children.push(
            Command::new("rabbitmqctl")
                .args(["-q", "delete_vhost", &self.vhost])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn(),
        );
        for child in children.into_iter().flatten() {
            let _ = child.wait_with_output();
        }
    }
}
