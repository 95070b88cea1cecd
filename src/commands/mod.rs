//! The CLI's commands, one module each.

pub mod dead;
pub mod demo;
pub mod precheck;
pub mod publish;
pub mod regions;
pub mod report;
pub mod run_status;
pub mod stats;
pub mod status;
pub mod train;

use swarm_runtime::{Publisher, Settings, Topology};

/// `n` and the noun, plural unless `n` is 1: "1 sample", "3 samples".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `swarm migrate`.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
    println!(
        "Database {} is migrated.",
        swarm_runtime::settings::redact(&settings.database_url)
    );
    Ok(())
}

/// A broker connection with a confirm-mode publisher and the topology declared (unless
/// `DECLARE_TOPOLOGY=false`).
#[derive(Debug)]
pub struct Outlet {
    connection: lapin::Connection,
    /// Publishes with confirms.
    pub publisher: Publisher,
    /// The namespace's names.
    pub topology: Topology,
}

impl Outlet {
    /// Connects and declares the topology.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let connection = swarm_runtime::amqp::connect(&settings.amqp_url, "swarm-cli").await?;
        let publisher = Publisher::new(&connection, "swarm-cli").await?;
        let topology = Topology::new(settings.namespace.clone());
        if settings.declare_topology {
            topology.declare(publisher.channel()).await?;
        }
        Ok(Self {
            connection,
            publisher,
            topology,
        })
    }

    /// Publishes a message under a job id; returns its message id.
    pub async fn send<M: broker_schemas::Message>(
        &self,
        message: &M,
        job_id: &str,
    ) -> anyhow::Result<String> {
        self.publisher
            .send(&self.topology, message, Some(job_id))
            .await
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}
