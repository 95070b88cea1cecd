//! `swarm report list|show|open`: read reports from the database.
//!
//! `list` reads the `report_summary` view (and the statistics jobs with a report); `show` prints
//! a stored report, or renders one afresh when the run or job exists but its report is not
//! stored yet, or when the run failed or was cancelled (a short report of why, what was asked
//! for and how far it got); `open` writes the HTML page to a file and prints its path.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use swarm_report::{RenderOptions, Rendered};
use swarm_runtime::Settings;
use uuid::Uuid;

/// Report formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Plain text for a terminal: the Markdown report without escapes or emphasis.
    Text,
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
    /// List runs and statistics jobs with reports, newest first: run, project, model, scheme,
    /// main score (mean ± sd over folds; for statistics, the significant features), date.
    List {
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Print (or write) one run's or statistics job's report.
    Show {
        /// The run id (printed by `swarm train`) or statistics job id.
        run: Uuid,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a report's HTML page to a file and print its path (open it in a browser).
    Open {
        /// The run id or statistics job id.
        run: Uuid,
        /// Where to write it; default: `swarm-reports/<id>.html` in the temporary directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Lists reports: runs from `report_summary`, statistics jobs from `stats_jobs`.
const LIST_SQL: &str = "\
    SELECT run_id, project, model, scheme, \
           main_metric || ' ' || to_char(main_score, 'FM0.000') \
               || coalesce(' ± ' || to_char(main_score_sd, 'FM0.000'), '') AS score, \
           created_at \
    FROM report_summary \
    WHERE reported_at IS NOT NULL AND ($1::text IS NULL OR project = $1) \
    UNION ALL \
    SELECT s.id, s.project, 'stats:' || s.test, 'univariate', \
           (SELECT count(*) FROM jsonb_array_elements(s.results -> 'features') f \
             WHERE (f ->> 'significant')::boolean)::text \
               || ' of ' || s.n_features || ' significant', \
           s.created_at \
    FROM stats_jobs s JOIN reports p ON p.run_id = s.id AND p.kind = 'stats' \
    WHERE $1::text IS NULL OR s.project = $1 \
    ORDER BY created_at DESC";

/// Runs a report command.
pub async fn run(settings: &Settings, command: ReportCommand) -> anyhow::Result<()> {
    let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
    let client = pool.get().await.context("Failed to connect to Postgres")?;
    match command {
        ReportCommand::List { project } => {
            let rows = client
                .query(LIST_SQL, &[&project])
                .await
                .context("Failed to list the reports")?;
            let table: Vec<[String; 6]> = rows
                .iter()
                .map(|row| {
                    let date: chrono::DateTime<chrono::Utc> = row.get(5);
                    [
                        row.get::<_, Uuid>(0).to_string(),
                        row.get(1),
                        row.get(2),
                        row.get::<_, Option<String>>(3).unwrap_or_default(),
                        row.get::<_, Option<String>>(4)
                            .unwrap_or_else(|| "n/a".to_owned()),
                        date.format("%Y-%m-%d %H:%M").to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                format_table(
                    &["run", "project", "model", "scheme", "main score", "date"],
                    &table
                )
            );
            if table.is_empty() {
                eprintln!("No reports yet: `swarm train … --wait` makes one.");
            }
        }
        ReportCommand::Show { run, format, out } => {
            let text = match format {
                Format::Text => text_of(&client, run).await?,
                Format::Md => fetch(&client, run).await?.markdown,
                Format::Html => fetch(&client, run).await?.html,
                Format::Json => serde_json::to_string_pretty(&fetch(&client, run).await?.json)?,
            };
            match out {
                Some(path) => {
                    write_atomically(&path, text.as_bytes(), false)?;
                    eprintln!("Wrote {}", path.display());
                }
                None => println!("{text}"),
            }
        }
        ReportCommand::Open { run, out } => {
            let report = fetch(&client, run).await?;
            let (path, default) = match out {
                Some(path) => (path, false),
                None => (
                    std::env::temp_dir()
                        .join("swarm-reports")
                        .join(format!("{run}.html")),
                    true,
                ),
            };
            write_atomically(&path, report.html.as_bytes(), default)?;
            let path = path.canonicalize().unwrap_or(path);
            println!("{}", path.display());
        }
    }
    Ok(())
}

/// The stored report of `id`, or one rendered now when the run or job exists but its report is
/// not stored yet.
async fn fetch(client: &tokio_postgres::Client, id: Uuid) -> anyhow::Result<Rendered> {
    let row = client
        .query_opt(
            "SELECT summary, markdown, html, json FROM reports WHERE run_id = $1",
            &[&id],
        )
        .await
        .context("Failed to read the report")?;
    if let Some(row) = row {
        return Ok(Rendered {
            summary: row.get(0),
            markdown: row.get(1),
            html: row.get(2),
            json: row.get(3),
        });
    }
    let options = RenderOptions::from_env();
    if let Some(subject) = swarm_report::load_subject(client, id).await? {
        eprintln!("The report of {id} is not stored yet; rendering it now.");
        return Ok(swarm_report::render::all(&subject, &options)?);
    }
    match swarm_report::load_stopped(client, id).await? {
        Some(stopped) => Ok(swarm_report::render::stopped::report(&stopped, &options)?),
        None => Err(no_report(client, id).await),
    }
}

/// The report of `id` rendered now as plain text for a terminal.
async fn text_of(client: &tokio_postgres::Client, id: Uuid) -> anyhow::Result<String> {
    let options = RenderOptions::from_env();
    if let Some(subject) = swarm_report::load_subject(client, id).await? {
        return Ok(swarm_report::render::text(&subject, &options)?);
    }
    match swarm_report::load_stopped(client, id).await? {
        Some(stopped) => Ok(swarm_report::render::stopped::text(&stopped, &options)?),
        None => Err(no_report(client, id).await),
    }
}

/// Why `id` has no report: a run still running has no results yet; anything else is unknown.
/// (A run that failed or was cancelled gets a report of why: [`swarm_report::render::stopped`].)
async fn no_report(client: &tokio_postgres::Client, id: Uuid) -> anyhow::Error {
    match swarm_train::runs::progress(client, id).await {
        Ok(Some(progress)) => anyhow::anyhow!(
            "run {id} has no report: it {}",
            match progress.state.as_str() {
                "running" => format!(
                    "is still running ({}); `swarm status {id}` follows it",
                    crate::commands::run_status::describe(&progress)
                ),
                "failed" | "cancelled" => format!(
                    "{} ({}), so it stored no results",
                    progress.state,
                    progress.reason.as_deref().unwrap_or("no reason given")
                ),
                _ => format!("is {}", crate::commands::run_status::describe(&progress)),
            }
        ),
        Ok(None) => anyhow::anyhow!(
            "no run or statistics job {id}: `swarm report list` shows the finished ones"
        ),
        Err(e) => anyhow::Error::new(e).context("Failed to read the run's state"),
    }
}

/// Writes a file through a uniquely named temporary file and a rename, so a reader (or a
/// concurrent writer) never sees half a page.
/// A directory the user named (`--out`) must exist: a typo is not silently made a directory.
fn write_atomically(path: &Path, bytes: &[u8], create_dir: bool) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if create_dir {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
    } else if !dir.is_dir() {
        bail!(
            "--out {}: the directory {} does not exist; create it first",
            path.display(),
            dir.display()
        );
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".to_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("Failed to write {}", path.display()))
}

/// A plain-text table: columns padded to their widest cell (counted in characters).
fn format_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_characters() {
        let table = format_table(
            &["run", "score"],
            &[
                ["a".to_owned(), "0.9 ± 0.1".to_owned()],
                ["bbbb".to_owned(), "1".to_owned()],
            ],
        );
        assert_eq!(table, "run   score\na     0.9 ± 0.1\nbbbb  1\n");
    }

    #[test]
    fn files_are_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("swarm-report-test-{}", Uuid::new_v4()));
        let path = dir.join("r.html");
        let error = write_atomically(&path, b"one", false).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("does not exist; create it first"),
            "--out does not create a missing directory: {error}"
        );
        assert!(!dir.exists());
        write_atomically(&path, b"one", true).unwrap();
        write_atomically(&path, b"two", false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_list_is_parameterised() {
        assert!(LIST_SQL.contains("$1::text IS NULL"));
        assert!(!LIST_SQL.contains('{'));
    }
}
