//! `swarm-train`: the training worker — validated models and univariate statistics on a
//! project's features.
//!
//! # Flow
//!
//! The worker's queue carries three message types ([`handler::TrainJob`]):
//!
//! - **`train.v1`** ([`broker_schemas::TrainRequest`]): a model with string parameters
//!   ([`model`]: eleven models, scikit-learn's defaults, unknown names or parameters are dead
//!   letters), a preprocessing pipeline ([`pipeline`]: global or per-site standardisation,
//!   ANOVA-F selection, PCA — each fitted inside every fold), a validation scheme
//!   ([`validation`]: stratified/repeated k-fold, leave-one-out, leave-one-site-out, held-out
//!   sites), an optional parameter grid and permutation test ([`cv`]). The request is checked
//!   ([`request`]), its rows loaded ([`load`]) and the run planned into work units ([`plan`],
//!   [`planning`]) stored in `run_jobs`/`run_units` ([`runs`]), one `train.unit.v1` each.
//! - **`train.unit.v1`** ([`unit`]): any replica computes a unit outside any transaction, on
//!   its pool of `TRAIN_THREADS` ([`settings`]) with the run's rows cached once per worker
//!   ([`cache`]), and stores its result in a short transaction. The run's last unit assembles
//!   the run: metrics per fold and overall ([`metrics`]), out-of-fold predictions with scores,
//!   feature weights and the final model are stored ([`store`]: `runs`, `folds`,
//!   `predictions`, `runs.results`), then `report.v1` is emitted. Units done, failed and
//!   waiting are Prometheus series ([`prometheus`]).
//! - **`stats.v1`** ([`broker_schemas::StatsV1`], [`stats_job`]): Welch t, ANOVA, Pearson or
//!   Spearman per feature with Benjamini–Hochberg and Bonferroni corrections ([`stats`]),
//!   stored in `stats_jobs`, then `report.v1` with the job id.
//!
//! The algorithms ([`algo`]) are focused implementations over [`matrix::Matrix`] that follow
//! scikit-learn's objectives and defaults (ARCHITECTURE.md, "Why our own solvers"). A
//! malformed request is permanent (dead-lettered with a reason); one its data make impossible is
//! a failed run with the reason; database errors are transient. The domain modules are pure and
//! synchronous, so the CLI, tests and benchmarks call them without a broker or a database.

pub mod algo;
pub mod cache;
pub mod cv;
pub mod folds;
pub mod handler;
pub mod load;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod plan;
pub mod planning;
pub mod preprocess;
pub mod prometheus;
pub mod request;
pub mod runs;
pub mod settings;
pub mod stats;
pub mod stats_job;
pub mod store;
pub mod tfidf;
pub mod unit;
pub mod validation;

pub use handler::{TrainHandler, TrainJob};
pub use settings::TrainSettings;
