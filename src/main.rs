//! `swarm`: publish data and jobs, read reports, run the demo.

use clap::{Parser, Subcommand};
use swarm::commands::{
    self, demo::DemoArgs, publish::PublishArgs, report::ReportCommand, train::TrainArgs,
};
use swarm_runtime::Settings;

/// Swarm: a message-driven worker swarm for collaborative pattern analysis.
///
/// Sites publish data and jobs to RabbitMQ; the ingest, features, train and report workers
/// consume them and write derived data to PostgreSQL; analysts read the reports.
/// Every setting has a flag and an environment variable; the defaults work against a local
/// RabbitMQ and Postgres.
#[derive(Debug, Parser)]
#[command(name = "swarm", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database if it does not exist and apply the migrations.
    Migrate,
    /// Publish a site's samples for ingestion; prints the job id.
    Publish(PublishArgs),
    /// What became of a job: an ingest job's samples (ingested, featurised, refused and why),
    /// or a run.
    Status(commands::status::StatusArgs),
    /// Name a project's features (or a time-series project's regions, so that connectivity
    /// features are named by region pair); reports and statistics use the names.
    #[command(visible_alias = "features")]
    Regions(commands::regions::RegionsArgs),
    /// Start a training run (cross-validation, then a final model); prints the run id.
    Train(TrainArgs),
    /// Stop a training run: its remaining work units are dropped without computing.
    Cancel(commands::cancel::CancelArgs),
    /// Start a univariate statistics job (per feature, FDR-corrected); prints the job id.
    Stats(commands::stats::StatsArgs),
    /// List, show and open reports (of runs and statistics jobs).
    #[command(subcommand)]
    Report(ReportCommand),
    /// List and replay dead letters (messages that could not be processed).
    #[command(subcommand)]
    Dead(commands::dead::DeadCommand),
    /// Run the whole pipeline in this process on a synthetic 3-site data set and print the report.
    Demo(DemoArgs),
    /// Run one worker in this process (the same as its `swarm-<kind>` binary).
    Worker {
        /// Which worker.
        #[arg(value_enum)]
        kind: WorkerKind,
    },
}

/// The four workers.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WorkerKind {
    Ingest,
    Features,
    Train,
    Report,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A worker starts its own telemetry, named for the worker.
    let telemetry = (!matches!(cli.command, Command::Worker { .. }))
        .then(|| swarm_runtime::telemetry::init_with("swarm", "warn"));
    let settings = cli.settings;
    let result = match cli.command {
        Command::Migrate => commands::migrate(&settings).await,
        Command::Publish(args) => commands::publish::run(&settings, args).await,
        Command::Status(args) => commands::status::run(&settings, args).await,
        Command::Regions(args) => commands::regions::run(&settings, args).await,
        Command::Train(args) => commands::train::run(&settings, args).await,
        Command::Stats(args) => commands::stats::run(&settings, args).await,
        Command::Cancel(args) => commands::cancel::run(&settings, args).await,
        Command::Report(cmd) => commands::report::run(&settings, cmd).await,
        Command::Demo(args) => commands::demo::run(&settings, args).await,
        Command::Dead(cmd) => commands::dead::run(&settings, cmd).await,
        Command::Worker { kind } => worker(kind, settings).await,
    };
    if let Some(telemetry) = telemetry {
        // Flush the spans of what was published.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`swarm dead list | head -1`): what it read is all it wanted.
        Err(error) if is_broken_pipe(&error) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

async fn worker(kind: WorkerKind, settings: Settings) -> anyhow::Result<()> {
    use swarm_runtime::serve;
    match kind {
        WorkerKind::Ingest => serve(swarm_ingest::IngestHandler, settings).await,
        WorkerKind::Features => serve(swarm_features::FeaturesHandler, settings).await,
        WorkerKind::Train => serve(swarm_train::TrainHandler::default(), settings).await,
        WorkerKind::Report => serve(swarm_report::ReportHandler::from_env(), settings).await,
    }
}
