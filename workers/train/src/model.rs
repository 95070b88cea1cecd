//! Models: which ones exist, their parameters, fitting, prediction and the stored model format.
//!
//! A model is chosen by name with string parameters (from [`broker_schemas::TrainV1`]) and parsed
//! into a [`ModelSpec`]; unknown names and parameters are rejected with the accepted ones listed.
//! Defaults equal scikit-learn's. Today there is one model:
//!
//! - `logistic` — smartcore's [`LogisticRegression`] (L-BFGS, multinomial for more than two
//!   classes) with scikit-learn's default L2 penalty. Parameter `C` (inverse regularisation
//!   strength, positive, default 1). scikit-learn minimises `C · Σ loss + ½‖w‖²`; smartcore
//!   minimises `Σ loss + ½ α ‖w‖²` with the intercept unpenalised, so `α = 1 / C`.
//!
//! A new model is a new [`ModelSpec`] and [`Estimator`] variant plus its arms in the `match`es.
//!
//! Classes are indices `0..n` into the sorted class names. The final model is stored as a
//! [`FittedModel`] — scaler, estimator and class names — in MessagePack (named fields), tagged by
//! [`FittedModel::format`], e.g. `swarm-logistic-v1+msgpack`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

use crate::preprocess::{ScalerError, StandardScaler};

/// The model names [`ModelSpec::parse`] accepts.
pub const MODELS: &[&str] = &["logistic"];

/// The parameters `logistic` accepts.
pub const LOGISTIC_PARAMS: &[&str] = &["C"];

/// The smartcore logistic regression as fitted here: `f64` features, class indices as labels.
pub type Logistic = LogisticRegression<f64, usize, DenseMatrix<f64>, Vec<usize>>;

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
        accepted.join(", ")
    )]
    UnknownParam {
        /// The model.
        model: &'static str,
        /// The offending parameter.
        param: String,
        /// What the model accepts.
        accepted: &'static [&'static str],
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
    /// The underlying library failed (or panicked) while fitting or predicting.
    #[error("{model} failed to {step}: {reason}")]
    Estimator {
        /// The model.
        model: &'static str,
        /// `fit` or `predict`.
        step: &'static str,
        /// The library's message.
        reason: String,
    },
    /// Standardisation failed.
    #[error(transparent)]
    Scaler(#[from] ScalerError),
    /// The stored model cannot be encoded or decoded.
    #[error("model blob: {0}")]
    Codec(String),
}

/// A model with its (validated) hyper-parameters, ready to be fitted.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// L2-penalised logistic regression.
    Logistic {
        /// Inverse regularisation strength (scikit-learn's `C`), positive and finite.
        c: f64,
    },
}

impl ModelSpec {
    /// Parses a model name and its string parameters. Missing parameters take scikit-learn's
    /// defaults; unknown names, unknown parameters and bad values are errors.
    pub fn parse(name: &str, params: &BTreeMap<String, String>) -> Result<Self, ModelError> {
        match name {
            "logistic" => {
                let model = "logistic";
                let mut c = 1.0;
                for (param, value) in params {
                    match param.as_str() {
                        "C" => {
                            c = value
                                .trim()
                                .parse::<f64>()
                                .ok()
                                .filter(|c| c.is_finite() && *c > 0.0 && (1.0 / c).is_finite())
                                .ok_or_else(|| ModelError::BadParam {
                                    model,
                                    param: "C",
                                    value: value.clone(),
                                    expected: "a positive finite number",
                                })?;
                        }
                        _ => {
                            return Err(ModelError::UnknownParam {
                                model,
                                param: param.clone(),
                                accepted: LOGISTIC_PARAMS,
                            })
                        }
                    }
                }
                Ok(ModelSpec::Logistic { c })
            }
            _ => Err(ModelError::UnknownModel {
                name: name.to_owned(),
            }),
        }
    }

