//! Rendering a statistics job ([`StatsData`]): the features significant after FDR correction
//! with their effect sizes, and a volcano plot, as a summary, Markdown, HTML and JSON.
//!
//! The same escaping and self-containment rules as [`crate::render`] hold: `stats.html` renders
//! the view as the page, `stats.md` as Markdown or plain text.

use serde::Serialize;

use super::format::{csv_field, csv_href, csv_kib, pvalue, to_json, Flavour};
use super::views::{chart_html, lineage_rows, LineageRow, Medium};
use super::{render_html, render_text, RenderError, RenderOptions, Rendered};
use crate::charts;
use crate::model::{feature_name, StatsData};

/// The `format` field of a statistics job's JSON document.
pub const JSON_FORMAT: &str = "swarm.stats-report.v1";
/// Significant features shown in the HTML table; the CSV inside the page has every feature.
pub const SIGNIFICANT_ROWS_SHOWN: usize = 200;

/// Renders every format of a statistics job.
pub fn report(stats: &StatsData, options: &RenderOptions) -> Result<Rendered, RenderError> {
    Ok(Rendered {
        summary: summary(stats),
        markdown: markdown(stats, options)?,
        html: html(stats, options)?,
        json: json(stats, options),
    })
}

/// A short plain-text paragraph: project, test, how many features are significant. The
/// Markdown report opens with the same paragraph as Markdown.
pub fn summary(stats: &StatsData) -> String {
    summary_in(stats, Flavour::Plain)
}

fn summary_in(stats: &StatsData, flavour: Flavour) -> String {
    let r = &stats.results;
    let significant = r.features.iter().filter(|f| f.significant).count();
    format!(
        "Project {}, {}: {} of {} features significant at FDR {} over {} samples (statistics \
         job {}).",
        flavour.strong(&stats.project),
        flavour.escape(&test_label(stats)),
        flavour.strong(&significant.to_string()),
        r.features.len(),
        r.alpha,
        stats.n_samples,
        stats.id,
    )
}

/// The whole statistics report as Markdown.
pub fn markdown(stats: &StatsData, options: &RenderOptions) -> Result<String, RenderError> {
    let flavour = Flavour::Markdown;
    render_text(
        "stats.md",
        flavour,
        &StatsView::new(stats, options, Medium::Text(flavour)),
    )
}

/// The whole statistics report as plain text for a terminal.
pub fn text(stats: &StatsData, options: &RenderOptions) -> Result<String, RenderError> {
    let flavour = Flavour::Plain;
    render_text(
        "stats.md",
        flavour,
        &StatsView::new(stats, options, Medium::Text(flavour)),
    )
}

/// The whole statistics report as one self-contained HTML page.
pub fn html(stats: &StatsData, options: &RenderOptions) -> Result<String, RenderError> {
    render_html("stats.html", &StatsView::new(stats, options, Medium::Html))
}

/// The statistics report as JSON: every [`StatsData`] field plus `format`, `kind` (`stats`),
/// `summary`, `significant` (named, in order of adjusted p-value) and `trace_url`.
pub fn json(stats: &StatsData, options: &RenderOptions) -> serde_json::Value {
    #[derive(Serialize)]
    struct Document<'a> {
        format: &'static str,
        kind: &'static str,
        #[serde(flatten)]
        stats: &'a StatsData,
        summary: String,
        significant: Vec<SignificantRow>,
        trace_url: Option<String>,
    }
    to_json(&Document {
        format: JSON_FORMAT,
        kind: "stats",
        stats,
        summary: summary(stats),
        significant: significant_rows(stats, usize::MAX),
        trace_url: stats.trace_id.as_deref().and_then(|t| options.trace_url(t)),
    })
}

