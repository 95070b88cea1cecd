//! The deployment manifests, checked for wiring: `deploy/k8s` rendered with `kubectl kustomize`
//! (or `kustomize build`), and `compose.yaml` resolved by `docker-compose config`. Every worker
//! of the runtime (`topology::WORKERS`) has a Deployment whose probes hit its HTTP port, a grace
//! period that covers the drain, resources, its own Secret, and a KEDA ScaledObject on its own
//! queue; one namespace throughout; no Secret in the repository.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use swarm_runtime::topology::{Topology, WORKERS};

use crate::helpers::root;

/// Renders a kustomization with whichever tool is installed.
fn kustomize(dir: &Path) -> String {
    let attempts: [(&str, Vec<&str>); 2] = [
        (
            "kubectl",
            vec!["kustomize", "--load-restrictor", "LoadRestrictionsNone"],
        ),
        (
            "kustomize",
            vec!["build", "--load-restrictor", "LoadRestrictionsNone"],
        ),
    ];
    let mut errors = Vec::new();
    for (tool, args) in attempts {
        match Command::new(tool).args(&args).arg(dir).output() {
            Ok(out) if out.status.success() => return String::from_utf8(out.stdout).unwrap(),
            Ok(out) => panic!(
                "{tool} {args:?} {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => errors.push(format!("{tool}: {e}")),
        }
    }
    panic!(
        "neither kubectl nor kustomize is installed ({}); apt-get install kubectl",
        errors.join("; ")
    )
}

/// The documents of a YAML stream, as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("valid YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for key in path {
        v = v.get(*key)?;
    }
    v.as_str()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            str_of(d, &["kind"]) == Some(kind) && str_of(d, &["metadata", "name"]) == Some(name)
        })
        .unwrap_or_else(|| panic!("a {kind} named {name}"))
}

/// The generated ConfigMap `swarm-config-<hash>` as a map.
fn swarm_config(docs: &[Value]) -> BTreeMap<String, String> {
    let config = docs
        .iter()
        .find(|d| {
            str_of(d, &["kind"]) == Some("ConfigMap")
                && str_of(d, &["metadata", "name"]).is_some_and(|n| n.starts_with("swarm-config"))
        })
        .expect("the swarm-config ConfigMap");
    serde_json::from_value(config["data"].clone()).unwrap()
}

