//! Checks of a job against what the database already holds, made before the job is published,
//! so a user's mistake is refused at the terminal with the flag to fix instead of becoming a
//! dead letter: the project exists and its samples are of the kind being published; the sites
//! and test sites exist; the labels make the classes and folds the scheme needs; PCA keeps no
//! more components than there are features.
//!
//! A site may publish without access to the database (it holds only broker credentials): then
//! nothing here can be checked, the CLI says so and publishes; the workers check the same.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::bail;
use broker_schemas::{CvScheme, SampleKind, TextKind};
use swarm_runtime::Settings;
use swarm_train::cv::RunConfig;
use swarm_train::model::Task;
use tokio_postgres::Client;

/// How long to try the database before publishing unchecked.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the database if it is reachable and migrated, else `None` after a note on
/// stderr naming `what` could not be checked.
pub async fn connect(settings: &Settings, what: &str) -> Option<deadpool_postgres::Object> {
    let unchecked = |why: String| {
        eprintln!("note: {what} not checked against the database ({why}); the workers will check");
        None
    };
    let pool = match swarm_runtime::db::pool(&settings.database_url, 1) {
        Ok(pool) => pool,
        Err(e) => return unchecked(format!("{e:#}")),
    };
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, pool.get()).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return unchecked(e.to_string()),
        Err(_) => return unchecked(format!("no answer in {CONNECT_TIMEOUT:?}")),
    };
    match client
        .query_one("SELECT to_regclass('projects') IS NOT NULL", &[])
        .await
    {
        Ok(row) if row.get::<_, bool>(0) => Some(client),
        Ok(_) => unchecked("it is not migrated".into()),
        Err(e) => unchecked(e.to_string()),
    }
}

