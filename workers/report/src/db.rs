//! Reading a run (with its folds and predictions) or a statistics job, and storing a report: the
//! worker's only SQL.
//!
//! Every statement is a constant with `$n` parameters. [`load_subject`], [`load_run`],
//! [`load_stats`] and [`store_report`] take any [`GenericClient`], so the handler passes its
//! transaction and the CLI a plain client.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::model::{
    Covariate, CvScheme, FoldRow, MetricSummary, Prediction, RunData, StatsData, StoppedRun,
    Subject,
};
use crate::render::Rendered;

/// Reads one run, with its project's region names (`feature_names`, stored by `swarm publish`
/// and `swarm regions`; `projects.region_labels` for projects named before that table).
pub const SELECT_RUN: &str = "SELECT r.id, r.project, r.model, r.params, r.cv, r.sites, \
     r.n_samples, r.n_features, r.classes, r.data_summary, r.metrics, r.results, r.duration_ms, \
     r.job_id, r.trace_id, r.created_at, \
     coalesce((SELECT n.names FROM feature_names n WHERE n.project = r.project \
               AND n.kind = 'regions'), p.region_labels) AS region_labels, \
     (SELECT n.names FROM feature_names n WHERE n.project = r.project \
      AND n.kind = 'features') AS feature_names \
     FROM runs r LEFT JOIN projects p ON p.name = r.project WHERE r.id = $1";

/// Reads a run's folds, in fold order.
pub const SELECT_FOLDS: &str = "SELECT fold, n_train, n_test, accuracy, balanced_accuracy, \
     confusion, metrics FROM folds WHERE run_id = $1 ORDER BY fold";

/// Reads a run's out-of-fold predictions.
pub const SELECT_PREDICTIONS: &str = "SELECT repeat, site, subject, fold, y_true, y_pred, score \
     FROM predictions WHERE run_id = $1 ORDER BY repeat, site, subject, sample_id";

/// Summarises the covariates of a run's subjects (those with an out-of-fold prediction in the
/// first repeat): per name, how many subjects have it, and over the numeric values their count,
/// mean, sd, min and max.
pub const SELECT_COVARIATES: &str = "SELECT c.key AS name, count(*) AS n, \
     count(x.v) AS numeric, avg(x.v) AS mean, stddev_samp(x.v) AS sd, min(x.v) AS min, \
     max(x.v) AS max \
     FROM predictions p JOIN samples s ON s.id = p.sample_id \
     CROSS JOIN LATERAL jsonb_each(s.covariates) c \
     CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(c.value) = 'number' \
         THEN c.value::text::float8 END AS v) x \
     WHERE p.run_id = $1 AND p.repeat = 0 GROUP BY c.key ORDER BY c.key";

/// Reads one statistics job, with its project's region names (as [`SELECT_RUN`]).
pub const SELECT_STATS: &str = "SELECT s.id, s.project, s.test, s.covariate, s.sites, \
     s.n_samples, s.n_features, s.results, s.duration_ms, s.job_id, s.trace_id, s.created_at, \
     coalesce((SELECT n.names FROM feature_names n WHERE n.project = s.project \
               AND n.kind = 'regions'), p.region_labels) AS region_labels \
     FROM stats_jobs s LEFT JOIN projects p ON p.name = s.project WHERE s.id = $1";

/// Reads a run that stopped without results: failed or cancelled.
pub const SELECT_STOPPED: &str = "SELECT run_id, project, state, reason, request, units_done, \
     units_total, created_at, finished_at, job_id, trace_id FROM run_jobs \
     WHERE run_id = $1 AND state IN ('failed', 'cancelled')";

/// Stores a report, replacing an earlier one (re-rendering is idempotent).
pub const UPSERT_REPORT: &str = "INSERT INTO reports \
     (run_id, kind, summary, markdown, html, json, job_id, message_id, trace_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (run_id) DO UPDATE SET kind = EXCLUDED.kind, summary = EXCLUDED.summary, \
     markdown = EXCLUDED.markdown, html = EXCLUDED.html, json = EXCLUDED.json, \
     job_id = EXCLUDED.job_id, message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, \
     created_at = now()";

