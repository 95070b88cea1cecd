//! [`TrainHandler`]: consumes `train.v1` and `stats.v1` ([`TrainJob`]).
//!
//! - `train.v1` → `runs` (metrics, `results` = [`RunResults`], the final model), `folds` (one
//!   row per fold with its metric map), `predictions` (out-of-fold, per subject), then
//!   `report.v1 { run_id }`.
//! - `stats.v1` → a `stats_jobs` row ([`StatsResults`]), then `report.v1 { run_id: job_id }`.
//!
//! All SQL is in the constants below, with bind parameters only. Failures caused by the request
//! or the data are [`HandleError::Permanent`] with a reason naming the project; database errors
//! are transient and retried. The CPU-bound work runs on a blocking thread.

use std::collections::BTreeMap;
use std::time::Instant;

use broker_schemas::results::{FeatureStat, RunResults, StatsResults};
use broker_schemas::{CvScheme, Message, ReportV1, StatsTest, StatsV1, TrainRequest, TrainV1};
use serde_json::json;
use swarm_runtime::floats::FloatVec;
use swarm_runtime::{HandleError, Handler, Incoming, MessageMeta, Work};
use tokio_postgres::Transaction;
use tracing::Instrument;

use crate::cv::{self, Data, RunConfig, RunOutcome, TargetData};
use crate::matrix::Matrix;
use crate::model::{ModelSpec, Task};
use crate::pipeline::PipelineConfig;
use crate::stats;
use crate::validation::Scheme;

/// The fewest folds a job may ask for.
pub const MIN_FOLDS: u32 = 2;
/// The most folds a job may ask for.
pub const MAX_FOLDS: u32 = 100;
/// The most label permutations a job may ask for.
pub const MAX_PERMUTATIONS: u32 = 10_000;
/// The most grid candidates a job may ask for.
pub const MAX_GRID: usize = 400;
/// The most repeats of a repeated k-fold.
pub const MAX_REPEATS: u32 = 100;

/// Loads one feature vector per sample of a project (all sites when `$2` is empty). A sample with
/// several `features` rows uses the highest version (ties: the first extractor by name); a sample
/// without any has a NULL `values` and is left out (and counted in a warning).
pub const LOAD_SQL: &str = r#"SELECT DISTINCT ON (s.id) s.id, s.site, s.subject, s.label, f."values", s.covariates
FROM samples s
LEFT JOIN features f ON f.sample_id = s.id
WHERE s.project = $1 AND (cardinality($2::text[]) = 0 OR s.site = ANY($2))
ORDER BY s.id, f.version DESC NULLS LAST, f.extractor"#;

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

/// The worker's two job kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainJob {
    /// `train.v1`.
    Train(Box<TrainRequest>),
    /// `stats.v1`.
    Stats(StatsV1),
}

impl Incoming for TrainJob {
    const TYPES: &'static [&'static str] = &[TrainV1::TYPE, StatsV1::TYPE];

    fn decode(message_type: &str, body: &[u8]) -> Result<Self, String> {
        match message_type {
            t if t == TrainV1::TYPE => broker_schemas::decode::<TrainRequest>(body)
                .map(|m| TrainJob::Train(Box::new(m)))
                .map_err(|e| e.to_string()),
            t if t == StatsV1::TYPE => broker_schemas::decode::<StatsV1>(body)
                .map(TrainJob::Stats)
                .map_err(|e| e.to_string()),
            other => Err(format!(
                "the train worker does not handle messages of type {other}"
            )),
        }
    }
}

/// The train worker's handler.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TrainHandler;

impl Handler for TrainHandler {
    type Message = TrainJob;
    const NAME: &'static str = "train";

    fn validate(&self, message: &TrainJob) -> Result<(), String> {
        match message {
            TrainJob::Train(m) => validate_request(m).map(|_| ()),
            TrainJob::Stats(m) => validate_stats(m),
        }
    }

    async fn handle(&self, work: &mut Work<'_>, message: TrainJob) -> Result<(), HandleError> {
        match message {
            TrainJob::Train(m) => train(work, *m).await,
            TrainJob::Stats(m) => run_stats(work, m).await,
        }
    }
}

