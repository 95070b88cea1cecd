//! The view of a run: every section of its report formatted once, shared by the HTML page and
//! the Markdown (or plain-text) report, and the summary paragraph.

use std::collections::BTreeMap;

use broker_schemas::results::TextSummary;
use serde::Serialize;

use super::format::{
    csv_field, csv_href, csv_kib, duration, metric_label, metric_text, num, param_value, plural,
    pvalue, Flavour,
};
use super::{main_metric, RenderOptions, PREDICTION_ROWS_SHOWN, TOP_FEATURES};

/// Features shown per class of a multiclass linear model.
const CLASS_TOP_FEATURES: usize = 10;
use crate::charts;
use crate::model::{feature_name, Prediction, RunData};
use crate::pooled::pooled_metrics;

/// What a view is rendered into: the HTML page (with charts and a CSV download link) or a text
/// report (Markdown or plain text, which carries the CSV itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Medium {
    /// The HTML page.
    Html,
    /// A text report in this flavour.
    Text(Flavour),
}

impl Medium {
    /// Whether charts are drawn (the HTML page only).
    pub(crate) fn html(self) -> bool {
        self == Medium::Html
    }

    /// The flavour of the summary paragraph (the page does not show it).
    pub(crate) fn summary_flavour(self) -> Flavour {
        match self {
            Medium::Html => Flavour::Plain,
            Medium::Text(flavour) => flavour,
        }
    }
}

