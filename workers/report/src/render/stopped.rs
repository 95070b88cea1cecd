//! Rendering a run that stopped without results ([`StoppedRun`]: failed or cancelled): what
//! was asked for, why it stopped and how far it got, as a summary, Markdown, HTML and JSON.
//!
//! Such a run has no scores to show, so its report is short; it exists so that
//! `swarm report show|open` of any run the user started gives a report, and says why there are
//! no results where the results would be. The same escaping and self-containment rules as
//! [`crate::render`] hold: `stopped.html` renders the view as the page, `stopped.md` as
//! Markdown or plain text.

use broker_schemas::{CvScheme, TextKind};
use serde::Serialize;

use super::format::{duration, to_json, Flavour};
use super::views::{lineage_rows, LineageRow, Medium};
use super::{render_html, render_text, RenderError, RenderOptions, Rendered};
use crate::model::StoppedRun;

/// The `format` field of a stopped run's JSON document.
pub const JSON_FORMAT: &str = "swarm.stopped-run.v1";

/// Renders every format of a stopped run.
pub fn report(run: &StoppedRun, options: &RenderOptions) -> Result<Rendered, RenderError> {
    Ok(Rendered {
        summary: summary(run),
        markdown: render_text(
            "stopped.md",
            Flavour::Markdown,
            &StoppedView::new(run, options, Medium::Text(Flavour::Markdown)),
        )?,
        html: render_html(
            "stopped.html",
            &StoppedView::new(run, options, Medium::Html),
        )?,
        json: json(run, options),
    })
}

/// The report as plain text for a terminal.
pub fn text(run: &StoppedRun, options: &RenderOptions) -> Result<String, RenderError> {
    let flavour = Flavour::Plain;
    render_text(
        "stopped.md",
        flavour,
        &StoppedView::new(run, options, Medium::Text(flavour)),
    )
}

/// A short plain-text paragraph: which run, what it was, that it stopped and why.
pub fn summary(run: &StoppedRun) -> String {
    summary_in(run, Flavour::Plain)
}

fn summary_in(run: &StoppedRun, flavour: Flavour) -> String {
    let what = match run.state.as_str() {
        "cancelled" => "was cancelled",
        _ => "failed",
    };
    let reason = run.reason.as_deref().unwrap_or("no reason was recorded");
    let progress = if run.units_total == 0 {
        "It stopped before any work was planned.".to_owned()
    } else {
        format!(
            "{} of {} work units were stored before it stopped; none of its results are kept.",
            run.units_done, run.units_total
        )
    };
    format!(
        "Run {} of project {} ({}, {}) {}: {}. {progress}",
        run.run_id,
        flavour.strong(&run.project),
        flavour.escape(&run.request.train.model),
        flavour.escape(&scheme(run)),
        flavour.strong(what),
        flavour.escape(reason),
    )
}

/// The JSON document: every [`StoppedRun`] field plus `format`, `kind` (`stopped`), `summary`
/// and `trace_url`.
pub fn json(run: &StoppedRun, options: &RenderOptions) -> serde_json::Value {
    #[derive(Serialize)]
    struct Document<'a> {
        format: &'static str,
        kind: &'static str,
        #[serde(flatten)]
        run: &'a StoppedRun,
        summary: String,
        trace_url: Option<String>,
    }
    to_json(&Document {
        format: JSON_FORMAT,
        kind: "stopped",
        run,
        summary: summary(run),
        trace_url: run.trace_id.as_deref().and_then(|t| options.trace_url(t)),
    })
}

