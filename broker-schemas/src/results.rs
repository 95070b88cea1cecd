//! What a finished run stores beyond its plain columns (`runs.results`, jsonb) and what a
//! statistics job stores (`stats_jobs.results`): the contract between the train worker, which
//! writes these, and the report worker, which renders them without recomputing anything.
//!
//! Every field is optional or defaulted, so older rows and simpler runs still read.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `runs.results`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RunResults {
    /// `classification` or `regression`.
    pub task: String,
    /// Binary classification: the class whose score the ROC curve ranks (the second in sorted
    /// order, as scikit-learn's `pos_label` for string labels).
    pub positive_class: Option<String>,
    /// The preprocessing fitted inside each fold.
    pub pipeline: PipelineSummary,
    /// Metric name → mean and sd over folds (also in `runs.metrics`).
    pub metrics: BTreeMap<String, MeanSd>,
    /// Pooled out-of-fold ROC curve (binary classification).
    pub roc: Option<RocCurve>,
    /// Metrics of the out-of-fold predictions per site.
    pub per_site: Vec<SiteScores>,
    /// The parameter grid, when one was searched.
    pub grid: Option<GridSearch>,
    /// The permutation test, when one was run.
    pub permutation: Option<PermutationTest>,
    /// Weights of the final model per feature (coefficients or importances).
    pub feature_weights: Option<FeatureWeights>,
    /// Held-out sites: train on some sites, test on the others.
    pub held_out: Option<HeldOut>,
}

/// A mean and standard deviation (sample sd, ddof = 1) over folds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MeanSd {
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
}

/// The steps before the model, each fitted on training rows only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PipelineSummary {
    /// `global` or `per_site` standardisation, or `none` (as run: `auto` resolved).
    pub scaler: String,
    /// ANOVA F-test feature selection: the percentile of features kept.
    pub select_percentile: Option<f64>,
    /// PCA components kept.
    pub pca_components: Option<usize>,
    /// A text project's features.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSummary>,
}

/// How a text run's documents became features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TextSummary {
    /// `tfidf` (fitted inside each fold on its training documents) or `hashed` (the features
    /// worker's hashed term frequencies).
    pub kind: String,
    /// `tfidf`: the fewest training documents a kept term is in.
    pub min_df: Option<usize>,
    /// `tfidf`: the most terms kept.
    pub max_features: Option<usize>,
    /// `tfidf`: the terms of the final model (fitted on all its rows).
    pub vocabulary: Option<usize>,
}

/// A ROC curve: false- and true-positive rates at decreasing thresholds, and its area.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RocCurve {
    /// False-positive rates, from 0 to 1.
    pub fpr: Vec<f64>,
    /// True-positive rates, from 0 to 1.
    pub tpr: Vec<f64>,
    /// Area under the curve.
    pub auc: f64,
}

/// One site's out-of-fold scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteScores {
    /// Site name.
    pub site: String,
    /// Samples of the site.
    pub n: usize,
    /// Metric name → value (e.g. `accuracy`, `balanced_accuracy`, `r2`).
    pub metrics: BTreeMap<String, f64>,
}

/// A grid search under the run's validation scheme.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GridSearch {
    /// The metric that chose the best candidate (`balanced_accuracy` or `r2`).
    pub metric: String,
    /// Every candidate, in the order evaluated.
    pub candidates: Vec<GridCandidate>,
    /// Index of the best candidate in `candidates` (the one refitted on all rows).
    pub best: usize,
    /// Nested validation: the inner k-fold that chose a candidate inside each outer training
    /// set, so the run's scores never saw the choice. Absent: the candidates were compared on
    /// the run's own folds, and the best one's score is optimistic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested_folds: Option<u32>,
    /// With nested validation: the candidate chosen in each outer fold (indices into
    /// `candidates`, in fold order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chosen: Vec<usize>,
}

/// One candidate of a grid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GridCandidate {
    /// Parameter name → value.
    pub params: BTreeMap<String, f64>,
    /// Mean and sd of the metric over folds.
    pub score: MeanSd,
    /// The metric per fold.
    pub fold_scores: Vec<f64>,
}

/// A permutation test of the cross-validated score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PermutationTest {
    /// The metric permuted (`balanced_accuracy` or `r2`).
    pub metric: String,
    /// The score with the true labels.
    pub observed: f64,
    /// The scores with permuted labels.
    pub scores: Vec<f64>,
    /// (1 + #{permuted ≥ observed}) / (1 + n).
    pub p_value: f64,
}

/// Per-feature weights of the final model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureWeights {
    /// `coefficients` (linear models, on standardised features) or `importances`.
    pub kind: String,
    /// Feature names (e.g. `f12`, a region pair `L-Hippocampus × R-Amygdala`, or a text run's
    /// terms: words and `"word word"` pairs of its final vocabulary), same length as `values`.
    pub names: Vec<String>,
    /// One weight per feature (for multiclass linear models, the mean |coefficient| over classes).
    pub values: Vec<f64>,
    /// Multiclass linear models: each class's own coefficients (one per feature, same order as
    /// `values`), in class order; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_class: Vec<ClassWeights>,
}

/// One class's coefficients of a multiclass linear model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClassWeights {
    /// The class: positive coefficients favour it.
    pub class: String,
    /// For a one-vs-one model (a linear SVC), the class it is weighed against: positive
    /// coefficients favour `class` over this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<String>,
    /// One coefficient per feature.
    pub values: Vec<f64>,
}

/// Train on some sites, test on others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeldOut {
    /// Sites trained on.
    pub train_sites: Vec<String>,
    /// Sites tested on.
    pub test_sites: Vec<String>,
    /// Metric name → value on the test sites.
    pub metrics: BTreeMap<String, f64>,
}

/// `stats_jobs.results`: univariate statistics, one row per feature.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StatsResults {
    /// `welch_t`, `anova`, `pearson` or `spearman`.
    pub test: String,
    /// The covariate correlated with (pearson, spearman).
    pub covariate: Option<String>,
    /// The groups compared (welch_t, anova), with their sizes.
    pub groups: BTreeMap<String, usize>,
    /// False-discovery rate the `significant` flags use.
    pub alpha: f64,
    /// One entry per feature, in feature order.
    pub features: Vec<FeatureStat>,
}

/// One feature's test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureStat {
    /// Feature name.
    pub name: String,
    /// t, F or r.
    pub statistic: f64,
    /// Uncorrected p-value.
    pub p: f64,
    /// Benjamini–Hochberg adjusted p-value.
    pub p_fdr: f64,
    /// Bonferroni adjusted p-value.
    pub p_bonferroni: f64,
    /// Cohen's d (t-test), η² (ANOVA) or r (correlations).
    pub effect_size: f64,
    /// `p_fdr` < `alpha`.
    pub significant: bool,
}
