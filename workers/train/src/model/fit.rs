//! Estimator dispatch: a [`ModelSpec`]'s parameters turned into the algorithm's settings
//! (kernel and `gamma`, tree limits, …) and the estimator fitted on model-ready rows.

use super::fitted::Estimator;
use super::params::{ModelKind, ModelSpec, Task};
use super::ModelError;
use crate::algo::linear::{LinearRegression, Logistic};
use crate::algo::neighbours::{GaussianNb, Knn};
use crate::algo::svm::{Kernel, Svc, Svr};
use crate::algo::tree::{Forest, Targets, TreeParams, TreeTask};
use crate::matrix::Matrix;
use crate::pipeline::Supervision;

impl ModelSpec {
    fn kernel(&self, x: &Matrix) -> Kernel {
        if self.word("kernel") == "linear" {
            return Kernel::Linear;
        }
        let gamma = match self.word("gamma") {
            "scale" => {
                let var = x.variance();
                if var > 0.0 {
                    1.0 / (x.cols() as f64 * var)
                } else {
                    1.0
                }
            }
            "auto" => 1.0 / x.cols() as f64,
            _ => self.num("gamma"),
        };
        Kernel::Rbf { gamma }
    }

    fn tree_params(&self, p: usize) -> TreeParams {
        let max_features = match (self.word("max_features"), self.number("max_features")) {
            ("sqrt", _) => ((p as f64).sqrt() as usize).max(1),
            ("log2", _) => ((p as f64).log2() as usize).max(1),
            (_, Some(n)) => (n as usize).min(p),
            _ => p,
        };
        TreeParams {
            max_depth: self.count("max_depth"),
            min_samples_split: self.count("min_samples_split").unwrap_or(2).max(2),
            min_samples_leaf: self.count("min_samples_leaf").unwrap_or(1).max(1),
            max_features,
        }
    }

    /// Fits the estimator on model-ready rows (after the pipeline). `seed` seeds forests.
    pub fn fit(
        &self,
        x: &Matrix,
        target: Supervision<'_>,
        seed: u64,
    ) -> Result<Estimator, ModelError> {
        if x.rows() == 0 || x.cols() == 0 {
            return Err(ModelError::Input("no rows or no features".into()));
        }
        if !x.all_finite() {
            return Err(ModelError::Input("a value is not a finite number".into()));
        }
        let estimator = match (self.kind(), target) {
            (kind, Supervision::Classes(y, k)) if kind.task() == Task::Classification => {
                if y.len() != x.rows() {
                    return Err(ModelError::Input(format!(
                        "{} rows but {} labels",
                        x.rows(),
                        y.len()
                    )));
                }
                let present = {
                    let mut seen = vec![false; k];
                    y.iter().for_each(|&c| seen[c] = true);
                    seen.iter().filter(|s| **s).count()
                };
                if present < 2 {
                    return Err(ModelError::Input(format!(
                        "{} needs at least 2 classes among its training rows, found {present}",
                        self.name()
                    )));
                }
                match kind {
                    ModelKind::Logistic => Estimator::Logistic(Logistic::fit(
                        x,
                        y,
                        k,
                        self.num("C"),
                        self.num("tol"),
                        self.count("max_iter").unwrap_or(1),
                    )),
                    ModelKind::Svc => Estimator::Svc(Svc::fit(
                        x,
                        y,
                        k,
                        self.num("C"),
                        self.kernel(x),
                        self.num("tol"),
                    )),
                    ModelKind::RandomForest => Estimator::Forest(Forest::fit(
                        x,
                        Targets::Classes(y),
                        TreeTask::Classify(k),
                        self.count("n_estimators").unwrap_or(1),
                        true,
                        self.tree_params(x.cols()),
                        seed,
                    )),
                    ModelKind::DecisionTree => Estimator::Forest(Forest::fit(
                        x,
                        Targets::Classes(y),
                        TreeTask::Classify(k),
                        1,
                        false,
                        TreeParams {
                            max_features: x.cols(),
                            ..self.tree_params(x.cols())
                        },
                        seed,
                    )),
                    ModelKind::Knn => Estimator::Knn(Knn {
                        k: self.count("n_neighbors").unwrap_or(1),
                        n_classes: k,
                        x: x.clone(),
                        y: y.to_vec(),
                    }),
                    ModelKind::GaussianNb => {
                        Estimator::GaussianNb(GaussianNb::fit(x, y, k, self.num("var_smoothing")))
                    }
                    _ => unreachable!("classification kinds only"),
                }
            }
            (kind, Supervision::Values(z)) if kind.task() == Task::Regression => {
                if z.len() != x.rows() {
                    return Err(ModelError::Input(format!(
                        "{} rows but {} targets",
                        x.rows(),
                        z.len()
                    )));
                }
                match kind {
                    ModelKind::Linear => Estimator::Linear(LinearRegression::fit_ridge(x, z, 0.0)),
                    ModelKind::Ridge => {
                        Estimator::Linear(LinearRegression::fit_ridge(x, z, self.num("alpha")))
                    }
                    ModelKind::Lasso => Estimator::Linear(LinearRegression::fit_lasso(
                        x,
                        z,
                        self.num("alpha"),
                        self.num("tol"),
                        self.count("max_iter").unwrap_or(1),
                    )),
                    ModelKind::ElasticNet => Estimator::Linear(LinearRegression::fit_elastic_net(
                        x,
                        z,
                        self.num("alpha"),
                        self.num("l1_ratio"),
                        self.num("tol"),
                        self.count("max_iter").unwrap_or(1),
                    )),
                    ModelKind::Svr => Estimator::Svr(Svr::fit(
                        x,
                        z,
                        self.num("C"),
                        self.num("epsilon"),
                        self.kernel(x),
                        self.num("tol"),
                    )),
                    ModelKind::RandomForestRegressor => Estimator::Forest(Forest::fit(
                        x,
                        Targets::Values(z),
                        TreeTask::Regress,
                        self.count("n_estimators").unwrap_or(1),
                        true,
                        self.tree_params(x.cols()),
                        seed,
                    )),
                    _ => unreachable!("regression kinds only"),
                }
            }
            _ => {
                return Err(ModelError::Input(format!(
                    "{} is a {} model but the targets are not",
                    self.name(),
                    self.task().as_str()
                )))
            }
        };
        Ok(estimator)
    }
}