#[derive(Debug, Serialize)]
struct StoppedView {
    summary: String,
    run_id: String,
    project: String,
    model: String,
    state: String,
    reason: String,
    created_at: String,
    headline: Vec<(String, String)>,
    request: Vec<(&'static str, String)>,
    lineage: Vec<LineageRow>,
}

impl StoppedView {
    fn new(run: &StoppedRun, options: &RenderOptions, medium: Medium) -> Self {
        let took = duration(run.duration_ms());
        StoppedView {
            summary: summary_in(run, medium.summary_flavour()),
            run_id: run.run_id.to_string(),
            project: run.project.clone(),
            model: run.request.train.model.clone(),
            state: run.state.clone(),
            reason: run
                .reason
                .clone()
                .unwrap_or_else(|| "no reason was recorded".to_owned()),
            created_at: run.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            headline: vec![
                ("State".to_owned(), run.state.clone()),
                (
                    "Work units stored".to_owned(),
                    format!("{} of {}", run.units_done, run.units_total),
                ),
                ("Ran for".to_owned(), took),
            ],
            request: request_rows(run),
            lineage: lineage_rows(
                ("Run id", run.run_id),
                run.job_id.as_deref(),
                run.trace_id.as_deref(),
                run.finished_at.unwrap_or(run.created_at),
                ("Ran for", run.duration_ms()),
                options,
            ),
        }
    }
}

/// The validation scheme in words.
fn scheme(run: &StoppedRun) -> String {
    let r = &run.request;
    let k = r.train.cv.folds;
    let seed = r.train.cv.seed;
    match r.options.validation.scheme {
        CvScheme::StratifiedKFold => format!("{k}-fold cross-validation, seed {seed}"),
        CvScheme::RepeatedKFold => {
            let repeats = match r.options.validation.repeats {
                0 => 10,
                n => n,
            };
            format!("{k}-fold cross-validation repeated {repeats} times, seed {seed}")
        }
        CvScheme::LeaveOneOut => "leave-one-out".to_owned(),
        CvScheme::LeaveOneSiteOut => "leave-one-site-out".to_owned(),
        CvScheme::HeldOutSites => format!(
            "held-out sites ({})",
            r.options.validation.test_sites.join(", ")
        ),
    }
}

/// What was asked for, one row per setting that was set.
fn request_rows(run: &StoppedRun) -> Vec<(&'static str, String)> {
    let r = &run.request;
    let o = &r.options;
    let list = |values: &[String]| {
        if values.is_empty() {
            "all".to_owned()
        } else {
            values.join(", ")
        }
    };
    let mut rows = vec![("Model", r.train.model.clone())];
    rows.push((
        "Parameters",
        if r.train.params.is_empty() {
            "defaults".to_owned()
        } else {
            pairs(r.train.params.iter().map(|(k, v)| (k, v.clone())))
        },
    ));
    rows.push(("Validation", scheme(run)));
    rows.push(("Sites", list(&r.train.sites)));
    rows.push(("Standardisation", o.pipeline.scaler.as_str().to_owned()));
    if let Some(text) = &o.pipeline.text {
        rows.push((
            "Text features",
            match text.kind {
                TextKind::Tfidf => format!(
                    "TF-IDF, min_df {}{}",
                    text.min_df,
                    text.max_features
                        .map(|m| format!(", at most {m} terms"))
                        .unwrap_or_default()
                ),
                TextKind::Hashed => "hashed".to_owned(),
            },
        ));
    }
    if let Some(pct) = o.pipeline.select_percentile {
        rows.push(("Feature selection", format!("ANOVA F-test, top {pct}%")));
    }
    if let Some(k) = o.pipeline.pca_components {
        rows.push(("PCA", format!("{k} components")));
    }
    if !o.grid.is_empty() {
        rows.push((
            "Grid",
            pairs(o.grid.iter().map(|(k, v)| (k, v.join(" | ")))),
        ));
        rows.push(("Nested", if o.nested { "yes" } else { "no" }.to_owned()));
    }
    if o.permutations > 0 {
        rows.push(("Permutations", o.permutations.to_string()));
    }
    rows
}

fn pairs<'a>(items: impl Iterator<Item = (&'a String, String)>) -> String {
    items
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use broker_schemas::{TrainOptions, TrainRequest, TrainV1};
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    const EVIL: &str = "x<script>alert(1)</script>&co|*";

    fn stopped(state: &str, units: (u32, u32)) -> StoppedRun {
        let created_at = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let mut options = TrainOptions::default();
        options
            .grid
            .insert("C".to_owned(), vec!["0.1".into(), "1".into()]);
        options.permutations = 20;
        StoppedRun {
            run_id: Uuid::nil(),
            project: EVIL.to_owned(),
            state: state.to_owned(),
            reason: Some(format!("fold 3 has 1 class; {EVIL}")),
            request: TrainRequest {
                train: TrainV1 {
                    run_id: Uuid::nil(),
                    project: EVIL.to_owned(),
                    model: "svc".to_owned(),
                    params: BTreeMap::from([("kernel".to_owned(), "rbf".to_owned())]),
                    cv: Default::default(),
                    sites: vec![EVIL.to_owned()],
                },
                options,
            },
            units_done: units.0,
            units_total: units.1,
            created_at,
            finished_at: Some(created_at + chrono::Duration::milliseconds(12_300)),
            job_id: Some("job-1".to_owned()),
            trace_id: None,
        }
    }

    #[test]
    fn a_failed_run_says_why_what_and_how_far_in_every_format() {
        let run = stopped("failed", (3, 40));
        let r = report(&run, &RenderOptions::default()).unwrap();
        assert!(
            r.summary.contains("failed: fold 3 has 1 class"),
            "{}",
            r.summary
        );
        assert!(r.summary.contains("3 of 40 work units"), "{}", r.summary);
        for text in [
            &r.markdown,
            &r.html,
            &text(&run, &RenderOptions::default()).unwrap(),
        ] {
            assert!(text.contains("fold 3 has 1 class"), "{text}");
            assert!(text.contains("C=0.1"), "{text}");
            assert!(text.contains("12.3 s"), "{text}");
        }
        assert!(r.html.contains("Why there are no results"));
        assert_eq!(r.json["kind"], "stopped");
        assert_eq!(r.json["state"], "failed");
        assert_eq!(r.json["units_done"], 3);
    }

    #[test]
    fn producer_strings_are_escaped() {
        let r = report(&stopped("cancelled", (0, 0)), &RenderOptions::default()).unwrap();
        assert!(!r.html.contains("<script>"), "the page carries raw markup");
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(!r.markdown.contains("<script>"), "{}", r.markdown);
        assert!(r.summary.contains("was cancelled"));
        assert!(r.summary.contains("before any work was planned"));
    }
}
