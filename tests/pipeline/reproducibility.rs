//! The same data and seed give the same stored results in any database: the rows reach the
//! analysis in an order fixed by the data (site, subject), not by the order they were ingested.

use std::path::Path;

use uuid::Uuid;

use crate::helpers::TestEnv;

/// Writes `tests/data/wine.csv` as one CSV per site (rows dealt to the sites in turn), each with
/// its rows in the file's order, or reversed.
fn write_sites(dir: &Path, reversed: bool) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wine.csv");
    let mut reader = csv::Reader::from_path(path).expect("wine.csv");
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let sites = ["lab-a", "lab-b", "lab-c"];
    let mut rows: Vec<Vec<String>> = vec![Vec::new(); sites.len()];
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        let values: Vec<&str> = record.iter().collect();
        // subject, label (a class name, not an index), the features.
        let line = format!("wine-{i:03},class-{},{}", values[0], values[1..].join(","));
        rows[i % sites.len()].push(line);
    }
    sites
        .iter()
        .zip(rows)
        .map(|(site, mut lines)| {
            if reversed {
                lines.reverse();
            }
            let file = dir.join(format!("{site}.csv"));
            let mut text = format!("subject,label,{}", header[1..].join(","));
            for line in lines {
                text.push('\n');
                text.push_str(&line);
            }
            std::fs::write(&file, text).unwrap();
            (site.to_string(), file.to_string_lossy().into_owned())
        })
        .collect()
}

/// Publishes the sites in the given order, a few rows per message, waits for their features,
/// runs a seeded random forest with a grid and a permutation test, and returns what was stored.
async fn ingest_and_train(env: &TestEnv, sites: &[(String, String)]) -> serde_json::Value {
    let mut jobs = Vec::new();
    for (site, file) in sites {
        let out = env
            .cli(&[
                "publish",
                "--project",
                "wine",
                "--site",
                site,
                "--batch-size",
                "7",
                file,
            ])
            .await;
        jobs.push(out.trim().to_owned());
    }
    env.wait_count(
        "features of every wine",
        "SELECT count(*) FROM features f JOIN samples s ON s.id = f.sample_id WHERE s.project = 'wine'",
        &[],
        178,
    )
    .await;
    let out = env
        .cli(&[
            "train",
            "--project",
            "wine",
            "--model",
            "random_forest",
            "--cv",
            "5",
            "--seed",
            "0",
            "--grid",
            "n_estimators=5,10",
            "--permutations",
            "4",
            "--wait",
            "--timeout",
            "300",
        ])
        .await;
    let run: Uuid = out
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("train prints the run id first: {out}"));
    let client = env.pool.get().await.unwrap();
    let stored = client
        .query_one(
            "SELECT jsonb_build_object(
               'metrics', r.metrics,
               'results', r.results - 'duration_ms',
               'folds', (SELECT jsonb_agg(jsonb_build_array(f.repeat, f.fold, f.n_train, f.n_test, f.metrics)
                                          ORDER BY f.repeat, f.fold) FROM folds f WHERE f.run_id = r.id),
               'predictions', (SELECT jsonb_agg(jsonb_build_array(p.repeat, p.site, p.subject, p.fold, p.y_true, p.y_pred, p.score)
                                                ORDER BY p.repeat, p.site, p.subject) FROM predictions p WHERE p.run_id = r.id))
             FROM runs r WHERE r.id = $1",
            &[&run],
        )
        .await
        .expect("the run is stored");
    stored.get(0)
}

/// Removes the keys whose values are ids or timings (they differ between any two runs).
fn without_ids(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| !(k.ends_with("_id") || k == "id" || k.ends_with("_ms")));
            map.values_mut().for_each(without_ids);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_ids),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_files_ingested_in_another_order_give_identical_results() {
    let dir = std::env::temp_dir().join(format!("swarm-order-{}", Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("forward")).unwrap();
    std::fs::create_dir_all(dir.join("reversed")).unwrap();
    let forward = write_sites(&dir.join("forward"), false);
    let mut reversed = write_sites(&dir.join("reversed"), true);
    reversed.reverse();

    let mut results = Vec::new();
    for sites in [&forward, &reversed] {
        let mut env = TestEnv::new().await;
        // Several messages in flight at once: the ingestion order is the broker's and the
        // workers', not the files'.
        env.settings.concurrency = 4;
        let workers = env.spawn_all();
        results.push(ingest_and_train(&env, sites).await);
        env.finish(workers).await;
    }
    let (mut a, mut b) = (results[0].clone(), results[1].clone());
    without_ids(&mut a);
    without_ids(&mut b);
    assert!(
        a["predictions"].as_array().is_some_and(|p| p.len() == 178),
        "every wine has an out-of-fold prediction: {a}"
    );
    assert!(
        a["results"]["permutation"]["scores"]
            .as_array()
            .is_some_and(|s| s.len() == 4),
        "the permutation test is stored: {}",
        a["results"]
    );
    assert_eq!(a, b, "the same data and seed give the same stored results");
    std::fs::remove_dir_all(&dir).ok();
}
