//! Text against scikit-learn: TF-IDF fitted on each fold's training documents equals
//! `TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)`'s, and logistic regression and linear
//! SVC on it score what scikit-learn's do, fold by fold (`scripts/text_reference.py`, committed
//! under `tests/data/`).

use broker_schemas::ScalerKind;
use swarm_train::cv::{encode_labels, evaluate, Data, TargetData};
use swarm_train::matrix::Matrix;
use swarm_train::pipeline::PipelineConfig;
use swarm_train::tfidf::{count, FittedTfidf, TfidfConfig};
use swarm_train::validation::Split;

use crate::helpers::{data_path, json};
use crate::spec;

/// `tests/data/text_corpus.csv`: subjects, labels, documents.
fn corpus() -> (Vec<String>, Vec<String>) {
    let mut reader = csv::Reader::from_path(data_path("text_corpus.csv")).expect("the corpus");
    let (mut labels, mut documents) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.expect("a row");
        labels.push(record[1].to_owned());
        documents.push(record[2].to_owned());
    }
    (labels, documents)
}

#[test]
fn tfidf_and_linear_models_match_scikit_learn_fold_by_fold() {
    let reference = json("text_reference.json");
    let (labels, documents) = corpus();
    let counts = count(&documents).expect("a small corpus");
    let n = documents.len();
    for (f, fold) in reference["folds"].as_array().unwrap().iter().enumerate() {
        let test: Vec<usize> = fold["test"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let train: Vec<usize> = (0..n).filter(|i| !test.contains(i)).collect();
        let fitted = FittedTfidf::fit(&counts.counts.select_rows(&train), &TfidfConfig::default());
        assert_eq!(
            fitted.kept.len() as u64,
            fold["vocabulary"].as_u64().unwrap(),
            "fold {f}: the vocabulary of the training documents"
        );
        let x_test = fitted.transform(&counts.counts.select_rows(&test));
        for (row, want) in fold["first_test_documents"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let want = want.as_object().unwrap();
            let got: Vec<(&str, f64)> = fitted
                .kept
                .iter()
                .zip(x_test.row(row))
                .filter(|(_, v)| **v != 0.0)
                .map(|(&j, &v)| (counts.vocabulary[j].as_str(), v))
                .collect();
            assert_eq!(got.len(), want.len(), "fold {f}, document {row}: terms");
            for (term, v) in got {
                let w = want[term].as_f64().unwrap_or(f64::NAN);
                assert!(
                    (v - w).abs() < 1e-6,
                    "fold {f}, document {row}, {term:?}: ours {v}, scikit-learn {w}"
                );
            }
        }

        // The fold's rows: its training documents, then its test documents.
        let x_train = fitted.transform(&counts.counts.select_rows(&train));
        let mut rows = x_train.to_rows();
        rows.extend(x_test.to_rows());
        let fold_labels: Vec<String> = train
            .iter()
            .chain(&test)
            .map(|&i| labels[i].clone())
            .collect();
        let (classes, y) = encode_labels(&fold_labels);
        let data = Data {
            x: Matrix::from_rows(&rows),
            sites: vec!["site".to_owned(); n],
            target: TargetData::Classes { y, classes },
        };
        let split = Split {
            repeat: 0,
            fold: f + 1,
            name: None,
            train: (0..train.len()).collect(),
            test: (train.len()..n).collect(),
        };
        let pipeline = PipelineConfig {
            scaler: ScalerKind::None,
            ..PipelineConfig::default()
        };
        for (model, params) in [
            ("logistic", vec![]),
            ("svc_linear", vec![("kernel", "linear")]),
        ] {
            let name = if model == "logistic" {
                "logistic"
            } else {
                "svc"
            };
            let e = evaluate(
                &spec(name, &params),
                &pipeline,
                &data,
                std::slice::from_ref(&split),
                false,
                0,
            )
            .expect("fits");
            let got = e.folds[0].metrics["accuracy"];
            let want = fold["accuracy"][model].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "fold {f} {model}: ours {got}, scikit-learn {want}"
            );
        }
    }
}
