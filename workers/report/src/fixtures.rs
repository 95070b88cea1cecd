//! Synthetic, deterministic runs and statistics jobs with every section present, for tests,
//! benches and the screenshot in `docs/`. Not used by the worker itself.

use std::collections::BTreeMap;

use broker_schemas::results::{
    FeatureStat, FeatureWeights, GridCandidate, GridSearch, MeanSd, PermutationTest,
    PipelineSummary, RocCurve, RunResults, SiteScores, StatsResults,
};
use chrono::{TimeZone, Utc};
use uuid::Uuid;

use crate::model::{Covariate, CvScheme, FoldRow, MetricSummary, Prediction, RunData, StatsData};

/// A small deterministic generator (SplitMix64), so fixtures need no `rand`.
#[derive(Debug, Clone)]
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Region labels of the fixture project (AAL-like names): 10 regions, 45 connectivity features.
pub const REGIONS: [&str; 10] = [
    "L-Hippocampus",
    "R-Hippocampus",
    "L-Amygdala",
    "R-Amygdala",
    "L-Precuneus",
    "R-Precuneus",
    "L-Insula",
    "R-Insula",
    "L-Thalamus",
    "R-Thalamus",
];

/// The well-known metric names, then `extra_metric_<k>` up to `n_metrics`.
fn metric_names(n_metrics: usize) -> Vec<String> {
    let known = [
        "accuracy",
        "balanced_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "roc_auc",
    ];
    (0..n_metrics)
        .map(|k| {
            known
                .get(k)
                .map(|s| (*s).to_owned())
                .unwrap_or_else(|| format!("extra_metric_{k}"))
        })
        .collect()
}

