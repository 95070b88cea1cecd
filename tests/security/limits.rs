//! The input limits, end to end: an ingest worker in a process of its own (this test binary,
//! re-run as a child with `--ignored --exact limits::child_ingest_worker`), configured through
//! the environment as an operator would (`MAX_MESSAGE_BYTES`, `MAX_SAMPLES_PER_BATCH`, …), is fed
//! oversized messages and batches over the limits. Each is dead-lettered with the limit in its
//! reason, and the process's peak resident memory (VmHWM) grows by far less than the bytes it
//! was sent: nothing is kept, nothing is decoded first.

use std::process::{Child, Command};

use broker_schemas::{IngestV1, Message, Sample, SampleKind};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use swarm_runtime::amqp::Outgoing;
use swarm_runtime::dead::{string_headers, REASON_HEADER};
use swarm_runtime::Settings;
use uuid::Uuid;

use crate::helpers::{amqp_url, child_output, eventually, TestBroker, TestDb};

const CHILD_TEST: &str = "limits::child_ingest_worker";
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
const OVERSIZED_BYTES: usize = 2 * 1024 * 1024;
const OVERSIZED_MESSAGES: usize = 64;
/// The peak may grow by this much while the worker handles 128 MiB of oversized messages: a
/// few messages in flight (PREFETCH=2), each copied to the dead queue and `dead_letters`.
const PEAK_GROWTH_BOUND_KB: u64 = 48 * 1024;

