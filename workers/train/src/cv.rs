//! One training run: stratified k-fold cross-validation, then the final fit on all rows.
//!
//! [`cross_validate`] checks the data, maps the labels to class indices (sorted class names),
//! splits the rows with [`crate::folds::stratified_k_fold`], and for every fold:
//!
//! 1. fits a [`crate::preprocess::StandardScaler`] on the fold's training rows only,
//! 2. standardises training and test rows with it and fits the model on the training rows,
//! 3. predicts the test rows and scores them (accuracy, balanced accuracy, confusion matrix).
//!
//! Then it summarises the scores across folds (mean, sample sd) and fits the same pipeline on all
//! rows: that final [`FittedModel`] is what gets stored. Everything here is CPU-bound and
//! synchronous; callers in async code run it on a blocking thread. Each fold runs in a `fold`
//! tracing span, a child of the caller's current span.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::folds::{stratified_k_fold, Fold, FoldError};
use crate::metrics::{self, MetricsError, Summary};
use crate::model::{FittedModel, ModelError, ModelSpec};

/// The cross-validation scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CvConfig {
    /// Number of folds `k`.
    pub folds: usize,
    /// Shuffle seed: the same seed gives the same folds.
    pub seed: u64,
}

/// One fold's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldResult {
    /// The fold number, **1-based** (`1..=k`).
    pub fold: usize,
    /// Number of training rows.
    pub n_train: usize,
    /// Number of test rows.
    pub n_test: usize,
    /// Test accuracy.
    pub accuracy: f64,
    /// Test balanced accuracy (mean recall over the classes in the test rows).
    pub balanced_accuracy: f64,
    /// Test confusion matrix: rows = true class, columns = predicted, in `classes` order.
    pub confusion: Vec<Vec<u64>>,
}

/// Everything a run produces.
#[derive(Debug)]
pub struct CvOutcome {
    /// The class names, sorted; class index `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// Number of rows.
    pub n_samples: usize,
    /// Number of features per row.
    pub n_features: usize,
    /// Per-fold scores, in fold order.
    pub folds: Vec<FoldResult>,
    /// Accuracy across folds.
    pub accuracy: Summary,
    /// Balanced accuracy across folds.
    pub balanced_accuracy: Summary,
    /// The pipeline fitted on all rows.
    pub model: FittedModel,
}