fn check_rendering(dir: &str) {
    let rendered = kustomize(&root().join(dir));
    let docs = documents(&rendered);
    assert!(!docs.is_empty(), "{dir} renders something");

    // One namespace for everything namespaced; no Secret in the repository.
    let namespaces: std::collections::BTreeSet<&str> = docs
        .iter()
        .filter(|d| str_of(d, &["kind"]) != Some("Namespace"))
        .map(|d| str_of(d, &["metadata", "namespace"]).unwrap_or("<none>"))
        .collect();
    assert_eq!(
        namespaces.len(),
        1,
        "{dir}: one namespace, found {namespaces:?}"
    );
    for d in &docs {
        assert_ne!(
            str_of(d, &["kind"]),
            Some("Secret"),
            "{dir}: a Secret in the repository"
        );
    }
    if let Some(ns) = docs
        .iter()
        .find(|d| str_of(d, &["kind"]) == Some("Namespace"))
    {
        let name = str_of(ns, &["metadata", "name"]).unwrap();
        assert!(
            namespaces.contains(name),
            "{dir}: the Namespace {name} is the one used"
        );
    }

    let config = swarm_config(&docs);
    let amqp_namespace = &config["SWARM_NAMESPACE"];
    let port: i64 = config["HTTP_ADDR"]
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("HTTP_ADDR has a port");
    let drain: i64 = config["SHUTDOWN_TIMEOUT"].parse().unwrap();
    assert_eq!(config["MIGRATE"], "false", "workers do not migrate");
    assert_eq!(
        config["DECLARE_TOPOLOGY"], "false",
        "workers do not declare"
    );
    for key in ["AMQP_URL", "DATABASE_URL"] {
        assert!(!config.contains_key(key), "{key} belongs in a Secret");
    }
    let topology = Topology::new(amqp_namespace.clone());

    let mut scaled = 0;
    for (worker, _) in WORKERS {
        let name = format!("swarm-{worker}");
        let deployment = find(&docs, "Deployment", &name);
        let spec = &deployment["spec"]["template"]["spec"];
        let grace = spec["terminationGracePeriodSeconds"]
            .as_i64()
            .expect("a grace period");
        // A worker may set its own drain (train: units of seconds).
        let drain = spec["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| str_of(e, &["name"]) == Some("SHUTDOWN_TIMEOUT"))
            .and_then(|e| str_of(e, &["value"])?.parse::<i64>().ok())
            .unwrap_or(drain);
        assert!(
            grace > drain && grace <= drain + 30,
            "{dir} {name}: grace {grace} s should cover the {drain} s drain, and not by much"
        );
        assert_eq!(spec["securityContext"]["runAsNonRoot"], Value::Bool(true));
        let container = &spec["containers"][0];
        assert_eq!(
            container["command"],
            json!([name]),
            "{dir}: {name} runs its binary"
        );
        let ports = container["ports"].as_array().expect("ports");
        let http = ports
            .iter()
            .find(|p| p["name"] == "http")
            .expect("a port named http");
        assert_eq!(
            http["containerPort"].as_i64(),
            Some(port),
            "{name}: HTTP_ADDR's port"
        );
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &container[probe]["httpGet"];
            assert_eq!(str_of(get, &["path"]), Some(path), "{name} {probe}");
            let probe_port = &get["port"];
            assert!(
                probe_port == "http" || probe_port.as_i64() == Some(port),
                "{name} {probe} on port {probe_port:?}, the worker serves {port}"
            );
        }
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    !container["resources"][kind][resource].is_null(),
                    "{name}: resources.{kind}.{resource}"
                );
            }
        }
        let env_from = container["envFrom"].as_array().expect("envFrom");
        assert!(
            env_from
                .iter()
                .any(|e| str_of(e, &["secretRef", "name"]) == Some(name.as_str())),
            "{name} reads its own Secret"
        );
        assert!(
            env_from.iter().any(|e| {
                str_of(e, &["configMapRef", "name"]).is_some_and(|n| n.starts_with("swarm-config"))
            }),
            "{name} reads swarm-config"
        );
        for env in container["env"].as_array().into_iter().flatten() {
            let key = str_of(env, &["name"]).unwrap_or_default();
            assert!(
                !matches!(key, "AMQP_URL" | "DATABASE_URL") || env.get("value").is_none(),
                "{name}: {key} must come from a Secret"
            );
        }

        // Its ScaledObject, on its own queue in the definitions' vhost.
        let so = find(&docs, "ScaledObject", &name);
        assert_eq!(
            str_of(so, &["spec", "scaleTargetRef", "name"]),
            Some(name.as_str())
        );
        let triggers = so["spec"]["triggers"].as_array().expect("triggers");
        assert_eq!(triggers.len(), 1);
        let trigger = &triggers[0];
        assert_eq!(str_of(trigger, &["type"]), Some("rabbitmq"));
        assert_eq!(
            str_of(trigger, &["metadata", "queueName"]),
            Some(topology.queue(worker).as_str()),
            "{name} scales on its own queue"
        );
        assert_eq!(str_of(trigger, &["metadata", "vhostName"]), Some("swarm"));
        let threshold: u32 = str_of(trigger, &["metadata", "value"])
            .and_then(|v| v.parse().ok())
            .expect("a numeric threshold");
        assert!(threshold > 0);
        let auth = str_of(trigger, &["authenticationRef", "name"]).expect("authenticationRef");
        find(&docs, "TriggerAuthentication", auth);
        let (min, max) = (
            so["spec"]["minReplicaCount"].as_i64().unwrap_or(0),
            so["spec"]["maxReplicaCount"]
                .as_i64()
                .expect("maxReplicaCount"),
        );
        assert!(min >= 1 && max >= min, "{name}: {min}..{max} replicas");
        scaled += 1;
    }
    let scaled_objects = docs
        .iter()
        .filter(|d| str_of(d, &["kind"]) == Some("ScaledObject"))
        .count();
    assert_eq!(
        scaled_objects, scaled,
        "one ScaledObject per worker, no other"
    );

    let job = find(&docs, "Job", "swarm-migrate");
    let init = &job["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["command"], json!(["swarm", "migrate"]));
}

