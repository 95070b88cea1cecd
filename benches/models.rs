//! The train worker's models and pipeline steps at realistic shapes, beside scikit-learn in the
//! same run on the same folds: per (data set, model or step) Swarm's CPU and wall seconds for a
//! 5-fold cross-validation, scikit-learn's, the CPU ratio, and the mean accuracy (R² for
//! regression) on both sides with the difference in points.
//!
//! Data sets (`MODELS_SETS`, default `tabular,digits,connectivity`):
//! - **tabular**: 6,000 × 8 generated here (ChaCha8, seed 7): 3 classes, 4 informative features
//!   with overlapping class means, 4 noise features, scales from 1 to 100; a continuous target
//!   (a linear part, an interaction, a sine and noise) for ridge and SVR;
//! - **digits**: `tests/data/digits.csv` (1,797 × 64);
//! - **connectivity**: `MODELS_SUBJECTS` (default 2,000) × 6,670, the upper triangle of 116
//!   regions: 12 latent networks over a noise floor, two groups that differ in the first
//!   network and in 5 % of the edges (`benches/shared/mod.rs`, the generator `heavy_job` uses);
//!   a continuous target (the group plus the shifted edges' mean, and noise) for ridge and SVR.
//!
//! Models: logistic, linear SVC, RBF SVC, random forest, KNN, Gaussian NB behind the standard
//! scaler (scikit-learn's `make_pipeline(StandardScaler(), model)` with its defaults, which are
//! ours: `model/params.rs`), ridge and SVR on the continuous targets, logistic behind ANOVA
//! selection (10 %) and behind PCA (10 components); and the steps on their own (fit on the
//! training rows, transform training and test rows): scaler, ANOVA 10 %, PCA to 10 and to 100
//! components where the set is wide enough.
//!
//! The stratified 5 folds are computed once here (`swarm_train::folds`, seed 0) and written,
//! with the data (raw little-endian f64), to a temporary directory that
//! `scripts/models_bench_sklearn.py` reads; it prints JSON of per-fold times and scores (one
//! thread: `n_jobs=1`, `OMP_NUM_THREADS=1`). Python is `$SKLEARN_PYTHON`, else
//! `/work/skl/bin/python`, else `.venv/bin/python`; without scikit-learn the table shows ours
//! only. Each side runs a cell up to `MODELS_REPEATS` times (default 3) and keeps the fastest,
//! repeating only while one run takes under 5 s (connectivity: once); a cell whose folds
//! project past `MODELS_BUDGET` seconds (default 300) stops after the folds done, and both
//! sides are compared on the folds both finished (the `folds` column says how many).
//! `MODELS_CELLS=logistic,pca10` keeps some cells only. Swarm's peak RSS (`VmHWM`) is printed
//! after the connectivity cells.
//!
//! `cargo bench --bench models` (a plain main, no criterion), e.g.
//! `MODELS_SETS=tabular,digits cargo bench --bench models` for a quick run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use broker_schemas::ScalerKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use swarm_train::cv::{encode_labels, evaluate, Data, TargetData};
use swarm_train::folds::stratified_k_fold;
use swarm_train::matrix::Matrix;
use swarm_train::model::ModelSpec;
use swarm_train::pipeline::{PipelineConfig, Supervision};
use swarm_train::validation::Split;

mod shared;

use shared::normal;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One data set: the features, the classes, an optional continuous target and the folds.
struct Set {
    name: String,
    x: Matrix,
    classes: TargetData,
    values: Option<Vec<f64>>,
    folds: Vec<Split>,
    /// Runs of a cheap cell (best of).
    repeats: usize,
}

fn classes(y: &[usize]) -> TargetData {
    let labels: Vec<String> = y.iter().map(|c| format!("{c:02}")).collect();
    let (classes, y) = encode_labels(&labels);
    TargetData::Classes { y, classes }
}

