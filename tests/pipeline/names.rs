//! Feature names from the data: a table's header and a time series' header row are stored once
//! per project and name the features in reports; `swarm features` renames them.

use uuid::Uuid;

use crate::helpers::TestEnv;

async fn stored_names(env: &TestEnv, project: &str) -> (String, Vec<String>) {
    let client = env.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT kind, names FROM feature_names WHERE project = $1",
            &[&project],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_headers_are_stored_once_per_project_and_name_report_features() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let dir = std::env::temp_dir().join(format!("swarm-names-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();

    // A feature table: its header names the features, the covariate excluded.
    let table = dir.join("lab.csv");
    let mut csv = String::from("subject,label,age,score,thickness");
    for i in 0..6 {
        csv.push_str(&format!("\ns{i},{},{},{i}.5,2.{i}", i % 2, 30 + i));
    }
    std::fs::write(&table, csv).unwrap();
    let path = table.to_str().unwrap();
    env.cli(&[
        "publish",
        "--project",
        "v",
        "--site",
        "lab",
        "--covariates",
        "age",
        "--wait",
        path,
    ])
    .await;
    assert_eq!(
        stored_names(&env, "v").await,
        (
            "features".to_owned(),
            vec!["score".to_owned(), "thickness".into()]
        )
    );
    let renamed = env
        .cli(&["features", "--project", "v", "memory,cortex"])
        .await;
    assert!(renamed.contains("Named the 2 features"), "{renamed}");
    assert_eq!(stored_names(&env, "v").await.1, ["memory", "cortex"]);
    let stderr = env
        .cli_fails(&["features", "--project", "v", "a,b,c"])
        .await;
    assert!(stderr.contains("3 names for the 2 features"), "{stderr}");

    // Time series whose header row names the regions: reports name features by region pair.
    let regions = ["Hip", "Amy", "Ins", "Cau"];
    let series = swarm::synth::timeseries_dataset(&["a"], 6, 30, regions.len(), 4);
    let mut labels = String::from("subject,label");
    let mut files = Vec::new();
    for (_, s) in &series {
        let t = s.timepoints.unwrap() as usize;
        let mut text = regions.join("\t");
        for row in s.values.chunks(s.values.len() / t) {
            let cells: Vec<String> = row.iter().map(f32::to_string).collect();
            text.push('\n');
            text.push_str(&cells.join("\t"));
        }
        let file = dir.join(format!("{}.tsv", s.subject));
        std::fs::write(&file, text).unwrap();
        files.push(file.to_str().unwrap().to_owned());
        labels.push_str(&format!("\n{},{}", s.subject, s.label));
    }
    let labels_path = dir.join("labels.csv");
    std::fs::write(&labels_path, labels).unwrap();
    let mut args = vec![
        "publish",
        "--project",
        "ts",
        "--site",
        "a",
        "--wait",
        "--labels",
        labels_path.to_str().unwrap(),
    ];
    args.extend(files.iter().map(String::as_str));
    env.cli(&args).await;
    assert_eq!(
        stored_names(&env, "ts").await,
        (
            "regions".to_owned(),
            regions.iter().map(|r| r.to_string()).collect()
        )
    );
    let names = env.top_features_after_training("ts").await;
    assert!(
        !names.is_empty()
            && names
                .iter()
                .all(|n| { n.split(" × ").all(|r| regions.contains(&r)) && n.contains(" × ") }),
        "features named by the header's region pairs: {names:?}"
    );

    std::fs::remove_dir_all(&dir).unwrap();
    env.finish(workers).await;
}
