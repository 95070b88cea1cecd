//! The floors the pipeline benchmark compares Swarm against: hand-written lapin loops with none of
//! the runtime around them.
//!
//! - [`broker_alone`]: consume the pre-filled queue and ack with `multiple=true` once per batch;
//!   no decoding, no database. The ceiling the broker sets.
//! - [`one_hop`]: consume the same pre-filled `ingest.v1` queue and, per batch of deliveries, in
//!   ONE transaction: insert every message's `processed_messages` row, upsert the samples with
//!   the ingest worker's SQL, compute the features (identity, or
//!   [`swarm_features::connectivity::fisher_z`], on a blocking thread while the samples are being
//!   written) and upsert them with the features worker's SQL; commit, then one `multiple=true`
//!   ack. It is ingest and features in one hop: no `features.v1` message, no outbox, no second
//!   queue, no re-reading the samples.
//! - The same with [`Compute::AfterWrites`]: the features computed on the loop's own task once
//!   the samples are written, nothing overlapped — the plainest loop that writes the same rows.
//!
//! Both run one loop, one batch at a time, like the runtime's batched mode.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use broker_schemas::{IngestV1, SampleKind};
use deadpool_postgres::Pool;
use futures_util::future::try_join_all;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

/// The ingest worker's upsert (workers/ingest/src/handler.rs) without its `covariates` and `text`
/// columns, which the bench's samples leave at their defaults (`'{}'` and NULL): the same rows.
const UPSERT_SAMPLE: &str = r#"INSERT INTO samples (project, site, subject, label, kind, timepoints, "values", job_id, message_id, trace_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (project, site, subject) DO UPDATE SET
                       label = EXCLUDED.label, kind = EXCLUDED.kind, timepoints = EXCLUDED.timepoints,
                       "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
                       message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, updated_at = now()
                   RETURNING id"#;

/// The features worker's upsert (workers/features/src/handler.rs), verbatim.
const UPSERT_FEATURES: &str = r#"INSERT INTO features (sample_id, extractor, version, "values", job_id, message_id, trace_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (sample_id, extractor, version) DO UPDATE SET
                       "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
                       message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, created_at = now()"#;

/// How a floor groups deliveries: up to `size` per batch, waiting at most `wait` for it to fill
/// (the runtime's `BATCH_SIZE` / `BATCH_WAIT_MS`).
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Deliveries per batch (and per transaction).
    pub size: usize,
    /// How long to wait for a batch to fill.
    pub wait: Duration,
}

impl Batching {
    /// Prefetch: two batches, so the next one is on its way while one is being committed.
    fn prefetch(&self) -> u16 {
        u16::try_from(self.size * 2).unwrap_or(u16::MAX)
    }
}

/// A channel consuming `queue` with the floors' prefetch: set up before the clock starts, as
/// Swarm's workers are consuming when theirs does.
pub async fn consume(
    connection: &Connection,
    queue: &str,
    batching: Batching,
) -> anyhow::Result<(Channel, Consumer)> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(batching.prefetch(), BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.to_string().into(),
            "floor".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("Failed to consume {queue}"))?;
    Ok((channel, consumer))
}

fn delivery(next: Option<lapin::Result<Delivery>>) -> anyhow::Result<Delivery> {
    match next {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("the consumer failed")),
        None => bail!("the broker cancelled the consumer"),
    }
}

/// The next batch: the first delivery, then as many more as arrive within the wait, up to `max`.
async fn next_batch(
    consumer: &mut Consumer,
    max: usize,
    wait: Duration,
) -> anyhow::Result<Vec<Delivery>> {
    let mut batch = vec![delivery(consumer.next().await)?];
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.next()).await {
            Ok(next) => batch.push(delivery(next)?),
            Err(_) => break,
        }
    }
    Ok(batch)
}

async fn ack_through(last: &Delivery) -> anyhow::Result<()> {
    last.acker
        .ack(BasicAckOptions { multiple: true })
        .await
        .context("Failed to ack")?;
    Ok(())
}

/// Takes `messages` deliveries from `consumer` (of [`consume`]) a batch at a time: `work` on
/// each batch, then one `multiple=true` ack for it.
async fn each_batch(
    consumer: &mut Consumer,
    messages: usize,
    batching: Batching,
    mut work: impl AsyncFnMut(&[Delivery]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut done = 0;
    while done < messages {
        let batch = next_batch(consumer, batching.size.min(messages - done), batching.wait).await?;
        work(&batch).await?;
        ack_through(batch.last().expect("a batch is never empty")).await?;
        done += batch.len();
    }
    Ok(())
}

/// Takes `messages` deliveries from `consumer` and acks them, a batch at a time; no database.
pub async fn broker_alone(
    consumer: &mut Consumer,
    messages: usize,
    batching: Batching,
) -> anyhow::Result<()> {
    each_batch(consumer, messages, batching, async |_| Ok(())).await
}

/// When the one-hop floor computes a batch's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    /// On a blocking thread while the samples are being written.
    WhileWriting,
    /// On the loop's task, after the samples are written.
    AfterWrites,
}

/// Takes `messages` `ingest.v1` deliveries from `consumer` (of `queue`) and commits each
/// batch's samples and features in one transaction, then acks it.
pub async fn one_hop(
    consumer: &mut Consumer,
    pool: &Pool,
    queue: &str,
    messages: usize,
    batching: Batching,
    compute: Compute,
) -> anyhow::Result<()> {
    each_batch(consumer, messages, batching, async |batch| {
        commit(pool, queue, batch, compute).await
    })
    .await
}

