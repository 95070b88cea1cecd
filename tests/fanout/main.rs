//! One heavy job over the whole swarm: a `train.v1` run fans out into work units that real
//! `swarm worker train` processes share. The same results with one process or two (and any
//! threads or unit size), a process SIGKILLed and another SIGTERMed mid-run, a unit that fails
//! its run once, a unit given up on after its attempts or after its workers kept dying on it,
//! and a cancel that stops it (and the report of a failed or cancelled run) — each against the
//! shared broker and a database of its own (worker processes are killed here, never the broker
//! or the database).

#[path = "../pipeline/helpers.rs"]
mod helpers;

use std::collections::BTreeMap;

use broker_schemas::{CvScheme, TrainOptions, TrainRequest, TrainV1};
use helpers::{eventually, TestEnv, WorkerProcess};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

/// Stores a project of `per_site` samples at each of three sites, two classes, `features`
/// features with the signal in the first two: straight into `samples` and `features`, as the
/// ingest and features workers would have.
async fn seed(env: &TestEnv, project: &str, per_site: usize, features: usize, split_by_site: bool) {
    let client = env.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO projects (name, kind, dimension) VALUES ($1, 'vector', $2)",
            &[&project, &(features as i32)],
        )
        .await
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (s, site) in ["lab-a", "lab-b", "lab-c"].iter().enumerate() {
        for i in 0..per_site {
            // Split by site: every patient at lab-c, so leaving lab-c out trains on one class.
            let class = if split_by_site {
                usize::from(s == 2)
            } else {
                i % 2
            };
            let label = ["control", "patient"][class];
            let mut values: Vec<f32> = (0..features)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            values[0] += 0.8 * class as f32;
            values[1] -= 0.8 * class as f32;
            let row = client
                .query_one(
                    r#"INSERT INTO samples (project, site, subject, label, kind, "values", message_id)
                       VALUES ($1, $2, $3, $4, 'vector', $5, 'seed') RETURNING id"#,
                    &[
                        &project,
                        site,
                        &format!("sub-{i:03}"),
                        &label,
                        &swarm_runtime::floats::Floats(&values),
                    ],
                )
                .await
                .unwrap();
            let id: i64 = row.get(0);
            client
                .execute(
                    r#"INSERT INTO features (sample_id, extractor, version, "values", message_id)
                       VALUES ($1, 'vector', 1, $2, 'seed')"#,
                    &[&id, &swarm_runtime::floats::Floats(&values)],
                )
                .await
                .unwrap();
        }
    }
}

/// An SVC with a 3-value grid and `permutations` label permutations, stratified 5-fold.
fn job(project: &str, permutations: u32) -> TrainRequest {
    let mut options = TrainOptions::default();
    options
        .grid
        .insert("C".into(), vec!["0.1".into(), "1".into(), "10".into()]);
    options.permutations = permutations;
    TrainRequest {
        train: TrainV1 {
            run_id: Uuid::now_v7(),
            project: project.into(),
            model: "svc".into(),
            params: BTreeMap::new(),
            cv: Default::default(),
            sites: vec![],
        },
        options,
    }
}

/// Publishes a job; returns its run id.
async fn start(env: &TestEnv, request: &TrainRequest) -> Uuid {
    let run_id = request.train.run_id;
    env.send(request, &run_id.to_string()).await;
    run_id
}