fn tabular() -> (Matrix, Vec<usize>, Vec<f64>) {
    let (n, informative, noise) = (6000, 4, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Class means one standard deviation or less apart: the classes overlap.
    let means = [
        [0.0, 0.0, 0.0, 0.0],
        [1.0, -0.5, 0.5, 0.0],
        [0.5, 0.8, -0.7, 0.6],
    ];
    let scales = [1.0, 10.0, 100.0, 3.0, 1.0, 30.0, 0.1, 5.0];
    let (mut rows, mut y, mut target) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let class = i % 3;
        let z: Vec<f64> = (0..informative + noise)
            .map(|j| {
                normal(&mut rng)
                    + if j < informative {
                        means[class][j]
                    } else {
                        0.0
                    }
            })
            .collect();
        target.push(
            2.0 * z[0] - z[1] + 0.5 * z[2] * z[3] + (2.0 * z[0]).sin() + 0.7 * normal(&mut rng),
        );
        rows.push(
            z.iter()
                .zip(scales)
                .map(|(v, s)| v * s)
                .collect::<Vec<f64>>(),
        );
        y.push(class);
    }
    (Matrix::from_rows(&rows), y, target)
}

fn digits() -> (Matrix, Vec<usize>) {
    let mut reader =
        csv::Reader::from_path(root().join("tests/data/digits.csv")).expect("the data set");
    let (mut rows, mut y) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.expect("a row");
        y.push(record[0].parse::<usize>().expect("a label"));
        rows.push(
            record
                .iter()
                .skip(1)
                .map(|v| v.parse::<f64>().expect("a number"))
                .collect::<Vec<f64>>(),
        );
    }
    (Matrix::from_rows(&rows), y)
}

fn connectivity(subjects: usize) -> (Matrix, Vec<usize>, Vec<f64>) {
    let (rows, patients) = shared::connectivity(subjects);
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let target = rows
        .iter()
        .zip(&patients)
        .map(|(row, &p)| {
            let shifted = row.iter().step_by(20).map(|&v| f64::from(v)).sum::<f64>()
                / row.len().div_ceil(20) as f64;
            f64::from(u8::from(p)) + 20.0 * shifted + 0.5 * normal(&mut rng)
        })
        .collect();
    let data: Vec<f64> = rows.iter().flatten().map(|&v| f64::from(v)).collect();
    let x = Matrix::new(rows.len(), rows[0].len(), data);
    (
        x,
        patients.iter().map(|&p| usize::from(p)).collect(),
        target,
    )
}

fn make_set(name: &str) -> Set {
    let (x, y, values, repeats) = match name {
        "tabular" => {
            let (x, y, v) = tabular();
            (x, y, Some(v), 3)
        }
        "digits" => {
            let (x, y) = digits();
            (x, y, None, 3)
        }
        "connectivity" => {
            let (x, y, v) = connectivity(env_number("MODELS_SUBJECTS", 2000));
            (x, y, Some(v), 1)
        }
        other => panic!("unknown data set {other} (tabular, digits, connectivity)"),
    };
    let folds = stratified_k_fold(&y, 5, 0)
        .expect("5 folds")
        .into_iter()
        .enumerate()
        .map(|(f, fold)| Split {
            repeat: 0,
            fold: f + 1,
            name: None,
            train: fold.train,
            test: fold.test,
        })
        .collect();
    Set {
        name: name.to_owned(),
        x,
        classes: classes(&y),
        values,
        folds,
        repeats: env_number("MODELS_REPEATS", repeats),
    }
}

/// What a cell runs.
#[derive(Clone)]
enum Job {
    /// A cross-validation of a model behind a pipeline.
    Cv {
        model: &'static str,
        params: &'static [(&'static str, &'static str)],
        pipeline: PipelineConfig,
        regression: bool,
    },
    /// A pipeline on its own, fitted per fold: no score.
    Step(PipelineConfig),
}

struct Cell {
    key: &'static str,
    job: Job,
}

fn pipeline(scaler: bool, percentile: Option<f64>, pca: Option<usize>) -> PipelineConfig {
    PipelineConfig {
        scaler: if scaler {
            ScalerKind::Global
        } else {
            ScalerKind::None
        },
        select_percentile: percentile,
        pca_components: pca,
        text: None,
    }
}

