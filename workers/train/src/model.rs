//! The model registry: names, parameters (with scikit-learn's defaults), fitting, prediction,
//! scores for ROC curves, feature weights, and the stored model format.
//!
//! | name | task | parameters (default) |
//! |---|---|---|
//! | `logistic` | classification | `C` (1), `max_iter` (100), `tol` (1e-4) — L2, multinomial for > 2 classes |
//! | `svc` | classification | `C` (1), `kernel` (`rbf` \| `linear`), `gamma` (`scale` = 1 / (p · Var X), or a number), `tol` (1e-3) |
//! | `random_forest` | classification | `n_estimators` (100), `max_depth` (0 = none), `min_samples_split` (2), `min_samples_leaf` (1), `max_features` (`sqrt` \| `all` \| a count) |
//! | `knn` | classification | `n_neighbors` (5) |
//! | `decision_tree` | classification | `max_depth` (0 = none), `min_samples_split` (2), `min_samples_leaf` (1) |
//! | `gaussian_nb` | classification | `var_smoothing` (1e-9) |
//! | `linear` | regression | — |
//! | `ridge` | regression | `alpha` (1) |
//! | `lasso` | regression | `alpha` (1), `max_iter` (1000), `tol` (1e-4) |
//! | `svr` | regression | `C` (1), `epsilon` (0.1), `kernel` (`rbf`), `gamma` (`scale`), `tol` (1e-3) |
//! | `random_forest_regressor` | regression | as `random_forest`, `max_features` default `all` |
//!
//! Unknown names, unknown parameters and bad values are errors that list what is accepted.
//! Classes are indices into the sorted class names. A [`FittedModel`] (pipeline + estimator +
//! class names) is plain data stored as MessagePack and tagged `swarm-<model>-v2+msgpack`; every
//! kind round-trips and predicts the same after loading.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::algo::linear::{argmax, LinearRegression, Logistic};
use crate::algo::neighbours::{GaussianNb, Knn};
use crate::algo::svm::{Kernel, Svc, Svr};
use crate::algo::tree::{Forest, Targets, TreeParams, TreeTask};
use crate::matrix::Matrix;
use crate::pipeline::{FittedPipeline, PipelineConfig, PipelineError, Supervision};

/// Classification or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Labels are classes.
    Classification,
    /// Labels are numbers.
    Regression,
}

impl Task {
    /// `classification` or `regression`.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
}

/// A known model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ModelKind {
    Logistic,
    Svc,
    RandomForest,
    Knn,
    DecisionTree,
    GaussianNb,
    Linear,
    Ridge,
    Lasso,
    Svr,
    RandomForestRegressor,
}

/// Every model, in the order the errors list them.
pub const KINDS: [ModelKind; 11] = [
    ModelKind::Logistic,
    ModelKind::Svc,
    ModelKind::RandomForest,
    ModelKind::Knn,
    ModelKind::DecisionTree,
    ModelKind::GaussianNb,
    ModelKind::Linear,
    ModelKind::Ridge,
    ModelKind::Lasso,
    ModelKind::Svr,
    ModelKind::RandomForestRegressor,
];

/// The model names [`ModelSpec::parse`] accepts.
pub const MODELS: &[&str] = &[
    "logistic",
    "svc",
    "random_forest",
    "knn",
    "decision_tree",
    "gaussian_nb",
    "linear",
    "ridge",
    "lasso",
    "svr",
    "random_forest_regressor",
];

/// How a parameter's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamKind {
    /// A positive finite number.
    Positive,
    /// A non-negative finite number.
    NonNegative,
    /// An integer ≥ 1.
    Count,
    /// An integer ≥ 0 (0 = no limit).
    Limit,
    /// `rbf` or `linear`.
    Kernel,
    /// `scale`, `auto` or a positive number.
    Gamma,
    /// `sqrt`, `log2`, `all` or a count.
    MaxFeatures,
}