/// Why a run could not be loaded, and so what happens next.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The database failed: worth retrying.
    #[error("cannot read the run from the database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// The stored run or job does not have the shape this worker reads: retrying cannot help.
    #[error("run {run_id} is malformed: {what}")]
    Malformed {
        /// The run.
        run_id: Uuid,
        /// What is wrong, naming the column.
        what: String,
    },
}

impl LoadError {
    /// Whether retrying cannot help (the data itself is wrong).
    pub fn is_permanent(&self) -> bool {
        matches!(self, LoadError::Malformed { .. })
    }
}

/// Loads what `id` names: a run (looked for first) or a statistics job; `Ok(None)` when it is
/// neither.
pub async fn load_subject<C>(client: &C, id: Uuid) -> Result<Option<Subject>, LoadError>
where
    C: GenericClient + Sync,
{
    if let Some(run) = load_run(client, id).await? {
        return Ok(Some(Subject::Run(Box::new(run))));
    }
    Ok(load_stats(client, id)
        .await?
        .map(|stats| Subject::Stats(Box::new(stats))))
}

/// Loads a run that failed or was cancelled, which has no results to report; `Ok(None)` when
/// there is no such run. The CLI renders its report on demand ([`crate::render::stopped`]); the
/// report worker never reads `run_jobs`.
#[tracing::instrument(skip_all, fields(run_id = %id), err)]
pub async fn load_stopped<C>(client: &C, id: Uuid) -> Result<Option<StoppedRun>, LoadError>
where
    C: GenericClient + Sync,
{
    let Some(row) = client.query_opt(SELECT_STOPPED, &[&id]).await? else {
        return Ok(None);
    };
    let bad = |what: String| LoadError::Malformed { run_id: id, what };
    let body: Vec<u8> = row.try_get("request")?;
    let request = broker_schemas::decode::<broker_schemas::TrainRequest>(&body)
        .map_err(|e| bad(format!("run_jobs.request: {e}")))?;
    Ok(Some(StoppedRun {
        run_id: row.try_get("run_id")?,
        project: row.try_get("project")?,
        state: row.try_get("state")?,
        reason: row.try_get("reason")?,
        request,
        units_done: non_negative(row.try_get("units_done")?, "run_jobs.units_done").map_err(bad)?,
        units_total: non_negative(row.try_get("units_total")?, "run_jobs.units_total")
            .map_err(bad)?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        job_id: row.try_get("job_id")?,
        trace_id: row.try_get("trace_id")?,
    }))
}

/// Loads a statistics job; `Ok(None)` when there is no such job.
#[tracing::instrument(skip_all, fields(job = %id), err)]
pub async fn load_stats<C>(client: &C, id: Uuid) -> Result<Option<StatsData>, LoadError>
where
    C: GenericClient + Sync,
{
    let Some(row) = client.query_opt(SELECT_STATS, &[&id]).await? else {
        return Ok(None);
    };
    let bad = |what: String| LoadError::Malformed { run_id: id, what };
    let results = serde_json::from_value(row.try_get("results")?)
        .map_err(|e| bad(format!("stats_jobs.results: {e}")))?;
    Ok(Some(StatsData {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        test: row.try_get("test")?,
        covariate: row.try_get("covariate")?,
        sites: row.try_get("sites")?,
        n_samples: non_negative(row.try_get("n_samples")?, "stats_jobs.n_samples").map_err(bad)?,
        n_features: non_negative(row.try_get("n_features")?, "stats_jobs.n_features")
            .map_err(bad)?,
        results,
        duration_ms: row.try_get("duration_ms")?,
        job_id: row.try_get("job_id")?,
        trace_id: row.try_get("trace_id")?,
        created_at: row.try_get("created_at")?,
        region_labels: row
            .try_get::<_, Option<Vec<String>>>("region_labels")?
            .unwrap_or_default(),
    }))
}

