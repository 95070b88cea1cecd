//! Swarm runtime: everything a worker shares.
//!
//! A worker is this crate plus a [`Handler`]. The runtime owns the settings, the AMQP connection
//! and topology, the Postgres pool and migrations, idempotency (`processed_messages`), the
//! transactional outbox, dead letters, trace propagation, health endpoints and the run loop:
//!
//! decode → validate → the handler's long work, outside any transaction (`Handler::compute`) →
//! BEGIN → record message id (a redelivery is acked and skipped) → handler writes derived rows +
//! outbox rows → COMMIT → ack → publish the outbox with publisher confirms.
//!
//! Architecture invariant: only this crate talks to lapin; workers never depend on each other.

pub mod amqp;
mod batch;
pub mod client;
mod client_cert;
pub mod db;
pub mod dead;
pub mod floats;
pub mod handler;
pub mod http;
pub mod jaeger;
pub mod limits;
mod logfmt;
pub mod metrics;
pub mod outbox;
pub mod process;
pub mod settings;
pub mod telemetry;
pub mod topology;
pub mod worker;

pub use amqp::Publisher;
pub use client::Client;
pub use handler::{HandleError, Handler, Incoming, MessageMeta, Work};
pub use settings::Settings;
pub use topology::Topology;
pub use worker::{run, spawn, WorkerHandle};

use clap::Parser;

#[derive(Debug, Parser)]
struct WorkerCli {
    #[command(flatten)]
    settings: Settings,
}

/// Runs a worker binary: parses [`Settings`] from flags and environment, then [`serve`]s.
pub async fn main_for<H: Handler>(handler: H) -> anyhow::Result<()> {
    serve(handler, WorkerCli::parse().settings).await
}

/// Starts telemetry for `swarm-<name>` and runs `handler` until SIGTERM/SIGINT, then drains,
/// flushes spans and returns.
pub async fn serve<H: Handler>(handler: H, settings: Settings) -> anyhow::Result<()> {
    let service = format!("swarm-{}", H::NAME);
    let telemetry = telemetry::init(&service);
    tracing::info!(settings = ?settings, "Starting {service}.");
    let result = run(handler, settings, shutdown_signal()).await;
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "{service} failed.");
    }
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("can listen for SIGTERM");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("Shutdown requested.");
}
