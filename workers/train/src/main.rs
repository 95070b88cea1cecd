//! `swarm-train`: the training worker binary.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = swarm_train::TrainSettings::from_env().map_err(anyhow::Error::msg)?;
    swarm_runtime::main_for(swarm_train::TrainHandler::new(settings)).await
}
