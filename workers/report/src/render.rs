//! Rendering a run as a summary, Markdown, a self-contained HTML page and JSON (statistics jobs
//! are in [`crate::stats`]).
//!
//! Pure functions, no I/O. Every format shows the same sections, in this order: the headline,
//! the data (samples per site and class), the model and its parameters (and the preprocessing
//! pipeline), the validation scheme, the metrics (mean ± sd), the folds (every metric per fold),
//! the confusion matrix summed over the folds, the ROC curve, the per-site scores, the grid
//! search, the permutation test, held-out sites, the per-subject out-of-fold predictions, the top
//! features and the lineage. A section with nothing to show says so instead of disappearing.
//! The HTML adds the charts ([`crate::charts`]) and carries the predictions as a CSV file to
//! download (a `data:` link inside the page); Markdown carries the same CSV as a fenced block.
//!
//! Escaping invariant: project, model, parameter, site, class, subject and feature names come
//! from producers and are never trusted. The HTML pages are minijinja templates with HTML
//! auto-escaping on for every value (the charts, drawn by our code, are the only values marked
//! safe, and plotters escapes their text); Markdown backslash-escapes the characters that would
//! start markup or break a table cell. The page loads nothing: inline CSS and SVG, no script, and
//! a `Content-Security-Policy` that forbids every fetch. The only URL it may carry is the link
//! to the run's trace, when `JAEGER_UI_URL` is set.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine as _;
use serde::Serialize;

use crate::charts;
use crate::model::{feature_name, Prediction, RunData, Subject};

/// The templates: the run page and the statistics page, the page around both (`page.html`:
/// head, header, lineage, footer), the macros they share and the stylesheet.
const TEMPLATES: &[(&str, &str)] = &[
    ("report.html", include_str!("../templates/report.html")),
    ("stats.html", include_str!("../templates/stats.html")),
    ("page.html", include_str!("../templates/page.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("style.css", include_str!("../templates/style.css")),
];
/// The `format` field of a run's JSON document.
pub const JSON_FORMAT: &str = "swarm.report.v1";
/// Prediction rows shown as a table in the HTML page; the CSV inside the page has them all.
pub const PREDICTION_ROWS_SHOWN: usize = 100;
/// Features shown in the top-features table and chart.
pub const TOP_FEATURES: usize = 20;

/// Why a page could not be rendered: a defect of the template, never of the data.
#[derive(Debug, thiserror::Error)]
#[error("cannot render the HTML report: {0}")]
pub struct RenderError(#[from] minijinja::Error);

/// Every rendering of one run or statistics job, as stored in a `reports` row.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// A short Markdown paragraph.
    pub summary: String,
    /// The whole report as Markdown.
    pub markdown: String,
    /// The whole report as one self-contained HTML page.
    pub html: String,
    /// The whole report as a JSON document.
    pub json: serde_json::Value,
}

/// What a rendering may link to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderOptions {
    /// The Jaeger UI (`JAEGER_UI_URL`, e.g. `http://localhost:16686`): the trace id links to
    /// `<url>/trace/<trace id>`. Unset (the default): no link, and the page carries no URL.
    pub jaeger_ui_url: Option<String>,
}

impl RenderOptions {
    /// Reads `JAEGER_UI_URL`; a value that is not an `http(s)://` URL is ignored with a warning.
    pub fn from_env() -> Self {
        let url = std::env::var("JAEGER_UI_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let options = RenderOptions {
            jaeger_ui_url: url.clone(),
        };
        if let Some(url) = url {
            if options.base_url().is_none() {
                tracing::warn!(
                    url,
                    "JAEGER_UI_URL is not an http(s) URL; traces are not linked."
                );
            }
        }
        options
    }

    fn base_url(&self) -> Option<&str> {
        let url = self.jaeger_ui_url.as_deref()?.trim().trim_end_matches('/');
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && !url.contains(['"', '<', '>', ' ', '\'']);
        ok.then_some(url)
    }

    /// The Jaeger page of a trace, when a Jaeger UI is configured and the id is hex.
    pub fn trace_url(&self, trace_id: &str) -> Option<String> {
        let hex = !trace_id.is_empty() && trace_id.chars().all(|c| c.is_ascii_hexdigit());
        hex.then(|| {
            self.base_url()
                .map(|base| format!("{base}/trace/{trace_id}"))
        })
        .flatten()
    }
}

/// Renders every format of a run or a statistics job.
pub fn all(subject: &Subject, options: &RenderOptions) -> Result<Rendered, RenderError> {
    match subject {
        Subject::Run(run) => run_report(run, options),
        Subject::Stats(stats) => crate::stats::report(stats, options),
    }
}

/// Renders every format of a run.
pub fn run_report(run: &RunData, options: &RenderOptions) -> Result<Rendered, RenderError> {
    let view = RunView::new(run, options, true);
    Ok(Rendered {
        summary: summary(run),
        markdown: markdown_of(run, &view),
        html: render_template("report.html", &view)?,
        json: json(run, options),
    })
}

/// The template environment, built once: HTML auto-escaping for every template, strict
/// undefined values (a typo in a template is an error, not an empty string).
fn environment() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            // The templates are compiled in; a syntax error shows at render time below.
            if let Err(error) = env.add_template(name, source) {
                tracing::error!(template = name, %error, "A report template does not compile.");
            }
        }
        env
    })
}

