//! Rendering one large report: 100 folds × 20 metrics, 10,000 per-subject out-of-fold
//! predictions, a 12-candidate grid, 1,000 permutations and 45 feature weights — every format
//! (summary, Markdown, HTML with its charts and embedded CSV, JSON), and the HTML page alone.
//! The target is under a second for everything and a page under 5 MB; the sizes are printed and
//! the bench stops if the page is 5 MB or more.
//!
//! `cargo bench --bench report`

use criterion::{criterion_group, criterion_main, Criterion};
use swarm_report::{fixtures, render, RenderOptions};

/// The largest page the issue allows.
const MAX_PAGE_BYTES: usize = 5 * 1024 * 1024;

fn large_report(c: &mut Criterion) {
    let run = fixtures::complete_run(100, 20, 10_000);
    let options = RenderOptions::default();
    let rendered = render::run_report(&run, &options).expect("the report renders");
    let json_bytes = serde_json::to_string(&rendered.json).map_or(0, |s| s.len());
    eprintln!(
        "report of 100 folds × 20 metrics and 10,000 predictions: HTML {:.2} MB, Markdown {:.2} MB, JSON {:.2} MB",
        rendered.html.len() as f64 / 1e6,
        rendered.markdown.len() as f64 / 1e6,
        json_bytes as f64 / 1e6,
    );
    assert!(
        rendered.html.len() < MAX_PAGE_BYTES,
        "the page is {} bytes, over 5 MB",
        rendered.html.len()
    );

    let mut group = c.benchmark_group("report");
    group.sample_size(20);
    group.bench_function(
        "all formats, 100 folds x 20 metrics, 10k predictions",
        |b| b.iter(|| render::run_report(&run, &options).expect("renders")),
    );
    group.bench_function("html, 100 folds x 20 metrics, 10k predictions", |b| {
        b.iter(|| render::html(&run, &options).expect("renders"))
    });
    let stats = fixtures::complete_stats();
    group.bench_function("statistics job, 45 features", |b| {
        b.iter(|| swarm_report::render::stats::report(&stats, &options).expect("renders"))
    });
    group.finish();
}

criterion_group!(benches, large_report);
criterion_main!(benches);
