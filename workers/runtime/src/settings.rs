//! Worker settings: CLI flags with environment fallbacks and defaults that work against local
//! services.

use std::net::SocketAddr;
use std::time::Duration;

/// Settings every worker (and the `swarm` CLI) shares.
#[derive(Clone, clap::Args)]
pub struct Settings {
    /// AMQP broker URL: `amqp://` or, over TLS, `amqps://` (the server's certificate is checked
    /// against the system's roots, or the PEM bundle named by `SSL_CERT_FILE`; a client
    /// certificate and key from the PEM files in AMQP_SSLCERT and AMQP_SSLKEY).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// PostgreSQL URL; the database is created if it does not exist. `?sslmode=require` for TLS
    /// (the server verified against the system's roots or SSL_CERT_FILE); a client certificate
    /// and key from the PEM files in PGSSLCERT and PGSSLKEY.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://root@127.0.0.1:5432/swarm"
    )]
    pub database_url: String,

    /// Prefix of every exchange and queue name, so tests and tenants never collide.
    #[arg(long, env = "SWARM_NAMESPACE", default_value = "swarm")]
    pub namespace: String,

    /// Deliveries the broker sends ahead of acks (AMQP basic.qos), per worker.
    #[arg(long, env = "PREFETCH", default_value_t = 32)]
    pub prefetch: u16,

    /// Messages handled at once, per worker (with BATCH_SIZE > 1: batches, acked in order).
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,

    /// Deliveries committed together in one transaction and acked with one `multiple` ack;
    /// 1 commits each message on its own. Either way `CONCURRENCY` are handled at once.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 1)]
    pub batch_size: usize,

    /// Milliseconds to wait for a batch to fill before committing what has arrived.
    #[arg(long, env = "BATCH_WAIT_MS", default_value_t = 20)]
    pub batch_wait_ms: u64,

    /// Milliseconds without a new delivery after which a batch is committed as it is, before
    /// `BATCH_WAIT_MS`: the broker had nothing more ready, so waiting would only delay the
    /// batch (a job's last messages, a queue that drains). Raise it to `BATCH_WAIT_MS` to gather
    /// messages that trickle in further apart.
    #[arg(long, env = "BATCH_IDLE_MS", default_value_t = 2)]
    pub batch_idle_ms: u64,

    /// Address of the /healthz and /readyz endpoints (e.g. 0.0.0.0:8080); unset: not served.
    #[arg(long, env = "HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// Seconds a worker waits for in-flight messages after SIGTERM before it exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// Attempts at a message that keeps failing transiently before it is dead-lettered.
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: u32,

    /// Largest Postgres connection pool per worker.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: usize,

    /// Whether the process creates the database and applies the migrations at start-up
    /// (default true). Set `MIGRATE=false` when it connects as a least-privilege role
    /// (`deploy/postgres/roles.sql`): the one-shot `swarm migrate` job does it as the owner.
    #[arg(long, env = "MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// Whether the process declares the exchanges, queues and bindings at start-up (default
    /// true). Set `DECLARE_TOPOLOGY=false` when the broker user has no configure permission
    /// (`deploy/rabbitmq/definitions.json` pre-declares the topology).
    #[arg(long, env = "DECLARE_TOPOLOGY", default_value_t = true, action = clap::ArgAction::Set)]
    pub declare_topology: bool,
}

impl Settings {
    /// The defaults, as if no flag and no variable were given.
    pub fn local() -> Self {
        Self {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            database_url: "postgres://root@127.0.0.1:5432/swarm".into(),
            namespace: "swarm".into(),
            prefetch: 32,
            concurrency: 4,
            batch_size: 1,
            batch_wait_ms: 20,
            batch_idle_ms: 2,
            http_addr: None,
            shutdown_timeout_secs: 30,
            max_attempts: 10,
            db_pool_size: 8,
            migrate: true,
            declare_topology: true,
        }
    }

    /// How long shutdown waits for in-flight work.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

/// Hides the password of a URL, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("amqp_url", &redact(&self.amqp_url))
            .field("database_url", &redact(&self.database_url))
            .field("namespace", &self.namespace)
            .field("prefetch", &self.prefetch)
            .field("concurrency", &self.concurrency)
            .field("batch_size", &self.batch_size)
            .field("batch_wait_ms", &self.batch_wait_ms)
            .field("batch_idle_ms", &self.batch_idle_ms)
            .field("http_addr", &self.http_addr)
            .field("shutdown_timeout_secs", &self.shutdown_timeout_secs)
            .field("max_attempts", &self.max_attempts)
            .field("db_pool_size", &self.db_pool_size)
            .field("migrate", &self.migrate)
            .field("declare_topology", &self.declare_topology)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact("postgres://root@127.0.0.1/swarm"),
            "postgres://root@127.0.0.1/swarm"
        );
        assert_eq!(redact("amqp://localhost"), "amqp://localhost");
    }
}