/// Renders one of [`TEMPLATES`] with a view.
pub(crate) fn render_template<V: Serialize>(name: &str, view: &V) -> Result<String, RenderError> {
    let page = environment()
        .get_template(name)?
        .render(minijinja::value::Serde(view))?;
    Ok(page)
}

/// A short Markdown paragraph: project, model, validation, the main score and accuracy (mean ±
/// sd), samples, sites and classes.
pub fn summary(run: &RunData) -> String {
    let sites = run.site_names();
    let site_list = if sites.is_empty() {
        String::new()
    } else {
        let shown: Vec<String> = sites.iter().take(5).map(|s| md_escape(s)).collect();
        let more = sites.len().saturating_sub(shown.len());
        if more > 0 {
            format!(" ({} and {more} more)", shown.join(", "))
        } else {
            format!(" ({})", shown.join(", "))
        }
    };
    let main = main_metric(run);
    let scores = if main == "r2" {
        format!("R² **{}**", metric_text(run, "r2"))
    } else {
        format!(
            "accuracy **{}**, balanced accuracy **{}**",
            metric_text(run, "accuracy"),
            metric_text(run, "balanced_accuracy")
        )
    };
    let classes = if run.classes.is_empty() {
        String::new()
    } else {
        format!(", {} classes", run.classes.len())
    };
    format!(
        "Project **{project}**, model **{model}**{params}, {cv}: {scores} over {n} samples from \
         {n_sites}{site_list}{classes} (run {run_id}).",
        project = md_escape(&run.project),
        model = md_escape(&run.model),
        params = params_inline(run),
        cv = md_escape(&run.cv.describe()),
        n = run.n_samples,
        n_sites = plural(sites.len(), "site", "sites"),
        run_id = run.run_id,
    )
}

/// The whole report as Markdown, every section as a table.
pub fn markdown(run: &RunData, options: &RenderOptions) -> String {
    markdown_of(run, &RunView::new(run, options, false))
}

/// The whole report as one self-contained HTML page.
pub fn html(run: &RunData, options: &RenderOptions) -> Result<String, RenderError> {
    render_template("report.html", &RunView::new(run, options, true))
}

/// The report as a JSON document: every [`RunData`] field (results and predictions included)
/// plus `format` (`swarm.report.v1`), `summary`, `cv_description`, `main_metric`,
/// `confusion_total`, `top_features` (named) and `trace_url`. Non-finite numbers become `null`.
pub fn json(run: &RunData, options: &RenderOptions) -> serde_json::Value {
    #[derive(Serialize)]
    struct Document<'a> {
        format: &'static str,
        kind: &'static str,
        #[serde(flatten)]
        run: &'a RunData,
        summary: String,
        cv_description: String,
        main_metric: &'static str,
        confusion_total: Vec<Vec<u64>>,
        top_features: Vec<FeatureRow>,
        trace_url: Option<String>,
    }
    let document = Document {
        format: JSON_FORMAT,
        kind: "run",
        run,
        summary: summary(run),
        cv_description: run.cv.describe(),
        main_metric: main_metric(run),
        confusion_total: run.confusion_total(),
        top_features: top_features(run),
        trace_url: run.trace_id.as_deref().and_then(|t| options.trace_url(t)),
    };
    to_json(&document)
}

/// Serialises a document; never panics.
pub(crate) fn to_json<T: Serialize>(document: &T) -> serde_json::Value {
    match serde_json::to_value(document) {
        Ok(value) => value,
        // Unreachable: every map has string keys. Still no panic.
        Err(error) => serde_json::Value::from(format!("cannot serialise the report: {error}")),
    }
}

/// The metric that ranks runs: `r2` for regression, else `balanced_accuracy`.
pub fn main_metric(run: &RunData) -> &'static str {
    if run.results.task == "regression" || run.metrics.contains_key("r2") {
        "r2"
    } else {
        "balanced_accuracy"
    }
}

// ---------------------------------------------------------------------------------------------
// The view: every section, formatted once, shared by the HTML template and the Markdown.

/// Everything a run's report shows, formatted. The template escapes every string; the charts
/// are `None` in the Markdown view.
#[derive(Debug, Serialize)]
struct RunView {
    run_id: String,
    project: String,
    model: String,
    created_at: String,
    task: String,
    headline: Vec<(String, String)>,
    n_samples: u32,
    n_features: u32,
    data: DataTable,
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
    sites: Option<SitesView>,
    grid: Option<GridView>,
    permutation: Option<PermutationView>,
    held_out: Option<HeldOutView>,
    predictions: PredictionsView,
    features: Option<FeaturesView>,
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
}

