//! `swarm-ingest`: the ingest worker binary.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    swarm_runtime::main_for(swarm_ingest::IngestHandler).await
}
