//! Storing a finished run: `runs`, `folds`, `predictions`, from one [`RunRecord`]. All SQL has
//! bind parameters only.

use std::collections::BTreeMap;

use broker_schemas::results::RunResults;
use broker_schemas::TrainRequest;
use serde_json::json;
use swarm_runtime::HandleError;
use tokio_postgres::Transaction;

use crate::cv::{self, Data, RunConfig, RunOutcome, TargetData};
use crate::load::Dataset;

/// Whether a run id is taken.
pub const RUN_EXISTS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)";

/// Inserts the run; affects no row when the id is taken.
pub const INSERT_RUN_SQL: &str = "INSERT INTO runs (id, project, model, params, cv, sites, \
n_samples, n_features, classes, data_summary, metrics, model_format, model_blob, duration_ms, \
job_id, message_id, trace_id, results) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
ON CONFLICT (id) DO NOTHING";

/// Inserts one fold's scores.
pub const INSERT_FOLD_SQL: &str = "INSERT INTO folds (run_id, fold, n_train, n_test, accuracy, \
balanced_accuracy, confusion, metrics, repeat, name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Inserts all out-of-fold predictions of a run at once.
pub const INSERT_PREDICTIONS_SQL: &str = "INSERT INTO predictions (run_id, repeat, sample_id, site, \
subject, fold, y_true, y_pred, score) SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::text[], \
$5::text[], $6::int[], $7::text[], $8::text[], $9::float8[])";

/// Whether a statistics job id is taken.
pub const STATS_EXISTS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM stats_jobs WHERE id = $1)";

/// Inserts a statistics job.
pub const INSERT_STATS_SQL: &str = "INSERT INTO stats_jobs (id, project, test, covariate, sites, \
n_samples, n_features, results, duration_ms, job_id, message_id, trace_id) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING";

/// Where a run came from: the `train.v1` delivery that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// AMQP `correlation_id`.
    pub job_id: Option<String>,
    /// AMQP `message_id`.
    pub message_id: String,
    /// The trace it was planned in.
    pub trace_id: Option<String>,
}

/// Everything a finished run stores.
#[derive(Debug, Clone, Copy)]
pub struct RunRecord<'a> {
    /// Where the run came from.
    pub lineage: &'a Lineage,
    /// The request.
    pub request: &'a TrainRequest,
    /// Its configuration.
    pub config: &'a RunConfig,
    /// The rows as loaded (ids, labels, sites, subjects).
    pub dataset: &'a Dataset,
    /// The rows as analysed.
    pub data: &'a Data,
    /// The analysis.
    pub outcome: &'a RunOutcome,
    /// The final model, serialised.
    pub model_blob: &'a [u8],
    /// From the request's arrival to the run's last unit.
    pub duration_ms: i64,
}

