//! The transactional outbox: downstream messages are rows written in the handler's transaction,
//! published after the commit, and deleted once the broker confirms them. A sweeper publishes
//! rows a crash left behind; a message published twice keeps its message id, so the consumer's
//! idempotency record makes the second copy a no-op.
//!
//! Published rows are deleted by a [`Janitor`], many per statement a few times a second, not in
//! a transaction of their own per message: a delete need not be in step with anything (a lost one
//! only means the sweeper publishes the row again, and its consumers skip it).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use broker_schemas::Message;
use deadpool_postgres::{Pool, Transaction};
use uuid::Uuid;

use crate::amqp::{Outgoing, Publisher};
use crate::telemetry;
use crate::topology::Topology;

/// Rows older than this are the sweeper's; younger ones are being published by their writer.
const SWEEP_AGE: Duration = Duration::from_secs(10);
/// How often the sweeper looks.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// An outbox row written in the current transaction, kept in memory so that it is published
/// after the commit without reading it back.
#[derive(Debug, Clone)]
pub struct Emitted {
    /// `outbox.id`.
    pub id: i64,
    /// The message as it goes on the wire.
    pub message: Outgoing,
}

/// Writes a message into the outbox in `tx`, with a producer span's trace context.
pub(crate) async fn insert<M: Message>(
    tx: &Transaction<'_>,
    exchange: &str,
    message: &M,
    job_id: Option<&str>,
) -> Result<Emitted, tokio_postgres::Error> {
    let message_id = Uuid::now_v7().to_string();
    let body = broker_schemas::encode(message);
    // The producer span is created with the row, as a child of the handler's span; the message
    // carries its context however much later it is published.
    let span = crate::amqp::send_span(exchange, M::TYPE, &message_id, job_id, body.len());
    let headers = telemetry::headers_of(&span);
    let trace_headers = serde_json::to_value(&headers).unwrap_or_default();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO outbox (message_id, message_type, routing_key, correlation_id, body, trace_headers)
             VALUES ($1, $2, $2, $3, $4, $5) RETURNING id",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[&message_id, &M::TYPE, &job_id, &body, &trace_headers],
        )
        .await?;
    Ok(Emitted {
        id: row.get(0),
        message: Outgoing {
            exchange: exchange.to_string(),
            routing_key: M::TYPE.to_string(),
            message_type: M::TYPE.to_string(),
            message_id,
            correlation_id: job_id.map(str::to_string),
            headers,
            body,
        },
    })
}

fn outgoing(row: &tokio_postgres::Row, topology: &Topology) -> (i64, Outgoing) {
    let headers: serde_json::Value = row.get("trace_headers");
    let headers: HashMap<String, String> = serde_json::from_value(headers).unwrap_or_default();
    let out = Outgoing {
        exchange: topology.exchange(),
        routing_key: row.get("routing_key"),
        message_type: row.get("message_type"),
        message_id: row.get("message_id"),
        correlation_id: row.get("correlation_id"),
        headers,
        body: row.get("body"),
    };
    (row.get("id"), out)
}

const COLUMNS: &str =
    "id, message_id, message_type, routing_key, correlation_id, body, trace_headers";

/// Publishes outbox rows this process just committed; the janitor deletes them once the broker
/// has confirmed them.
pub async fn publish(
    janitor: &Janitor,
    publisher: &Publisher,
    emitted: &[Emitted],
) -> anyhow::Result<()> {
    if emitted.is_empty() {
        return Ok(());
    }
    let messages: Vec<Outgoing> = emitted.iter().map(|e| e.message.clone()).collect();
    publisher.publish_all(&messages).await?;
    janitor.delete(emitted.iter().map(|e| e.id));
    Ok(())
}

/// How long the janitor gathers published rows before deleting them.
const JANITOR_WAIT: Duration = Duration::from_millis(50);

/// Deletes published outbox rows in the background, all those gathered in [`JANITOR_WAIT`] in one
/// statement. Well within [`SWEEP_AGE`], so the sweeper does not publish them again.
#[derive(Debug, Clone)]
pub struct Janitor {
    ids: tokio::sync::mpsc::UnboundedSender<i64>,
}

impl Janitor {
    /// Starts the janitor; its task ends, after a last delete, when every clone is dropped.
    pub fn spawn(pool: Pool) -> (Janitor, tokio::task::JoinHandle<()>) {
        let (ids, mut rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
        let task = tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = rx.recv().await {
                batch.push(first);
                let deadline = tokio::time::Instant::now() + JANITOR_WAIT;
                while let Ok(Some(id)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                    batch.push(id);
                }
                if let Err(error) = delete(&pool, &batch).await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        rows = batch.len(),
                        "Deleting published outbox rows failed; the sweeper will publish them again."
                    );
                }
                batch.clear();
            }
        });
        (Janitor { ids }, task)
    }

    /// Hands over rows the broker has confirmed.
    pub fn delete(&self, ids: impl IntoIterator<Item = i64>) {
        for id in ids {
            // Closed only once the worker is stopping: the sweeper deals with what is left.
            let _ = self.ids.send(id);
        }
    }
}

/// Deletes published rows: what the janitor runs.
pub async fn delete(pool: &Pool, ids: &[i64]) -> anyhow::Result<()> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a database connection")?;
    // The delete need not wait for its WAL flush: if a crash loses it, the sweeper publishes the
    // rows again and their consumers skip them as duplicates.
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .await?;
    tx.execute("DELETE FROM outbox WHERE id = ANY($1)", &[&ids])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Publishes rows left behind (older than a few seconds); any replica may run it at once, each
/// row is locked by one. Returns how many it published.
pub async fn sweep(
    pool: &Pool,
    publisher: &Publisher,
    topology: &Topology,
) -> anyhow::Result<usize> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a database connection")?;
    let tx = client.transaction().await?;
    let age = SWEEP_AGE.as_secs_f64();
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM outbox
                 WHERE created_at < now() - make_interval(secs => $1)
                 ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED"
            ),
            &[&age],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let (ids, messages): (Vec<i64>, Vec<Outgoing>) =
        rows.iter().map(|row| outgoing(row, topology)).unzip();
    publisher.publish_all(&messages).await?;
    tx.execute("DELETE FROM outbox WHERE id = ANY($1)", &[&ids])
        .await?;
    tx.commit().await?;
    tracing::info!(count = ids.len(), "Published outbox rows left behind.");
    Ok(ids.len())
}

/// Rows waiting to be published.
pub async fn backlog(pool: &Pool) -> anyhow::Result<i64> {
    let client = pool.get().await?;
    Ok(client
        .query_one("SELECT count(*) FROM outbox", &[])
        .await?
        .get(0))
}