impl ParamKind {
    fn expected(self) -> &'static str {
        match self {
            ParamKind::Positive => "a positive finite number",
            ParamKind::NonNegative => "a non-negative finite number",
            ParamKind::Count => "a whole number of at least 1",
            ParamKind::Limit => "a whole number (0 for no limit)",
            ParamKind::Kernel => "`rbf` or `linear`",
            ParamKind::Gamma => "`scale`, `auto` or a positive number",
            ParamKind::MaxFeatures => "`sqrt`, `log2`, `all` or a whole number of at least 1",
        }
    }
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A number.
    Num(f64),
    /// A word (`rbf`, `scale`, `sqrt`).
    Word(String),
}

struct ParamDef {
    name: &'static str,
    kind: ParamKind,
    default: &'static str,
}

const fn def(name: &'static str, kind: ParamKind, default: &'static str) -> ParamDef {
    ParamDef {
        name,
        kind,
        default,
    }
}

const LOGISTIC: &[ParamDef] = &[
    def("C", ParamKind::Positive, "1.0"),
    def("max_iter", ParamKind::Count, "100"),
    def("tol", ParamKind::Positive, "1e-4"),
];
const SVC: &[ParamDef] = &[
    def("C", ParamKind::Positive, "1.0"),
    def("kernel", ParamKind::Kernel, "rbf"),
    def("gamma", ParamKind::Gamma, "scale"),
    def("tol", ParamKind::Positive, "1e-3"),
];
const FOREST: &[ParamDef] = &[
    def("n_estimators", ParamKind::Count, "100"),
    def("max_depth", ParamKind::Limit, "0"),
    def("min_samples_split", ParamKind::Count, "2"),
    def("min_samples_leaf", ParamKind::Count, "1"),
    def("max_features", ParamKind::MaxFeatures, "sqrt"),
];
const FOREST_REGRESSOR: &[ParamDef] = &[
    def("n_estimators", ParamKind::Count, "100"),
    def("max_depth", ParamKind::Limit, "0"),
    def("min_samples_split", ParamKind::Count, "2"),
    def("min_samples_leaf", ParamKind::Count, "1"),
    def("max_features", ParamKind::MaxFeatures, "all"),
];
const KNN: &[ParamDef] = &[def("n_neighbors", ParamKind::Count, "5")];
const TREE: &[ParamDef] = &[
    def("max_depth", ParamKind::Limit, "0"),
    def("min_samples_split", ParamKind::Count, "2"),
    def("min_samples_leaf", ParamKind::Count, "1"),
];
const NB: &[ParamDef] = &[def("var_smoothing", ParamKind::NonNegative, "1e-9")];
const NONE: &[ParamDef] = &[];
const RIDGE: &[ParamDef] = &[def("alpha", ParamKind::NonNegative, "1.0")];
const LASSO: &[ParamDef] = &[
    def("alpha", ParamKind::Positive, "1.0"),
    def("max_iter", ParamKind::Count, "1000"),
    def("tol", ParamKind::Positive, "1e-4"),
];
const SVR: &[ParamDef] = &[
    def("C", ParamKind::Positive, "1.0"),
    def("epsilon", ParamKind::NonNegative, "0.1"),
    def("kernel", ParamKind::Kernel, "rbf"),
    def("gamma", ParamKind::Gamma, "scale"),
    def("tol", ParamKind::Positive, "1e-3"),
];

impl ModelKind {
    /// The name, as in [`MODELS`].
    pub fn name(self) -> &'static str {
        MODELS[KINDS.iter().position(|k| *k == self).unwrap_or(0)]
    }

    /// Classification or regression.
    pub fn task(self) -> Task {
        match self {
            ModelKind::Linear
            | ModelKind::Ridge
            | ModelKind::Lasso
            | ModelKind::Svr
            | ModelKind::RandomForestRegressor => Task::Regression,
            _ => Task::Classification,
        }
    }

    fn params(self) -> &'static [ParamDef] {
        match self {
            ModelKind::Logistic => LOGISTIC,
            ModelKind::Svc => SVC,
            ModelKind::RandomForest => FOREST,
            ModelKind::Knn => KNN,
            ModelKind::DecisionTree => TREE,
            ModelKind::GaussianNb => NB,
            ModelKind::Linear => NONE,
            ModelKind::Ridge => RIDGE,
            ModelKind::Lasso => LASSO,
            ModelKind::Svr => SVR,
            ModelKind::RandomForestRegressor => FOREST_REGRESSOR,
        }
    }

    /// The names of the parameters it accepts.
    pub fn param_names(self) -> Vec<&'static str> {
        self.params().iter().map(|p| p.name).collect()
    }
}

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

