//! Rendering a run or a statistics job as a summary, Markdown, a self-contained HTML page and
//! JSON: the API and the template environments.
//!
//! Pure functions, no I/O. [`views`] formats a run into one view, every section once;
//! `templates/report.html` renders it as the page and `templates/report.md` as Markdown (or, with
//! the same template, as plain text for a terminal: [`text`]). [`stats`] does the same for a
//! statistics job, and [`stopped`] for a run that failed or was cancelled (its short report
//! takes the place of the results); [`format`] holds the number, label, CSV and escaping
//! helpers they use.
//!
//! Every format shows the same sections, in this order: the headline, the data (samples per
//! site and class), the model and its parameters (and the preprocessing pipeline), the validation
//! scheme, the metrics (mean ± sd), the folds (every metric per fold), the confusion matrix summed
//! over the folds, the ROC curve, the per-site scores, the grid search, the permutation test,
//! held-out sites, the per-subject out-of-fold predictions, the top features and the lineage. A
//! section with nothing to show says so instead of disappearing. The HTML adds the charts
//! ([`crate::charts`]) and carries the predictions as a CSV file to download (a `data:` link
//! inside the page); Markdown carries the same CSV as a fenced block.
//!
//! Escaping invariant: project, model, parameter, site, class, subject and feature names come
//! from producers and are never trusted. Every template escapes every value it prints: HTML
//! auto-escaping in the pages (the charts, drawn by our code, are the only values marked safe,
//! and plotters escapes their text), Markdown backslash-escaping of the characters that would
//! start markup or break a table cell in the Markdown. The page loads nothing: inline CSS and
//! SVG, no script, and a `Content-Security-Policy` that forbids every fetch. The only URL it may
//! carry is the link to the run's trace, when `JAEGER_UI_URL` is set.

mod format;
pub mod stats;
pub mod stopped;
mod views;

use std::sync::OnceLock;

use minijinja::value::Value;
use serde::Serialize;

use crate::model::{RunData, Subject};
use format::{to_json, Flavour};
pub use views::predictions_csv;
use views::{Medium, RunView};

