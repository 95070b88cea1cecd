//! `deploy/rabbitmq/definitions.json` applied to the real broker, in a vhost of the test's own
//! with its users renamed (`sec-<id>-swarm-site`, …) and given passwords: each user can do its
//! job and nothing more. A site publishes jobs only: `ingest.v1`, and `train.v1` or `stats.v1`
//! for the train queue.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{json, Value};
use swarm_runtime::topology::{Topology, DELIVERY_LIMIT, WORKERS};

use crate::helpers::{amqp_authority, rabbitmqctl, root, short_id, BrokerAccounts};

/// The namespace and vhost the definitions are written for.
const NAMESPACE: &str = "swarm";
const VHOST: &str = "swarm";

fn definitions() -> Value {
    let path = root().join("deploy/rabbitmq/definitions.json");
    let text = std::fs::read_to_string(&path).expect("deploy/rabbitmq/definitions.json exists");
    serde_json::from_str(&text).expect("definitions.json is JSON")
}

fn array<'a>(defs: &'a Value, key: &str) -> &'a Vec<Value> {
    defs[key]
        .as_array()
        .unwrap_or_else(|| panic!("definitions.json has a {key:?} array"))
}

/// The definitions for a vhost and user prefix of a test's own, with a password for each user.
fn for_test(defs: &Value, vhost: &str, prefix: &str, password: &str) -> Value {
    let mut defs = defs.clone();
    defs["vhosts"] = json!([{ "name": vhost }]);
    for user in defs["users"].as_array_mut().unwrap() {
        let name = user["name"].as_str().unwrap();
        user["name"] = json!(format!("{prefix}{name}"));
        let user = user.as_object_mut().unwrap();
        user.remove("password_hash");
        user.insert("password".into(), json!(password));
    }
    for key in ["permissions", "topic_permissions"] {
        for p in defs[key].as_array_mut().unwrap() {
            let name = p["user"].as_str().unwrap();
            p["user"] = json!(format!("{prefix}{name}"));
        }
    }
    for key in [
        "permissions",
        "topic_permissions",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ] {
        for item in defs[key].as_array_mut().unwrap() {
            assert_eq!(
                item["vhost"], VHOST,
                "every definition is for vhost {VHOST}"
            );
            item["vhost"] = json!(vhost);
        }
    }
    defs
}

/// The definitions applied in a vhost of this test's own.
pub(crate) struct Applied {
    pub(crate) accounts: BrokerAccounts,
    prefix: String,
    password: String,
}