/// A model with its validated parameters (defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    kind: ModelKind,
    values: BTreeMap<&'static str, Value>,
}

fn parse_value(model: &'static str, def: &ParamDef, raw: &str) -> Result<Value, ModelError> {
    let text = raw.trim();
    let bad = || ModelError::BadParam {
        model,
        param: def.name,
        value: raw.to_owned(),
        expected: def.kind.expected(),
    };
    let number = || text.parse::<f64>().ok().filter(|v| v.is_finite());
    let value = match def.kind {
        ParamKind::Positive => Value::Num(
            number()
                .filter(|v| *v > 0.0 && (1.0 / v).is_finite())
                .ok_or_else(bad)?,
        ),
        ParamKind::NonNegative => Value::Num(number().filter(|v| *v >= 0.0).ok_or_else(bad)?),
        ParamKind::Count | ParamKind::Limit => {
            let min = if def.kind == ParamKind::Count {
                1.0
            } else {
                0.0
            };
            Value::Num(
                number()
                    .filter(|v| v.fract() == 0.0 && *v >= min && *v <= 1e9)
                    .ok_or_else(bad)?,
            )
        }
        ParamKind::Kernel => match text {
            "rbf" | "linear" => Value::Word(text.to_owned()),
            _ => return Err(bad()),
        },
        ParamKind::Gamma => match text {
            "scale" | "auto" => Value::Word(text.to_owned()),
            _ => Value::Num(number().filter(|v| *v > 0.0).ok_or_else(bad)?),
        },
        ParamKind::MaxFeatures => match text {
            "sqrt" | "log2" | "all" => Value::Word(text.to_owned()),
            _ => Value::Num(
                number()
                    .filter(|v| v.fract() == 0.0 && *v >= 1.0)
                    .ok_or_else(bad)?,
            ),
        },
    };
    Ok(value)
}