/// A binary classification run (`AD` vs `CN`, 3 sites) with `n_folds` folds, `n_metrics`
/// metrics per fold, `n_subjects` out-of-fold predictions, a 12-candidate grid search, a
/// 1,000-permutation test, a ROC curve, per-site scores and 45 connectivity feature weights
/// named by [`REGIONS`].
pub fn complete_run(n_folds: usize, n_metrics: usize, n_subjects: usize) -> RunData {
    let mut rng = Mix(42);
    let classes = vec!["AD".to_owned(), "CN".to_owned()];
    let sites = ["lab-a", "lab-b", "lab-c"];
    let names = metric_names(n_metrics.max(2));

    let mut predictions = Vec::with_capacity(n_subjects);
    let mut data_summary: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for i in 0..n_subjects {
        let site = sites[i % sites.len()];
        let truth = &classes[(i / 3) % 2];
        let score = if truth == "CN" {
            0.35 + 0.6 * rng.next()
        } else {
            0.05 + 0.6 * rng.next()
        };
        let pred = if score >= 0.5 { "CN" } else { "AD" };
        *data_summary
            .entry(site.to_owned())
            .or_default()
            .entry(truth.clone())
            .or_default() += 1;
        predictions.push(Prediction {
            repeat: 0,
            site: site.to_owned(),
            subject: format!("sub-{i:05}"),
            fold: (i % n_folds.max(1)) as u32,
            y_true: truth.clone(),
            y_pred: pred.to_owned(),
            score: Some(score),
        });
    }

    let per_fold = (n_subjects / n_folds.max(1)).max(1) as u32;
    let folds: Vec<FoldRow> = (0..n_folds)
        .map(|f| {
            let metrics: BTreeMap<String, f64> = names
                .iter()
                .map(|m| (m.clone(), 0.62 + 0.25 * rng.next()))
                .collect();
            let tp = (per_fold / 2).saturating_sub(f as u32 % 3);
            let tn = (per_fold / 2).saturating_sub(1 + f as u32 % 2);
            let half = per_fold / 2;
            FoldRow {
                fold: f as u32,
                n_train: per_fold * (n_folds as u32).saturating_sub(1),
                n_test: per_fold,
                accuracy: metrics["accuracy"],
                balanced_accuracy: metrics["balanced_accuracy"],
                confusion: vec![vec![tp, half - tp], vec![half - tn, tn]]
                    .into_iter()
                    .map(|r| r.into_iter().map(u64::from).collect())
                    .collect(),
                metrics,
            }
        })
        .collect();

    let mut metrics = BTreeMap::new();
    for m in &names {
        let values: Vec<f64> = folds.iter().map(|f| f.metrics[m]).collect();
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd =
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        metrics.insert(m.clone(), MetricSummary { mean, sd });
    }

    // ROC from the predictions' scores.
    let mut scored: Vec<(f64, bool)> = predictions
        .iter()
        .map(|p| (p.score.unwrap_or(0.0), p.y_true == "CN"))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = scored.iter().filter(|s| s.1).count().max(1) as f64;
    let neg = scored.iter().filter(|s| !s.1).count().max(1) as f64;
    let (mut fpr, mut tpr, mut auc) = (vec![0.0], vec![0.0], 0.0);
    let (mut tp, mut fp) = (0.0, 0.0);
    for (_, positive) in &scored {
        if *positive {
            tp += 1.0;
        } else {
            fp += 1.0;
            auc += tp / pos / neg;
        }
        fpr.push(fp / neg);
        tpr.push(tp / pos);
    }

    let grid = GridSearch {
        metric: "balanced_accuracy".to_owned(),
        candidates: [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]
            .iter()
            .flat_map(|&c| {
                [0.5, 1.0].map(|l1| {
                    let mean = 0.55 + 0.25 * (1.0 - f64::log10(c).abs() / 3.0) - 0.02 * l1;
                    GridCandidate {
                        params: [("C".to_owned(), c), ("l1_ratio".to_owned(), l1)]
                            .into_iter()
                            .collect(),
                        score: MeanSd { mean, sd: 0.04 },
                        fold_scores: vec![mean; 5],
                    }
                })
            })
            .collect(),
        best: 6,
        nested_folds: Some(5),
        chosen: vec![6, 6, 4, 6, 8],
    };
    let permutation = PermutationTest {
        metric: "balanced_accuracy".to_owned(),
        observed: metrics["balanced_accuracy"].mean,
        scores: (0..1000)
            .map(|_| 0.5 + 0.08 * (rng.next() + rng.next() + rng.next() - 1.5))
            .collect(),
        p_value: 1.0 / 1001.0,
    };
    let n_weights = REGIONS.len() * (REGIONS.len() - 1) / 2;
    let feature_weights = FeatureWeights {
        kind: "coefficients".to_owned(),
        names: Vec::new(),
        values: (0..n_weights).map(|_| rng.next() * 2.0 - 1.0).collect(),
        per_class: Vec::new(),
    };
    let per_site = sites
        .iter()
        .map(|s| SiteScores {
            site: (*s).to_owned(),
            n: data_summary
                .get(*s)
                .map_or(0, |c| c.values().sum::<u64>() as usize),
            metrics: [
                ("accuracy".to_owned(), 0.7 + 0.1 * rng.next()),
                ("balanced_accuracy".to_owned(), 0.68 + 0.1 * rng.next()),
                ("roc_auc".to_owned(), 0.75 + 0.1 * rng.next()),
            ]
            .into_iter()
            .collect(),
        })
        .collect();

    RunData {
        run_id: Uuid::from_u128(0x0193_6a1e_5b2c_7d40_9e8f_1a2b_3c4d_5e6f),
        project: "adni-connectivity".to_owned(),
        model: "logistic".to_owned(),
        params: [("C".to_owned(), "1.0".to_owned())].into_iter().collect(),
        cv: CvScheme {
            scheme: Some("stratified_k_fold".to_owned()),
            folds: Some(n_folds as u32),
            seed: Some(0),
            other: BTreeMap::new(),
        },
        sites: Vec::new(),
        n_samples: n_subjects as u32,
        n_features: n_weights as u32,
        classes,
        data_summary,
        results: RunResults {
            task: "classification".to_owned(),
            positive_class: Some("CN".to_owned()),
            pipeline: PipelineSummary {
                scaler: "global".to_owned(),
                select_percentile: Some(50.0),
                pca_components: None,
                text: None,
            },
            metrics: metrics
                .iter()
                .map(|(k, m)| {
                    (
                        k.clone(),
                        MeanSd {
                            mean: m.mean,
                            sd: m.sd,
                        },
                    )
                })
                .collect(),
            roc: Some(RocCurve { fpr, tpr, auc }),
            per_site,
            grid: Some(grid),
            permutation: Some(permutation),
            feature_weights: Some(feature_weights),
            held_out: None,
        },
        metrics,
        folds,
        duration_ms: 83_250,
        job_id: Some("01936a1e-0000-7000-8000-00000000j0b1".to_owned()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
        created_at: Utc
            .with_ymd_and_hms(2026, 11, 26, 8, 30, 0)
            .single()
            .unwrap_or_default(),
        predictions,
        covariates: vec![
            Covariate {
                name: "age".to_owned(),
                n: n_subjects as u64,
                numeric: n_subjects as u64,
                mean: 71.4,
                sd: 6.2,
                min: 55.0,
                max: 90.0,
            },
            Covariate {
                name: "sex".to_owned(),
                n: n_subjects as u64,
                numeric: n_subjects as u64,
                mean: 0.48,
                sd: 0.5,
                min: 0.0,
                max: 1.0,
            },
        ],
        feature_names: Vec::new(),
        region_labels: REGIONS.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// A regression run (an age-like target, 3 sites) with `n_folds` folds of R², MAE, RMSE and
/// Pearson r, `n_subjects` numeric out-of-fold predictions, per-site scores and 45 connectivity
/// coefficients, stored as the train worker stores a regression: no classes, no confusion
/// matrices, no accuracy.
pub fn regression_run(n_folds: usize, n_subjects: usize) -> RunData {
    let mut rng = Mix(7);
    let mut run = complete_run(n_folds, 2, n_subjects);
    run.model = "ridge".to_owned();
    run.params = [("alpha".to_owned(), "1.0".to_owned())]
        .into_iter()
        .collect();
    run.classes.clear();
    run.data_summary.clear();
    for p in &mut run.predictions {
        let truth = (40.0 + 40.0 * rng.next()).round();
        let predicted = truth + 12.0 * (rng.next() - 0.5);
        *run.data_summary
            .entry(p.site.clone())
            .or_default()
            .entry(truth.to_string())
            .or_default() += 1;
        p.y_true = truth.to_string();
        p.y_pred = predicted.to_string();
        p.score = None;
    }
    let names = ["r2", "mae", "rmse", "pearson_r"];
    let value = |name: &str, u: f64| match name {
        "r2" => 0.55 + 0.2 * u,
        "pearson_r" => 0.75 + 0.15 * u,
        _ => 3.0 + 2.0 * u,
    };
    for fold in &mut run.folds {
        fold.accuracy = f64::NAN;
        fold.balanced_accuracy = f64::NAN;
        fold.confusion.clear();
        fold.metrics = names
            .iter()
            .map(|m| ((*m).to_owned(), value(m, rng.next())))
            .collect();
    }
    run.metrics = names
        .iter()
        .map(|m| {
            let values: Vec<f64> = run.folds.iter().map(|f| f.metrics[*m]).collect();
            let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
            let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                / (values.len() as f64 - 1.0).max(1.0))
            .sqrt();
            ((*m).to_owned(), MetricSummary { mean, sd })
        })
        .collect();
    run.results.task = "regression".to_owned();
    run.results.positive_class = None;
    run.results.roc = None;
    run.results.grid = None;
    run.results.permutation = None;
    run.results.metrics = run
        .metrics
        .iter()
        .map(|(k, m)| {
            (
                k.clone(),
                MeanSd {
                    mean: m.mean,
                    sd: m.sd,
                },
            )
        })
        .collect();
    for site in &mut run.results.per_site {
        site.metrics = names
            .iter()
            .map(|m| ((*m).to_owned(), value(m, rng.next())))
            .collect();
    }
    run
}

/// A Welch t-test job over the 45 connectivity features of [`REGIONS`], 9 of them significant.
pub fn complete_stats() -> StatsData {
    let mut rng = Mix(7);
    let n = REGIONS.len() * (REGIONS.len() - 1) / 2;
    let features: Vec<FeatureStat> = (0..n)
        .map(|i| {
            let strong = i % 5 == 0;
            let d = if strong {
                0.6 + 0.4 * rng.next()
            } else {
                0.3 * (rng.next() - 0.5)
            } * if i % 2 == 0 { 1.0 } else { -1.0 };
            let p = if strong {
                1e-5 * (1.0 + 50.0 * rng.next())
            } else {
                0.05 + 0.9 * rng.next()
            };
            FeatureStat {
                name: format!("f{i}"),
                statistic: d * 4.0,
                p,
                p_fdr: (p * n as f64 / 3.0).min(1.0),
                p_bonferroni: (p * n as f64).min(1.0),
                effect_size: d,
                significant: strong,
            }
        })
        .collect();
    StatsData {
        id: Uuid::from_u128(0x0193_6a1e_5b2c_7d40_9e8f_0000_0000_57a7),
        project: "adni-connectivity".to_owned(),
        test: "welch_t".to_owned(),
        covariate: None,
        sites: Vec::new(),
        n_samples: 180,
        n_features: n as u32,
        results: StatsResults {
            test: "welch_t".to_owned(),
            covariate: None,
            groups: [("AD".to_owned(), 88), ("CN".to_owned(), 92)]
                .into_iter()
                .collect(),
            alpha: 0.05,
            features,
        },
        duration_ms: 412,
        job_id: Some("stats-job-1".to_owned()),
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".to_owned()),
        created_at: Utc
            .with_ymd_and_hms(2026, 11, 26, 8, 45, 0)
            .single()
            .unwrap_or_default(),
        region_labels: REGIONS.iter().map(|s| (*s).to_owned()).collect(),
    }
}
