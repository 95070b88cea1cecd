//! The model registry: names, parameters (with scikit-learn's defaults), fitting, prediction,
//! scores for ROC curves, feature weights, and the stored model format.
//!
//! | name | task | parameters (default) |
//! |---|---|---|
//! | `logistic` | classification | `C` (1), `max_iter` (100), `tol` (1e-4) — L2, multinomial for > 2 classes |
//! | `svc` | classification | `C` (1), `kernel` (`rbf` \| `linear`), `gamma` (`scale` = 1 / (p · Var X), or a number), `tol` (1e-3) |
//! | `random_forest` | classification | `n_estimators` (100), `max_depth` (`None` = unlimited, or a count), `min_samples_split` (2), `min_samples_leaf` (1), `max_features` (`sqrt` \| `log2` \| `all` \| a count) |
//! | `knn` | classification | `n_neighbors` (5) |
//! | `decision_tree` | classification | `max_depth` (`None`), `min_samples_split` (2), `min_samples_leaf` (1) |
//! | `gaussian_nb` | classification | `var_smoothing` (1e-9) |
//! | `linear` | regression | — |
//! | `ridge` | regression | `alpha` (1) |
//! | `lasso` | regression | `alpha` (1), `max_iter` (1000), `tol` (1e-4) |
//! | `elastic_net` | regression | `alpha` (1), `l1_ratio` (0.5), `max_iter` (1000), `tol` (1e-4) |
//! | `svr` | regression | `C` (1), `epsilon` (0.1), `kernel` (`rbf`), `gamma` (`scale`), `tol` (1e-3) |
//! | `random_forest_regressor` | regression | as `random_forest`, `max_features` default `all` |
//!
//! Unknown names, unknown parameters and bad values are errors that list what is accepted.
//! Classes are indices into the sorted class names. A [`FittedModel`] (pipeline + estimator +
//! class names) is plain data stored as MessagePack and tagged `swarm-<model>-v2+msgpack`; every
//! kind round-trips and predicts the same after loading.
//!
//! - [`params`]: the parameter schema per model and its parsing into a [`ModelSpec`];
//! - [`fit`]: from a [`ModelSpec`] and model-ready rows to a fitted [`Estimator`];
//! - [`fitted`]: the fitted estimator and the stored [`FittedModel`] (pipeline + estimator).

pub mod fit;
pub mod fitted;
pub mod params;

pub use fitted::{Estimator, FittedModel, Labels, Predictions};
pub use params::{ModelKind, ModelSpec, Task, Value, KINDS, MODELS};

use crate::pipeline::PipelineError;

/// Why a model cannot be chosen, fitted, used or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model name is not known.
    #[error("unknown model \"{name}\"; accepted models: {}", MODELS.join(", "))]
    UnknownModel {
        /// The requested name.
        name: String,
    },
    /// A parameter the model does not take.
    #[error(
        "unknown parameter \"{param}\" for model \"{model}\"; accepted parameters: {}",
        if accepted.is_empty() { "none".to_owned() } else { accepted.join(", ") }
    )]
    UnknownParam {
        /// The model.
        model: &'static str,
        /// The offending parameter.
        param: String,
        /// What the model accepts.
        accepted: Vec<&'static str>,
    },
    /// A parameter value that does not parse or is out of range.
    #[error("parameter \"{param}\" of model \"{model}\" must be {expected}, got \"{value}\"")]
    BadParam {
        /// The model.
        model: &'static str,
        /// The parameter.
        param: &'static str,
        /// The value as given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// The input rows cannot be used.
    #[error("invalid input: {0}")]
    Input(String),
    /// The preprocessing failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The stored model cannot be encoded or decoded.
    #[error("model blob: {0}")]
    Codec(String),
}
