//! The train worker's Prometheus series, beside the runtime's per-message ones: units computed,
//! failed and skipped per queue, and a gauge of units waiting in running runs.

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::runs::UNITS_WAITING_SQL;
use crate::unit::UnitOutcome;

/// How often the gauge of units waiting is refreshed.
pub const WAITING_EVERY: Duration = Duration::from_secs(5);

/// Counts one unit delivery by what came of it: `swarm_train_units_total{queue, outcome}` with
/// outcome `done` (computed), `failed` (failed its run) or `skipped` (stored already, or its
/// run not running).
pub fn unit(queue: &str, outcome: &UnitOutcome) {
    let outcome = match outcome {
        UnitOutcome::Results(_) | UnitOutcome::Finished(_) => "done",
        UnitOutcome::Failed(_) => "failed",
        UnitOutcome::Skipped => "skipped",
    };
    metrics::counter!("swarm_train_units_total", "queue" => queue.to_string(), "outcome" => outcome)
        .increment(1);
}

/// Sets `swarm_train_units_waiting{queue}`: units of running runs not yet stored.
pub async fn refresh_waiting(pool: &Pool, queue: &str) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let waiting: i64 = client.query_one(UNITS_WAITING_SQL, &[]).await?.get(0);
    metrics::gauge!("swarm_train_units_waiting", "queue" => queue.to_string()).set(waiting as f64);
    Ok(())
}
