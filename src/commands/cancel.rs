//! `swarm cancel RUN`: stops a training run. Its run turns `cancelled` at once; its remaining
//! units are acknowledged by the train workers without computing, and a unit that was being
//! computed stores nothing.

use anyhow::{bail, Context as _};
use swarm_runtime::Settings;
use uuid::Uuid;

/// Arguments of `swarm cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run to stop (the id `swarm train` printed).
    pub run: Uuid,
}

/// `swarm cancel`.
pub async fn run(settings: &Settings, args: CancelArgs) -> anyhow::Result<()> {
    let pool = swarm_runtime::db::pool(&settings.database_url, 1)?;
    let client = pool.get().await.context("Failed to connect to Postgres")?;
    if swarm_train::runs::cancel(&**client, args.run, "cancelled by swarm cancel").await? {
        println!("Run {} is cancelled.", args.run);
        return Ok(());
    }
    match swarm_train::runs::progress(&**client, args.run).await? {
        Some(p) => bail!("run {} is {} already: nothing to cancel", args.run, p.state),
        None => bail!(
            "run {} is not known to the train workers (not planned yet, or no such run)",
            args.run
        ),
    }
}