/// Checks a `train.v1` before any database work and returns the run's configuration (without
/// the data).
pub fn validate_request(request: &TrainRequest) -> Result<RunConfig, String> {
    let (message, options) = (&request.train, &request.options);
    if message.project.trim().is_empty() {
        return Err("train.v1: project must not be empty".into());
    }
    let scheme = options.validation.scheme;
    if matches!(scheme, CvScheme::StratifiedKFold | CvScheme::RepeatedKFold)
        && !(MIN_FOLDS..=MAX_FOLDS).contains(&message.cv.folds)
    {
        return Err(format!(
            "train.v1: cv.folds must be between {MIN_FOLDS} and {MAX_FOLDS}, got {}",
            message.cv.folds
        ));
    }
    if options.validation.repeats > MAX_REPEATS {
        return Err(format!(
            "train.v1: validation.repeats must be at most {MAX_REPEATS}"
        ));
    }
    if scheme == CvScheme::HeldOutSites && options.validation.test_sites.is_empty() {
        return Err("train.v1: the held_out_sites scheme needs validation.test_sites".into());
    }
    if options.permutations > MAX_PERMUTATIONS {
        return Err(format!(
            "train.v1: permutations must be at most {MAX_PERMUTATIONS}"
        ));
    }
    let spec =
        ModelSpec::parse(&message.model, &message.params).map_err(|e| format!("train.v1: {e}"))?;
    let pipeline = PipelineConfig {
        scaler: options.pipeline.scaler,
        select_percentile: options.pipeline.select_percentile,
        pca_components: options.pipeline.pca_components.map(|c| c as usize),
    };
    pipeline.validate().map_err(|e| format!("train.v1: {e}"))?;
    let candidates = cv::grid_candidates(&options.grid);
    if candidates.len() > MAX_GRID {
        return Err(format!(
            "train.v1: the grid has {} candidates, more than {MAX_GRID}",
            candidates.len()
        ));
    }
    if options.nested && options.grid.is_empty() {
        return Err("train.v1: nested validation needs a grid to choose from".into());
    }
    // A permutation test repeats the grid search per permutation.
    let evaluations = u64::from(options.permutations) * candidates.len().max(1) as u64;
    if evaluations > u64::from(MAX_PERMUTATIONS) * 10 {
        return Err(format!(
            "train.v1: {} permutations × {} grid candidates is {evaluations} cross-validations; \
             the limit is {}: use fewer permutations or a smaller grid",
            options.permutations,
            candidates.len(),
            u64::from(MAX_PERMUTATIONS) * 10
        ));
    }
    for (param, values) in &options.grid {
        if values.is_empty() {
            return Err(format!(
                "train.v1: grid parameter \"{param}\" has no values"
            ));
        }
        for value in values {
            let mut probe = spec.clone();
            probe
                .set(param, value)
                .map_err(|e| format!("train.v1: grid: {e}"))?;
        }
    }
    Ok(RunConfig {
        spec,
        pipeline,
        scheme: Scheme {
            kind: scheme,
            folds: message.cv.folds as usize,
            seed: message.cv.seed,
            repeats: options.validation.repeats as usize,
            test_sites: options.validation.test_sites.clone(),
        },
        grid: options.grid.clone(),
        permutations: options.permutations as usize,
        nested: options.nested,
    })
}

/// Checks a `stats.v1` before any database work.
pub fn validate_stats(message: &StatsV1) -> Result<(), String> {
    if message.project.trim().is_empty() {
        return Err("stats.v1: project must not be empty".into());
    }
    if !(message.alpha > 0.0 && message.alpha < 1.0) {
        return Err(format!(
            "stats.v1: alpha must be in (0, 1), got {}",
            message.alpha
        ));
    }
    match message.test {
        StatsTest::Pearson | StatsTest::Spearman
            if message
                .covariate
                .as_deref()
                .is_none_or(|c| c.trim().is_empty()) =>
        {
            Err(format!(
                "stats.v1: the {} test needs a covariate",
                message.test.as_str()
            ))
        }
        StatsTest::WelchT if !(message.groups.is_empty() || message.groups.len() == 2) => {
            Err(format!(
                "stats.v1: welch_t compares exactly 2 groups, got {}",
                message.groups.len()
            ))
        }
        _ => Ok(()),
    }
}

/// The rows a job works on.
#[derive(Debug, Default)]
struct Dataset {
    ids: Vec<i64>,
    x: Vec<Vec<f64>>,
    labels: Vec<String>,
    sites: Vec<String>,
    subjects: Vec<String>,
    covariates: Vec<serde_json::Value>,
    /// Selected samples that have no features (yet).
    without_features: usize,
}

