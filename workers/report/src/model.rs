//! The data a report is rendered from, as plain values: a training run ([`RunData`]: the run,
//! its folds, its [`RunResults`] and its per-subject predictions) or a statistics job
//! ([`StatsData`]).
//!
//! [`RunData`] mirrors the `runs`, `folds` and `predictions` tables (see `migrations/`) after
//! their jsonb columns have been parsed; [`crate::load_subject`] fills it from the database and
//! the functions in [`crate::render`] and [`crate::stats`] turn it into text. Nothing here does
//! I/O.

use std::collections::BTreeMap;

pub use broker_schemas::results::{RunResults, StatsResults};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What one `report.v1` names: a training run or a statistics job.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A training run (`runs`).
    Run(Box<RunData>),
    /// A univariate statistics job (`stats_jobs`).
    Stats(Box<StatsData>),
}

impl Subject {
    /// The run or job id, the `reports.run_id` of its report.
    pub fn id(&self) -> Uuid {
        match self {
            Subject::Run(run) => run.run_id,
            Subject::Stats(stats) => stats.id,
        }
    }

    /// `reports.kind`: `run` or `stats`.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Run(_) => "run",
            Subject::Stats(_) => "stats",
        }
    }
}

/// One finished training run with its per-fold results: everything a report shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunData {
    /// `runs.id`.
    pub run_id: Uuid,
    /// The project the run trained on.
    pub project: String,
    /// The model name, e.g. `logistic`.
    pub model: String,
    /// The model parameters as given, e.g. `{"C": "1.0"}`.
    pub params: BTreeMap<String, String>,
    /// The cross-validation scheme.
    pub cv: CvScheme,
    /// The sites the run was restricted to; empty means every site.
    pub sites: Vec<String>,
    /// Samples used.
    pub n_samples: u32,
    /// Features per sample.
    pub n_features: u32,
    /// Class labels, in the order of the confusion matrices' rows and columns.
    pub classes: Vec<String>,
    /// Samples per site and class: `{"<site>": {"<class>": n}}`.
    pub data_summary: BTreeMap<String, BTreeMap<String, u64>>,
    /// Cross-validated metrics by name (`accuracy`, `balanced_accuracy`, …), each over the folds.
    pub metrics: BTreeMap<String, MetricSummary>,
    /// The folds, in fold order.
    pub folds: Vec<FoldRow>,
    /// Wall-clock training time in milliseconds.
    pub duration_ms: i64,
    /// The job (AMQP `correlation_id`) that produced the run.
    pub job_id: Option<String>,
    /// The trace the run was trained in.
    pub trace_id: Option<String>,
    /// When the run was stored.
    pub created_at: DateTime<Utc>,
    /// Everything beyond the plain columns (`runs.results`): task, pipeline, ROC, per-site
    /// scores, grid search, permutation test, feature weights, held-out sites.
    pub results: RunResults,
    /// Per-subject out-of-fold predictions (`predictions`), ordered by repeat, site, subject.
    pub predictions: Vec<Prediction>,
    /// The covariates recorded for the run's subjects (`samples.covariates`), by name.
    pub covariates: Vec<Covariate>,
    /// The project's feature names (`feature_names`, kind `features`: a feature table's header),
    /// empty when it has none: name the top features when there is one per feature.
    pub feature_names: Vec<String>,
    /// The project's region labels (`projects.region_labels`), empty when it has none: names
    /// connectivity features as region pairs.
    pub region_labels: Vec<String>,
}

/// A covariate of a run's subjects: how many have it and, over its numeric values, a summary
/// (NaN where undefined).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Covariate {
    /// The covariate's name, e.g. `age`.
    pub name: String,
    /// Subjects that have it.
    pub n: u64,
    /// Subjects whose value is a number.
    pub numeric: u64,
    /// Mean of the numeric values.
    pub mean: f64,
    /// Sample standard deviation of the numeric values.
    pub sd: f64,
    /// Smallest numeric value.
    pub min: f64,
    /// Largest numeric value.
    pub max: f64,
}

/// One subject's out-of-fold prediction (`predictions` row).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Repeat of a repeated k-fold (0 otherwise).
    pub repeat: u32,
    /// The sample's site.
    pub site: String,
    /// The sample's subject.
    pub subject: String,
    /// The fold the subject was tested in.
    pub fold: u32,
    /// The true label.
    pub y_true: String,
    /// The predicted label.
    pub y_pred: String,
    /// Score of the positive class (binary), the prediction (regression), or none.
    pub score: Option<f64>,
}