    /// The model's name, as in [`MODELS`].
    pub fn name(&self) -> &'static str {
        match self {
            ModelSpec::Logistic { .. } => "logistic",
        }
    }

    /// The effective parameters (defaults filled in) as JSON, e.g. `{"C": 1.0}`.
    pub fn params_json(&self) -> serde_json::Value {
        match self {
            ModelSpec::Logistic { c } => serde_json::json!({ "C": c }),
        }
    }

    /// Fits the estimator on (already standardised) rows `x` with class indices `y`.
    pub fn fit(&self, x: &[Vec<f64>], y: &[usize]) -> Result<Estimator, ModelError> {
        let matrix = to_matrix(x)?;
        if y.len() != x.len() {
            return Err(ModelError::Input(format!(
                "{} rows but {} labels",
                x.len(),
                y.len()
            )));
        }
        let y = y.to_vec();
        match self {
            ModelSpec::Logistic { c } => {
                let model = self.name();
                let params = LogisticRegressionParameters::default().with_alpha(1.0 / c);
                let fitted = guard(model, "fit", || Logistic::fit(&matrix, &y, params))?;
                Ok(Estimator::Logistic(fitted))
            }
        }
    }
}

/// A fitted estimator (without its scaler).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Estimator {
    /// A fitted logistic regression.
    Logistic(Logistic),
}

impl Estimator {
    /// The model's name, as in [`MODELS`].
    pub fn name(&self) -> &'static str {
        match self {
            Estimator::Logistic(_) => "logistic",
        }
    }

    /// Predicts class indices for (already standardised) rows.
    pub fn predict(&self, x: &[Vec<f64>]) -> Result<Vec<usize>, ModelError> {
        let matrix = to_matrix(x)?;
        match self {
            Estimator::Logistic(model) => guard(self.name(), "predict", || model.predict(&matrix)),
        }
    }
}

/// The final model as stored in `runs.model_blob`: scaler, estimator and class names.
#[derive(Debug, Serialize, Deserialize)]
pub struct FittedModel {
    /// Class names in index order (sorted).
    classes: Vec<String>,
    /// The standardisation fitted on the training rows.
    scaler: StandardScaler,
    /// The estimator fitted on the standardised training rows.
    estimator: Estimator,
}

impl FittedModel {
    /// Standardises `x` with a scaler fitted on it, then fits `spec` to class indices `y`
    /// (indices into `classes`).
    pub fn fit(
        spec: &ModelSpec,
        classes: Vec<String>,
        x: &[Vec<f64>],
        y: &[usize],
    ) -> Result<Self, ModelError> {
        if let Some(&bad) = y.iter().find(|&&c| c >= classes.len()) {
            return Err(ModelError::Input(format!(
                "class index {bad} out of range for {} classes",
                classes.len()
            )));
        }
        let scaler = StandardScaler::fit(x)?;
        let z = scaler.transform_rows(x)?;
        let estimator = spec.fit(&z, y)?;
        Ok(Self {
            classes,
            scaler,
            estimator,
        })
    }

