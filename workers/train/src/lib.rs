//! `swarm-train`: the training worker — cross-validates a model on a project's features.
//!
//! # Flow
//!
//! A `train.v1` message ([`broker_schemas::TrainV1`]) names a run id, a project, a model with
//! string parameters, a cross-validation scheme (folds, seed) and optionally some sites.
//! [`TrainHandler`] (run by `swarm_runtime`, inside the message's transaction):
//!
//! 1. **validates** the request before any transaction: folds in `2..=100`, a known model
//!    ([`model::MODELS`]), valid parameters — otherwise the message is dead-lettered with a reason;
//! 2. **loads** one feature vector per sample of the project ([`handler::LOAD_SQL`]: the
//!    highest `features` version per sample; samples without features are left out with a warning);
//! 3. **cross-validates** on a blocking thread ([`cv::cross_validate`]): stratified, seeded k-fold
//!    ([`folds`]); in each fold a [`preprocess::StandardScaler`] fitted on the training rows only,
//!    then the model ([`model`]); accuracy, balanced accuracy and the confusion matrix per fold
//!    ([`metrics`]), mean and sample sd across folds; finally the same pipeline fitted on all rows;
//! 4. **stores** a `runs` row (parameters, scheme, data summary, metrics, the serialised final
//!    model, lineage) and one `folds` row per fold — a run id used before is a permanent error;
//! 5. **emits** `report.v1` through the outbox, in the same transaction.
//!
//! Every failure caused by the request or the data is permanent (dead-lettered with a reason that
//! names the project); database errors are transient (retried). The domain modules are pure and
//! synchronous, so the CLI or a benchmark can call them without a broker or a database.

pub mod cv;
pub mod folds;
pub mod handler;
pub mod metrics;
pub mod model;
pub mod preprocess;

pub use handler::TrainHandler;
