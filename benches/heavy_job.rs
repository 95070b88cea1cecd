//! One heavy training job over the swarm, next to scikit-learn on the same machine in the same
//! run: a grid search with a permutation test that repeats the grid's choice per permutation.
//!
//! - **digits** (1,797 × 64): RBF SVC, C × gamma 3 × 3, stratified 5-fold,
//!   `HEAVY_PERMUTATIONS` permutations (default 20);
//! - **connectivity** (`HEAVY_SUBJECTS` × 6,670, default 1,000: the upper triangle of 116 regions'
//!   connectivity: latent networks over a noise floor, two groups that differ in one network
//!   and in 5 % of the edges; `benches/shared/mod.rs`): logistic
//!   regression, C 3 values, stratified 5-fold, `HEAVY_CONNECTIVITY_PERMUTATIONS` (default 10).
//!
//! Swarm runs each job through the real broker and database with `swarm worker train`
//! processes: 1 replica × 1 thread, 1 replica × 2 threads, 2 replicas × 1 thread (each in a
//! namespace and database of its own; the clock runs from the publish of `train.v1` to the run's
//! `finished` state, the report excluded). scikit-learn does the same work
//! (`scripts/heavy_job_sklearn.py`: `GridSearchCV` on the observed and on each permuted
//! labelling, the best candidate refitted) with `n_jobs=1` and `n_jobs=-1`,
//! through `$SKLEARN_PYTHON` (default `/work/skl/bin/python`, then `.venv/bin/python`); without
//! it the table shows Swarm's times only. `HEAVY_SETS=digits` runs one data set.
//!
//! The table also gives each configuration's peak resident memory per worker process (`VmHWM`).
//!
//! `cargo bench --bench heavy_job` (a plain main; one run of each cell, which takes minutes and
//! both cores).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use broker_schemas::{TrainOptions, TrainRequest, TrainV1};
use swarm_runtime::Topology;
use uuid::Uuid;

mod shared;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One job's data and request.
struct Job {
    name: &'static str,
    rows: Vec<Vec<f32>>,
    labels: Vec<String>,
    model: &'static str,
    grid: BTreeMap<String, Vec<String>>,
    permutations: u32,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn digits() -> Job {
    let mut reader =
        csv::Reader::from_path(root().join("tests/data/digits.csv")).expect("the data set");
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.expect("a row");
        labels.push(format!("{:02}", record[0].parse::<u32>().expect("a label")));
        rows.push(
            record
                .iter()
                .skip(1)
                .map(|v| v.parse::<f32>().expect("a number"))
                .collect(),
        );
    }
    let mut grid = BTreeMap::new();
    grid.insert("C".into(), vec!["0.1".into(), "1".into(), "10".into()]);
    grid.insert(
        "gamma".into(),
        vec!["0.001".into(), "0.01".into(), "0.1".into()],
    );
    Job {
        name: "digits",
        rows,
        labels,
        model: "svc",
        grid,
        permutations: env_number("HEAVY_PERMUTATIONS", 20) as u32,
    }
}

fn connectivity() -> Job {
    let (rows, patients) = shared::connectivity(env_number("HEAVY_SUBJECTS", 1000));
    let labels = patients
        .iter()
        .map(|&p| if p { "patient" } else { "control" }.into())
        .collect();
    let mut grid = BTreeMap::new();
    grid.insert("C".into(), vec!["0.01".into(), "0.1".into(), "1".into()]);
    Job {
        name: "connectivity",
        rows,
        labels,
        model: "logistic",
        grid,
        permutations: env_number("HEAVY_CONNECTIVITY_PERMUTATIONS", 10) as u32,
    }
}

/// A namespace and database of one measurement.
struct World {
    amqp_url: String,
    database_url: String,
    namespace: String,
    db_name: String,
    server: String,
}

