//! Prometheus metrics, served at `/metrics`: messages processed / failed / retried /
//! dead-lettered / duplicate by queue, handling duration, in-flight messages, outbox backlog,
//! batches committed or split, and broker reconnects. One recorder per process; every series is
//! labelled by queue.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Handling-duration buckets, seconds: from 1 ms (a duplicate) to a minute (a training run).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the process's recorder once; returns the handle that renders it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("buckets are not empty");
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is global already: ours still renders, it just sees nothing.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// What became of one delivery, for the counters.
#[derive(Debug, Clone, Copy)]
pub enum Handled {
    /// Committed and acked.
    Processed,
    /// A redelivery, skipped.
    Duplicate,
    /// Failed for now, requeued.
    Retried,
    /// Dead-lettered.
    DeadLettered,
}

/// Counts one handled delivery and its duration.
pub fn handled(queue: &str, outcome: Handled, took: Duration) {
    let queue = queue.to_string();
    let (counter, label) = match outcome {
        Handled::Processed => ("swarm_messages_processed_total", "processed"),
        Handled::Duplicate => ("swarm_messages_duplicate_total", "duplicate"),
        Handled::Retried => ("swarm_messages_retried_total", "retried"),
        Handled::DeadLettered => ("swarm_messages_dead_lettered_total", "dead_lettered"),
    };
    metrics::counter!(counter, "queue" => queue.clone()).increment(1);
    if matches!(outcome, Handled::Retried | Handled::DeadLettered) {
        metrics::counter!("swarm_messages_failed_total", "queue" => queue.clone()).increment(1);
    }
    metrics::histogram!("swarm_handle_duration_seconds", "queue" => queue, "outcome" => label)
        .record(took.as_secs_f64());
}

/// A batch (`BATCH_SIZE` > 1) committed whole, or split: its transaction failed and its
/// messages went one by one. Splits now and then are bad input or a hiccup; a queue whose
/// batches keep splitting has lost the batch's speed, e.g. to a missing privilege.
pub fn batch(queue: &str, committed: bool) {
    let outcome = if committed { "committed" } else { "split" };
    metrics::counter!("swarm_batches_total", "queue" => queue.to_string(), "outcome" => outcome)
        .increment(1);
}

/// Messages being handled right now.
pub fn in_flight(queue: &str, delta: f64) {
    metrics::gauge!("swarm_messages_in_flight", "queue" => queue.to_string()).increment(delta);
}

/// Outbox rows not yet published, as last counted by the sweeper.
pub fn outbox_backlog(queue: &str, rows: i64) {
    metrics::gauge!("swarm_outbox_backlog", "queue" => queue.to_string()).set(rows as f64);
}

/// A lost broker connection that the worker reconnects from.
pub fn reconnect(queue: &str) {
    metrics::counter!("swarm_reconnects_total", "queue" => queue.to_string()).increment(1);
}
