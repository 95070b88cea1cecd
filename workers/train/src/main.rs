//! `swarm-train`: the training worker binary.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    swarm_runtime::main_for(swarm_train::TrainHandler::default()).await
}
