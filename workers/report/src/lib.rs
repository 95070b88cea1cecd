//! `swarm-report`: the report worker.
//!
//! It consumes `report.v1` (emitted by the train worker once a run is stored), reads the run and
//! its folds from `runs` and `folds`, renders them, and upserts one `reports` row per run:
//!
//! - `summary`: a short Markdown paragraph (project, model, validation, accuracy ± sd, samples);
//! - `markdown`: every section as a Markdown table;
//! - `html`: one self-contained page (inline CSS and SVG, no script, nothing fetched, readable on
//!   a phone);
//! - `json`: the run's data plus derived values, for programs.
//!
//! Code map: [`model`] is the plain data ([`RunData`]); [`render`] the pure formatters; [`db`]
//! the SQL ([`load_run`], [`store_report`]); [`handler`] the [`ReportHandler`] that ties them
//! together inside the runtime's transaction.
//!
//! API boundary: the `swarm` CLI reads the stored `reports` rows; it may reuse [`load_run`] and
//! [`render`] to render a run afresh.
//!
//! Invariants: a report is a pure function of its run; every producer-supplied string is escaped
//! in HTML and Markdown; SQL is constant text with `$n` parameters.

#![deny(missing_docs, missing_debug_implementations)]

pub mod db;
pub mod handler;
pub mod model;
pub mod render;

pub use db::{load_run, store_report, LoadError, ReportLineage};
pub use handler::ReportHandler;
pub use model::{CvScheme, FoldRow, MetricSummary, RunData};
pub use render::{RenderError, Rendered};