/// Loads a run, its folds and its predictions; `Ok(None)` when there is no such run.
///
/// Parses the jsonb columns (`params`, `cv`, `data_summary`, `metrics`, `results`,
/// `folds.confusion`, `folds.metrics`) and checks that every confusion matrix is
/// `classes.len()` square. A regression run's folds have no confusion matrix (`null`, read as
/// empty) and no accuracy (NULL, read as NaN).
#[tracing::instrument(skip_all, fields(run_id = %run_id), err)]
pub async fn load_run<C>(client: &C, run_id: Uuid) -> Result<Option<RunData>, LoadError>
where
    C: GenericClient + Sync,
{
    let Some(row) = client.query_opt(SELECT_RUN, &[&run_id]).await? else {
        return Ok(None);
    };
    let bad = |what: String| LoadError::Malformed { run_id, what };

    let params = parse_params(row.try_get("params")?).map_err(bad)?;
    let cv: CvScheme =
        serde_json::from_value(row.try_get("cv")?).map_err(|e| bad(format!("runs.cv: {e}")))?;
    let data_summary: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_value(row.try_get("data_summary")?)
            .map_err(|e| bad(format!("runs.data_summary: {e}")))?;
    let metrics = parse_metrics(row.try_get("metrics")?).map_err(bad)?;
    let classes: Vec<String> = row.try_get("classes")?;
    let n_samples = non_negative(row.try_get("n_samples")?, "runs.n_samples").map_err(bad)?;
    let n_features = non_negative(row.try_get("n_features")?, "runs.n_features").map_err(bad)?;

    let mut folds = Vec::new();
    for fold_row in client.query(SELECT_FOLDS, &[&run_id]).await? {
        let fold = non_negative(fold_row.try_get("fold")?, "folds.fold").map_err(bad)?;
        // A regression fold has no confusion matrix (null) and no accuracy (NULL).
        let confusion: Option<Vec<Vec<u64>>> =
            serde_json::from_value(fold_row.try_get("confusion")?)
                .map_err(|e| bad(format!("folds.confusion of fold {fold}: {e}")))?;
        let confusion = confusion.unwrap_or_default();
        let k = classes.len();
        if !confusion.is_empty() && (confusion.len() != k || confusion.iter().any(|r| r.len() != k))
        {
            return Err(bad(format!(
                "folds.confusion of fold {fold} is not {k}×{k} (one row and column per class)"
            )));
        }
        let accuracy: Option<f64> = fold_row.try_get("accuracy")?;
        let balanced_accuracy: Option<f64> = fold_row.try_get("balanced_accuracy")?;
        let mut fold_metrics = parse_fold_metrics(fold_row.try_get("metrics")?)
            .map_err(|e| bad(format!("folds.metrics of fold {fold}: {e}")))?;
        // Rows from before the metrics map: its two columns.
        for (name, value) in [
            ("accuracy", accuracy),
            ("balanced_accuracy", balanced_accuracy),
        ] {
            if let Some(value) = value {
                fold_metrics.entry(name.to_owned()).or_insert(value);
            }
        }
        let accuracy = accuracy.unwrap_or(f64::NAN);
        let balanced_accuracy = balanced_accuracy.unwrap_or(f64::NAN);
        folds.push(FoldRow {
            fold,
            n_train: non_negative(fold_row.try_get("n_train")?, "folds.n_train").map_err(bad)?,
            n_test: non_negative(fold_row.try_get("n_test")?, "folds.n_test").map_err(bad)?,
            accuracy,
            balanced_accuracy,
            metrics: fold_metrics,
            confusion,
        });
    }

    let results = serde_json::from_value(row.try_get("results")?)
        .map_err(|e| bad(format!("runs.results: {e}")))?;
    let mut predictions = Vec::new();
    for p in client.query(SELECT_PREDICTIONS, &[&run_id]).await? {
        predictions.push(Prediction {
            repeat: non_negative(p.try_get("repeat")?, "predictions.repeat").map_err(bad)?,
            site: p.try_get("site")?,
            subject: p.try_get("subject")?,
            fold: non_negative(p.try_get("fold")?, "predictions.fold").map_err(bad)?,
            y_true: p.try_get("y_true")?,
            y_pred: p.try_get("y_pred")?,
            score: p.try_get("score")?,
        });
    }

    let mut covariates = Vec::new();
    for c in client.query(SELECT_COVARIATES, &[&run_id]).await? {
        let count = |column: &str| -> Result<u64, LoadError> {
            let n: i64 = c.try_get(column)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let number = |column: &str| -> Result<f64, LoadError> {
            Ok(c.try_get::<_, Option<f64>>(column)?.unwrap_or(f64::NAN))
        };
        covariates.push(Covariate {
            name: c.try_get("name")?,
            n: count("n")?,
            numeric: count("numeric")?,
            mean: number("mean")?,
            sd: number("sd")?,
            min: number("min")?,
            max: number("max")?,
        });
    }

    Ok(Some(RunData {
        run_id: row.try_get("id")?,
        project: row.try_get("project")?,
        model: row.try_get("model")?,
        params,
        cv,
        sites: row.try_get("sites")?,
        n_samples,
        n_features,
        classes,
        data_summary,
        metrics,
        folds,
        duration_ms: row.try_get("duration_ms")?,
        job_id: row.try_get("job_id")?,
        trace_id: row.try_get("trace_id")?,
        created_at: row.try_get("created_at")?,
        results,
        predictions,
        covariates,
        feature_names: row
            .try_get::<_, Option<Vec<String>>>("feature_names")?
            .unwrap_or_default(),
        region_labels: row
            .try_get::<_, Option<Vec<String>>>("region_labels")?
            .unwrap_or_default(),
    }))
}

/// The lineage of a stored report: the delivery that rendered it.
#[derive(Debug, Clone, Copy)]
pub struct ReportLineage<'a> {
    /// AMQP `correlation_id` of the `report.v1` message.
    pub job_id: Option<&'a str>,
    /// AMQP `message_id` of the `report.v1` message.
    pub message_id: &'a str,
    /// The trace the report was rendered in.
    pub trace_id: Option<&'a str>,
}