impl World {
    async fn new(job: &Job) -> anyhow::Result<(Self, swarm_runtime::db::Pool)> {
        let id = Uuid::new_v4().simple().to_string()[..12].to_string();
        let server = std::env::var("TEST_DATABASE_SERVER")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into());
        let db_name = format!("swarm_bench_{id}");
        let database_url = format!("{server}/{db_name}");
        let pool = swarm_runtime::db::connect_and_migrate(&database_url, 2).await?;
        let client = pool.get().await?;
        let dims = job.rows[0].len() as i32;
        client
            .execute(
                "INSERT INTO projects (name, kind, dimension) VALUES ('bench', 'vector', $1)",
                &[&dims],
            )
            .await?;
        for (i, (row, label)) in job.rows.iter().zip(&job.labels).enumerate() {
            let values = swarm_runtime::floats::Floats(row);
            let id: i64 = client
                .query_one(
                    r#"INSERT INTO samples (project, site, subject, label, kind, "values", message_id)
                       VALUES ('bench', 'site', $1, $2, 'vector', $3, 'bench') RETURNING id"#,
                    &[&format!("sub-{i:05}"), label, &values],
                )
                .await?
                .get(0);
            client
                .execute(
                    r#"INSERT INTO features (sample_id, extractor, version, "values", message_id)
                       VALUES ($1, 'vector', 1, $2, 'bench')"#,
                    &[&id, &values],
                )
                .await?;
        }
        drop(client);
        let world = Self {
            amqp_url: std::env::var("AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            database_url,
            namespace: format!("bench-{id}"),
            db_name,
            server,
        };
        Ok((world, pool))
    }

    fn worker(&self, threads: usize) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_swarm"))
            .args(["worker", "train"])
            .env("AMQP_URL", &self.amqp_url)
            .env("DATABASE_URL", &self.database_url)
            .env("SWARM_NAMESPACE", &self.namespace)
            .env("TRAIN_THREADS", threads.to_string())
            .env("CONCURRENCY", threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the swarm binary starts")
    }

    async fn clean_up(self, pool: swarm_runtime::db::Pool) -> anyhow::Result<()> {
        pool.close();
        let connection = swarm_runtime::amqp::connect(&self.amqp_url, "bench").await?;
        let channel = connection.create_channel().await?;
        Topology::new(self.namespace.clone()).delete(&channel).await;
        let _ = connection.close(200, "done".into()).await;
        let (client, conn) =
            tokio_postgres::connect(&format!("{}/postgres", self.server), tokio_postgres::NoTls)
                .await?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.db_name
            ))
            .await?;
        Ok(())
    }
}

/// A process's peak resident memory in MiB (`VmHWM`), if it can be read.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// What one Swarm measurement gives: seconds, the run's observed score, and the largest peak
/// resident memory of its worker processes (MiB).
struct Measured {
    seconds: f64,
    score: f64,
    peak_mib: f64,
}

