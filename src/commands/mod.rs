//! The CLI's commands, one module each.

pub mod demo;
pub mod publish;
pub mod report;
pub mod train;

use swarm_runtime::{Publisher, Settings, Topology};

/// `swarm migrate`.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
    println!(
        "Database {} is migrated.",
        swarm_runtime::settings::redact(&settings.database_url)
    );
    Ok(())
}

/// A connection and confirm-mode publisher with the topology declared, for commands that publish.
pub async fn publisher(
    settings: &Settings,
) -> anyhow::Result<(lapin::Connection, Publisher, Topology)> {
    let connection = swarm_runtime::amqp::connect(&settings.amqp_url, "swarm-cli").await?;
    let publisher = Publisher::new(&connection, "swarm-cli").await?;
    let topology = Topology::new(settings.namespace.clone());
    topology.declare(publisher.channel()).await?;
    Ok((connection, publisher, topology))
}