/// Inserts or replaces the `reports` row of a run (`kind` `run`) or statistics job (`stats`).
#[tracing::instrument(skip_all, fields(run_id = %run_id, kind), err)]
pub async fn store_report<C>(
    client: &C,
    run_id: Uuid,
    kind: &str,
    report: &Rendered,
    lineage: ReportLineage<'_>,
) -> Result<(), tokio_postgres::Error>
where
    C: GenericClient + Sync,
{
    client
        .execute(
            UPSERT_REPORT,
            &[
                &run_id,
                &kind,
                &report.summary,
                &report.markdown,
                &report.html,
                &report.json,
                &lineage.job_id,
                &lineage.message_id,
                &lineage.trace_id,
            ],
        )
        .await?;
    Ok(())
}

/// `runs.params`: a JSON object; non-string values are kept as their JSON text.
fn parse_params(value: Value) -> Result<BTreeMap<String, String>, String> {
    match value {
        Value::Object(map) => Ok(map
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect()),
        other => Err(format!("runs.params is not an object: {other}")),
    }
}

/// `runs.metrics`: `{"<name>": {"mean": x, "sd": y}}`. A missing or `null` number (JSON has no
/// NaN) reads as NaN and renders as "n/a".
fn parse_metrics(value: Value) -> Result<BTreeMap<String, MetricSummary>, String> {
    let Value::Object(map) = value else {
        return Err(format!("runs.metrics is not an object: {value}"));
    };
    map.into_iter()
        .map(|(name, v)| {
            if !v.is_object() {
                return Err(format!("runs.metrics.{name} is not an object: {v}"));
            }
            let number = |key: &str| v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
            let summary = MetricSummary {
                mean: number("mean"),
                sd: number("sd"),
            };
            Ok((name, summary))
        })
        .collect()
}

/// `folds.metrics`: `{"<name>": number}`; `null` reads as NaN, other non-numbers are skipped
/// (e.g. a nested confusion matrix).
fn parse_fold_metrics(value: Value) -> Result<BTreeMap<String, f64>, String> {
    let Value::Object(map) = value else {
        return Err(format!("not an object: {value}"));
    };
    Ok(map
        .into_iter()
        .filter_map(|(name, v)| match v {
            Value::Null => Some((name, f64::NAN)),
            Value::Number(n) => Some((name, n.as_f64().unwrap_or(f64::NAN))),
            _ => None,
        })
        .collect())
}

