//! `swarm report list|show`: read reports from the database.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use swarm_runtime::Settings;
use uuid::Uuid;

/// Report formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Markdown.
    Md,
    /// A self-contained HTML page.
    Html,
    /// JSON.
    Json,
}

/// `swarm report ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// List runs with reports, newest first.
    List {
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Print (or write) one run's report.
    Show {
        /// The run id (printed by `swarm train`).
        run: Uuid,
        /// Output format.
        #[arg(long, value_enum, default_value = "md")]
        format: Format,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs a report command.
pub async fn run(settings: &Settings, command: ReportCommand) -> anyhow::Result<()> {
    let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
    let client = pool.get().await.context("Failed to connect to Postgres")?;
    match command {
        ReportCommand::List { project } => {
            let rows = client
                .query(
                    "SELECT r.id, r.project, r.model, r.cv->>'folds', (r.metrics->'accuracy'->>'mean')::float8,
                            to_char(r.created_at, 'YYYY-MM-DD HH24:MI')
                     FROM runs r JOIN reports p ON p.run_id = r.id
                     WHERE $1::text IS NULL OR r.project = $1
                     ORDER BY r.created_at DESC",
                    &[&project],
                )
                .await?;
            println!(
                "{:<36}  {:<16}  {:<10}  {:>5}  {:>8}  created",
                "run", "project", "model", "folds", "accuracy"
            );
            for row in rows {
                let accuracy: Option<f64> = row.get(4);
                println!(
                    "{:<36}  {:<16}  {:<10}  {:>5}  {:>8}  {}",
                    row.get::<_, Uuid>(0).to_string(),
                    row.get::<_, String>(1),
                    row.get::<_, String>(2),
                    row.get::<_, Option<String>>(3).unwrap_or_default(),
                    accuracy.map(|a| format!("{a:.3}")).unwrap_or_default(),
                    row.get::<_, Option<String>>(5).unwrap_or_default(),
                );
            }
        }
        ReportCommand::Show { run, format, out } => {
            let row = client
                .query_opt(
                    "SELECT markdown, html, json FROM reports WHERE run_id = $1",
                    &[&run],
                )
                .await?;
            let Some(row) = row else {
                bail!("no report for run {run} (yet): `swarm report list` shows the finished runs");
            };
            let text = match format {
                Format::Md => row.get::<_, String>(0),
                Format::Html => row.get::<_, String>(1),
                Format::Json => serde_json::to_string_pretty(&row.get::<_, serde_json::Value>(2))?,
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("Failed to write {}", path.display()))?;
                    eprintln!("Wrote {}", path.display());
                }
                None => println!("{text}"),
            }
        }
    }
    Ok(())
}
