//! One analysis run: validate a pipeline + model under a scheme, optionally search a parameter
//! grid and run a permutation test, then fit the final model.
//!
//! For every split, [`FittedModel::fit`] learns the pipeline (scaler, selector, PCA) and the
//! model from the split's **training rows only**, then predicts its test rows: out-of-fold
//! predictions with scores, per-fold metrics, and their mean and sd.
//!
//! A grid's best candidate, scored on the folds that chose it, is optimistic; `nested` chooses
//! inside each outer training set instead (an inner stratified k-fold), so the reported score
//! never saw the choice. A permutation test repeats on permuted labels whatever produced the
//! observed score — the folds (re-stratified on the permuted labels), the grid's choice of the
//! best candidate, the nested search — so its null distribution is the observed score's.
//! Everything here is
//! CPU-bound, synchronous and deterministic for a given seed; async callers run it on a blocking
//! thread.

use std::collections::BTreeMap;

use broker_schemas::results::{
    FeatureWeights, GridCandidate, GridSearch, HeldOut, MeanSd, PermutationTest, PipelineSummary,
    RocCurve, SiteScores,
};
use broker_schemas::CvScheme;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::matrix::Matrix;
use crate::metrics::{self, MetricsError};
use crate::model::{FittedModel, Labels, ModelError, ModelSpec, Task};
use crate::pipeline::PipelineConfig;
use crate::validation::{make_splits, Scheme, Split};

/// The rows of a run.
#[derive(Debug, Clone)]
pub struct Data {
    /// Features, one row per sample.
    pub x: Matrix,
    /// Each row's site.
    pub sites: Vec<String>,
    /// The targets.
    pub target: TargetData,
}

/// Targets of all rows.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetData {
    /// Class indices into the sorted class names.
    Classes {
        /// Per row.
        y: Vec<usize>,
        /// Sorted names.
        classes: Vec<String>,
    },
    /// Numbers.
    Values(Vec<f64>),
}

