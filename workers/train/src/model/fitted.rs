//! The fitted model: an [`Estimator`] (predictions, decision scores, feature weights) and the
//! [`FittedModel`] stored in `runs.model_blob` — pipeline, estimator and class names as
//! MessagePack, tagged `swarm-<model>-v2+msgpack`.

use serde::{Deserialize, Serialize};

use super::params::{ModelSpec, Task};
use super::ModelError;
use crate::algo::linear::{argmax, LinearRegression, Logistic};
use crate::algo::neighbours::{GaussianNb, Knn};
use crate::algo::svm::{Kernel, Svc, Svr};
use crate::algo::tree::Forest;
use crate::matrix::Matrix;
use crate::pipeline::{FittedPipeline, PipelineConfig, Supervision};

/// Predictions for some rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Class indices (classification).
    pub classes: Vec<usize>,
    /// Predicted values (regression).
    pub values: Vec<f64>,
    /// Binary classification: the positive class's (class 1's) decision score or probability.
    pub scores: Option<Vec<f64>>,
}

/// A fitted estimator (after the pipeline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Logistic regression.
    Logistic(Logistic),
    /// C-SVC.
    Svc(Svc),
    /// Random forest or decision tree (either task).
    Forest(Forest),
    /// KNN.
    Knn(Knn),
    /// Gaussian naive Bayes.
    GaussianNb(GaussianNb),
    /// OLS, ridge or lasso.
    Linear(LinearRegression),
    /// ε-SVR.
    Svr(Svr),
}

impl Estimator {
    /// Predicts rows (already through the pipeline).
    pub fn predict(&self, x: &Matrix) -> Predictions {
        let from_proba = |p: Matrix| {
            let classes = (0..p.rows()).map(|i| argmax(p.row(i))).collect();
            let scores = (p.cols() == 2).then(|| (0..p.rows()).map(|i| p.get(i, 1)).collect());
            Predictions {
                classes,
                values: Vec::new(),
                scores,
            }
        };
        match self {
            Estimator::Logistic(m) => {
                let d = m.decision(x);
                let scores = (d.cols() == 1).then(|| (0..d.rows()).map(|i| d.get(i, 0)).collect());
                Predictions {
                    classes: m.predict(x),
                    values: Vec::new(),
                    scores,
                }
            }
            Estimator::Svc(m) => {
                let (classes, scores) = m.predict(x);
                Predictions {
                    classes,
                    values: Vec::new(),
                    scores,
                }
            }
            Estimator::Forest(f) => {
                let p = f.predict_values(x);
                if f.is_regressor() {
                    Predictions {
                        classes: Vec::new(),
                        values: (0..p.rows()).map(|i| p.get(i, 0)).collect(),
                        scores: None,
                    }
                } else {
                    from_proba(p)
                }
            }
            Estimator::Knn(m) => from_proba(m.proba(x)),
            Estimator::GaussianNb(m) => {
                let jll = m.joint_log_likelihood(x);
                let classes = (0..jll.rows()).map(|i| argmax(jll.row(i))).collect();
                // The log-odds of class 1: ranks like its probability without saturating.
                let scores = (jll.cols() == 2).then(|| {
                    (0..jll.rows())
                        .map(|i| jll.get(i, 1) - jll.get(i, 0))
                        .collect()
                });
                Predictions {
                    classes,
                    values: Vec::new(),
                    scores,
                }
            }
            Estimator::Linear(m) => Predictions {
                classes: Vec::new(),
                values: m.predict(x),
                scores: None,
            },
            Estimator::Svr(m) => Predictions {
                classes: Vec::new(),
                values: m.predict(x),
                scores: None,
            },
        }
    }

    /// Per-input weights: `("coefficients", w)` for linear models (mean |w| over classes for
    /// multiclass), `("importances", w)` for trees; none otherwise.
    pub fn weights(&self) -> Option<(&'static str, Vec<f64>)> {
        match self {
            Estimator::Logistic(m) => {
                let k = m.coef.rows();
                let p = m.coef.cols();
                let w = if k == 1 {
                    m.coef.row(0).to_vec()
                } else {
                    (0..p)
                        .map(|j| (0..k).map(|c| m.coef.get(c, j).abs()).sum::<f64>() / k as f64)
                        .collect()
                };
                Some(("coefficients", w))
            }
            Estimator::Svc(m) if m.kernel == Kernel::Linear => {
                let pairs = pair_weights(m);
                let w = if let [(_, only)] = pairs.as_slice() {
                    only.clone()
                } else {
                    let p = m.support.cols();
                    (0..p)
                        .map(|j| {
                            pairs.iter().map(|(_, w)| w[j].abs()).sum::<f64>() / pairs.len() as f64
                        })
                        .collect()
                };
                Some(("coefficients", w))
            }
            Estimator::Forest(f) => Some(("importances", f.importances())),
            Estimator::Linear(m) => Some(("coefficients", m.coef.clone())),
            _ => None,
        }
    }
}

