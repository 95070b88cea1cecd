//! `deploy/postgres/roles.sql` applied to a fresh database: each worker role runs its real
//! handler (and the runtime's outbox, sweeper and dead letters) through a whole job, and is
//! refused everything else; `swarm_analyst` (deploy/postgres/analyst.sql, when present) only
//! reads.

use std::time::Instant;

use broker_schemas::{IngestV1, Message, TrainV1};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use swarm_runtime::amqp::Outgoing;
use swarm_runtime::db::Pool;
use swarm_runtime::handler::Handler;
use swarm_runtime::process::{process, Outcome};
use swarm_runtime::{dead, outbox};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::helpers::{root, train_request, TestBroker, TestDb, PATIENCE};

const WORKER_ROLES: [&str; 4] = [
    "swarm_ingest",
    "swarm_features",
    "swarm_train",
    "swarm_report",
];

fn apply_roles(db: &TestDb) -> bool {
    db.psql_file(&root().join("deploy/postgres/roles.sql"));
    let analyst = root().join("deploy/postgres/analyst.sql");
    let has_analyst = analyst.exists();
    if has_analyst {
        db.psql_file(&analyst);
    }
    has_analyst
}

/// Takes the next message of `queue`, waiting for it.
async fn next(channel: &lapin::Channel, queue: &str) -> Delivery {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            return message.delivery;
        }
        assert!(Instant::now() < deadline, "no message in {queue}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Handles the next message of `H`'s queue as `pool`'s role, like the run loop: process, then
/// publish the outbox rows it committed (or dead-letter it), then ack.
async fn step<H: Handler>(broker: &TestBroker, handler: &H, pool: &Pool, role: &str) -> Outcome {
    let queue = broker.topology.queue(H::NAME);
    // The delivery's ack goes over this channel: it lives until then.
    let channel = broker.connection.create_channel().await.unwrap();
    let delivery = next(&channel, &queue).await;
    let outcome = process(handler, pool, &queue, &delivery, None).await;
    match &outcome {
        Outcome::Processed(ids) => {
            let (janitor, task) = outbox::Janitor::spawn(pool.clone());
            outbox::publish(&janitor, &broker.publisher, ids)
                .await
                .unwrap_or_else(|e| panic!("{role} publishes its outbox rows: {e:#}"));
            drop(janitor);
            task.await.unwrap();
            // The janitor only logs a failed delete: the role's privilege is checked here.
            let rows: Vec<i64> = ids.iter().map(|e| e.id).collect();
            outbox::delete(pool, &rows)
                .await
                .unwrap_or_else(|e| panic!("{role} deletes its published outbox rows: {e:#}"));
        }
        Outcome::DeadLettered(reason) => {
            dead::dead_letter(
                pool,
                &broker.publisher,
                &broker.topology,
                H::NAME,
                &delivery,
                reason,
            )
            .await
            .unwrap_or_else(|e| panic!("{role} records a dead letter: {e:#}"));
        }
        other => panic!("{role} could not handle a {queue} message: {other:?}"),
    }
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    let _ = channel.close(200, "done".into()).await;
    outcome
}

/// [`step`], which must process the message (not dead-letter it).
async fn processes<H: Handler>(broker: &TestBroker, handler: &H, pool: &Pool, role: &str) {
    let outcome = step(broker, handler, pool, role).await;
    assert!(matches!(outcome, Outcome::Processed(_)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_role_runs_its_handler_through_a_whole_job() {
    let db = TestDb::new().await;
    apply_roles(&db);
    let broker = TestBroker::new().await;
    let ingest = db.pool_as("swarm_ingest");
    let features = db.pool_as("swarm_features");
    let train = db.pool_as("swarm_train");
    let report = db.pool_as("swarm_report");

    let job = Uuid::now_v7().to_string();
    let data = swarm::synth::vector_dataset(&["north", "south"], 20, 8, 5);
    let mut sites: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for (site, sample) in data {
        sites.entry(site).or_default().push(sample);
    }
    for (site, samples) in &sites {
        let batch = IngestV1 {
            project: "p".into(),
            site: site.clone(),
            samples: samples.clone(),
        };
        broker
            .publisher
            .send(&broker.topology, &batch, Some(&job))
            .await
            .unwrap();
    }
    for _ in &sites {
        processes(
            &broker,
            &swarm_ingest::IngestHandler,
            &ingest,
            "swarm_ingest",
        )
        .await;
        processes(
            &broker,
            &swarm_features::FeaturesHandler,
            &features,
            "swarm_features",
        )
        .await;
    }

    let run_id = Uuid::now_v7();
    let request = train_request(run_id, "p");
    broker
        .publisher
        .send(&broker.topology, &request, Some(&run_id.to_string()))
        .await
        .unwrap();
    // The job, then its units (the last one stores the run): as many deliveries as run_units
    // rows, plus the job's own.
    let train_handler = swarm_train::TrainHandler::default();
    processes(&broker, &train_handler, &train, "swarm_train").await;
    let owner = db.owner.get().await.unwrap();
    let units: i64 = owner
        .query_one(
            "SELECT count(*) FROM run_units WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0);
    drop(owner);
    for _ in 0..units {
        processes(&broker, &train_handler, &train, "swarm_train").await;
    }
    processes(
        &broker,
        &swarm_report::ReportHandler::default(),
        &report,
        "swarm_report",
    )
    .await;

    let owner = db.owner.get().await.unwrap();
    let reports: i64 = owner
        .query_one("SELECT count(*) FROM reports WHERE run_id = $1", &[&run_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        reports, 1,
        "the report worker stored the report as swarm_report"
    );

    // Every role records dead letters and runs the outbox sweeper.
    for (worker, pool, role) in [
        ("ingest", &ingest, "swarm_ingest"),
        ("features", &features, "swarm_features"),
        ("train", &train, "swarm_train"),
        ("report", &report, "swarm_report"),
    ] {
        let out = Outgoing {
            exchange: broker.topology.exchange(),
            routing_key: match worker {
                "ingest" => IngestV1::TYPE,
                "features" => broker_schemas::FeaturesV1::TYPE,
                "train" => TrainV1::TYPE,
                _ => broker_schemas::ReportV1::TYPE,
            }
            .into(),
            message_type: "nonsense.v0".into(),
            message_id: Uuid::now_v7().to_string(),
            correlation_id: None,
            headers: Default::default(),
            body: b"not msgpack".to_vec(),
        };
        broker.publisher.publish(&out).await.unwrap();
        let outcome = match worker {
            "ingest" => step(&broker, &swarm_ingest::IngestHandler, pool, role).await,
            "features" => step(&broker, &swarm_features::FeaturesHandler, pool, role).await,
            "train" => step(&broker, &swarm_train::TrainHandler::default(), pool, role).await,
            _ => step(&broker, &swarm_report::ReportHandler::default(), pool, role).await,
        };
        assert!(matches!(outcome, Outcome::DeadLettered(_)), "{outcome:?}");
        outbox::sweep(pool, &broker.publisher, &broker.topology)
            .await
            .unwrap_or_else(|e| panic!("{role} runs the outbox sweep: {e:#}"));
    }
    let dead: i64 = owner
        .query_one("SELECT count(*) FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 4);
    drop(owner);
    for pool in [ingest, features, train, report] {
        pool.close();
    }
    broker.finish().await;
}

/// Runs `sql` as `role` (through SET ROLE on an owner's connection, so NOLOGIN roles work too)
/// and returns the error's SQL state, None if it succeeded.
async fn attempt(db: &TestDb, role: &str, sql: &str) -> Option<SqlState> {
    let mut client = db.owner.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!("SET LOCAL ROLE {role}"))
        .await
        .unwrap();
    let result = tx.batch_execute(sql).await;
    let _ = tx.rollback().await;
    result
        .err()
        .map(|e| e.code().cloned().unwrap_or(SqlState::INTERNAL_ERROR))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_refused_everything_beyond_their_job() {
    let db = TestDb::new().await;
    let has_analyst = apply_roles(&db);
    // Applying twice is harmless (idempotent) and changes nothing.
    apply_roles(&db);

    let everyone_refused = [
        "DELETE FROM samples",
        "TRUNCATE samples",
        "DELETE FROM runs",
        "DELETE FROM reports",
        "DELETE FROM processed_messages",
        "SELECT * FROM dead_letters",
        "UPDATE dead_letters SET reason = ''",
        "SELECT * FROM schema_migrations",
        "DROP TABLE reports",
        "ALTER TABLE samples ADD COLUMN x int",
        "CREATE TABLE mine (x int)",
        "CREATE INDEX ON samples (subject)",
    ];
    let refused_to: &[(&str, &[&str])] = &[
        (
            "swarm_ingest",
            &[
                "SELECT * FROM runs",
                "SELECT * FROM features",
                "SELECT * FROM reports",
                "INSERT INTO features (sample_id) VALUES (1)",
                "UPDATE projects SET dimension = 0",
            ],
        ),
        (
            "swarm_features",
            &[
                "UPDATE samples SET label = 'x'",
                "INSERT INTO projects (name, kind, dimension) VALUES ('x', 'vector', 1)",
                "SELECT * FROM runs",
                "SELECT * FROM projects",
            ],
        ),
        (
            "swarm_train",
            &[
                "UPDATE samples SET label = 'x'",
                "UPDATE runs SET model = 'x'",
                "INSERT INTO reports (run_id) VALUES (gen_random_uuid())",
                "SELECT * FROM reports",
                "INSERT INTO samples (project) VALUES ('x')",
            ],
        ),
        (
            "swarm_report",
            &[
                "UPDATE runs SET model = 'x'",
                "INSERT INTO runs (id) VALUES (gen_random_uuid())",
                "UPDATE folds SET accuracy = 0",
                "SELECT * FROM samples",
                "SELECT * FROM features",
            ],
        ),
    ];
    let mut wrong = Vec::new();
    for role in WORKER_ROLES {
        let own = refused_to
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, s)| *s)
            .unwrap();
        for sql in everyone_refused.iter().chain(own) {
            let state = attempt(&db, role, sql).await;
            if state != Some(SqlState::INSUFFICIENT_PRIVILEGE) {
                wrong.push(format!("{role}: {sql} -> {state:?}"));
            }
        }
    }
    // What each may do, checked the same way (the handlers test shows it suffices).
    let allowed: &[(&str, &str)] = &[
        ("swarm_ingest", "SELECT id FROM samples LIMIT 1"),
        ("swarm_features", "SELECT id FROM samples LIMIT 1"),
        ("swarm_train", "SELECT * FROM features LIMIT 1"),
        ("swarm_report", "SELECT * FROM runs LIMIT 1"),
        ("swarm_report", "SELECT * FROM reports LIMIT 1"),
    ];
    for (role, sql) in allowed {
        if let Some(state) = attempt(&db, role, sql).await {
            wrong.push(format!("{role}: {sql} -> {state:?}, should be allowed"));
        }
    }

    if has_analyst {
        for sql in [
            "SELECT count(*) FROM report_summary",
            "SELECT count(*) FROM run_metrics",
        ] {
            if let Some(state) = attempt(&db, "swarm_analyst", sql).await {
                wrong.push(format!(
                    "swarm_analyst: {sql} -> {state:?}, should be allowed"
                ));
            }
        }
        for sql in everyone_refused.iter().chain(&[
            "INSERT INTO reports (run_id) VALUES (gen_random_uuid())",
            "UPDATE runs SET model = 'x'",
            "INSERT INTO samples (project) VALUES ('x')",
            "DELETE FROM features",
            "INSERT INTO outbox (message_id) VALUES ('x')",
        ]) {
            let state = attempt(&db, "swarm_analyst", sql).await;
            if state != Some(SqlState::INSUFFICIENT_PRIVILEGE) {
                wrong.push(format!("swarm_analyst: {sql} -> {state:?}"));
            }
        }
    } else {
        eprintln!("deploy/postgres/analyst.sql does not exist yet: swarm_analyst not checked");
    }
    assert!(
        wrong.is_empty(),
        "privileges that are not least:\n{}",
        wrong.join("\n")
    );
}