impl ModelSpec {
    /// Parses a model name and its string parameters. Missing parameters take scikit-learn's
    /// defaults; unknown names, unknown parameters and bad values are errors.
    pub fn parse(name: &str, params: &BTreeMap<String, String>) -> Result<Self, ModelError> {
        let kind = KINDS
            .iter()
            .copied()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| ModelError::UnknownModel {
                name: name.to_owned(),
            })?;
        let model = kind.name();
        let mut values = BTreeMap::new();
        for def in kind.params() {
            values.insert(def.name, parse_value(model, def, def.default)?);
        }
        let mut spec = Self { kind, values };
        for (param, value) in params {
            spec.set(param, value)?;
        }
        Ok(spec)
    }

    /// Sets one parameter from its string form (a grid candidate).
    pub fn set(&mut self, param: &str, value: &str) -> Result<(), ModelError> {
        let model = self.kind.name();
        let key = if self.kind == ModelKind::Knn && param == "k" {
            "n_neighbors"
        } else {
            param
        };
        let def = self
            .kind
            .params()
            .iter()
            .find(|d| d.name == key)
            .ok_or_else(|| ModelError::UnknownParam {
                model,
                param: param.to_owned(),
                accepted: self.kind.param_names(),
            })?;
        self.values
            .insert(def.name, parse_value(model, def, value)?);
        Ok(())
    }

    /// The model.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The model's name, as in [`MODELS`].
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Classification or regression.
    pub fn task(&self) -> Task {
        self.kind.task()
    }

    /// The effective parameters (defaults filled in) as JSON, e.g. `{"C": 1.0, "kernel": "rbf"}`.
    pub fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.values).unwrap_or_default()
    }

    /// A parameter's value, when numeric.
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.values.get(name) {
            Some(Value::Num(v)) => Some(*v),
            _ => None,
        }
    }

    fn num(&self, name: &str) -> f64 {
        self.number(name).unwrap_or(f64::NAN)
    }

    fn count(&self, name: &str) -> usize {
        self.number(name).map_or(0, |v| v as usize)
    }

    fn word(&self, name: &str) -> &str {
        match self.values.get(name) {
            Some(Value::Word(w)) => w,
            _ => "",
        }
    }

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
        let depth = self.count("max_depth");
        TreeParams {
            max_depth: (depth > 0).then_some(depth),
            min_samples_split: self.count("min_samples_split").max(2),
            min_samples_leaf: self.count("min_samples_leaf").max(1),
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
        let estimator = match (self.kind, target) {
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
                        self.count("max_iter"),
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
                        self.count("n_estimators"),
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
                        k: self.count("n_neighbors"),
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
                        self.count("max_iter"),
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
                        self.count("n_estimators"),
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
            Estimator::Svc(m) if m.kernel == Kernel::Linear && m.n_classes == 2 => {
                let pair = &m.pairs[0];
                let mut w = vec![0.0; m.support.cols()];
                for (&s, c) in pair.sv.iter().zip(&pair.coef) {
                    for (wj, xj) in w.iter_mut().zip(m.support.row(s as usize)) {
                        // Sign: positive weights favour class 1 (the decision was flipped).
                        *wj -= c * xj;
                    }
                }
                Some(("coefficients", w))
            }
            Estimator::Forest(f) => Some(("importances", f.importances())),
            Estimator::Linear(m) => Some(("coefficients", m.coef.clone())),
            _ => None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_names_params_and_defaults() {
        let spec = ModelSpec::parse("logistic", &params(&[])).unwrap();
        assert_eq!(
            spec.params_json(),
            serde_json::json!({"C": 1.0, "max_iter": 100.0, "tol": 1e-4})
        );
        let spec = ModelSpec::parse("svc", &params(&[("C", " 0.25 ")])).unwrap();
        assert_eq!(spec.number("C"), Some(0.25));
        assert_eq!(spec.params_json()["gamma"], "scale");
        assert_eq!(
            ModelSpec::parse("knn", &params(&[]))
                .unwrap()
                .number("n_neighbors"),
            Some(5.0)
        );
        assert_eq!(
            ModelSpec::parse("knn", &params(&[("k", "3")]))
                .unwrap()
                .number("n_neighbors"),
            Some(3.0)
        );
        assert_eq!(
            ModelSpec::parse("random_forest", &params(&[]))
                .unwrap()
                .number("n_estimators"),
            Some(100.0)
        );
        let unknown = ModelSpec::parse("svm", &params(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            unknown.starts_with("unknown model \"svm\"; accepted models: logistic, svc,"),
            "{unknown}"
        );
        let bad = ModelSpec::parse("logistic", &params(&[("gamma", "1")]))
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("\"gamma\"") && bad.contains("accepted parameters: C, max_iter, tol"),
            "{bad}"
        );
        let none = ModelSpec::parse("linear", &params(&[("alpha", "1")]))
            .unwrap_err()
            .to_string();
        assert!(none.contains("accepted parameters: none"), "{none}");
        for (model, param, value) in [
            ("logistic", "C", "0"),
            ("logistic", "C", "-1"),
            ("logistic", "C", "abc"),
            ("logistic", "C", "inf"),
            ("logistic", "C", "NaN"),
            ("logistic", "C", ""),
            ("logistic", "C", "1e-320"),
            ("svc", "kernel", "poly"),
            ("svc", "gamma", "-1"),
            ("knn", "n_neighbors", "2.5"),
            ("knn", "n_neighbors", "0"),
            ("random_forest", "max_features", "half"),
        ] {
            let err = ModelSpec::parse(model, &params(&[(param, value)])).unwrap_err();
            assert!(
                matches!(err, ModelError::BadParam { .. }),
                "{model} {param}={value:?}: {err}"
            );
        }
    }
}
