//! The CLI refuses what it can know is wrong before it publishes anything, naming the flag.

use uuid::Uuid;

use crate::helpers::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_mistakes_before_publishing_and_names_the_flag() {
    let env = TestEnv::new().await;
    let mut settings = env.settings.clone();
    settings.http_addr = None;
    // No train worker: whatever `swarm train` published would wait in its queue.
    let workers = vec![
        swarm_runtime::spawn(swarm_ingest::IngestHandler, settings.clone()),
        swarm_runtime::spawn(swarm_features::FeaturesHandler, settings),
    ];
    let dir = std::env::temp_dir().join(format!("swarm-checks-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, content: &str| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    };
    // Two sites of a vector project with 3 features, 4 subjects per class; one of one class.
    let mut lab_a = String::from("subject,label,f1,f2,f3");
    let mut lab_b = lab_a.clone();
    for i in 0..8 {
        let label = if i % 2 == 0 { "control" } else { "patient" };
        lab_a.push_str(&format!("\na{i},{label},{i},1,2"));
        lab_b.push_str(&format!("\nb{i},{label},1,{i},0"));
    }
    let lab_a = write("a.csv", &lab_a);
    let lab_b = write("b.csv", &lab_b);
    let one_class = write(
        "one.csv",
        "subject,label,f1\nx1,control,1\nx2,control,2\nx3,control,3",
    );
    for (project, site, path) in [
        ("p", "lab-a", &lab_a),
        ("p", "lab-b", &lab_b),
        ("one", "lab-a", &one_class),
    ] {
        env.cli(&[
            "publish",
            "--project",
            project,
            "--site",
            site,
            "--wait",
            "--timeout",
            "120",
            path,
        ])
        .await;
    }

    let long = "p".repeat(65);
    let series = write("sub-1.csv", "1,2\n3,4\n5,6\n7,8\n");
    let labels = write("labels.csv", "subject,label\nsub-1,control\n");
    let note = write("note.txt", "the patient sleeps poorly");
    let refusals: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["publish", "--project", "q", "--site", "s", &note],
            "note.txt: text documents need a labels file: --labels FILE",
        ),
        (vec!["publish", "--project", "", "--site", "s", &lab_a], "--project: the name is empty"),
        (vec!["publish", "--project", "  ", "--site", "s", &lab_a], "--project: the name is empty"),
        (vec!["publish", "--project", &long, "--site", "s", &lab_a], "--project: the name is 65 characters long"),
        (vec!["publish", "--project", "q", "--site", "", &lab_a], "--site: the name is empty"),
        (vec!["publish", "--project", "q", "--site", "s", "--batch-size", "0", &lab_a], "--batch-size"),
        (
            vec!["publish", "--project", "p", "--site", "lab-c", "--labels", &labels, &series],
            "--project p: the project holds feature vectors of 3 features, but these files are time series of 2 regions",
        ),
        (vec!["train", "--project", "doesnotexist"], "--project doesnotexist: no such project; the projects are one, p"),
        (vec!["train", "--project", "p", "--sites", "nosuchsite"], "--sites nosuchsite: project \"p\" has no site \"nosuchsite\"; its sites are lab-a, lab-b"),
        (
            vec!["train", "--project", "p", "--scheme", "held-out-sites", "--test-sites", "lab-z"],
            "--test-sites lab-z: no featurised samples of site \"lab-z\"",
        ),
        (vec!["train", "--project", "one"], "--model logistic: every sample of project \"one\" has the label \"control\"; a classifier needs at least two classes"),
        (vec!["train", "--project", "p", "--cv", "10"], "--cv 10: class \"control\" has 8 sample(s), fewer than the 10 folds"),
        (vec!["train", "--project", "p", "--cv", "1"], "--cv must be between"),
        (vec!["train", "--project", "p", "--pca", "50"], "--pca 50: project \"p\" has 3 features"),
        (vec!["train", "--project", "p", "--model", "ridge"], "--model ridge is a regression model, but the label \"control\" is not a number"),
    ];
    for (args, expected) in refusals {
        let stderr = env.cli_fails(&args).await;
        assert!(
            stderr.contains(expected),
            "swarm {args:?}: expected {expected:?} in {stderr}"
        );
    }
    // Nothing was published: the train queue is empty and the project q was never created.
    assert_eq!(env.queue_depth("train").await, 0);
    let projects: i64 = env.scalar("SELECT count(*) FROM projects", &[]).await;
    assert_eq!(projects, 2);
    // The same request with a site that exists is published.
    env.cli(&[
        "train",
        "--project",
        "p",
        "--scheme",
        "held-out-sites",
        "--test-sites",
        "lab-b",
    ])
    .await;
    assert_eq!(env.queue_depth("train").await, 1);

    std::fs::remove_dir_all(&dir).unwrap();
    env.finish(workers).await;
}
