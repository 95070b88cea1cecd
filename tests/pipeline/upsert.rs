//! Re-sent subjects: a subject sent again in a new message replaces its sample and features in
//! place, row by row, with the new message's lineage; the others are left as they were.

use broker_schemas::IngestV1;
use swarm_runtime::floats::FloatVec;

use crate::helpers::TestEnv;
use crate::vector;

/// A stored sample of project `p`.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    subject: String,
    id: i64,
    label: String,
    values: Vec<f32>,
    message_id: String,
    job_id: String,
}

/// Every sample of project `p`, by subject.
async fn samples(env: &TestEnv) -> Vec<Stored> {
    let client = env.pool.get().await.unwrap();
    client
        .query(
            r#"SELECT subject, id, label, "values", message_id, job_id FROM samples
               WHERE project = 'p' ORDER BY subject"#,
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Stored {
            subject: r.get(0),
            id: r.get(1),
            label: r.get(2),
            values: r.get::<_, FloatVec>(3).0,
            message_id: r.get(4),
            job_id: r.get(5),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_sent_again_replaces_its_sample_and_features_in_place() {
    let env = TestEnv::new().await;
    let workers = env.spawn_all();
    let batch = |subjects: std::ops::Range<usize>, label: &str, offset: f32| IngestV1 {
        project: "p".into(),
        site: "s".into(),
        samples: subjects
            .map(|i| vector(&format!("sub-{i}"), label, vec![offset + i as f32, 1.0]))
            .collect(),
    };
    let first = env.send(&batch(0..5, "a", 0.0), "job-1").await;
    env.wait_features("the first batch's features", "job-1", 5)
        .await;
    let before = samples(&env).await;
    // sub-2, sub-3 and sub-4 again, in another order, with sub-5 and sub-6 new.
    let mut again = batch(2..7, "b", 100.0);
    again.samples.reverse();
    let second = env.send(&again, "job-2").await;
    env.wait_features("the second batch's features", "job-2", 5)
        .await;
    let after = samples(&env).await;

    assert_eq!(after.len(), 7, "re-sent subjects are not duplicated");
    for (i, sample) in after.iter().enumerate() {
        let subject = &sample.subject;
        assert_eq!(subject, &format!("sub-{i}"));
        if i < 2 {
            assert_eq!(sample, &before[i], "{subject} was not re-sent");
            assert_eq!((sample.label.as_str(), &sample.message_id), ("a", &first));
            continue;
        }
        if i < 5 {
            assert_eq!(sample.id, before[i].id, "{subject} keeps its id");
        }
        assert_eq!(sample.label, "b", "{subject}");
        assert_eq!(sample.values, vec![100.0 + i as f32, 1.0], "{subject}");
        assert_eq!(
            (&sample.message_id, sample.job_id.as_str()),
            (&second, "job-2")
        );
    }
    // Every sample's features are its current values (identity), from the job that last wrote it.
    let stale: i64 = env
        .scalar(
            "SELECT count(*) FROM features f JOIN samples s ON s.id = f.sample_id
             WHERE f.values <> s.values OR f.job_id IS DISTINCT FROM s.job_id",
            &[],
        )
        .await;
    assert_eq!(stale, 0, "features follow their re-sent samples");
    let features: i64 = env.scalar("SELECT count(*) FROM features", &[]).await;
    assert_eq!(features, 7);
    env.finish(workers).await;
}