impl Dataset {
    /// Per site, per class, the number of samples: `{"<site>": {"<class>": n}}`.
    fn summary(&self) -> BTreeMap<&str, BTreeMap<&str, u64>> {
        let mut summary: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        for (site, label) in self.sites.iter().zip(&self.labels) {
            *summary
                .entry(site.as_str())
                .or_default()
                .entry(label.as_str())
                .or_default() += 1;
        }
        summary
    }
}

fn permanent_join(context: &str, e: tokio::task::JoinError) -> HandleError {
    if e.is_panic() {
        HandleError::permanent(format!("{context}: the analysis panicked: {e}"))
    } else {
        HandleError::Transient(anyhow::Error::new(e))
    }
}

#[tracing::instrument(
    name = "train",
    skip_all,
    fields(run_id = %request.train.run_id, project = %request.train.project, model = %request.train.model),
    err
)]
async fn train(work: &mut Work<'_>, request: TrainRequest) -> Result<(), HandleError> {
    let started = Instant::now();
    let config = validate_request(&request).map_err(HandleError::Permanent)?;
    let message = &request.train;
    let run_id = message.run_id;
    let context = describe(&message.project, &message.sites);

    let exists: bool = work
        .tx()
        .query_one(RUN_EXISTS_SQL, &[&run_id])
        .await?
        .try_get(0)?;
    if exists {
        return Err(HandleError::permanent(format!(
            "run {run_id} already exists"
        )));
    }
    let data = load(work.tx(), &message.project, &message.sites, &context)
        .instrument(tracing::info_span!("load"))
        .await?;
    if data.x.is_empty() {
        return Err(HandleError::permanent(format!(
            "{context}: no samples with features to train on ({} without features)",
            data.without_features
        )));
    }
    let target = TargetData::from_labels(&data.labels, config.spec.task())
        .map_err(|e| HandleError::permanent(format!("{context}: {e}")))?;
    let input = Data {
        x: Matrix::from_rows(&data.x),
        sites: data.sites.clone(),
        target,
    };
    let span = tracing::info_span!(
        "cross_validate",
        n_samples = data.x.len(),
        scheme = config.scheme.kind.as_str()
    );
    let run_config = config.clone();
    let joined = tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let outcome = cv::run(&run_config, &input)?;
            let blob = outcome.model.to_bytes()?;
            Ok::<_, anyhow::Error>((outcome, blob, input))
        })
    })
    .await;
    let (outcome, blob, input) = match joined {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(HandleError::permanent(format!("{context}: {e:#}"))),
        Err(e) => return Err(permanent_join(&context, e)),
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    store_run(
        work.tx(),
        work.meta(),
        &request,
        &config,
        &data,
        &input,
        &outcome,
        &blob,
        duration_ms,
    )
    .instrument(tracing::info_span!("store"))
    .await?;
    work.emit(&ReportV1 { run_id }).await?;
    Ok(())
}