    /// The `runs.model_format` tag of [`FittedModel::to_bytes`]'s output.
    pub fn format(&self) -> &'static str {
        match self.estimator {
            Estimator::Logistic(_) => "swarm-logistic-v1+msgpack",
        }
    }

    /// The class names, in index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The fitted scaler.
    pub fn scaler(&self) -> &StandardScaler {
        &self.scaler
    }

    /// The fitted estimator.
    pub fn estimator(&self) -> &Estimator {
        &self.estimator
    }

    /// Predicts class indices (into [`FittedModel::classes`]) for raw (unstandardised) rows.
    pub fn predict_indices(&self, x: &[Vec<f64>]) -> Result<Vec<usize>, ModelError> {
        let z = self.scaler.transform_rows(x)?;
        self.estimator.predict(&z)
    }

    /// Predicts class names for raw (unstandardised) rows.
    pub fn predict(&self, x: &[Vec<f64>]) -> Result<Vec<String>, ModelError> {
        self.predict_indices(x)?
            .into_iter()
            .map(|c| {
                self.classes.get(c).cloned().ok_or_else(|| {
                    ModelError::Codec(format!("the model predicted an unknown class index {c}"))
                })
            })
            .collect()
    }

    /// Encodes the model as MessagePack with named fields.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        rmp_serde::to_vec_named(self).map_err(|e| ModelError::Codec(e.to_string()))
    }

    /// Decodes a model written by [`FittedModel::to_bytes`] and tagged `format`, and checks that
    /// it can predict.
    pub fn from_bytes(format: &str, bytes: &[u8]) -> Result<Self, ModelError> {
        let model: Self =
            rmp_serde::from_slice(bytes).map_err(|e| ModelError::Codec(e.to_string()))?;
        if model.format() != format {
            return Err(ModelError::Codec(format!(
                "the blob holds a {} model, not {format}",
                model.format()
            )));
        }
        if model.classes.len() < 2 || model.scaler.n_features() == 0 {
            return Err(ModelError::Codec(format!(
                "inconsistent model: {} classes, {} features",
                model.classes.len(),
                model.scaler.n_features()
            )));
        }
        // A smoke prediction: a corrupt estimator fails here, not in the caller.
        model
            .predict(&[vec![0.0; model.scaler.n_features()]])
            .map_err(|e| ModelError::Codec(format!("the decoded model cannot predict: {e}")))?;
        Ok(model)
    }
}

/// Rows as a smartcore matrix; rejects empty, ragged and non-finite input.
fn to_matrix(x: &[Vec<f64>]) -> Result<DenseMatrix<f64>, ModelError> {
    if x.first().is_none_or(|row| row.is_empty()) {
        return Err(ModelError::Input("no rows or no features".into()));
    }
    if x.iter().flatten().any(|v| !v.is_finite()) {
        return Err(ModelError::Input("a value is not a finite number".into()));
    }
    DenseMatrix::from_2d_vec(&x.to_vec()).map_err(|e| ModelError::Input(e.to_string()))
}

