//! `swarm publish --wait` and `swarm status`: what the workers refused, named, with the reason.

use uuid::Uuid;

use crate::helpers::{TestEnv, WorkerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_wait_names_the_refused_rows_and_exits_non_zero() {
    let env = TestEnv::new().await;
    // The ingest worker's subject limit is tighter than the CLI's: only the worker can refuse.
    let ingest = WorkerProcess::start(&env, "ingest", &[("MAX_SUBJECT_LEN", "6".into())]);
    let mut settings = env.settings.clone();
    settings.http_addr = None;
    let features = swarm_runtime::spawn(swarm_features::FeaturesHandler, settings);
    let dir = std::env::temp_dir().join(format!("swarm-status-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("lab.csv");
    std::fs::write(
        &table,
        "subject,label,f1,f2\ns1,a,1,2\ns2,b,2,1\nsubject-3,a,1,1\ns4,b,0,1\n",
    )
    .unwrap();
    let publish = |path: &std::path::Path| {
        [
            "publish",
            "--project",
            "p",
            "--site",
            "lab",
            "--batch-size",
            "2",
            "--wait",
            "--timeout",
            "120",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([path.to_str().unwrap().to_owned()])
        .collect::<Vec<_>>()
    };
    let args = publish(&table);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = env.cli_output(&[], &args).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "publish --wait fails: {stderr}");
    // The second batch (subject-3, s4) was refused as a whole, and said so.
    assert!(
        stderr.contains("2 samples (subject-3, s4)")
            && stderr.contains("MAX_SUBJECT_LEN")
            && stderr.contains("2 samples of 4 refused"),
        "{stderr}"
    );
    let job: Uuid = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("publish prints the job id before waiting");

    let status = env.cli(&["status", &job.to_string()]).await;
    for expected in [
        "project \"p\", site \"lab\"",
        "published:  4 samples in 2 messages",
        "ingested:   2 samples",
        "featurised: 2 samples",
        "refused:    2 samples",
        "subject-3, s4",
        "MAX_SUBJECT_LEN",
    ] {
        assert!(status.contains(expected), "{expected:?} in {status}");
    }

    // Rows the workers take: the wait ends with success once they are featurised.
    let good = dir.join("good.csv");
    std::fs::write(&good, "subject,label,f1,f2\ns5,a,1,2\ns6,b,2,1\ns7,b,2,2\n").unwrap();
    let args = publish(&good);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = env.cli_output(&[], &args).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("Ingested and featurised 3 samples."),
        "{stderr}"
    );
    let job = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    env.wait_features("the good job's features", &job, 3).await;

    std::fs::remove_dir_all(&dir).unwrap();
    ingest.terminate().await;
    env.finish(vec![features]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_list_into_a_closed_pipe_exits_0_and_dead_show_gives_the_whole_reason() {
    let env = TestEnv::new().await;
    // Enough rows that the listing outlives `head` (more than a pipe's 64 KiB buffer).
    let reason = format!("subject \"s1\" is refused: {}", "a long reason ".repeat(20));
    let client = env.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO dead_letters (queue, message_id, message_type, reason, body)
             SELECT 'q', 'm' || i, 'ingest.v1', $1, '\\x00' FROM generate_series(1, 2000) i",
            &[&reason],
        )
        .await
        .unwrap();
    let output = tokio::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; {} dead list --limit 2000 | head -1",
                env!("CARGO_BIN_EXE_swarm")
            ),
        ])
        .env("DATABASE_URL", &env.settings.database_url)
        .env("SWARM_NAMESPACE", &env.settings.namespace)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("    id"));

    let listed = env.cli(&["dead", "list", "--limit", "1"]).await;
    assert!(listed.contains("… (swarm dead show ID)"), "{listed}");
    let id: i64 = env.scalar("SELECT min(id) FROM dead_letters", &[]).await;
    let shown = env.cli(&["dead", "show", &id.to_string()]).await;
    assert!(shown.contains(reason.trim_end()), "{shown}");
    drop(client);
    env.finish(Vec::new()).await;
}
