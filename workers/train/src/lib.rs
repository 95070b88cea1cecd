//! `swarm-train`: the training worker — validated models and univariate statistics on a
//! project's features.
//!
//! # Flow
//!
//! The worker's queue carries two job kinds ([`handler::TrainJob`]):
//!
//! - **`train.v1`** ([`broker_schemas::TrainRequest`]): a model with string parameters
//!   ([`model`]: eleven models, scikit-learn's defaults, unknown names or parameters are dead
//!   letters), a preprocessing pipeline ([`pipeline`]: global or per-site standardisation,
//!   ANOVA-F selection, PCA — each fitted inside every fold), a validation scheme
//!   ([`validation`]: stratified/repeated k-fold, leave-one-out, leave-one-site-out, held-out
//!   sites), an optional parameter grid and permutation test ([`cv`]). Metrics per fold and
//!   overall ([`metrics`]), out-of-fold predictions with scores, feature weights and the final
//!   model are stored (`runs`, `folds`, `predictions`, `runs.results`), then `report.v1` is
//!   emitted.
//! - **`stats.v1`** ([`broker_schemas::StatsV1`]): Welch t, ANOVA, Pearson or Spearman per
//!   feature with Benjamini–Hochberg and Bonferroni corrections ([`stats`]), stored in
//!   `stats_jobs`, then `report.v1` with the job id.
//!
//! The algorithms ([`algo`]) are focused implementations over [`matrix::Matrix`] that follow
//! scikit-learn's objectives and defaults (ARCHITECTURE.md, "Why our own solvers"). Every
//! failure caused by the request or the data is permanent (dead-lettered with a reason); database
//! errors are transient. The domain modules are pure and synchronous, so the CLI, tests and
//! benchmarks call them without a broker or a database.

pub mod algo;
pub mod cv;
pub mod folds;
pub mod handler;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod stats;
pub mod tfidf;
pub mod validation;

pub use handler::{TrainHandler, TrainJob};