async fn load(
    tx: &Transaction<'_>,
    project: &str,
    sites: &[String],
    context: &str,
) -> Result<Dataset, HandleError> {
    let mut rows = Vec::new();
    for row in tx.query(LOAD_SQL, &[&project, &sites]).await? {
        let key: (String, String) = (row.try_get(1)?, row.try_get(2)?);
        rows.push((key, row));
    }
    // The analysis sees the rows in an order fixed by the data (site, then subject, compared as
    // bytes), never the database's insertion order: folds, permutations and bootstrap draws are
    // then the same for the same data and seed in any database.
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut data = Dataset::default();
    let mut first: Option<(String, String, usize)> = None;
    for (_, row) in rows {
        let id: i64 = row.try_get(0)?;
        let site: String = row.try_get(1)?;
        let subject: String = row.try_get(2)?;
        let label: String = row.try_get(3)?;
        let Some(FloatVec(values)) = row.try_get::<_, Option<FloatVec>>(4)? else {
            data.without_features += 1;
            continue;
        };
        let covariates: serde_json::Value = row.try_get(5)?;
        let bad = |what: &str| {
            HandleError::permanent(format!(
                "{context}: sample {id} (site \"{site}\", subject \"{subject}\") {what}"
            ))
        };
        let row_values: Vec<f64> = values
            .into_iter()
            .map(|v| Some(f64::from(v)).filter(|v| v.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("has a non-finite feature value"))?;
        match &first {
            None => first = Some((site.clone(), subject.clone(), row_values.len())),
            Some((first_site, first_subject, n)) if *n != row_values.len() => {
                return Err(bad(&format!(
                    "has {} features but subject \"{first_subject}\" of site \"{first_site}\" has {n}",
                    row_values.len()
                )));
            }
            Some(_) => {}
        }
        if row_values.is_empty() {
            return Err(bad("has no features"));
        }
        data.ids.push(id);
        data.x.push(row_values);
        data.labels.push(label);
        data.sites.push(site);
        data.subjects.push(subject);
        data.covariates.push(covariates);
    }
    if data.without_features > 0 {
        tracing::warn!(
            without_features = data.without_features,
            "{context}: {} selected sample(s) have no features yet and are left out",
            data.without_features
        );
    }
    Ok(data)
}

fn to_i32(what: &str, n: usize) -> Result<i32, HandleError> {
    i32::try_from(n)
        .map_err(|_| HandleError::permanent(format!("{what} {n} exceeds the int range")))
}

fn json_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, HandleError> {
    serde_json::to_value(value).map_err(|e| HandleError::Transient(anyhow::Error::new(e)))
}

/// Finite numbers only: JSON has no NaN.
fn finite_map(map: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    map.iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn store_run(
    tx: &Transaction<'_>,
    meta: &MessageMeta,
    request: &TrainRequest,
    config: &RunConfig,
    data: &Dataset,
    input: &Data,
    outcome: &RunOutcome,
    blob: &[u8],
    duration_ms: i64,
) -> Result<(), HandleError> {
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
                &to_i32("n_features", input.x.cols())?,
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

/// Univariate statistics of the rows' features.
pub fn compute_stats(
    test: StatsTest,
    x: &[Vec<f64>],
    labels: &[String],
    covariate: Option<&[f64]>,
    groups: &[String],
    alpha: f64,
) -> Result<StatsResults, String> {
    let p = x.first().map_or(0, Vec::len);
    if x.len() < 3 || p == 0 {
        return Err(format!(
            "{} samples with {p} features: too few for statistics",
            x.len()
        ));
    }
    let mut group_sizes = BTreeMap::new();
    let results: Vec<stats::TestResult> = match test {
        StatsTest::WelchT | StatsTest::Anova => {
            let mut names: Vec<String> = if groups.is_empty() {
                let mut l = labels.to_vec();
                l.sort();
                l.dedup();
                l
            } else {
                groups.to_vec()
            };
            names.dedup();
            let members: Vec<Vec<usize>> = names
                .iter()
                .map(|g| (0..labels.len()).filter(|&i| &labels[i] == g).collect())
                .collect();
            for (name, m) in names.iter().zip(&members) {
                if m.len() < 2 {
                    return Err(format!(
                        "group \"{name}\" has {} sample(s); each group needs at least 2",
                        m.len()
                    ));
                }
                group_sizes.insert(name.clone(), m.len());
            }
            if test == StatsTest::WelchT && names.len() != 2 {
                return Err(format!(
                    "welch_t compares 2 groups, found {}: {}",
                    names.len(),
                    names.join(", ")
                ));
            }
            if names.len() < 2 {
                return Err("anova needs at least 2 groups".into());
            }
            (0..p)
                .map(|j| {
                    let values: Vec<Vec<f64>> = members
                        .iter()
                        .map(|m| m.iter().map(|&i| x[i][j]).collect())
                        .collect();
                    if test == StatsTest::WelchT {
                        stats::welch_t(&values[0], &values[1])
                    } else {
                        stats::anova(&values)
                    }
                })
                .collect()
        }
        StatsTest::Pearson | StatsTest::Spearman => {
            let c = covariate.ok_or("a correlation needs a covariate")?;
            (0..p)
                .map(|j| {
                    let col: Vec<f64> = x.iter().map(|r| r[j]).collect();
                    if test == StatsTest::Pearson {
                        stats::pearson(&col, c)
                    } else {
                        stats::spearman(&col, c)
                    }
                })
                .collect()
        }
    };
    let p_values: Vec<f64> = results.iter().map(|r| r.p).collect();
    let fdr = stats::fdr_bh(&p_values);
    let bonf = stats::bonferroni(&p_values);
    let finite = |v: f64, fallback: f64| if v.is_finite() { v } else { fallback };
    let features = results
        .iter()
        .enumerate()
        .map(|(j, r)| FeatureStat {
            name: format!("f{j}"),
            statistic: finite(r.statistic, 0.0),
            p: finite(r.p, 1.0),
            p_fdr: finite(fdr[j], 1.0),
            p_bonferroni: finite(bonf[j], 1.0),
            effect_size: finite(r.effect_size, 0.0),
            significant: fdr[j] < alpha,
        })
        .collect();
    Ok(StatsResults {
        test: test.as_str().to_owned(),
        covariate: None,
        groups: group_sizes,
        alpha,
        features,
    })
}

#[tracing::instrument(name = "stats", skip_all, fields(job_id = %message.job_id, project = %message.project, test = message.test.as_str()), err)]
async fn run_stats(work: &mut Work<'_>, message: StatsV1) -> Result<(), HandleError> {
    let started = Instant::now();
    validate_stats(&message).map_err(HandleError::Permanent)?;
    let context = describe(&message.project, &message.sites);
    let exists: bool = work
        .tx()
        .query_one(STATS_EXISTS_SQL, &[&message.job_id])
        .await?
        .try_get(0)?;
    if exists {
        return Err(HandleError::permanent(format!(
            "statistics job {} already exists",
            message.job_id
        )));
    }
    let mut data = load(work.tx(), &message.project, &message.sites, &context).await?;
    if !message.groups.is_empty() {
        // Only the compared groups' rows.
        let keep: Vec<usize> = (0..data.labels.len())
            .filter(|&i| message.groups.contains(&data.labels[i]))
            .collect();
        data.x = keep
            .iter()
            .map(|&i| std::mem::take(&mut data.x[i]))
            .collect();
        data.labels = keep.iter().map(|&i| data.labels[i].clone()).collect();
        data.subjects = keep.iter().map(|&i| data.subjects[i].clone()).collect();
        data.covariates = keep.iter().map(|&i| data.covariates[i].clone()).collect();
    }
    let covariate: Option<Vec<f64>> = match (&message.covariate, message.test) {
        (Some(name), StatsTest::Pearson | StatsTest::Spearman) => Some(
            data.covariates
                .iter()
                .zip(&data.labels)
                .zip(&data.subjects)
                .map(|((c, label), subject)| {
                    let value = if name == "label" {
                        label.trim().parse::<f64>().ok()
                    } else {
                        c.get(name).and_then(serde_json::Value::as_f64)
                    };
                    value.filter(|v| v.is_finite()).ok_or_else(|| {
                        HandleError::permanent(format!(
                            "{context}: subject \"{subject}\" has no numeric covariate \"{name}\""
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => None,
    };
    let (x, labels) = (std::mem::take(&mut data.x), data.labels.clone());
    let (test, groups, alpha) = (message.test, message.groups.clone(), message.alpha);
    let joined = tokio::task::spawn_blocking(move || {
        let r = compute_stats(test, &x, &labels, covariate.as_deref(), &groups, alpha);
        (r, x.len(), x.first().map_or(0, Vec::len))
    })
    .await;
    let (result, n, p) = joined.map_err(|e| permanent_join(&context, e))?;
    let mut results = result.map_err(|e| HandleError::permanent(format!("{context}: {e}")))?;
    results.covariate = message.covariate.clone();
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let meta = work.meta().clone();
    let inserted = work
        .tx()
        .execute(
            INSERT_STATS_SQL,
            &[
                &message.job_id,
                &message.project,
                &message.test.as_str(),
                &message.covariate,
                &message.sites,
                &to_i32("n_samples", n)?,
                &to_i32("n_features", p)?,
                &json_value(&results)?,
                &duration_ms,
                &meta.job_id,
                &meta.message_id,
                &meta.trace_id,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(HandleError::permanent(format!(
            "statistics job {} already exists",
            message.job_id
        )));
    }
    work.emit(&ReportV1 {
        run_id: message.job_id,
    })
    .await?;
    Ok(())
}

/// `project "p"` or `project "p" (sites "a", "b")`, for error messages.
fn describe(project: &str, sites: &[String]) -> String {
    if sites.is_empty() {
        format!("project \"{project}\"")
    } else {
        let sites: Vec<String> = sites.iter().map(|s| format!("\"{s}\"")).collect();
        format!("project \"{project}\" (sites {})", sites.join(", "))
    }
}

/// Whether `task` suits labels: used by the CLI to explain a mismatch early.
pub fn task_of(model: &str) -> Option<Task> {
    ModelSpec::parse(model, &BTreeMap::new())
        .ok()
        .map(|s| s.task())
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_schemas::{CrossValidation, TrainOptions};
    use uuid::Uuid;

    fn request() -> TrainRequest {
        TrainRequest {
            train: TrainV1 {
                run_id: Uuid::nil(),
                project: "demo".into(),
                model: "logistic".into(),
                params: BTreeMap::new(),
                cv: CrossValidation::default(),
                sites: vec![],
            },
            options: TrainOptions::default(),
        }
    }

    #[test]
    fn validates_folds_model_params_grid_and_scheme() {
        assert!(validate_request(&request()).is_ok());
        for (folds, ok) in [(0, false), (1, false), (2, true), (100, true), (101, false)] {
            let mut m = request();
            m.train.cv.folds = folds;
            assert_eq!(validate_request(&m).is_ok(), ok, "folds = {folds}");
        }
        let mut m = request();
        m.train.model = "svm".into();
        assert!(validate_request(&m)
            .unwrap_err()
            .contains("accepted models: logistic, svc"));
        let mut m = request();
        m.train.params.insert("C".into(), "-1".into());
        assert!(validate_request(&m).unwrap_err().contains("positive"));
        let mut m = request();
        m.train.params.insert("penalty".into(), "l1".into());
        assert!(validate_request(&m)
            .unwrap_err()
            .contains("accepted parameters: C, max_iter, tol"));
        let mut m = request();
        m.options
            .grid
            .insert("C".into(), vec!["1".into(), "zero".into()]);
        assert!(validate_request(&m).unwrap_err().contains("grid"));
        let mut m = request();
        m.options.validation.scheme = CvScheme::HeldOutSites;
        assert!(validate_request(&m).unwrap_err().contains("test_sites"));
        let mut m = request();
        m.train.project = " ".into();
        assert!(validate_request(&m).is_err());
        let mut m = request();
        m.options.nested = true;
        assert!(validate_request(&m).unwrap_err().contains("needs a grid"));
        m.options
            .grid
            .insert("C".into(), vec!["1".into(), "10".into()]);
        assert!(validate_request(&m).is_ok());
        m.options.permutations = MAX_PERMUTATIONS;
        assert!(validate_request(&m).is_ok());
        m.options
            .grid
            .insert("C".into(), (1..=11).map(|c| c.to_string()).collect());
        assert!(validate_request(&m).unwrap_err().contains("smaller grid"));
    }

    #[test]
    fn decodes_both_job_kinds_and_an_old_train_body() {
        let old = request().train;
        let job = TrainJob::decode("train.v1", &broker_schemas::encode(&old)).unwrap();
        assert_eq!(job, TrainJob::Train(Box::new(request())));
        let stats = StatsV1 {
            job_id: Uuid::nil(),
            project: "p".into(),
            test: StatsTest::Anova,
            covariate: None,
            groups: vec![],
            sites: vec![],
            alpha: 0.05,
        };
        let job = TrainJob::decode("stats.v1", &broker_schemas::encode(&stats)).unwrap();
        assert_eq!(job, TrainJob::Stats(stats));
        assert!(TrainJob::decode("report.v1", b"").is_err());
        assert!(TrainJob::decode("stats.v1", b"\xc1").is_err());
    }

    #[test]
    fn data_summary_counts_per_site_and_class() {
        let data = Dataset {
            labels: vec!["a".into(), "b".into(), "a".into(), "a".into()],
            sites: vec!["s1".into(), "s1".into(), "s2".into(), "s1".into()],
            ..Dataset::default()
        };
        assert_eq!(
            serde_json::to_value(data.summary()).unwrap(),
            json!({"s1": {"a": 2, "b": 1}, "s2": {"a": 1}})
        );
    }

    #[test]
    fn describes_the_selection() {
        assert_eq!(describe("demo", &[]), "project \"demo\"");
        assert_eq!(
            describe("demo", &["x".into(), "y".into()]),
            "project \"demo\" (sites \"x\", \"y\")"
        );
    }
}
