//! Rendering a [`RunData`] as a summary, Markdown, a self-contained HTML page and JSON.
//!
//! Pure functions, no I/O. Every formatter shows the same sections: the run, the data (samples
//! per site and class), the model and its parameters, the validation scheme, the metrics (mean ±
//! sd), the folds, the confusion matrix summed over the folds, and the lineage.
//!
//! Escaping invariant: project, model, parameter, site and class names come from producers and
//! are never trusted. The HTML page is a minijinja template with HTML auto-escaping on for every
//! value; Markdown backslash-escapes the characters that would start markup or break a table
//! cell. The page loads nothing: inline CSS and SVG only, and a `Content-Security-Policy` that
//! forbids every fetch.

use serde::Serialize;

use crate::model::RunData;

/// The HTML page's template.
const HTML_TEMPLATE: &str = include_str!("../templates/report.html");
/// The template's name; the `.html` suffix is what turns auto-escaping on.
const HTML_TEMPLATE_NAME: &str = "report.html";
/// The `format` field of the JSON document.
pub const JSON_FORMAT: &str = "swarm.report.v1";

/// Why the HTML page could not be rendered: a defect of the template, never of the data.
#[derive(Debug, thiserror::Error)]
#[error("cannot render the HTML report: {0}")]
pub struct RenderError(#[from] minijinja::Error);

/// Every rendering of one run, as stored in a `reports` row.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// [`summary`].
    pub summary: String,
    /// [`markdown`].
    pub markdown: String,
    /// [`html`].
    pub html: String,
    /// [`json`].
    pub json: serde_json::Value,
}

/// Renders every format.
pub fn all(run: &RunData) -> Result<Rendered, RenderError> {
    Ok(Rendered {
        summary: summary(run),
        markdown: markdown(run),
        html: html(run)?,
        json: json(run),
    })
}

/// A short Markdown paragraph: project, model, validation, accuracy and balanced accuracy (mean ±
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
    format!(
        "Project **{project}**, model **{model}**{params}, {cv}: accuracy **{acc}**, balanced \
         accuracy **{bacc}** over {n} samples from {n_sites}{site_list}, {k} classes \
         (run {run_id}).",
        project = md_escape(&run.project),
        model = md_escape(&run.model),
        params = params_inline(run),
        cv = md_escape(&run.cv.describe()),
        acc = metric_text(run, "accuracy"),
        bacc = metric_text(run, "balanced_accuracy"),
        n = run.n_samples,
        n_sites = plural(sites.len(), "site", "sites"),
        k = run.classes.len(),
        run_id = run.run_id,
    )
}

/// The whole report as Markdown, every section as a table.
pub fn markdown(run: &RunData) -> String {
    let mut out = String::new();
    push_line(&mut out, &format!("# Report for run {}", run.run_id));
    push_line(&mut out, "");
    push_line(&mut out, &summary(run));

    section(&mut out, "Data");
    push_line(
        &mut out,
        &format!(
            "{} samples with {} features each.",
            run.n_samples, run.n_features
        ),
    );
    push_line(&mut out, "");
    let data = DataTable::new(run);
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

    section(&mut out, "Validation");
    let rows = validation_rows(run)
        .into_iter()
        .map(|(k, v)| vec![k.to_owned(), md_escape(&v)])
        .collect::<Vec<_>>();
    md_table(&mut out, &["Setting", "Value"], &rows, Columns::Text);

    section(&mut out, "Metrics");
    let rows: Vec<Vec<String>> = metric_rows(run)
        .into_iter()
        .map(|m| vec![md_escape(&m.label), m.mean, m.sd])
        .collect();
    md_table(&mut out, &["Metric", "Mean", "SD"], &rows, Columns::Numeric);

    section(&mut out, "Folds");
    let rows: Vec<Vec<String>> = run
        .folds
        .iter()
        .map(|f| {
            vec![
                f.fold.to_string(),
                f.n_train.to_string(),
                f.n_test.to_string(),
                num(f.accuracy),
                num(f.balanced_accuracy),
            ]
        })
        .collect();
    md_table(
        &mut out,
        &["Fold", "Train", "Test", "Accuracy", "Balanced accuracy"],
        &rows,
        Columns::Numeric,
    );

    section(&mut out, "Confusion matrix (summed over folds)");
    push_line(
        &mut out,
        "Rows are true classes, columns predicted classes.",
    );
    push_line(&mut out, "");
    let mut header = vec!["True \\\\ predicted".to_owned()];
    header.extend(run.classes.iter().map(|c| md_escape(c)));
    let rows: Vec<Vec<String>> = run
        .classes
        .iter()
        .zip(run.confusion_total())
        .map(|(class, counts)| {
            let mut cells = vec![md_escape(class)];
            cells.extend(counts.iter().map(u64::to_string));
            cells
        })
        .collect();
    md_table(&mut out, &header, &rows, Columns::Numeric);

    section(&mut out, "Lineage");
    let rows: Vec<Vec<String>> = lineage_rows(run)
        .into_iter()
        .map(|(k, v)| vec![k.to_owned(), md_escape(&v)])
        .collect();
    md_table(&mut out, &["Field", "Value"], &rows, Columns::Text);
    out
}

