//! Cross-validation time per model on breast cancer, wine and digits, next to scikit-learn's on
//! the same machine in the same run, with the accuracy difference and a determinism check. Tree
//! models also show the 5-fold mean averaged over seeds 0..9 beside scikit-learn's over
//! random_state 0..9 (a single tree's score depends on how its random stream breaks ties).
//!
//! `cargo bench --bench models` (a plain main, no criterion: each cell is one 5-fold run on the
//! reference folds, the best of three). scikit-learn's times come from
//! `scripts/sklearn_reference.py --bench`, run with `$SKLEARN_PYTHON` (default `.venv/bin/python`,
//! then `/tmp/skvenv/bin/python`); without scikit-learn the table shows ours only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use swarm_train::cv::{encode_labels, evaluate, Data, TargetData};
use swarm_train::matrix::Matrix;
use swarm_train::model::ModelSpec;
use swarm_train::pipeline::PipelineConfig;
use swarm_train::validation::Split;

/// (reference key, model name, parameters).
type Row = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dataset(name: &str) -> Data {
    let mut reader = csv::Reader::from_path(root().join(format!("tests/data/{name}.csv")))
        .expect("the data set");
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.expect("a row");
        labels.push(format!("{:02}", record[0].parse::<u32>().expect("a label")));
        rows.push(
            record
                .iter()
                .skip(1)
                .map(|v| v.parse::<f64>().expect("a number"))
                .collect::<Vec<f64>>(),
        );
    }
    let (classes, y) = encode_labels(&labels);
    Data {
        x: Matrix::from_rows(&rows),
        sites: vec!["site".into(); rows.len()],
        target: TargetData::Classes { y, classes },
    }
}

fn splits(reference: &serde_json::Value, set: &str, n: usize) -> Vec<Split> {
    reference["datasets"][set]["folds"]
        .as_array()
        .expect("folds")
        .iter()
        .enumerate()
        .map(|(f, t)| {
            let mut test: Vec<usize> = t
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            test.sort_unstable();
            Split {
                repeat: 0,
                fold: f + 1,
                name: None,
                train: (0..n).filter(|i| test.binary_search(i).is_err()).collect(),
                test,
            }
        })
        .collect()
}

fn sklearn_times() -> Option<BTreeMap<String, f64>> {
    let candidates = [
        std::env::var("SKLEARN_PYTHON").ok(),
        Some(root().join(".venv/bin/python").display().to_string()),
        Some("/tmp/skvenv/bin/python".to_owned()),
    ];
    for python in candidates.into_iter().flatten() {
        let Ok(out) = Command::new(&python)
            .arg(root().join("scripts/sklearn_reference.py"))
            .arg("--bench")
            .output()
        else {
            continue;
        };
        if out.status.success() {
            if let Ok(times) = serde_json::from_slice(&out.stdout) {
                return Some(times);
            }
        }
    }
    None
}

fn main() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/sklearn_reference.json"))
            .expect("the reference"),
    )
    .expect("JSON");
    let sklearn = sklearn_times();
    if sklearn.is_none() {
        eprintln!("scikit-learn not found (set SKLEARN_PYTHON): showing Swarm's times only");
    }
    let models: [Row; 7] = [
        ("logistic", "logistic", &[]),
        ("svc", "svc", &[]),
        ("svc_linear", "svc", &[("kernel", "linear")]),
        ("knn", "knn", &[]),
        ("random_forest", "random_forest", &[]),
        ("decision_tree", "decision_tree", &[]),
        ("gaussian_nb", "gaussian_nb", &[]),
    ];
    println!(
        "{:<14} {:<14} {:>10} {:>10} {:>7} {:>9} {:>9} {:>10} {:>10} {:>6}",
        "data set",
        "model",
        "swarm s",
        "sklearn s",
        "ratio",
        "acc",
        "sk acc",
        "acc seeds",
        "sk seeds",
        "same"
    );
    for set in ["breast_cancer", "wine", "digits"] {
        let data = dataset(set);
        let folds = splits(&reference, set, data.sites.len());
        for (key, name, params) in models {
            let params: BTreeMap<String, String> = params
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect();
            let spec = ModelSpec::parse(name, &params).expect("a model");
            let mut best = f64::INFINITY;
            let mut first = None;
            let mut deterministic = true;
            for _ in 0..3 {
                let started = Instant::now();
                let e = evaluate(&spec, &PipelineConfig::default(), &data, &folds, false, 0)
                    .expect("runs");
                best = best.min(started.elapsed().as_secs_f64());
                let acc: Vec<f64> = e.folds.iter().map(|f| f.metrics["accuracy"]).collect();
                match &first {
                    None => first = Some(acc),
                    Some(a) => deterministic &= *a == acc,
                }
            }
            let acc = first.unwrap_or_default();
            let mean = acc.iter().sum::<f64>() / acc.len() as f64;
            let sk_acc: Vec<f64> = reference["datasets"][set]["models"][key]["fold_accuracy"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .unwrap_or_default();
            let sk_mean = sk_acc.iter().sum::<f64>() / sk_acc.len().max(1) as f64;
            let sk_time = sklearn
                .as_ref()
                .and_then(|t| t.get(&format!("{set}/{key}")).copied());
            let sk_seeds = reference["datasets"][set]["models"][key]["seed_mean_accuracy"].as_f64();
            let seeds = reference["datasets"][set]["models"][key]["seeds"]
                .as_u64()
                .unwrap_or(0);
            let ours_seeds = sk_seeds.map(|_| {
                (0..seeds)
                    .map(|seed| {
                        let e = evaluate(
                            &spec,
                            &PipelineConfig::default(),
                            &data,
                            &folds,
                            false,
                            seed,
                        )
                        .expect("runs");
                        e.folds.iter().map(|f| f.metrics["accuracy"]).sum::<f64>()
                            / e.folds.len() as f64
                    })
                    .sum::<f64>()
                    / seeds as f64
            });
            let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
            println!(
                "{:<14} {:<14} {:>10.4} {:>10} {:>7} {:>9.4} {:>9.4} {:>10} {:>10} {:>6}",
                set,
                key,
                best,
                sk_time.map_or("-".into(), |t| format!("{t:.4}")),
                sk_time.map_or("-".into(), |t| format!("{:.2}", best / t)),
                mean,
                sk_mean,
                cell(ours_seeds),
                cell(sk_seeds),
                if deterministic { "yes" } else { "NO" }
            );
        }
    }
}
