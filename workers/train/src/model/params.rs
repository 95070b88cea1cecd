//! The parameter schema of every model (names, kinds, scikit-learn's defaults) and its parsing
//! into a [`ModelSpec`]: whole numbers stay integers (`n_neighbors=5`), unlimited depth is
//! `None`, as scikit-learn writes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ModelError;

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
    ElasticNet,
    Svr,
    RandomForestRegressor,
}

/// Every model, in the order the errors list them.
pub const KINDS: [ModelKind; 12] = [
    ModelKind::Logistic,
    ModelKind::Svc,
    ModelKind::RandomForest,
    ModelKind::Knn,
    ModelKind::DecisionTree,
    ModelKind::GaussianNb,
    ModelKind::Linear,
    ModelKind::Ridge,
    ModelKind::Lasso,
    ModelKind::ElasticNet,
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
    "elastic_net",
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
    /// A number from 0 to 1.
    Fraction,
    /// An integer ≥ 1.
    Count,
    /// `None` (no limit) or an integer ≥ 1.
    Depth,
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
            ParamKind::Fraction => "a number from 0 to 1",
            ParamKind::Count => "a whole number of at least 1",
            ParamKind::Depth => "`None` (no limit) or a whole number of at least 1",
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
    /// A whole number (a count), written without a decimal point.
    Int(u64),
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
    def("max_depth", ParamKind::Depth, "None"),
    def("min_samples_split", ParamKind::Count, "2"),
    def("min_samples_leaf", ParamKind::Count, "1"),
    def("max_features", ParamKind::MaxFeatures, "sqrt"),
];
const FOREST_REGRESSOR: &[ParamDef] = &[
    def("n_estimators", ParamKind::Count, "100"),
    def("max_depth", ParamKind::Depth, "None"),
    def("min_samples_split", ParamKind::Count, "2"),
    def("min_samples_leaf", ParamKind::Count, "1"),
    def("max_features", ParamKind::MaxFeatures, "all"),
];
const KNN: &[ParamDef] = &[def("n_neighbors", ParamKind::Count, "5")];
const TREE: &[ParamDef] = &[
    def("max_depth", ParamKind::Depth, "None"),
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
const ELASTIC_NET: &[ParamDef] = &[
    def("alpha", ParamKind::Positive, "1.0"),
    def("l1_ratio", ParamKind::Fraction, "0.5"),
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
            | ModelKind::ElasticNet
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
            ModelKind::ElasticNet => ELASTIC_NET,
            ModelKind::Svr => SVR,
            ModelKind::RandomForestRegressor => FOREST_REGRESSOR,
        }
    }

    /// The names of the parameters it accepts.
    pub fn param_names(self) -> Vec<&'static str> {
        self.params().iter().map(|p| p.name).collect()
    }
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
    // A count: a whole number in 1..=1e9 (`5` or `5.0`).
    let whole = || {
        number()
            .filter(|v| v.fract() == 0.0 && *v >= 1.0 && *v <= 1e9)
            .map(|v| v as u64)
    };
    let value = match def.kind {
        ParamKind::Positive => Value::Num(
            number()
                .filter(|v| *v > 0.0 && (1.0 / v).is_finite())
                .ok_or_else(bad)?,
        ),
        ParamKind::NonNegative => Value::Num(number().filter(|v| *v >= 0.0).ok_or_else(bad)?),
        ParamKind::Fraction => Value::Num(
            number()
                .filter(|v| (0.0..=1.0).contains(v))
                .ok_or_else(bad)?,
        ),
        ParamKind::Count => Value::Int(whole().ok_or_else(bad)?),
        ParamKind::Depth => match text {
            "None" | "none" => Value::Word("None".to_owned()),
            _ => Value::Int(whole().ok_or_else(bad)?),
        },
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
            _ => Value::Int(whole().ok_or_else(bad)?),
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

    /// The effective parameters (defaults filled in) as JSON, e.g. `{"C": 1.0, "kernel": "rbf"}`
    /// or `{"max_depth": "None", "n_estimators": 100, …}`.
    pub fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.values).unwrap_or_default()
    }

    /// A parameter's value, when numeric (whole numbers included).
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.values.get(name) {
            Some(Value::Num(v)) => Some(*v),
            Some(Value::Int(v)) => Some(*v as f64),
            _ => None,
        }
    }

    /// A numeric parameter (NaN when absent or a word).
    pub(super) fn num(&self, name: &str) -> f64 {
        self.number(name).unwrap_or(f64::NAN)
    }

    /// A whole-number parameter, `None` when absent or a word (`max_depth=None`).
    pub(super) fn count(&self, name: &str) -> Option<usize> {
        match self.values.get(name) {
            Some(Value::Int(v)) => usize::try_from(*v).ok(),
            _ => None,
        }
    }

    /// A word parameter (`""` when numeric or absent).
    pub(super) fn word(&self, name: &str) -> &str {
        match self.values.get(name) {
            Some(Value::Word(w)) => w,
            _ => "",
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

    #[test]
    fn parses_names_params_and_defaults() {
        let spec = ModelSpec::parse("logistic", &params(&[])).unwrap();
        assert_eq!(
            spec.params_json(),
            serde_json::json!({"C": 1.0, "max_iter": 100, "tol": 1e-4})
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
        // Whole numbers print as scikit-learn writes them, and trees grow without a depth limit
        // unless given one.
        let forest = ModelSpec::parse("random_forest", &params(&[])).unwrap();
        assert_eq!(forest.params_json()["n_estimators"].to_string(), "100");
        assert_eq!(forest.params_json()["max_depth"], "None");
        assert_eq!(forest.count("max_depth"), None);
        let shallow = ModelSpec::parse("decision_tree", &params(&[("max_depth", "3")])).unwrap();
        assert_eq!(shallow.count("max_depth"), Some(3));
        assert_eq!(shallow.params_json()["max_depth"].to_string(), "3");
        let knn = ModelSpec::parse("knn", &params(&[("n_neighbors", "7.0")])).unwrap();
        assert_eq!(knn.params_json()["n_neighbors"].to_string(), "7");
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
            ("random_forest", "max_depth", "0"),
            ("elastic_net", "l1_ratio", "1.5"),
            ("decision_tree", "max_depth", "-1"),
        ] {
            let err = ModelSpec::parse(model, &params(&[(param, value)])).unwrap_err();
            assert!(
                matches!(err, ModelError::BadParam { .. }),
                "{model} {param}={value:?}: {err}"
            );
        }
    }
}
