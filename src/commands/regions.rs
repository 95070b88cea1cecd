//! `swarm regions`: name a project's regions, so that its reports call connectivity features by
//! region pair (`L-Hippocampus × R-Amygdala`) instead of by index (`f17`).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context as _};
use broker_schemas::limits::MAX_NAME_LEN;
use swarm_runtime::Settings;

/// Arguments of `swarm regions`.
#[derive(Debug, clap::Args)]
pub struct RegionsArgs {
    /// The project; its time series must be published first (the count of names is checked
    /// against their columns). Reports rendered from then on use the names.
    #[arg(long)]
    pub project: String,
    /// The region names in the column order of the time series: a file (an atlas's label list,
    /// one name per line, or separated by commas or tabs) or a comma-separated list.
    pub names: String,
}

/// Stores the names as the project's region labels.
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
            "project {:?} does not exist yet: publish its time series first (swarm publish --labels …)",
            args.project
        );
    };
    let (kind, regions): (String, i32) = (row.get(0), row.get(1));
    if kind != "timeseries" {
        bail!(
            "project {:?} holds {kind} samples; region names are for time series, whose connectivity \
             features are region pairs",
            args.project
        );
    }
    if names.len() != regions as usize {
        bail!(
            "{} names for the {regions} regions (columns) of project {:?}'s time series: give one \
             name per column, in order",
            names.len(),
            args.project
        );
    }
    client
        .execute(
            "UPDATE projects SET region_labels = $2 WHERE name = $1",
            &[&args.project, &names],
        )
        .await?;
    println!(
        "Named the {regions} regions of project {:?}; its reports name connectivity features by \
         region pair.",
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
    if names.len() < 2 {
        bail!(
            "{arg:?} gives {} region names; a time series has at least 2 regions",
            names.len()
        );
    }
    let mut seen = HashSet::new();
    for name in &names {
        if name.chars().count() > MAX_NAME_LEN {
            bail!("the region name {name:?} is longer than {MAX_NAME_LEN} characters");
        }
        if !seen.insert(name) {
            bail!("the region name {name:?} is given twice");
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
        assert!(parse_names("A")
            .unwrap_err()
            .to_string()
            .contains("at least 2"));
        assert!(parse_names("A,B,A")
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
