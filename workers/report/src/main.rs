//! `swarm-report`: the report worker binary.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    swarm_runtime::main_for(swarm_report::ReportHandler::default()).await
}