/// One finished statistics job (`stats_jobs` row): everything a statistics report shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsData {
    /// `stats_jobs.id`.
    pub id: Uuid,
    /// The project tested.
    pub project: String,
    /// `welch_t`, `anova`, `pearson` or `spearman`.
    pub test: String,
    /// The covariate correlated with, for correlations.
    pub covariate: Option<String>,
    /// The sites the job was restricted to; empty means every site.
    pub sites: Vec<String>,
    /// Samples used.
    pub n_samples: u32,
    /// Features tested.
    pub n_features: u32,
    /// The per-feature results.
    pub results: StatsResults,
    /// Wall-clock time in milliseconds.
    pub duration_ms: i64,
    /// The job (AMQP `correlation_id`).
    pub job_id: Option<String>,
    /// The trace the job ran in.
    pub trace_id: Option<String>,
    /// When the job was stored.
    pub created_at: DateTime<Utc>,
    /// The project's region labels, empty when it has none.
    pub region_labels: Vec<String>,
}

/// A run that stopped without results (`run_jobs` in state `failed` or `cancelled`): what its
/// report shows instead of scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoppedRun {
    /// The run id.
    pub run_id: Uuid,
    /// The project it was to train on.
    pub project: String,
    /// `failed` or `cancelled`.
    pub state: String,
    /// Why: the failing unit's error, the refused request's check, or the cancel.
    pub reason: Option<String>,
    /// What was asked for (the `train.v1` body).
    pub request: broker_schemas::TrainRequest,
    /// Work units stored before it stopped, and planned.
    pub units_done: u32,
    /// Work units planned (0 when it was refused before planning).
    pub units_total: u32,
    /// When it was planned.
    pub created_at: DateTime<Utc>,
    /// When it stopped.
    pub finished_at: Option<DateTime<Utc>>,
    /// The job (AMQP `correlation_id`).
    pub job_id: Option<String>,
    /// The trace it ran in.
    pub trace_id: Option<String>,
}

impl StoppedRun {
    /// Milliseconds from its plan to its stop (0 when unknown).
    pub fn duration_ms(&self) -> i64 {
        self.finished_at
            .map(|f| (f - self.created_at).num_milliseconds().max(0))
            .unwrap_or(0)
    }
}

/// The display name of feature `index`: a region pair (`A × B`) when `region_labels` has `R`
/// labels and there are `R(R-1)/2` features (the upper triangle of a connectivity matrix, row by
/// row, as the features worker writes it); else the stored `name` when there is one; else
/// `f<index>`. A stored name of the generic form `f<index>` gives way to the region pair.
pub fn feature_name(
    index: usize,
    name: Option<&str>,
    n_features: usize,
    regions: &[String],
) -> String {
    let generic = format!("f{index}");
    let stored = name.filter(|n| !n.is_empty());
    if stored.is_none_or(|n| n == generic) {
        if let Some((i, j)) = region_pair(index, n_features, regions.len()) {
            return format!("{} × {}", regions[i], regions[j]);
        }
    }
    stored.map(str::to_owned).unwrap_or(generic)
}

/// Row and column `(i, j)`, `i < j`, of upper-triangle entry `index` of an `r`×`r` matrix with
/// `n` = `r(r-1)/2` entries; `None` when the sizes do not match.
fn region_pair(index: usize, n: usize, r: usize) -> Option<(usize, usize)> {
    if r < 2 || r * (r - 1) / 2 != n || index >= n {
        return None;
    }
    let mut k = index;
    for i in 0..r {
        let row = r - 1 - i;
        if k < row {
            return Some((i, i + 1 + k));
        }
        k -= row;
    }
    None
}

