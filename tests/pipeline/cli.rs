//! The CLI end to end: files published, a model trained and its report shown; NEURO-LEARN
//! tables, covariates and text documents published as they are.

use swarm_runtime::floats::FloatVec;
use uuid::Uuid;

use crate::by_site;
use crate::helpers::TestEnv;

/// Writes one file per subject (`<subject>.<extension>`) and a labels CSV into `dir`, publishes
/// them with `swarm publish --labels`, and returns the job id.
async fn publish_labelled(
    env: &TestEnv,
    dir: &std::path::Path,
    project: &str,
    site: &str,
    extension: &str,
    subjects: &[(String, String, String)],
) -> String {
    let mut labels = String::from("subject,label");
    let mut files = Vec::new();
    for (subject, label, contents) in subjects {
        let path = dir.join(format!("{subject}.{extension}"));
        std::fs::write(&path, contents).unwrap();
        labels.push_str(&format!("\n{subject},{label}"));
        files.push(path.to_string_lossy().into_owned());
    }
    let labels_path = dir.join(format!("{project}-labels.csv"));
    std::fs::write(&labels_path, labels).unwrap();
    let mut args = vec![
        "publish",
        "--project",
        project,
        "--site",
        site,
        "--labels",
        labels_path.to_str().unwrap(),
    ];
    args.extend(files.iter().map(String::as_str));
    env.cli(&args).await.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_publishes_files_trains_and_shows_the_report() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let dir = std::env::temp_dir().join(format!("swarm-cli-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();

    // Feature tables, one CSV per site.
    let data = swarm::synth::vector_dataset(&["a", "b", "c"], 30, 12, 21);
    let mut jobs = Vec::new();
    for (site, samples) in by_site(data) {
        let path = dir.join(format!("{site}.csv"));
        let mut csv = String::from("subject,label");
        (0..12).for_each(|i| csv.push_str(&format!(",f{i}")));
        for s in &samples {
            csv.push_str(&format!("\n{},{}", s.subject, s.label));
            s.values.iter().for_each(|v| csv.push_str(&format!(",{v}")));
        }
        std::fs::write(&path, csv).unwrap();
        let out = env
            .cli(&[
                "publish",
                "--project",
                "csv",
                "--site",
                &site,
                path.to_str().unwrap(),
            ])
            .await;
        jobs.push(
            out.trim()
                .parse::<Uuid>()
                .expect("publish prints the job id"),
        );
    }
    for job in &jobs {
        env.wait_features("features", &job.to_string(), 30).await;
    }
    let out = env
        .cli(&[
            "train",
            "--project",
            "csv",
            "--model",
            "logistic",
            "--cv",
            "5",
            "--seed",
            "1",
            "--wait",
            "--timeout",
            "120",
        ])
        .await;
    let mut lines = out.lines();
    let run: Uuid = lines
        .next()
        .unwrap()
        .parse()
        .expect("train prints the run id");
    let accuracy: f64 = lines
        .next()
        .and_then(|l| l.strip_prefix("accuracy "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("train --wait prints the accuracy: {out}"));
    assert!(accuracy > 0.7, "accuracy {accuracy}");
    let json = env
        .cli(&["report", "show", &run.to_string(), "--format", "json"])
        .await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("the JSON report parses");
    assert_eq!(json["project"], "csv");
    let listed = env.cli(&["report", "list", "--project", "csv"]).await;
    assert!(listed.contains(&run.to_string()), "{listed}");
    let status = env.cli(&["status", &run.to_string()]).await;
    assert!(
        status.contains("finished") && status.contains("accuracy"),
        "{status}"
    );
    let status = env.cli(&["status", &jobs[0].to_string()]).await;
    assert!(status.contains("featurised: 30 samples"), "{status}");

    // Time series, one .1D file per subject, labels from a CSV.
    let series = swarm::synth::timeseries_dataset(&["a"], 4, 30, 5, 2);
    let subjects: Vec<(String, String, String)> = series
        .iter()
        .map(|(_, s)| {
            let t = s.timepoints.unwrap() as usize;
            let rows: Vec<String> = s
                .values
                .chunks(s.values.len() / t)
                .map(|row| {
                    row.iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            (s.subject.clone(), s.label.clone(), rows.join("\n"))
        })
        .collect();
    let job = publish_labelled(&env, &dir, "ts", "a", "1D", &subjects).await;
    env.wait_count("connectivity", "SELECT count(*) FROM features WHERE job_id = $1 AND extractor = 'connectivity' AND length(\"values\") = 40", &[&job], 4)
        .await;
    // Named regions: the report calls connectivity features by region pair.
    let named = env
        .cli(&["regions", "--project", "ts", "Hip,Amy,Ins,Cau,Put"])
        .await;
    assert!(named.contains("Named the 5 regions"), "{named}");
    let names = env.top_features_after_training("ts").await;
    assert!(!names.is_empty(), "the report has top features");
    assert!(
        names.iter().all(|n| n.contains(" × ")),
        "features named by region pair: {names:?}"
    );

    std::fs::remove_dir_all(&dir).unwrap();
    env.finish(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neurolearn_tables_covariates_and_text_documents_are_published_as_is() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let dir = std::env::temp_dir().join(format!("swarm-nl-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();

    // A NEURO-LEARN export: ID, LABEL_* columns, then features; LABEL_SCORE as the target.
    let mut csv = String::from("ID,LABEL_GROUP,LABEL_SCORE,LABEL_AGE,ALFF_1,ALFF_2,ReHo_1");
    for i in 0..6 {
        csv.push_str(&format!(
            "\nsub{i},{},{}.5,{},0.{i},1.{i},2.{i}",
            if i % 2 == 0 { "HC" } else { "PT" },
            10 + i,
            30 + i
        ));
    }
    let table = dir.join("neurolearn.csv");
    std::fs::write(&table, csv).unwrap();
    let job = env
        .cli(&[
            "publish",
            "--project",
            "nl",
            "--site",
            "lab",
            "--label",
            "LABEL_SCORE",
            "--covariates",
            "age",
            table.to_str().unwrap(),
        ])
        .await
        .trim()
        .to_string();
    env.wait_features("features", &job, 6).await;
    let client = env.pool.get().await.unwrap();
    let row = client
        .query_one(
            r#"SELECT label, (covariates->>'age')::float8, length("values") / 4 FROM samples WHERE subject = 'sub3'"#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "13.5", "LABEL_SCORE is the label");
    assert_eq!(
        row.get::<_, Option<f64>>(1),
        Some(33.0),
        "LABEL_AGE is the covariate `age`"
    );
    assert_eq!(row.get::<_, i32>(2), 3, "the three feature columns");

    // Covariate columns of a plain table; text documents.
    let plain = dir.join("plain.csv");
    std::fs::write(&plain, "subject,label,age,f1,f2\na,x,40,1,2\nb,y,50,3,4").unwrap();
    let job = env
        .cli(&[
            "publish",
            "--project",
            "plain",
            "--site",
            "lab",
            "--covariates",
            "age",
            plain.to_str().unwrap(),
        ])
        .await
        .trim()
        .to_string();
    env.wait_features("plain features", &job, 2).await;
    let (age, width): (f64, i32) = {
        let r = client
            .query_one(r#"SELECT (covariates->>'age')::float8, length("values") / 4 FROM samples WHERE project = 'plain' AND subject = 'b'"#, &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((age, width), (50.0, 2));

    let notes = [
        "the patient reports poor sleep",
        "the control sleeps well",
        "poor sleep and poor appetite",
    ];
    let subjects: Vec<(String, String, String)> = notes
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let label = if i == 1 { "control" } else { "patient" };
            (format!("note{i}"), label.to_string(), doc.to_string())
        })
        .collect();
    let job = publish_labelled(&env, &dir, "notes", "clinic", "txt", &subjects).await;
    env.wait_count(
        "text features",
        "SELECT count(*) FROM features WHERE job_id = $1 AND extractor = 'text'",
        &[&job],
        3,
    )
    .await;
    let stored: Vec<f32> = client
        .query_one(r#"SELECT f."values" FROM features f JOIN samples s ON s.id = f.sample_id WHERE s.subject = 'note0'"#, &[])
        .await
        .unwrap()
        .get::<_, FloatVec>(0)
        .0;
    assert_eq!(
        stored,
        swarm_features::text::extract("the patient reports poor sleep")
    );
    drop(client);
    std::fs::remove_dir_all(&dir).unwrap();
    env.finish(workers).await;
}