/// Stores a finished run: its `runs` row, one `folds` row per fold and its out-of-fold
/// `predictions`. A run id already taken is a permanent error.
pub async fn store_run(tx: &Transaction<'_>, record: &RunRecord<'_>) -> Result<(), HandleError> {
    let RunRecord {
        lineage: meta,
        request,
        config,
        dataset: data,
        data: input,
        outcome,
        model_blob: blob,
        duration_ms,
    } = *record;
    let message = &request.train;
    let run_id = message.run_id;
    let task = outcome.spec.task();
    let classes: Vec<String> = match &input.target {
        TargetData::Classes { classes, .. } => classes.clone(),
        TargetData::Values(_) => Vec::new(),
    };
    let cv_json = json!({
        "scheme": config.scheme.kind.as_str(),
        "folds": outcome.evaluation.folds.iter().filter(|f| f.repeat == 0).count(),
        "k": message.cv.folds,
        "seed": message.cv.seed,
        "repeats": outcome.evaluation.folds.iter().map(|f| f.repeat + 1).max().unwrap_or(1),
        "test_sites": config.scheme.test_sites,
    });
    let metrics: BTreeMap<String, _> = outcome
        .evaluation
        .summary
        .iter()
        .filter(|(_, v)| v.mean.is_finite() && v.sd.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut weights = outcome.feature_weights.clone();
    if let Some(w) = weights.as_mut() {
        w.values.iter_mut().for_each(|v| {
            if !v.is_finite() {
                *v = 0.0;
            }
        });
    }
    let results = RunResults {
        task: task.as_str().to_owned(),
        positive_class: (classes.len() == 2).then(|| classes[1].clone()),
        pipeline: outcome.pipeline.clone(),
        metrics: metrics.clone(),
        roc: outcome.roc.clone(),
        per_site: outcome
            .per_site
            .iter()
            .map(|s| broker_schemas::results::SiteScores {
                metrics: finite_map(&s.metrics),
                ..s.clone()
            })
            .collect(),
        grid: outcome.grid.clone().map(|mut g| {
            for c in &mut g.candidates {
                c.fold_scores.retain(|v| v.is_finite());
                if !c.score.mean.is_finite() {
                    c.score.mean = 0.0;
                }
                if !c.score.sd.is_finite() {
                    c.score.sd = 0.0;
                }
            }
            g
        }),
        permutation: outcome.permutation.clone().map(|mut p| {
            p.scores.retain(|v| v.is_finite());
            p
        }),
        feature_weights: weights,
        held_out: outcome.held_out.clone().map(|mut h| {
            h.metrics = finite_map(&h.metrics);
            h
        }),
    };
    let inserted = tx
        .execute(
            INSERT_RUN_SQL,
            &[
                &run_id,
                &message.project,
                &outcome.spec.name(),
                &outcome.spec.params_json(),
                &cv_json,
                &message.sites,
                &to_i32("n_samples", input.sites.len())?,
                // A text run's features are the final model's terms, not every counted term.
                &to_i32(
                    "n_features",
                    outcome
                        .model
                        .pipeline()
                        .feature_names()
                        .map_or(input.x.cols(), <[String]>::len),
                )?,
                &classes,
                &json_value(&data.summary())?,
                &json_value(&metrics)?,
                &outcome.model.format(),
                &blob,
                &duration_ms,
                &meta.job_id,
                &meta.message_id,
                &meta.trace_id,
                &json_value(&results)?,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(HandleError::permanent(format!(
            "run {run_id} already exists"
        )));
    }
    for fold in &outcome.evaluation.folds {
        let confusion = json_value(&fold.confusion)?;
        let fold_metrics = json_value(&finite_map(&fold.metrics))?;
        tx.execute(
            INSERT_FOLD_SQL,
            &[
                &run_id,
                &to_i32("fold", fold.fold)?,
                &to_i32("n_train", fold.n_train)?,
                &to_i32("n_test", fold.n_test)?,
                &fold.metrics.get("accuracy").copied(),
                &fold.metrics.get("balanced_accuracy").copied(),
                &confusion,
                &fold_metrics,
                &to_i32("repeat", fold.repeat)?,
                &fold.name,
            ],
        )
        .await?;
    }
    let predictions = &outcome.evaluation.predictions;
    let label = |row: usize, class: Option<usize>, value: Option<f64>| -> String {
        match (&input.target, class, value) {
            (TargetData::Classes { classes, .. }, Some(c), _) => classes[c].clone(),
            (_, _, Some(v)) => v.to_string(),
            _ => data.labels[row].clone(),
        }
    };
    let repeats: Vec<i32> = predictions.iter().map(|p| p.repeat as i32).collect();
    let ids: Vec<i64> = predictions.iter().map(|p| data.ids[p.row]).collect();
    let sites: Vec<&str> = predictions
        .iter()
        .map(|p| data.sites[p.row].as_str())
        .collect();
    let subjects: Vec<&str> = predictions
        .iter()
        .map(|p| data.subjects[p.row].as_str())
        .collect();
    let folds: Vec<i32> = predictions.iter().map(|p| p.fold as i32).collect();
    let truth: Vec<&str> = predictions
        .iter()
        .map(|p| data.labels[p.row].as_str())
        .collect();
    let predicted: Vec<String> = predictions
        .iter()
        .map(|p| label(p.row, p.class, p.value))
        .collect();
    let scores: Vec<Option<f64>> = predictions
        .iter()
        .map(|p| p.score.filter(|s| s.is_finite()))
        .collect();
    tx.execute(
        INSERT_PREDICTIONS_SQL,
        &[
            &run_id, &repeats, &ids, &sites, &subjects, &folds, &truth, &predicted, &scores,
        ],
    )
    .await?;
    tracing::info!(
        task = task.as_str(),
        score = outcome.evaluation.score(cv::selection_metric(task)),
        folds = outcome.evaluation.folds.len(),
        "run stored"
    );
    Ok(())
}

pub fn to_i32(what: &str, n: usize) -> Result<i32, HandleError> {
    i32::try_from(n)
        .map_err(|_| HandleError::permanent(format!("{what} {n} exceeds the int range")))
}

pub fn json_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, HandleError> {
    serde_json::to_value(value).map_err(|e| HandleError::Transient(anyhow::Error::new(e)))
}

/// Finite numbers only: JSON has no NaN.
pub fn finite_map(map: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    map.iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}
