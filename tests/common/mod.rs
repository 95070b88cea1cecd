//! What several test binaries share, included by each one's helpers with
//! `#[path = "../common/mod.rs"] mod common;`: the patience of a test, the database server,
//! polling with a deadline, and the process's metrics. Each binary uses part of it.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits for something (the pipeline, a worker) before it fails.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// `postgres://root@127.0.0.1:5432`, or `TEST_DATABASE_SERVER`.
pub fn database_server() -> String {
    std::env::var("TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into())
}

/// Drops the database `name` on [`database_server`], with whoever is still connected to it.
pub async fn drop_database(name: &str) {
    let (client, conn) = tokio_postgres::connect(
        &format!("{}/postgres", database_server()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

/// Polls `check` until it returns true, failing with `what` after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A counter of this process's Prometheus metrics (0 until it is first counted): `series` is
/// its name and labels as rendered, e.g. `swarm_batches_total{queue="q",outcome="split"}`.
pub fn counter(series: &str) -> u64 {
    swarm_runtime::metrics::handle()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |n| {
            n.trim().parse().expect("a counter is a whole number")
        })
}