/// The HTML templates: the run page, the statistics page and the stopped run's page, the page
/// around them (`page.html`: head, header, lineage, footer), the macros they share and the
/// stylesheet.
const HTML_TEMPLATES: &[(&str, &str)] = &[
    ("report.html", include_str!("../../templates/report.html")),
    ("stats.html", include_str!("../../templates/stats.html")),
    ("stopped.html", include_str!("../../templates/stopped.html")),
    ("page.html", include_str!("../../templates/page.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("style.css", include_str!("../../templates/style.css")),
];
/// The text templates, rendered as Markdown or as plain text: the run, statistics and stopped
/// run reports and the lineage table they share.
const TEXT_TEMPLATES: &[(&str, &str)] = &[
    ("report.md", include_str!("../../templates/report.md")),
    ("stats.md", include_str!("../../templates/stats.md")),
    ("stopped.md", include_str!("../../templates/stopped.md")),
    ("lineage.md", include_str!("../../templates/lineage.md")),
];
/// The `format` field of a run's JSON document.
pub const JSON_FORMAT: &str = "swarm.report.v1";
/// Prediction rows shown as a table in the HTML page; the CSV inside the page has them all.
pub const PREDICTION_ROWS_SHOWN: usize = 100;
/// Features shown in the top-features table and chart.
pub const TOP_FEATURES: usize = 20;

/// Why a report could not be rendered: a defect of a template, never of the data.
#[derive(Debug, thiserror::Error)]
#[error("cannot render the report: {0}")]
pub struct RenderError(#[from] minijinja::Error);

/// Every rendering of one run or statistics job, as stored in a `reports` row.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// A short plain-text paragraph (no Markdown: terminals print it as it is).
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
        Subject::Stats(stats) => stats::report(stats, options),
    }
}

/// The whole report of a run or a statistics job as plain text for a terminal: the Markdown
/// report without escapes or emphasis.
pub fn text(subject: &Subject, options: &RenderOptions) -> Result<String, RenderError> {
    match subject {
        Subject::Run(run) => render_text(
            "report.md",
            Flavour::Plain,
            &RunView::new(run, options, Medium::Text(Flavour::Plain)),
        ),
        Subject::Stats(stats) => stats::text(stats, options),
    }
}

/// Renders every format of a run; the summary is plain text (terminals and SQL print it).
pub fn run_report(run: &RunData, options: &RenderOptions) -> Result<Rendered, RenderError> {
    Ok(Rendered {
        summary: summary(run),
        markdown: markdown(run, options)?,
        html: html(run, options)?,
        json: json(run, options),
    })
}

/// A short plain-text paragraph: project, model, validation, the main score and accuracy (mean ±
/// sd, or pooled for leave-one-out), samples, sites and classes. The Markdown report opens with
/// the same paragraph as Markdown.
pub fn summary(run: &RunData) -> String {
    views::summary(run, Flavour::Plain)
}

/// The whole report as Markdown, every section as a table.
pub fn markdown(run: &RunData, options: &RenderOptions) -> Result<String, RenderError> {
    let view = RunView::new(run, options, Medium::Text(Flavour::Markdown));
    render_text("report.md", Flavour::Markdown, &view)
}

/// The whole report as one self-contained HTML page.
pub fn html(run: &RunData, options: &RenderOptions) -> Result<String, RenderError> {
    render_html("report.html", &RunView::new(run, options, Medium::Html))
}

/// The report as a JSON document: every [`RunData`] field (results and predictions included)
/// plus `format` (`swarm.report.v1`), `summary`, `cv_description`, `main_metric`, `pooled`
/// (metrics over all out-of-fold predictions at once), `confusion_total`, `top_features` (named)
/// and `trace_url`. Non-finite numbers become `null`.
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
        pooled: std::collections::BTreeMap<String, f64>,
        confusion_total: Vec<Vec<u64>>,
        top_features: Vec<views::FeatureRow>,
        trace_url: Option<String>,
    }
    let document = Document {
        format: JSON_FORMAT,
        kind: "run",
        run,
        summary: summary(run),
        cv_description: run.cv_description(),
        main_metric: main_metric(run),
        pooled: crate::pooled::pooled_metrics(run),
        confusion_total: run.confusion_total(),
        top_features: views::top_features(run),
        trace_url: run.trace_id.as_deref().and_then(|t| options.trace_url(t)),
    };
    to_json(&document)
}

/// The metric that ranks runs: `r2` for regression, else `balanced_accuracy`.
pub fn main_metric(run: &RunData) -> &'static str {
    if run.is_regression() {
        "r2"
    } else {
        "balanced_accuracy"
    }
}

/// The HTML templates' environment, built once: HTML auto-escaping for every template, strict
/// undefined values (a typo in a template is an error, not an empty string).
fn html_environment() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = strict_environment();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        add_templates(&mut env, HTML_TEMPLATES);
        env
    })
}

/// The text templates' environment for one flavour, built once: every printed value is escaped
/// by [`Flavour::escape`] unless marked safe; `strong` and `link` filters mark up; blocks leave
/// no blank lines (`trim_blocks`, `lstrip_blocks`; `+%}` keeps a line's end).
fn text_environment(flavour: Flavour) -> &'static minijinja::Environment<'static> {
    static MARKDOWN: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    static PLAIN: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    let cell = match flavour {
        Flavour::Markdown => &MARKDOWN,
        Flavour::Plain => &PLAIN,
    };
    cell.get_or_init(|| {
        let mut env = strict_environment();
        match minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
        {
            Ok(syntax) => env.set_syntax(syntax),
            Err(error) => tracing::error!(%error, "The text templates' syntax is invalid."),
        }
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_formatter(move |out, _state, value| {
            let text = if value.is_safe() {
                value.to_string()
            } else {
                flavour.escape(&value.to_string())
            };
            out.write_str(&text).map_err(minijinja::Error::from)
        });
        env.add_filter("strong", move |value: Value| {
            Value::from_safe_string(flavour.strong(&value.to_string()))
        });
        env.add_filter("link", move |value: Value, href: Option<String>| {
            Value::from_safe_string(flavour.link(&value.to_string(), href.as_deref()))
        });
        add_templates(&mut env, TEXT_TEMPLATES);
        env
    })
}