fn non_negative(n: i32, column: &str) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{column} is negative: {n}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn params_keep_strings_and_stringify_the_rest() {
        let params = parse_params(json!({"C": "1.0", "k": 5, "flag": true})).unwrap();
        assert_eq!(params["C"], "1.0");
        assert_eq!(params["k"], "5");
        assert_eq!(params["flag"], "true");
        assert!(parse_params(json!(["C"])).is_err());
    }

    #[test]
    fn metrics_tolerate_nulls_but_not_garbage() {
        let metrics = parse_metrics(json!({
            "accuracy": {"mean": 0.9, "sd": 0.02},
            "roc_auc": {"mean": null, "sd": null},
        }))
        .unwrap();
        assert_eq!(metrics["accuracy"].mean, 0.9);
        assert_eq!(metrics["accuracy"].sd, 0.02);
        assert!(metrics["roc_auc"].mean.is_nan());
        assert!(parse_metrics(json!({"accuracy": 0.9})).is_err());
        assert!(parse_metrics(json!(null)).is_err());
    }

    #[test]
    fn cv_schemes_are_described() {
        for (stored, want) in [
            (
                json!({"folds": 5, "seed": 0}),
                "stratified 5-fold cross-validation (shuffle seed 0)",
            ),
            (
                json!({"scheme": "stratified_k_fold", "folds": 10, "seed": 7}),
                "stratified 10-fold cross-validation (shuffle seed 7)",
            ),
            (
                json!({"scheme": "leave_site_out"}),
                "leave-one-site-out cross-validation",
            ),
            (
                json!({"scheme": "group_k_fold", "folds": 3, "groups": "site"}),
                "group k fold cross-validation, 3 folds (groups: site)",
            ),
            (json!({}), "stratified k-fold cross-validation"),
            (
                json!({"k": 5, "seed": 0, "folds": 5, "scheme": "stratified_k_fold", "repeats": 1, "test_sites": []}),
                "stratified 5-fold cross-validation (shuffle seed 0)",
            ),
            (
                json!({"k": 10, "seed": 3, "scheme": "repeated_k_fold", "repeats": 5}),
                "stratified 10-fold cross-validation, repeated 5 times (shuffle seed 3)",
            ),
            (
                json!({"scheme": "held_out_sites", "test_sites": ["lab-c"]}),
                "train on some sites, test on held-out sites (test sites: lab-c)",
            ),
            (
                json!({"scheme": "leave_one_out"}),
                "leave-one-out cross-validation",
            ),
            // Nothing is shuffled: the stored seed is not shown.
            (
                json!({"scheme": "leave_one_out", "folds": 30, "seed": 0}),
                "leave-one-out cross-validation",
            ),
            (
                json!({"scheme": "leave_one_site_out", "seed": 0}),
                "leave-one-site-out cross-validation",
            ),
        ] {
            let cv: CvScheme = serde_json::from_value(stored.clone()).unwrap();
            assert_eq!(cv.describe(false), want, "{stored}");
            // What is read is written back unchanged (unknown keys included).
            assert_eq!(serde_json::to_value(&cv).unwrap(), stored);
        }
        // A regression's k-fold is shuffled, not stratified.
        let cv: CvScheme = serde_json::from_value(json!({"folds": 5, "seed": 0})).unwrap();
        assert_eq!(
            cv.describe(true),
            "shuffled 5-fold cross-validation (shuffle seed 0)"
        );
    }

    #[test]
    fn fold_metrics_keep_numbers() {
        let m = parse_fold_metrics(json!({"accuracy": 0.5, "roc_auc": null, "cm": [[1]]})).unwrap();
        assert_eq!(m["accuracy"], 0.5);
        assert!(m["roc_auc"].is_nan());
        assert!(!m.contains_key("cm"));
        assert!(parse_fold_metrics(json!([])).is_err());
    }

    #[test]
    fn negative_counts_are_malformed() {
        assert_eq!(non_negative(3, "x"), Ok(3));
        assert!(non_negative(-1, "x").is_err());
    }

    #[test]
    fn sql_is_parameterised() {
        for sql in [
            SELECT_RUN,
            SELECT_FOLDS,
            SELECT_PREDICTIONS,
            SELECT_COVARIATES,
            SELECT_STATS,
            UPSERT_REPORT,
        ] {
            assert!(sql.contains("$1"));
            assert!(!sql.contains('{'), "formatted SQL: {sql}");
        }
        assert!(UPSERT_REPORT.contains("$9"));
        assert!(UPSERT_REPORT.contains("ON CONFLICT (run_id) DO UPDATE"));
    }
}