/// The worker of the parent test below; does nothing when run any other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of every_oversized_input_is_dead_lettered_in_bounded_memory"]
async fn child_ingest_worker() {
    let Ok(database_url) = std::env::var("SWARM_CHILD_DATABASE_URL") else {
        return;
    };
    let mut settings = Settings::local();
    settings.database_url = database_url;
    settings.amqp_url = amqp_url();
    settings.namespace = std::env::var("SWARM_CHILD_NAMESPACE").unwrap();
    settings.prefetch = 2;
    settings.concurrency = 1;
    settings.db_pool_size = 2;
    // The limits come from MAX_* in this process's environment (swarm_runtime::limits).
    swarm_runtime::run(
        swarm_ingest::IngestHandler,
        settings,
        std::future::pending::<()>(),
    )
    .await
    .unwrap();
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The process's peak resident set, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

fn vector(subject: &str, n: usize) -> Sample {
    Sample {
        subject: subject.into(),
        label: if subject.len() % 2 == 0 { "a" } else { "b" }.into(),
        kind: SampleKind::Vector,
        values: (0..n).map(|i| i as f32).collect(),
        timepoints: None,
        covariates: Default::default(),
        text: None,
    }
}

fn batch(samples: Vec<Sample>) -> IngestV1 {
    IngestV1 {
        project: "limits".into(),
        site: "s".into(),
        samples,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_oversized_input_is_dead_lettered_in_bounded_memory() {
    let db = TestDb::new().await;
    let broker = TestBroker::new().await;
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SWARM_CHILD_DATABASE_URL", db.url(None))
        .env("SWARM_CHILD_NAMESPACE", broker.topology.namespace())
        .env("MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES.to_string())
        .env("MAX_SAMPLES_PER_BATCH", "100")
        .env("MAX_VALUES_PER_SAMPLE", "1000")
        .env("MAX_SUBJECT_LEN", "16")
        // glibc keeps an arena per thread; two is what we recommend for workers too.
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(child_output())
        .stderr(child_output())
        .spawn()
        .expect("the test binary runs itself");
    let child = KillOnDrop(child);
    let pid = child.0.id();
    let job = Uuid::now_v7().to_string();
    let owner = db.owner.get().await.unwrap();
    let count = |sql: &'static str| {
        let owner = &owner;
        async move { owner.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };

    // A valid batch first: the worker is up and has handled a message (its baseline).
    let valid = batch((0..10).map(|i| vector(&format!("sub-{i}"), 8)).collect());
    broker
        .publisher
        .send(&broker.topology, &valid, Some(&job))
        .await
        .unwrap();
    eventually("the worker stores the valid batch", || async {
        count("SELECT count(*) FROM samples").await == 10
    })
    .await;
    let baseline = peak_rss_kb(pid);

    // Over the limits: a batch of 101 samples, a sample of 1001 values, a subject of 17
    // characters (each small), and many bodies twice MAX_MESSAGE_BYTES.
    let over = [
        (
            batch((0..101).map(|i| vector(&format!("sub-{i}"), 8)).collect()),
            "the limit is 100 per message (MAX_SAMPLES_PER_BATCH)",
        ),
        (
            batch(vec![vector("wide", 1001)]),
            "has 1001 values; the limit is 1000 (MAX_VALUES_PER_SAMPLE)",
        ),
        (
            batch(vec![vector(&"x".repeat(17), 8)]),
            "longer than 16 characters (the limit, MAX_SUBJECT_LEN)",
        ),
    ];
    let mut expected = std::collections::BTreeMap::new();
    for (message, reason) in &over {
        let id = broker
            .publisher
            .send(&broker.topology, message, Some(&job))
            .await
            .unwrap();
        expected.insert(id, reason.to_string());
    }
    let body = vec![0xc0u8; OVERSIZED_BYTES];
    for _ in 0..OVERSIZED_MESSAGES {
        let id = Uuid::now_v7().to_string();
        broker
            .publisher
            .publish(&Outgoing {
                exchange: broker.topology.exchange(),
                routing_key: IngestV1::TYPE.into(),
                message_type: IngestV1::TYPE.into(),
                message_id: id.clone(),
                correlation_id: Some(job.clone()),
                headers: Default::default(),
                body: body.clone(),
            })
            .await
            .unwrap();
        expected.insert(
            id,
            format!(
                "message of {OVERSIZED_BYTES} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes (MAX_MESSAGE_BYTES)"
            ),
        );
    }
    let total = expected.len() as i64;
    eventually("every input over the limits is dead-lettered", || async {
        count("SELECT count(*) FROM dead_letters").await == total
    })
    .await;
    let peak = peak_rss_kb(pid);
    assert!(child_alive(pid), "the worker survived");

    // The reasons, in the table and in the dead queue's header.
    for row in owner
        .query("SELECT message_id, reason FROM dead_letters", &[])
        .await
        .unwrap()
    {
        let (id, reason): (String, String) = (row.get(0), row.get(1));
        let wanted = expected.get(&id).expect("a message of this test");
        assert!(
            reason.contains(wanted.as_str()),
            "{reason:?} should contain {wanted:?}"
        );
    }
    let channel = broker.connection.create_channel().await.unwrap();
    let mut seen = 0;
    while let Some(message) = channel
        .basic_get(
            broker.topology.dead_queue("ingest").into(),
            BasicGetOptions::default(),
        )
        .await
        .unwrap()
    {
        let delivery = message.delivery;
        let headers = string_headers(&delivery);
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .to_string();
        let reason = headers.get(REASON_HEADER).expect("a reason header");
        assert!(reason.contains(expected[&id].as_str()), "{reason}");
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        seen += 1;
    }
    assert_eq!(seen, expected.len(), "every one is in the dead queue");
    assert_eq!(
        count("SELECT count(*) FROM samples").await,
        10,
        "nothing over the limits was stored"
    );

    let growth = peak.saturating_sub(baseline);
    let sent_kb = (OVERSIZED_MESSAGES * OVERSIZED_BYTES / 1024) as u64;
    eprintln!(
        "limits: peak RSS {baseline} kB -> {peak} kB (+{growth} kB) while handling {sent_kb} kB of oversized messages"
    );
    assert!(
        growth < PEAK_GROWTH_BOUND_KB,
        "peak RSS grew by {growth} kB (bound {PEAK_GROWTH_BOUND_KB} kB) for {sent_kb} kB sent"
    );
    drop(owner);
    drop(child);
    broker.finish().await;
}

fn child_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| !s.contains("State:\tZ"))
        .unwrap_or(false)
}
