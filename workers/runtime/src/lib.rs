//! Swarm runtime: everything a worker shares.
//!
//! A worker is this crate plus a [`Handler`]. The runtime owns the settings, the AMQP connection
//! and topology, the Postgres pool and migrations, idempotency (`processed_messages`), the
//! transactional outbox, dead letters, trace propagation, health endpoints and the run loop:
//!
//! decode → validate → BEGIN → record message id (a redelivery is acked and skipped) → handler
//! writes derived rows + outbox rows → COMMIT → ack → publish the outbox with publisher confirms.
//!
//! Architecture invariant: only this crate talks to lapin; workers never depend on each other.

pub mod handler;
mod outbox;

pub use handler::{HandleError, Handler, MessageMeta, Work};

/// Runs a worker binary: parses [`Settings`] from flags and environment, starts telemetry, and
/// serves `handler` until SIGTERM/SIGINT.
pub async fn main_for<H: Handler>(_handler: H) -> anyhow::Result<()> {
    todo!()
}