#[derive(Debug, Serialize)]
struct FeaturesView {
    kind: String,
    total: usize,
    by_regions: bool,
    rows: Vec<FeatureRow>,
    chart: Option<String>,
}

/// One of the top features: rank (1 = largest |weight|), index in the feature vector, name,
/// weight.
#[derive(Debug, Clone, Serialize)]
struct FeatureRow {
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
    fn new(run: &RunData, options: &RenderOptions, with_charts: bool) -> Self {
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
        let fold_chart = with_charts
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

        let mut headline = vec![(metric_label(main), metric_text(run, main))];
        if main != "r2" {
            headline.push(("Accuracy".to_owned(), metric_text(run, "accuracy")));
        }
        if let Some(auc) = run.results.roc.as_ref().map(|r| r.auc) {
            headline.push(("ROC AUC".to_owned(), num(auc)));
        } else if run.metrics.contains_key("roc_auc") {
            headline.push(("ROC AUC".to_owned(), metric_text(run, "roc_auc")));
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
            run_id: run.run_id.to_string(),
            project: run.project.clone(),
            model: run.model.clone(),
            created_at: run.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            task: task(run).to_owned(),
            headline,
            n_samples: run.n_samples,
            n_features: run.n_features,
            data: DataTable::new(run),
            params: run
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            pipeline: pipeline_rows(run),
            validation: validation_rows(run),
            metrics: metric_rows(run),
            fold_columns: fold_columns.iter().map(|m| metric_label(m)).collect(),
            folds,
            fold_metric: metric_label(fold_metric),
            fold_chart,
            classes: run.classes.clone(),
            confusion,
            confusion_chart,
            roc: roc_view(run, with_charts),
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
            .map(|(k, v)| format!("{k}={v}"))
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
                    .map(|p| c.params.get(p).map(|v| v.to_string()).unwrap_or_default())
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
    let has_score = run.predictions.iter().any(|p| p.score.is_some());
    let correct = run
        .predictions
        .iter()
        .filter(|p| p.y_true == p.y_pred)
        .count();
    let csv = predictions_csv(&run.predictions);
    PredictionsView {
        n: run.predictions.len(),
        correct,
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
                y_pred: p.y_pred.clone(),
                score: p.score.map(num).unwrap_or_else(|| "–".to_owned()),
                correct: p.y_true == p.y_pred,
            })
            .collect(),
        csv_kib: csv_kib(&csv),
        csv_href: csv_href(&csv, with_charts),
        csv,
        csv_name: format!("run-{}-predictions.csv", run.run_id),
    }
}

