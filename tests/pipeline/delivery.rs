//! Exactly once and in batches: redeliveries, a message id twice in a batch, a subject in two
//! messages of one batch, the batch's idle commit, the worker handle, unroutable messages, and a
//! producer in another language.

use std::time::Duration;

use broker_schemas::IngestV1;
use swarm_runtime::floats::FloatVec;

use uuid::Uuid;

use crate::helpers::{self, eventually, TestEnv};
use crate::vector;

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

/// Batches (`swarm_batches_total`) of `queue` committed whole, and split into single messages.
fn batches(queue: &str) -> (f64, f64) {
    let text = swarm_runtime::metrics::handle().render();
    let count = |outcome: &str| {
        let outcome = format!("outcome=\"{outcome}\"");
        helpers::metric(
            &text,
            "swarm_batches_total",
            &[&format!("\"{queue}\""), &outcome],
        )
    };
    (count("committed"), count("split"))
}

/// Every sample of project `p` and its features row: (subject, label, sample values, message
/// id, updated_at, feature values, the feature row's message id, created_at), by subject.
async fn stored_rows(env: &TestEnv) -> Vec<String> {
    let client = env.pool.get().await.unwrap();
    client
        .query(
            r#"SELECT concat_ws(' ', s.subject, s.label, encode(s."values", 'hex'), s.message_id,
                   s.updated_at, encode(f."values", 'hex'), f.message_id, f.created_at)
               FROM samples s LEFT JOIN features f ON f.sample_id = s.id
               WHERE s.project = 'p' ORDER BY s.subject"#,
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_in_two_messages_of_one_batch_is_written_once_the_later_wins() {
    let mut env = TestEnv::new().await;
    env.settings.batch_size = 10;
    env.settings.batch_wait_ms = 500;
    env.settings.batch_idle_ms = 500;
    let message = |label: &str, subjects: [&str; 2], value: f32| IngestV1 {
        project: "p".into(),
        site: "s".into(),
        samples: subjects
            .iter()
            .map(|subject| vector(subject, label, vec![value, 1.0]))
            .collect(),
    };
    // Both name y; they wait in the queue before the worker starts, so they arrive as one
    // batch, the first delivered first.
    let (first, second) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    let bodies = [
        (&first, message("a", ["x", "y"], 1.0)),
        (&second, message("b", ["y", "z"], 2.0)),
    ];
    for (id, body) in &bodies {
        env.publish_ingest(id, body).await;
    }
    let ingest = swarm_runtime::spawn(swarm_ingest::IngestHandler, env.settings.clone());
    // Both features.v1 wait too, so the features worker also takes them as one batch.
    eventually("two features.v1 queued", || async {
        env.queue_depth("features").await == 2
    })
    .await;
    let features = swarm_runtime::spawn(swarm_features::FeaturesHandler, env.settings.clone());
    env.wait_count("features", "SELECT count(*) FROM features", &[], 3)
        .await;
    eventually("both features.v1 processed", || async {
        env.processed("features").await == 2
    })
    .await;
    let labels: String = env
        .scalar(
            "SELECT string_agg(subject || ':' || label || ':' || message_id, ',' ORDER BY subject) FROM samples",
            &[],
        )
        .await;
    assert_eq!(
        labels,
        format!("x:a:{first},y:b:{second},z:b:{second}"),
        "y is the later message's"
    );
    let y_feature: Vec<f32> = env
        .scalar::<FloatVec>(
            r#"SELECT f."values" FROM features f JOIN samples s ON s.id = f.sample_id WHERE s.subject = 'y'"#,
            &[],
        )
        .await
        .0;
    assert_eq!(
        y_feature,
        vec![2.0, 1.0],
        "y's features are of its later sample"
    );
    assert_eq!(env.processed("ingest").await, 2, "one record per message");
    for worker in ["ingest", "features"] {
        let (committed, split) = batches(&env.topology.queue(worker));
        assert_eq!(
            (committed, split),
            (1.0, 0.0),
            "{worker}: one batch, committed whole"
        );
    }

    // The batch again, with other content: skipped whole (a sentinel after it shows when).
    let before = stored_rows(&env).await;
    for (id, body) in &bodies {
        let mut again = body.clone();
        again
            .samples
            .iter_mut()
            .for_each(|s| s.label = "changed".into());
        env.publish_ingest(id, &again).await;
    }
    let sentinel = IngestV1 {
        project: "q".into(),
        site: "s".into(),
        samples: vec![vector("w", "a", vec![1.0, 1.0])],
    };
    env.publish_ingest(&Uuid::now_v7().to_string(), &sentinel)
        .await;
    env.wait_count(
        "the sentinel's features",
        "SELECT count(*) FROM features",
        &[],
        4,
    )
    .await;
    assert_eq!(
        stored_rows(&env).await,
        before,
        "the redelivery changed rows"
    );
    assert_eq!(env.processed("ingest").await, 3);
    assert_eq!(
        env.processed("features").await,
        3,
        "the redelivery emitted nothing"
    );
    env.finish(vec![ingest, features]).await;
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