/// A project's kind and dimension, if it exists.
async fn project(client: &Client, name: &str) -> anyhow::Result<Option<(String, i32)>> {
    Ok(client
        .query_opt(
            "SELECT kind, dimension FROM projects WHERE name = $1",
            &[&name],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// The projects' names, for a hint.
async fn project_names(client: &Client) -> anyhow::Result<String> {
    let names: Vec<String> = client
        .query("SELECT name FROM projects ORDER BY name LIMIT 20", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(if names.is_empty() {
        "there are none yet: publish data first".to_owned()
    } else {
        format!("the projects are {}", names.join(", "))
    })
}

/// Refuses samples of another kind or dimension than `project` holds.
pub async fn publish(
    client: &Client,
    project_name: &str,
    kind: SampleKind,
    dimension: usize,
) -> anyhow::Result<()> {
    let Some((held, held_dimension)) = project(client, project_name).await? else {
        return Ok(());
    };
    let what = |kind: &str, d: i64| match kind {
        "timeseries" => format!("time series of {d} regions"),
        "text" => "text documents".to_owned(),
        _ => format!("feature vectors of {d} features"),
    };
    if held != kind.as_str() || (kind != SampleKind::Text && held_dimension as usize != dimension) {
        bail!(
            "--project {project_name}: the project holds {}, but these files are {}; publish them \
             into a project of their own (another --project)",
            what(&held, held_dimension.into()),
            what(kind.as_str(), dimension as i64)
        );
    }
    Ok(())
}

/// One featurised sample, as the checks need it.
struct Row {
    site: String,
    label: String,
    features: usize,
}

/// Checks a training job against the project's data.
pub async fn train(
    client: &Client,
    project_name: &str,
    sites: &[String],
    config: &RunConfig,
    text_flag: Option<&str>,
    text: Option<TextKind>,
) -> anyhow::Result<()> {
    let Some((kind, _)) = project(client, project_name).await? else {
        bail!(
            "--project {project_name}: no such project; {}",
            project_names(client).await?
        );
    };
    if let Some(flag) = text_flag {
        if kind != SampleKind::Text.as_str() {
            bail!(
                "{flag}: project {project_name:?} is a {kind} project; --text, --min-df and \
                 --max-features apply to text projects only"
            );
        }
    }
    let all_sites: BTreeSet<String> = client
        .query(
            "SELECT DISTINCT site FROM samples WHERE project = $1",
            &[&project_name],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = all_sites.iter().cloned().collect::<Vec<_>>().join(", ");
    for site in sites {
        if !all_sites.contains(site) {
            bail!("--sites {site}: project {project_name:?} has no site {site:?}; its sites are {known}");
        }
    }
    let mut rows: Vec<((String, String), Row)> = client
        .query(
            r#"SELECT DISTINCT ON (s.id) s.site, s.subject, s.label, length(f."values") / 4
               FROM samples s JOIN features f ON f.sample_id = s.id
               WHERE s.project = $1 AND (cardinality($2::text[]) = 0 OR s.site = ANY($2))
               ORDER BY s.id, f.version DESC, f.extractor"#,
            &[&project_name, &sites],
        )
        .await?
        .iter()
        .map(|r| {
            let features: i32 = r.get(3);
            (
                (r.get(0), r.get(1)),
                Row {
                    site: r.get(0),
                    label: r.get(2),
                    features: features.max(0) as usize,
                },
            )
        })
        .collect();
    // The worker's order: by site, then subject.
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    if rows.is_empty() {
        bail!(
            "--project {project_name}: no featurised samples{} yet; is the features worker \
             running? (`swarm status JOB` tells what became of a publish)",
            if sites.is_empty() {
                String::new()
            } else {
                format!(" at the sites {}", sites.join(", "))
            }
        );
    }
    let selected: BTreeSet<&str> = rows.iter().map(|r| r.site.as_str()).collect();
    for site in &config.scheme.test_sites {
        if !selected.contains(site.as_str()) {
            bail!(
                "--test-sites {site}: no featurised samples of site {site:?} in project \
                 {project_name:?}{}; its sites are {}",
                if sites.is_empty() {
                    ""
                } else {
                    " at the --sites given"
                },
                selected.iter().copied().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    labels
        .iter()
        .for_each(|l| *counts.entry(l).or_default() += 1);
    let model = config.spec.name();
    let regression = config.spec.task() == Task::Regression;
    if regression {
        if let Some(label) = labels
            .iter()
            .find(|l| !l.parse::<f64>().is_ok_and(f64::is_finite))
        {
            bail!(
                "--model {model} is a regression model, but the label {label:?} is not a number; \
                 for classes use a classifier (e.g. --model logistic)"
            );
        }
    } else if counts.len() < 2 {
        bail!(
            "--model {model}: every sample of project {project_name:?}{} has the label {:?}; a \
             classifier needs at least two classes",
            if sites.is_empty() {
                ""
            } else {
                " at the --sites given"
            },
            labels[0]
        );
    }
    let sites_of: Vec<String> = rows.iter().map(|r| r.site.clone()).collect();
    let scheme = &config.scheme;
    let splits = match scheme.kind {
        CvScheme::StratifiedKFold | CvScheme::RepeatedKFold if !regression => {
            swarm_train::folds::stratified_k_fold(&labels, scheme.folds, scheme.seed)
                .map(|folds| folds.into_iter().map(|f| f.train.len()).collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        }
        _ => swarm_train::validation::make_splits(scheme, None, &sites_of)
            .map(|splits| splits.into_iter().map(|s| s.train.len()).collect()),
    };
    let flag = match scheme.kind {
        CvScheme::StratifiedKFold | CvScheme::RepeatedKFold => format!("--cv {}", scheme.folds),
        CvScheme::HeldOutSites => format!("--test-sites {}", scheme.test_sites.join(",")),
        other => format!("--scheme {}", other.as_str().replace('_', "-")),
    };
    let train_sizes = splits.map_err(|why| anyhow::anyhow!("{flag}: {why}"))?;
    let features = rows[0].features;
    // A text run on TF-IDF has its folds' vocabularies as features, which only the worker
    // counts (and checks `--pca` against); the stored hashed features say nothing of them.
    let tfidf = kind == SampleKind::Text.as_str() && text != Some(TextKind::Hashed);
    if let Some(pca) = config.pipeline.pca_components {
        if pca > features && !tfidf {
            bail!(
                "--pca {pca}: project {project_name:?} has {features} features; ask for at most \
                 {features} components"
            );
        }
        let smallest = train_sizes.iter().copied().min().unwrap_or(0);
        if pca > smallest {
            bail!(
                "--pca {pca}: the smallest training fold has {smallest} samples ({flag}); PCA \
                 finds at most as many components as samples"
            );
        }
    }
    Ok(())
}
