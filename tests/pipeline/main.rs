//! The whole pipeline against the real RabbitMQ and Postgres: each test has its own namespace and
//! database, and runs the workers in-process.

mod checks;
mod helpers;
mod names;
mod reproducibility;
mod status;
mod text;
mod upsert;

use std::collections::BTreeMap;
use std::time::Duration;

use broker_schemas::{CrossValidation, FeaturesV1, IngestV1, Message, Sample, SampleKind, TrainV1};
use helpers::{eventually, TestEnv};
use swarm_runtime::floats::FloatVec;
use uuid::Uuid;

fn vector(subject: &str, label: &str, values: Vec<f32>) -> Sample {
    Sample {
        subject: subject.into(),
        label: label.into(),
        kind: SampleKind::Vector,
        values,
        timepoints: None,
        covariates: Default::default(),
        text: None,
    }
}

fn by_site(data: Vec<(String, Sample)>) -> BTreeMap<String, Vec<Sample>> {
    let mut sites: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for (site, sample) in data {
        sites.entry(site).or_default().push(sample);
    }
    sites
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_changes_nothing() {
    let mut env = TestEnv::new().await;
    // One message at a time, so the sentinel below is handled after the duplicate.
    env.settings.concurrency = 1;
    env.settings.prefetch = 1;
    let workers = env.spawn_all();
    let samples = (0..5)
        .map(|i| vector(&format!("s{i}"), "a", vec![i as f32, 1.0]))
        .collect();
    let first = IngestV1 {
        project: "p".into(),
        site: "s".into(),
        samples,
    };
    let id = Uuid::now_v7().to_string();
    env.publish_ingest(&id, &first).await;
    env.wait_count("features", "SELECT count(*) FROM features", &[], 5)
        .await;
    let before: String = env
        .scalar("SELECT string_agg(subject || label || updated_at::text, ',' ORDER BY subject) FROM samples", &[])
        .await;

    // The same message id again, even with other content, is a redelivery: skipped.
    let mut again = first.clone();
    again
        .samples
        .iter_mut()
        .for_each(|s| s.label = "changed".into());
    env.publish_ingest(&id, &again).await;
    let sentinel = IngestV1 {
        project: "q".into(),
        site: "s".into(),
        samples: vec![vector("z", "a", vec![1.0])],
    };
    env.publish_ingest(&Uuid::now_v7().to_string(), &sentinel)
        .await;
    env.wait_count("sentinel", "SELECT count(*) FROM features f JOIN samples s ON s.id = f.sample_id WHERE s.project = 'q'", &[], 1)
        .await;

    let after: String = env
        .scalar("SELECT string_agg(subject || label || updated_at::text, ',' ORDER BY subject) FROM samples WHERE project = 'p'", &[])
        .await;
    assert_eq!(before, after, "the duplicate changed samples");
    let features: i64 = env.scalar("SELECT count(*) FROM features", &[]).await;
    assert_eq!(features, 6);
    let processed: i64 = env.processed("ingest").await;
    assert_eq!(processed, 2, "two distinct ingest messages were processed");
    let features_messages: i64 = env
        .scalar("SELECT count(DISTINCT message_id) FROM features", &[])
        .await;
    assert_eq!(features_messages, 2, "the duplicate emitted no features.v1");
    env.finish(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_twice_in_one_batch_is_handled_once() {
    let mut env = TestEnv::new().await;
    env.settings.batch_size = 10;
    env.settings.batch_wait_ms = 500;
    env.settings.batch_idle_ms = 500;
    // All three wait in the queue before the workers start, so they arrive as one batch.
    let message = |project: &str, label: &str| IngestV1 {
        project: project.into(),
        site: "s".into(),
        samples: (0..3)
            .map(|i| vector(&format!("s{i}"), label, vec![i as f32, 1.0]))
            .collect(),
    };
    let id = Uuid::now_v7().to_string();
    for (id, body) in [
        (id.clone(), message("p", "a")),
        (id.clone(), message("p", "changed")),
        (Uuid::now_v7().to_string(), message("q", "a")),
    ] {
        env.publish_ingest(&id, &body).await;
    }
    let workers = env.spawn_all();
    env.wait_count("features", "SELECT count(*) FROM features", &[], 6)
        .await;
    let labels: String = env
        .scalar("SELECT string_agg(DISTINCT label, ',') FROM samples", &[])
        .await;
    assert_eq!(labels, "a", "the second copy of the message was handled");
    let processed: i64 = env.processed("ingest").await;
    assert_eq!(processed, 2);
    let features_messages: i64 = env
        .scalar("SELECT count(DISTINCT message_id) FROM features", &[])
        .await;
    assert_eq!(features_messages, 2, "the copy emitted a features.v1");
    env.finish(workers).await;
}

/// An `ingest.v1` of one small vector sample of project `p`.
fn one_sample(subject: &str) -> IngestV1 {
    IngestV1 {
        project: "p".into(),
        site: "s".into(),
        samples: vec![vector(subject, "x", vec![1.0, 2.0])],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_is_committed_once_the_queue_is_idle_not_after_the_batch_wait() {
    let mut env = TestEnv::new().await;
    env.settings.batch_size = 100;
    // Far past the test's patience: only the idle rule (BATCH_IDLE_MS, 2 ms) can close the batch.
    env.settings.batch_wait_ms = 3_600_000;
    for subject in ["a", "b", "c"] {
        env.publish_ingest(&Uuid::now_v7().to_string(), &one_sample(subject))
            .await;
    }
    let worker = swarm_runtime::spawn(swarm_ingest::IngestHandler, env.settings.clone());
    env.wait_count("samples", "SELECT count(*) FROM samples", &[], 3)
        .await;
    env.finish(vec![worker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_handle_tells_when_its_worker_consumes_or_failed_to_start() {
    let env = TestEnv::new().await;
    let worker = swarm_runtime::spawn(swarm_ingest::IngestHandler, env.settings.clone());
    let consuming = tokio::time::timeout(helpers::PATIENCE, worker.consuming()).await;
    assert_eq!(consuming.ok(), Some(true), "the worker consumes in time");
    // At that moment the broker already counts its consumer.
    let channel = env.connection.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = env.topology.queue("ingest");
    let declared = channel
        .queue_declare(queue.as_str().into(), passive, Default::default())
        .await
        .unwrap();
    assert_eq!(
        declared.consumer_count(),
        1,
        "{queue} has the worker's consumer"
    );
    // A worker whose database does not answer never consumes: it exits with the error.
    let mut unreachable = env.settings.clone();
    unreachable.database_url = format!("postgres://root@127.0.0.1:{}/x", helpers::free_port());
    let failed = swarm_runtime::spawn(swarm_ingest::IngestHandler, unreachable);
    let consuming = tokio::time::timeout(helpers::PATIENCE, failed.consuming()).await;
    assert_eq!(consuming.ok(), Some(false), "the failed start is reported");
    assert!(
        failed.stop().await.is_err(),
        "stop returns the start-up error"
    );
    env.finish(vec![worker]).await;
}

/// An ingest handler that will not go on until a second message is being handled beside it.
#[derive(Debug, Clone, Copy)]
struct Rendezvous;

impl swarm_runtime::Handler for Rendezvous {
    type Message = IngestV1;
    const NAME: &'static str = "ingest";

    async fn handle(
        &self,
        work: &mut swarm_runtime::Work<'_>,
        message: IngestV1,
    ) -> Result<(), swarm_runtime::HandleError> {
        static MEET: std::sync::LazyLock<tokio::sync::Barrier> =
            std::sync::LazyLock::new(|| tokio::sync::Barrier::new(2));
        if tokio::time::timeout(Duration::from_secs(5), MEET.wait())
            .await
            .is_err()
        {
            return Err(swarm_runtime::HandleError::permanent(
                "no other message was handled beside this one",
            ));
        }
        swarm_ingest::IngestHandler.handle(work, message).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batchs_messages_are_handled_side_by_side() {
    let mut env = TestEnv::new().await;
    env.settings.batch_size = 10;
    env.settings.batch_wait_ms = 500;
    env.settings.batch_idle_ms = 500;
    // Both wait in the queue before the worker starts, so they arrive as one batch.
    for subject in ["a", "b"] {
        env.publish_ingest(&Uuid::now_v7().to_string(), &one_sample(subject))
            .await;
    }
    let worker = swarm_runtime::spawn(Rendezvous, env.settings.clone());
    env.wait_count("samples", "SELECT count(*) FROM samples", &[], 2)
        .await;
    let dead: i64 = env.scalar("SELECT count(*) FROM dead_letters", &[]).await;
    assert_eq!(dead, 0, "a message waited alone and was dead-lettered");
    env.finish(vec![worker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_no_queue_is_bound_for_is_an_error_not_a_silent_loss() {
    let env = TestEnv::new().await;
    let out = swarm_runtime::amqp::Outgoing {
        exchange: env.topology.exchange(),
        routing_key: "nobody.v1".into(),
        message_type: "nobody.v1".into(),
        message_id: Uuid::now_v7().to_string(),
        correlation_id: None,
        headers: Default::default(),
        body: b"{}".to_vec(),
    };
    let error = env
        .publisher
        .publish(&out)
        .await
        .expect_err("an unroutable publish fails");
    assert!(
        format!("{error:#}").contains("not routed"),
        "the error says why: {error:#}"
    );
    // A routed one still goes through on the same channel.
    env.publish_ingest(
        &Uuid::now_v7().to_string(),
        &IngestV1 {
            project: "p".into(),
            site: "s".into(),
            samples: vec![vector("a", "x", vec![1.0])],
        },
    )
    .await;
    env.finish(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_lettered_with_a_reason_and_the_worker_keeps_serving() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let ok = |subject: &str, dims: usize| IngestV1 {
        project: "p".into(),
        site: "s".into(),
        samples: vec![vector(subject, "a", vec![0.5; dims])],
    };
    // Fix the project's dimension at 4.
    env.send(&ok("first", 4), "job").await;
    env.wait_count("first sample", "SELECT count(*) FROM samples", &[], 1)
        .await;

    let t = IngestV1::TYPE;
    let mut nan = ok("nan", 4);
    nan.samples[0].values[2] = f32::NAN;
    let oversized = IngestV1 {
        project: "p".into(),
        site: "s".into(),
        samples: (0..=broker_schemas::limits::MAX_SAMPLES_PER_BATCH)
            .map(|i| vector(&i.to_string(), "a", vec![1.0; 4]))
            .collect(),
    };
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "malformed",
            t,
            b"\xc1 not msgpack".to_vec(),
            "cannot decode",
        ),
        (
            "unknown-type",
            "ingest.v9",
            broker_schemas::encode(&ok("u", 4)),
            "unknown message type",
        ),
        ("nan", t, broker_schemas::encode(&nan), "non-finite"),
        (
            "wrong-dimension",
            t,
            broker_schemas::encode(&ok("w", 3)),
            "dimension",
        ),
        (
            "oversized-batch",
            t,
            broker_schemas::encode(&oversized),
            "limit",
        ),
        (
            "missing-field",
            t,
            rmp_serde::to_vec_named(&serde_json::json!({"project": "p", "site": "s"})).unwrap(),
            "samples",
        ),
    ];
    for (id, message_type, body, _) in &cases {
        env.publish_raw(t, message_type, id, body.clone()).await;
    }
    // The worker keeps serving after all of them.
    env.send(&ok("last", 4), "job").await;
    env.wait_count(
        "the last good sample",
        "SELECT count(*) FROM samples WHERE subject = 'last'",
        &[],
        1,
    )
    .await;

    let dead = env.take_dead("ingest", cases.len()).await;
    let dead: BTreeMap<String, String> =
        dead.into_iter().map(|(reason, id)| (id, reason)).collect();
    let client = env.pool.get().await.unwrap();
    for (id, _, _, expected) in &cases {
        let reason = dead
            .get(*id)
            .unwrap_or_else(|| panic!("{id} is in the dead queue"));
        assert!(
            reason.contains(expected),
            "{id}: reason {reason:?} should mention {expected:?}"
        );
        let row = client
            .query_one(
                "SELECT reason, queue FROM dead_letters WHERE message_id = $1",
                &[id],
            )
            .await
            .unwrap();
        assert_eq!(
            &row.get::<_, String>(0),
            reason,
            "{id}: the row has the header's reason"
        );
        assert_eq!(row.get::<_, String>(1), env.topology.queue("ingest"));
    }
    let samples: i64 = env.scalar("SELECT count(*) FROM samples", &[]).await;
    assert_eq!(samples, 2, "no bad sample was stored");
    drop(client);
    env.finish(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_features_message_naming_another_projects_samples_is_dead_lettered() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let batch = |project: &str| IngestV1 {
        project: project.into(),
        site: "s".into(),
        samples: vec![vector("subject", "a", vec![0.5, 1.5])],
    };
    env.send(&batch("mine"), "job").await;
    env.send(&batch("theirs"), "job").await;
    env.wait_features("both samples' features", "job", 2).await;
    let theirs: i64 = env
        .scalar("SELECT id FROM samples WHERE project = 'theirs'", &[])
        .await;
    // The sample exists, but in another project: the message is refused as a whole.
    let reason = refused_features(&env, "mine", vec![theirs]).await;
    assert!(
        reason.contains("has no samples with ids") && reason.contains(&theirs.to_string()),
        "{reason:?}"
    );
    env.finish(workers).await;
}

/// The features of message `id`.
async fn features_of(env: &TestEnv, id: &str) -> i64 {
    env.scalar(
        "SELECT count(*) FROM features WHERE message_id = $1",
        &[&id],
    )
    .await
}

/// Sends a `features.v1` naming `sample_ids` of `project`, which must be dead-lettered having
/// written nothing; returns its reason.
async fn refused_features(env: &TestEnv, project: &str, sample_ids: Vec<i64>) -> String {
    let message = FeaturesV1 {
        project: project.into(),
        sample_ids,
    };
    let id = env.send(&message, "job").await;
    let dead = env.take_dead("features", 1).await;
    assert_eq!(dead[0].1, id);
    assert_eq!(
        features_of(env, &id).await,
        0,
        "the refused message wrote nothing"
    );
    dead[0].0.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_features_message_is_handled_a_chunk_of_samples_at_a_time_as_one_transaction() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    // More samples than two chunks: ingest's own features.v1 names them all.
    let n = 2 * swarm_features::CHUNK + 1;
    let expected = i64::try_from(n).unwrap();
    let batch = IngestV1 {
        project: "p".into(),
        site: "s".into(),
        samples: (0..n)
            .map(|i| vector(&format!("sub-{i}"), "a", vec![i as f32, 1.0]))
            .collect(),
    };
    env.send(&batch, "job").await;
    env.wait_features("every sample's features", "job", expected)
        .await;
    let wrong: i64 = env
        .scalar(
            "SELECT count(*) FROM features f JOIN samples s ON s.id = f.sample_id
             WHERE f.values <> s.values",
            &[],
        )
        .await;
    assert_eq!(wrong, 0, "each sample has its own features");
    // A sample named twice is extracted once, not refused.
    let first: i64 = env.scalar("SELECT min(id) FROM samples", &[]).await;
    let twice = env
        .send(
            &FeaturesV1 {
                project: "p".into(),
                sample_ids: vec![first, first],
            },
            "job",
        )
        .await;
    eventually("the features of a sample named twice", || async {
        features_of(&env, &twice).await == 1
    })
    .await;
    // A message whose last chunk names a sample the project lacks is refused as a whole: the
    // chunks before it, already upserted in its transaction, are rolled back with it.
    let client = env.pool.get().await.unwrap();
    let mut ids: Vec<i64> = client
        .query("SELECT id FROM samples ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    let missing = ids.iter().max().unwrap() + 1_000;
    ids.push(missing);
    let reason = refused_features(&env, "p", ids).await;
    assert!(
        reason.contains(&format!("has no samples with ids [{missing}]")),
        "{reason:?}"
    );
    env.finish(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_producer_following_broker_schemas_is_accepted() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let python = helpers::python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/publish_ingest.py"
    );
    let job = Uuid::now_v7().to_string();
    let output = tokio::process::Command::new(&python)
        .args([
            script,
            "--amqp-url",
            &env.settings.amqp_url,
            "--exchange",
            &env.topology.exchange(),
        ])
        .args([
            "--project",
            "py",
            "--site",
            "lab",
            "--n",
            "20",
            "--dims",
            "8",
            "--job-id",
            &job,
        ])
        .output()
        .await
        .expect("the Python producer runs");
    assert!(
        output.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let message_id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    env.wait_features("features of the Python batch", &job, 20)
        .await;
    let n: i64 = env
        .scalar(
            "SELECT count(*) FROM samples WHERE message_id = $1",
            &[&message_id],
        )
        .await;
    assert_eq!(n, 20, "the samples name the Python message {message_id}");
    eventually("no dead letters", || async {
        env.scalar::<i64>("SELECT count(*) FROM dead_letters", &[])
            .await
            == 0
    })
    .await;
    env.finish(workers).await;
}

#[allow(dead_code)]
fn _assert_message_types() -> [&'static str; 1] {
    [TrainV1::TYPE]
}

#[allow(dead_code)]
const _POLL: Duration = Duration::from_millis(50);

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
    let out = env
        .cli(&[
            "train",
            "--project",
            "ts",
            "--cv",
            "2",
            "--wait",
            "--timeout",
            "120",
        ])
        .await;
    let run = out
        .split_whitespace()
        .find_map(|w| w.parse::<Uuid>().ok())
        .expect("train prints the run id");
    let json = env
        .cli(&["report", "show", &run.to_string(), "--format", "json"])
        .await;
    let json: serde_json::Value = serde_json::from_str(&json).expect("the JSON report parses");
    let names: Vec<&str> = json["top_features"]
        .as_array()
        .expect("top features")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(!names.is_empty(), "{json}");
    assert!(
        names.iter().all(|n| n.contains(" × ")),
        "features named by region pair: {names:?}"
    );

    std::fs::remove_dir_all(&dir).unwrap();
    env.finish(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_readiness_follows_the_database() {
    let env = TestEnv::new().await;
    // The worker reaches Postgres through a proxy this test can cut.
    let proxy = helpers::Proxy::start("127.0.0.1:5432").await;
    let mut settings = env.settings.clone();
    settings.database_url = format!("postgres://root@127.0.0.1:{}/{}", proxy.port, env.db_name);
    let port = helpers::free_port();
    settings.http_addr = Some(format!("127.0.0.1:{port}").parse().unwrap());
    let worker = swarm_runtime::spawn(swarm_ingest::IngestHandler, settings);
    let base = format!("http://127.0.0.1:{port}");
    eventually("ready", || async {
        helpers::http_get(&format!("{base}/readyz")).await.0 == 200
    })
    .await;
    assert_eq!(helpers::http_get(&format!("{base}/healthz")).await.0, 200);

    let queue = format!("queue=\"{}\"", env.topology.queue("ingest"));
    let (_, before) = helpers::http_get(&format!("{base}/metrics")).await;
    let processed = |text: &str| helpers::metric(text, "swarm_messages_processed_total", &[&queue]);
    let observed =
        |text: &str| helpers::metric(text, "swarm_handle_duration_seconds_count", &[&queue]);
    for i in 0..3 {
        let batch = IngestV1 {
            project: "m".into(),
            site: "s".into(),
            samples: vec![vector(&format!("s{i}"), "a", vec![1.0])],
        };
        env.send(&batch, "job").await;
    }
    env.wait_count("samples", "SELECT count(*) FROM samples", &[], 3)
        .await;
    let deadline = std::time::Instant::now() + helpers::PATIENCE;
    let after = loop {
        let text = helpers::http_get(&format!("{base}/metrics")).await.1;
        if processed(&text) >= processed(&before) + 3.0 {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the counters did not move: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(processed(&after) - processed(&before), 3.0, "{after}");
    assert_eq!(
        observed(&after) - observed(&before),
        3.0,
        "the duration histogram counts each message"
    );
    assert!(after.contains("swarm_messages_in_flight"), "{after}");

    proxy.cut();
    eventually("unready without the database", || async {
        let (status, body) = helpers::http_get(&format!("{base}/readyz")).await;
        status == 503 && body.contains("database")
    })
    .await;
    proxy.restore().await;
    eventually("ready again", || async {
        helpers::http_get(&format!("{base}/readyz")).await.0 == 200
    })
    .await;
    env.finish(vec![worker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jaeger_uber_trace_id_joins_its_trace() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let headers = [(
        "uber-trace-id".to_string(),
        format!("{trace}:00f067aa0ba902b7:0:1"),
    )]
    .into();
    let batch = IngestV1 {
        project: "j".into(),
        site: "s".into(),
        samples: vec![vector("a", "x", vec![1.0, 2.0])],
    };
    env.publish_with_headers(
        IngestV1::TYPE,
        IngestV1::TYPE,
        &Uuid::now_v7().to_string(),
        broker_schemas::encode(&batch),
        headers,
    )
    .await;
    env.wait_count("features", "SELECT count(*) FROM features", &[], 1)
        .await;
    let (sample, feature): (String, String) = {
        let client = env.pool.get().await.unwrap();
        let row = client
            .query_one("SELECT s.trace_id, f.trace_id FROM samples s JOIN features f ON f.sample_id = s.id", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        sample, trace,
        "the ingest consumer continued the Jaeger trace"
    );
    assert_eq!(feature, trace, "and so did the features consumer");
    env.finish(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_once_the_cause_is_fixed() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    // Statistics of a project before its data arrived fail for good...
    let job_id = Uuid::now_v7();
    env.send(&anova(job_id, "late"), &job_id.to_string()).await;
    env.wait_count(
        "the dead letter",
        "SELECT count(*) FROM dead_letters",
        &[],
        1,
    )
    .await;
    let listed = env.cli(&["dead", "list"]).await;
    assert!(
        listed.contains(&env.topology.queue("train")) && listed.contains("stats.v1"),
        "{listed}"
    );
    let listed_ingest = env
        .cli(&["dead", "list", "--queue", &env.topology.queue("ingest")])
        .await;
    assert!(!listed_ingest.contains("stats.v1"), "{listed_ingest}");

    // ...until it does: then the replayed job produces its statistics.
    let data = swarm::synth::vector_dataset(&["a"], 30, 6, 3);
    let samples = data.into_iter().map(|(_, s)| s).collect();
    env.send(
        &IngestV1 {
            project: "late".into(),
            site: "a".into(),
            samples,
        },
        "job",
    )
    .await;
    env.wait_features("features", "job", 30).await;
    let out = env.cli(&["dead", "replay", "--all"]).await;
    assert!(out.contains("Replayed 1"), "{out}");
    env.wait_count(
        "the replayed job's statistics",
        "SELECT count(*) FROM stats_jobs WHERE id = $1",
        &[&job_id],
        1,
    )
    .await;
    let left = env.cli(&["dead", "list"]).await;
    assert!(!left.contains("stats.v1"), "nothing left to replay: {left}");
    env.finish(workers).await;
}

/// An ANOVA per feature of `project`'s label groups.
fn anova(job_id: Uuid, project: &str) -> broker_schemas::StatsV1 {
    broker_schemas::StatsV1 {
        job_id,
        project: project.into(),
        test: broker_schemas::StatsTest::Anova,
        covariate: None,
        groups: vec![],
        sites: vec![],
        alpha: 0.05,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_dead_lettered_again_after_a_failed_publish_has_one_row_until_replayed() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    // Every worker declares the topology as it starts: wait for them all to consume first.
    for worker in &workers {
        assert!(worker.consuming().await, "a worker failed to start");
    }
    let channel = env.connection.create_channel().await.unwrap();
    // The dead queue's binding is missing (say, definitions not re-imported after an upgrade):
    // the dead letter's publish is refused as unroutable, and the message is requeued.
    let (dead_queue, exchange, key) = (
        env.topology.dead_queue("train"),
        env.topology.exchange(),
        env.topology.dead_routing_key("train"),
    );
    channel
        .queue_unbind(
            dead_queue.as_str().into(),
            exchange.as_str().into(),
            key.as_str().into(),
            Default::default(),
        )
        .await
        .unwrap();
    let job_id = Uuid::now_v7();
    env.send(&anova(job_id, "never"), &job_id.to_string()).await;
    let queue = env.topology.queue("train");
    eventually("three attempts to dead-letter", || async {
        helpers::counter(&format!(
            "swarm_messages_retried_total{{queue=\"{queue}\"}}"
        )) >= 3
    })
    .await;
    let rows = "SELECT count(*) FROM dead_letters";
    assert_eq!(
        env.scalar::<i64>(rows, &[]).await,
        1,
        "one row, not one per attempt"
    );
    // With the binding back, the next attempt lands in the dead queue, still with one row.
    channel
        .queue_bind(
            dead_queue.as_str().into(),
            exchange.as_str().into(),
            key.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let dead = env.take_dead("train", 1).await;
    assert!(dead[0].0.contains("never"), "{dead:?}");
    assert_eq!(env.scalar::<i64>(rows, &[]).await, 1);
    // A replayed message that fails again has a row of its own.
    let out = env.cli(&["dead", "replay", "--all"]).await;
    assert!(out.contains("Replayed 1"), "{out}");
    env.wait_count("the second failure's row", rows, &[], 2)
        .await;
    let unreplayed = "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL";
    assert_eq!(env.scalar::<i64>(unreplayed, &[]).await, 1);
    env.finish(workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_without_an_id_get_one_from_their_body_and_a_row_each() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let body = |subject: &str| {
        broker_schemas::encode(&IngestV1 {
            project: "p".into(),
            site: "s".into(),
            samples: vec![vector(subject, "a", vec![1.0])],
        })
    };
    // The same body twice and another, all without a message id.
    for subject in ["a", "a", "b"] {
        env.publish_raw(IngestV1::TYPE, IngestV1::TYPE, "", body(subject))
            .await;
    }
    let dead = env.take_dead("ingest", 3).await;
    assert!(dead
        .iter()
        .all(|(reason, _)| reason.contains("no message_id")));
    let (a, b) = (
        swarm_runtime::dead::derived_id(Some(IngestV1::TYPE), &body("a")),
        swarm_runtime::dead::derived_id(Some(IngestV1::TYPE), &body("b")),
    );
    let mut ids: Vec<String> = dead.into_iter().map(|(_, id)| id).collect();
    ids.sort();
    let mut want = vec![a.clone(), a.clone(), b.clone()];
    want.sort();
    assert_eq!(
        ids, want,
        "the dead letters carry the ids derived from their bodies"
    );
    let rows: i64 = env
        .scalar(
            "SELECT count(*) FROM dead_letters WHERE message_id IN ($1, $2)",
            &[&a, &b],
        )
        .await;
    assert_eq!(rows, 2, "the rows have the derived ids");
    let total: i64 = env.scalar("SELECT count(*) FROM dead_letters", &[]).await;
    assert_eq!(total, 2, "one row per distinct message");
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