/// A linear SVC's weight vector per class pair `(a, b)`: positive weights favour `b` over `a`.
fn pair_weights(m: &crate::algo::svm::Svc) -> Vec<((usize, usize), Vec<f64>)> {
    m.pairs
        .iter()
        .map(|pair| {
            let mut w = vec![0.0; m.support.cols()];
            for (&s, c) in pair.sv.iter().zip(&pair.coef) {
                for (wj, xj) in w.iter_mut().zip(m.support.row(s as usize)) {
                    // Sign: the pair's decision favours its first class; flipped, `b`.
                    *wj -= c * xj;
                }
            }
            (pair.classes, w)
        })
        .collect()
}

/// The final model as stored in `runs.model_blob`: pipeline, estimator and class names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedModel {
    /// The model's name.
    model: String,
    /// Its parameters.
    params: serde_json::Value,
    /// Classification or regression.
    task: Task,
    /// Class names in index order (empty for regression).
    classes: Vec<String>,
    /// The fitted preprocessing.
    pipeline: FittedPipeline,
    /// The fitted estimator.
    estimator: Estimator,
}

/// Targets of a whole data set.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    /// Class indices into `classes`.
    Classes(&'a [usize], &'a [String]),
    /// Values.
    Values(&'a [f64]),
}

impl FittedModel {
    /// Fits the pipeline and then the estimator on rows `x` (with their sites).
    pub fn fit(
        spec: &ModelSpec,
        pipeline: &PipelineConfig,
        x: &Matrix,
        sites: &[String],
        labels: Labels<'_>,
        seed: u64,
    ) -> Result<Self, ModelError> {
        let (supervision, classes) = match labels {
            Labels::Classes(y, classes) => {
                if let Some(&bad) = y.iter().find(|&&c| c >= classes.len()) {
                    return Err(ModelError::Input(format!(
                        "class index {bad} out of range for {} classes",
                        classes.len()
                    )));
                }
                (Supervision::Classes(y, classes.len()), classes.to_vec())
            }
            Labels::Values(v) => (Supervision::Values(v), Vec::new()),
        };
        let fitted = pipeline.fit(x, sites, supervision)?;
        let z = fitted.transform(x, sites)?;
        let estimator = spec.fit(&z, supervision, seed)?;
        Ok(Self {
            model: spec.name().to_owned(),
            params: spec.params_json(),
            task: spec.task(),
            classes,
            pipeline: fitted,
            estimator,
        })
    }

    /// The `runs.model_format` tag of [`FittedModel::to_bytes`]'s output.
    pub fn format(&self) -> String {
        format!("swarm-{}-v2+msgpack", self.model)
    }

    /// The class names, in index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The fitted preprocessing.
    pub fn pipeline(&self) -> &FittedPipeline {
        &self.pipeline
    }

    /// The fitted estimator.
    pub fn estimator(&self) -> &Estimator {
        &self.estimator
    }

    /// Predicts raw rows (with their sites; empty sites use the global scaler).
    pub fn predict_rows(&self, x: &Matrix, sites: &[String]) -> Result<Predictions, ModelError> {
        if x.cols() != self.pipeline.n_features {
            return Err(ModelError::Input(format!(
                "rows have {} features, the model {}",
                x.cols(),
                self.pipeline.n_features
            )));
        }
        let z = self.pipeline.transform(x, sites)?;
        Ok(self.estimator.predict(&z))
    }

    /// Predicts class names (classification) or values as text (regression).
    pub fn predict(&self, x: &[Vec<f64>]) -> Result<Vec<String>, ModelError> {
        let p = self.predict_rows(&Matrix::from_rows(x), &[])?;
        Ok(match self.task {
            Task::Classification => p.classes.iter().map(|&c| self.classes[c].clone()).collect(),
            Task::Regression => p.values.iter().map(|v| v.to_string()).collect(),
        })
    }

    /// Feature weights mapped back to the input features: `(kind, weights)`.
    pub fn feature_weights(&self) -> Option<(&'static str, Vec<f64>)> {
        let (kind, w) = self.estimator.weights()?;
        let linear = kind == "coefficients";
        self.pipeline
            .weights_to_input(&w, linear)
            .map(|w| (kind, w))
    }

    /// A multiclass linear model's coefficients mapped back to the input features, with the
    /// class names: a logistic regression's per class (its rows), a linear SVC's per class pair
    /// (class, the class it is weighed against); empty for every other model.
    pub fn class_weights(&self) -> Vec<(String, Option<String>, Vec<f64>)> {
        match &self.estimator {
            Estimator::Logistic(m) if m.coef.rows() > 1 => (0..m.coef.rows())
                .filter_map(|c| {
                    let w = self.pipeline.weights_to_input(m.coef.row(c), true)?;
                    Some((self.classes.get(c)?.clone(), None, w))
                })
                .collect(),
            Estimator::Svc(m) if m.kernel == Kernel::Linear && m.n_classes > 2 => pair_weights(m)
                .into_iter()
                .filter_map(|((a, b), w)| {
                    let w = self.pipeline.weights_to_input(&w, true)?;
                    Some((
                        self.classes.get(b)?.clone(),
                        Some(self.classes.get(a)?.clone()),
                        w,
                    ))
                })
                .collect(),
            _ => Vec::new(),
        }
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
        if model.pipeline.n_features == 0
            || (model.task == Task::Classification && model.classes.len() < 2)
        {
            return Err(ModelError::Codec("inconsistent model".into()));
        }
        Ok(model)
    }
}
