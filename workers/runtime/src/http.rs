//! `/healthz` (the process is up), `/readyz` (consuming, database reachable, not draining) and
//! `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use deadpool_postgres::Pool;

/// What readiness is made of; the run loop flips the flags.
#[derive(Debug, Default)]
pub struct Health {
    /// Connected to the broker and consuming: set with [`Health::set_consuming`].
    pub consuming: AtomicBool,
    /// Shutting down: finishing in-flight work, taking no more.
    pub draining: AtomicBool,
    /// Wakes [`Health::until_consuming`].
    consuming_changed: tokio::sync::Notify,
}

impl Health {
    /// Records whether the worker is consuming, waking those waiting for it.
    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::SeqCst);
        self.consuming_changed.notify_waiters();
    }

    /// Resolves once the worker is consuming.
    pub async fn until_consuming(&self) {
        loop {
            // Registered before the flag is read, so a change in between is not missed.
            let changed = self.consuming_changed.notified();
            if self.consuming.load(Ordering::SeqCst) {
                return;
            }
            changed.await;
        }
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    pool: Pool,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics() -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::handle().render(),
    )
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    if state.health.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    if !state.health.consuming.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "broker: not consuming\n".into(),
        );
    }
    let db = async {
        let client = state.pool.get().await.map_err(|e| e.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), db).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database: timed out\n".into(),
        ),
    }
}

/// Serves the health endpoints on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    pool: Pool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState { health, pool });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "Serving /healthz, /readyz and /metrics.");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