/// One decoded delivery.
struct Decoded {
    message_id: String,
    job_id: Option<String>,
    message: IngestV1,
}

fn decode(d: &Delivery) -> anyhow::Result<Decoded> {
    let props = &d.properties;
    let message_id = props
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
        .context("a delivery without message_id")?;
    let job_id = props.correlation_id().as_ref().map(|s| s.to_string());
    let message: IngestV1 = broker_schemas::decode(&d.data)?;
    // The ingest worker's validation: finite values, one shape per batch, names within limits.
    swarm_ingest::validate::batch(&message).map_err(|reason| anyhow!(reason))?;
    Ok(Decoded {
        message_id,
        job_id,
        message,
    })
}

/// The features of one sample: `(extractor, version, values)`, as the features worker computes
/// them.
fn extract(
    kind: SampleKind,
    timepoints: Option<u32>,
    values: &[f32],
) -> (&'static str, i32, Vec<f32>) {
    match (kind, timepoints) {
        (SampleKind::Timeseries, Some(t)) => (
            swarm_features::connectivity::EXTRACTOR,
            swarm_features::connectivity::VERSION,
            swarm_features::connectivity::fisher_z(values, t as usize),
        ),
        // The features worker's `IDENTITY` extractor, version 1.
        _ => ("identity", 1, values.to_vec()),
    }
}

async fn commit(
    pool: &Pool,
    queue: &str,
    batch: &[Delivery],
    compute: Compute,
) -> anyhow::Result<()> {
    let mut decoded = batch
        .iter()
        .map(decode)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The idempotency records, all in one statement; a redelivered message is skipped.
    let ids: Vec<&str> = decoded.iter().map(|d| d.message_id.as_str()).collect();
    let fresh: HashSet<String> = tx
        .query(
            "INSERT INTO processed_messages (queue, message_id) SELECT $1, unnest($2::text[])
             ON CONFLICT DO NOTHING RETURNING message_id",
            &[&queue, &ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    decoded.retain(|d| fresh.contains(&d.message_id));
    if decoded.is_empty() {
        tx.commit().await?;
        return Ok(());
    }
    // The ingest worker's project check, once per project in the batch.
    let mut projects = HashSet::new();
    for d in &decoded {
        let m = &d.message;
        if !projects.insert(m.project.clone()) {
            continue;
        }
        let kind = m.samples[0].kind.as_str();
        let dimension = match m.samples[0].timepoints {
            Some(t) => (m.samples[0].values.len() / t as usize) as i32,
            None => m.samples[0].values.len() as i32,
        };
        tx.execute(
            "INSERT INTO projects (name, kind, dimension) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            &[&m.project, &kind, &dimension],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT kind, dimension FROM projects WHERE name = $1",
                &[&m.project],
            )
            .await?;
        let (k, n): (String, i32) = (row.get(0), row.get(1));
        if k != kind || n != dimension {
            bail!("project {} has another shape", m.project);
        }
    }
    let decoded = Arc::new(decoded);
    let extract_all = |decoded: &[Decoded]| {
        decoded
            .iter()
            .flat_map(|d| d.message.samples.iter())
            .map(|s| extract(s.kind, s.timepoints, &s.values))
            .collect::<Vec<_>>()
    };
    // Features are CPU work: compute them on a blocking thread while the samples are written.
    let extraction = (compute == Compute::WhileWriting).then(|| {
        let decoded = decoded.clone();
        tokio::task::spawn_blocking(move || extract_all(&decoded))
    });
    let upsert = tx.prepare_cached(UPSERT_SAMPLE).await?;
    let trace_id: Option<String> = None;
    // Queries on one connection are pipelined: issue them all, then await.
    let (txr, upsertr, tracer) = (&tx, &upsert, &trace_id);
    let inserts = decoded.iter().flat_map(move |d| {
        let m = &d.message;
        m.samples.iter().map(move |s| {
            let timepoints = s.timepoints.map(|t| t as i32);
            let kind = s.kind.as_str();
            let (tx, upsert, trace_id) = (txr, upsertr, tracer);
            async move {
                tx.query_one(
                    upsert,
                    &[
                        &m.project,
                        &m.site,
                        &s.subject,
                        &s.label,
                        &kind,
                        &timepoints,
                        &swarm_runtime::floats::Floats(&s.values),
                        &d.job_id,
                        &d.message_id,
                        trace_id,
                    ],
                )
                .await
            }
        })
    });
    let rows = try_join_all(inserts).await?;
    let extracted = match extraction {
        Some(extraction) => extraction.await.context("feature extraction panicked")?,
        None => extract_all(&decoded),
    };
    let upsert = tx.prepare_cached(UPSERT_FEATURES).await?;
    let owners = decoded
        .iter()
        .flat_map(|d| d.message.samples.iter().map(move |_| d));
    let writes = rows.iter().zip(extracted.iter()).zip(owners).map(
        |((row, (extractor, version, values)), d)| {
            let sample_id: i64 = row.get(0);
            let (tx, upsert, trace_id) = (&tx, &upsert, &trace_id);
            async move {
                tx.execute(
                    upsert,
                    &[
                        &sample_id,
                        extractor,
                        version,
                        &swarm_runtime::floats::Floats(values),
                        &d.job_id,
                        &d.message_id,
                        trace_id,
                    ],
                )
                .await
            }
        },
    );
    try_join_all(writes).await?;
    tx.commit().await?;
    Ok(())
}
