//! Fixtures for the analysis tests: scikit-learn's data sets and reference numbers committed
//! under `tests/data/` by `scripts/sklearn_reference.py`, and a fresh database per test.

use std::path::PathBuf;

use swarm_train::cv::{Data, TargetData};
use swarm_train::matrix::Matrix;
use swarm_train::validation::Split;

/// `tests/data/<name>`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A committed JSON fixture.
pub fn json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(data_path(name)).expect("the fixture exists");
    serde_json::from_str(&text).expect("valid JSON")
}

/// A data set exported by the script: `label,f0,f1,…`.
pub fn dataset(name: &str) -> Data {
    let mut reader =
        csv::Reader::from_path(data_path(&format!("{name}.csv"))).expect("the CSV exists");
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for record in reader.records() {
        let record = record.expect("a row");
        // Zero-padded so the sorted class order equals the numeric order scikit-learn uses.
        labels.push(format!(
            "{:02}",
            record[0].parse::<u32>().expect("an integer label")
        ));
        rows.push(
            record
                .iter()
                .skip(1)
                .map(|v| v.parse::<f64>().expect("a number"))
                .collect::<Vec<f64>>(),
        );
    }
    let (classes, y) = swarm_train::cv::encode_labels(&labels);
    Data {
        x: Matrix::from_rows(&rows),
        sites: vec!["site".to_owned(); rows.len()],
        target: TargetData::Classes { y, classes },
    }
}

/// A regression data set exported by the script: `label,f0,f1,…` with a numeric label.
pub fn regression_dataset(name: &str) -> Data {
    let mut reader =
        csv::Reader::from_path(data_path(&format!("{name}.csv"))).expect("the CSV exists");
    let mut rows = Vec::new();
    let mut values = Vec::new();
    for record in reader.records() {
        let record = record.expect("a row");
        let mut cells = record.iter().map(|v| v.parse::<f64>().expect("a number"));
        values.push(cells.next().expect("a label"));
        rows.push(cells.collect::<Vec<f64>>());
    }
    Data {
        x: Matrix::from_rows(&rows),
        sites: vec!["site".to_owned(); rows.len()],
        target: TargetData::Values(values),
    }
}

/// The reference's folds as splits.
pub fn reference_splits(folds: &serde_json::Value, n: usize) -> Vec<Split> {
    folds
        .as_array()
        .expect("folds")
        .iter()
        .enumerate()
        .map(|(f, test)| {
            let test: Vec<usize> = test
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let mut sorted = test.clone();
            sorted.sort_unstable();
            Split {
                repeat: 0,
                fold: f + 1,
                name: None,
                train: (0..n)
                    .filter(|i| sorted.binary_search(i).is_err())
                    .collect(),
                test: sorted,
            }
        })
        .collect()
}

/// A fresh database (`swarm_test_<uuid>`), migrated; dropped by [`TestDb::drop_db`].
pub struct TestDb {
    pub pool: swarm_runtime::db::Pool,
    name: String,
    server: String,
}

impl TestDb {
    pub async fn new() -> Self {
        swarm_runtime::telemetry::init_for_tests();
        let server = std::env::var("TEST_DATABASE_SERVER")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into());
        let name = format!(
            "swarm_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let pool = swarm_runtime::db::connect_and_migrate(&format!("{server}/{name}"), 2)
            .await
            .expect("Postgres is reachable (run .ci/run or start it)");
        Self { pool, name, server }
    }

    pub async fn drop_db(self) {
        drop(self.pool);
        let (client, connection) =
            tokio_postgres::connect(&format!("{}/postgres", self.server), tokio_postgres::NoTls)
                .await
                .expect("connect to the server");
        tokio::spawn(connection);
        client
            .execute(
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
                &[],
            )
            .await
            .expect("drop the test database");
    }
}