#[derive(Debug, Serialize)]
struct StatsView {
    summary: String,
    id: String,
    project: String,
    test_label: String,
    created_at: String,
    headline: Vec<(String, String)>,
    setup: Vec<(&'static str, String)>,
    groups: Vec<(String, usize)>,
    alpha: String,
    effect_label: &'static str,
    statistic_label: &'static str,
    n_tested: usize,
    n_significant: usize,
    significant: Vec<SignificantRow>,
    volcano: Option<String>,
    csv: String,
    csv_href: String,
    csv_name: String,
    csv_kib: String,
    lineage: Vec<LineageRow>,
}

#[derive(Debug, Serialize)]
struct SignificantRow {
    rank: usize,
    index: usize,
    name: String,
    statistic: String,
    effect_size: String,
    p: String,
    p_fdr: String,
    p_bonferroni: String,
}

impl StatsView {
    fn new(stats: &StatsData, options: &RenderOptions, medium: Medium) -> Self {
        let with_charts = medium.html();
        let r = &stats.results;
        let n_significant = r.features.iter().filter(|f| f.significant).count();
        let csv = features_csv(stats);
        let volcano = with_charts
            .then(|| {
                let points: Vec<(f64, f64, bool)> = r
                    .features
                    .iter()
                    .map(|f| (f.effect_size, f.p, f.significant))
                    .collect();
                charts::volcano(effect_label(stats), &points)
            })
            .flatten()
            .map(chart_html);
        let mut setup = vec![
            ("Test", test_label(stats)),
            ("Samples", stats.n_samples.to_string()),
            ("Features tested", stats.n_features.to_string()),
            (
                "Sites",
                if stats.sites.is_empty() {
                    "all".to_owned()
                } else {
                    stats.sites.join(", ")
                },
            ),
            (
                "Correction",
                format!(
                    "Benjamini–Hochberg FDR at {}; Bonferroni shown too",
                    r.alpha
                ),
            ),
        ];
        if let Some(c) = stats.covariate.as_ref().or(r.covariate.as_ref()) {
            setup.push(("Covariate", c.clone()));
        }
        StatsView {
            summary: summary_in(stats, medium.summary_flavour()),
            id: stats.id.to_string(),
            project: stats.project.clone(),
            test_label: test_label(stats),
            created_at: stats.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            headline: vec![
                ("Significant (FDR)".to_owned(), n_significant.to_string()),
                ("Features tested".to_owned(), r.features.len().to_string()),
                ("Samples".to_owned(), stats.n_samples.to_string()),
                ("FDR level".to_owned(), r.alpha.to_string()),
            ],
            setup,
            groups: r.groups.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            alpha: r.alpha.to_string(),
            effect_label: effect_label(stats),
            statistic_label: statistic_label(stats),
            n_tested: r.features.len(),
            n_significant,
            // The page shows the first rows (its CSV has them all); a text report shows all.
            significant: significant_rows(
                stats,
                if with_charts {
                    SIGNIFICANT_ROWS_SHOWN
                } else {
                    usize::MAX
                },
            ),
            volcano,
            csv_kib: csv_kib(&csv),
            csv_href: csv_href(&csv, with_charts),
            csv,
            csv_name: format!("stats-{}-features.csv", stats.id),
            lineage: lineage_rows(
                ("Statistics job id", stats.id),
                stats.job_id.as_deref(),
                stats.trace_id.as_deref(),
                stats.created_at,
                ("Run time", stats.duration_ms),
                options,
            ),
        }
    }
}

fn test_name(stats: &StatsData) -> &str {
    if stats.results.test.is_empty() {
        &stats.test
    } else {
        &stats.results.test
    }
}

/// `Welch's t-test (AD vs CN)`, `Pearson correlation with age`, ….
fn test_label(stats: &StatsData) -> String {
    let groups: Vec<&str> = stats.results.groups.keys().map(String::as_str).collect();
    let covariate = stats
        .covariate
        .as_deref()
        .or(stats.results.covariate.as_deref())
        .unwrap_or("the covariate");
    match test_name(stats) {
        "welch_t" => format!("Welch's t-test ({})", groups.join(" vs ")),
        "anova" => format!("one-way ANOVA ({})", groups.join(", ")),
        "pearson" => format!("Pearson correlation with {covariate}"),
        "spearman" => format!("Spearman correlation with {covariate}"),
        other => other.replace('_', " "),
    }
}

fn effect_label(stats: &StatsData) -> &'static str {
    match test_name(stats) {
        "welch_t" => "Cohen's d",
        "anova" => "η²",
        "pearson" | "spearman" => "r",
        _ => "effect size",
    }
}