#[test]
fn the_kubernetes_base_and_overlay_render_and_are_wired() {
    check_rendering("deploy/k8s/base");
    check_rendering("deploy/k8s/overlays/example");
}

/// `docker-compose config`: compose.yaml resolved (anchors, defaults); None without the tool.
fn compose_config(profile: Option<&str>) -> Option<Value> {
    let mut command = Command::new("docker-compose");
    command.current_dir(root());
    if let Some(p) = profile {
        command.args(["--profile", p]);
    }
    let out = match command.arg("config").output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("docker-compose is not installed ({e}): compose.yaml not checked");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("UTF-8");
    Some(serde_saphyr::from_str(&yaml).expect("valid YAML"))
}

#[test]
fn compose_runs_each_worker_as_its_own_user_with_replicas_and_health_checks() {
    let Some(config) = compose_config(Some("demo")) else {
        return;
    };
    let services = &config["services"];
    for (worker, _) in WORKERS {
        let service = &services[worker];
        assert!(service.is_object(), "a {worker} service");
        assert!(
            service["deploy"]["replicas"]
                .as_i64()
                .is_some_and(|r| r >= 1),
            "{worker}: deploy.replicas"
        );
        let test = service["healthcheck"]["test"].to_string();
        assert!(
            test.contains("/healthz"),
            "{worker}: health check on /healthz"
        );
        for dependency in ["rabbitmq", "postgres"] {
            assert_eq!(
                str_of(service, &["depends_on", dependency, "condition"]),
                Some("service_healthy"),
                "{worker} waits for {dependency}"
            );
        }
        assert_eq!(
            str_of(service, &["depends_on", "roles", "condition"]),
            Some("service_completed_successfully"),
            "{worker} waits for the migration and the roles"
        );
        let env = &service["environment"];
        assert_eq!(str_of(env, &["MIGRATE"]), Some("false"));
        assert_eq!(str_of(env, &["DECLARE_TOPOLOGY"]), Some("false"));
        let amqp = str_of(env, &["AMQP_URL"]).unwrap();
        assert!(
            amqp.starts_with(&format!("amqp://swarm-{worker}:")) && amqp.ends_with("/swarm"),
            "{worker}: its own broker user in vhost swarm, not {amqp}"
        );
        let db = str_of(env, &["DATABASE_URL"]).unwrap();
        assert!(
            db.starts_with(&format!("postgres://swarm_{worker}:")),
            "{worker}: its own database role"
        );
    }
    for (service, healthy) in [("rabbitmq", true), ("postgres", true)] {
        assert_eq!(
            !services[service]["healthcheck"].is_null(),
            healthy,
            "{service} has a health check"
        );
    }
    assert_eq!(
        str_of(&services["roles"], &["depends_on", "migrate", "condition"]),
        Some("service_completed_successfully")
    );
    let demo = &services["demo"];
    assert_eq!(
        demo["profiles"],
        json!(["demo"]),
        "the demo runs only with --profile demo"
    );
    // And the file is valid without the profile too (`docker compose config -q`).
    compose_config(None).unwrap();
}

#[test]
fn the_demo_data_set_loads() {
    for site in ["site-a", "site-b", "site-c"] {
        let path = root().join(format!("deploy/demo/{site}.csv"));
        let file = std::fs::File::open(&path).unwrap();
        let samples = swarm::load::read_feature_table(&path, file).unwrap();
        assert_eq!(samples.len(), 40, "{site}");
        let patients = samples.iter().filter(|s| s.label == "patient").count();
        assert_eq!(patients, 20, "{site}: balanced classes");
    }
}
