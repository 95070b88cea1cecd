//! Classification metrics per fold, and their summary across folds.
//!
//! Classes are indices `0..n_classes`. Definitions follow scikit-learn:
//!
//! - **accuracy**: the share of rows predicted correctly;
//! - **balanced accuracy**: the mean recall over the classes *present in `y_true`* (a class that is
//!   only predicted, never true, has no recall and is left out, as scikit-learn does after warning);
//! - **confusion matrix**: `m[true][predicted]` counts, rows = true class, columns = predicted.
//!
//! Across folds, [`summarise`] gives the mean and the **sample** standard deviation (`ddof = 1`,
//! dividing by `k - 1`), the spread most papers and reports quote for cross-validation scores.
//! (NumPy's `np.std` defaults to the population sd, `ddof = 0`, which is smaller.)

use serde::{Deserialize, Serialize};

/// Why a metric cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// No rows (or no values to summarise).
    #[error("cannot compute a metric over no values")]
    Empty,
    /// Truth and predictions differ in length.
    #[error("{truth} true labels but {predicted} predictions")]
    Length {
        /// Number of true labels.
        truth: usize,
        /// Number of predictions.
        predicted: usize,
    },
    /// A class index is not below the number of classes.
    #[error("class index {index} out of range for {n_classes} classes")]
    ClassOutOfRange {
        /// The index.
        index: usize,
        /// The number of classes.
        n_classes: usize,
    },
    /// The sample standard deviation needs at least two values.
    #[error("a sample standard deviation needs at least two values, got {0}")]
    TooFewValues(usize),
}

/// Mean and sample standard deviation of a score across folds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (`ddof = 1`).
    pub sd: f64,
}

fn check(y_true: &[usize], y_pred: &[usize]) -> Result<(), MetricsError> {
    if y_true.len() != y_pred.len() {
        return Err(MetricsError::Length {
            truth: y_true.len(),
            predicted: y_pred.len(),
        });
    }
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    Ok(())
}

/// The share of rows where `y_pred` equals `y_true`.
pub fn accuracy(y_true: &[usize], y_pred: &[usize]) -> Result<f64, MetricsError> {
    check(y_true, y_pred)?;
    let correct = y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count();
    Ok(correct as f64 / y_true.len() as f64)
}

/// The confusion matrix: `m[t][p]` is the number of rows of true class `t` predicted as `p`.
pub fn confusion_matrix(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
) -> Result<Vec<Vec<u64>>, MetricsError> {
    check(y_true, y_pred)?;
    let mut m = vec![vec![0u64; n_classes]; n_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        let index = t.max(p);
        if index >= n_classes {
            return Err(MetricsError::ClassOutOfRange { index, n_classes });
        }
        m[t][p] += 1;
    }
    Ok(m)
}

/// The mean per-class recall over the classes present in `y_true`.
pub fn balanced_accuracy(
    y_true: &[usize],
    y_pred: &[usize],
    n_classes: usize,
) -> Result<f64, MetricsError> {
    let m = confusion_matrix(y_true, y_pred, n_classes)?;
    balanced_accuracy_from_confusion(&m).ok_or(MetricsError::Empty)
}

/// Balanced accuracy from a confusion matrix (rows = true class); `None` if every row is empty.
pub fn balanced_accuracy_from_confusion(m: &[Vec<u64>]) -> Option<f64> {
    let recalls: Vec<f64> = m
        .iter()
        .enumerate()
        .filter_map(|(t, row)| {
            let total: u64 = row.iter().sum();
            (total > 0).then(|| row.get(t).copied().unwrap_or(0) as f64 / total as f64)
        })
        .collect();
    (!recalls.is_empty()).then(|| recalls.iter().sum::<f64>() / recalls.len() as f64)
}

/// Mean and sample standard deviation (`ddof = 1`) of at least two values.
pub fn summarise(values: &[f64]) -> Result<Summary, MetricsError> {
    if values.len() < 2 {
        return Err(MetricsError::TooFewValues(values.len()));
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    Ok(Summary {
        mean,
        sd: (ss / (n - 1.0)).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn accuracy_counts_matches() {
        assert!(close(accuracy(&[0, 1, 1, 2], &[0, 1, 0, 0]).unwrap(), 0.5));
        assert!(close(accuracy(&[1, 1], &[1, 1]).unwrap(), 1.0));
    }

    #[test]
    fn confusion_rows_are_truth() {
        let m = confusion_matrix(&[0, 0, 0, 1, 2], &[0, 1, 1, 1, 0], 3).unwrap();
        assert_eq!(m, vec![vec![1, 2, 0], vec![0, 1, 0], vec![1, 0, 0]]);
    }

    #[test]
    fn balanced_accuracy_is_mean_recall_over_present_classes() {
        // Recalls: class 0 → 3/4, class 1 → 1/2. Class 2 is predicted but never true: left out.
        let truth = [0, 0, 0, 0, 1, 1];
        let pred = [0, 0, 0, 2, 1, 0];
        assert!(close(
            balanced_accuracy(&truth, &pred, 3).unwrap(),
            (0.75 + 0.5) / 2.0
        ));
        // Differs from accuracy on imbalanced data (so the test can tell them apart).
        assert!(close(accuracy(&truth, &pred).unwrap(), 4.0 / 6.0));
    }

    #[test]
    fn summary_uses_the_sample_sd() {
        let s = summarise(&[0.5, 0.7, 0.9]).unwrap();
        assert!(close(s.mean, 0.7));
        // Sample variance: (0.04 + 0 + 0.04) / 2 = 0.04 → sd 0.2 (the population sd is 0.163).
        assert!(close(s.sd, 0.2));
        assert_eq!(summarise(&[1.0]), Err(MetricsError::TooFewValues(1)));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(accuracy(&[], &[]), Err(MetricsError::Empty));
        assert_eq!(
            accuracy(&[0], &[0, 1]),
            Err(MetricsError::Length {
                truth: 1,
                predicted: 2
            })
        );
        assert_eq!(
            confusion_matrix(&[0, 3], &[0, 0], 2),
            Err(MetricsError::ClassOutOfRange {
                index: 3,
                n_classes: 2
            })
        );
        assert_eq!(
            balanced_accuracy(&[0], &[5], 2),
            Err(MetricsError::ClassOutOfRange {
                index: 5,
                n_classes: 2
            })
        );
    }
}