fn statistic_label(stats: &StatsData) -> &'static str {
    match test_name(stats) {
        "welch_t" => "t",
        "anova" => "F",
        "pearson" | "spearman" => "r",
        _ => "statistic",
    }
}

/// The significant features by adjusted p-value (then |effect|), at most `limit`.
fn significant_rows(stats: &StatsData, limit: usize) -> Vec<SignificantRow> {
    let features = &stats.results.features;
    let mut order: Vec<usize> = (0..features.len())
        .filter(|&i| features[i].significant)
        .collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (&features[a], &features[b]);
        fa.p_fdr
            .total_cmp(&fb.p_fdr)
            .then(fb.effect_size.abs().total_cmp(&fa.effect_size.abs()))
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .take(limit)
        .enumerate()
        .map(|(rank, i)| {
            let f = &features[i];
            SignificantRow {
                rank: rank + 1,
                index: i,
                name: name_of(stats, i),
                statistic: format!("{:.3}", f.statistic),
                effect_size: format!("{:.3}", f.effect_size),
                p: pvalue(f.p),
                p_fdr: pvalue(f.p_fdr),
                p_bonferroni: pvalue(f.p_bonferroni),
            }
        })
        .collect()
}

fn name_of(stats: &StatsData, i: usize) -> String {
    let features = &stats.results.features;
    feature_name(
        i,
        features.get(i).map(|f| f.name.as_str()),
        features.len(),
        &stats.region_labels,
    )
}

/// Every feature as CSV: `index,feature,statistic,effect_size,p,p_fdr,p_bonferroni,significant`.
fn features_csv(stats: &StatsData) -> String {
    use std::fmt::Write as _;
    let mut out =
        String::from("index,feature,statistic,effect_size,p,p_fdr,p_bonferroni,significant\n");
    for (i, f) in stats.results.features.iter().enumerate() {
        let _ = writeln!(
            out,
            "{i},{},{},{},{},{},{},{}",
            csv_field(&name_of(stats, i)),
            f.statistic,
            f.effect_size,
            f.p,
            f.p_fdr,
            f.p_bonferroni,
            f.significant
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn the_page_has_the_significant_features_and_the_volcano() {
        let mut stats = fixtures::complete_stats();
        stats.project = "p<script>".to_owned();
        let page = html(&stats, &RenderOptions::default()).unwrap();
        assert_eq!(page.matches("data-chart=\"volcano\"").count(), 1);
        assert!(page.contains("<section id=\"significant\">"));
        assert!(page.contains("9 of 45 features are significant"));
        assert!(
            page.contains("L-Hippocampus × R-Hippocampus"),
            "region pairs name features"
        );
        assert!(page.contains("Cohen&#x27;s d") || page.contains("Cohen's d"));
        assert!(!page.contains("<script"));
        assert!(page.contains("download=\"stats-"));
        // Ordered by adjusted p-value.
        let rows = significant_rows(&stats, usize::MAX);
        assert_eq!(rows.len(), 9);
        let features = &stats.results.features;
        assert!(rows
            .windows(2)
            .all(|w| features[w[0].index].p_fdr <= features[w[1].index].p_fdr));
    }

    #[test]
    fn markdown_and_json_carry_the_same_rows() {
        let stats = fixtures::complete_stats();
        let md = markdown(&stats, &RenderOptions::default()).unwrap();
        assert!(md.contains("## Significant features"));
        assert!(md.contains("| Rank | Feature | t | Effect size | p | p (FDR) | p (Bonferroni) |"));
        assert_eq!(md.matches(" × ").count(), 9);
        let doc = json(&stats, &RenderOptions::default());
        assert_eq!(doc["kind"], "stats");
        assert_eq!(doc["significant"].as_array().unwrap().len(), 9);
        assert_eq!(doc["results"]["features"].as_array().unwrap().len(), 45);
        assert!(summary(&stats).contains("Project adni-connectivity, Welch's t-test"));
        assert!(summary(&stats).contains(": 9 of 45 features significant"));
    }

    #[test]
    fn no_significant_feature_is_said() {
        let mut stats = fixtures::complete_stats();
        for f in &mut stats.results.features {
            f.significant = false;
        }
        let page = html(&stats, &RenderOptions::default()).unwrap();
        assert!(page.contains("No feature survives the correction."));
    }
}