/// Runs a smartcore call, turning both its errors and its panics (its line search panics when it
/// cannot converge; accessors panic on an unfitted model) into [`ModelError::Estimator`].
fn guard<T>(
    model: &'static str,
    step: &'static str,
    f: impl FnOnce() -> Result<T, smartcore::error::Failed>,
) -> Result<T, ModelError> {
    let error = |reason: String| ModelError::Estimator {
        model,
        step,
        reason,
    };
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(failed)) => Err(error(failed.to_string())),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the library panicked".to_owned());
            Err(error(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Two Gaussian-ish blobs, made deterministic: class 0 around -2, class 1 around +2.
    fn blobs() -> (Vec<Vec<f64>>, Vec<usize>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..40 {
            let jitter = ((i * 37) % 17) as f64 / 17.0 - 0.5;
            let class = i % 2;
            let centre = if class == 0 { -2.0 } else { 2.0 };
            x.push(vec![centre + jitter, 5.0 * jitter, 100.0 + centre * 10.0]);
            y.push(class);
        }
        (x, y)
    }

    #[test]
    fn parses_names_and_params() {
        assert_eq!(
            ModelSpec::parse("logistic", &params(&[])).unwrap(),
            ModelSpec::Logistic { c: 1.0 }
        );
        assert_eq!(
            ModelSpec::parse("logistic", &params(&[("C", " 0.25 ")])).unwrap(),
            ModelSpec::Logistic { c: 0.25 }
        );
        let unknown = ModelSpec::parse("svm", &params(&[]))
            .unwrap_err()
            .to_string();
        assert_eq!(unknown, "unknown model \"svm\"; accepted models: logistic");
        let bad_param = ModelSpec::parse("logistic", &params(&[("gamma", "1")]))
            .unwrap_err()
            .to_string();
        assert!(bad_param.contains("\"gamma\"") && bad_param.contains("accepted parameters: C"));
        for bad in ["0", "-1", "abc", "inf", "NaN", "", "1e-320"] {
            let err = ModelSpec::parse("logistic", &params(&[("C", bad)])).unwrap_err();
            assert!(
                matches!(err, ModelError::BadParam { .. }),
                "C = {bad:?}: {err}"
            );
        }
    }

    #[test]
    fn params_json_has_the_defaults() {
        let spec = ModelSpec::parse("logistic", &params(&[])).unwrap();
        assert_eq!(spec.params_json(), serde_json::json!({"C": 1.0}));
    }

    #[test]
    fn separable_data_is_learnt() {
        let (x, y) = blobs();
        let model = FittedModel::fit(
            &ModelSpec::Logistic { c: 1.0 },
            vec!["a".into(), "b".into()],
            &x,
            &y,
        )
        .unwrap();
        let predicted = model.predict(&x).unwrap();
        let correct = predicted
            .iter()
            .zip(&y)
            .filter(|(p, &t)| **p == ["a", "b"][t])
            .count();
        assert!(correct as f64 / y.len() as f64 > 0.9, "{correct}/40");
    }

    #[test]
    fn stronger_penalty_shrinks_coefficients() {
        let (x, y) = blobs();
        let norm = |c: f64| {
            let Estimator::Logistic(m) = ModelSpec::Logistic { c }.fit(&x, &y).unwrap();
            m.coefficients().iter().map(|w| w * w).sum::<f64>()
        };
        assert!(norm(0.01) < norm(1.0));
    }

    #[test]
    fn round_trip_predicts_the_same() {
        // Three classes, so the multinomial path is exercised too.
        let x: Vec<Vec<f64>> = (0..30)
            .map(|i| {
                let class = (i % 3) as f64;
                vec![
                    class * 3.0 + ((i * 7) % 5) as f64 / 5.0,
                    -class + (i % 4) as f64 / 4.0,
                ]
            })
            .collect();
        let y: Vec<usize> = (0..30).map(|i| i % 3).collect();
        let classes = vec!["x".to_owned(), "y".to_owned(), "z".to_owned()];
        let model = FittedModel::fit(&ModelSpec::Logistic { c: 1.0 }, classes, &x, &y).unwrap();
        let bytes = model.to_bytes().unwrap();
        assert_eq!(model.format(), "swarm-logistic-v1+msgpack");

        let decoded = FittedModel::from_bytes(model.format(), &bytes).unwrap();
        assert_eq!(decoded.classes(), model.classes());
        assert_eq!(decoded.scaler(), model.scaler());
        let probe: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![i as f64 * 0.2 - 1.0, (i % 7) as f64 - 3.0])
            .collect();
        assert_eq!(
            decoded.predict(&probe).unwrap(),
            model.predict(&probe).unwrap()
        );

        assert!(FittedModel::from_bytes("swarm-svc-v1+msgpack", &bytes).is_err());
        assert!(FittedModel::from_bytes(model.format(), &bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let spec = ModelSpec::Logistic { c: 1.0 };
        assert!(matches!(spec.fit(&[], &[]), Err(ModelError::Input(_))));
        assert!(matches!(
            spec.fit(&[vec![1.0], vec![f64::NAN]], &[0, 1]),
            Err(ModelError::Input(_))
        ));
        assert!(matches!(
            spec.fit(&[vec![1.0], vec![2.0, 3.0]], &[0, 1]),
            Err(ModelError::Input(_))
        ));
        assert!(matches!(
            spec.fit(&[vec![1.0], vec![2.0]], &[0]),
            Err(ModelError::Input(_))
        ));
        // One class only: smartcore refuses.
        assert!(matches!(
            spec.fit(&[vec![1.0], vec![2.0]], &[0, 0]),
            Err(ModelError::Estimator { .. })
        ));
        assert!(matches!(
            FittedModel::fit(&spec, vec!["a".into()], &[vec![1.0], vec![2.0]], &[0, 1]),
            Err(ModelError::Input(_))
        ));
    }
}