/// Everything a run's report shows, formatted. The template escapes every string; the charts
/// are `None` in the Markdown view.
#[derive(Debug, Serialize)]
pub(crate) struct RunView {
    summary: String,
    run_id: String,
    project: String,
    model: String,
    created_at: String,
    task: String,
    /// Leave-one-out: the metrics are pooled, the folds (one sample each) are not listed.
    leave_one_out: bool,
    headline: Vec<(String, String)>,
    n_samples: u32,
    n_features: u32,
    data: DataTable,
    /// Regression: the target per site (the data table counts classes).
    target: Vec<TargetRow>,
    /// The covariates recorded for the run's subjects.
    covariates: Vec<CovariateRow>,
    params: Vec<(String, String)>,
    pipeline: Vec<(&'static str, String)>,
    validation: Vec<(&'static str, String)>,
    metrics: Vec<MetricRow>,
    fold_columns: Vec<String>,
    folds: Vec<FoldView>,
    fold_metric: String,
    fold_chart: Option<String>,
    classes: Vec<String>,
    confusion: Vec<ConfusionRow>,
    confusion_chart: Option<String>,
    roc: Option<RocView>,
    /// Regression: predicted against true values, and the residuals.
    fit: Option<FitView>,
    sites: Option<SitesView>,
    grid: Option<GridView>,
    permutation: Option<PermutationView>,
    held_out: Option<HeldOutView>,
    predictions: PredictionsView,
    features: Option<FeaturesView>,
    /// Why there are no feature weights (empty when there are).
    no_features: String,
    lineage: Vec<LineageRow>,
}

#[derive(Debug, Serialize)]
struct FoldView {
    fold: u32,
    n_train: u32,
    n_test: u32,
    values: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ConfusionRow {
    class: String,
    cells: Vec<ConfusionCell>,
}

/// A confusion matrix cell, shaded by its share of the row (the true class).
#[derive(Debug, Serialize)]
struct ConfusionCell {
    count: u64,
    /// Share of the row, e.g. `83%`.
    share: String,
    diagonal: bool,
}

/// A regression's target at one site (or over all sites).
#[derive(Debug, Serialize)]
struct TargetRow {
    site: String,
    n: u64,
    mean: String,
    sd: String,
    min: String,
    max: String,
}

/// A covariate of the run's subjects, formatted.
#[derive(Debug, Serialize)]
struct CovariateRow {
    name: String,
    n: u64,
    mean: String,
    sd: String,
    min: String,
    max: String,
    /// Subjects whose value is not a number (shown when some are).
    not_numeric: u64,
}

/// A regression's fit: the charts of its out-of-fold predictions.
#[derive(Debug, Serialize)]
struct FitView {
    /// Predictions drawn (those of the first repeat).
    n: usize,
    scatter: Option<String>,
    residuals: Option<String>,
}

#[derive(Debug, Serialize)]
struct RocView {
    auc: String,
    points: usize,
    positive_class: String,
    chart: Option<String>,
}

#[derive(Debug, Serialize)]
struct SitesView {
    columns: Vec<String>,
    rows: Vec<SiteRow>,
    metric: String,
    chart: Option<String>,
}

#[derive(Debug, Serialize)]
struct SiteRow {
    site: String,
    n: usize,
    values: Vec<String>,
}

#[derive(Debug, Serialize)]
struct GridView {
    metric: String,
    /// How the reported scores relate to the choice (nested or not).
    note: String,
    params: Vec<String>,
    rows: Vec<GridRow>,
    best: String,
    chart: Option<String>,
}

#[derive(Debug, Serialize)]
struct GridRow {
    index: usize,
    values: Vec<String>,
    mean: String,
    sd: String,
    best: bool,
}

#[derive(Debug, Serialize)]
struct PermutationView {
    metric: String,
    observed: String,
    p_value: String,
    n: usize,
    null_mean: String,
    null_sd: String,
    chart: Option<String>,
}

#[derive(Debug, Serialize)]
struct HeldOutView {
    train_sites: String,
    test_sites: String,
    metrics: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
struct PredictionsView {
    n: usize,
    correct: usize,
    /// Regression: a residual column instead of right and wrong.
    regression: bool,
    has_score: bool,
    shown: Vec<PredictionRow>,
    csv: String,
    /// `data:text/csv;base64,…` (empty in the Markdown view).
    csv_href: String,
    csv_name: String,
    csv_kib: String,
}

#[derive(Debug, Serialize)]
struct PredictionRow {
    repeat: u32,
    site: String,
    subject: String,
    fold: u32,
    y_true: String,
    y_pred: String,
    score: String,
    correct: bool,
    /// Regression: predicted − true, formatted.
    residual: String,
}

#[derive(Debug, Serialize)]
struct FeaturesView {
    kind: String,
    total: usize,
    by_regions: bool,
    rows: Vec<FeatureRow>,
    chart: Option<String>,
    /// Multiclass linear models: each class's largest coefficients.
    per_class: Vec<ClassFeaturesView>,
}

/// One class's largest coefficients.
#[derive(Debug, Serialize)]
struct ClassFeaturesView {
    class: String,
    /// The class it is weighed against (one-vs-one).
    against: Option<String>,
    rows: Vec<FeatureRow>,
}

/// One of the top features: rank (1 = largest |weight|), index in the feature vector, name,
/// weight.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FeatureRow {
    rank: usize,
    index: usize,
    name: String,
    value: f64,
    value_text: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct LineageRow {
    pub(crate) label: &'static str,
    pub(crate) value: String,
    pub(crate) href: Option<String>,
}

impl RunView {
    /// The view of `run` for `medium`.
    pub(crate) fn new(run: &RunData, options: &RenderOptions, medium: Medium) -> Self {
        let with_charts = medium.html();
        let pooled = pooled_metrics(run);
        let loo = run.is_leave_one_out();
        let main = main_metric(run);
        let fold_columns = fold_metric_names(run);
        let folds = run
            .folds
            .iter()
            .map(|f| FoldView {
                fold: f.fold,
                n_train: f.n_train,
                n_test: f.n_test,
                values: fold_columns
                    .iter()
                    .map(|m| num(f.metrics.get(m).copied().unwrap_or(f64::NAN)))
                    .collect(),
            })
            .collect();
        let fold_metric = if run.folds.iter().any(|f| f.metrics.contains_key(main)) {
            main
        } else {
            "accuracy"
        };
        let fold_chart = (with_charts && !loo)
            .then(|| {
                let values: Vec<(u32, f64)> = run
                    .folds
                    .iter()
                    .map(|f| (f.fold, fold_value(f, fold_metric)))
                    .collect();
                charts::fold_scores(&metric_label(fold_metric), &values)
            })
            .flatten()
            .map(chart_html);

        let total = run.confusion_total();
        let confusion = confusion_rows(run, &total);
        let confusion_chart = with_charts
            .then(|| charts::confusion(&run.classes, &total))
            .flatten()
            .map(chart_html);

        let score = |name: &str| score_text(run, &pooled, name);
        let mut headline = vec![(metric_label(main), score(main))];
        if run.is_regression() {
            for name in ["mae", "rmse", "pearson_r"] {
                if run.metrics.contains_key(name) || pooled.contains_key(name) {
                    headline.push((metric_label(name), score(name)));
                }
            }
        } else {
            headline.push(("Accuracy".to_owned(), score("accuracy")));
        }
        // The curve's AUC is of the pooled scores; the stored metric is a mean over folds.
        if let Some(auc) = run.results.roc.as_ref().map(|r| r.auc) {
            headline.push(("ROC AUC (pooled)".to_owned(), num(auc)));
        } else if run.metrics.contains_key("roc_auc") && !loo {
            headline.push((
                "ROC AUC (mean over folds)".to_owned(),
                metric_text(run, "roc_auc"),
            ));
        }
        if let Some(p) = &run.results.permutation {
            headline.push(("Permutation p".to_owned(), pvalue(p.p_value)));
        }
        headline.push(("Samples".to_owned(), run.n_samples.to_string()));
        headline.push(("Sites".to_owned(), run.site_names().len().to_string()));
        if !run.classes.is_empty() {
            headline.push(("Classes".to_owned(), run.classes.len().to_string()));
        }

        RunView {
            summary: summary(run, medium.summary_flavour()),
            run_id: run.run_id.to_string(),
            project: run.project.clone(),
            model: run.model.clone(),
            created_at: run.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            task: task(run).to_owned(),
            leave_one_out: loo,
            headline,
            n_samples: run.n_samples,
            n_features: run.n_features,
            data: DataTable::new(run),
            target: target_rows(run),
            covariates: run
                .covariates
                .iter()
                .map(|c| CovariateRow {
                    name: c.name.clone(),
                    n: c.n,
                    mean: num(c.mean),
                    sd: num(c.sd),
                    min: num(c.min),
                    max: num(c.max),
                    not_numeric: c.n.saturating_sub(c.numeric),
                })
                .collect(),
            params: run
                .params
                .iter()
                .map(|(k, v)| (k.clone(), param_value(k, v)))
                .collect(),
            pipeline: pipeline_rows(run),
            validation: validation_rows(run),
            metrics: metric_rows(run, &pooled),
            fold_columns: fold_columns.iter().map(|m| metric_label(m)).collect(),
            folds,
            fold_metric: metric_label(fold_metric),
            fold_chart,
            classes: run.classes.clone(),
            confusion,
            confusion_chart,
            roc: roc_view(run, with_charts),
            fit: fit_view(run, with_charts),
            sites: sites_view(run, with_charts),
            grid: grid_view(run, with_charts),
            permutation: permutation_view(run, with_charts),
            held_out: run.results.held_out.as_ref().map(|h| HeldOutView {
                train_sites: h.train_sites.join(", "),
                test_sites: h.test_sites.join(", "),
                metrics: h
                    .metrics
                    .iter()
                    .map(|(k, v)| (metric_label(k), num(*v)))
                    .collect(),
            }),
            predictions: predictions_view(run, with_charts),
            features: features_view(run, with_charts),
            no_features: if run.results.feature_weights.is_some() {
                String::new()
            } else {
                no_weights_reason(run)
            },
            lineage: lineage_rows(
                ("Run id", run.run_id),
                run.job_id.as_deref(),
                run.trace_id.as_deref(),
                run.created_at,
                ("Training time", run.duration_ms),
                options,
            ),
        }
    }
}

/// A short paragraph: project, model, validation, the main score and accuracy (mean ± sd),
/// samples, sites and classes; Markdown or plain text.
pub(crate) fn summary(run: &RunData, flavour: Flavour) -> String {
    let sites = run.site_names();
    let site_list = if sites.is_empty() {
        String::new()
    } else {
        let shown: Vec<String> = sites.iter().take(5).map(|s| flavour.escape(s)).collect();
        let more = sites.len().saturating_sub(shown.len());
        if more > 0 {
            format!(" ({} and {more} more)", shown.join(", "))
        } else {
            format!(" ({})", shown.join(", "))
        }
    };
    let pooled = pooled_metrics(run);
    let score = |name: &str| flavour.strong(&score_text(run, &pooled, name));
    let scores = if main_metric(run) == "r2" {
        format!("R² {}", score("r2"))
    } else {
        format!(
            "accuracy {}, balanced accuracy {}",
            score("accuracy"),
            score("balanced_accuracy")
        )
    };
    let classes = if run.classes.is_empty() {
        String::new()
    } else {
        format!(", {} classes", run.classes.len())
    };
    let params = if run.params.is_empty() {
        String::new()
    } else {
        let params: Vec<String> = run
            .params
            .iter()
            .map(|(k, v)| {
                let v = param_value(k, v);
                format!("{}={}", flavour.escape(k), flavour.escape(&v))
            })
            .collect();
        format!(" ({})", params.join(", "))
    };
    format!(
        "Project {project}, model {model}{params}, {cv}: {scores} over {n} samples from \
         {n_sites}{site_list}{classes} (run {run_id}).",
        project = flavour.strong(&run.project),
        model = flavour.strong(&run.model),
        cv = flavour.escape(&run.cv_description()),
        n = run.n_samples,
        n_sites = plural(sites.len(), "site", "sites"),
        run_id = run.run_id,
    )
}

/// A chart for the page, or its error as a sentence (logged too).
pub(crate) fn chart_html(chart: charts::Svg) -> String {
    match chart {
        Ok(svg) => svg,
        Err(error) => {
            tracing::warn!(%error, "A report chart could not be drawn.");
            format!(
                "<p class=\"muted\">{}</p>",
                charts::html_escape(&format!("This chart could not be drawn: {error}"))
            )
        }
    }
}

/// `classification` or `regression`.
fn task(run: &RunData) -> &'static str {
    if main_metric(run) == "r2" {
        "regression"
    } else {
        "classification"
    }
}

fn fold_value(fold: &crate::model::FoldRow, metric: &str) -> f64 {
    match fold.metrics.get(metric) {
        Some(v) => *v,
        None if metric == "accuracy" => fold.accuracy,
        None if metric == "balanced_accuracy" => fold.balanced_accuracy,
        None => f64::NAN,
    }
}

/// Metric names that appear in any fold: the well-known ones in a fixed order, then the rest
/// alphabetically.
fn fold_metric_names(run: &RunData) -> Vec<String> {
    const ORDER: &[&str] = &[
        "accuracy",
        "balanced_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "roc_auc",
        "r2",
        "mae",
        "rmse",
        "pearson_r",
    ];
    let mut names: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for fold in &run.folds {
        for name in fold.metrics.keys() {
            if seen.insert(name.as_str()) {
                names.push(name.clone());
            }
        }
    }
    names.sort_by_key(|n| {
        (
            ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()),
            n.clone(),
        )
    });
    names
}

fn confusion_rows(run: &RunData, total: &[Vec<u64>]) -> Vec<ConfusionRow> {
    run.classes
        .iter()
        .zip(total)
        .enumerate()
        .map(|(i, (class, counts))| {
            let row_total = counts.iter().fold(0u64, |a, n| a.saturating_add(*n));
            ConfusionRow {
                class: class.clone(),
                cells: counts
                    .iter()
                    .enumerate()
                    .map(|(j, &count)| ConfusionCell {
                        count,
                        share: if row_total == 0 {
                            "–".to_owned()
                        } else {
                            format!("{:.0}%", count as f64 * 100.0 / row_total as f64)
                        },
                        diagonal: i == j,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Regression: the target per site, then over all sites.
fn target_rows(run: &RunData) -> Vec<TargetRow> {
    if !run.is_regression() {
        return Vec::new();
    }
    let row = |site: String, n: u64, [mean, sd, min, max]: [f64; 4]| TargetRow {
        site,
        n,
        mean: num(mean),
        sd: num(sd),
        min: num(min),
        max: num(max),
    };
    let mut rows: Vec<TargetRow> = run
        .target_by_site()
        .into_iter()
        .map(|(site, n, stats)| row(site, n, stats))
        .collect();
    if rows.len() > 1 {
        let (n, stats) = run.target_overall();
        rows.push(row("All sites".to_owned(), n, stats));
    }
    rows
}

fn fit_view(run: &RunData, with_charts: bool) -> Option<FitView> {
    if !run.is_regression() {
        return None;
    }
    let points = run.regression_points();
    let draw = |chart: fn(&[(f64, f64)]) -> Option<charts::Svg>| {
        with_charts
            .then(|| chart(&points))
            .flatten()
            .map(chart_html)
    };
    Some(FitView {
        n: points.len(),
        scatter: draw(charts::predicted_vs_true),
        residuals: draw(charts::residuals),
    })
}

fn roc_view(run: &RunData, with_charts: bool) -> Option<RocView> {
    let roc = run.results.roc.as_ref()?;
    Some(RocView {
        auc: num(roc.auc),
        points: roc.fpr.len().min(roc.tpr.len()),
        positive_class: run.results.positive_class.clone().unwrap_or_default(),
        chart: with_charts
            .then(|| charts::roc(&roc.fpr, &roc.tpr, roc.auc))
            .flatten()
            .map(chart_html),
    })
}

fn sites_view(run: &RunData, with_charts: bool) -> Option<SitesView> {
    let per_site = &run.results.per_site;
    if per_site.is_empty() {
        return None;
    }
    let mut columns: Vec<String> = Vec::new();
    for s in per_site {
        for k in s.metrics.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let main = main_metric(run);
    let metric = if columns.iter().any(|c| c == main) {
        main.to_owned()
    } else {
        columns.first().cloned().unwrap_or_default()
    };
    let chart = with_charts
        .then(|| {
            let names: Vec<String> = per_site.iter().map(|s| s.site.clone()).collect();
            let values: Vec<f64> = per_site
                .iter()
                .map(|s| s.metrics.get(&metric).copied().unwrap_or(f64::NAN))
                .collect();
            charts::bars("sites", &metric_label(&metric), &names, &values)
        })
        .flatten()
        .map(chart_html);
    Some(SitesView {
        rows: per_site
            .iter()
            .map(|s| SiteRow {
                site: s.site.clone(),
                n: s.n,
                values: columns
                    .iter()
                    .map(|c| num(s.metrics.get(c).copied().unwrap_or(f64::NAN)))
                    .collect(),
            })
            .collect(),
        columns: columns.iter().map(|c| metric_label(c)).collect(),
        metric: metric_label(&metric),
        chart,
    })
}

fn grid_view(run: &RunData, with_charts: bool) -> Option<GridView> {
    let grid = run.results.grid.as_ref()?;
    let mut params: Vec<String> = Vec::new();
    for c in &grid.candidates {
        for k in c.params.keys() {
            if !params.contains(k) {
                params.push(k.clone());
            }
        }
    }
    let label = |c: &broker_schemas::results::GridCandidate| {
        c.params
            .iter()
            .map(|(k, v)| format!("{k}={}", param_value(k, &v.to_string())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chart = with_charts
        .then(|| {
            let labels: Vec<String> = grid.candidates.iter().map(label).collect();
            let means: Vec<f64> = grid.candidates.iter().map(|c| c.score.mean).collect();
            let sds: Vec<f64> = grid.candidates.iter().map(|c| c.score.sd).collect();
            charts::grid_curve(
                &metric_label(&grid.metric),
                &labels,
                &means,
                &sds,
                grid.best,
            )
        })
        .flatten()
        .map(chart_html);
    let note = match grid.nested_folds {
        Some(k) => format!(
            "Nested validation: in each outer fold the candidate was chosen by an inner {k}-fold \
             over that fold's training rows only, so the run's scores never saw the choice \
             (chosen per fold: {}). The best candidate over all folds below is the refitted model.",
            grid.chosen
                .iter()
                .map(|&i| format!("#{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "The candidates were compared on the run's own folds, so the best one's score is \
                 optimistic; swarm train --nested measures it on folds that never saw the choice."
            .to_owned(),
    };
    Some(GridView {
        note,
        metric: metric_label(&grid.metric),
        rows: grid
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| GridRow {
                index: i,
                values: params
                    .iter()
                    .map(|p| {
                        c.params
                            .get(p)
                            .map(|v| param_value(p, &v.to_string()))
                            .unwrap_or_default()
                    })
                    .collect(),
                mean: num(c.score.mean),
                sd: num(c.score.sd),
                best: i == grid.best,
            })
            .collect(),
        best: grid
            .candidates
            .get(grid.best)
            .map(label)
            .unwrap_or_default(),
        params,
        chart,
    })
}

fn permutation_view(run: &RunData, with_charts: bool) -> Option<PermutationView> {
    let p = run.results.permutation.as_ref()?;
    let finite: Vec<f64> = p.scores.iter().copied().filter(|v| v.is_finite()).collect();
    let (mean, sd) = mean_sd(&finite);
    Some(PermutationView {
        metric: metric_label(&p.metric),
        observed: num(p.observed),
        p_value: pvalue(p.p_value),
        n: p.scores.len(),
        null_mean: num(mean),
        null_sd: num(sd),
        chart: with_charts
            .then(|| {
                charts::permutation(&metric_label(&p.metric), &p.scores, p.observed, p.p_value)
            })
            .flatten()
            .map(chart_html),
    })
}

/// Mean and sample sd (NaN when undefined).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn predictions_view(run: &RunData, with_charts: bool) -> PredictionsView {
    let regression = run.is_regression();
    let has_score = !regression && run.predictions.iter().any(|p| p.score.is_some());
    let correct = run
        .predictions
        .iter()
        .filter(|p| p.y_true == p.y_pred)
        .count();
    let csv = predictions_csv(&run.predictions, regression);
    PredictionsView {
        n: run.predictions.len(),
        correct,
        regression,
        has_score,
        shown: run
            .predictions
            .iter()
            .take(PREDICTION_ROWS_SHOWN)
            .map(|p| PredictionRow {
                repeat: p.repeat,
                site: p.site.clone(),
                subject: p.subject.clone(),
                fold: p.fold,
                y_true: p.y_true.clone(),
                y_pred: match p.predicted_value() {
                    Some(v) if regression => num(v),
                    _ => p.y_pred.clone(),
                },
                score: p.score.map(num).unwrap_or_else(|| "–".to_owned()),
                correct: p.y_true == p.y_pred,
                residual: p.residual().map(num).unwrap_or_else(|| "–".to_owned()),
            })
            .collect(),
        csv_kib: csv_kib(&csv),
        csv_href: csv_href(&csv, with_charts),
        csv,
        csv_name: format!("run-{}-predictions.csv", run.run_id),
    }
}

/// The predictions as CSV (RFC 4180): `repeat,site,subject,fold,y_true,y_pred,score,correct`,
/// or for a regression `…,y_pred,residual` (predicted − true).
pub fn predictions_csv(predictions: &[Prediction], regression: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(predictions.len() * 48 + 64);
    if regression {
        out.push_str("repeat,site,subject,fold,y_true,y_pred,residual\n");
    } else {
        out.push_str("repeat,site,subject,fold,y_true,y_pred,score,correct\n");
    }
    for p in predictions {
        // The columns both kinds share, then a regression's residual or a classifier's score
        // and correctness.
        let _ = write!(
            out,
            "{},{},{},{},{},{},",
            p.repeat,
            csv_field(&p.site),
            csv_field(&p.subject),
            p.fold,
            csv_field(&p.y_true),
            csv_field(&p.y_pred),
        );
        if regression {
            let residual = p.residual().map(|r| r.to_string()).unwrap_or_default();
            let _ = writeln!(out, "{residual}");
        } else {
            let score = p
                .score
                .filter(|s| s.is_finite())
                .map(|s| format!("{s}"))
                .unwrap_or_default();
            let _ = writeln!(out, "{score},{}", p.y_true == p.y_pred);
        }
    }
    out
}

/// The [`TOP_FEATURES`] largest weights by magnitude, named (region pairs when the project
/// has region labels).
pub(crate) fn top_features(run: &RunData) -> Vec<FeatureRow> {
    match &run.results.feature_weights {
        Some(w) => top_of(run, &w.values, TOP_FEATURES),
        None => Vec::new(),
    }
}

/// The `limit` largest of `values` by magnitude, named from the run's feature weights.
fn top_of(run: &RunData, values: &[f64], limit: usize) -> Vec<FeatureRow> {
    let names = run
        .results
        .feature_weights
        .as_ref()
        .map_or(&[][..], |w| &w.names[..]);
    let total = values.len();
    let mut order: Vec<usize> = (0..total).filter(|&i| values[i].is_finite()).collect();
    order.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()).then(a.cmp(&b)));
    order
        .into_iter()
        .take(limit)
        .enumerate()
        .map(|(rank, i)| FeatureRow {
            rank: rank + 1,
            index: i,
            // The project's names (a table's header) when there is one per feature.
            name: feature_name(
                i,
                (run.feature_names.len() == total)
                    .then(|| run.feature_names[i].as_str())
                    .or(names.get(i).map(String::as_str)),
                total,
                &run.region_labels,
            ),
            value: values[i],
            value_text: format!("{:.4}", values[i]),
        })
        .collect()
}

/// Why a run has no feature weights, from its model: a report never just says there are none.
pub(crate) fn no_weights_reason(run: &RunData) -> String {
    let param = |name: &str| run.params.get(name).map(String::as_str);
    let kernel = param("kernel").unwrap_or("rbf");
    let pca = run.results.pipeline.pca_components.is_some();
    match run.model.as_str() {
        "svc" | "svr" if kernel != "linear" => format!(
            "an {} with the {kernel} kernel has no weight per feature: its decision is made from \
             its support vectors.",
            run.model.to_uppercase()
        ),
        "knn" => "KNN has no weight per feature: it predicts from the nearest training subjects."
            .to_owned(),
        "gaussian_nb" => "Gaussian naive Bayes has no weight per feature: it models each \
                          feature's distribution per class."
            .to_owned(),
        "random_forest" | "random_forest_regressor" | "decision_tree" if pca => "importances of \
             PCA components cannot be mapped back to the input features."
            .to_owned(),
        model => format!("the train worker stored no weights for this {model} run."),
    }
}

fn features_view(run: &RunData, with_charts: bool) -> Option<FeaturesView> {
    let w = run.results.feature_weights.as_ref()?;
    let rows = top_features(run);
    let total = w.values.len();
    let by_regions = {
        let r = run.region_labels.len();
        r >= 2 && r * (r - 1) / 2 == total
    };
    let chart = with_charts
        .then(|| {
            let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
            let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
            charts::features(&w.kind, &names, &values)
        })
        .flatten()
        .map(chart_html);
    let kind = match (w.kind.as_str(), w.per_class.is_empty()) {
        ("", _) => "weights".to_owned(),
        // The overall values of a multiclass model are means of |coefficient| over classes (or
        // over class pairs, one-vs-one).
        (kind, false) if w.per_class.iter().any(|c| c.against.is_some()) => {
            format!("mean |{kind}| over the class pairs")
        }
        (kind, false) => format!("mean |{kind}| over the classes"),
        (kind, true) => kind.to_owned(),
    };
    Some(FeaturesView {
        kind,
        total,
        by_regions,
        rows,
        chart,
        per_class: w
            .per_class
            .iter()
            .map(|c| ClassFeaturesView {
                class: c.class.clone(),
                against: c.against.clone(),
                rows: top_of(run, &c.values, CLASS_TOP_FEATURES),
            })
            .collect(),
    })
}

/// Samples per site (rows) and class (columns), with totals.
#[derive(Debug, Serialize)]
struct DataTable {
    classes: Vec<String>,
    rows: Vec<DataRow>,
    class_totals: Vec<u64>,
    total: u64,
}

#[derive(Debug, Serialize)]
struct DataRow {
    site: String,
    counts: Vec<u64>,
    total: u64,
}

impl DataTable {
    fn new(run: &RunData) -> Self {
        let classes = run.summary_classes();
        let mut class_totals = vec![0u64; classes.len()];
        let rows: Vec<DataRow> = run
            .data_summary
            .iter()
            .map(|(site, per_class)| {
                let counts: Vec<u64> = classes
                    .iter()
                    .map(|c| per_class.get(*c).copied().unwrap_or(0))
                    .collect();
                for (total, n) in class_totals.iter_mut().zip(&counts) {
                    *total = total.saturating_add(*n);
                }
                DataRow {
                    site: site.clone(),
                    total: counts.iter().fold(0u64, |a, n| a.saturating_add(*n)),
                    counts,
                }
            })
            .collect();
        let total = class_totals.iter().fold(0u64, |a, n| a.saturating_add(*n));
        DataTable {
            classes: classes.into_iter().map(str::to_owned).collect(),
            rows,
            class_totals,
            total,
        }
    }
}

/// One metrics table row, numbers already formatted.
#[derive(Debug, Serialize)]
struct MetricRow {
    label: String,
    mean: String,
    sd: String,
    /// Over all out-of-fold predictions at once, or `–`.
    pooled: String,
}

/// `runs.metrics`, completed by `results.metrics` for names it lacks, with the pooled value of
/// each; leave-one-out keeps only the pooled ones (a mean of one-sample folds means nothing).
fn metric_rows(run: &RunData, pooled: &BTreeMap<String, f64>) -> Vec<MetricRow> {
    let mut all: BTreeMap<&str, (f64, f64)> = run
        .metrics
        .iter()
        .map(|(k, m)| (k.as_str(), (m.mean, m.sd)))
        .collect();
    for (k, m) in &run.results.metrics {
        all.entry(k.as_str()).or_insert((m.mean, m.sd));
    }
    for k in pooled.keys() {
        all.entry(k.as_str()).or_insert((f64::NAN, f64::NAN));
    }
    let loo = run.is_leave_one_out();
    all.into_iter()
        .filter(|(name, _)| !loo || pooled.contains_key(*name))
        .map(|(name, (mean, sd))| MetricRow {
            label: metric_label(name),
            mean: num(mean),
            sd: num(sd),
            pooled: pooled.get(name).map_or_else(|| "–".to_owned(), |v| num(*v)),
        })
        .collect()
}

/// A headline score: pooled for leave-one-out, else `mean ± sd` over the folds.
fn score_text(run: &RunData, pooled: &BTreeMap<String, f64>, name: &str) -> String {
    if run.is_leave_one_out() {
        pooled
            .get(name)
            .map_or_else(|| "n/a".to_owned(), |v| num(*v))
    } else {
        metric_text(run, name)
    }
}

/// The preprocessing pipeline as (label, value) pairs.
fn pipeline_rows(run: &RunData) -> Vec<(&'static str, String)> {
    let p = &run.results.pipeline;
    let mut rows = vec![("Task", task(run).to_owned())];
    if let Some(text) = &p.text {
        rows.push(("Text features", text_features(text)));
    }
    rows.extend([(
        "Standardisation",
        match p.scaler.as_str() {
            "" => "not recorded".to_owned(),
            "global" => "z-score, fitted on each fold's training rows".to_owned(),
            "per_site" => "z-score per site, fitted on each fold's training rows".to_owned(),
            "none" => "none".to_owned(),
            other => other.to_owned(),
        },
    )]);
    if let Some(pct) = p.select_percentile {
        rows.push((
            "Feature selection",
            format!("ANOVA F-test, top {pct}% of features, inside each fold"),
        ));
    }
    if let Some(k) = p.pca_components {
        rows.push(("PCA", format!("{k} components, inside each fold")));
    }
    if let Some(pos) = &run.results.positive_class {
        rows.push(("Positive class", pos.clone()));
    }
    rows
}

/// How a text run's documents became features.
fn text_features(text: &TextSummary) -> String {
    match text.kind.as_str() {
        "tfidf" => {
            let mut sentence = format!(
                "TF-IDF of words and word pairs (sublinear TF, smooth IDF, unit-length rows), \
                 fitted inside each fold on its training documents only; min_df {}, \
                 max_features {}",
                text.min_df.unwrap_or(1),
                text.max_features
                    .map_or_else(|| "none".to_owned(), |m| m.to_string())
            );
            if let Some(n) = text.vocabulary {
                sentence.push_str(&format!("; the final model's vocabulary has {n} terms"));
            }
            sentence
        }
        "hashed" => "hashed word and word-pair frequencies (4,096 buckets) from the features \
                     worker"
            .to_owned(),
        other => other.to_owned(),
    }
}

/// Validation settings as (label, value) pairs.
fn validation_rows(run: &RunData) -> Vec<(&'static str, String)> {
    let mut rows = vec![("Scheme", run.cv_description())];
    rows.push(("Folds run", run.folds.len().to_string()));
    let sites = if run.sites.is_empty() {
        "all".to_owned()
    } else {
        run.sites.join(", ")
    };
    rows.push(("Sites requested", sites));
    if let Some(h) = &run.results.held_out {
        rows.push(("Held-out test sites", h.test_sites.join(", ")));
    }
    rows
}

/// Lineage as rows; the trace id links to Jaeger when configured.
pub(crate) fn lineage_rows(
    (id_label, id): (&'static str, uuid::Uuid),
    job_id: Option<&str>,
    trace_id: Option<&str>,
    created_at: chrono::DateTime<chrono::Utc>,
    (duration_label, duration_ms): (&'static str, i64),
    options: &RenderOptions,
) -> Vec<LineageRow> {
    let row = |label, value: String| LineageRow {
        label,
        value,
        href: None,
    };
    vec![
        row(id_label, id.to_string()),
        row("Job id", job_id.unwrap_or("–").to_owned()),
        LineageRow {
            label: "Trace id",
            value: trace_id.unwrap_or("–").to_owned(),
            href: trace_id.and_then(|t| options.trace_url(t)),
        },
        row("Finished at", created_at.to_rfc3339()),
        row(duration_label, duration(duration_ms)),
    ]
}