fn cells(set: &Set) -> Vec<Cell> {
    let cv = |key, model, params, pipeline, regression| Cell {
        key,
        job: Job::Cv {
            model,
            params,
            pipeline,
            regression,
        },
    };
    let scaled = pipeline(true, None, None);
    let mut cells = vec![
        cv("logistic", "logistic", &[], scaled.clone(), false),
        cv(
            "svc_linear",
            "svc",
            &[("kernel", "linear")],
            scaled.clone(),
            false,
        ),
        cv("svc_rbf", "svc", &[], scaled.clone(), false),
        cv("random_forest", "random_forest", &[], scaled.clone(), false),
        cv("knn", "knn", &[], scaled.clone(), false),
        cv("gaussian_nb", "gaussian_nb", &[], scaled.clone(), false),
    ];
    if set.values.is_some() {
        cells.push(cv("ridge", "ridge", &[], scaled.clone(), true));
        cells.push(cv("svr", "svr", &[], scaled, true));
    }
    cells.push(cv(
        "anova10+logistic",
        "logistic",
        &[],
        pipeline(true, Some(10.0), None),
        false,
    ));
    let p = set.x.cols();
    if p > 10 {
        cells.push(cv(
            "pca10+logistic",
            "logistic",
            &[],
            pipeline(true, None, Some(10)),
            false,
        ));
    }
    cells.push(Cell {
        key: "step scaler",
        job: Job::Step(pipeline(true, None, None)),
    });
    cells.push(Cell {
        key: "step anova10",
        job: Job::Step(pipeline(false, Some(10.0), None)),
    });
    for (key, k) in [("step pca10", 10), ("step pca100", 100)] {
        if p > k {
            cells.push(Cell {
                key,
                job: Job::Step(pipeline(false, None, Some(k))),
            });
        }
    }
    if let Ok(keep) = std::env::var("MODELS_CELLS") {
        let keep: Vec<&str> = keep.split(',').map(str::trim).collect();
        cells.retain(|c| keep.contains(&c.key));
    }
    cells
}

/// CPU seconds of every thread of this process so far (`/proc/self/task/*/schedstat`, ns).
fn cpu_seconds() -> f64 {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                ns += text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 / 1e9
}

/// `VmHWM` (peak resident set) from `/proc/self/status`.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// Per-fold results of the kept run of one cell.
#[derive(Default)]
struct Outcome {
    cpu: Vec<f64>,
    wall: Vec<f64>,
    score: Vec<f64>,
    runs: usize,
}

impl Outcome {
    fn from_json(v: &Value) -> Option<Self> {
        let list = |k: &str| -> Option<Vec<f64>> {
            Some(
                v.get(k)?
                    .as_array()?
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(f64::NAN))
                    .collect(),
            )
        };
        Some(Self {
            cpu: list("fold_cpu")?,
            wall: list("fold_wall")?,
            score: list("fold_score").unwrap_or_default(),
            runs: v.get("runs").and_then(Value::as_u64).unwrap_or(1) as usize,
        })
    }
}

/// Seconds per cell beyond which a cell stops after the folds done.
fn budget() -> f64 {
    env_number("MODELS_BUDGET", 300) as f64
}

/// One fold of a cell: (score if any).
fn run_fold(job: &Job, data: &Data, split: &Split) -> Option<f64> {
    match job {
        Job::Cv {
            model,
            params,
            pipeline,
            regression,
        } => {
            let params: BTreeMap<String, String> = params
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect();
            let spec = ModelSpec::parse(model, &params).expect("a model");
            let e = evaluate(&spec, pipeline, data, std::slice::from_ref(split), false, 0)
                .expect("runs");
            let metric = if *regression { "r2" } else { "accuracy" };
            Some(e.folds[0].metrics[metric])
        }
        Job::Step(pipeline) => {
            let sites = vec!["site".to_owned(); split.train.len()];
            let train = data.x.select_rows(&split.train);
            let TargetData::Classes { y, classes } = &data.target else {
                unreachable!("steps run on the classes")
            };
            let ty: Vec<usize> = split.train.iter().map(|&i| y[i]).collect();
            let fitted = pipeline
                .fit(&train, &sites, Supervision::Classes(&ty, classes.len()))
                .expect("fits");
            std::hint::black_box(fitted.transform(&train, &sites).expect("transforms"));
            let test = data.x.select_rows(&split.test);
            let test_sites = vec!["site".to_owned(); split.test.len()];
            std::hint::black_box(fitted.transform(&test, &test_sites).expect("transforms"));
            None
        }
    }
}

