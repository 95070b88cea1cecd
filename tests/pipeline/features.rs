//! The features worker: a message naming another project's samples, and a message's samples
//! handled a chunk at a time in one transaction.

use broker_schemas::{FeaturesV1, IngestV1};

use crate::helpers::{eventually, TestEnv};
use crate::vector;

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
