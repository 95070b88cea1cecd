//! Data through every worker to a report: three sites of vectors, and time series turned into
//! connectivity.

use std::collections::BTreeMap;

use broker_schemas::{CrossValidation, IngestV1, TrainV1};

use swarm_runtime::floats::FloatVec;
use uuid::Uuid;

use crate::by_site;
use crate::helpers::{self, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sites_flow_through_all_workers_to_a_report() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let job = Uuid::now_v7().to_string();
    let data = swarm::synth::vector_dataset(&["north", "south", "east"], 40, 16, 11);
    let mut message_ids = BTreeMap::new();
    for (site, samples) in by_site(data) {
        let message = IngestV1 {
            project: "p".into(),
            site: site.clone(),
            samples,
        };
        message_ids.insert(site, env.send(&message, &job).await);
    }
    env.wait_features("features", &job, 120).await;

    // Lineage: every sample names the message of its site, every row the job.
    for (site, id) in &message_ids {
        let n: i64 = env
            .scalar(
                "SELECT count(*) FROM samples WHERE site = $1 AND message_id = $2 AND job_id = $3",
                &[site, id, &job],
            )
            .await;
        assert_eq!(n, 40, "samples of {site} name message {id}");
    }
    // Each features row names a features.v1 message the features worker processed, and shares
    // the trace of the ingest message it came from.
    let features_queue = env.topology.queue("features");
    let orphans: i64 = env
        .scalar(
            "SELECT count(*) FROM features f WHERE NOT EXISTS
               (SELECT 1 FROM processed_messages p WHERE p.queue = $1 AND p.message_id = f.message_id)",
            &[&features_queue],
        )
        .await;
    assert_eq!(
        orphans, 0,
        "every features row names the message that produced it"
    );
    let traced: i64 = env
        .scalar(
            "SELECT count(*) FROM features f JOIN samples s ON s.id = f.sample_id
             WHERE f.trace_id IS NOT NULL AND f.trace_id = s.trace_id",
            &[],
        )
        .await;
    assert_eq!(
        traced, 120,
        "ingest and features of one batch are one trace"
    );
    let traces: i64 = env
        .scalar("SELECT count(DISTINCT trace_id) FROM samples", &[])
        .await;
    assert_eq!(traces, 3, "one trace per published batch");

    let run_id = Uuid::now_v7();
    let train = TrainV1 {
        run_id,
        project: "p".into(),
        model: "logistic".into(),
        params: BTreeMap::new(),
        cv: CrossValidation { folds: 5, seed: 3 },
        sites: vec![],
    };
    let train_message = env.send(&train, &run_id.to_string()).await;
    let result = swarm::commands::train::wait_for_report(&env.pool, run_id, helpers::PATIENCE)
        .await
        .expect("the run gets a report");
    assert!(
        result.accuracy > 0.7,
        "accuracy {} is clearly above chance (0.5)",
        result.accuracy
    );
    assert!(result.summary.contains("logistic"), "{}", result.summary);

    let run_message: String = env
        .scalar("SELECT message_id FROM runs WHERE id = $1", &[&run_id])
        .await;
    assert_eq!(
        run_message, train_message,
        "the run names its train.v1 message"
    );
    let folds: i64 = env
        .scalar("SELECT count(*) FROM folds WHERE run_id = $1", &[&run_id])
        .await;
    assert_eq!(folds, 5);
    let tested: i64 = env
        .scalar(
            "SELECT sum(n_test)::int8 FROM folds WHERE run_id = $1",
            &[&run_id],
        )
        .await;
    assert_eq!(tested, 120, "every sample is tested exactly once");
    let model_bytes: i32 = env
        .scalar(
            "SELECT length(model_blob) FROM runs WHERE id = $1",
            &[&run_id],
        )
        .await;
    assert!(model_bytes > 0, "the final model is stored");
    let report_queue = env.topology.queue("report");
    let report_ok: i64 = env
        .scalar(
            "SELECT count(*) FROM reports p JOIN runs r ON r.id = p.run_id
             JOIN processed_messages m ON m.queue = $2 AND m.message_id = p.message_id
             WHERE p.run_id = $1 AND p.trace_id = r.trace_id AND p.job_id = $3
               AND length(p.html) > 0 AND length(p.markdown) > 0",
            &[&run_id, &report_queue, &run_id.to_string()],
        )
        .await;
    assert_eq!(
        report_ok, 1,
        "the report names its message and shares the run's trace"
    );

    // The analyst views expose the same numbers.
    let summary_accuracy: f64 = env
        .scalar(
            "SELECT accuracy FROM report_summary WHERE run_id = $1",
            &[&run_id],
        )
        .await;
    assert!((summary_accuracy - result.accuracy).abs() < 1e-12);
    let fold_metrics: i64 = env
        .scalar("SELECT count(*) FROM run_metrics WHERE run_id = $1 AND fold IS NOT NULL AND metric IN ('accuracy', 'balanced_accuracy')", &[&run_id])
        .await;
    assert_eq!(fold_metrics, 10, "two metrics for each of five folds");
    env.wait_count("outbox drained", "SELECT count(*) FROM outbox", &[], 0)
        .await;
    let dead: i64 = env.scalar("SELECT count(*) FROM dead_letters", &[]).await;
    assert_eq!(dead, 0);
    env.finish(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_series_become_fisher_z_connectivity() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let job = Uuid::now_v7().to_string();
    let data = swarm::synth::timeseries_dataset(&["x", "y"], 6, 40, 6, 5);
    let expected: BTreeMap<String, Vec<f32>> = data
        .iter()
        .map(|(site, s)| {
            let t = s.timepoints.unwrap() as usize;
            (
                format!("{site}/{}", s.subject),
                swarm_features::connectivity::fisher_z(&s.values, t),
            )
        })
        .collect();
    for (site, samples) in by_site(data) {
        env.send(
            &IngestV1 {
                project: "ts".into(),
                site,
                samples,
            },
            &job,
        )
        .await;
    }
    env.wait_features("features", &job, 12).await;
    let client = env.pool.get().await.unwrap();
    let rows = client
        .query(
            r#"SELECT s.site || '/' || s.subject, f.extractor, f."values" FROM features f JOIN samples s ON s.id = f.sample_id"#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 12);
    for row in rows {
        let key: String = row.get(0);
        let extractor: String = row.get(1);
        let values: Vec<f32> = row.get::<_, FloatVec>(2).0;
        assert_eq!(extractor, "connectivity");
        assert_eq!(values.len(), 15, "6 regions give 15 pairs");
        assert_eq!(&values, &expected[&key], "{key}");
    }
    drop(client);
    env.finish(workers).await;
}