/// A `swarm worker train` process with these settings.
fn train_worker(env: &TestEnv, extra: &[(&'static str, &str)]) -> WorkerProcess {
    let extra: Vec<(&'static str, String)> =
        extra.iter().map(|(k, v)| (*k, v.to_string())).collect();
    WorkerProcess::start(env, "train", &extra)
}

/// Many small units: one fit each.
const SMALL_UNITS: (&str, &str) = ("TRAIN_UNIT_WORK", "1");

/// The run's progress, if it is planned.
async fn progress(env: &TestEnv, run_id: Uuid) -> Option<swarm_train::runs::Progress> {
    let client = env.pool.get().await.unwrap();
    swarm_train::runs::progress(&**client, run_id)
        .await
        .unwrap()
}

/// Waits until the run is in `state` (one it does not leave); returns its progress then.
async fn until_state(env: &TestEnv, run_id: Uuid, state: &str) -> swarm_train::runs::Progress {
    eventually(&format!("run {run_id} {state}"), || async {
        progress(env, run_id)
            .await
            .is_some_and(|p| p.state == state)
    })
    .await;
    progress(env, run_id).await.unwrap()
}

/// Waits until at least `n` units of the run are stored.
async fn until_done(env: &TestEnv, run_id: Uuid, n: i64) {
    eventually(&format!("{n} units of {run_id} stored"), || async {
        let done: i64 = env
            .scalar(
                "SELECT count(*) FROM run_units WHERE run_id = $1 AND state = 'done'",
                &[&run_id],
            )
            .await;
        done >= n
    })
    .await;
}

/// Everything a finished run stored, as JSON text without ids and timings: equal text means
/// equal results, floats bit for bit (PostgreSQL prints the shortest exact form).
async fn stored(env: &TestEnv, run_id: Uuid) -> String {
    env.scalar(
        "SELECT jsonb_build_object(
           'run', (SELECT to_jsonb(r) - 'id' - 'created_at' - 'duration_ms' - 'job_id'
                          - 'message_id' - 'trace_id' FROM runs r WHERE r.id = $1),
           'folds', (SELECT jsonb_agg(to_jsonb(f) - 'run_id' - 'id' ORDER BY f.repeat, f.fold)
                     FROM folds f WHERE f.run_id = $1),
           'predictions', (SELECT jsonb_agg(to_jsonb(p) - 'run_id' - 'id'
                                            ORDER BY p.repeat, p.sample_id)
                           FROM predictions p WHERE p.run_id = $1))::text",
        &[&run_id],
    )
    .await
}

/// Units of a run by how often their computing started.
async fn attempts(env: &TestEnv, run_id: Uuid) -> BTreeMap<i32, i32> {
    let client = env.pool.get().await.unwrap();
    client
        .query(
            "SELECT unit, attempts FROM run_units WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_or_two_processes_any_threads_and_unit_size_store_identical_results() {
    let env = TestEnv::new().await;
    seed(&env, "p", 30, 12, false).await;

    // One process, one thread, one fit per unit.
    let one = train_worker(
        &env,
        &[SMALL_UNITS, ("TRAIN_THREADS", "1"), ("CONCURRENCY", "1")],
    );
    let first = start(&env, &job("p", 10)).await;
    let p = until_state(&env, first, "finished").await;
    assert!(p.units_total > 100, "{} units", p.units_total);
    one.terminate().await;

    // Two processes, two threads each, the default (large) units.
    let a = train_worker(&env, &[("TRAIN_THREADS", "2"), ("CONCURRENCY", "2")]);
    let b = train_worker(
        &env,
        &[SMALL_UNITS, ("TRAIN_THREADS", "2"), ("CONCURRENCY", "2")],
    );
    let second = start(&env, &job("p", 10)).await;
    until_state(&env, second, "finished").await;
    // And two processes sharing many small units.
    let third = start(&env, &job("p", 10)).await;
    until_state(&env, third, "finished").await;
    a.terminate().await;
    b.terminate().await;

    let reference = stored(&env, first).await;
    assert!(reference.contains("\"permutation\""), "{reference}");
    assert_eq!(stored(&env, second).await, reference);
    assert_eq!(stored(&env, third).await, reference);
    // Every unit stored once.
    for run in [first, second, third] {
        let queued: i64 = env
            .scalar(
                "SELECT count(*) FROM run_units WHERE run_id = $1 AND state <> 'done'",
                &[&run],
            )
            .await;
        assert_eq!(queued, 0);
    }
    env.finish(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_a_terminated_process_leave_the_results_unchanged() {
    let env = TestEnv::new().await;
    seed(&env, "p", 30, 12, false).await;
    let settings = [SMALL_UNITS, ("TRAIN_THREADS", "1"), ("CONCURRENCY", "2")];

    // Undisturbed.
    let calm = train_worker(&env, &settings);
    let reference_run = start(&env, &job("p", 30)).await;
    let p = until_state(&env, reference_run, "finished").await;
    calm.terminate().await;
    let total = p.units_total as i64;

    // Two processes; one is SIGKILLed after a quarter of the units, the other SIGTERMed after
    // half, and a third finishes the run.
    let killed = train_worker(&env, &settings);
    let terminated = train_worker(&env, &settings);
    let run = start(&env, &job("p", 30)).await;
    until_done(&env, run, total / 4).await;
    killed.kill().await;
    until_done(&env, run, total / 2).await;
    // The units stored before the SIGTERM, with how often each was started then.
    let done_before: BTreeMap<i32, i32> = {
        let client = env.pool.get().await.unwrap();
        client
            .query(
                "SELECT unit, attempts FROM run_units WHERE run_id = $1 AND state = 'done'",
                &[&run],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    assert!(terminated.terminate().await.success());
    let now = progress(&env, run).await.unwrap();
    assert_eq!(now.state, "running", "the run ended before the SIGTERM");
    let last = train_worker(&env, &settings);
    until_state(&env, run, "finished").await;
    last.terminate().await;

    assert_eq!(stored(&env, run).await, stored(&env, reference_run).await);
    let attempts = attempts(&env, run).await;
    assert_eq!(attempts.len() as i64, total);
    // Units stored before the SIGTERM were not computed again; only those the killed process
    // was computing (at most its CONCURRENCY) were computed twice.
    for (unit, before) in &done_before {
        assert_eq!(attempts[unit], *before, "unit {unit} was computed again");
    }
    let wasted: i32 = attempts.values().map(|a| a - 1).sum();
    assert!(wasted <= 2, "{wasted} computations wasted");
    assert!(attempts.values().all(|a| *a >= 1));
    env.finish(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_cannot_be_computed_fails_its_run_once_with_the_reason() {
    let env = TestEnv::new().await;
    // Every patient at lab-c: leaving lab-c out trains on controls only.
    seed(&env, "p", 12, 6, true).await;
    let worker = train_worker(&env, &[SMALL_UNITS, ("CONCURRENCY", "2")]);
    let output = env
        .cli_output(
            &[],
            &[
                "train",
                "--project",
                "p",
                "--leave-site-out",
                "--wait",
                "--timeout",
                "120",
            ],
        )
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("failed") && stderr.contains("2 classes"),
        "{stderr}"
    );
    let run: Uuid = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    let p = until_state(&env, run, "failed").await;
    let reason = p.reason.unwrap();
    assert!(
        reason.contains("fold 3") && reason.contains("2 classes"),
        "{reason}"
    );
    let status = env.cli(&["status", &run.to_string()]).await;
    assert!(
        status.contains("failed") && status.contains("fold 3"),
        "{status}"
    );
    // Its report says that it failed and why, in every format.
    let said = env.cli(&["report", "show", &run.to_string()]).await;
    assert!(
        said.contains("failed") && said.contains("fold 3") && said.contains("Request"),
        "{said}"
    );
    let page = env
        .cli(&["report", "show", &run.to_string(), "--format", "html"])
        .await;
    assert!(
        page.contains("Why there are no results") && page.contains("fold 3"),
        "{page}"
    );
    let document: serde_json::Value = serde_json::from_str(
        &env.cli(&["report", "show", &run.to_string(), "--format", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(document["state"], "failed");
    assert_eq!(document["kind"], "stopped");
    // Failed once: no run stored, nothing dead-lettered, and the worker goes on with the next
    // job.
    let runs: i64 = env
        .scalar("SELECT count(*) FROM runs WHERE id = $1", &[&run])
        .await;
    assert_eq!(runs, 0);
    let mut fine = job("p", 0);
    fine.options.validation.scheme = CvScheme::StratifiedKFold;
    fine.train.cv.folds = 3;
    let next = start(&env, &fine).await;
    until_state(&env, next, "finished").await;
    assert_eq!(env.queue_depth("train").await, 0);
    let dead: i64 = env.scalar("SELECT count(*) FROM dead_letters", &[]).await;
    assert_eq!(dead, 0);
    worker.terminate().await;
    env.finish(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_given_up_on_after_its_attempts_fails_its_run() {
    let env = TestEnv::new().await;
    seed(&env, "p", 12, 6, false).await;
    // A fault in the real database: storing unit 2 always fails (a transient error, so the unit
    // is retried until MAX_ATTEMPTS).
    let client = env.pool.get().await.unwrap();
    client
        .batch_execute(
            "CREATE FUNCTION refuse_unit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.unit = 2 AND NEW.state = 'done' THEN RAISE EXCEPTION 'injected fault'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_unit BEFORE UPDATE ON run_units
               FOR EACH ROW EXECUTE FUNCTION refuse_unit();",
        )
        .await
        .unwrap();
    let worker = train_worker(&env, &[SMALL_UNITS, ("MAX_ATTEMPTS", "2")]);
    let run = start(&env, &job("p", 0)).await;
    let p = until_state(&env, run, "failed").await;
    let reason = p.reason.unwrap();
    assert!(
        reason.contains("unit 2") && reason.contains("injected fault"),
        "{reason}"
    );
    let status = env.cli(&["status", &run.to_string()]).await;
    assert!(
        status.contains("failed") && status.contains("unit 2"),
        "{status}"
    );
    // The unit is an operator's dead letter too (the fault is the system's, not the user's).
    env.wait_count(
        "the unit's dead letter",
        "SELECT count(*) FROM dead_letters WHERE message_type = 'train.unit.v1'",
        &[],
        1,
    )
    .await;
    let runs: i64 = env
        .scalar("SELECT count(*) FROM runs WHERE id = $1", &[&run])
        .await;
    assert_eq!(runs, 0);
    worker.terminate().await;
    env.finish(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_whose_worker_keeps_dying_fails_its_run_instead_of_looping() {
    let env = TestEnv::new().await;
    seed(&env, "p", 12, 6, false).await;
    // Storing unit 2 hangs (a stand-in for a unit that takes its worker down): each worker that
    // takes it is SIGKILLed there.
    let client = env.pool.get().await.unwrap();
    client
        .batch_execute(
            "CREATE FUNCTION hang_unit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.unit = 2 AND NEW.state = 'done' THEN PERFORM pg_sleep(600); END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER hang_unit BEFORE UPDATE ON run_units
               FOR EACH ROW EXECUTE FUNCTION hang_unit();",
        )
        .await
        .unwrap();
    // One delivery at a time: a killed worker returns unit 2 alone (the broker counts a
    // return as a delivery of every message the worker held, prefetched ones too).
    let settings = [
        SMALL_UNITS,
        ("MAX_ATTEMPTS", "2"),
        ("PREFETCH", "1"),
        ("CONCURRENCY", "1"),
    ];
    let run = start(&env, &job("p", 0)).await;
    let hanging = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event = 'PgSleep'";
    for _ in 0..2 {
        let worker = train_worker(&env, &settings);
        env.wait_count("a worker storing unit 2", hanging, &[], 1)
            .await;
        worker.kill().await;
        // The server would notice the dead client only at its next read; end its session now.
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event = 'PgSleep'",
                &[],
            )
            .await
            .unwrap();
        env.wait_count("no session storing unit 2", hanging, &[], 0)
            .await;
    }
    // The third delivery of unit 2 is not handled again: the run fails with why.
    let worker = train_worker(&env, &settings);
    let p = until_state(&env, run, "failed").await;
    let reason = p.reason.unwrap();
    assert!(
        reason.contains("unit 2") && reason.contains("delivered 2 times without an outcome"),
        "{reason}"
    );
    env.wait_count(
        "the unit's dead letter",
        "SELECT count(*) FROM dead_letters WHERE message_type = 'train.unit.v1'",
        &[],
        1,
    )
    .await;
    let hung: i64 = env.scalar(hanging, &[]).await;
    assert_eq!(hung, 0, "unit 2 was handled a third time");
    worker.terminate().await;
    env.finish(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_computes_no_unit_after_the_cancel() {
    let env = TestEnv::new().await;
    seed(&env, "p", 30, 12, false).await;
    let worker = train_worker(&env, &[SMALL_UNITS, ("CONCURRENCY", "2")]);
    let run = start(&env, &job("p", 60)).await;
    until_done(&env, run, 10).await;
    let said = env.cli(&["cancel", &run.to_string()]).await;
    assert!(said.contains("cancelled"), "{said}");
    let p = until_state(&env, run, "cancelled").await;
    let status = env.cli(&["status", &run.to_string()]).await;
    assert!(status.contains("cancelled"), "{status}");
    assert!(
        p.units_done < p.units_total,
        "the run finished before the cancel"
    );
    // Every unit message is handled (skipped ones included) before the counts below.
    let messages = 1 + p.units_total as i64 - 1;
    env.wait_count(
        "train deliveries handled",
        "SELECT count(*) FROM processed_messages WHERE queue = $1",
        &[&env.topology.queue("train")],
        messages,
    )
    .await;
    let after: i64 = env
        .scalar(
            "SELECT count(*) FROM run_units u JOIN run_jobs j USING (run_id)
             WHERE u.run_id = $1 AND (u.started_at > j.finished_at OR u.done_at > j.finished_at)",
            &[&run],
        )
        .await;
    assert_eq!(after, 0, "units computed or stored after the cancel");
    let never: i64 = env
        .scalar(
            "SELECT count(*) FROM run_units WHERE run_id = $1 AND attempts = 0",
            &[&run],
        )
        .await;
    assert!(never > 0, "every unit was computed");
    let runs: i64 = env
        .scalar("SELECT count(*) FROM runs WHERE id = $1", &[&run])
        .await;
    assert_eq!(runs, 0);
    // Its report says it was cancelled, and how far it got.
    let said = env.cli(&["report", "show", &run.to_string()]).await;
    assert!(
        said.contains("was cancelled")
            && said.contains(&format!("{} of {} work units", p.units_done, p.units_total)),
        "{said}"
    );
    // A second cancel says there is nothing to cancel.
    let said = env.cli_fails(&["cancel", &run.to_string()]).await;
    assert!(said.contains("cancelled already"), "{said}");
    worker.terminate().await;
    env.finish(Vec::new()).await;
}