/// Runs one cell: the first run fold by fold until the budget, then more runs (the same folds)
/// while a run is cheap; keeps the run with the least wall time.
fn run_cell(job: &Job, data: &Data, folds: &[Split], repeats: usize) -> Outcome {
    let mut best: Option<Outcome> = None;
    let mut done = folds.len();
    let mut runs = 0;
    while runs < repeats.max(1) {
        let mut run = Outcome::default();
        for (f, split) in folds[..done].iter().enumerate() {
            let (cpu, wall) = (cpu_seconds(), Instant::now());
            let score = run_fold(job, data, split);
            run.wall.push(wall.elapsed().as_secs_f64());
            run.cpu.push(cpu_seconds() - cpu);
            run.score.extend(score);
            let spent: f64 = run.wall.iter().sum();
            if runs == 0 && f + 1 < done && spent / (f + 1) as f64 * done as f64 > budget() {
                done = f + 1;
                break;
            }
        }
        runs += 1;
        let total: f64 = run.wall.iter().sum();
        if best
            .as_ref()
            .is_none_or(|b| total < b.wall.iter().sum::<f64>())
        {
            best = Some(run);
        }
        if total > 5.0 {
            break;
        }
    }
    let mut best = best.unwrap_or_default();
    best.runs = runs;
    best
}

fn python_candidates() -> Vec<String> {
    [
        std::env::var("SKLEARN_PYTHON").ok(),
        Some("/work/skl/bin/python".to_owned()),
        Some(root().join(".venv/bin/python").display().to_string()),
    ]
    .into_iter()
    .flatten()
    .filter(|p| Path::new(p).exists())
    .collect()
}

/// Writes the set, its folds and its cells for the Python side.
fn write_for_python(dir: &Path, set: &Set, cells: &[Cell]) {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(dir.join(format!("{}.f64", set.name))).expect("the data file"),
    );
    for v in set.x.data() {
        file.write_all(&v.to_le_bytes()).expect("writes");
    }
    file.flush().expect("writes");
    let TargetData::Classes { y, .. } = &set.classes else {
        unreachable!()
    };
    let cells: Vec<Value> = cells
        .iter()
        .map(|c| {
            let (kind, model, params, p, regression) = match &c.job {
                Job::Cv {
                    model,
                    params,
                    pipeline,
                    regression,
                } => ("cv", *model, *params, pipeline, *regression),
                Job::Step(p) => ("step", "", &[][..], p, false),
            };
            json!({
                "key": c.key,
                "kind": kind,
                "model": model,
                "params": params.iter().map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                "scaler": p.scaler != ScalerKind::None,
                "percentile": p.select_percentile,
                "pca": p.pca_components,
                "regression": regression,
            })
        })
        .collect();
    let meta = json!({
        "name": set.name,
        "rows": set.x.rows(),
        "cols": set.x.cols(),
        "y": y,
        "target": set.values,
        "test_folds": set.folds.iter().map(|s| &s.test).collect::<Vec<_>>(),
        "repeats": set.repeats,
        "budget": budget(),
        "cells": cells,
    });
    std::fs::write(
        dir.join(format!("{}.json", set.name)),
        serde_json::to_vec(&meta).expect("JSON"),
    )
    .expect("the metadata file");
}

/// scikit-learn's outcomes per cell key, or why there are none.
fn sklearn(dir: &Path, set: &Set) -> Result<(String, BTreeMap<String, Outcome>), String> {
    let mut why = "no Python found (set SKLEARN_PYTHON)".to_owned();
    for python in python_candidates() {
        let out = Command::new(&python)
            .arg(root().join("scripts/models_bench_sklearn.py"))
            .arg(dir)
            .arg(&set.name)
            .output()
            .map_err(|e| format!("{python}: {e}"))?;
        if !out.status.success() {
            why = format!(
                "{python}: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("failed")
            );
            continue;
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let version = v["sklearn"].as_str().unwrap_or("?").to_owned();
        let cells = v["cells"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), Outcome::from_json(v)?)))
                    .collect()
            })
            .unwrap_or_default();
        return Ok((version, cells));
    }
    Err(why)
}