/// A cross-validation scheme as stored in `runs.cv`, e.g.
/// `{"scheme": "stratified_k_fold", "folds": 5, "seed": 0}`.
///
/// Keys this version does not know are kept in [`CvScheme::other`] and shown as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CvScheme {
    /// The scheme's name: `stratified_k_fold` (also assumed when absent), `leave_site_out`, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Number of stratified folds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<u32>,
    /// Shuffle seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Any other keys.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl CvScheme {
    /// A sentence fragment, e.g. `stratified 5-fold cross-validation (shuffle seed 0)`. A
    /// regression's k-fold is shuffled, not stratified (there are no classes).
    pub fn describe(&self, regression: bool) -> String {
        use serde_json::Value;
        // The train worker also stores `k` (= folds), `repeats` and `test_sites`.
        let folds = self.folds.or_else(|| {
            self.other
                .get("k")
                .and_then(Value::as_u64)
                .and_then(|k| u32::try_from(k).ok())
        });
        let repeats = self
            .other
            .get("repeats")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let test_sites: Vec<String> = match self.other.get("test_sites") {
            Some(Value::Array(sites)) => sites
                .iter()
                .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let k_fold = if regression { "shuffled" } else { "stratified" };
        let mut text = match (self.scheme.as_deref(), folds) {
            (None | Some("stratified_k_fold" | "repeated_k_fold"), Some(k)) => {
                format!("{k_fold} {k}-fold cross-validation")
            }
            (None | Some("stratified_k_fold" | "repeated_k_fold"), None) => {
                format!("{k_fold} k-fold cross-validation")
            }
            (Some("leave_site_out" | "leave_one_site_out"), _) => {
                "leave-one-site-out cross-validation".to_owned()
            }
            (Some("leave_one_out"), _) => "leave-one-out cross-validation".to_owned(),
            (Some("held_out_sites"), _) => "train on some sites, test on held-out sites".to_owned(),
            (Some(other), Some(k)) => {
                format!("{} cross-validation, {k} folds", other.replace('_', " "))
            }
            (Some(other), None) => format!("{} cross-validation", other.replace('_', " ")),
        };
        if repeats > 1 {
            text.push_str(&format!(", repeated {repeats} times"));
        }
        let mut details: Vec<String> = Vec::new();
        // Only a k-fold shuffles; the other schemes' folds are fixed by the data.
        let fixed = matches!(
            self.scheme.as_deref(),
            Some("leave_site_out" | "leave_one_site_out" | "leave_one_out" | "held_out_sites")
        );
        if let (Some(seed), false) = (self.seed, fixed) {
            details.push(format!("shuffle seed {seed}"));
        }
        if !test_sites.is_empty() {
            details.push(format!("test sites: {}", test_sites.join(", ")));
        }
        for (key, value) in &self.other {
            if matches!(key.as_str(), "k" | "repeats" | "test_sites") {
                continue;
            }
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            details.push(format!("{key}: {value}"));
        }
        if !details.is_empty() {
            text.push_str(" (");
            text.push_str(&details.join(", "));
            text.push(')');
        }
        text
    }
}

/// A metric over the folds: its mean and standard deviation. Non-finite values mean "not
/// available" (JSON has no NaN: they are stored and serialised as `null`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricSummary {
    /// Mean over the folds.
    pub mean: f64,
    /// Standard deviation over the folds.
    pub sd: f64,
}

/// One fold of a run (`folds` row).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldRow {
    /// Fold number.
    pub fold: u32,
    /// Training samples in the fold.
    pub n_train: u32,
    /// Test samples in the fold.
    pub n_test: u32,
    /// Test accuracy (NaN for regression).
    pub accuracy: f64,
    /// Test balanced accuracy (NaN for regression).
    pub balanced_accuracy: f64,
    /// Every metric of the fold by name (`folds.metrics`); non-finite means not available.
    pub metrics: BTreeMap<String, f64>,
    /// Test confusion matrix: rows are true classes, columns predicted classes, both in
    /// [`RunData::classes`] order; empty for regression.
    pub confusion: Vec<Vec<u64>>,
}

impl RunData {
    /// Whether every fold tests one sample (leave-one-out): per-fold scores mean nothing, the
    /// report shows pooled ones.
    pub fn is_leave_one_out(&self) -> bool {
        self.cv.scheme.as_deref() == Some("leave_one_out")
    }

    /// The validation scheme as a sentence fragment ([`CvScheme::describe`]).
    pub fn cv_description(&self) -> String {
        self.cv.describe(self.is_regression())
    }

    /// The confusion matrix summed over the folds, `classes.len()` square. Cells outside that
    /// square (a malformed fold) are ignored.
    pub fn confusion_total(&self) -> Vec<Vec<u64>> {
        let k = self.classes.len();
        let mut total = vec![vec![0u64; k]; k];
        for fold in &self.folds {
            for (row, counts) in total.iter_mut().zip(&fold.confusion) {
                for (cell, count) in row.iter_mut().zip(counts) {
                    *cell = cell.saturating_add(*count);
                }
            }
        }
        total
    }

    /// The sites that contributed samples: the keys of [`RunData::data_summary`], or the
    /// requested [`RunData::sites`] when no summary was stored.
    pub fn site_names(&self) -> Vec<&str> {
        if self.data_summary.is_empty() {
            self.sites.iter().map(String::as_str).collect()
        } else {
            self.data_summary.keys().map(String::as_str).collect()
        }
    }

