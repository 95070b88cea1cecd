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
//!
//! A run is cut into independent units ([`crate::plan`]): [`plan`] makes the splits and the
//! candidates the units are cut from, [`compute_unit`] validates one (its fits side by side on the current rayon pool), and
//! [`assemble`] turns every unit's results into the run's outcome and fits the final model.
//! [`run`] does all three in this process. Each permutation draws its labels from a stream of
//! its own (the run's seed, stream = permutation number), so a result never depends on which
//! unit, thread or replica computed it, nor in which order. Everything here is CPU-bound,
//! synchronous and deterministic for a given seed; async callers run it on a blocking thread.

use std::collections::BTreeMap;

use broker_schemas::results::{
    ClassWeights, FeatureWeights, GridCandidate, GridSearch, HeldOut, MeanSd, PermutationTest,
    PipelineSummary, RocCurve, SiteScores, TextSummary,
};
use broker_schemas::{CvScheme, ScalerKind, TextKind};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;
use crate::metrics::{self, MetricsError};
use crate::model::{FittedModel, Labels, ModelError, ModelSpec, Task};
use crate::pipeline::{PipelineConfig, TextStep};
use crate::plan::{self, Pick, Shape, UnitSpec};
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

    /// The labels of permutation `p`: the targets shuffled by the `p`th stream of the run's
    /// seed, the same whichever unit asks.
    pub fn permutation(&self, seed: u64, p: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5045_524D_5554_4521);
        rng.set_stream(p as u64);
        self.permuted(&mut rng)
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
    fn view(&self) -> View<'_> {
        View {
            x: &self.x,
            sites: &self.sites,
            target: &self.target,
        }
    }
}

/// The rows of a run with some labelling: the observed one, or a permutation's (which shares
/// the features instead of copying them).
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    x: &'a Matrix,
    sites: &'a [String],
    target: &'a TargetData,
}

impl View<'_> {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The units' results do not fit the plan (a unit missing or of another plan).
    #[error("the units' results do not fit the run's plan: {0}")]
    Units(String),
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

/// Whether a run's score pools the out-of-fold predictions (leave-one-out) instead of averaging
/// the folds' metrics.
fn is_pooled(config: &RunConfig) -> bool {
    config.scheme.kind == CvScheme::LeaveOneOut
}

/// Validates `spec` on `data` under `splits`, one split after another.
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
    for split in splits {
        let (fold, p) = evaluate_split(spec, pipeline, data.view(), split, seed)?;
        folds.push(fold);
        predictions.extend(p);
    }
    let summary = summarise(&data.target, &folds, &predictions, pooled)?;
    Ok(Evaluation {
        folds,
        predictions,
        summary,
    })
}

