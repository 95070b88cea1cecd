//! Analysis an analyst can trust (issue #5): parity with scikit-learn and SciPy on committed
//! reference numbers, the validation schemes' guarantees, leakage, persistence of every model,
//! and the train worker's storage of runs and statistics jobs against a real Postgres.
//!
//! The reference numbers come from `scripts/sklearn_reference.py` (scikit-learn, SciPy,
//! statsmodels), committed under `tests/data/`, so this needs no Python.

mod helpers;
mod text;

use std::collections::BTreeMap;

use broker_schemas::{
    CrossValidation, CvScheme, Message, ScalerKind, StatsTest, TrainOptions, TrainRequest,
    TrainUnitV1, TrainV1,
};
use helpers::{dataset, json, reference_splits, regression_dataset, TestDb};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use swarm_runtime::process::{handle_once, Outcome};
use swarm_runtime::MessageMeta;
use swarm_train::cv::{self, evaluate, Data, RunConfig, TargetData};
use swarm_train::handler::TrainJob;
use swarm_train::matrix::Matrix;
use swarm_train::model::{FittedModel, Labels, ModelSpec, MODELS};
use swarm_train::pipeline::{PipelineConfig, Supervision};
use swarm_train::validation::{make_splits, Scheme};
use swarm_train::TrainHandler;
use uuid::Uuid;

fn spec(name: &str, params: &[(&str, &str)]) -> ModelSpec {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    ModelSpec::parse(name, &params).expect("a valid model")
}

/// Our per-fold accuracies on the reference's folds.
fn fold_accuracies(data: &Data, folds: &serde_json::Value, model: &ModelSpec) -> Vec<f64> {
    let splits = reference_splits(folds, data.sites.len());
    let e = evaluate(model, &PipelineConfig::default(), data, &splits, false, 0)
        .expect("cross-validates");
    e.folds.iter().map(|f| f.metrics["accuracy"]).collect()
}

fn reference_accuracies(reference: &serde_json::Value, set: &str, model: &str) -> Vec<f64> {
    reference["datasets"][set]["models"][model]["fold_accuracy"]
        .as_array()
        .expect("reference accuracies")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn classifiers_match_scikit_learn_fold_by_fold() {
    let reference = json("sklearn_reference.json");
    for set in ["breast_cancer", "wine", "digits"] {
        let data = dataset(set);
        let folds = &reference["datasets"][set]["folds"];
        for (ours, theirs, params) in [
            ("logistic", "logistic", vec![]),
            ("svc", "svc", vec![]),
            ("svc", "svc_linear", vec![("kernel", "linear")]),
            ("knn", "knn", vec![]),
            ("gaussian_nb", "gaussian_nb", vec![]),
        ] {
            let got = fold_accuracies(&data, folds, &spec(ours, &params));
            let want = reference_accuracies(&reference, set, theirs);
            for (fold, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 0.02 + 1e-12,
                    "{set}/{theirs} fold {}: ours {g:.4}, scikit-learn {w:.4}",
                    fold + 1
                );
            }
        }
        // Trees differ by design (random streams); a forest lands within 3 points on the mean.
        let got = fold_accuracies(&data, folds, &spec("random_forest", &[]));
        let want = reference_accuracies(&reference, set, "random_forest");
        assert!(
            (mean(&got) - mean(&want)).abs() <= 0.03,
            "{set}/random_forest: ours {got:?}, scikit-learn {want:?}"
        );
    }
}

