//! `swarm-features`: the feature-extraction worker binary.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    swarm_runtime::main_for(swarm_features::FeaturesHandler).await
}
