//! The data a report is rendered from: one training run and its folds, as plain values.
//!
//! [`RunData`] mirrors the `runs` and `folds` tables (see `migrations/0001_init.sql`) after its
//! jsonb columns have been parsed; [`crate::load_run`] fills it from the database and the
//! functions in [`crate::render`] turn it into text. Nothing here does I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// A sentence fragment, e.g. `stratified 5-fold cross-validation (shuffle seed 0)`.
    pub fn describe(&self) -> String {
        let mut text = match (self.scheme.as_deref(), self.folds) {
            (None | Some("stratified_k_fold"), Some(k)) => {
                format!("stratified {k}-fold cross-validation")
            }
            (None | Some("stratified_k_fold"), None) => {
                "stratified k-fold cross-validation".to_owned()
            }
            (Some("leave_site_out" | "leave_one_site_out"), _) => {
                "leave-one-site-out cross-validation".to_owned()
            }
            (Some(other), Some(k)) => {
                format!("{} cross-validation, {k} folds", other.replace('_', " "))
            }
            (Some(other), None) => format!("{} cross-validation", other.replace('_', " ")),
        };
        let mut details: Vec<String> = Vec::new();
        if let Some(seed) = self.seed {
            details.push(format!("shuffle seed {seed}"));
        }
        for (key, value) in &self.other {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
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
    /// Test accuracy.
    pub accuracy: f64,
    /// Test balanced accuracy.
    pub balanced_accuracy: f64,
    /// Test confusion matrix: rows are true classes, columns predicted classes, both in
    /// [`RunData::classes`] order.
    pub confusion: Vec<Vec<u64>>,
}

impl RunData {
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
}