/// Why a run cannot be completed. Every variant is caused by the data or the request, so retrying
/// the same job cannot help.
#[derive(Debug, thiserror::Error)]
pub enum CvError {
    /// The rows are unusable (empty, ragged, non-finite, mismatched labels).
    #[error("{0}")]
    Data(String),
    /// Fewer than two classes.
    #[error("classification needs at least 2 classes, found {}: {}", .0.len(), quote(.0))]
    TooFewClasses(Vec<String>),
    /// The folds cannot be formed.
    #[error(transparent)]
    Folds(#[from] FoldError),
    /// Fitting or predicting within a fold failed.
    #[error("fold {fold}: {source}")]
    Fold {
        /// The 1-based fold number.
        fold: usize,
        /// What failed.
        #[source]
        source: ModelError,
    },
    /// The final fit on all rows failed.
    #[error("final fit on all samples: {0}")]
    Final(#[source] ModelError),
    /// Scoring failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

fn quote(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Maps labels to indices into their sorted distinct values: `(classes, y)`.
pub fn encode_labels(labels: &[String]) -> (Vec<String>, Vec<usize>) {
    let mut classes: Vec<String> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let index: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let y = labels
        .iter()
        .map(|l| index.get(l.as_str()).copied().unwrap_or_default())
        .collect();
    (classes, y)
}

/// Cross-validates `spec` on rows `x` with class names `labels`, then fits it on all rows.
pub fn cross_validate(
    x: &[Vec<f64>],
    labels: &[String],
    spec: &ModelSpec,
    config: CvConfig,
) -> Result<CvOutcome, CvError> {
    let n_features = check_data(x, labels)?;
    let (classes, y) = encode_labels(labels);
    if classes.len() < 2 {
        return Err(CvError::TooFewClasses(classes));
    }
    let splits = stratified_k_fold(labels, config.folds, config.seed)?;

    let mut folds = Vec::with_capacity(splits.len());
    for (i, split) in splits.iter().enumerate() {
        let number = i + 1;
        let span = tracing::info_span!(
            "fold",
            fold = number,
            n_train = split.train.len(),
            n_test = split.test.len()
        );
        let (result, _) = span.in_scope(|| run_fold(x, &y, &classes, spec, split, number))?;
        tracing::debug!(
            parent: &span,
            accuracy = result.accuracy,
            balanced_accuracy = result.balanced_accuracy,
            "fold scored"
        );
        folds.push(result);
    }

    let accuracy = metrics::summarise(&folds.iter().map(|f| f.accuracy).collect::<Vec<_>>())?;
    let balanced_accuracy = metrics::summarise(
        &folds
            .iter()
            .map(|f| f.balanced_accuracy)
            .collect::<Vec<_>>(),
    )?;

    let model = tracing::info_span!("final_fit", n_samples = x.len())
        .in_scope(|| FittedModel::fit(spec, classes.clone(), x, &y))
        .map_err(CvError::Final)?;

    Ok(CvOutcome {
        classes,
        n_samples: x.len(),
        n_features,
        folds,
        accuracy,
        balanced_accuracy,
        model,
    })
}

/// Fits the pipeline on the fold's training rows and scores it on its test rows.
fn run_fold(
    x: &[Vec<f64>],
    y: &[usize],
    classes: &[String],
    spec: &ModelSpec,
    split: &Fold,
    number: usize,
) -> Result<(FoldResult, FittedModel), CvError> {
    let pick_x = |rows: &[usize]| rows.iter().map(|&i| x[i].clone()).collect::<Vec<_>>();
    let pick_y = |rows: &[usize]| rows.iter().map(|&i| y[i]).collect::<Vec<_>>();
    let (train_x, train_y) = (pick_x(&split.train), pick_y(&split.train));
    let (test_x, test_y) = (pick_x(&split.test), pick_y(&split.test));

    let fold_error = |source| CvError::Fold {
        fold: number,
        source,
    };
    let model = FittedModel::fit(spec, classes.to_vec(), &train_x, &train_y).map_err(fold_error)?;
    let predicted = model.predict_indices(&test_x).map_err(fold_error)?;

    let confusion = metrics::confusion_matrix(&test_y, &predicted, classes.len())?;
    let result = FoldResult {
        fold: number,
        n_train: train_x.len(),
        n_test: test_x.len(),
        accuracy: metrics::accuracy(&test_y, &predicted)?,
        balanced_accuracy: metrics::balanced_accuracy(&test_y, &predicted, classes.len())?,
        confusion,
    };
    Ok((result, model))
}

/// Checks shapes and values; returns the number of features.
fn check_data(x: &[Vec<f64>], labels: &[String]) -> Result<usize, CvError> {
    if x.len() != labels.len() {
        return Err(CvError::Data(format!(
            "{} feature rows but {} labels",
            x.len(),
            labels.len()
        )));
    }
    let Some(first) = x.first() else {
        return Err(CvError::Data("there are no samples".into()));
    };
    let n_features = first.len();
    if n_features == 0 {
        return Err(CvError::Data("the samples have no features".into()));
    }
    for (i, row) in x.iter().enumerate() {
        if row.len() != n_features {
            return Err(CvError::Data(format!(
                "sample {i} has {} features, sample 0 has {n_features}",
                row.len()
            )));
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(CvError::Data(format!(
                "sample {i}, feature {j} is not a finite number"
            )));
        }
    }
    Ok(n_features)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `n` rows per class; class `c` is centred at `c * separation` on the first two features,
    /// the other features are noise on very different scales.
    fn synthetic(
        classes: &[&str],
        n: usize,
        separation: f64,
        seed: u64,
    ) -> (Vec<Vec<f64>>, Vec<String>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            for (c, name) in classes.iter().enumerate() {
                let centre = c as f64 * separation;
                x.push(vec![
                    centre + rng.random_range(-1.0..1.0),
                    -centre + rng.random_range(-1.0..1.0),
                    1000.0 * rng.random_range(-1.0..1.0),
                    0.001 * rng.random_range(-1.0..1.0),
                    (i % 3) as f64,
                ]);
                labels.push((*name).to_owned());
            }
        }
        (x, labels)
    }

    fn spec() -> ModelSpec {
        ModelSpec::Logistic { c: 1.0 }
    }

    #[test]
    fn separable_data_scores_high() {
        let (x, labels) = synthetic(&["control", "patient"], 30, 4.0, 1);
        let out = cross_validate(&x, &labels, &spec(), CvConfig { folds: 5, seed: 0 }).unwrap();
        assert_eq!(out.classes, vec!["control", "patient"]);
        assert_eq!((out.n_samples, out.n_features), (60, 5));
        assert_eq!(out.folds.len(), 5);
        assert!(out.accuracy.mean > 0.9, "{:?}", out.accuracy);
        assert!(out.balanced_accuracy.mean > 0.9);
        for (i, fold) in out.folds.iter().enumerate() {
            assert_eq!(fold.fold, i + 1);
            assert_eq!(fold.n_train + fold.n_test, 60);
            let total: u64 = fold.confusion.iter().flatten().sum();
            assert_eq!(total as usize, fold.n_test);
        }
        assert_eq!(
            out.model.predict(&x[..2]).unwrap(),
            vec!["control", "patient"]
        );
    }

    #[test]
    fn noise_scores_near_chance() {
        // Same generator with no separation: CV must not find signal (guards against leakage).
        let (x, labels) = synthetic(&["a", "b"], 40, 0.0, 2);
        let out = cross_validate(&x, &labels, &spec(), CvConfig { folds: 4, seed: 3 }).unwrap();
        assert!(out.accuracy.mean < 0.75, "{:?}", out.accuracy);
    }

    #[test]
    fn three_classes() {
        let (x, labels) = synthetic(&["x", "y", "z"], 12, 5.0, 4);
        let out = cross_validate(&x, &labels, &spec(), CvConfig { folds: 3, seed: 5 }).unwrap();
        assert!(out.accuracy.mean > 0.9, "{:?}", out.accuracy);
        assert!(out.folds.iter().all(|f| f.confusion.len() == 3));
    }

    #[test]
    fn repeatable() {
        let (x, labels) = synthetic(&["a", "b"], 20, 1.0, 6);
        let config = CvConfig { folds: 4, seed: 9 };
        let a = cross_validate(&x, &labels, &spec(), config).unwrap();
        let b = cross_validate(&x, &labels, &spec(), config).unwrap();
        assert_eq!(a.folds, b.folds);
    }

    #[test]
    fn fold_scaler_ignores_test_rows() {
        let (mut x, labels) = synthetic(&["a", "b"], 10, 3.0, 7);
        let (classes, y) = encode_labels(&labels);
        let split = &stratified_k_fold(&labels, 2, 0).unwrap()[0];
        let (_, before) = run_fold(&x, &y, &classes, &spec(), split, 1).unwrap();

        let test_row = split.test[0];
        x[test_row] = vec![1e6; 5];
        let (_, after) = run_fold(&x, &y, &classes, &spec(), split, 1).unwrap();
        assert_eq!(before.scaler(), after.scaler());

        // A training row does move it (so the assertion above can fail).
        x[split.train[0]] = vec![1e6; 5];
        let (_, moved) = run_fold(&x, &y, &classes, &spec(), split, 1).unwrap();
        assert_ne!(before.scaler(), moved.scaler());
    }

    #[test]
    fn encodes_labels_in_sorted_order() {
        let labels: Vec<String> = ["b", "a", "c", "a"].iter().map(|s| s.to_string()).collect();
        let (classes, y) = encode_labels(&labels);
        assert_eq!(classes, vec!["a", "b", "c"]);
        assert_eq!(y, vec![1, 0, 2, 0]);
    }

    #[test]
    fn bad_data_is_a_clear_error() {
        let config = CvConfig { folds: 2, seed: 0 };
        let one_class = vec!["a".to_owned(); 4];
        let rows = vec![vec![1.0], vec![2.0], vec![3.0], vec![4.0]];
        let err = cross_validate(&rows, &one_class, &spec(), config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "classification needs at least 2 classes, found 1: \"a\""
        );

        let labels: Vec<String> = ["a", "a", "a", "b"].iter().map(|s| s.to_string()).collect();
        let err = cross_validate(&rows, &labels, &spec(), config).unwrap_err();
        assert!(
            matches!(err, CvError::Folds(FoldError::ClassTooSmall { .. })),
            "{err}"
        );

        let ragged = vec![vec![1.0], vec![2.0, 3.0], vec![3.0], vec![4.0]];
        let labels: Vec<String> = ["a", "a", "b", "b"].iter().map(|s| s.to_string()).collect();
        assert!(matches!(
            cross_validate(&ragged, &labels, &spec(), config),
            Err(CvError::Data(_))
        ));
        let nan = vec![vec![1.0], vec![f64::NAN], vec![3.0], vec![4.0]];
        assert!(matches!(
            cross_validate(&nan, &labels, &spec(), config),
            Err(CvError::Data(_))
        ));
        assert!(matches!(
            cross_validate(&[], &[], &spec(), config),
            Err(CvError::Data(_))
        ));
        assert!(matches!(
            cross_validate(&rows[..3], &labels, &spec(), config),
            Err(CvError::Data(_))
        ));
    }
}