impl TargetData {
    /// From label strings: classes for classification, parsed numbers for regression.
    pub fn from_labels(labels: &[String], task: Task) -> Result<Self, CvError> {
        match task {
            Task::Classification => {
                let (classes, y) = encode_labels(labels);
                if classes.len() < 2 {
                    return Err(CvError::Data(format!(
                        "classification needs at least 2 classes, found {}: {}",
                        classes.len(),
                        classes
                            .iter()
                            .map(|c| format!("\"{c}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Ok(TargetData::Classes { y, classes })
            }
            Task::Regression => labels
                .iter()
                .map(|l| {
                    l.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            CvError::Data(format!("regression needs numeric labels, found \"{l}\""))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(TargetData::Values),
        }
    }

    fn labels<'a>(
        &'a self,
        rows: &[usize],
        buf_y: &'a mut Vec<usize>,
        buf_v: &'a mut Vec<f64>,
    ) -> Labels<'a> {
        match self {
            TargetData::Classes { y, classes } => {
                *buf_y = rows.iter().map(|&i| y[i]).collect();
                Labels::Classes(buf_y, classes)
            }
            TargetData::Values(v) => {
                *buf_v = rows.iter().map(|&i| v[i]).collect();
                Labels::Values(buf_v)
            }
        }
    }

    /// The targets of `rows`, in that order.
    fn subset(&self, rows: &[usize]) -> Self {
        match self {
            TargetData::Classes { y, classes } => TargetData::Classes {
                y: rows.iter().map(|&i| y[i]).collect(),
                classes: classes.clone(),
            },
            TargetData::Values(v) => TargetData::Values(rows.iter().map(|&i| v[i]).collect()),
        }
    }

    fn permuted(&self, rng: &mut ChaCha8Rng) -> Self {
        match self {
            TargetData::Classes { y, classes } => {
                let mut y = y.clone();
                y.shuffle(rng);
                TargetData::Classes {
                    y,
                    classes: classes.clone(),
                }
            }
            TargetData::Values(v) => {
                let mut v = v.clone();
                v.shuffle(rng);
                TargetData::Values(v)
            }
        }
    }
}

impl Data {
    /// The rows `rows`, in that order.
    fn subset(&self, rows: &[usize]) -> Data {
        Data {
            x: self.x.select_rows(rows),
            sites: rows.iter().map(|&i| self.sites[i].clone()).collect(),
            target: self.target.subset(rows),
        }
    }
}

/// Maps labels to indices into their sorted distinct values: `(classes, y)`.
pub fn encode_labels(labels: &[String]) -> (Vec<String>, Vec<usize>) {
    let mut classes: Vec<String> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let y = labels
        .iter()
        .map(|l| classes.binary_search(l).unwrap_or_default())
        .collect();
    (classes, y)
}

/// Everything about a run except the data.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The model (the grid's base when searching).
    pub spec: ModelSpec,
    /// Preprocessing.
    pub pipeline: PipelineConfig,
    /// Validation.
    pub scheme: Scheme,
    /// Parameter → candidate values.
    pub grid: BTreeMap<String, Vec<String>>,
    /// Label permutations (0: no test).
    pub permutations: usize,
    /// Choose the grid's candidate inside each outer training set (nested validation).
    pub nested: bool,
}

/// One fold's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldResult {
    /// Repeat (0-based).
    pub repeat: usize,
    /// Fold number (1-based across repeats).
    pub fold: usize,
    /// Site name (leave-one-site-out, held-out).
    pub name: Option<String>,
    /// Training rows.
    pub n_train: usize,
    /// Test rows.
    pub n_test: usize,
    /// Metric → value.
    pub metrics: BTreeMap<String, f64>,
    /// Confusion matrix (classification).
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// One out-of-fold prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Repeat.
    pub repeat: usize,
    /// Fold that tested the row.
    pub fold: usize,
    /// Row index.
    pub row: usize,
    /// Predicted class (classification).
    pub class: Option<usize>,
    /// Predicted value (regression).
    pub value: Option<f64>,
    /// Positive-class score (binary) or the predicted value (regression).
    pub score: Option<f64>,
}

/// Validation of one model under one scheme.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Per fold.
    pub folds: Vec<FoldResult>,
    /// Out of fold, every repeat.
    pub predictions: Vec<Prediction>,
    /// Metric → mean and sd over folds (pooled over all predictions for leave-one-out).
    pub summary: BTreeMap<String, MeanSd>,
}

impl Evaluation {
    /// The score a grid or a permutation test compares.
    pub fn score(&self, metric: &str) -> f64 {
        self.summary.get(metric).map_or(f64::NAN, |m| m.mean)
    }
}

/// Everything a run produces.
#[derive(Debug)]
pub struct RunOutcome {
    /// The model evaluated (the grid's best when searching).
    pub spec: ModelSpec,
    /// Its validation.
    pub evaluation: Evaluation,
    /// The grid, when searched.
    pub grid: Option<GridSearch>,
    /// The permutation test, when run.
    pub permutation: Option<PermutationTest>,
    /// Held-out sites.
    pub held_out: Option<HeldOut>,
    /// Pooled out-of-fold ROC curve (binary with scores; repeat 0).
    pub roc: Option<RocCurve>,
    /// Out-of-fold metrics per site (repeat 0).
    pub per_site: Vec<SiteScores>,
    /// The final model (on all rows; on the training sites for `held_out_sites`).
    pub model: FittedModel,
    /// Its feature weights.
    pub feature_weights: Option<FeatureWeights>,
    /// The pipeline as run.
    pub pipeline: PipelineSummary,
}

/// Why a run cannot be completed. Every variant is caused by the data or the request.
#[derive(Debug, thiserror::Error)]
pub enum CvError {
    /// Unusable rows or labels.
    #[error("{0}")]
    Data(String),
    /// The folds cannot be formed.
    #[error("{0}")]
    Scheme(String),
    /// Fitting or predicting within a fold failed.
    #[error("fold {fold}: {source}")]
    Fold {
        /// The fold number.
        fold: usize,
        /// What failed.
        #[source]
        source: ModelError,
    },
    /// The final fit failed.
    #[error("final fit: {0}")]
    Final(#[source] ModelError),
    /// A bad grid.
    #[error("grid: {0}")]
    Grid(String),
    /// Scoring failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// The metric a grid and a permutation test use.
pub fn selection_metric(task: Task) -> &'static str {
    match task {
        Task::Classification => "balanced_accuracy",
        Task::Regression => "r2",
    }
}

fn strata(target: &TargetData) -> Option<&[usize]> {
    match target {
        TargetData::Classes { y, .. } => Some(y),
        TargetData::Values(_) => None,
    }
}

/// Validates `spec` on `data` under `splits`.
pub fn evaluate(
    spec: &ModelSpec,
    pipeline: &PipelineConfig,
    data: &Data,
    splits: &[Split],
    pooled: bool,
    seed: u64,
) -> Result<Evaluation, CvError> {
    let mut folds = Vec::with_capacity(splits.len());
    let mut predictions = Vec::with_capacity(data.sites.len());
    let (mut by, mut bv) = (Vec::new(), Vec::new());
    for split in splits {
        // One span per fold, in the job's trace.
        let _fold = tracing::info_span!("fold", fold = split.fold, repeat = split.repeat).entered();
        let fold_error = |source| CvError::Fold {
            fold: split.fold,
            source,
        };
        let train_x = data.x.select_rows(&split.train);
        let train_sites: Vec<String> = split.train.iter().map(|&i| data.sites[i].clone()).collect();
        let labels = data.target.labels(&split.train, &mut by, &mut bv);
        let model = FittedModel::fit(spec, pipeline, &train_x, &train_sites, labels, seed)
            .map_err(fold_error)?;
        let test_x = data.x.select_rows(&split.test);
        let test_sites: Vec<String> = split.test.iter().map(|&i| data.sites[i].clone()).collect();
        let p = model
            .predict_rows(&test_x, &test_sites)
            .map_err(fold_error)?;
        let (metrics, confusion) = match &data.target {
            TargetData::Classes { y, classes } => {
                let truth: Vec<usize> = split.test.iter().map(|&i| y[i]).collect();
                let (m, c) = metrics::classification_metrics(
                    &truth,
                    &p.classes,
                    p.scores.as_deref(),
                    classes.len(),
                )?;
                (m, Some(c))
            }
            TargetData::Values(v) => {
                let truth: Vec<f64> = split.test.iter().map(|&i| v[i]).collect();
                (metrics::regression_metrics(&truth, &p.values)?, None)
            }
        };
        for (k, &row) in split.test.iter().enumerate() {
            predictions.push(Prediction {
                repeat: split.repeat,
                fold: split.fold,
                row,
                class: p.classes.get(k).copied(),
                value: p.values.get(k).copied(),
                score: p
                    .scores
                    .as_ref()
                    .map(|s| s[k])
                    .or_else(|| p.values.get(k).copied()),
            });
        }
        folds.push(FoldResult {
            repeat: split.repeat,
            fold: split.fold,
            name: split.name.clone(),
            n_train: split.train.len(),
            n_test: split.test.len(),
            metrics,
            confusion,
        });
    }
    let summary = summarise(data, &folds, &predictions, pooled)?;
    Ok(Evaluation {
        folds,
        predictions,
        summary,
    })
}

/// Metric → mean and sd over the folds, or of the pooled predictions (leave-one-out).
fn summarise(
    data: &Data,
    folds: &[FoldResult],
    predictions: &[Prediction],
    pooled: bool,
) -> Result<BTreeMap<String, MeanSd>, CvError> {
    Ok(if pooled {
        pooled_metrics(data, predictions, 0)?
            .into_iter()
            .map(|(k, v)| (k, MeanSd { mean: v, sd: 0.0 }))
            .collect()
    } else {
        let mut names: Vec<&String> = folds.iter().flat_map(|f| f.metrics.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| {
                let values: Vec<f64> = folds
                    .iter()
                    .filter_map(|f| f.metrics.get(name).copied())
                    .collect();
                metrics::mean_sd(&values).map(|s| {
                    (
                        name.clone(),
                        MeanSd {
                            mean: s.mean,
                            sd: s.sd,
                        },
                    )
                })
            })
            .collect()
    })
}

/// One candidate of a grid: the model with the candidate's values, and the numeric ones.
struct Candidate {
    spec: ModelSpec,
    params: BTreeMap<String, f64>,
}

/// The grid's candidates (none without a grid).
fn candidates(config: &RunConfig) -> Result<Vec<Candidate>, CvError> {
    if config.grid.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for values in grid_candidates(&config.grid) {
        let mut spec = config.spec.clone();
        let mut params = BTreeMap::new();
        for (param, value) in &values {
            spec.set(param, value)
                .map_err(|e| CvError::Grid(e.to_string()))?;
            let key = if param == "k" {
                "n_neighbors"
            } else {
                param.as_str()
            };
            if let Some(v) = spec.number(key) {
                params.insert(param.clone(), v);
            }
        }
        out.push(Candidate { spec, params });
    }
    Ok(out)
}

/// Whether a candidate scoring `new` replaces the best so far, scoring `best`: strictly higher
/// (the first of equals stays), and any number beats a NaN.
fn better(new: f64, best: f64) -> bool {
    new > best || best.is_nan()
}

/// The first highest score (a NaN is never preferred to a number).
fn best_of(scores: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &s) in scores.iter().enumerate() {
        if best.is_none_or(|b| better(s, scores[b])) {
            best = Some(i);
        }
    }
    best
}

/// Nested validation of a grid: in each outer split, every candidate is scored by an inner
/// stratified k-fold ([`inner_folds`]) over the split's training rows only; the best is fitted
/// on those rows and tested on the split's test rows. Returns the evaluation and the candidate
/// chosen per split.
fn evaluate_nested(
    config: &RunConfig,
    candidates: &[Candidate],
    data: &Data,
    splits: &[Split],
    metric: &str,
) -> Result<(Evaluation, Vec<usize>), CvError> {
    let pipeline = &config.pipeline;
    let pooled = config.scheme.kind == CvScheme::LeaveOneOut;
    let seed = config.scheme.seed;
    let mut folds = Vec::with_capacity(splits.len());
    let mut predictions = Vec::with_capacity(data.sites.len());
    let mut chosen = Vec::with_capacity(splits.len());
    let inner_scheme = Scheme {
        kind: CvScheme::StratifiedKFold,
        folds: inner_folds(&config.scheme),
        seed,
        repeats: 0,
        test_sites: Vec::new(),
    };
    for split in splits {
        let inner_data = data.subset(&split.train);
        let inner = make_splits(&inner_scheme, strata(&inner_data.target), &inner_data.sites)
            .map_err(|e| CvError::Scheme(format!("nested, outer fold {}: {e}", split.fold)))?;
        let scores = candidates
            .iter()
            .map(|c| {
                evaluate(&c.spec, pipeline, &inner_data, &inner, false, seed)
                    .map(|e| e.score(metric))
            })
            .collect::<Result<Vec<f64>, CvError>>()?;
        let best =
            best_of(&scores).ok_or_else(|| CvError::Grid("the grid has no candidates".into()))?;
        let e = evaluate(
            &candidates[best].spec,
            pipeline,
            data,
            std::slice::from_ref(split),
            false,
            seed,
        )?;
        folds.extend(e.folds);
        predictions.extend(e.predictions);
        chosen.push(best);
    }
    let summary = summarise(data, &folds, &predictions, pooled)?;
    Ok((
        Evaluation {
            folds,
            predictions,
            summary,
        },
        chosen,
    ))
}

/// Inner folds of a nested search: the run's k, at least 2.
fn inner_folds(scheme: &Scheme) -> usize {
    scheme.folds.max(2)
}

/// Metrics of the out-of-fold predictions of one repeat, optionally restricted to some rows.
fn pooled_metrics(
    data: &Data,
    predictions: &[Prediction],
    repeat: usize,
) -> Result<BTreeMap<String, f64>, CvError> {
    pooled_metrics_where(data, predictions, repeat, |_| true)
}

fn pooled_metrics_where(
    data: &Data,
    predictions: &[Prediction],
    repeat: usize,
    keep: impl Fn(usize) -> bool,
) -> Result<BTreeMap<String, f64>, CvError> {
    let chosen: Vec<&Prediction> = predictions
        .iter()
        .filter(|p| p.repeat == repeat && keep(p.row))
        .collect();
    Ok(match &data.target {
        TargetData::Classes { y, classes } => {
            let truth: Vec<usize> = chosen.iter().map(|p| y[p.row]).collect();
            let pred: Vec<usize> = chosen.iter().map(|p| p.class.unwrap_or(0)).collect();
            let scores: Option<Vec<f64>> = if classes.len() == 2 {
                chosen.iter().map(|p| p.score).collect()
            } else {
                None
            };
            metrics::classification_metrics(&truth, &pred, scores.as_deref(), classes.len())?.0
        }
        TargetData::Values(v) => {
            let truth: Vec<f64> = chosen.iter().map(|p| v[p.row]).collect();
            let pred: Vec<f64> = chosen.iter().map(|p| p.value.unwrap_or(f64::NAN)).collect();
            metrics::regression_metrics(&truth, &pred)?
        }
    })
}

/// The score of one label permutation, produced as the observed one was: folds made from the
/// permuted labels, then the model, the grid's best candidate, or the nested search.
fn null_score(
    config: &RunConfig,
    candidates: &[Candidate],
    spec: &ModelSpec,
    permuted: &Data,
    metric: &str,
) -> Result<f64, CvError> {
    let splits = make_splits(&config.scheme, strata(&permuted.target), &permuted.sites)
        .map_err(CvError::Scheme)?;
    let pooled = config.scheme.kind == CvScheme::LeaveOneOut;
    let seed = config.scheme.seed;
    let pipeline = &config.pipeline;
    if candidates.is_empty() {
        return Ok(evaluate(spec, pipeline, permuted, &splits, pooled, seed)?.score(metric));
    }
    if config.nested {
        let (e, _) = evaluate_nested(config, candidates, permuted, &splits, metric)?;
        return Ok(e.score(metric));
    }
    let mut best = f64::NAN;
    for c in candidates {
        // f64::max ignores a NaN, as the grid's choice does.
        best =
            best.max(evaluate(&c.spec, pipeline, permuted, &splits, pooled, seed)?.score(metric));
    }
    Ok(best)
}

/// Every combination of the grid's values, in key order then value order.
pub fn grid_candidates(grid: &BTreeMap<String, Vec<String>>) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![BTreeMap::new()];
    for (param, values) in grid {
        let mut next = Vec::with_capacity(out.len() * values.len());
        for partial in &out {
            for v in values {
                let mut c = partial.clone();
                c.insert(param.clone(), v.clone());
                next.push(c);
            }
        }
        out = next;
    }
    out
}

/// Runs the whole analysis.
pub fn run(config: &RunConfig, data: &Data) -> Result<RunOutcome, CvError> {
    let task = config.spec.task();
    let metric = selection_metric(task);
    let splits =
        make_splits(&config.scheme, strata(&data.target), &data.sites).map_err(CvError::Scheme)?;
    let pooled = config.scheme.kind == CvScheme::LeaveOneOut;
    let seed = config.scheme.seed;

    let candidates = candidates(config)?;
    let (spec, evaluation, grid) = if candidates.is_empty() {
        let e = evaluate(&config.spec, &config.pipeline, data, &splits, pooled, seed)?;
        (config.spec.clone(), e, None)
    } else {
        // Every candidate under the run's folds: the optimisation curve, and the choice of the
        // final model (refitted on all rows, as scikit-learn's GridSearchCV does).
        let mut rows = Vec::with_capacity(candidates.len());
        let mut best: Option<(usize, f64, Evaluation)> = None;
        for (i, c) in candidates.iter().enumerate() {
            let e = evaluate(&c.spec, &config.pipeline, data, &splits, pooled, seed)?;
            let score = e.summary.get(metric).copied().unwrap_or(MeanSd {
                mean: f64::NAN,
                sd: f64::NAN,
            });
            rows.push(GridCandidate {
                params: c.params.clone(),
                score,
                fold_scores: e
                    .folds
                    .iter()
                    .filter_map(|f| f.metrics.get(metric).copied())
                    .collect(),
            });
            if best.as_ref().is_none_or(|(_, s, _)| better(score.mean, *s)) {
                best = Some((i, score.mean, e));
            }
        }
        let Some((index, _, e)) = best else {
            return Err(CvError::Grid("the grid has no candidates".into()));
        };
        let (evaluation, nested_folds, chosen) = if config.nested {
            let (e, chosen) = evaluate_nested(config, &candidates, data, &splits, metric)?;
            (e, Some(inner_folds(&config.scheme) as u32), chosen)
        } else {
            (e, None, Vec::new())
        };
        let grid = GridSearch {
            metric: metric.to_owned(),
            candidates: rows,
            best: index,
            nested_folds,
            chosen,
        };
        (candidates[index].spec.clone(), evaluation, Some(grid))
    };

    let permutation = if config.permutations > 0 {
        let observed = evaluation.score(metric);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5045_524D_5554_4521);
        let mut scores = Vec::with_capacity(config.permutations);
        for _ in 0..config.permutations {
            let permuted = Data {
                x: data.x.clone(),
                sites: data.sites.clone(),
                target: data.target.permuted(&mut rng),
            };
            scores.push(null_score(config, &candidates, &spec, &permuted, metric)?);
        }
        let at_least = scores.iter().filter(|s| **s >= observed).count();
        Some(PermutationTest {
            metric: metric.to_owned(),
            observed,
            p_value: (1.0 + at_least as f64) / (1.0 + scores.len() as f64),
            scores,
        })
    } else {
        None
    };

    let roc = match &data.target {
        TargetData::Classes { y, classes } if classes.len() == 2 => {
            let first: Vec<&Prediction> = evaluation
                .predictions
                .iter()
                .filter(|p| p.repeat == 0)
                .collect();
            let scores: Option<Vec<f64>> = first.iter().map(|p| p.score).collect();
            scores.and_then(|s| {
                let truth: Vec<usize> = first.iter().map(|p| y[p.row]).collect();
                let (fpr, tpr) = metrics::roc_curve(&truth, &s)?;
                let auc = metrics::roc_auc(&truth, &s)?;
                Some(RocCurve { fpr, tpr, auc })
            })
        }
        _ => None,
    };

    let mut site_names: Vec<&String> = evaluation
        .predictions
        .iter()
        .map(|p| &data.sites[p.row])
        .collect();
    site_names.sort();
    site_names.dedup();
    let mut per_site = Vec::new();
    for site in site_names {
        let n = evaluation
            .predictions
            .iter()
            .filter(|p| p.repeat == 0 && &data.sites[p.row] == site)
            .count();
        let metrics = pooled_metrics_where(data, &evaluation.predictions, 0, |row| {
            &data.sites[row] == site
        })?;
        per_site.push(SiteScores {
            site: site.clone(),
            n,
            metrics,
        });
    }

    let (final_rows, held_out): (Vec<usize>, Option<HeldOut>) =
        if config.scheme.kind == CvScheme::HeldOutSites {
            let split = &splits[0];
            let mut train_sites: Vec<String> =
                split.train.iter().map(|&i| data.sites[i].clone()).collect();
            train_sites.sort();
            train_sites.dedup();
            let mut test_sites: Vec<String> =
                split.test.iter().map(|&i| data.sites[i].clone()).collect();
            test_sites.sort();
            test_sites.dedup();
            let metrics = evaluation.folds[0].metrics.clone();
            (
                split.train.clone(),
                Some(HeldOut {
                    train_sites,
                    test_sites,
                    metrics,
                }),
            )
        } else {
            ((0..data.sites.len()).collect(), None)
        };
    let (mut by, mut bv) = (Vec::new(), Vec::new());
    let final_x = data.x.select_rows(&final_rows);
    let final_sites: Vec<String> = final_rows.iter().map(|&i| data.sites[i].clone()).collect();
    let labels = data.target.labels(&final_rows, &mut by, &mut bv);
    let model = FittedModel::fit(
        &spec,
        &config.pipeline,
        &final_x,
        &final_sites,
        labels,
        seed,
    )
    .map_err(CvError::Final)?;
    let feature_weights = model
        .feature_weights()
        .map(|(kind, values)| FeatureWeights {
            kind: kind.to_owned(),
            names: (0..values.len()).map(|j| format!("f{j}")).collect(),
            values,
        });
    Ok(RunOutcome {
        pipeline: PipelineSummary {
            scaler: config.pipeline.scaler.as_str().to_owned(),
            select_percentile: config.pipeline.select_percentile,
            pca_components: config.pipeline.pca_components,
        },
        spec,
        evaluation,
        grid,
        permutation,
        held_out,
        roc,
        per_site,
        model,
        feature_weights,
    })
}
