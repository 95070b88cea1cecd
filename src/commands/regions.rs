//! `swarm regions` (also `swarm features`): name a project's features, so that its reports and
//! statistics call them by name instead of by index (`f17`). For a time-series project the names
//! are its regions', and connectivity features are named by region pair (`L-Hippocampus ×
//! R-Amygdala`); for a vector project they are its features'.
//!
//! `swarm publish` stores the names its files give (a feature table's header, a time series'
//! header row) the same way ([`store`]): once per project, in the `feature_names` table.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context as _};
use broker_schemas::limits::MAX_NAME_LEN;
use swarm_runtime::Settings;
use tokio_postgres::Client;

/// Arguments of `swarm regions`.
#[derive(Debug, clap::Args)]
pub struct RegionsArgs {
    /// The project; its data must be published first (the count of names is checked against its
    /// features, or its time series' columns). Reports rendered from then on use the names.
    #[arg(long)]
    pub project: String,
    /// The names in column order: a file (an atlas's label list, one name per line, or separated
    /// by commas or tabs) or a comma-separated list.
    pub names: String,
}

/// What a project's names name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    /// One name per feature of a vector project, in column order.
    Features(Vec<String>),
    /// One name per region (column) of a time-series project.
    Regions(Vec<String>),
}

impl Names {
    /// `features` or `regions`, as stored in `feature_names.kind`.
    pub fn what(&self) -> &'static str {
        match self {
            Names::Features(_) => "features",
            Names::Regions(_) => "regions",
        }
    }

    /// The names.
    pub fn names(&self) -> &[String] {
        match self {
            Names::Features(n) | Names::Regions(n) => n,
        }
    }
}

/// Stores a project's names (`feature_names`, and `projects.region_labels` for regions); returns
/// the names they replace, if there were others.
pub async fn store(
    client: &Client,
    project: &str,
    names: &Names,
) -> anyhow::Result<Option<Vec<String>>> {
    let before: Option<Vec<String>> = client
        .query_opt(
            "SELECT names FROM feature_names WHERE project = $1",
            &[&project],
        )
        .await?
        .map(|r| r.get(0));
    let list = names.names();
    client
        .execute(
            "INSERT INTO feature_names (project, kind, names) VALUES ($1, $2, $3)
             ON CONFLICT (project) DO UPDATE SET kind = EXCLUDED.kind, names = EXCLUDED.names,
                 updated_at = now()
             WHERE (feature_names.kind, feature_names.names)
                   IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.names)",
            &[&project, &names.what(), &list],
        )
        .await?;
    if let Names::Regions(regions) = names {
        client
            .execute(
                "UPDATE projects SET region_labels = $2 WHERE name = $1 AND kind = 'timeseries'",
                &[&project, regions],
            )
            .await?;
    }
    Ok(before.filter(|b| b.as_slice() != list))
}

/// Stores the names as the project's feature or region names.
pub async fn run(settings: &Settings, args: RegionsArgs) -> anyhow::Result<()> {
    let names = parse_names(&args.names)?;
    let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
    let client = pool.get().await.context("Failed to connect to Postgres")?;
    let Some(row) = client
        .query_opt(
            "SELECT kind, dimension FROM projects WHERE name = $1",
            &[&args.project],
        )
        .await?
    else {
        bail!(
            "--project {}: no such project yet; publish its data first (swarm publish)",
            args.project
        );
    };
    let (kind, dimension): (String, i32) = (row.get(0), row.get(1));
    let (names, what) = match kind.as_str() {
        "timeseries" => (
            Names::Regions(names),
            "regions (columns) of its time series",
        ),
        "vector" => (Names::Features(names), "features"),
        _ => bail!(
            "--project {}: a {kind} project's features are its words, named by the features \
             worker",
            args.project
        ),
    };
    let count = names.names().len();
    if count != dimension as usize {
        bail!(
            "{count} names for the {dimension} {what} of project {:?}: give one name per column, \
             in order",
            args.project
        );
    }
    store(&client, &args.project, &names).await?;
    let effect = match names {
        Names::Regions(_) => "its reports name connectivity features by region pair",
        Names::Features(_) => "its reports and statistics name features by these names",
    };
    println!(
        "Named the {dimension} {} of project {:?}; {effect}.",
        names.what(),
        args.project
    );
    Ok(())
}

/// The names in `arg`: a file's contents, or the argument itself.
fn parse_names(arg: &str) -> anyhow::Result<Vec<String>> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).with_context(|| format!("Failed to read {arg}"))?
    } else {
        arg.to_owned()
    };
    let names: Vec<String> = text
        .split(['\n', ',', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        bail!("{arg:?} gives no names");
    }
    let mut seen = HashSet::new();
    for name in &names {
        if name.chars().count() > MAX_NAME_LEN {
            bail!("the name {name:?} is longer than {MAX_NAME_LEN} characters");
        }
        if !seen.insert(name) {
            bail!("the name {name:?} is given twice");
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lists_and_label_files() {
        assert_eq!(parse_names("A, B,C").unwrap(), ["A", "B", "C"]);
        let file = std::env::temp_dir().join(format!("regions-{}.txt", std::process::id()));
        std::fs::write(&file, "L-Hippocampus\nR-Amygdala\r\n\n").unwrap();
        assert_eq!(
            parse_names(file.to_str().unwrap()).unwrap(),
            ["L-Hippocampus", "R-Amygdala"]
        );
        std::fs::remove_file(&file).unwrap();
        assert!(parse_names(" , ")
            .unwrap_err()
            .to_string()
            .contains("no names"));
        assert!(parse_names("A,B,A")
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
