//! What operators watch: metrics that move, readiness that follows the database, and a Jaeger
//! `uber-trace-id` joining its trace.

use std::time::Duration;

use broker_schemas::{IngestV1, Message};

use uuid::Uuid;

use crate::helpers::{self, eventually, TestEnv};
use crate::vector;

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