impl Applied {
    pub(crate) fn new() -> Self {
        let id = short_id();
        let vhost = format!("swarm-sec-{id}");
        let prefix = format!("sec-{id}-");
        let password = format!("pw-{}", short_id());
        let defs = for_test(&definitions(), &vhost, &prefix, &password);
        let users = array(&defs, "users")
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_string())
            .collect();
        // Dropped (users and vhost deleted) even if the import fails half-way.
        let accounts = BrokerAccounts { vhost, users };
        let file = std::env::temp_dir().join(format!("swarm-definitions-{id}.json"));
        std::fs::write(&file, serde_json::to_vec(&defs).unwrap()).unwrap();
        rabbitmqctl(&["-q", "import_definitions", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(&file);
        Self {
            accounts,
            prefix,
            password,
        }
    }

    pub(crate) async fn connect(&self, user: &str) -> Connection {
        Connection::connect(&self.url(user), ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{user} can log in to its vhost: {e}"))
    }

    /// The AMQP URL of one of the definitions' users (e.g. `swarm-ingest`) in this vhost.
    pub(crate) fn url(&self, user: &str) -> String {
        format!(
            "amqp://{}{user}:{}@{}/{}",
            self.prefix,
            self.password,
            amqp_authority(),
            self.accounts.vhost
        )
    }
}

const STEP: Duration = Duration::from_secs(30);

/// Runs `operation` on a fresh channel and waits (up to [`STEP`]) for the broker's answer; Err
/// with that answer if the broker refused.
async fn probe<T, F, Fut>(connection: &Connection, operation: F) -> Result<T, String>
where
    F: FnOnce(Channel) -> Fut,
    Fut: Future<Output = Result<T, lapin::Error>>,
{
    let attempt = async {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        operation(channel).await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(STEP, attempt)
        .await
        .unwrap_or_else(|_| Err("no answer from the broker".into()))
}

/// Publishes with publisher confirms on a fresh channel; Err with the broker's answer if refused.
async fn publish(connection: &Connection, exchange: &str, routing_key: &str) -> Result<(), String> {
    let confirm = probe(connection, |channel| async move {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default()
                    .with_message_id("security-test".into())
                    .with_type(routing_key.into()),
            )
            .await?
            .await
    })
    .await?;
    if confirm.is_nack() {
        return Err("nacked".to_string());
    }
    Ok(())
}

/// Starts a consumer on a fresh channel.
async fn consume(connection: &Connection, queue: &str) -> Result<(), String> {
    probe(connection, |channel| async move {
        channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    })
    .await
}

/// Takes one message with basic.get (and acks it); Ok(false) when the queue is empty.
async fn get(connection: &Connection, queue: &str) -> Result<bool, String> {
    probe(connection, |channel| async move {
        let message = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await?;
        Ok(message.is_some())
    })
    .await
}

/// Declares a queue (passively: only looks) and returns its ready messages.
async fn depth(connection: &Connection, queue: &str, passive: bool) -> Result<u32, String> {
    probe(connection, |channel| async move {
        let options = QueueDeclareOptions {
            passive,
            durable: true,
            ..Default::default()
        };
        let q = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await?;
        Ok(q.message_count())
    })
    .await
}

/// Deletes a queue.
async fn delete(connection: &Connection, queue: &str) -> Result<(), String> {
    probe(connection, |channel| async move {
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await?;
        Ok(())
    })
    .await
}

#[track_caller]
fn allowed<T: std::fmt::Debug>(what: &str, result: Result<T, String>) -> T {
    result.unwrap_or_else(|e| panic!("{what} should be allowed, but: {e}"))
}

#[track_caller]
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, String>) {
    match result {
        Ok(v) => panic!("{what} should be refused, but it succeeded ({v:?})"),
        Err(e) => assert!(
            e.contains("ACCESS_REFUSED") || e.contains("access to") || e.contains("AccessRefused"),
            "{what} should be refused for lack of permission, but failed otherwise: {e}"
        ),
    }
}

/// Fails unless `queue` holds `expected` ready messages, as the operator sees it.
async fn assert_depth(operator: &Connection, queue: &str, expected: u32) {
    let n = allowed("operator: depth", depth(operator, queue, true).await);
    assert_eq!(n, expected, "messages in {queue}");
}

fn queue(worker: &str) -> String {
    Topology::new(NAMESPACE).queue(worker)
}

fn dead_queue(worker: &str) -> String {
    Topology::new(NAMESPACE).dead_queue(worker)
}

#[test]
fn definitions_hold_no_secret_and_declare_the_runtimes_topology() {
    let defs = definitions();
    for user in array(&defs, "users") {
        let name = user["name"].as_str().unwrap();
        assert!(
            user.get("password").is_none(),
            "{name} has a plaintext password"
        );
        assert_eq!(
            user["password_hash"], "",
            "{name}: no password hash in the repository (set one with rabbitmqctl change_password)"
        );
    }
    assert_eq!(array(&defs, "vhosts"), &vec![json!({ "name": VHOST })]);
    let global = defs.get("global_parameters").and_then(Value::as_array);
    assert!(
        global.is_none_or(|g| g.is_empty()),
        "no cluster-wide settings"
    );

    let topology = Topology::new(NAMESPACE);
    let mut expected_queues = BTreeSet::new();
    let mut expected_bindings = BTreeSet::new();
    for (worker, types) in WORKERS {
        let q = topology.queue(worker);
        let dead = topology.dead_queue(worker);
        let declared = array(&defs, "queues")
            .iter()
            .find(|d| d["name"] == q.as_str())
            .unwrap_or_else(|| panic!("definitions.json declares {q}"));
        assert_eq!(
            declared["arguments"],
            json!({
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": topology.dead_exchange(),
                "x-dead-letter-routing-key": q,
                "x-delivery-limit": DELIVERY_LIMIT,
            }),
            "{q} has the arguments the runtime declares (topology.rs), or workers would fail"
        );
        expected_queues.insert(q.clone());
        expected_queues.insert(dead.clone());
        for t in types {
            expected_bindings.insert((topology.exchange(), q.clone(), t.to_string()));
        }
        expected_bindings.insert((topology.dead_exchange(), dead.clone(), q.clone()));
        expected_bindings.insert((topology.exchange(), dead, topology.dead_routing_key(worker)));
        // The worker's user reads its own queue only.
        let user = format!("swarm-{worker}");
        let permission = array(&defs, "permissions")
            .iter()
            .find(|p| p["user"] == user.as_str())
            .unwrap_or_else(|| panic!("{user} has permissions"));
        assert_eq!(permission["read"], format!("^{}$", q.replace('.', "\\.")));
        assert_eq!(permission["configure"], "^$");
    }
    let queues: BTreeSet<String> = array(&defs, "queues")
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(queues, expected_queues);
    let bindings: BTreeSet<(String, String, String)> = array(&defs, "bindings")
        .iter()
        .map(|b| {
            (
                b["source"].as_str().unwrap().to_string(),
                b["destination"].as_str().unwrap().to_string(),
                b["routing_key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        bindings, expected_bindings,
        "the bindings of definitions.json are the runtime's (topology::WORKERS)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_user_publishes_ingest_and_train_only_and_reads_nothing() {
    let applied = Applied::new();
    let operator = applied.connect("swarm-operator").await;
    // The pre-declared topology is exactly what a worker declares: declaring it again (as the
    // operator, who may) changes nothing and fails on no argument.
    let channel = operator.create_channel().await.unwrap();
    Topology::new(NAMESPACE)
        .declare(&channel)
        .await
        .expect("the runtime's declarations match definitions.json");

    let site = applied.connect("swarm-site").await;
    for key in ["ingest.v1", "train.v1", "stats.v1"] {
        allowed(
            &format!("site: {key}"),
            publish(&site, NAMESPACE, key).await,
        );
    }
    for key in ["features.v1", "report.v1"] {
        refused(
            &format!("site: {key}"),
            publish(&site, NAMESPACE, key).await,
        );
    }
    refused(
        "site: a made-up key",
        publish(&site, NAMESPACE, "ingest.v1.x").await,
    );
    refused(
        "site: the dead-letter exchange",
        publish(&site, "swarm.dlx", "swarm.ingest").await,
    );
    refused(
        "site: a dead letter",
        publish(&site, NAMESPACE, "dead.ingest").await,
    );
    refused(
        "site: the default exchange straight into a queue",
        publish(&site, "", &queue("report")).await,
    );
    refused(
        "site: amq.topic",
        publish(&site, "amq.topic", "ingest.v1").await,
    );
    for (worker, _) in WORKERS {
        refused(
            &format!("site: consume {worker}"),
            consume(&site, &queue(worker)).await,
        );
        refused(
            &format!("site: get from {worker}"),
            get(&site, &queue(worker)).await,
        );
        refused(
            &format!("site: consume {worker}'s dead letters"),
            consume(&site, &dead_queue(worker)).await,
        );
    }
    refused(
        "site: declare a queue",
        depth(&site, "swarm.mine", false).await,
    );
    refused(
        "site: delete a queue",
        delete(&site, &queue("ingest")).await,
    );

    // Exactly the two allowed messages arrived, each in its own queue.
    for (worker, expected) in [("ingest", 1), ("features", 0), ("train", 2), ("report", 0)] {
        assert_depth(&operator, &queue(worker), expected).await;
    }
    for (worker, _) in WORKERS {
        assert_depth(&operator, &dead_queue(worker), 0).await;
    }
    let _ = site.close(200, "done".into()).await;
    let _ = operator.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_users_read_only_their_own_queue_and_publish_only_their_output() {
    let applied = Applied::new();
    let operator = applied.connect("swarm-operator").await;
    let site = applied.connect("swarm-site").await;
    allowed(
        "site: ingest.v1",
        publish(&site, NAMESPACE, "ingest.v1").await,
    );

    for (worker, _) in WORKERS {
        let user = format!("swarm-{worker}");
        let connection = applied.connect(&user).await;
        allowed(
            &format!("{user}: consume its queue"),
            consume(&connection, &queue(worker)).await,
        );
        for (other, _) in WORKERS {
            if other != worker {
                refused(
                    &format!("{user}: consume {other}'s queue"),
                    consume(&connection, &queue(other)).await,
                );
                refused(
                    &format!("{user}: get from {other}'s queue"),
                    get(&connection, &queue(other)).await,
                );
            }
            refused(
                &format!("{user}: read {other}'s dead letters"),
                consume(&connection, &dead_queue(other)).await,
            );
        }
        // It dead-letters through the namespace's exchange, into its own dead queue only; the
        // dead-letter exchange is the broker's (a direct exchange, which topic permissions
        // could not narrow to one routing key).
        let topology = Topology::new(NAMESPACE);
        allowed(
            &format!("{user}: dead-letter"),
            publish(&connection, NAMESPACE, &topology.dead_routing_key(worker)).await,
        );
        for (other, _) in WORKERS {
            if other != worker {
                refused(
                    &format!("{user}: dead-letter into {other}'s dead queue"),
                    publish(&connection, NAMESPACE, &topology.dead_routing_key(other)).await,
                );
            }
        }
        refused(
            &format!("{user}: the dead-letter exchange"),
            publish(&connection, "swarm.dlx", &queue(worker)).await,
        );
        refused(
            &format!("{user}: declare a queue"),
            depth(&connection, "swarm.mine", false).await,
        );
        refused(
            &format!("{user}: delete its own queue"),
            delete(&connection, &queue(worker)).await,
        );
        refused(
            &format!("{user}: publish as a site"),
            publish(&connection, NAMESPACE, "ingest.v1").await,
        );
        let _ = connection.close(200, "done".into()).await;
    }

    // Each worker publishes only what it emits downstream.
    let ingest = applied.connect("swarm-ingest").await;
    assert!(allowed(
        "ingest: take the site's message",
        get(&ingest, &queue("ingest")).await
    ));
    allowed(
        "ingest: features.v1",
        publish(&ingest, NAMESPACE, "features.v1").await,
    );
    refused(
        "ingest: report.v1",
        publish(&ingest, NAMESPACE, "report.v1").await,
    );
    let train = applied.connect("swarm-train").await;
    allowed(
        "train: report.v1",
        publish(&train, NAMESPACE, "report.v1").await,
    );
    refused(
        "train: train.v1",
        publish(&train, NAMESPACE, "train.v1").await,
    );
    for quiet in ["features", "report"] {
        let connection = applied.connect(&format!("swarm-{quiet}")).await;
        for (_, types) in WORKERS {
            for t in types.iter() {
                refused(
                    &format!("{quiet}: {t}"),
                    publish(&connection, NAMESPACE, t).await,
                );
            }
        }
    }

    // The autoscaler's user sees queue depths and nothing else.
    let keda = applied.connect("swarm-keda").await;
    for (worker, _) in WORKERS {
        allowed(
            "keda: queue depth",
            depth(&keda, &queue(worker), true).await,
        );
        refused("keda: consume", consume(&keda, &queue(worker)).await);
    }
    refused(
        "keda: publish",
        publish(&keda, NAMESPACE, "ingest.v1").await,
    );

    // Only the allowed publishes arrived: one features.v1 and one report.v1, and one dead
    // letter per worker.
    for (worker, expected) in [("ingest", 0), ("features", 1), ("train", 0), ("report", 1)] {
        assert_depth(&operator, &queue(worker), expected).await;
        assert_depth(&operator, &dead_queue(worker), 1).await;
    }
    let _ = operator.close(200, "done".into()).await;
}
