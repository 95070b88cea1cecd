//! `swarm-report`: the report worker binary. `JAEGER_UI_URL` (unset by default) makes reports
//! link their trace ids to Jaeger.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    swarm_runtime::main_for(swarm_report::ReportHandler::from_env()).await
}