/// Swarm's measurement of the job with `replicas` × `threads`.
async fn swarm(job: &Job, replicas: usize, threads: usize) -> anyhow::Result<Measured> {
    let (world, pool) = World::new(job).await?;
    let connection = swarm_runtime::amqp::connect(&world.amqp_url, "bench").await?;
    let publisher = swarm_runtime::Publisher::new(&connection, "bench").await?;
    let topology = Topology::new(world.namespace.clone());
    topology.declare(publisher.channel()).await?;
    let mut workers: Vec<_> = (0..replicas).map(|_| world.worker(threads)).collect();
    // Every replica consuming before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumers(&connection, &topology.queue("train")).await? < replicas as u32 {
        anyhow::ensure!(Instant::now() < deadline, "the workers did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options = TrainOptions {
        grid: job.grid.clone(),
        permutations: job.permutations,
        ..Default::default()
    };
    let run_id = Uuid::now_v7();
    let request = TrainRequest {
        train: TrainV1 {
            run_id,
            project: "bench".into(),
            model: job.model.into(),
            params: BTreeMap::new(),
            cv: Default::default(),
            sites: vec![],
        },
        options,
    };
    let started = Instant::now();
    publisher
        .send(&topology, &request, Some(&run_id.to_string()))
        .await?;
    let progress = loop {
        let client = pool.get().await?;
        if let Some(p) = swarm_train::runs::progress(&**client, run_id).await? {
            if p.state != "running" {
                break p;
            }
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        progress.state == "finished",
        "the run {}: {:?}",
        progress.state,
        progress.reason
    );
    let client = pool.get().await?;
    let score: f64 = client
        .query_one(
            "SELECT (results->'permutation'->>'observed')::float8 FROM runs WHERE id = $1",
            &[&run_id],
        )
        .await?
        .get(0);
    drop(client);
    let peak_mib = workers
        .iter()
        .filter_map(|w| peak_rss_mib(w.id()))
        .fold(f64::NAN, f64::max);
    for w in &mut workers {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
        let _ = w.wait();
    }
    let _ = connection.close(200, "done".into()).await;
    world.clean_up(pool).await?;
    Ok(Measured {
        seconds,
        score,
        peak_mib,
    })
}

/// Consumers of a queue now.
async fn consumers(connection: &lapin::Connection, queue: &str) -> anyhow::Result<u32> {
    let channel = connection.create_channel().await?;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = channel
        .queue_declare(queue.into(), passive, Default::default())
        .await?;
    let _ = channel.close(200, "done".into()).await;
    Ok(q.consumer_count())
}

fn python() -> Option<String> {
    [
        std::env::var("SKLEARN_PYTHON").ok(),
        Some("/work/skl/bin/python".into()),
        Some(root().join(".venv/bin/python").display().to_string()),
    ]
    .into_iter()
    .flatten()
    .find(|p| {
        Command::new(p)
            .args(["-c", "import sklearn"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// scikit-learn's seconds and observed score with `n_jobs`.
fn sklearn(python: &str, job: &Job, n_jobs: i32) -> anyhow::Result<(f64, f64)> {
    let dir = std::env::temp_dir().join(format!("heavy-job-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rows = dir.join(format!("{}.f64", job.name));
    let labels = dir.join(format!("{}.txt", job.name));
    let bytes: Vec<u8> = job
        .rows
        .iter()
        .flatten()
        .flat_map(|v| f64::from(*v).to_ne_bytes())
        .collect();
    std::fs::write(&rows, bytes)?;
    std::fs::write(&labels, job.labels.join("\n") + "\n")?;
    let out = Command::new(python)
        .arg(root().join("scripts/heavy_job_sklearn.py"))
        .arg(&rows)
        .arg(&labels)
        .arg(job.rows[0].len().to_string())
        .arg(job.model)
        .arg(serde_json::to_string(&job.grid)?)
        .arg("5")
        .arg(job.permutations.to_string())
        .arg(n_jobs.to_string())
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        out.status.success(),
        "scikit-learn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((
        result["seconds"].as_f64().unwrap_or(f64::NAN),
        result["score"].as_f64().unwrap_or(f64::NAN),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sets = std::env::var("HEAVY_SETS").unwrap_or_else(|_| "digits,connectivity".into());
    let python = python();
    if python.is_none() {
        eprintln!("scikit-learn not found (set SKLEARN_PYTHON): showing Swarm's times only");
    }
    println!(
        "| job | Swarm 1×1 | Swarm 1×2 threads | Swarm 2×1 replicas | speed-up 2 threads / 2 replicas | scikit-learn n_jobs=1 | n_jobs=-1 | Swarm's best / n_jobs=-1 | peak RSS per worker 1×1 / 1×2 / 2×1 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for name in sets.split(',') {
        let job = match name.trim() {
            "digits" => digits(),
            "connectivity" => connectivity(),
            other => anyhow::bail!("unknown HEAVY_SETS entry {other:?}"),
        };
        let single = swarm(&job, 1, 1).await?;
        let two_threads = swarm(&job, 1, 2).await?;
        let two_replicas = swarm(&job, 2, 1).await?;
        let (one, score) = (single.seconds, single.score);
        let (threads, replicas) = (two_threads.seconds, two_replicas.seconds);
        let best = one.min(threads).min(replicas);
        let (sk1, skn, sk_score) = match &python {
            Some(p) => {
                let (a, s) = sklearn(p, &job, 1)?;
                let (b, _) = sklearn(p, &job, -1)?;
                (a, b, s)
            }
            None => (f64::NAN, f64::NAN, f64::NAN),
        };
        println!(
            "| {} ({} × {}, {} permutations; score {score:.3}, scikit-learn's {sk_score:.3}) | {one:.1} s | {threads:.1} s | {replicas:.1} s | {:.2}× / {:.2}× | {sk1:.1} s | {skn:.1} s | {:.2} | {:.0} / {:.0} / {:.0} MiB |",
            job.name,
            job.rows.len(),
            job.rows[0].len(),
            job.permutations,
            one / threads,
            one / replicas,
            best / skn,
            single.peak_mib,
            two_threads.peak_mib,
            two_replicas.peak_mib,
        );
    }
    Ok(())
}