/// The whole report as one self-contained HTML page: inline CSS and SVG, no script, nothing
/// fetched, readable on a phone.
pub fn html(run: &RunData) -> Result<String, RenderError> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template(HTML_TEMPLATE_NAME, HTML_TEMPLATE)?;
    let view = HtmlView::new(run);
    let page = env
        .get_template(HTML_TEMPLATE_NAME)?
        .render(minijinja::value::Serde(&view))?;
    Ok(page)
}

/// The report as a JSON document: every [`RunData`] field plus `format` (`swarm.report.v1`),
/// `summary`, `cv_description` and `confusion_total`. Non-finite numbers become `null`.
pub fn json(run: &RunData) -> serde_json::Value {
    #[derive(Serialize)]
    struct Document<'a> {
        format: &'static str,
        #[serde(flatten)]
        run: &'a RunData,
        summary: String,
        cv_description: String,
        confusion_total: Vec<Vec<u64>>,
    }
    let document = Document {
        format: JSON_FORMAT,
        run,
        summary: summary(run),
        cv_description: run.cv.describe(),
        confusion_total: run.confusion_total(),
    };
    match serde_json::to_value(&document) {
        Ok(value) => value,
        // Unreachable: every map in `RunData` has string keys. Still no panic.
        Err(error) => serde_json::Value::from(format!("cannot serialise the report: {error}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Views shared by the formats.

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

fn metric_rows(run: &RunData) -> Vec<MetricRow> {
    run.metrics
        .iter()
        .map(|(name, m)| MetricRow {
            label: metric_label(name),
            mean: num(m.mean),
            sd: num(m.sd),
        })
        .collect()
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
    rows
}

/// Lineage as (label, value) pairs.
fn lineage_rows(run: &RunData) -> Vec<(&'static str, String)> {
    vec![
        ("Run id", run.run_id.to_string()),
        (
            "Job id",
            run.job_id.clone().unwrap_or_else(|| "–".to_owned()),
        ),
        (
            "Trace id",
            run.trace_id.clone().unwrap_or_else(|| "–".to_owned()),
        ),
        ("Trained at", run.created_at.to_rfc3339()),
        ("Training time", duration(run.duration_ms)),
    ]
}

/// `accuracy` → `Accuracy`, `balanced_accuracy` → `Balanced accuracy`, `roc_auc` → `ROC AUC`.
fn metric_label(name: &str) -> String {
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
fn metric_text(run: &RunData, name: &str) -> String {
    match run.metric(name) {
        Some(m) if m.mean.is_finite() && m.sd.is_finite() => {
            format!("{} ± {}", num(m.mean), num(m.sd))
        }
        Some(m) => num(m.mean),
        None => "n/a".to_owned(),
    }
}

/// Parameters for the summary: ` (C=1.0, kernel=rbf)`, or nothing.
fn params_inline(run: &RunData) -> String {
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
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "n/a".to_owned()
    }
}

/// `1234` → `1.2 s`, `125000` → `2 min 5 s`.
fn duration(ms: i64) -> String {
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

fn plural(n: usize, one: &str, many: &str) -> String {
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
fn md_escape(text: &str) -> String {
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

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

fn section(out: &mut String, title: &str) {
    push_line(out, "");
    push_line(out, &format!("## {title}"));
    push_line(out, "");
}

/// How a Markdown table's columns after the first are aligned.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Columns {
    /// Numbers: right-aligned.
    Numeric,
    /// Text: left-aligned.
    Text,
}

/// A Markdown table; the first column is left-aligned. Cells must be escaped already.
fn md_table<H: AsRef<str>>(out: &mut String, header: &[H], rows: &[Vec<String>], columns: Columns) {
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

// ---------------------------------------------------------------------------------------------
// HTML.

/// Everything the template shows, formatted. The template escapes every string.
#[derive(Debug, Serialize)]
struct HtmlView {
    run_id: String,
    project: String,
    model: String,
    created_at: String,
    summary_acc: String,
    summary_bacc: String,
    n_samples: u32,
    n_features: u32,
    n_sites: usize,
    n_classes: usize,
    data: DataTable,
    params: Vec<(String, String)>,
    validation: Vec<(&'static str, String)>,
    metrics: Vec<MetricRow>,
    folds: Vec<FoldView>,
    classes: Vec<String>,
    confusion: Vec<ConfusionRow>,
    chart: Chart,
    lineage: Vec<(&'static str, String)>,
}

#[derive(Debug, Serialize)]
struct FoldView {
    fold: u32,
    n_train: u32,
    n_test: u32,
    accuracy: String,
    balanced_accuracy: String,
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
    /// Background opacity, `0.00`–`0.90`.
    alpha: String,
    /// Whether the shading is dark enough to need light text.
    strong: bool,
    diagonal: bool,
}

impl HtmlView {
    fn new(run: &RunData) -> Self {
        let confusion = run
            .classes
            .iter()
            .zip(run.confusion_total())
            .enumerate()
            .map(|(i, (class, counts))| {
                let row_total = counts.iter().fold(0u64, |a, n| a.saturating_add(*n));
                let cells = counts
                    .iter()
                    .enumerate()
                    .map(|(j, &count)| {
                        let share = if row_total == 0 {
                            0.0
                        } else {
                            count as f64 / row_total as f64
                        };
                        let alpha = if count == 0 { 0.0 } else { 0.1 + 0.8 * share };
                        ConfusionCell {
                            count,
                            share: format!("{:.0}%", share * 100.0),
                            alpha: format!("{alpha:.2}"),
                            strong: alpha > 0.55,
                            diagonal: i == j,
                        }
                    })
                    .collect();
                ConfusionRow {
                    class: class.clone(),
                    cells,
                }
            })
            .collect();
        HtmlView {
            run_id: run.run_id.to_string(),
            project: run.project.clone(),
            model: run.model.clone(),
            created_at: run.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            summary_acc: metric_text(run, "accuracy"),
            summary_bacc: metric_text(run, "balanced_accuracy"),
            n_samples: run.n_samples,
            n_features: run.n_features,
            n_sites: run.site_names().len(),
            n_classes: run.classes.len(),
            data: DataTable::new(run),
            params: run
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            validation: validation_rows(run),
            metrics: metric_rows(run),
            folds: run
                .folds
                .iter()
                .map(|f| FoldView {
                    fold: f.fold,
                    n_train: f.n_train,
                    n_test: f.n_test,
                    accuracy: num(f.accuracy),
                    balanced_accuracy: num(f.balanced_accuracy),
                })
                .collect(),
            classes: run.classes.clone(),
            confusion,
            chart: Chart::new(run),
            lineage: lineage_rows(run),
        }
    }
}

/// Geometry of the per-fold accuracy bar chart (an SVG drawn by the template). Coordinates are
/// in the `viewBox`, formatted with one decimal.
#[derive(Debug, Serialize)]
struct Chart {
    width: u32,
    height: u32,
    /// Left edge of the plot area, where the y axis is drawn.
    left: u32,
    right: u32,
    top: u32,
    bottom: u32,
    /// Horizontal grid lines with their labels (0, 0.25, …, 1).
    ticks: Vec<Tick>,
    bars: Vec<Bar>,
    /// y of the mean accuracy line, when there is a mean.
    mean_y: Option<String>,
    mean_label: String,
    /// One-line description for screen readers.
    caption: String,
}

#[derive(Debug, Serialize)]
struct Tick {
    y: String,
    label: String,
}

#[derive(Debug, Serialize)]
struct Bar {
    x: String,
    y: String,
    width: String,
    height: String,
    /// Centre of the bar, for its labels.
    cx: String,
    /// The fold number, shown under the bar when there is room.
    label: Option<String>,
    /// The value, shown over the bar when there is room.
    value: Option<String>,
    value_y: String,
    title: String,
}

impl Chart {
    const WIDTH: u32 = 480;
    const HEIGHT: u32 = 220;
    const LEFT: u32 = 44;
    const RIGHT: u32 = 10;
    const TOP: u32 = 20;
    const BOTTOM: u32 = 30;

    fn new(run: &RunData) -> Self {
        let plot_w = f64::from(Self::WIDTH - Self::LEFT - Self::RIGHT);
        let plot_h = f64::from(Self::HEIGHT - Self::TOP - Self::BOTTOM);
        let base = f64::from(Self::HEIGHT - Self::BOTTOM);
        let y_of = |v: f64| base - plot_h * v.clamp(0.0, 1.0);
        let n = run.folds.len().max(1);
        let slot = plot_w / n as f64;
        let bar_w = slot * 0.7;
        // Label every fold while they fit, else every few.
        let label_every = n.div_ceil(20);
        let show_values = n <= 12;
        let bars = run
            .folds
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let v = if f.accuracy.is_finite() {
                    f.accuracy.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let x = f64::from(Self::LEFT) + slot * i as f64 + (slot - bar_w) / 2.0;
                let y = y_of(v);
                Bar {
                    x: fmt1(x),
                    y: fmt1(y),
                    width: fmt1(bar_w),
                    height: fmt1(base - y),
                    cx: fmt1(x + bar_w / 2.0),
                    label: (i % label_every == 0).then(|| f.fold.to_string()),
                    value: show_values.then(|| num2(f.accuracy)),
                    value_y: fmt1((y - 5.0).max(12.0)),
                    title: format!("Fold {}: accuracy {}", f.fold, num(f.accuracy)),
                }
            })
            .collect();
        let ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
            .iter()
            .map(|&v| Tick {
                y: fmt1(y_of(v)),
                label: format!("{v}"),
            })
            .collect();
        let mean = run
            .metric("accuracy")
            .map(|m| m.mean)
            .filter(|m| m.is_finite());
        Chart {
            width: Self::WIDTH,
            height: Self::HEIGHT,
            left: Self::LEFT,
            right: Self::WIDTH - Self::RIGHT,
            top: Self::TOP,
            bottom: Self::HEIGHT - Self::BOTTOM,
            ticks,
            bars,
            mean_y: mean.map(|m| fmt1(y_of(m))),
            mean_label: mean.map(|m| format!("mean {}", num(m))).unwrap_or_default(),
            caption: format!(
                "Accuracy of each of the {} folds, on a scale from 0 to 1{}.",
                run.folds.len(),
                mean.map(|m| format!(", mean {}", num(m)))
                    .unwrap_or_default()
            ),
        }
    }
}

fn fmt1(x: f64) -> String {
    format!("{x:.1}")
}

fn num2(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "n/a".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::model::{CvScheme, FoldRow, MetricSummary};

    const EVIL_PROJECT: &str = "alz<script>alert(1)</script>&co";
    const EVIL_SITE: &str = "site <b>B</b> & sons";
    const EVIL_CLASS: &str = "MCI<script>x</script>&y";

    fn sample() -> RunData {
        let classes = vec!["AD".to_owned(), "CN".to_owned(), EVIL_CLASS.to_owned()];
        let mut data_summary = BTreeMap::new();
        for (site, counts) in [("siteA", [10, 12, 8]), (EVIL_SITE, [9, 11, 10])] {
            let per_class: BTreeMap<String, u64> = classes.iter().cloned().zip(counts).collect();
            data_summary.insert(site.to_owned(), per_class);
        }
        let mut metrics = BTreeMap::new();
        metrics.insert(
            "accuracy".to_owned(),
            MetricSummary {
                mean: 0.8333,
                sd: 0.0421,
            },
        );
        metrics.insert(
            "balanced_accuracy".to_owned(),
            MetricSummary {
                mean: 0.8111,
                sd: 0.05,
            },
        );
        metrics.insert(
            "roc_auc".to_owned(),
            MetricSummary {
                mean: f64::NAN,
                sd: f64::NAN,
            },
        );
        let folds = (0..5u32)
            .map(|i| FoldRow {
                fold: i,
                n_train: 48,
                n_test: 12,
                accuracy: 0.75 + 0.05 * f64::from(i % 3),
                balanced_accuracy: 0.7 + 0.05 * f64::from(i % 3),
                confusion: vec![vec![3, 1, 0], vec![0, 4, 0], vec![1, 0, 3]],
            })
            .collect();
        RunData {
            run_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            project: EVIL_PROJECT.to_owned(),
            model: "logistic".to_owned(),
            params: [("C".to_owned(), "1.0".to_owned())].into_iter().collect(),
            cv: CvScheme {
                scheme: Some("stratified_k_fold".to_owned()),
                folds: Some(5),
                seed: Some(0),
                other: BTreeMap::new(),
            },
            sites: vec![],
            n_samples: 60,
            n_features: 360,
            classes,
            data_summary,
            metrics,
            folds,
            duration_ms: 1234,
            job_id: Some("job-42".to_owned()),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
            created_at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).single().unwrap(),
        }
    }

    #[test]
    fn html_has_every_section() {
        let page = html(&sample()).unwrap();
        for needle in [
            "<!DOCTYPE html>",
            "name=\"viewport\"",
            "id=\"data\"",
            "id=\"model\"",
            "id=\"validation\"",
            "id=\"metrics\"",
            "id=\"folds\"",
            "id=\"confusion\"",
            "id=\"chart\"",
            "id=\"lineage\"",
            "<svg",
            "<style>",
            "Balanced accuracy",
            "0.833",
            "0.042",
            "stratified 5-fold cross-validation",
            "job-42",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "01900000-0000-7000-8000-000000000001",
            "ROC AUC",
            "n&#x2f;a",
        ] {
            assert!(page.contains(needle), "the page lacks {needle:?}");
        }
        // The confusion matrix is summed over the 5 folds: 3 * 5 = 15 on the first diagonal cell.
        assert!(page.contains(">15<"), "no summed confusion count");
        // One bar per fold.
        assert_eq!(page.matches("class=\"bar\"").count(), 5);
    }

    #[test]
    fn html_escapes_user_text_and_fetches_nothing() {
        let page = html(&sample()).unwrap();
        assert!(!page.contains("<script"), "unescaped script tag");
        assert!(!page.contains("<b>B"), "unescaped markup");
        assert!(page.contains("alz&lt;script&gt;"), "project not escaped");
        assert!(page.contains("&amp;co"), "ampersand not escaped");
        assert!(page.contains("site &lt;b&gt;B&lt;&#x2f;b&gt; &amp; sons"));
        assert!(page.contains("MCI&lt;script&gt;x"));
        for forbidden in [
            "http://", "https://", "src=", "href=", "url(", "@import", "//", "<script", "<link",
            "<img", "<iframe",
        ] {
            assert!(
                !page.to_ascii_lowercase().contains(forbidden),
                "the page contains {forbidden:?}"
            );
        }
    }

    #[test]
    fn html_survives_an_empty_run() {
        let mut run = sample();
        run.folds.clear();
        run.classes.clear();
        run.metrics.clear();
        run.data_summary.clear();
        run.params.clear();
        run.job_id = None;
        run.trace_id = None;
        let page = html(&run).unwrap();
        assert!(page.contains("id=\"lineage\""));
        let md = markdown(&run);
        assert!(md.contains("## Metrics"));
        assert!(summary(&run).contains("accuracy **n/a**"));
    }

    #[test]
    fn markdown_has_the_tables() {
        let md = markdown(&sample());
        for needle in [
            "# Report for run 01900000-0000-7000-8000-000000000001",
            "## Data",
            "## Model",
            "## Validation",
            "## Metrics",
            "| Metric | Mean | SD |",
            "| Accuracy | 0.833 | 0.042 |",
            "| Balanced accuracy | 0.811 | 0.050 |",
            "| ROC AUC | n/a | n/a |",
            "## Folds",
            "| 0 | 48 | 12 | 0.750 | 0.700 |",
            "## Confusion matrix (summed over folds)",
            "| AD | 15 | 5 | 0 |",
            "## Lineage",
            "| Job id | job-42 |",
            "| siteA | 10 | 12 | 8 | 30 |",
            "| **Total** | **19** | **23** | **18** | **60** |",
        ] {
            assert!(md.contains(needle), "the Markdown lacks {needle:?}:\n{md}");
        }
        // User text cannot open HTML or break a table row.
        assert!(
            md.match_indices('<').all(|(i, _)| md[..i].ends_with('\\')),
            "an unescaped < in the Markdown"
        );
        assert!(md.contains(r"alz\<script\>alert(1)\</script\>\&co"));
    }

    #[test]
    fn json_has_the_metrics() {
        let doc = json(&sample());
        assert_eq!(doc["format"], JSON_FORMAT);
        assert_eq!(doc["metrics"]["accuracy"]["mean"], 0.8333);
        assert_eq!(doc["metrics"]["balanced_accuracy"]["sd"], 0.05);
        assert!(doc["metrics"]["roc_auc"]["mean"].is_null());
        assert_eq!(doc["project"], EVIL_PROJECT);
        assert_eq!(doc["folds"].as_array().map(Vec::len), Some(5));
        assert_eq!(doc["confusion_total"][0][0], 15);
        assert_eq!(doc["cv"]["folds"], 5);
        assert_eq!(doc["cv"]["scheme"], "stratified_k_fold");
        assert_eq!(doc["run_id"], "01900000-0000-7000-8000-000000000001");
        assert_eq!(doc["job_id"], "job-42");
        // The document stores as jsonb: it serialises.
        assert!(serde_json::to_string(&doc).is_ok());
    }

    #[test]
    fn summary_is_short_and_complete() {
        let text = summary(&sample());
        for needle in [
            r"**alz\<script\>alert(1)\</script\>\&co**",
            "**logistic** (C=1.0)",
            "stratified 5-fold cross-validation (shuffle seed 0)",
            "accuracy **0.833 ± 0.042**",
            "balanced accuracy **0.811 ± 0.050**",
            "60 samples from 2 sites",
            "3 classes",
        ] {
            assert!(
                text.contains(needle),
                "the summary lacks {needle:?}: {text}"
            );
        }
        assert!(!text.contains('\n'));
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
    fn metric_labels() {
        for (name, want) in [
            ("accuracy", "Accuracy"),
            ("balanced_accuracy", "Balanced accuracy"),
            ("roc_auc", "ROC AUC"),
            ("some_new_metric", "Some new metric"),
            ("", ""),
        ] {
            assert_eq!(metric_label(name), want);
        }
    }

    #[test]
    fn durations() {
        for (ms, want) in [
            (-1, "n/a"),
            (15, "15 ms"),
            (1234, "1.2 s"),
            (125_000, "2 min 5 s"),
            (7_500_000, "2 h 5 min"),
        ] {
            assert_eq!(duration(ms), want);
        }
    }

    #[test]
    fn chart_handles_many_folds_and_missing_values() {
        let mut run = sample();
        run.folds = (0..100)
            .map(|i| FoldRow {
                fold: i,
                n_train: 1,
                n_test: 1,
                accuracy: if i == 3 { f64::NAN } else { 2.0 },
                balanced_accuracy: 0.5,
                confusion: vec![],
            })
            .collect();
        let chart = Chart::new(&run);
        assert_eq!(chart.bars.len(), 100);
        assert!(chart.bars.iter().all(|b| b.value.is_none()));
        assert_eq!(chart.bars.iter().filter(|b| b.label.is_some()).count(), 20);
        // Clamped to the plot area.
        assert_eq!(chart.bars[0].y, fmt1(f64::from(Chart::TOP)));
        assert_eq!(chart.bars[3].height, "0.0");
        assert!(html(&run).is_ok());
    }
}