fn sum(v: &[f64], n: usize) -> f64 {
    v.iter().take(n).sum()
}

fn mean(v: &[f64], n: usize) -> Option<f64> {
    let n = n.min(v.len());
    (n > 0).then(|| v[..n].iter().sum::<f64>() / n as f64)
}

fn main() {
    let sets =
        std::env::var("MODELS_SETS").unwrap_or_else(|_| "tabular,digits,connectivity".into());
    let dir = std::env::temp_dir().join(format!("swarm-models-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    println!(
        "{:<13} {:<17} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7}",
        "data set",
        "model / step",
        "runs",
        "folds",
        "swarm cpu",
        "swarm s",
        "sk cpu",
        "sk s",
        "cpu ×",
        "score",
        "sk",
        "Δ pts"
    );
    for name in sets.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let set = make_set(name);
        let cells = cells(&set);
        write_for_python(&dir, &set, &cells);
        let (sk_note, sk) = match sklearn(&dir, &set) {
            Ok((version, cells)) => (format!("scikit-learn {version}"), cells),
            Err(why) => (
                format!("scikit-learn unavailable, ours only: {why}"),
                BTreeMap::new(),
            ),
        };
        let _ = std::fs::remove_file(dir.join(format!("{}.f64", set.name)));
        println!(
            "# {} ({} × {}, {} classes; {sk_note})",
            set.name,
            set.x.rows(),
            set.x.cols(),
            match &set.classes {
                TargetData::Classes { classes, .. } => classes.len(),
                TargetData::Values(_) => 0,
            }
        );
        let mut data = Data {
            x: set.x.clone(),
            sites: vec!["site".into(); set.x.rows()],
            target: set.classes.clone(),
        };
        for cell in &cells {
            data.target = match (&cell.job, &set.values) {
                (
                    Job::Cv {
                        regression: true, ..
                    },
                    Some(v),
                ) => TargetData::Values(v.clone()),
                _ => set.classes.clone(),
            };
            let ours = run_cell(&cell.job, &data, &set.folds, set.repeats);
            let theirs = sk.get(cell.key);
            let folds = theirs.map_or(ours.wall.len(), |t| t.wall.len().min(ours.wall.len()));
            let cell_s = |v: Option<f64>, digits: usize| {
                v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
            };
            let (cpu, wall) = (sum(&ours.cpu, folds), sum(&ours.wall, folds));
            let sk_cpu = theirs.map(|t| sum(&t.cpu, folds));
            let score = mean(&ours.score, folds);
            let sk_score = theirs.and_then(|t| mean(&t.score, folds));
            let diff = score.zip(sk_score).map(|(a, b)| 100.0 * (a - b));
            println!(
                "{:<13} {:<17} {:>5} {:>5} {:>9.3} {:>9.3} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7}",
                set.name,
                cell.key,
                format!(
                    "{}/{}",
                    ours.runs,
                    theirs.map_or("-".to_owned(), |t| t.runs.to_string())
                ),
                if folds < set.folds.len() {
                    format!("{folds}/{}*", set.folds.len())
                } else {
                    folds.to_string()
                },
                cpu,
                wall,
                cell_s(sk_cpu, 3),
                cell_s(theirs.map(|t| sum(&t.wall, folds)), 3),
                cell_s(sk_cpu.filter(|&s| s > 0.0).map(|s| cpu / s), 2),
                cell_s(score, 4),
                cell_s(sk_score, 4),
                cell_s(diff, 2),
            );
        }
        drop(data);
        if set.name == "connectivity" {
            println!(
                "# peak RSS after the connectivity cells (VmHWM): {}",
                peak_rss()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "# runs: ours/scikit-learn's (fastest kept); folds: those both finished (* = capped at \
         MODELS_BUDGET={}s); cpu ×: Swarm CPU / scikit-learn CPU; score: mean accuracy, R² for \
         ridge/svr, none for steps; peak RSS of the whole bench: {}",
        budget(),
        peak_rss()
    );
}
