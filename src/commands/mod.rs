//! The CLI's commands, one module each.

pub mod cancel;
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

use swarm_runtime::{Client, Settings};

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

/// Connects to the broker as `swarm-cli` and declares the topology (unless
/// `DECLARE_TOPOLOGY=false`).
pub async fn connect(settings: &Settings) -> anyhow::Result<Client> {
    Client::connect(settings, "swarm-cli").await
}
