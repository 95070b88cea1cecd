//! Nothing lost, nothing done twice — under real faults: worker processes SIGKILLed and
//! restarted, every broker connection closed, Postgres restarted, poison messages, random bodies,
//! SIGTERM during a burst. These tests disrupt the shared broker and database, so they live in
//! their own test binary and run one at a time (cargo runs test binaries one after another).

#[path = "../pipeline/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use broker_schemas::{IngestV1, Message, Sample, SampleKind};
use helpers::{eventually, signal, TestEnv, WorkerProcess, PATIENCE};
use rand::{Rng, SeedableRng};
use swarm_runtime::{HandleError, Handler, Work};
use uuid::Uuid;

/// One fault test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn batch(project: &str, first: usize, n: usize, dims: usize) -> IngestV1 {
    IngestV1 {
        project: project.into(),
        site: "s".into(),
        samples: (first..first + n)
            .map(|i| Sample {
                subject: format!("sub-{i:06}"),
                label: if i % 2 == 0 { "a".into() } else { "b".into() },
                kind: SampleKind::Vector,
                values: (0..dims).map(|d| (i * 31 + d) as f32 / 100.0).collect(),
                timepoints: None,
                covariates: Default::default(),
                text: None,
            })
            .collect(),
    }
}

/// Publishes `messages` batches of `per` samples; returns the job id.
async fn publish_burst(env: &TestEnv, messages: usize, per: usize) -> String {
    let job = Uuid::now_v7().to_string();
    for m in 0..messages {
        env.send(&batch("p", m * per, per, 8), &job).await;
    }
    job
}

/// Everything exactly once: every sample and feature row once, each ingest message processed
/// once, no sample written twice, the outbox empty, no dead letters, the queues empty.
async fn assert_exactly_once(env: &TestEnv, job: &str, messages: usize, samples: usize) {
    let n = samples as i64;
    env.wait_count(
        "features",
        "SELECT count(*) FROM features WHERE job_id = $1",
        &[&job],
        n,
    )
    .await;
    let count: i64 = env
        .scalar("SELECT count(*) FROM samples WHERE job_id = $1", &[&job])
        .await;
    assert_eq!(count, n, "every sample once");
    let rewritten: i64 = env
        .scalar(
            "SELECT count(*) FROM samples WHERE updated_at <> created_at",
            &[],
        )
        .await;
    assert_eq!(rewritten, 0, "no ingest message was applied twice");
    let processed: i64 = env.processed("ingest").await;
    assert_eq!(
        processed, messages as i64,
        "each ingest message processed once"
    );
    let feature_messages: i64 = env.processed("features").await;
    assert_eq!(
        feature_messages, messages as i64,
        "one features.v1 per ingest message, processed once"
    );
    let distinct: i64 = env
        .scalar("SELECT count(DISTINCT sample_id) FROM features", &[])
        .await;
    assert_eq!(distinct, n);
    env.wait_count("outbox drained", "SELECT count(*) FROM outbox", &[], 0)
        .await;
    let dead: i64 = env.scalar("SELECT count(*) FROM dead_letters", &[]).await;
    assert_eq!(dead, 0, "no dead letters");
    // A message published twice (a crash or a lost connection between publish and delete) is
    // consumed and skipped as a duplicate: the queues drain.
    eventually("the queues drain", || async {
        env.queue_depth("ingest").await == 0 && env.queue_depth("features").await == 0
    })
    .await;
}

async fn stop_all(workers: Vec<WorkerProcess>) {
    for w in workers {
        let kind = w.kind.clone();
        let status = w.terminate().await;
        assert!(status.success(), "{kind} exits 0 on SIGTERM: {status:?}");
    }
}

