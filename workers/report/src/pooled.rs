//! Metrics of a run's out-of-fold predictions taken all at once ("pooled"), beside the
//! per-fold means the train worker stores.
//!
//! Leave-one-out tests one sample per fold, so a per-fold balanced accuracy, R² or standard
//! deviation means nothing there; its report shows these pooled values instead. Every report
//! shows them beside the means. Computed from the stored predictions of the first repeat, so a
//! report stays a pure function of its run.

use std::collections::BTreeMap;

use crate::model::RunData;

/// Pooled metrics by name: `accuracy`, `balanced_accuracy` and (binary, from the stored pooled
/// ROC curve) `roc_auc` for classification; `r2`, `mae`, `rmse` and `pearson_r` for
/// regression. A metric that is undefined for the predictions (e.g. R² of a constant target) is
/// left out.
pub fn pooled_metrics(run: &RunData) -> BTreeMap<String, f64> {
    let first = run.predictions.iter().filter(|p| p.repeat == 0);
    let mut out = BTreeMap::new();
    if run.is_regression() {
        let (truth, predicted): (Vec<f64>, Vec<f64>) = run.regression_points().into_iter().unzip();
        for (name, value) in regression(&truth, &predicted) {
            out.insert(name.to_owned(), value);
        }
    } else {
        let pairs: Vec<(&str, &str)> = first
            .map(|p| (p.y_true.as_str(), p.y_pred.as_str()))
            .collect();
        if !pairs.is_empty() {
            let right = pairs.iter().filter(|(t, p)| t == p).count();
            out.insert("accuracy".to_owned(), right as f64 / pairs.len() as f64);
            out.insert("balanced_accuracy".to_owned(), balanced_accuracy(&pairs));
        }
        if let Some(roc) = &run.results.roc {
            out.insert("roc_auc".to_owned(), roc.auc);
        }
    }
    out.retain(|_, v| v.is_finite());
    out
}

/// The mean over the true classes of the share predicted right (recall).
fn balanced_accuracy(pairs: &[(&str, &str)]) -> f64 {
    let mut per_class: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (truth, predicted) in pairs {
        let (right, total) = per_class.entry(truth).or_default();
        *total += 1;
        if truth == predicted {
            *right += 1;
        }
    }
    let recalls: Vec<f64> = per_class
        .values()
        .map(|(right, total)| *right as f64 / *total as f64)
        .collect();
    recalls.iter().sum::<f64>() / recalls.len() as f64
}

/// R², MAE, RMSE and Pearson r of predictions against the truth (as scikit-learn and SciPy
/// define them); R² and r are NaN when the truth (or the prediction, for r) is constant.
fn regression(truth: &[f64], predicted: &[f64]) -> Vec<(&'static str, f64)> {
    let n = truth.len().min(predicted.len());
    if n == 0 {
        return Vec::new();
    }
    let (truth, predicted) = (&truth[..n], &predicted[..n]);
    let count = n as f64;
    let mean_t = truth.iter().sum::<f64>() / count;
    let mean_p = predicted.iter().sum::<f64>() / count;
    let ss_tot: f64 = truth.iter().map(|t| (t - mean_t).powi(2)).sum();
    let ss_pred: f64 = predicted.iter().map(|p| (p - mean_p).powi(2)).sum();
    let ss_res: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    let abs: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).abs())
        .sum();
    let cross: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - mean_t) * (p - mean_p))
        .sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        f64::NAN
    };
    let r = if ss_tot > 0.0 && ss_pred > 0.0 {
        cross / (ss_tot * ss_pred).sqrt()
    } else {
        f64::NAN
    };
    vec![
        ("r2", r2),
        ("mae", abs / count),
        ("rmse", (ss_res / count).sqrt()),
        ("pearson_r", r),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn balanced_accuracy_weighs_every_class_alike() {
        // Class a: 3 of 4 right; class b: 0 of 1 → (0.75 + 0) / 2.
        let pairs = [("a", "a"), ("a", "a"), ("a", "a"), ("a", "b"), ("b", "a")];
        assert!(close(balanced_accuracy(&pairs), 0.375));
    }

    #[test]
    fn regression_metrics_match_their_definitions() {
        // scikit-learn: r2_score([1,2,3,4],[1.5,2,2.5,5]) = 0.7; MAE 0.5; RMSE sqrt(1.5/4);
        // scipy.stats.pearsonr → 0.9135002783911398.
        let m: BTreeMap<&str, f64> = regression(&[1.0, 2.0, 3.0, 4.0], &[1.5, 2.0, 2.5, 5.0])
            .into_iter()
            .collect();
        assert!(close(m["r2"], 0.7), "{m:?}");
        assert!(close(m["mae"], 0.5));
        assert!(close(m["rmse"], (1.5f64 / 4.0).sqrt()));
        assert!(close(m["pearson_r"], 0.9135002783911398), "{m:?}");
        let constant = regression(&[2.0, 2.0], &[1.0, 3.0]);
        assert!(constant[0].1.is_nan() && constant[3].1.is_nan());
    }

    #[test]
    fn runs_pool_their_first_repeat() {
        let run = fixtures::complete_run(5, 8, 60);
        let pooled = pooled_metrics(&run);
        let right = run
            .predictions
            .iter()
            .filter(|p| p.y_true == p.y_pred)
            .count();
        assert!(close(pooled["accuracy"], right as f64 / 60.0));
        assert_eq!(pooled["roc_auc"], run.results.roc.as_ref().unwrap().auc);
        let regression = pooled_metrics(&fixtures::regression_run(5, 60));
        assert_eq!(
            regression.keys().collect::<Vec<_>>(),
            ["mae", "pearson_r", "r2", "rmse"]
        );
        assert!(regression["r2"] > 0.0 && regression["r2"] < 1.0);
    }
}
