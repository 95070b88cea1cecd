//! `swarm-report`: the report worker.
//!
//! It consumes `report.v1` (emitted by the train worker once a run is stored, or by the stats
//! worker once a statistics job is). The message's `run_id` names a run (`runs`, looked for
//! first) or a statistics job (`stats_jobs`); neither is a permanent error. The worker reads it
//! with its folds, results and per-subject predictions, renders it, and upserts one `reports`
//! row (`kind` `run` or `stats`):
//!
//! - `summary`: a short Markdown paragraph;
//! - `markdown`: every section as a Markdown table, the predictions as a fenced CSV block;
//! - `html`: one self-contained page (inline CSS and SVG charts, no script, nothing fetched,
//!   prints well, readable on a phone), with the predictions as a CSV to download;
//! - `json`: the data plus derived values, for programs.
//!
//! Code map: [`model`] is the plain data ([`RunData`], [`StatsData`], [`Subject`]); [`charts`]
//! draws the SVG charts with plotters; [`render`] formats runs and ([`render::stats`])
//! statistics jobs through one view each and minijinja templates in `templates/` (HTML and
//! Markdown); [`db`] is the SQL ([`load_subject`],
//! [`store_report`]); [`handler`] the [`ReportHandler`] that ties them together inside the
//! runtime's transaction; [`fixtures`] builds complete synthetic runs for tests and benches.
//!
//! API boundary: the `swarm` CLI reads the stored `reports` rows; it may reuse [`load_subject`]
//! and [`render::all`] to render afresh, and renders the report of a run that failed or was
//! cancelled ([`load_stopped`], [`render::stopped`]) itself: such a run has no results and no
//! stored report. Analysts read `reports` and the views `report_summary`
//! and `run_metrics` with SQL (role `swarm_analyst`, `deploy/postgres/analyst.sql`).
//!
//! Invariants: a report is a pure function of its run (or job) and the [`RenderOptions`];
//! every producer-supplied string is escaped in HTML and Markdown; the page loads nothing and
//! carries no URL except the optional trace link; SQL is constant text with `$n` parameters.

#![deny(missing_docs, missing_debug_implementations)]

pub mod charts;
pub mod db;
pub mod fixtures;
pub mod handler;
pub mod model;
pub mod pooled;
pub mod render;

pub use db::{
    load_run, load_stats, load_stopped, load_subject, store_report, LoadError, ReportLineage,
};
pub use handler::ReportHandler;
pub use model::{
    CvScheme, FoldRow, MetricSummary, Prediction, RunData, StatsData, StoppedRun, Subject,
};
pub use render::{RenderError, RenderOptions, Rendered};
