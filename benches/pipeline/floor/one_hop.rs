//! The one-hop floor: the least a correct consumer does to store what Swarm's ingest and
//! features workers store, with the fastest SQL for it. Per batch of deliveries, in ONE
//! transaction:
//!
//! 1. the batch's idempotency records, one `INSERT … SELECT unnest(…) … ON CONFLICT DO NOTHING
//!    RETURNING` (a redelivered message is skipped);
//! 2. the ingest worker's project check, once per project in the batch;
//! 3. every sample of the batch in one multi-row upsert: its columns sent as arrays and
//!    `unnest`ed, `ON CONFLICT (project, site, subject) DO UPDATE`, `RETURNING` the ids (a
//!    subject named by two messages of the batch is written once, the later message's);
//! 4. every sample's features in one multi-row upsert the same way, computed on a blocking
//!    thread while the samples are written ([`Compute::WhileWriting`]) or after
//!    ([`Compute::AfterWrites`]);
//!
//! then the commit and one `multiple=true` ack. No `features.v1` message, no outbox, no second
//! queue, no re-reading the samples. The rows are Swarm's: values as big-endian `float4`
//! `bytea`, the lineage columns (`job_id`, `message_id`) of the message that wrote each row.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use broker_schemas::{IngestV1, SampleKind};
use deadpool_postgres::Pool;
use lapin::message::Delivery;
use lapin::Consumer;
use swarm_runtime::floats::Floats;

use super::consume::{each_batch, Batching};

/// The ingest worker's upsert (workers/ingest/src/handler.rs) for a whole batch of messages:
/// every column an array, without `covariates` and `text`, which the bench's samples leave at
/// their defaults (`'{}'` and NULL).
const UPSERT_SAMPLES: &str = r#"INSERT INTO samples (project, site, subject, label, kind, timepoints, "values", job_id, message_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::bytea[], $8::text[], $9::text[])
    ON CONFLICT (project, site, subject) DO UPDATE SET
        label = EXCLUDED.label, kind = EXCLUDED.kind, timepoints = EXCLUDED.timepoints,
        "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
        message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, updated_at = now()
    RETURNING project, site, subject, id"#;

/// The features worker's upsert (workers/features/src/handler.rs) for a whole batch of
/// messages.
const UPSERT_FEATURES: &str = r#"INSERT INTO features (sample_id, extractor, version, "values", job_id, message_id)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::bytea[], $5::text[], $6::text[])
    ON CONFLICT (sample_id, extractor, version) DO UPDATE SET
        "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
        message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, created_at = now()"#;

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

/// Where a sample to write is: (message, sample) indices into the batch.
type At = (usize, usize);

/// The samples the batch writes, in its order: of a (project, site, subject) named more than
/// once, only the last.
fn last_of_each(decoded: &[Decoded]) -> Vec<At> {
    let mut last: HashMap<(&str, &str, &str), At> = HashMap::new();
    let all = decoded.iter().enumerate().flat_map(|(m, d)| {
        let message = &d.message;
        message.samples.iter().enumerate().map(move |(s, sample)| {
            let key = (
                message.project.as_str(),
                message.site.as_str(),
                sample.subject.as_str(),
            );
            (key, (m, s))
        })
    });
    let mut order = Vec::new();
    for (key, at) in all {
        order.push(at);
        last.insert(key, at);
    }
    let kept: HashSet<At> = last.into_values().collect();
    order.retain(|at| kept.contains(at));
    order
}

/// A text column of the samples at `order`.
fn column<'a>(
    decoded: &'a [Decoded],
    order: &[At],
    f: impl Fn(&'a [Decoded], At) -> &'a str,
) -> Vec<&'a str> {
    order.iter().map(|&at| f(decoded, at)).collect()
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
    let order = Arc::new(last_of_each(&decoded));
    let extract_all = |decoded: &[Decoded], order: &[At]| {
        order
            .iter()
            .map(|&(m, s)| {
                let sample = &decoded[m].message.samples[s];
                extract(sample.kind, sample.timepoints, &sample.values)
            })
            .collect::<Vec<_>>()
    };
    // Features are CPU work: compute them on a blocking thread while the samples are written.
    let extraction = (compute == Compute::WhileWriting).then(|| {
        let (decoded, order) = (decoded.clone(), order.clone());
        tokio::task::spawn_blocking(move || extract_all(&decoded, &order))
    });
    let message_of = |&(m, _): &At| &decoded[m];
    let sample_of = |&(m, s): &At| &decoded[m].message.samples[s];
    let rows = tx
        .query(
            UPSERT_SAMPLES,
            &[
                &column(&decoded, &order, |d, (m, _)| &d[m].message.project),
                &column(&decoded, &order, |d, (m, _)| &d[m].message.site),
                &column(&decoded, &order, |d, (m, s)| {
                    &d[m].message.samples[s].subject
                }),
                &column(&decoded, &order, |d, (m, s)| &d[m].message.samples[s].label),
                &column(&decoded, &order, |d, (m, s)| {
                    d[m].message.samples[s].kind.as_str()
                }),
                &order
                    .iter()
                    .map(|at| sample_of(at).timepoints.map(|t| t as i32))
                    .collect::<Vec<_>>(),
                &order
                    .iter()
                    .map(|at| Floats(&sample_of(at).values))
                    .collect::<Vec<_>>(),
                &order
                    .iter()
                    .map(|at| message_of(at).job_id.as_deref())
                    .collect::<Vec<_>>(),
                &column(&decoded, &order, |d, (m, _)| &d[m].message_id),
            ],
        )
        .await?;
    // `RETURNING` promises no order: the ids are matched to the samples by key.
    let ids: HashMap<(&str, &str, &str), i64> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
        .collect();
    let sample_ids = order
        .iter()
        .map(|at| {
            let (m, s) = (message_of(at), sample_of(at));
            let key = (
                m.message.project.as_str(),
                m.message.site.as_str(),
                s.subject.as_str(),
            );
            ids.get(&key)
                .copied()
                .with_context(|| format!("no id returned for {key:?}"))
        })
        .collect::<anyhow::Result<Vec<i64>>>()?;
    let extracted = match extraction {
        Some(extraction) => extraction.await.context("feature extraction panicked")?,
        None => extract_all(&decoded, &order),
    };
    tx.execute(
        UPSERT_FEATURES,
        &[
            &sample_ids,
            &extracted.iter().map(|e| e.0).collect::<Vec<_>>(),
            &extracted.iter().map(|e| e.1).collect::<Vec<_>>(),
            &extracted.iter().map(|e| Floats(&e.2)).collect::<Vec<_>>(),
            &order
                .iter()
                .map(|at| message_of(at).job_id.as_deref())
                .collect::<Vec<_>>(),
            &column(&decoded, &order, |d, (m, _)| &d[m].message_id),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
