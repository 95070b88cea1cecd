//! PostgreSQL: the connection pool, database creation and migrations, and TLS when
//! `DATABASE_URL` asks for it.

use std::sync::Arc;

use anyhow::Context as _;
pub use deadpool_postgres::Pool;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::client_cert::Files;

/// The migrations in `migrations/`, applied in order, each once.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../../../migrations/0001_init.sql")),
    (
        2,
        "metrics_views",
        include_str!("../../../migrations/0002_metrics_views.sql"),
    ),
    (
        3,
        "results",
        include_str!("../../../migrations/0003_results.sql"),
    ),
    (
        4,
        "analysis",
        include_str!("../../../migrations/0004_analysis.sql"),
    ),
    (
        5,
        "report_views",
        include_str!("../../../migrations/0005_report_views.sql"),
    ),
    (
        6,
        "dead_letter_replay",
        include_str!("../../../migrations/0006_dead_letter_replay.sql"),
    ),
    (
        7,
        "uncompressed_values",
        include_str!("../../../migrations/0007_uncompressed_values.sql"),
    ),
    (
        8,
        "text_samples",
        include_str!("../../../migrations/0008_text_samples.sql"),
    ),
    (
        9,
        "sample_values_bytes",
        include_str!("../../../migrations/0009_sample_values_bytes.sql"),
    ),
    (
        10,
        "feature_values_bytes",
        include_str!("../../../migrations/0010_feature_values_bytes.sql"),
    ),
    (
        11,
        "dead_letters_once",
        include_str!("../../../migrations/0011_dead_letters_once.sql"),
    ),
    (
        12,
        "run_units",
        include_str!("../../../migrations/0012_run_units.sql"),
    ),
    (
        15,
        "feature_names",
        include_str!("../../../migrations/0015_feature_names.sql"),
    ),
    (
        16,
        "published_jobs",
        include_str!("../../../migrations/0016_published_jobs.sql"),
    ),
];

/// Any number the application picks; serialises concurrent migrators.
const MIGRATION_LOCK: i64 = 0x5357_4152_4d00;

/// A pool of connections to `url`.
pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("DATABASE_URL is not a valid Postgres URL: {url}"))?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls(&config)? {
        Some(tls) => Manager::from_config(config, tls, manager_config),
        None => Manager::from_config(config, NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .context("Failed to build the Postgres pool")
}

/// Creates the database named in `url` if it does not exist (connecting to `postgres` to do so).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("DATABASE_URL is not a valid Postgres URL: {url}"))?;
    let name = config
        .get_dbname()
        .context("DATABASE_URL names no database")?
        .to_string();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let connected = match tls(&config)? {
        Some(tls) => admin
            .connect(tls)
            .await
            .map(|(client, connection)| (client, tokio::spawn(connection))),
        None => admin
            .connect(NoTls)
            .await
            .map(|(client, connection)| (client, tokio::spawn(connection))),
    };
    let (client, task) = connected.with_context(|| {
        format!(
            "Failed to connect to Postgres at {}: is it running?",
            crate::settings::redact(url)
        )
    })?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = client.batch_execute(&sql).await {
            // Another process created it first.
            let raced = e.code().is_some_and(|c| {
                *c == tokio_postgres::error::SqlState::DUPLICATE_DATABASE
                    || *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            });
            if !raced {
                return Err(e).context(format!("Failed to create database {name}"));
            }
        }
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

/// The TLS connector for `config`: `Some` when its `sslmode` is `require`, `None` (plain TCP)
/// otherwise. `prefer`, PostgreSQL's default, stays plain on purpose: a Debian server has TLS on
/// with a self-signed certificate, which a verifying client would refuse. With `require` the
/// server's certificate must chain to the system's roots, or to the PEM bundle in
/// `SSL_CERT_FILE`, and name the host (rustls on ring, like `amqps://`). A server that asks for
/// a client certificate gets the one in `PGSSLCERT` with its key in `PGSSLKEY` (libpq's names).
fn tls(config: &tokio_postgres::Config) -> anyhow::Result<Option<MakeRustlsConnect>> {
    let identity = client_identity()?;
    if config.get_ssl_mode() != SslMode::Require {
        if identity.is_some() {
            anyhow::bail!(
                "PGSSLCERT and PGSSLKEY are set, but DATABASE_URL has no sslmode=require, so the \
                 connection would be plain TCP and the certificate unused: add ?sslmode=require"
            );
        }
        return Ok(None);
    }
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        anyhow::bail!(
            "sslmode=require, but no trusted root certificates were found ({:?}): install the \
             system's CA certificates or point SSL_CERT_FILE at a PEM bundle",
            found.errors
        );
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("rustls has no usable protocol versions")?
    .with_root_certificates(roots);
    let client = match identity {
        Some((chain, key)) => client
            .with_client_auth_cert(chain, key)
            .context("PGSSLKEY is not a usable key for the certificate in PGSSLCERT")?,
        None => client.with_no_client_auth(),
    };
    Ok(Some(MakeRustlsConnect::new(client)))
}

/// A client certificate chain and its private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The client certificate of `PGSSLCERT` and `PGSSLKEY`, if they are set.
fn client_identity() -> anyhow::Result<Option<Identity>> {
    let Some(files) = Files::from_env("PGSSLCERT", "PGSSLKEY")? else {
        return Ok(None);
    };
    let (cert, key) = (files.read_cert("PGSSLCERT")?, files.read_key("PGSSLKEY")?);
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("PGSSLCERT: {} is not PEM: {e}", files.cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "PGSSLCERT: {} holds no PEM certificate",
            files.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        anyhow::anyhow!(
            "PGSSLKEY: {} holds no PEM private key: {e}",
            files.key.display()
        )
    })?;
    Ok(Some((chain, key)))
}

/// Applies the pending migrations; safe to run from many processes at once.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a database connection")?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    // One query for what is applied, not one per migration: this runs at every worker's start.
    let applied: std::collections::HashSet<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (version, name, sql) in MIGRATIONS {
        if !applied.contains(version) {
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("Migration {version} ({name}) failed"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            tracing::info!(version, name, "Applied migration.");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Builds the pool and migrates, creating the database first if the server says it does not
/// exist: what every process does first. The database nearly always exists, so the connection to
/// `postgres` that creating it takes is only made when it is needed.
pub async fn connect_and_migrate(url: &str, size: usize) -> anyhow::Result<Pool> {
    let pool = pool(url, size)?;
    // The first connection stays in the pool for the migrations.
    match pool.get().await {
        Ok(_client) => {}
        Err(deadpool_postgres::PoolError::Backend(e))
            if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) =>
        {
            ensure_database(url).await?;
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "Failed to connect to Postgres at {}: is it running?",
                    crate::settings::redact(url)
                )
            })
        }
    }
    migrate(&pool).await?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations/ exists")
            .map(|e| {
                e.expect("readable")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, name, _)| format!("{v:04}_{name}.sql"))
            .collect();
        assert_eq!(files, listed, "add the new file to MIGRATIONS in db.rs");
    }
}
