//! The deployment as a whole: the four workers, each as its own broker user (definitions.json,
//! in a vhost of the test's own) and its own database role (roles.sql), with `MIGRATE=false`
//! and `DECLARE_TOPOLOGY=false`; the site user publishes a data set and a training job; the
//! report arrives. Ingest and features commit in batches (`BATCH_SIZE`), and no batch may split
//! into messages: a split batch still gets its work done, one message at a time, so only the
//! metric shows a statement the batch path needs and a role may not run. (The per-message path
//! under each role is `database.rs`'.)

use std::collections::BTreeMap;

use broker_schemas::IngestV1;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use swarm_runtime::Settings;
use uuid::Uuid;

use crate::broker::Applied;
use crate::helpers::{train_request, TestDb, PATIENCE};

async fn publish_as_site<M: broker_schemas::Message>(
    site: &lapin::Connection,
    message: &M,
    job: &str,
) {
    let channel = site.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            "swarm".into(),
            M::TYPE.into(),
            BasicPublishOptions::default(),
            &broker_schemas::encode(message),
            BasicProperties::default()
                .with_type(M::TYPE.into())
                .with_message_id(Uuid::now_v7().to_string().into())
                .with_correlation_id(job.into())
                .with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(!confirm.is_nack());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_run_a_job_with_least_privilege() {
    let applied = Applied::new();
    let db = TestDb::new().await;
    db.psql_file(&crate::helpers::root().join("deploy/postgres/roles.sql"));
    let settings_for = |worker: &str| {
        let mut settings = Settings::local();
        settings.amqp_url = applied.url(&format!("swarm-{worker}"));
        settings.database_url = db.url(Some(&format!("swarm_{worker}")));
        settings.namespace = "swarm".into();
        settings.migrate = false;
        settings.declare_topology = false;
        settings.db_pool_size = 2;
        settings.shutdown_timeout_secs = 10;
        if matches!(worker, "ingest" | "features") {
            settings.batch_size = 8;
        }
        settings
    };
    let workers = vec![
        swarm_runtime::spawn(swarm_ingest::IngestHandler, settings_for("ingest")),
        swarm_runtime::spawn(swarm_features::FeaturesHandler, settings_for("features")),
        swarm_runtime::spawn(swarm_train::TrainHandler::default(), settings_for("train")),
        swarm_runtime::spawn(
            swarm_report::ReportHandler::default(),
            settings_for("report"),
        ),
    ];

    let site = applied.connect("swarm-site").await;
    let job = Uuid::now_v7().to_string();
    let mut sites: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (name, sample) in swarm::synth::vector_dataset(&["north", "south"], 20, 8, 5) {
        sites.entry(name).or_default().push(sample);
    }
    for (name, samples) in sites {
        let batch = IngestV1 {
            project: "p".into(),
            site: name,
            samples,
        };
        publish_as_site(&site, &batch, &job).await;
    }
    let owner = db.owner.get().await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let n: i64 = owner
            .query_one("SELECT count(*) FROM features", &[])
            .await
            .unwrap()
            .get(0);
        if n == 40 {
            break;
        }
        for w in &workers {
            assert!(
                !w.is_finished(),
                "a worker stopped (see its log with TEST_LOG=1)"
            );
        }
        assert!(std::time::Instant::now() < deadline, "{n} of 40 features");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let run_id = Uuid::now_v7();
    let request = train_request(run_id, "p");
    publish_as_site(&site, &request, &run_id.to_string()).await;
    swarm::commands::train::wait_for_report(&db.owner, run_id, PATIENCE)
        .await
        .expect("the report worker stores the report");
    let dead: i64 = owner
        .query_one("SELECT count(*) FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 0, "nothing was refused on the way");
    for worker in ["ingest", "features"] {
        let batches = |outcome: &str| {
            crate::helpers::counter(&format!(
                "swarm_batches_total{{queue=\"swarm.{worker}\",outcome=\"{outcome}\"}}"
            ))
        };
        assert!(batches("committed") > 0, "{worker} committed no batch");
        assert_eq!(
            batches("split"),
            0,
            "{worker}'s batches split into messages: a statement of the batch path is refused \
             to its role (see the log with TEST_LOG=1)"
        );
    }
    drop(owner);
    for w in workers {
        w.stop().await.expect("a worker stops cleanly");
    }
    let _ = site.close(200, "done".into()).await;
}