fn strict_environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

fn add_templates(
    env: &mut minijinja::Environment<'static>,
    templates: &[(&'static str, &'static str)],
) {
    for (name, source) in templates {
        // The templates are compiled in; a syntax error shows at render time.
        if let Err(error) = env.add_template(name, source) {
            tracing::error!(template = name, %error, "A report template does not compile.");
        }
    }
}

/// Renders one of [`HTML_TEMPLATES`] with a view.
fn render_html<V: Serialize>(name: &str, view: &V) -> Result<String, RenderError> {
    let page = html_environment()
        .get_template(name)?
        .render(minijinja::value::Serde(view))?;
    Ok(page)
}

/// Renders one of [`TEXT_TEMPLATES`] with a view, as Markdown or plain text.
fn render_text<V: Serialize>(
    name: &str,
    flavour: Flavour,
    view: &V,
) -> Result<String, RenderError> {
    let text = text_environment(flavour)
        .get_template(name)?
        .render(minijinja::value::Serde(view))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::model::RunData;
    use format::num;

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
        let md = markdown(&run, &RenderOptions::default()).unwrap();
        let outside_csv = md.split("```csv").next().unwrap();
        assert!(
            outside_csv
                .match_indices('<')
                .all(|(i, _)| outside_csv[..i].ends_with('\\') || outside_csv[..i].ends_with("](")),
            "an unescaped < in the Markdown"
        );
        // CSV: quoted, and not a formula.
        let csv = predictions_csv(&run.predictions, false);
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
        let md = markdown(&run, &options).unwrap();
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
        let md = markdown(&fixtures::complete_run(5, 8, 60), &RenderOptions::default()).unwrap();
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
        run.covariates.clear();
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
            "No covariates were recorded for these subjects.",
            "No feature weights: the train worker stored no weights for this logistic run.",
        ] {
            assert!(page.contains(note), "{note}");
        }
        assert!(!page.contains("<svg"));
        let md = markdown(&run, &RenderOptions::default()).unwrap();
        assert!(md.contains("## Metrics"));
        assert!(summary(&run).contains("accuracy n/a"));
    }

    #[test]
    fn regression_runs_rank_by_r2() {
        let mut run = fixtures::complete_run(3, 2, 9);
        run.metrics.insert(
            "r2".to_owned(),
            crate::model::MetricSummary { mean: 0.4, sd: 0.1 },
        );
        assert_eq!(main_metric(&run), "r2");
        assert!(summary(&run).contains("R² 0.400 ± 0.100"));
    }

    #[test]
    fn a_regression_run_shows_its_fit_instead_of_a_confusion_matrix() {
        let run = fixtures::regression_run(5, 60);
        let page = html(&run, &RenderOptions::default()).unwrap();
        for chart in ["scatter", "residuals", "folds", "sites", "features"] {
            assert_eq!(
                page.matches(&format!("data-chart=\"{chart}\"")).count(),
                1,
                "the {chart} chart"
            );
        }
        assert!(page.contains("<section id=\"fit\">"));
        assert!(!page.contains("<section id=\"confusion\">"));
        assert!(!page.contains("<section id=\"roc\">"));
        for label in ["R²", "MAE", "RMSE", "Pearson r"] {
            assert!(
                page.contains(&format!("<div>{label}<b>")),
                "headline {label}"
            );
        }
        assert!(page.contains("<th>Residual</th>"));
        assert!(!page.contains(" correct."));
        let md = markdown(&run, &RenderOptions::default()).unwrap();
        for needle in [
            "## Predicted and true values",
            "| Site | Samples | Mean | SD | Min | Max |",
            "| All sites | 60 |",
            "| Fold | Train | Test | R² | MAE | RMSE | Pearson r |",
            "predictions; residual = predicted − true",
            "```csv\nrepeat,site,subject,fold,y_true,y_pred,residual\n",
        ] {
            assert!(md.contains(needle), "the Markdown lacks {needle:?}:\n{md}");
        }
        assert!(!md.contains("## Confusion matrix"));
        assert!(summary(&run).contains("R² 0."));
        assert_eq!(json(&run, &RenderOptions::default())["main_metric"], "r2");
    }

    /// A leave-one-out run of `n` subjects, stored as the train worker stores one: one fold per
    /// subject, per-fold accuracy and balanced accuracy of one sample, a stored seed.
    fn leave_one_out_run(n: usize) -> RunData {
        let mut run = fixtures::complete_run(n, 2, n);
        run.cv = serde_json::from_value(serde_json::json!({
            "scheme": "leave_one_out", "folds": n, "k": 5, "seed": 0, "repeats": 0,
        }))
        .unwrap();
        for (fold, p) in run.folds.iter_mut().zip(&run.predictions) {
            let right = f64::from(u8::from(p.y_true == p.y_pred));
            fold.n_test = 1;
            fold.metrics = [("accuracy", right), ("balanced_accuracy", right)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        }
        run.metrics.insert(
            "balanced_accuracy".to_owned(),
            crate::model::MetricSummary {
                mean: 0.612,
                sd: 0.0,
            },
        );
        run
    }

    #[test]
    fn leave_one_out_reports_pooled_metrics() {
        let run = leave_one_out_run(30);
        let pooled = crate::pooled::pooled_metrics(&run);
        let (text, md, page) = (
            summary(&run),
            markdown(&run, &RenderOptions::default()).unwrap(),
            html(&run, &RenderOptions::default()).unwrap(),
        );
        for output in [&text, &md, &page] {
            assert!(!output.contains("± 0.000"), "a one-sample sd in {output}");
            assert!(
                !output.contains("shuffle seed"),
                "nothing was shuffled: {output}"
            );
        }
        // The mean of one-sample folds is shown nowhere.
        assert!(!text.contains("0.612"), "{text}");
        assert!(!md.contains("| Balanced accuracy | 0.612"), "{md}");
        assert!(!page.contains("Balanced accuracy<b>0.612"));
        let balanced = num(pooled["balanced_accuracy"]);
        assert!(
            text.contains(&format!("balanced accuracy {balanced} over")),
            "{text}"
        );
        assert!(
            md.contains(&format!("| Balanced accuracy | {balanced} |")),
            "{md}"
        );
        assert!(md.contains("30 folds of one held-out sample each"));
        assert!(!md.contains("| Fold | Train | Test |"));
        assert!(!page.contains("data-chart=\"folds\""));
    }

    #[test]
    fn the_pooled_auc_and_the_mean_auc_say_which_is_which() {
        let run = fixtures::complete_run(5, 8, 60);
        let page = html(&run, &RenderOptions::default()).unwrap();
        let auc = num(run.results.roc.as_ref().unwrap().auc);
        assert!(page.contains(&format!("<div>ROC AUC (pooled)<b>{auc}</b></div>")));
        assert!(page.contains("<th>Mean over folds</th><th>± SD</th><th>Pooled</th>"));
        let roc_row = format!(
            "<tr><td>ROC AUC</td><td>{}</td><td>{}</td><td>{auc}</td></tr>",
            num(run.metrics["roc_auc"].mean),
            num(run.metrics["roc_auc"].sd)
        );
        assert!(page.contains(&roc_row), "{roc_row}");
    }

    #[test]
    fn parameters_print_as_their_kind() {
        let mut run = fixtures::complete_run(3, 2, 12);
        run.model = "random_forest".to_owned();
        run.params = [
            ("n_estimators", "100.0"),
            ("max_depth", "0.0"),
            ("min_samples_leaf", "1.0"),
            ("max_features", "sqrt"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let text = summary(&run);
        assert!(
            text.contains(
                "(max_depth=None (unlimited), max_features=sqrt, min_samples_leaf=1, n_estimators=100)"
            ),
            "{text}"
        );
        let page = html(&run, &RenderOptions::default()).unwrap();
        assert!(page.contains("<tr><th>n_estimators</th><td><code>100</code></td></tr>"));
        assert!(page.contains("<tr><th>max_depth</th><td><code>None (unlimited)</code></td></tr>"));
        assert!(!page.contains("100.0"));
    }

    #[test]
    fn terminal_text_has_no_markdown_escapes() {
        let mut run = fixtures::complete_run(3, 2, 12);
        run.params.insert("max_iter".to_owned(), "100.0".to_owned());
        let subject = Subject::Run(Box::new(run.clone()));
        let text = text(&subject, &RenderOptions::default()).unwrap();
        let stored = run_report(&run, &RenderOptions::default()).unwrap().summary;
        for output in [&text, &stored] {
            assert!(output.contains("max_iter=100"), "{output}");
            assert!(
                !output.contains(r"\_") && !output.contains("**"),
                "{output}"
            );
        }
        assert!(text.contains("| max_iter | 100 |"));
        // The Markdown keeps its escapes and emphasis.
        let md = markdown(&run, &RenderOptions::default()).unwrap();
        assert!(md.contains(r"max\_iter=100") && md.contains("**logistic**"));
        let stats = Subject::Stats(Box::new(fixtures::complete_stats()));
        let text = super::text(&stats, &RenderOptions::default()).unwrap();
        assert!(text.contains(": 9 of 45 features significant") && !text.contains("**"));
    }

    #[test]
    fn missing_feature_weights_say_why() {
        let mut run = fixtures::complete_run(3, 2, 12);
        run.results.feature_weights = None;
        for (model, params, classes, want) in [
            (
                "svc",
                vec![],
                2,
                "an SVC with the rbf kernel has no weight per feature",
            ),
            (
                "knn",
                vec![("n_neighbors", "5")],
                2,
                "KNN has no weight per feature",
            ),
            (
                "gaussian_nb",
                vec![],
                2,
                "Gaussian naive Bayes has no weight per feature",
            ),
        ] {
            run.model = model.to_owned();
            run.params = params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            run.classes = ["a", "b", "c"][..classes]
                .iter()
                .map(|c| (*c).to_owned())
                .collect();
            let page = html(&run, &RenderOptions::default()).unwrap();
            assert!(
                page.contains(&format!("No feature weights: {want}")),
                "{model}"
            );
            let md = markdown(&run, &RenderOptions::default()).unwrap();
            assert!(
                md.contains(&format!("No feature weights: {want}")),
                "{model}"
            );
        }
    }

    #[test]
    fn the_projects_feature_names_name_the_top_features() {
        let mut run = fixtures::complete_run(3, 2, 12);
        run.region_labels.clear();
        run.feature_names = (0..45).map(|j| format!("score_{}", j + 1)).collect();
        let top = &json(&run, &RenderOptions::default())["top_features"];
        let index = top[0]["index"].as_u64().unwrap();
        assert_eq!(top[0]["name"], format!("score_{}", index + 1));
        // A count that does not match the weights names nothing.
        run.feature_names.pop();
        let top = &json(&run, &RenderOptions::default())["top_features"];
        assert_eq!(top[0]["name"], format!("f{index}"));
    }

    #[test]
    fn covariates_are_listed_with_the_data() {
        let mut run = fixtures::complete_run(3, 2, 12);
        run.covariates[1].numeric = 10;
        let md = markdown(&run, &RenderOptions::default()).unwrap();
        assert!(md.contains("Covariates recorded for these subjects (not used by the model):"));
        assert!(
            md.contains("| age | 12 | 71.400 | 6.200 | 55.000 | 90.000 |"),
            "{md}"
        );
        assert!(md.contains("| sex (2 not numbers) | 12 |"), "{md}");
        let data = md.split("## Model").next().unwrap();
        assert!(
            data.contains("| age |"),
            "covariates belong to the data section"
        );
        let page = html(&run, &RenderOptions::default()).unwrap();
        assert!(page.contains("<th>Covariate</th>"));
        assert!(page.contains("<td class=\"name\">age</td><td>12</td><td>71.400</td>"));
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