/// Fits `spec` on one split's training rows and scores it on its test rows.
fn evaluate_split(
    spec: &ModelSpec,
    pipeline: &PipelineConfig,
    data: View<'_>,
    split: &Split,
    seed: u64,
) -> Result<(FoldResult, Vec<Prediction>), CvError> {
    // One span per fold, in the job's trace.
    let _fold = tracing::info_span!("fold", fold = split.fold, repeat = split.repeat).entered();
    let fold_error = |source| CvError::Fold {
        fold: split.fold,
        source,
    };
    let (mut by, mut bv) = (Vec::new(), Vec::new());
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
    let (metrics, confusion) = match data.target {
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
    let predictions = split
        .test
        .iter()
        .enumerate()
        .map(|(k, &row)| Prediction {
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
        })
        .collect();
    let fold = FoldResult {
        repeat: split.repeat,
        fold: split.fold,
        name: split.name.clone(),
        n_train: split.train.len(),
        n_test: split.test.len(),
        metrics,
        confusion,
    };
    Ok((fold, predictions))
}

/// Metric → mean and sd over the folds, or of the pooled predictions (leave-one-out).
fn summarise(
    target: &TargetData,
    folds: &[FoldResult],
    predictions: &[Prediction],
    pooled: bool,
) -> Result<BTreeMap<String, MeanSd>, CvError> {
    Ok(if pooled {
        pooled_metrics(target, predictions, 0)?
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
#[derive(Debug, Clone)]
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

/// Inner folds of a nested search: the run's k, at least 2.
fn inner_folds(scheme: &Scheme) -> usize {
    scheme.folds.max(2)
}

/// The nested search in one outer split: every candidate is scored by an inner stratified
/// k-fold ([`inner_folds`]) over the split's training rows only; the best is fitted on those
/// rows and tested on the split's test rows. Returns that fold and the candidate chosen.
fn nested_split(
    config: &RunConfig,
    candidates: &[Candidate],
    data: View<'_>,
    split: &Split,
) -> Result<(FoldResult, Vec<Prediction>, usize), CvError> {
    let metric = selection_metric(config.spec.task());
    let seed = config.scheme.seed;
    let inner_scheme = Scheme {
        kind: CvScheme::StratifiedKFold,
        folds: inner_folds(&config.scheme),
        seed,
        repeats: 0,
        test_sites: Vec::new(),
    };
    let inner_data = data.subset(&split.train);
    let inner = make_splits(&inner_scheme, strata(&inner_data.target), &inner_data.sites)
        .map_err(|e| CvError::Scheme(format!("nested, outer fold {}: {e}", split.fold)))?;
    let scores = in_order(candidates.par_iter().map(in_span(|c: &Candidate| {
        evaluate(&c.spec, &config.pipeline, &inner_data, &inner, false, seed)
            .map(|e| e.score(metric))
    })))?;
    let best =
        best_of(&scores).ok_or_else(|| CvError::Grid("the grid has no candidates".into()))?;
    let (fold, predictions) =
        evaluate_split(&candidates[best].spec, &config.pipeline, data, split, seed)?;
    Ok((fold, predictions, best))
}

/// `f` on another thread of the pool, in the current span (a rayon thread does not inherit
/// it: its spans would start traces of their own).
fn in_span<T, R>(f: impl Fn(T) -> R + Sync + Send) -> impl Fn(T) -> R + Sync + Send {
    let span = tracing::Span::current();
    move |item| span.in_scope(|| f(item))
}

/// Results computed side by side, in their order; the first error in that order, so a failure
/// reads the same with any number of threads.
fn in_order<T: Send>(
    results: impl IndexedParallelIterator<Item = Result<T, CvError>>,
) -> Result<Vec<T>, CvError> {
    results.collect::<Vec<_>>().into_iter().collect()
}

/// Metrics of the out-of-fold predictions of one repeat, optionally restricted to some rows.
fn pooled_metrics(
    target: &TargetData,
    predictions: &[Prediction],
    repeat: usize,
) -> Result<BTreeMap<String, f64>, CvError> {
    pooled_metrics_where(target, predictions, repeat, |_| true)
}

fn pooled_metrics_where(
    target: &TargetData,
    predictions: &[Prediction],
    repeat: usize,
    keep: impl Fn(usize) -> bool,
) -> Result<BTreeMap<String, f64>, CvError> {
    let chosen: Vec<&Prediction> = predictions
        .iter()
        .filter(|p| p.repeat == repeat && keep(p.row))
        .collect();
    Ok(match target {
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

/// A run's splits and grid candidates, and the shape its units are cut from
/// ([`plan::units`]).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The splits of the observed labels.
    pub splits: Vec<Split>,
    candidates: Vec<Candidate>,
    /// What the units are cut from.
    pub shape: Shape,
}

/// Makes the splits and candidates of a run; an error when the data cannot be split as asked
/// or the grid is bad.
pub fn plan(config: &RunConfig, data: &Data) -> Result<Plan, CvError> {
    let splits =
        make_splits(&config.scheme, strata(&data.target), &data.sites).map_err(CvError::Scheme)?;
    let candidates = candidates(config)?;
    let shape = Shape {
        rows: data.sites.len(),
        features: data.x.cols(),
        splits: splits.len(),
        candidates: candidates.len(),
        inner_folds: if config.nested && !candidates.is_empty() {
            inner_folds(&config.scheme)
        } else {
            0
        },
        permutations: config.permutations,
    };
    Ok(Plan {
        splits,
        candidates,
        shape,
    })
}

/// What a unit computed for one split of one labelling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitResult {
    /// The permutation (`None`: the observed labels).
    pub permutation: Option<usize>,
    /// The model validated.
    pub pick: Pick,
    /// The split's index.
    pub split: usize,
    /// Its fold's metrics.
    pub fold: FoldResult,
    /// Its out-of-fold predictions: always for the observed labels, for a permutation only
    /// where its score pools them (leave-one-out).
    pub predictions: Vec<Prediction>,
    /// The nested search's choice.
    pub chosen: Option<usize>,
}

/// Computes one unit: its fits side by side on the current rayon pool, its results in a fixed
/// order.
pub fn compute_unit(
    config: &RunConfig,
    plan: &Plan,
    data: &Data,
    unit: &UnitSpec,
) -> Result<Vec<SplitResult>, CvError> {
    // Each labelling of the unit with its splits: the observed ones are the plan's, a
    // permutation's are made from its labels, as the observed ones were.
    let labellings: Vec<(Option<usize>, TargetData, Vec<Split>)> = match &unit.permutations {
        None => vec![(None, data.target.clone(), plan.splits.clone())],
        Some(range) => in_order(range.clone().into_par_iter().map(|p| {
            let target = data.target.permutation(config.scheme.seed, p);
            let splits = make_splits(&config.scheme, strata(&target), &data.sites)
                .map_err(CvError::Scheme)?;
            Ok((Some(p), target, splits))
        }))?,
    };
    let items: Vec<(usize, usize)> = (0..labellings.len())
        .flat_map(|l| unit.splits.clone().map(move |s| (l, s)))
        .collect();
    let keep_predictions = is_pooled(config);
    in_order(items.into_par_iter().map(in_span(|(l, s): (usize, usize)| {
        let (permutation, target, splits) = &labellings[l];
        let view = View {
            x: &data.x,
            sites: &data.sites,
            target,
        };
        let split = splits
            .get(s)
            .ok_or_else(|| CvError::Units(format!("split {s} of {}", splits.len())))?;
        let candidate = |c: usize| {
            plan.candidates.get(c).ok_or_else(|| {
                CvError::Units(format!("candidate {c} of {}", plan.candidates.len()))
            })
        };
        let seed = config.scheme.seed;
        let (fold, predictions, chosen) = match unit.pick {
            Pick::Base => {
                let (f, p) = evaluate_split(&config.spec, &config.pipeline, view, split, seed)?;
                (f, p, None)
            }
            Pick::Candidate(c) => {
                let spec = &candidate(c)?.spec;
                let (f, p) = evaluate_split(spec, &config.pipeline, view, split, seed)?;
                (f, p, None)
            }
            Pick::Nested => {
                let (f, p, best) = nested_split(config, &plan.candidates, view, split)?;
                (f, p, Some(best))
            }
        };
        Ok(SplitResult {
            permutation: *permutation,
            pick: unit.pick,
            split: s,
            fold,
            predictions: if permutation.is_none() || keep_predictions {
                predictions
            } else {
                Vec::new()
            },
            chosen,
        })
    })))
}

/// The results of every unit, by labelling and pick.
struct Families(BTreeMap<(Option<usize>, Pick), Vec<SplitResult>>);

impl Families {
    fn new(results: Vec<SplitResult>) -> Self {
        let mut families: BTreeMap<_, Vec<SplitResult>> = BTreeMap::new();
        for r in results {
            families.entry((r.permutation, r.pick)).or_default().push(r);
        }
        for family in families.values_mut() {
            family.sort_by_key(|r| r.split);
            family.dedup_by_key(|r| r.split);
        }
        Families(families)
    }

    /// A labelling's validation of `pick`, its folds in split order, and each split's nested
    /// choice.
    fn evaluation(
        &mut self,
        permutation: Option<usize>,
        pick: Pick,
        splits: usize,
        target: &TargetData,
        pooled: bool,
    ) -> Result<(Evaluation, Vec<Option<usize>>), CvError> {
        let family = self.0.remove(&(permutation, pick)).unwrap_or_default();
        if family.len() != splits {
            let labels = permutation.map_or("the observed labels".to_owned(), |p| {
                format!("permutation {p}")
            });
            return Err(CvError::Units(format!(
                "{} of {splits} splits of {pick:?} on {labels}",
                family.len()
            )));
        }
        let mut folds = Vec::with_capacity(splits);
        let mut predictions = Vec::new();
        let mut chosen = Vec::with_capacity(splits);
        for r in family {
            folds.push(r.fold);
            predictions.extend(r.predictions);
            chosen.push(r.chosen);
        }
        let summary = summarise(target, &folds, &predictions, pooled)?;
        Ok((
            Evaluation {
                folds,
                predictions,
                summary,
            },
            chosen,
        ))
    }
}

/// Turns every unit's results into the run's outcome: the grid's choice, the nested and
/// permutation scores, ROC and per-site scores, and the final model fitted on all rows (on the
/// training sites for `held_out_sites`).
pub fn assemble(
    config: &RunConfig,
    plan: &Plan,
    data: &Data,
    results: Vec<SplitResult>,
) -> Result<RunOutcome, CvError> {
    let task = config.spec.task();
    let metric = selection_metric(task);
    let pooled = is_pooled(config);
    let seed = config.scheme.seed;
    let n_splits = plan.splits.len();
    let candidates = &plan.candidates;
    let mut families = Families::new(results);

    let (spec, evaluation, grid) = if candidates.is_empty() {
        let (e, _) = families.evaluation(None, Pick::Base, n_splits, &data.target, pooled)?;
        (config.spec.clone(), e, None)
    } else {
        // Every candidate under the run's folds: the optimisation curve, and the choice of the
        // final model (refitted on all rows, as scikit-learn's GridSearchCV does).
        let mut rows = Vec::with_capacity(candidates.len());
        let mut best: Option<(usize, f64, Evaluation)> = None;
        for (i, c) in candidates.iter().enumerate() {
            let (e, _) =
                families.evaluation(None, Pick::Candidate(i), n_splits, &data.target, pooled)?;
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
            let (e, chosen) =
                families.evaluation(None, Pick::Nested, n_splits, &data.target, pooled)?;
            let chosen = chosen
                .into_iter()
                .map(|c| {
                    c.ok_or_else(|| CvError::Units("a nested split without its choice".into()))
                })
                .collect::<Result<Vec<usize>, CvError>>()?;
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
        // Each permutation's score is produced as the observed one was: the model, the grid's
        // best candidate, or the nested search.
        let picks: Vec<Pick> = if candidates.is_empty() {
            vec![Pick::Base]
        } else if config.nested {
            vec![Pick::Nested]
        } else {
            (0..candidates.len()).map(Pick::Candidate).collect()
        };
        let mut scores = Vec::with_capacity(config.permutations);
        for p in 0..config.permutations {
            // Only a pooled score reads the (permuted) truth again.
            let permuted;
            let target = if pooled {
                permuted = data.target.permutation(seed, p);
                &permuted
            } else {
                &data.target
            };
            let mut best = f64::NAN;
            for &pick in &picks {
                let (e, _) = families.evaluation(Some(p), pick, n_splits, target, pooled)?;
                // f64::max ignores a NaN, as the grid's choice does.
                best = best.max(e.score(metric));
            }
            scores.push(best);
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
        let metrics = pooled_metrics_where(&data.target, &evaluation.predictions, 0, |row| {
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
            let split = &plan.splits[0];
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
            // A text run's weights are per term of its final vocabulary.
            names: match model.pipeline().feature_names() {
                Some(terms) if terms.len() == values.len() => terms.to_vec(),
                _ => (0..values.len()).map(|j| format!("f{j}")).collect(),
            },
            values,
            per_class: model
                .class_weights()
                .into_iter()
                .map(|(class, against, values)| ClassWeights {
                    class,
                    against,
                    // JSON has no NaN: a non-finite weight is stored as 0, as `values` is.
                    values: values
                        .into_iter()
                        .map(|v| if v.is_finite() { v } else { 0.0 })
                        .collect(),
                })
                .collect(),
        });
    Ok(RunOutcome {
        pipeline: PipelineSummary {
            // As fitted: an `auto` left unresolved (no project kind) standardises globally.
            scaler: match config.pipeline.scaler {
                ScalerKind::Auto => ScalerKind::Global,
                scaler => scaler,
            }
            .as_str()
            .to_owned(),
            select_percentile: config.pipeline.select_percentile,
            pca_components: config.pipeline.pca_components,
            text: config.pipeline.text.as_ref().map(|step| match step {
                TextStep::Tfidf { config, .. } => TextSummary {
                    kind: TextKind::Tfidf.as_str().to_owned(),
                    min_df: Some(config.min_df),
                    max_features: config.max_features,
                    vocabulary: model.pipeline().feature_names().map(<[String]>::len),
                },
                TextStep::Hashed => TextSummary {
                    kind: TextKind::Hashed.as_str().to_owned(),
                    ..TextSummary::default()
                },
            }),
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

/// Runs the whole analysis in this process: [`plan`], every unit side by side on the current
/// rayon pool, [`assemble`].
pub fn run(config: &RunConfig, data: &Data) -> Result<RunOutcome, CvError> {
    let plan = plan(config, data)?;
    let units = plan::units(&plan.shape, plan::UNIT_WORK);
    let results = in_order(units.par_iter().map(in_span(|unit: &UnitSpec| {
        compute_unit(config, &plan, data, unit)
    })))?;
    assemble(config, &plan, data, results.into_iter().flatten().collect())
}