/// The predictions as CSV (RFC 4180): `repeat,site,subject,fold,y_true,y_pred,score,correct`.
pub fn predictions_csv(predictions: &[Prediction]) -> String {
    let mut out = String::with_capacity(predictions.len() * 48 + 64);
    out.push_str("repeat,site,subject,fold,y_true,y_pred,score,correct\n");
    for p in predictions {
        use std::fmt::Write as _;
        let score = p
            .score
            .filter(|s| s.is_finite())
            .map(|s| format!("{s}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            p.repeat,
            csv_field(&p.site),
            csv_field(&p.subject),
            p.fold,
            csv_field(&p.y_true),
            csv_field(&p.y_pred),
            score,
            p.y_true == p.y_pred,
        );
    }
    out
}

/// One CSV text field: quoted when it holds a comma, quote or line break; a leading `=`, `+`,
/// `-`, `@` or tab is prefixed with `'` so a spreadsheet does not run it as a formula.
pub(crate) fn csv_field(text: &str) -> String {
    let mut value = String::with_capacity(text.len() + 2);
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        value.push('\'');
    }
    value.push_str(text);
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The `data:` link that downloads `csv` from the page; empty in the Markdown view (no charts),
/// which carries the CSV itself.
pub(crate) fn csv_href(csv: &str, with_charts: bool) -> String {
    if !with_charts {
        return String::new();
    }
    let mut href = String::from("data:text/csv;charset=utf-8;base64,");
    base64::engine::general_purpose::STANDARD.encode_string(csv.as_bytes(), &mut href);
    href
}

/// The size of a CSV download in KiB, one decimal.
pub(crate) fn csv_kib(csv: &str) -> String {
    format!("{:.1}", csv.len() as f64 / 1024.0)
}

/// The [`TOP_FEATURES`] largest weights by magnitude, named (region pairs when the project
/// has region labels).
fn top_features(run: &RunData) -> Vec<FeatureRow> {
    let Some(w) = &run.results.feature_weights else {
        return Vec::new();
    };
    let total = w.values.len();
    let mut order: Vec<usize> = (0..total).filter(|&i| w.values[i].is_finite()).collect();
    order.sort_by(|&a, &b| {
        w.values[b]
            .abs()
            .total_cmp(&w.values[a].abs())
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .take(TOP_FEATURES)
        .enumerate()
        .map(|(rank, i)| FeatureRow {
            rank: rank + 1,
            index: i,
            name: feature_name(
                i,
                w.names.get(i).map(String::as_str),
                total,
                &run.region_labels,
            ),
            value: w.values[i],
            value_text: format!("{:.4}", w.values[i]),
        })
        .collect()
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
    Some(FeaturesView {
        kind: if w.kind.is_empty() {
            "weights".to_owned()
        } else {
            w.kind.clone()
        },
        total,
        by_regions,
        rows,
        chart,
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
}

/// `runs.metrics`, completed by `results.metrics` for names it lacks.
fn metric_rows(run: &RunData) -> Vec<MetricRow> {
    let mut all: BTreeMap<&str, (f64, f64)> = run
        .metrics
        .iter()
        .map(|(k, m)| (k.as_str(), (m.mean, m.sd)))
        .collect();
    for (k, m) in &run.results.metrics {
        all.entry(k.as_str()).or_insert((m.mean, m.sd));
    }
    all.into_iter()
        .map(|(name, (mean, sd))| MetricRow {
            label: metric_label(name),
            mean: num(mean),
            sd: num(sd),
        })
        .collect()
}

/// The preprocessing pipeline as (label, value) pairs.
fn pipeline_rows(run: &RunData) -> Vec<(&'static str, String)> {
    let p = &run.results.pipeline;
    let mut rows = vec![
        ("Task", task(run).to_owned()),
        (
            "Standardisation",
            match p.scaler.as_str() {
                "" => "not recorded".to_owned(),
                "global" => "z-score, fitted on each fold's training rows".to_owned(),
                "per_site" => "z-score per site, fitted on each fold's training rows".to_owned(),
                other => other.to_owned(),
            },
        ),
    ];
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

/// Validation settings as (label, value) pairs.
fn validation_rows(run: &RunData) -> Vec<(&'static str, String)> {
    let mut rows = vec![("Scheme", run.cv.describe())];
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

// ---------------------------------------------------------------------------------------------
// Markdown.

fn markdown_of(run: &RunData, view: &RunView) -> String {
    let mut out = String::new();
    push_line(&mut out, &format!("# Report for run {}", run.run_id));
    push_line(&mut out, "");
    push_line(&mut out, &summary(run));
    push_line(&mut out, "");
    let cells: Vec<String> = view
        .headline
        .iter()
        .map(|(k, v)| format!("{}: **{}**", md_escape(k), md_escape(v)))
        .collect();
    push_line(&mut out, &cells.join(" · "));

    section(&mut out, "Data");
    push_line(
        &mut out,
        &format!(
            "{} samples with {} features each, by site and class.",
            run.n_samples, run.n_features
        ),
    );
    push_line(&mut out, "");
    let data = &view.data;
    let mut header = vec!["Site".to_owned()];
    header.extend(data.classes.iter().map(|c| md_escape(c)));
    header.push("Total".to_owned());
    let mut rows: Vec<Vec<String>> = data
        .rows
        .iter()
        .map(|row| {
            let mut cells = vec![md_escape(&row.site)];
            cells.extend(row.counts.iter().map(u64::to_string));
            cells.push(row.total.to_string());
            cells
        })
        .collect();
    let mut totals = vec!["**Total**".to_owned()];
    totals.extend(data.class_totals.iter().map(|n| format!("**{n}**")));
    totals.push(format!("**{}**", data.total));
    rows.push(totals);
    md_table(&mut out, &header, &rows, Columns::Numeric);

    section(&mut out, "Model");
    push_line(&mut out, &format!("Model: **{}**.", md_escape(&run.model)));
    push_line(&mut out, "");
    if run.params.is_empty() {
        push_line(&mut out, "Parameters: the model's defaults.");
    } else {
        let rows: Vec<Vec<String>> = run
            .params
            .iter()
            .map(|(k, v)| vec![md_escape(k), md_escape(v)])
            .collect();
        md_table(&mut out, &["Parameter", "Value"], &rows, Columns::Text);
    }
    push_line(&mut out, "");
    md_kv_table(&mut out, ["Pipeline step", "Setting"], &view.pipeline);

    section(&mut out, "Validation");
    md_kv_table(&mut out, ["Setting", "Value"], &view.validation);

    section(&mut out, "Metrics");
    let rows: Vec<Vec<String>> = view
        .metrics
        .iter()
        .map(|m| vec![md_escape(&m.label), m.mean.clone(), m.sd.clone()])
        .collect();
    md_table(&mut out, &["Metric", "Mean", "SD"], &rows, Columns::Numeric);

    section(&mut out, "Folds");
    let mut header = vec!["Fold".to_owned(), "Train".to_owned(), "Test".to_owned()];
    header.extend(view.fold_columns.iter().map(|c| md_escape(c)));
    let rows: Vec<Vec<String>> = view
        .folds
        .iter()
        .map(|f| {
            let mut cells = vec![
                f.fold.to_string(),
                f.n_train.to_string(),
                f.n_test.to_string(),
            ];
            cells.extend(f.values.iter().cloned());
            cells
        })
        .collect();
    md_table(&mut out, &header, &rows, Columns::Numeric);

    section(&mut out, "Confusion matrix (summed over folds)");
    if view.classes.is_empty() {
        push_line(&mut out, "Not applicable: the run has no classes.");
    } else {
        push_line(
            &mut out,
            "Rows are true classes, columns predicted classes.",
        );
        push_line(&mut out, "");
        let mut header = vec!["True \\\\ predicted".to_owned()];
        header.extend(view.classes.iter().map(|c| md_escape(c)));
        let rows: Vec<Vec<String>> = view
            .confusion
            .iter()
            .map(|row| {
                let mut cells = vec![md_escape(&row.class)];
                cells.extend(row.cells.iter().map(|c| c.count.to_string()));
                cells
            })
            .collect();
        md_table(&mut out, &header, &rows, Columns::Numeric);
    }

    section(&mut out, "ROC curve");
    match &view.roc {
        Some(roc) => push_line(
            &mut out,
            &format!(
                "Pooled out-of-fold ROC curve of the positive class **{}**: AUC **{}** ({} \
                 points; the curve is drawn in the HTML report).",
                md_escape(&roc.positive_class),
                roc.auc,
                roc.points
            ),
        ),
        None => push_line(
            &mut out,
            "Not available for this run (binary classification only).",
        ),
    }

    section(&mut out, "Scores per site");
    match &view.sites {
        Some(sites) => {
            let mut header = vec!["Site".to_owned(), "Samples".to_owned()];
            header.extend(sites.columns.iter().map(|c| md_escape(c)));
            let rows: Vec<Vec<String>> = sites
                .rows
                .iter()
                .map(|r| {
                    let mut cells = vec![md_escape(&r.site), r.n.to_string()];
                    cells.extend(r.values.iter().cloned());
                    cells
                })
                .collect();
            md_table(&mut out, &header, &rows, Columns::Numeric);
        }
        None => push_line(&mut out, "Not recorded for this run."),
    }

    section(&mut out, "Grid search");
    match &view.grid {
        Some(grid) => {
            push_line(
                &mut out,
                &format!(
                    "Candidates scored by {} under the run's validation scheme; best: **{}**.",
                    md_escape(&grid.metric),
                    md_escape(&grid.best)
                ),
            );
            push_line(&mut out, "");
            push_line(&mut out, &md_escape(&grid.note));
            push_line(&mut out, "");
            let mut header = vec!["#".to_owned()];
            header.extend(grid.params.iter().map(|p| md_escape(p)));
            header.extend(["Mean".to_owned(), "SD".to_owned(), "Best".to_owned()]);
            let rows: Vec<Vec<String>> = grid
                .rows
                .iter()
                .map(|r| {
                    let mut cells = vec![r.index.to_string()];
                    cells.extend(r.values.iter().map(|v| md_escape(v)));
                    cells.extend([
                        r.mean.clone(),
                        r.sd.clone(),
                        if r.best {
                            "★".to_owned()
                        } else {
                            String::new()
                        },
                    ]);
                    cells
                })
                .collect();
            md_table(&mut out, &header, &rows, Columns::Numeric);
        }
        None => push_line(&mut out, "No parameter grid was searched."),
    }

    section(&mut out, "Permutation test");
    match &view.permutation {
        Some(p) => {
            let rows = vec![
                vec!["Metric".to_owned(), md_escape(&p.metric)],
                vec!["Observed score".to_owned(), p.observed.clone()],
                vec!["Permutations".to_owned(), p.n.to_string()],
                vec![
                    "Permuted scores (mean ± sd)".to_owned(),
                    format!("{} ± {}", p.null_mean, p.null_sd),
                ],
                vec!["p-value".to_owned(), p.p_value.clone()],
            ];
            md_table(&mut out, &["", "Value"], &rows, Columns::Text);
        }
        None => push_line(&mut out, "No permutation test was run."),
    }

    if let Some(h) = &view.held_out {
        section(&mut out, "Held-out sites");
        push_line(
            &mut out,
            &format!(
                "Trained on {}, tested on {}.",
                md_escape(&h.train_sites),
                md_escape(&h.test_sites)
            ),
        );
        push_line(&mut out, "");
        let rows: Vec<Vec<String>> = h
            .metrics
            .iter()
            .map(|(k, v)| vec![md_escape(k), v.clone()])
            .collect();
        md_table(&mut out, &["Metric", "Value"], &rows, Columns::Numeric);
    }

    section(&mut out, "Out-of-fold predictions");
    let p = &view.predictions;
    if p.n == 0 {
        push_line(&mut out, "No per-subject predictions were stored.");
    } else {
        push_line(
            &mut out,
            &format!(
                "{} predictions, {} correct. Every subject, as CSV:",
                p.n, p.correct
            ),
        );
        push_line(&mut out, "");
        push_line(&mut out, "```csv");
        // A line of backticks in a field cannot end the fence: CSV quotes it on one line.
        out.push_str(&p.csv.replace("```", "'''"));
        push_line(&mut out, "```");
    }

    section(&mut out, "Top features");
    match &view.features {
        Some(f) => {
            push_line(
                &mut out,
                &format!(
                    "The {} largest of {} {} by magnitude.",
                    f.rows.len(),
                    f.total,
                    md_escape(&f.kind)
                ),
            );
            push_line(&mut out, "");
            let rows: Vec<Vec<String>> = f
                .rows
                .iter()
                .map(|r| {
                    vec![
                        r.rank.to_string(),
                        md_escape(&r.name),
                        r.index.to_string(),
                        r.value_text.clone(),
                    ]
                })
                .collect();
            md_table(
                &mut out,
                &["Rank", "Feature", "Index", "Weight"],
                &rows,
                Columns::Numeric,
            );
        }
        None => push_line(&mut out, "No feature weights were stored."),
    }

    md_lineage(&mut out, &view.lineage);
    out
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers, shared with the statistics report.

/// `accuracy` → `Accuracy`, `balanced_accuracy` → `Balanced accuracy`, `roc_auc` → `ROC AUC`.
pub(crate) fn metric_label(name: &str) -> String {
    match name {
        "accuracy" => "Accuracy".to_owned(),
        "balanced_accuracy" => "Balanced accuracy".to_owned(),
        "precision_macro" => "Precision (macro)".to_owned(),
        "recall_macro" => "Recall (macro)".to_owned(),
        "f1_macro" => "F1 (macro)".to_owned(),
        "roc_auc" => "ROC AUC".to_owned(),
        "r2" => "R²".to_owned(),
        "mae" => "MAE".to_owned(),
        "rmse" => "RMSE".to_owned(),
        other => {
            let spaced = other.replace('_', " ");
            let mut chars = spaced.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        }
    }
}

/// `mean ± sd` of a metric, or `n/a`.
pub(crate) fn metric_text(run: &RunData, name: &str) -> String {
    match run.metric(name) {
        Some(m) if m.mean.is_finite() && m.sd.is_finite() => {
            format!("{} ± {}", num(m.mean), num(m.sd))
        }
        Some(m) => num(m.mean),
        None => "n/a".to_owned(),
    }
}

/// Parameters for the summary: ` (C=1.0, kernel=rbf)`, or nothing.
pub(crate) fn params_inline(run: &RunData) -> String {
    if run.params.is_empty() {
        return String::new();
    }
    let params: Vec<String> = run
        .params
        .iter()
        .map(|(k, v)| format!("{}={}", md_escape(k), md_escape(v)))
        .collect();
    format!(" ({})", params.join(", "))
}

/// A number with three decimals, or `n/a` when it is not finite.
pub(crate) fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "n/a".to_owned()
    }
}

/// `1234` → `1.2 s`, `125000` → `2 min 5 s`.
pub(crate) fn duration(ms: i64) -> String {
    if ms < 0 {
        return "n/a".to_owned();
    }
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s < 3600 {
        return format!("{} min {} s", s / 60, s % 60);
    }
    format!("{} h {} min", s / 3600, (s % 3600) / 60)
}

pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown.

/// Backslash-escapes what would start Markdown markup (or inline HTML) or end a table cell, and
/// flattens line breaks.
pub(crate) fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

pub(crate) fn section(out: &mut String, title: &str) {
    push_line(out, "");
    push_line(out, &format!("## {title}"));
    push_line(out, "");
}

/// How a Markdown table's columns after the first are aligned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Columns {
    /// Numbers: right-aligned.
    Numeric,
    /// Text: left-aligned.
    Text,
}

/// A Markdown table; the first column is left-aligned. Cells must be escaped already.
pub(crate) fn md_table<H: AsRef<str>>(
    out: &mut String,
    header: &[H],
    rows: &[Vec<String>],
    columns: Columns,
) {
    let header: Vec<&str> = header.iter().map(AsRef::as_ref).collect();
    push_line(out, &format!("| {} |", header.join(" | ")));
    let align: Vec<&str> = (0..header.len())
        .map(|i| {
            if i == 0 || columns == Columns::Text {
                ":---"
            } else {
                "---:"
            }
        })
        .collect();
    push_line(out, &format!("| {} |", align.join(" | ")));
    for row in rows {
        push_line(out, &format!("| {} |", row.join(" | ")));
    }
}

/// (label, value) pairs as a two-column table; the values are escaped here.
pub(crate) fn md_kv_table(out: &mut String, header: [&str; 2], pairs: &[(&str, String)]) {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(k, v)| vec![(*k).to_owned(), md_escape(v)])
        .collect();
    md_table(out, &header, &rows, Columns::Text);
}

/// The Lineage section: a table whose trace id links to Jaeger when configured.
pub(crate) fn md_lineage(out: &mut String, lineage: &[LineageRow]) {
    section(out, "Lineage");
    let rows: Vec<Vec<String>> = lineage
        .iter()
        .map(|r| {
            let value = match &r.href {
                Some(href) => format!("[{}](<{}>)", md_escape(&r.value), href),
                None => md_escape(&r.value),
            };
            vec![r.label.to_owned(), value]
        })
        .collect();
    md_table(out, &["Field", "Value"], &rows, Columns::Text);
}

/// A p-value: 4 decimals, or scientific below 0.0001.
pub(crate) fn pvalue(p: f64) -> String {
    if !p.is_finite() {
        "n/a".to_owned()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    const EVIL: &str = "x<script>alert(1)</script>&co";

    /// The page without its `data:` links (base64 may spell anything, "http" included).
    fn without_data_links(page: &str) -> String {
        let mut out = String::new();
        let mut rest = page;
        while let Some(i) = rest.find("href=\"data:") {
            out.push_str(&rest[..i]);
            let end = rest[i + 6..].find('"').map_or(rest.len(), |j| i + 7 + j);
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    fn evil_run() -> RunData {
        let mut run = fixtures::complete_run(5, 8, 60);
        run.project = EVIL.to_owned();
        run.classes[0] = format!("AD{EVIL}");
        for p in &mut run.predictions {
            if p.y_true == "AD" {
                p.y_true = run.classes[0].clone();
            }
        }
        let site = run.data_summary.remove("lab-a").unwrap_or_default();
        run.data_summary.insert(format!("lab {EVIL}"), site);
        run.predictions[0].subject = format!("=cmd|' /C calc'!A0,{EVIL}");
        run
    }

    #[test]
    fn html_has_every_section_and_chart() {
        let page = html(&fixtures::complete_run(5, 8, 60), &RenderOptions::default()).unwrap();
        for id in [
            "data",
            "model",
            "validation",
            "metrics",
            "folds",
            "confusion",
            "roc",
            "sites",
            "grid",
            "permutation",
            "predictions",
            "features",
            "lineage",
        ] {
            assert!(
                page.contains(&format!("<section id=\"{id}\">")),
                "no {id} section"
            );
        }
        for chart in [
            "folds",
            "confusion",
            "roc",
            "sites",
            "grid",
            "permutation",
            "features",
        ] {
            assert_eq!(
                page.matches(&format!("data-chart=\"{chart}\"")).count(),
                1,
                "the {chart} chart"
            );
        }
        assert!(page.contains("L-Hippocampus × R-Hippocampus") || page.contains("L-Hippocampus"));
        assert!(page.contains("download=\"run-"));
        assert!(page.contains("data:text/csv;charset=utf-8;base64,"));
    }

    #[test]
    fn user_text_is_escaped_everywhere() {
        let run = evil_run();
        let page = html(&run, &RenderOptions::default()).unwrap();
        assert!(!page.contains("<script"), "unescaped script tag");
        assert!(page.contains("x&lt;script&gt;"));
        let md = markdown(&run, &RenderOptions::default());
        let outside_csv = md.split("```csv").next().unwrap();
        assert!(
            outside_csv
                .match_indices('<')
                .all(|(i, _)| outside_csv[..i].ends_with('\\') || outside_csv[..i].ends_with("](")),
            "an unescaped < in the Markdown"
        );
        // CSV: quoted, and not a formula.
        let csv = predictions_csv(&run.predictions);
        assert!(
            csv.contains("\"'=cmd|' /C calc'!A0,x<script>"),
            "{}",
            &csv[..300]
        );
    }

    #[test]
    fn trace_links_only_when_configured() {
        let run = fixtures::complete_run(3, 2, 12);
        let page = without_data_links(&html(&run, &RenderOptions::default()).unwrap());
        for url in [
            "http:", "https:", "url(", "src=", "@import", "<link", "<img", "<script",
        ] {
            assert!(!page.contains(url), "the page contains {url:?}");
        }
        assert!(!page.contains("href=\"data:"));
        assert!(page.contains("download=\"run-"));
        let options = RenderOptions {
            jaeger_ui_url: Some("http://jaeger.local:16686/".to_owned()),
        };
        let page = html(&run, &options).unwrap();
        assert!(page
            .contains("href=\"http:&#x2f;&#x2f;jaeger.local:16686&#x2f;trace&#x2f;4bf92f3577b34da6a3ce929d0e0e4736\""));
        let md = markdown(&run, &options);
        assert!(md.contains("(<http://jaeger.local:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736>)"));
        for bad in ["javascript:alert(1)", "http://x\"><b>", ""] {
            let options = RenderOptions {
                jaeger_ui_url: Some(bad.to_owned()),
            };
            assert_eq!(options.trace_url("abc123"), None, "{bad}");
        }
        assert_eq!(
            RenderOptions {
                jaeger_ui_url: Some("https://j".to_owned())
            }
            .trace_url("not hex"),
            None
        );
    }

    #[test]
    fn markdown_has_every_section() {
        let md = markdown(&fixtures::complete_run(5, 8, 60), &RenderOptions::default());
        for needle in [
            "# Report for run ",
            "## Data",
            "## Model",
            "| Pipeline step | Setting |",
            "## Validation",
            "## Metrics",
            "| Accuracy |",
            "## Folds",
            "| Fold | Train | Test | Accuracy | Balanced accuracy |",
            "## Confusion matrix (summed over folds)",
            "## ROC curve",
            "AUC **",
            "## Scores per site",
            "| lab-a | 20 |",
            "## Grid search",
            "★",
            "## Permutation test",
            "| Permutations | 1000 |",
            "## Out-of-fold predictions",
            "```csv\nrepeat,site,subject,fold,y_true,y_pred,score,correct\n0,lab-a,sub-00000,0,AD,",
            "## Top features",
            "## Lineage",
            "| Trace id | 4bf92f3577b34da6a3ce929d0e0e4736 |",
        ] {
            assert!(md.contains(needle), "the Markdown lacks {needle:?}:\n{md}");
        }
    }

    #[test]
    fn json_has_everything() {
        let run = fixtures::complete_run(5, 8, 60);
        let doc = json(&run, &RenderOptions::default());
        assert_eq!(doc["format"], JSON_FORMAT);
        assert_eq!(doc["kind"], "run");
        assert_eq!(doc["main_metric"], "balanced_accuracy");
        assert_eq!(doc["predictions"].as_array().unwrap().len(), 60);
        assert_eq!(doc["folds"].as_array().unwrap().len(), 5);
        assert_eq!(doc["top_features"].as_array().unwrap().len(), TOP_FEATURES);
        assert!(doc["top_features"][0]["name"]
            .as_str()
            .unwrap()
            .contains(" × "));
        assert!(doc["results"]["roc"]["auc"].as_f64().unwrap() > 0.5);
        assert_eq!(doc["results"]["grid"]["best"], 6);
        assert!(doc["trace_url"].is_null());
    }

    #[test]
    fn an_empty_run_still_renders() {
        let mut run = fixtures::complete_run(3, 2, 0);
        run.folds.clear();
        run.classes.clear();
        run.metrics.clear();
        run.data_summary.clear();
        run.params.clear();
        run.results = Default::default();
        run.job_id = None;
        run.trace_id = None;
        let page = html(&run, &RenderOptions::default()).unwrap();
        for note in [
            "No folds were recorded.",
            "Not applicable: the run has no classes.",
            "No parameter grid was searched.",
            "No permutation test was run.",
            "No per-subject predictions were stored.",
            "No feature weights were stored.",
        ] {
            assert!(page.contains(note), "{note}");
        }
        assert!(!page.contains("<svg"));
        let md = markdown(&run, &RenderOptions::default());
        assert!(md.contains("## Metrics"));
        assert!(summary(&run).contains("accuracy **n/a**"));
    }

    #[test]
    fn regression_runs_rank_by_r2() {
        let mut run = fixtures::complete_run(3, 2, 9);
        run.metrics.insert(
            "r2".to_owned(),
            crate::model::MetricSummary { mean: 0.4, sd: 0.1 },
        );
        assert_eq!(main_metric(&run), "r2");
        assert!(summary(&run).contains("R² **0.400 ± 0.100**"));
    }

    #[test]
    fn csv_fields() {
        for (input, want) in [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("=1+1", "'=1+1"),
            ("-x", "'-x"),
            ("@a,b", "\"'@a,b\""),
        ] {
            assert_eq!(csv_field(input), want);
        }
    }

    #[test]
    fn markdown_escaping() {
        for (input, want) in [
            ("plain name", "plain name"),
            ("a|b", r"a\|b"),
            ("<x>&", r"\<x\>\&"),
            ("line\nbreak", "line break"),
            ("*_`[]", r"\*\_\`\[\]"),
            (r"back\slash", r"back\\slash"),
        ] {
            assert_eq!(md_escape(input), want, "md_escape({input:?})");
        }
    }

    #[test]
    fn labels_and_numbers() {
        for (name, want) in [
            ("accuracy", "Accuracy"),
            ("balanced_accuracy", "Balanced accuracy"),
            ("roc_auc", "ROC AUC"),
            ("some_new_metric", "Some new metric"),
            ("", ""),
        ] {
            assert_eq!(metric_label(name), want);
        }
        for (ms, want) in [
            (-1, "n/a"),
            (15, "15 ms"),
            (1234, "1.2 s"),
            (125_000, "2 min 5 s"),
            (7_500_000, "2 h 5 min"),
        ] {
            assert_eq!(duration(ms), want);
        }
        assert_eq!(pvalue(0.012345), "0.0123");
        assert_eq!(pvalue(0.00001), "1.0e-5");
        assert_eq!(pvalue(f64::NAN), "n/a");
    }

    #[test]
    fn a_large_run_stays_under_five_megabytes() {
        let run = fixtures::complete_run(100, 20, 10_000);
        let rendered = run_report(&run, &RenderOptions::default()).unwrap();
        assert!(
            rendered.html.len() < 5_000_000,
            "{} bytes",
            rendered.html.len()
        );
        assert!(rendered.markdown.len() < 5_000_000);
    }
}