/// Two replicas each of ingest and features: one commits message by message, the other in
/// batches of 25 (acked with `multiple=true`), so both modes face the same faults.
fn start_pair(env: &TestEnv) -> Vec<WorkerProcess> {
    let single = [("CONCURRENCY", "4".to_string())];
    let batched = [
        ("BATCH_SIZE", "25".to_string()),
        ("PREFETCH", "50".to_string()),
    ];
    vec![
        WorkerProcess::start(env, "ingest", &single),
        WorkerProcess::start(env, "ingest", &batched),
        WorkerProcess::start(env, "features", &single),
        WorkerProcess::start(env, "features", &batched),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_replicas_lose_nothing_and_repeat_nothing() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    let (messages, per) = (200, 100);
    let job = publish_burst(&env, messages, per).await;
    let mut workers = start_pair(&env);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    // Kill one replica of each kind at random moments, three times, and restart it.
    for round in 0..3 {
        let wait = Duration::from_millis(rng.random_range(200..1200));
        tokio::time::sleep(wait).await; // chaos timing, not synchronisation
        let done: i64 = env
            .scalar("SELECT count(*) FROM features WHERE job_id = $1", &[&job])
            .await;
        eprintln!(
            "round {round}: {done} feature rows, killing one ingest and one features replica"
        );
        for kind in ["ingest", "features"] {
            let replicas: Vec<usize> = (0..workers.len())
                .filter(|&i| workers[i].kind == kind)
                .collect();
            let victim = workers.remove(replicas[rng.random_range(0..replicas.len())]);
            let extra_env = victim.extra_env.clone();
            victim.kill().await;
            workers.push(WorkerProcess::start(&env, kind, &extra_env));
        }
    }
    assert_exactly_once(&env, &job, messages, messages * per).await;
    stop_all(workers).await;
    assert_eq!(env.queue_depth("ingest").await, 0);
    assert_eq!(env.queue_depth("features").await, 0);
    env.finish(Vec::new()).await;
}

/// Runs a 10,000-sample burst through two replicas of each kind, runs `fault` once work is under
/// way, and checks that everything happened exactly once.
async fn survives(fault: impl FnOnce()) {
    let env = TestEnv::new().await;
    let (messages, per) = (100, 100);
    let job = publish_burst(&env, messages, per).await;
    let workers = start_pair(&env);
    eventually("work under way", || async {
        env.scalar::<i64>("SELECT count(*) FROM samples", &[]).await > 0
    })
    .await;
    fault();
    assert_exactly_once(&env, &job, messages, messages * per).await;
    stop_all(workers).await;
    assert_eq!(env.queue_depth("ingest").await, 0);
    assert_eq!(env.queue_depth("features").await, 0);
    env.finish(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_every_broker_connection_loses_nothing() {
    let _serial = SERIAL.lock().await;
    survives(|| {
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_all_connections", "swarm fault test"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "rabbitmqctl close_all_connections");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_postgres_loses_nothing() {
    let _serial = SERIAL.lock().await;
    survives(|| {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("a Debian Postgres cluster")
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        let status = std::process::Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                version.to_str().unwrap(),
                "main",
                "restart",
            ])
            .status()
            .expect("pg_ctlcluster runs");
        assert!(status.success(), "Postgres restarted");
    })
    .await;
}

/// A handler that fails on subjects named `fail` (an error) and `panic` (a panic), and stores
/// the rest like the ingest worker.
#[derive(Debug, Clone, Copy)]
struct Poisoned;

impl Handler for Poisoned {
    type Message = IngestV1;
    const NAME: &'static str = "ingest";

    async fn handle(&self, work: &mut Work<'_>, message: IngestV1) -> Result<(), HandleError> {
        match message.samples[0].subject.as_str() {
            "fail" => Err(HandleError::Transient(anyhow::anyhow!(
                "this message always fails"
            ))),
            "panic" => panic!("this message always panics"),
            _ => swarm_ingest::IngestHandler.handle(work, message).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_after_the_configured_attempts() {
    let _serial = SERIAL.lock().await;
    let mut env = TestEnv::new().await;
    env.settings.max_attempts = 3;
    let worker = swarm_runtime::spawn(Poisoned, env.settings.clone());
    let one = |subject: &str| IngestV1 {
        project: "p".into(),
        site: "s".into(),
        samples: vec![Sample {
            subject: subject.into(),
            label: "a".into(),
            kind: SampleKind::Vector,
            values: vec![1.0],
            timepoints: None,
            covariates: Default::default(),
            text: None,
        }],
    };
    for subject in ["before", "fail", "panic", "after"] {
        env.publish_ingest(subject, &one(subject)).await;
    }
    let dead = env.take_dead("ingest", 2).await;
    for (reason, id) in &dead {
        assert!(
            reason.starts_with("gave up after 3 attempts"),
            "{id}: {reason}"
        );
    }
    let ids: std::collections::BTreeSet<&str> = dead.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["fail", "panic"].into());
    assert!(dead.iter().any(|(r, _)| r.contains("panicked")), "{dead:?}");
    let stored: i64 = env
        .scalar(
            "SELECT count(*) FROM samples WHERE subject IN ('before', 'after')",
            &[],
        )
        .await;
    assert_eq!(stored, 2, "the messages around the poison are processed");
    let rows: i64 = env.scalar("SELECT count(*) FROM dead_letters", &[]).await;
    assert_eq!(rows, 2);
    env.finish(vec![worker]).await;
}

/// A valid body with random bytes flipped, cut or appended; or random bytes.
fn mutated(rng: &mut impl Rng, valid: &[u8]) -> Vec<u8> {
    let mut body = valid.to_vec();
    match rng.random_range(0..4) {
        0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        1 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..body.len());
                body[i] = rng.random();
            }
            body
        }
        2 => {
            body.truncate(rng.random_range(0..body.len()));
            body
        }
        _ => {
            let i = rng.random_range(0..body.len());
            body.insert(i, rng.random());
            body
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_bodies_are_dead_lettered_without_panic_or_hang() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    let worker = swarm_runtime::spawn(swarm_ingest::IngestHandler, env.settings.clone());
    let valid = broker_schemas::encode(&batch("fuzz", 0, 3, 4));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let n = 2000;
    for i in 0..n {
        let body = mutated(&mut rng, &valid);
        env.publish_raw(IngestV1::TYPE, IngestV1::TYPE, &format!("fuzz-{i}"), body)
            .await;
    }
    // Every body is accounted for: dead-lettered with a reason, or (a harmless mutation) processed.
    let queue = env.topology.queue("ingest");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let dead: i64 = env
            .scalar("SELECT count(*) FROM dead_letters WHERE reason <> ''", &[])
            .await;
        let done: i64 = env
            .scalar(
                "SELECT count(*) FROM processed_messages WHERE queue = $1",
                &[&queue],
            )
            .await;
        if dead + done == n {
            eprintln!("{dead} dead-lettered, {done} processed");
            assert!(dead > n / 2, "most random bodies are invalid");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{dead} dead + {done} processed of {n} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still serving.
    env.send(&batch("after", 0, 1, 4), "job").await;
    env.wait_count(
        "the worker still serves",
        "SELECT count(*) FROM samples WHERE project = 'after'",
        &[],
        1,
    )
    .await;
    env.finish(vec![worker]).await;
}

/// Per-message commits, then batches (several in flight, acked in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_exits_cleanly_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    sigterm_during_a_burst(&[]).await;
    sigterm_during_a_burst(&[
        ("BATCH_SIZE", "10".to_string()),
        ("PREFETCH", "40".to_string()),
    ])
    .await;
}

async fn sigterm_during_a_burst(mode: &[(&'static str, String)]) {
    let env = TestEnv::new().await;
    let (messages, per) = (100, 100);
    let job = publish_burst(&env, messages, per).await;
    let features = WorkerProcess::start(&env, "features", &[]);
    let mut settings = vec![("SHUTDOWN_TIMEOUT", "10".to_string())];
    settings.extend(mode.iter().cloned());
    let ingest = WorkerProcess::start(&env, "ingest", &settings);
    eventually("work under way", || async {
        env.scalar::<i64>("SELECT count(*) FROM samples", &[]).await > 0
    })
    .await;
    let started = Instant::now();
    let status = ingest.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "exited within the 10 s deadline: {:?}",
        started.elapsed()
    );
    let done: i64 = env.scalar("SELECT count(*) FROM samples", &[]).await;
    assert!(
        done < (messages * per) as i64,
        "the burst was still going when SIGTERM came"
    );
    let ingest = WorkerProcess::start(&env, "ingest", &[]);
    assert_exactly_once(&env, &job, messages, messages * per).await;
    stop_all(vec![ingest, features]).await;
    env.finish(Vec::new()).await;
}

/// The broker's process, stopped with SIGSTOP until this is dropped (SIGCONT, even when the test
/// fails): its connections stay open and nothing on them is answered.
struct FrozenBroker {
    pid: String,
}

impl FrozenBroker {
    fn freeze() -> Self {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["eval", "list_to_integer(os:getpid())."])
            .output()
            .expect("rabbitmqctl runs");
        assert!(out.status.success(), "rabbitmqctl eval: {out:?}");
        let pid = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(pid.parse::<u32>().is_ok(), "the broker's pid: {pid:?}");
        signal("-STOP", &pid);
        Self { pid }
    }
}

impl Drop for FrozenBroker {
    fn drop(&mut self) {
        signal("-CONT", &self.pid);
    }
}

/// A broker that stops answering (its connection still open, so the worker cannot tell it has
/// gone) must not hold a SIGTERMed worker past its deadline: the consumer cancel and the channel
/// and connection closes each wait a bounded time for their answer, then the worker exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_does_not_hold_the_shutdown_past_its_deadline() {
    let _serial = SERIAL.lock().await;
    let env = TestEnv::new().await;
    let (messages, per) = (5, 10);
    let job = publish_burst(&env, messages, per).await;
    let worker = WorkerProcess::start(&env, "ingest", &[("SHUTDOWN_TIMEOUT", "10".into())]);
    // Consuming, and done: nothing is in flight when the broker goes silent.
    env.wait_count(
        "samples stored",
        "SELECT count(*) FROM samples WHERE job_id = $1",
        &[&job],
        (messages * per) as i64,
    )
    .await;
    env.wait_count("outbox drained", "SELECT count(*) FROM outbox", &[], 0)
        .await;
    let frozen = FrozenBroker::freeze();
    let started = Instant::now();
    let status = worker.terminate().await;
    let took = started.elapsed();
    drop(frozen);
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(10),
        "exited within the 10 s shutdown deadline: {took:?}"
    );
    // The broker answers again before the namespace is deleted.
    eventually("the broker answers again", || async {
        swarm_runtime::amqp::connect(&env.settings.amqp_url, "swarm-test")
            .await
            .is_ok()
    })
    .await;
    env.finish(Vec::new()).await;
}

#[allow(dead_code)]
fn _types() -> &'static str {
    IngestV1::TYPE
}