/// A single tree's accuracy depends on how its random feature order breaks ties between equally
/// good splits (scikit-learn's own 5-fold mean on wine spans 1.7 points over random_state 0..19),
/// so trees and forests are compared on the expectation: the 5-fold mean averaged over seeds
/// 0..9 on both sides, within 1 point.
#[test]
fn tree_models_match_scikit_learn_averaged_over_seeds() {
    let reference = json("sklearn_reference.json");
    for set in ["breast_cancer", "wine", "digits"] {
        let data = dataset(set);
        let folds = &reference["datasets"][set]["folds"];
        let splits = reference_splits(folds, data.sites.len());
        for model in ["decision_tree", "random_forest"] {
            let entry = &reference["datasets"][set]["models"][model];
            let seeds = entry["seeds"].as_u64().expect("seeds");
            let want = entry["seed_mean_accuracy"].as_f64().expect("a mean");
            let got = mean(
                &(0..seeds)
                    .map(|seed| {
                        let e = evaluate(
                            &spec(model, &[]),
                            &PipelineConfig::default(),
                            &data,
                            &splits,
                            false,
                            seed,
                        )
                        .expect("cross-validates");
                        mean(
                            &e.folds
                                .iter()
                                .map(|f| f.metrics["accuracy"])
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            assert!(
                (got - want).abs() <= 0.01,
                "{set}/{model} over {seeds} seeds: ours {got:.4}, scikit-learn {want:.4}"
            );
        }
    }
}

/// Linear, ridge, lasso and elastic net on diabetes, standardised inside each fold, predict what
/// scikit-learn's pipelines predict on the same folds (coordinate descent stops on the same
/// duality gap, so the two solvers land within its tolerance).
#[test]
fn linear_regressors_match_scikit_learn_prediction_by_prediction() {
    let reference = json("sklearn_reference.json");
    let data = regression_dataset("diabetes");
    let entry = &reference["regression"];
    let splits = reference_splits(&entry["folds"], data.sites.len());
    for name in ["linear", "ridge", "lasso", "elastic_net"] {
        let e = evaluate(
            &spec(name, &[]),
            &PipelineConfig::default(),
            &data,
            &splits,
            false,
            0,
        )
        .expect("cross-validates");
        let want = &entry["models"][name];
        for p in &e.predictions {
            let ours = p.value.expect("a regression prediction");
            let theirs = want["predictions"][p.row].as_f64().expect("a number");
            assert!(
                (ours - theirs).abs() <= 1e-3 * theirs.abs().max(1.0),
                "{name} row {}: ours {ours}, scikit-learn {theirs}",
                p.row
            );
        }
        for (fold, (f, r2)) in e
            .folds
            .iter()
            .zip(want["fold_r2"].as_array().expect("R² per fold"))
            .enumerate()
        {
            let r2 = r2.as_f64().expect("a number");
            assert!(
                (f.metrics["r2"] - r2).abs() <= 1e-5,
                "{name} fold {}: R² ours {}, scikit-learn {r2}",
                fold + 1,
                f.metrics["r2"]
            );
        }
    }
}

/// On integer features with duplicate rows and noisy labels, many rows tie at the fifth
/// distance; KNN picks among them as scikit-learn's brute-force search does, so every
/// out-of-fold prediction equals scikit-learn's on the same folds.
#[test]
fn knn_breaks_distance_ties_as_scikit_learn_on_duplicate_rows() {
    let reference = json("sklearn_reference.json");
    let data = dataset("knn_ties");
    let entry = &reference["knn_ties"];
    let splits = reference_splits(&entry["folds"], data.sites.len());
    let raw = PipelineConfig {
        scaler: ScalerKind::None,
        ..PipelineConfig::default()
    };
    let e = evaluate(&spec("knn", &[]), &raw, &data, &splits, false, 0).expect("cross-validates");
    let differing: Vec<usize> = e
        .predictions
        .iter()
        .filter(|p| p.class.map(|c| c as u64) != entry["predictions"][p.row].as_u64())
        .map(|p| p.row)
        .collect();
    assert_eq!(e.predictions.len(), data.sites.len());
    assert!(
        differing.is_empty(),
        "rows predicted unlike scikit-learn: {differing:?}"
    );
}

/// `wide_rows` of the reference script: five smooth components and a small ripple.
fn wide_rows(n: usize, p: usize) -> Matrix {
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let i = i as f64;
            (0..p)
                .map(|j| {
                    let j = j as f64;
                    let mut v = 0.01 * (1.3 * i + 0.7 * j + 0.013 * i * j).cos();
                    for (d, amp) in [10.0, 7.0, 5.0, 3.0, 2.0].iter().enumerate() {
                        let d = d as f64;
                        v += amp
                            * (0.37 * (i + 1.0) * (d + 1.0)).cos()
                            * (0.11 * (j + 1.0) * (d + 2.0)).sin();
                    }
                    v
                })
                .collect()
        })
        .collect();
    Matrix::from_rows(&rows)
}

/// PCA's axes and variances equal scikit-learn's exact ones up to sign: on digits (tall: the
/// covariance's eigenvectors) and on a wide set (randomised SVD, as scikit-learn's default
/// solver would use there).
#[test]
fn pca_components_match_scikit_learn_up_to_sign() {
    let reference = json("sklearn_reference.json");
    for (name, x) in [
        ("digits", dataset("digits").x),
        ("wide", wide_rows(120, 600)),
    ] {
        let entry = &reference["pca"][name];
        let k = entry["k"].as_u64().expect("k") as usize;
        let config = PipelineConfig {
            scaler: ScalerKind::None,
            select_percentile: None,
            pca_components: Some(k),
            ..PipelineConfig::default()
        };
        let sites = vec!["site".to_owned(); x.rows()];
        let values = vec![0.0; x.rows()];
        let fitted = config
            .fit(
                &x,
                &sites,
                swarm_train::pipeline::Supervision::Values(&values),
            )
            .expect("fits");
        let pca = fitted.pca.expect("a PCA");
        assert_eq!(pca.components.rows(), k);
        for c in 0..k {
            let theirs: Vec<f64> = entry["components"][c]
                .as_array()
                .expect("a component")
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let ours = pca.components.row(c);
            let sign = if ours.iter().zip(&theirs).map(|(a, b)| a * b).sum::<f64>() < 0.0 {
                -1.0
            } else {
                1.0
            };
            let worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (sign * a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-6, "{name} component {c}: off by {worst}");
            let want = entry["explained_variance"][c].as_f64().unwrap();
            let got = pca.explained_variance[c];
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "{name} variance {c}: ours {got}, scikit-learn {want}"
            );
        }
    }
}

#[test]
fn univariate_statistics_match_scipy_and_statsmodels() {
    let fixture = json("stats_reference.json");
    let x: Vec<Vec<f64>> = fixture["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    let groups: Vec<String> = fixture["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let covariate: Vec<f64> = fixture["covariate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let two: Vec<usize> = fixture["welch_t_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    for (name, test) in [
        ("welch_t", StatsTest::WelchT),
        ("anova", StatsTest::Anova),
        ("pearson", StatsTest::Pearson),
        ("spearman", StatsTest::Spearman),
    ] {
        let (rows, labels): (Vec<Vec<f64>>, Vec<String>) = if test == StatsTest::WelchT {
            two.iter()
                .map(|&i| (x[i].clone(), groups[i].clone()))
                .unzip()
        } else {
            (x.clone(), groups.clone())
        };
        let got =
            swarm_train::stats::compute_stats(test, &rows, &labels, Some(&covariate), &[], 0.05)
                .unwrap();
        let want = &fixture["tests"][name];
        for (j, feature) in got.features.iter().enumerate() {
            for (field, value) in [
                ("statistic", feature.statistic),
                ("p", feature.p),
                ("p_fdr", feature.p_fdr),
                ("p_bonferroni", feature.p_bonferroni),
            ] {
                let expected = want[field][j].as_f64().unwrap();
                assert!(
                    (value - expected).abs() <= 1e-6 * expected.abs().max(1.0),
                    "{name} feature {j} {field}: ours {value}, SciPy {expected}"
                );
            }
        }
        // The fixture has real effects; something must come out significant.
        assert!(got.features.iter().any(|f| f.significant), "{name}");
    }
}

/// Two blobs over three sites, the signal in the first two features.
fn sites_data(n_per_site: usize, signal: f64, seed: u64) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut sites = Vec::new();
    for (s, site) in ["lab-a", "lab-b", "lab-c"].iter().enumerate() {
        for i in 0..n_per_site {
            let class = i % 2;
            let shift = s as f64 * 3.0; // a site offset the per-site scaler removes
            let mut row: Vec<f64> = (0..8)
                .map(|_| rng.random_range(-1.0..1.0) + shift)
                .collect();
            row[0] += signal * class as f64;
            row[1] -= signal * class as f64;
            rows.push(row);
            labels.push(["control", "patient"][class].to_owned());
            sites.push((*site).to_owned());
        }
    }
    let (classes, y) = cv::encode_labels(&labels);
    Data {
        x: Matrix::from_rows(&rows),
        sites,
        target: TargetData::Classes { y, classes },
    }
}

fn config(model: &str, kind: CvScheme) -> RunConfig {
    RunConfig {
        spec: spec(model, &[]),
        pipeline: PipelineConfig::default(),
        scheme: Scheme {
            kind,
            folds: 5,
            seed: 0,
            repeats: 2,
            test_sites: vec!["lab-c".into()],
        },
        grid: BTreeMap::new(),
        permutations: 0,
        nested: false,
    }
}

#[test]
fn leave_one_site_out_has_one_fold_per_site_and_held_out_trains_on_training_sites() {
    let data = sites_data(20, 2.0, 1);
    let out = cv::run(&config("logistic", CvScheme::LeaveOneSiteOut), &data).unwrap();
    let names: Vec<&str> = out
        .evaluation
        .folds
        .iter()
        .map(|f| f.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, vec!["lab-a", "lab-b", "lab-c"]);
    assert!(out
        .evaluation
        .folds
        .iter()
        .all(|f| f.n_test == 20 && f.n_train == 40));
    assert_eq!(out.per_site.len(), 3);

    let out = cv::run(&config("logistic", CvScheme::HeldOutSites), &data).unwrap();
    let held = out.held_out.expect("held-out results");
    assert_eq!(
        (held.train_sites, held.test_sites),
        (
            vec!["lab-a".to_owned(), "lab-b".to_owned()],
            vec!["lab-c".to_owned()]
        )
    );
    assert_eq!(out.evaluation.folds.len(), 1);
    assert_eq!(out.evaluation.folds[0].n_train, 40);
    // The final model saw the training sites only: its scaler's means are those of lab-a + lab-b.
    let train_rows: Vec<usize> = (0..40).collect();
    let expected =
        swarm_train::preprocess::StandardScaler::fit(&data.x.select_rows(&train_rows).to_rows())
            .unwrap();
    match &out.model.pipeline().scaler {
        swarm_train::pipeline::FittedScaler::Global(s) => assert_eq!(s, &expected),
        other => panic!("{other:?}"),
    }
    let repeated = cv::run(&config("logistic", CvScheme::RepeatedKFold), &data).unwrap();
    assert_eq!(repeated.evaluation.folds.len(), 10);
    assert_eq!(repeated.evaluation.predictions.len(), 120);
    let loo = cv::run(
        &config("knn", CvScheme::LeaveOneOut),
        &sites_data(6, 2.0, 2),
    )
    .unwrap();
    assert_eq!(loo.evaluation.folds.len(), 18);
}

#[test]
fn a_three_by_three_grid_reports_nine_scored_candidates() {
    let data = sites_data(20, 1.0, 3);
    let mut c = config("svc", CvScheme::StratifiedKFold);
    c.grid
        .insert("C".into(), vec!["0.1".into(), "1".into(), "10".into()]);
    c.grid.insert(
        "gamma".into(),
        vec!["0.01".into(), "0.1".into(), "1".into()],
    );
    let out = cv::run(&c, &data).unwrap();
    let grid = out.grid.expect("a grid");
    assert_eq!(grid.candidates.len(), 9);
    assert_eq!(grid.metric, "balanced_accuracy");
    assert!(grid
        .candidates
        .iter()
        .all(|g| g.fold_scores.len() == 5 && g.params.len() == 2 && g.score.mean.is_finite()));
    let best = &grid.candidates[grid.best];
    assert!(grid
        .candidates
        .iter()
        .all(|g| g.score.mean <= best.score.mean));
    assert_eq!(out.spec.number("C"), best.params.get("C").copied());
}

/// Nested: every outer fold chooses its candidate by an inner k-fold over its own training rows,
/// the choice a test here remakes from those rows alone.
#[test]
fn a_nested_grid_chooses_inside_each_outer_training_set() {
    let data = sites_data(20, 1.0, 3);
    let mut c = config("svc", CvScheme::StratifiedKFold);
    c.grid
        .insert("C".into(), vec!["0.01".into(), "1".into(), "100".into()]);
    c.grid.insert(
        "gamma".into(),
        vec!["0.001".into(), "0.1".into(), "10".into()],
    );
    c.nested = true;
    let out = cv::run(&c, &data).unwrap();
    let grid = out.grid.expect("a grid");
    assert_eq!(grid.candidates.len(), 9);
    assert_eq!(grid.nested_folds, Some(5));
    assert_eq!(grid.chosen.len(), 5);
    assert_eq!(out.evaluation.folds.len(), 5);
    assert_eq!(out.evaluation.predictions.len(), 60);

    let outer = make_splits(
        &c.scheme,
        Some(match &data.target {
            TargetData::Classes { y, .. } => y,
            TargetData::Values(_) => unreachable!(),
        }),
        &data.sites,
    )
    .unwrap();
    let candidates = cv::grid_candidates(&c.grid);
    for (split, &chosen) in outer.iter().zip(&grid.chosen) {
        // The outer fold's training rows only, and an inner stratified 5-fold over them.
        let rows: Vec<Vec<f64>> = split
            .train
            .iter()
            .map(|&i| data.x.row(i).to_vec())
            .collect();
        let labels: Vec<String> = split
            .train
            .iter()
            .map(|&i| match &data.target {
                TargetData::Classes { y, classes } => classes[y[i]].clone(),
                TargetData::Values(_) => unreachable!(),
            })
            .collect();
        let (classes, y) = cv::encode_labels(&labels);
        let inner_data = Data {
            x: Matrix::from_rows(&rows),
            sites: split.train.iter().map(|&i| data.sites[i].clone()).collect(),
            target: TargetData::Classes {
                y: y.clone(),
                classes,
            },
        };
        let inner_scheme = Scheme {
            kind: CvScheme::StratifiedKFold,
            folds: 5,
            seed: 0,
            repeats: 0,
            test_sites: Vec::new(),
        };
        let inner = make_splits(&inner_scheme, Some(&y), &inner_data.sites).unwrap();
        let scores: Vec<f64> = candidates
            .iter()
            .map(|params| {
                let params: Vec<(&str, &str)> = params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                evaluate(
                    &spec("svc", &params),
                    &c.pipeline,
                    &inner_data,
                    &inner,
                    false,
                    0,
                )
                .unwrap()
                .score("balanced_accuracy")
            })
            .collect();
        let best = scores
            .iter()
            .enumerate()
            .fold(0, |b, (i, s)| if *s > scores[b] { i } else { b });
        assert_eq!(
            chosen, best,
            "outer fold {}: inner scores {scores:?}",
            split.fold
        );
    }
}

/// With a grid, each permutation's score is the best candidate's, as the observed one is: the
/// null is never below that of the chosen candidate alone, and above it somewhere.
#[test]
fn a_grid_permutation_test_chooses_again_on_every_permutation() {
    let data = sites_data(20, 0.0, 5);
    let mut c = config("svc", CvScheme::StratifiedKFold);
    c.grid
        .insert("C".into(), vec!["0.1".into(), "1".into(), "10".into()]);
    c.permutations = 30;
    let with_grid = cv::run(&c, &data).unwrap();
    let best = with_grid.spec.clone();
    let mut alone = config("svc", CvScheme::StratifiedKFold);
    alone.spec = best;
    alone.permutations = 30;
    let alone = cv::run(&alone, &data).unwrap();
    let (g, a) = (
        with_grid.permutation.unwrap().scores,
        alone.permutation.unwrap().scores,
    );
    assert_eq!(g.len(), 30);
    assert!(g.iter().zip(&a).all(|(g, a)| g >= a), "{g:?} vs {a:?}");
    assert!(g.iter().zip(&a).any(|(g, a)| g > a), "{g:?} vs {a:?}");
}

#[test]
fn permutation_test_separates_signal_from_noise() {
    let mut c = config("logistic", CvScheme::StratifiedKFold);
    c.permutations = 40;
    let real = cv::run(&c, &sites_data(20, 2.0, 4))
        .unwrap()
        .permutation
        .unwrap();
    assert!(real.p_value < 0.05, "{real:?}");
    let noise = cv::run(&c, &sites_data(20, 0.0, 5))
        .unwrap()
        .permutation
        .unwrap();
    assert!(noise.p_value > 0.05, "{noise:?}");
    assert_eq!(noise.scores.len(), 40);
}

/// Changing only a fold's test rows must not change anything fitted in that fold; changing a
/// training row must (so the test can fail).
#[test]
fn no_fold_fits_on_its_test_rows() {
    let data = sites_data(20, 1.0, 6);
    let config = PipelineConfig {
        scaler: ScalerKind::PerSite,
        select_percentile: Some(50.0),
        pca_components: Some(3),
        ..PipelineConfig::default()
    };
    let splits = swarm_train::validation::make_splits(
        &self::config("logistic", CvScheme::StratifiedKFold).scheme,
        Some(match &data.target {
            TargetData::Classes { y, .. } => y,
            _ => unreachable!(),
        }),
        &data.sites,
    )
    .unwrap();
    let split = &splits[0];
    let fit = |x: &Matrix| {
        let (y, classes) = match &data.target {
            TargetData::Classes { y, classes } => (y, classes),
            _ => unreachable!(),
        };
        let train_y: Vec<usize> = split.train.iter().map(|&i| y[i]).collect();
        let train_sites: Vec<String> = split.train.iter().map(|&i| data.sites[i].clone()).collect();
        FittedModel::fit(
            &spec("logistic", &[]),
            &config,
            &x.select_rows(&split.train),
            &train_sites,
            Labels::Classes(&train_y, classes),
            0,
        )
        .unwrap()
    };
    let before = fit(&data.x);
    let mut rows = data.x.to_rows();
    for &t in &split.test {
        rows[t] = vec![1e6; 8];
    }
    let after = fit(&Matrix::from_rows(&rows));
    assert_eq!(
        before, after,
        "a fold's fit changed when only its test rows did"
    );
    rows[split.train[0]] = vec![1e6; 8];
    assert_ne!(before, fit(&Matrix::from_rows(&rows)));
}

#[test]
fn every_model_round_trips_and_predicts_the_same() {
    let class_data = sites_data(15, 1.5, 7);
    let three = {
        let mut d = sites_data(15, 1.5, 8);
        if let TargetData::Classes { y, classes } = &mut d.target {
            for (i, c) in y.iter_mut().enumerate() {
                *c = i % 3;
            }
            *classes = vec!["x".into(), "y".into(), "z".into()];
        }
        d
    };
    let values: Vec<f64> = (0..45)
        .map(|i| class_data.x.get(i, 0) * 2.0 + i as f64 * 0.01)
        .collect();
    let pipeline = PipelineConfig::default();
    for &name in MODELS {
        let model = spec(name, &[]);
        let mut cases: Vec<(&Data, Labels<'_>)> = Vec::new();
        let (y2, c2, y3, c3) = match (&class_data.target, &three.target) {
            (TargetData::Classes { y, classes }, TargetData::Classes { y: y3, classes: c3 }) => {
                (y, classes, y3, c3)
            }
            _ => unreachable!(),
        };
        if model.task() == swarm_train::model::Task::Classification {
            cases.push((&class_data, Labels::Classes(y2, c2)));
            cases.push((&three, Labels::Classes(y3, c3)));
        } else {
            cases.push((&class_data, Labels::Values(&values)));
        }
        for (data, labels) in cases {
            let fitted =
                FittedModel::fit(&model, &pipeline, &data.x, &data.sites, labels, 3).unwrap();
            let bytes = fitted.to_bytes().unwrap();
            let loaded = FittedModel::from_bytes(&fitted.format(), &bytes).unwrap();
            assert_eq!(loaded, fitted, "{name}");
            let probe = Matrix::from_rows(
                &(0..30)
                    .map(|i| {
                        (0..8)
                            .map(|j| ((i * 7 + j * 3) % 11) as f64 / 3.0 - 1.5)
                            .collect::<Vec<f64>>()
                    })
                    .collect::<Vec<_>>(),
            );
            assert_eq!(
                loaded.predict_rows(&probe, &[]).unwrap(),
                fitted.predict_rows(&probe, &[]).unwrap(),
                "{name}"
            );
        }
    }
}

#[test]
fn every_binary_classifier_has_a_roc_auc() {
    let data = sites_data(20, 2.0, 9);
    for &name in MODELS {
        let model = spec(name, &[]);
        if model.task() != swarm_train::model::Task::Classification {
            continue;
        }
        let mut c = config(name, CvScheme::StratifiedKFold);
        c.spec = model;
        let out = cv::run(&c, &data).unwrap();
        let auc = out
            .evaluation
            .summary
            .get("roc_auc")
            .unwrap_or_else(|| panic!("{name} has no ROC AUC"));
        assert!(auc.mean > 0.65, "{name}: {auc:?}");
        assert!(out.roc.is_some(), "{name}");
    }
}

fn meta(queue: &str, message_type: &str) -> MessageMeta {
    MessageMeta {
        queue: queue.into(),
        message_id: Uuid::now_v7().to_string(),
        message_type: message_type.into(),
        job_id: Some("analysis-test".into()),
        trace_id: None,
    }
}

async fn seed_samples(pool: &swarm_runtime::db::Pool, data: &Data) {
    let client = pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO projects (name, kind, dimension) VALUES ('p', 'vector', 8)",
            &[],
        )
        .await
        .unwrap();
    let classes = match &data.target {
        TargetData::Classes { classes, .. } => classes.clone(),
        _ => unreachable!(),
    };
    for i in 0..data.sites.len() {
        let label = match &data.target {
            TargetData::Classes { y, .. } => classes[y[i]].clone(),
            _ => unreachable!(),
        };
        let values: Vec<f32> = data.x.row(i).iter().map(|v| *v as f32).collect();
        let covariates = serde_json::json!({ "age": 20.0 + i as f64 + data.x.get(i, 2) * 5.0 });
        let row = client
            .query_one(
                r#"INSERT INTO samples (project, site, subject, label, kind, "values", message_id, covariates)
                   VALUES ('p', $1, $2, $3, 'vector', $4, 'm', $5) RETURNING id"#,
                &[
                    &data.sites[i],
                    &format!("sub-{i:03}"),
                    &label,
                    &swarm_runtime::floats::Floats(&values),
                    &covariates,
                ],
            )
            .await
            .unwrap();
        let id: i64 = row.get(0);
        client
            .execute(
                r#"INSERT INTO features (sample_id, extractor, version, "values", message_id) VALUES ($1, 'vector', 1, $2, 'm')"#,
                &[&id, &swarm_runtime::floats::Floats(&values)],
            )
            .await
            .unwrap();
    }
}

/// Handles the `train.unit.v1` messages a train worker emitted, and those they emit in turn,
/// until none is left; returns what else was emitted (the run's `report.v1`).
async fn run_units(
    handler: &TrainHandler,
    pool: &swarm_runtime::db::Pool,
    mut emitted: Vec<swarm_runtime::outbox::Emitted>,
) -> Vec<swarm_runtime::outbox::Emitted> {
    let mut others = Vec::new();
    while let Some(next) = emitted.pop() {
        if next.message.message_type != TrainUnitV1::TYPE {
            others.push(next);
            continue;
        }
        let unit: TrainUnitV1 = broker_schemas::decode(&next.message.body).unwrap();
        match handle_once(
            handler,
            pool,
            meta("t.train", TrainUnitV1::TYPE),
            TrainJob::Unit(unit),
        )
        .await
        {
            Outcome::Processed(more) => emitted.extend(more),
            other => panic!("{other:?}"),
        }
    }
    others
}

#[tokio::test]
async fn train_and_stats_jobs_store_what_the_report_renders() {
    let db = TestDb::new().await;
    let data = sites_data(12, 2.0, 10);
    seed_samples(&db.pool, &data).await;

    let run_id = Uuid::now_v7();
    let mut options = TrainOptions::default();
    options.validation.scheme = CvScheme::LeaveOneSiteOut;
    options
        .grid
        .insert("C".into(), vec!["0.1".into(), "1".into(), "10".into()]);
    options.permutations = 5;
    options.pipeline.scaler = ScalerKind::PerSite;
    let request = TrainRequest {
        train: TrainV1 {
            run_id,
            project: "p".into(),
            model: "logistic".into(),
            params: BTreeMap::new(),
            cv: CrossValidation::default(),
            sites: vec![],
        },
        options,
    };
    let handler = TrainHandler::default();
    let outcome = handle_once(
        &handler,
        &db.pool,
        meta("t.train", "train.v1"),
        TrainJob::Train(Box::new(request)),
    )
    .await;
    let Outcome::Processed(units) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(!units.is_empty());
    let last = run_units(&handler, &db.pool, units).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].message.message_type, "report.v1");
    let client = db.pool.get().await.unwrap();
    let run = client.query_one("SELECT metrics, results, cv->>'scheme', model_format, model_blob FROM runs WHERE id = $1", &[&run_id]).await.unwrap();
    let metrics: serde_json::Value = run.get(0);
    assert!(
        metrics["balanced_accuracy"]["mean"].as_f64().unwrap() > 0.8,
        "{metrics}"
    );
    assert!(metrics["roc_auc"]["mean"].is_number());
    let results: broker_schemas::results::RunResults = serde_json::from_value(run.get(1)).unwrap();
    assert_eq!(results.task, "classification");
    assert_eq!(results.grid.as_ref().unwrap().candidates.len(), 3);
    assert_eq!(results.permutation.as_ref().unwrap().scores.len(), 5);
    assert_eq!(results.feature_weights.as_ref().unwrap().values.len(), 8);
    assert_eq!(results.per_site.len(), 3);
    assert!(results.roc.is_some());
    assert_eq!(results.pipeline.scaler, "per_site");
    assert_eq!(run.get::<_, String>(2), "leave_one_site_out");
    let blob: Vec<u8> = run.get(4);
    FittedModel::from_bytes(&run.get::<_, String>(3), &blob).expect("the stored model loads");
    let folds: i64 = client
        .query_one(
            "SELECT count(*) FROM folds WHERE run_id = $1 AND name IS NOT NULL",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(folds, 3);
    let predictions: i64 = client
        .query_one(
            "SELECT count(*) FROM predictions WHERE run_id = $1 AND score IS NOT NULL",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(predictions, 36);
    let view: i64 = client
        .query_one(
            "SELECT count(*) FROM run_metrics WHERE run_id = $1 AND metric = 'roc_auc'",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(view >= 3);

    // A model its data cannot train is not a dead letter…
    let bad = TrainRequest::from(TrainV1 {
        run_id: Uuid::now_v7(),
        project: "p".into(),
        model: "ridge".into(),
        params: BTreeMap::new(),
        cv: CrossValidation::default(),
        sites: vec![],
    });
    let bad_id = bad.train.run_id;
    match handle_once(
        &TrainHandler::default(),
        &db.pool,
        meta("t.train", "train.v1"),
        TrainJob::Train(Box::new(bad)),
    )
    .await
    {
        Outcome::Processed(emitted) => assert!(emitted.is_empty()),
        other => panic!("{other:?}"),
    }
    // …but a failed run with the reason: the request is well-formed, its data make it
    // impossible.
    let failed = client
        .query_one(
            "SELECT state, reason FROM run_jobs WHERE run_id = $1",
            &[&bad_id],
        )
        .await
        .unwrap();
    assert_eq!(failed.get::<_, String>(0), "failed");
    let reason: String = failed.get(1);
    assert!(reason.contains("numeric labels"), "{reason}");

    let job_id = Uuid::now_v7();
    let stats = broker_schemas::StatsV1 {
        job_id,
        project: "p".into(),
        test: StatsTest::Pearson,
        covariate: Some("age".into()),
        groups: vec![],
        sites: vec![],
        alpha: 0.05,
    };
    let outcome = handle_once(
        &TrainHandler::default(),
        &db.pool,
        meta("t.train", "stats.v1"),
        TrainJob::Stats(stats),
    )
    .await;
    assert!(
        matches!(outcome, Outcome::Processed(ref e) if e.len() == 1),
        "{outcome:?}"
    );
    let row = client
        .query_one(
            "SELECT results, n_features FROM stats_jobs WHERE id = $1",
            &[&job_id],
        )
        .await
        .unwrap();
    let results: broker_schemas::results::StatsResults =
        serde_json::from_value(row.get(0)).unwrap();
    assert_eq!(results.features.len(), 8);
    assert_eq!(results.covariate.as_deref(), Some("age"));
    assert!(results.features[2].significant, "{:?}", results.features[2]);
    drop(client);
    db.drop_db().await;
}

#[test]
fn regression_models_score_r2_mae_rmse_and_pearson() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let rows: Vec<Vec<f64>> = (0..60)
        .map(|_| (0..5).map(|_| rng.random_range(-2.0..2.0)).collect())
        .collect();
    let values: Vec<f64> = rows
        .iter()
        .map(|r| 2.0 * r[0] - r[1] + 0.1 * rng.random_range(-1.0..1.0))
        .collect();
    let data = Data {
        x: Matrix::from_rows(&rows),
        sites: (0..60).map(|i| ["a", "b"][i % 2].to_owned()).collect(),
        target: TargetData::Values(values),
    };
    for (name, params, floor) in [
        ("linear", vec![], 0.99),
        ("ridge", vec![], 0.99),
        ("lasso", vec![("alpha", "0.05")], 0.95),
        ("svr", vec![("kernel", "linear")], 0.95),
        ("random_forest_regressor", vec![("n_estimators", "30")], 0.6),
    ] {
        for kind in [CvScheme::StratifiedKFold, CvScheme::LeaveOneOut] {
            let mut c = config(name, kind);
            c.spec = spec(name, &params);
            let out = cv::run(&c, &data).unwrap();
            let s = &out.evaluation.summary;
            assert!(s["r2"].mean > floor, "{name} {kind:?}: {s:?}");
            assert!(s.contains_key("mae") && s.contains_key("rmse") && s.contains_key("pearson_r"));
            assert!(out.evaluation.predictions.iter().all(|p| p.value.is_some()));
            assert!(out.feature_weights.is_some() || name == "svr");
        }
    }
    // A classifier on numeric labels is still a classifier; a regressor on words is an error.
    assert!(TargetData::from_labels(
        &["a".to_owned(), "b".to_owned()],
        swarm_train::model::Task::Regression
    )
    .is_err());
}

#[test]
fn a_multiclass_linear_svc_weighs_each_class_pair_as_its_binary_svc_does() {
    let mut data = sites_data(15, 1.5, 8);
    let (y, classes) = match &mut data.target {
        TargetData::Classes { y, classes } => {
            for (i, c) in y.iter_mut().enumerate() {
                *c = i % 3;
            }
            *classes = vec!["x".into(), "y".into(), "z".into()];
            (y.clone(), classes.clone())
        }
        _ => unreachable!(),
    };
    // No scaler: each pair's binary SVC sees the same inputs as the one-vs-one model does.
    let pipeline = PipelineConfig {
        scaler: ScalerKind::None,
        ..PipelineConfig::default()
    };
    let model = spec("svc", &[("kernel", "linear")]);
    let three = FittedModel::fit(
        &model,
        &pipeline,
        &data.x,
        &data.sites,
        Labels::Classes(&y, &classes),
        0,
    )
    .unwrap();
    let pairs = three.class_weights();
    assert_eq!(pairs.len(), 3);
    for (class, against, weights) in pairs {
        let against = against.expect("a pair names the class it is weighed against");
        let (a, b) = (
            classes.iter().position(|c| *c == against).unwrap(),
            classes.iter().position(|c| *c == class).unwrap(),
        );
        assert!(a < b, "{against} against {class}");
        let rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == a || y[i] == b).collect();
        let pair_y: Vec<usize> = rows.iter().map(|&i| usize::from(y[i] == b)).collect();
        let pair_sites: Vec<String> = rows.iter().map(|&i| data.sites[i].clone()).collect();
        let pair_classes = vec![against.clone(), class.clone()];
        let binary = FittedModel::fit(
            &model,
            &pipeline,
            &data.x.select_rows(&rows),
            &pair_sites,
            Labels::Classes(&pair_y, &pair_classes),
            0,
        )
        .unwrap();
        let (_, expected) = binary.feature_weights().unwrap();
        for (w, e) in weights.iter().zip(&expected) {
            assert!(
                (w - e).abs() < 1e-9,
                "{class} against {against}: {w} vs {e}"
            );
        }
    }
}

/// `SelectPercentile(f_classif)` behind the standard scaler keeps the features scikit-learn keeps
/// on digits, whose constant pixels score NaN (ranked last) and where the percentile threshold
/// keeps more than `int(p · percentile / 100)` (7 of 64 at 10 %). The indices come from
/// `scripts/select_percentile_reference.py`.
#[test]
fn select_percentile_matches_scikit_learn_on_digits() {
    let data = dataset("digits");
    let TargetData::Classes { y, classes } = &data.target else {
        panic!("digits has classes")
    };
    let expected: [(f64, &[usize]); 4] = [
        (5.0, &[26, 33, 34, 42]),
        (10.0, &[21, 26, 28, 33, 34, 42, 43]),
        (
            25.0,
            &[
                10, 13, 20, 21, 26, 28, 30, 33, 34, 36, 42, 43, 46, 58, 60, 61,
            ],
        ),
        (
            50.0,
            &[
                2, 5, 10, 13, 18, 19, 20, 21, 25, 26, 27, 28, 29, 30, 33, 34, 35, 36, 37, 38, 41,
                42, 43, 44, 46, 50, 53, 54, 58, 60, 61, 62,
            ],
        ),
    ];
    for (percentile, kept) in expected {
        let config = PipelineConfig {
            select_percentile: Some(percentile),
            ..PipelineConfig::default()
        };
        let fitted = config
            .fit(&data.x, &data.sites, Supervision::Classes(y, classes.len()))
            .expect("fits");
        assert_eq!(fitted.selected.as_deref(), Some(kept), "{percentile} %");
    }
}
