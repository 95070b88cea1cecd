//! Dead letters: bad input is dead-lettered with its reason, listed, replayed once its cause is
//! fixed, and recorded once even when it comes back.

use std::collections::BTreeMap;

use broker_schemas::{IngestV1, Message};

use uuid::Uuid;

use crate::helpers::{self, eventually, TestEnv};
use crate::vector;

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
