//! A text project end to end: the corpus of `tests/data/text_corpus.csv` published as documents,
//! `swarm train --wait` with the default options, and a report whose features are TF-IDF terms
//! fitted inside each fold, with no scaler. The worker's fold accuracies are what the same
//! preparation and cross-validation give in this process (`planning::prepare`, `cv::run`); the
//! TF-IDF step and the models are matched to scikit-learn fold by fold in `tests/analysis/text.rs`.
//! The text flags are refused by name for a vector project and out of range.

use broker_schemas::{CrossValidation, IngestV1, Sample, SampleKind, TrainRequest, TrainV1};
use swarm_train::load::Dataset;
use swarm_train::store::Lineage;
use uuid::Uuid;

use crate::helpers::TestEnv;

/// The corpus as (subject, label, document), sorted by subject as the train worker orders one
/// site's rows.
fn corpus() -> Vec<(String, String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/text_corpus.csv");
    let mut reader = csv::Reader::from_path(path).expect("the corpus");
    let mut rows: Vec<(String, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.expect("a row");
            (r[0].to_owned(), r[1].to_owned(), r[2].to_owned())
        })
        .collect();
    rows.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    rows
}

fn document(subject: &str, label: &str, text: &str) -> Sample {
    Sample {
        subject: subject.into(),
        label: label.into(),
        kind: SampleKind::Text,
        values: Vec::new(),
        timepoints: None,
        covariates: Default::default(),
        text: Some(text.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_project_trains_on_tfidf_fitted_inside_each_fold() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let corpus = corpus();
    let samples: Vec<Sample> = corpus.iter().map(|(s, l, t)| document(s, l, t)).collect();
    let batch = IngestV1 {
        project: "notes".into(),
        site: "clinic".into(),
        samples,
    };
    env.send(&batch, "notes-job").await;
    let vectors = IngestV1 {
        project: "vec".into(),
        site: "lab".into(),
        samples: (0..10)
            .map(|i| crate::vector(&format!("v{i}"), ["a", "b"][i % 2], vec![i as f32, 1.0]))
            .collect(),
    };
    env.send(&vectors, "vec-job").await;
    env.wait_features(
        "the documents' hashed features",
        "notes-job",
        corpus.len() as i64,
    )
    .await;
    env.wait_features("the vectors' features", "vec-job", 10)
        .await;

    // The text flags: only for text projects, and in range; nothing is published.
    for (args, expected) in [
        (
            vec!["train", "--project", "vec", "--text", "hashed"],
            "--text: project \"vec\" is a vector project",
        ),
        (
            vec!["train", "--project", "vec", "--max-features", "10"],
            "--max-features: project \"vec\" is a vector project",
        ),
        (
            vec!["train", "--project", "notes", "--min-df", "0"],
            "--min-df must be at least 1",
        ),
        (
            vec!["train", "--project", "notes", "--max-features", "0"],
            "--max-features must be at least 1",
        ),
        // --pca is checked against the hashed features only when they are the features; a
        // TF-IDF run's are its vocabulary (thousands of terms here), so the samples bound it.
        (
            vec![
                "train",
                "--project",
                "notes",
                "--text",
                "hashed",
                "--pca",
                "5000",
            ],
            "has 4096 features",
        ),
        (
            vec!["train", "--project", "notes", "--pca", "5000"],
            "the smallest training fold has",
        ),
    ] {
        let stderr = env.cli_fails(&args).await;
        assert!(stderr.contains(expected), "swarm {args:?}: {stderr}");
    }
    assert_eq!(env.queue_depth("train").await, 0);

    let out = env
        .cli(&["train", "--project", "notes", "--wait", "--timeout", "300"])
        .await;
    let run_id: Uuid = out
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("a run id");
    let client = env.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT r.results, r.n_features, p.markdown FROM runs r JOIN reports p ON p.run_id = r.id WHERE r.id = $1",
            &[&run_id],
        )
        .await
        .unwrap();
    let results: serde_json::Value = row.get(0);
    let n_features: i32 = row.get(1);
    let markdown: String = row.get(2);

    let pipeline = &results["pipeline"];
    assert_eq!(
        pipeline["scaler"], "none",
        "auto is none for text: {pipeline}"
    );
    assert_eq!(pipeline["text"]["kind"], "tfidf", "{pipeline}");
    assert_eq!(pipeline["text"]["min_df"], 1);
    let vocabulary = pipeline["text"]["vocabulary"]
        .as_u64()
        .expect("a vocabulary size");
    assert_eq!(vocabulary, n_features as u64, "the final model's terms");
    assert!(vocabulary > 3000, "words and word pairs: {vocabulary}");

    // The weights are named by the final vocabulary: words and "word word" pairs.
    let weights = &results["feature_weights"];
    let names: Vec<&str> = weights["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(names.len() as u64, vocabulary);
    assert!(names.contains(&"telescope"), "a word");
    assert!(names.iter().any(|n| n.contains(' ')), "a bigram");
    for class in weights["per_class"].as_array().unwrap() {
        assert_eq!(class["values"].as_array().unwrap().len(), names.len());
    }
    // The report's top feature is a term.
    let values: Vec<f64> = weights["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let top = (0..values.len())
        .max_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()).then(b.cmp(&a)))
        .unwrap();
    assert!(
        markdown.contains(&format!("| 1 | {} |", names[top])),
        "top feature {:?} in {markdown}",
        names[top]
    );
    assert!(
        markdown.contains("TF-IDF of words and word pairs")
            && markdown.contains("fitted inside each fold on its training documents only")
            && markdown.contains(&format!("vocabulary has {vocabulary} terms")),
        "{markdown}"
    );

    // Fold by fold, what the same rows give in this process.
    let stored: Vec<f64> = client
        .query(
            "SELECT accuracy FROM folds WHERE run_id = $1 ORDER BY fold",
            &[&run_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let request = TrainRequest::from(TrainV1 {
        run_id,
        project: "notes".into(),
        model: "logistic".into(),
        params: Default::default(),
        cv: CrossValidation::default(),
        sites: Vec::new(),
    });
    let dataset = Dataset {
        ids: (0..corpus.len() as i64).collect(),
        labels: corpus.iter().map(|c| c.1.clone()).collect(),
        sites: vec!["clinic".into(); corpus.len()],
        subjects: corpus.iter().map(|c| c.0.clone()).collect(),
        covariates: vec![serde_json::Value::Null; corpus.len()],
        documents: Some(corpus.iter().map(|c| c.2.clone()).collect()),
        ..Dataset::default()
    };
    let lineage = Lineage {
        job_id: None,
        message_id: String::new(),
        trace_id: None,
    };
    let run = swarm_train::planning::prepare(request, Some("text"), dataset, lineage).unwrap();
    let outcome = swarm_train::cv::run(&run.config, &run.data).unwrap();
    let expected: Vec<f64> = outcome
        .evaluation
        .folds
        .iter()
        .map(|f| f.metrics["accuracy"])
        .collect();
    assert_eq!(stored, expected);
    assert!(expected.iter().all(|&a| a > 0.8), "{expected:?}");
    drop(client);
    env.finish(workers).await;
}
