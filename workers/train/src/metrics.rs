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

use std::collections::BTreeMap;

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

/// Mean and sample standard deviation, with sd 0 for a single value (a held-out test set).
pub fn mean_sd(values: &[f64]) -> Option<Summary> {
    match values.len() {
        0 => None,
        1 => Some(Summary {
            mean: values[0],
            sd: 0.0,
        }),
        _ => summarise(values).ok(),
    }
}

/// Per-class precision, recall and F1 macro-averaged over the classes present in `y_true` or
/// `y_pred` (scikit-learn's `average="macro"`, 0 where undefined): `(precision, recall, f1)`.
pub fn macro_prf(m: &[Vec<u64>]) -> (f64, f64, f64) {
    let k = m.len();
    let (mut p_sum, mut r_sum, mut f_sum, mut labels) = (0.0, 0.0, 0.0, 0.0);
    for c in 0..k {
        let tp = m[c][c] as f64;
        let actual: f64 = m[c].iter().sum::<u64>() as f64;
        let predicted: f64 = m.iter().map(|row| row[c]).sum::<u64>() as f64;
        if actual == 0.0 && predicted == 0.0 {
            continue;
        }
        labels += 1.0;
        let p = if predicted > 0.0 { tp / predicted } else { 0.0 };
        let r = if actual > 0.0 { tp / actual } else { 0.0 };
        let f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        p_sum += p;
        r_sum += r;
        f_sum += f;
    }
    if labels == 0.0 {
        return (0.0, 0.0, 0.0);
    }
    (p_sum / labels, r_sum / labels, f_sum / labels)
}

/// ROC AUC of scores for the positive class (`y_true == 1`), ties counted half (the
/// Mann–Whitney statistic); `None` when a class is missing.
pub fn roc_auc(y_true: &[usize], scores: &[f64]) -> Option<f64> {
    let ranks = crate::stats::ranks(scores);
    let n_pos = y_true.iter().filter(|&&c| c == 1).count() as f64;
    let n_neg = y_true.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let rank_sum: f64 = y_true
        .iter()
        .zip(&ranks)
        .filter(|(c, _)| **c == 1)
        .map(|(_, r)| r)
        .sum();
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// The ROC curve: `(fpr, tpr)` at every distinct threshold, from (0, 0) to (1, 1).
pub fn roc_curve(y_true: &[usize], scores: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let n_pos = y_true.iter().filter(|&&c| c == 1).count() as f64;
    let n_neg = y_true.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut fpr, mut tpr) = (vec![0.0], vec![0.0]);
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if y_true[i] == 1 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            fpr.push(fp / n_neg);
            tpr.push(tp / n_pos);
        }
    }
    Some((fpr, tpr))
}

/// Metric name → value, and the confusion matrix.
pub type Scored = (BTreeMap<String, f64>, Vec<Vec<u64>>);

/// Every classification metric of one set of predictions: accuracy, balanced accuracy,
/// macro precision/recall/F1, and for two classes sensitivity (recall of class 1), specificity
/// (recall of class 0) and ROC AUC (when scores are given and both classes occur).
pub fn classification_metrics(
    y_true: &[usize],
    y_pred: &[usize],
    scores: Option<&[f64]>,
    n_classes: usize,
) -> Result<Scored, MetricsError> {
    let m = confusion_matrix(y_true, y_pred, n_classes)?;
    let mut out = BTreeMap::new();
    out.insert("accuracy".to_owned(), accuracy(y_true, y_pred)?);
    if let Some(b) = balanced_accuracy_from_confusion(&m) {
        out.insert("balanced_accuracy".to_owned(), b);
    }
    let (p, r, f) = macro_prf(&m);
    out.insert("precision_macro".to_owned(), p);
    out.insert("recall_macro".to_owned(), r);
    out.insert("f1_macro".to_owned(), f);
    if n_classes == 2 {
        let pos: u64 = m[1].iter().sum();
        let neg: u64 = m[0].iter().sum();
        if pos > 0 {
            out.insert("sensitivity".to_owned(), m[1][1] as f64 / pos as f64);
        }
        if neg > 0 {
            out.insert("specificity".to_owned(), m[0][0] as f64 / neg as f64);
        }
        if let Some(auc) = scores.and_then(|s| roc_auc(y_true, s)) {
            out.insert("roc_auc".to_owned(), auc);
        }
    }
    Ok((out, m))
}

/// Regression metrics: R², MAE, RMSE and Pearson r (left out when undefined).
pub fn regression_metrics(
    y_true: &[f64],
    y_pred: &[f64],
) -> Result<BTreeMap<String, f64>, MetricsError> {
    if y_true.len() != y_pred.len() {
        return Err(MetricsError::Length {
            truth: y_true.len(),
            predicted: y_pred.len(),
        });
    }
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    let n = y_true.len() as f64;
    let mean = y_true.iter().sum::<f64>() / n;
    let ss_tot: f64 = y_true.iter().map(|v| (v - mean).powi(2)).sum();
    let ss_res: f64 = y_true
        .iter()
        .zip(y_pred)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    let mut out = BTreeMap::new();
    if ss_tot > 0.0 {
        out.insert("r2".to_owned(), 1.0 - ss_res / ss_tot);
    }
    out.insert(
        "mae".to_owned(),
        y_true
            .iter()
            .zip(y_pred)
            .map(|(t, p)| (t - p).abs())
            .sum::<f64>()
            / n,
    );
    out.insert("rmse".to_owned(), (ss_res / n).sqrt());
    let r = crate::stats::pearson_r(y_true, y_pred);
    if r.is_finite() && y_true.len() > 1 {
        out.insert("pearson_r".to_owned(), r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_prf_and_regression() {
        // sklearn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75
        assert!((roc_auc(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(roc_auc(&[1, 1], &[0.1, 0.2]), None);
        let (fpr, tpr) = roc_curve(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert_eq!((fpr.first(), tpr.last()), (Some(&0.0), Some(&1.0)));
        let m = confusion_matrix(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 3).unwrap();
        let (p, r, f) = macro_prf(&m);
        // sklearn: precision 0.3889, recall 0.5, f1 0.4333 (macro, zero_division=0)
        assert!(
            (p - 0.388_888_888_9).abs() < 1e-9
                && (r - 0.5).abs() < 1e-12
                && (f - 0.433_333_333_3).abs() < 1e-9
        );
        let reg = regression_metrics(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]).unwrap();
        assert!((reg["r2"] - 0.5).abs() < 1e-12 && (reg["mae"] - 1.0 / 3.0).abs() < 1e-12);
    }

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