    /// The class columns of the data summary: [`RunData::classes`] first, then any other label
    /// the summary mentions.
    pub fn summary_classes(&self) -> Vec<&str> {
        let mut classes: Vec<&str> = self.classes.iter().map(String::as_str).collect();
        for counts in self.data_summary.values() {
            for class in counts.keys() {
                if !classes.contains(&class.as_str()) {
                    classes.push(class);
                }
            }
        }
        classes
    }

    /// A metric by name.
    pub fn metric(&self, name: &str) -> Option<MetricSummary> {
        self.metrics.get(name).copied()
    }

    /// Whether the run is a regression (numeric labels, no classes).
    pub fn is_regression(&self) -> bool {
        self.results.task == "regression" || self.metrics.contains_key("r2")
    }

    /// The out-of-fold predictions of the first repeat as (true, predicted) numbers: a
    /// regression's fit. Predictions whose values are not numbers are left out.
    pub fn regression_points(&self) -> Vec<(f64, f64)> {
        self.predictions
            .iter()
            .filter(|p| p.repeat == 0)
            .filter_map(|p| Some((p.true_value()?, p.predicted_value()?)))
            .collect()
    }

    /// Per site, the target of a regression: `(site, n, [mean, sd, min, max])` of the numeric
    /// labels counted in [`RunData::data_summary`] (labels that are not numbers are left out).
    pub fn target_by_site(&self) -> Vec<(String, u64, [f64; 4])> {
        self.data_summary
            .iter()
            .map(|(site, counts)| {
                let values = numeric_counts(counts);
                (site.clone(), total(&values), describe(&values))
            })
            .collect()
    }

    /// The target of a regression over all sites: `(n, [mean, sd, min, max])`.
    pub fn target_overall(&self) -> (u64, [f64; 4]) {
        let values: Vec<(f64, u64)> = self
            .data_summary
            .values()
            .flat_map(numeric_counts)
            .collect();
        (total(&values), describe(&values))
    }
}

/// The labels of a `{label: count}` map that are finite numbers, with their counts.
fn numeric_counts(counts: &BTreeMap<String, u64>) -> Vec<(f64, u64)> {
    counts
        .iter()
        .filter_map(|(label, n)| Some((label.trim().parse::<f64>().ok()?, *n)))
        .filter(|(v, _)| v.is_finite())
        .collect()
}

fn total(values: &[(f64, u64)]) -> u64 {
    values.iter().map(|(_, n)| n).sum()
}

/// Mean, sample sd, min and max of weighted values (NaN where undefined).
fn describe(values: &[(f64, u64)]) -> [f64; 4] {
    let n = total(values);
    if n == 0 {
        return [f64::NAN; 4];
    }
    let mean = values.iter().map(|(v, k)| v * *k as f64).sum::<f64>() / n as f64;
    let sd = if n < 2 {
        f64::NAN
    } else {
        let ss: f64 = values
            .iter()
            .map(|(v, k)| (v - mean).powi(2) * *k as f64)
            .sum();
        (ss / (n - 1) as f64).sqrt()
    };
    let min = values.iter().map(|(v, _)| *v).fold(f64::INFINITY, f64::min);
    let max = values
        .iter()
        .map(|(v, _)| *v)
        .fold(f64::NEG_INFINITY, f64::max);
    [mean, sd, min, max]
}

impl Prediction {
    /// The true label as a number (regression), when it is one.
    pub fn true_value(&self) -> Option<f64> {
        self.y_true
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
    }

    /// Predicted − true (regression), when both are numbers.
    pub fn residual(&self) -> Option<f64> {
        Some(self.predicted_value()? - self.true_value()?)
    }

    /// The prediction as a number (regression), when it is one.
    pub fn predicted_value(&self) -> Option<f64> {
        self.y_pred
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_pairs_follow_the_upper_triangle_row_by_row() {
        let regions: Vec<String> = ["A", "B", "C", "D"].map(String::from).to_vec();
        let names: Vec<String> = (0..6).map(|k| feature_name(k, None, 6, &regions)).collect();
        assert_eq!(
            names,
            ["A × B", "A × C", "A × D", "B × C", "B × D", "C × D"]
        );
        // The generic stored name gives way; a real one is kept.
        assert_eq!(feature_name(1, Some("f1"), 6, &regions), "A × C");
        assert_eq!(feature_name(1, Some("ALFF_3"), 6, &regions), "ALFF_3");
        // Sizes that do not match a triangle: no pairs.
        assert_eq!(feature_name(1, None, 5, &regions), "f1");
        assert_eq!(feature_name(6, None, 6, &regions), "f6");
        assert_eq!(feature_name(0, Some(""), 6, &[]), "f0");
    }
}
