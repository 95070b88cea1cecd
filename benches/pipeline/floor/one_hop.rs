//! The one-hop floor: the least a correct consumer does to store what Swarm's ingest and
//! features workers store. Per batch of deliveries, in ONE transaction:
//!
//! 1. the batch's idempotency records, one `INSERT … SELECT unnest(…) … ON CONFLICT DO NOTHING
//!    RETURNING` (a redelivered message is skipped);
//! 2. the ingest worker's project check, once per project in the batch;
//! 3. every sample of the batch in one multi-row upsert, `ON CONFLICT (project, site, subject)
//!    DO UPDATE`, `RETURNING` the ids (a subject named by two messages of the batch is written
//!    once, the later message's);
//! 4. every sample's features in one multi-row upsert the same way, computed on a blocking
//!    thread while the samples are written ([`Compute::WhileWriting`]) or after
//!    ([`Compute::AfterWrites`]);
//!
//! then the commit and one `multiple=true` ack. Two batches are in flight: one is decoded and
//! written while the one before commits, on a connection of its own. No `features.v1` message, no outbox, no second
//! queue, no re-reading the samples. The rows are Swarm's: values as big-endian `float4`
//! `bytea`, the lineage columns (`job_id`, `message_id`) of the message that wrote each row.
//!
//! The upserts take one of two forms ([`Sql`]): binary `COPY … FROM STDIN` into the session's
//! temporary staging tables (no WAL, emptied at every commit) and one `INSERT … SELECT … ON
//! CONFLICT` from each, or every column as an array parameter, `unnest`ed in the select list
//! (read in lockstep; in `FROM` the server would first copy the arrays into a tuplestore, onto
//! disk past `work_mem`: a batch of time series is 15 MB). The staging tables need the
//! database's TEMP privilege (PUBLIC's unless revoked).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use broker_schemas::{IngestV1, SampleKind};
use deadpool_postgres::{Pool, Transaction};
use lapin::message::Delivery;
use lapin::Consumer;
use swarm_runtime::floats::Floats;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::consume::{each_batch, Batching};

/// The ingest worker's upsert (workers/ingest/src/handler.rs): every column an array, without `covariates` and `text`, which the bench's samples leave at
/// their defaults (`'{}'` and NULL).
const UPSERT_SAMPLES: &str = r#"INSERT INTO samples (project, site, subject, label, kind, timepoints, "values", job_id, message_id)
    SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::text[]),
        unnest($5::text[]), unnest($6::integer[]), unnest($7::bytea[]), unnest($8::text[]),
        unnest($9::text[])
    ON CONFLICT (project, site, subject) DO UPDATE SET
        label = EXCLUDED.label, kind = EXCLUDED.kind, timepoints = EXCLUDED.timepoints,
        "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
        message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, updated_at = now()
    RETURNING project, site, subject, id"#;

/// The features worker's upsert (workers/features/src/handler.rs) for a whole batch of
/// messages.
const UPSERT_FEATURES: &str = r#"INSERT INTO features (sample_id, extractor, version, "values", job_id, message_id)
    SELECT unnest($1::bigint[]), unnest($2::text[]), unnest($3::integer[]), unnest($4::bytea[]),
        unnest($5::text[]), unnest($6::text[])
    ON CONFLICT (sample_id, extractor, version) DO UPDATE SET
        "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
        message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, created_at = now()"#;

/// How the one-hop floor sends a batch's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sql {
    /// Every column as an array parameter, `unnest`ed into one multi-row upsert.
    Unnest,
    /// Binary `COPY` into a session's temporary table, then one `INSERT … SELECT … ON
    /// CONFLICT` from it.
    Copy,
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
/// batch's samples and features in one transaction (up to [`IN_FLIGHT`](super::consume::IN_FLIGHT)
/// at once, on connections of `pool`), then acks it.
pub async fn one_hop(
    consumer: &mut Consumer,
    pool: &Pool,
    queue: &str,
    messages: usize,
    batching: Batching,
    compute: Compute,
    sql: Sql,
) -> anyhow::Result<()> {
    let queue = queue.to_string();
    each_batch(consumer, messages, batching, |batch| {
        let (pool, queue) = (pool.clone(), queue.clone());
        async move {
            commit(&pool, &queue, &batch, compute, sql).await?;
            Ok(batch)
        }
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
    sql: Sql,
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
    let keys = |at: &At| {
        let (m, s) = (&decoded[at.0].message, &decoded[at.0].message.samples[at.1]);
        (m.project.as_str(), m.site.as_str(), s.subject.as_str())
    };
    let ids = match sql {
        Sql::Unnest => unnest_samples(&tx, &decoded, &order).await?,
        Sql::Copy => copy_samples(&tx, &decoded, &order).await?,
    };
    // `RETURNING` promises no order: the ids are matched to the samples by key.
    let ids: HashMap<(&str, &str, &str), i64> = ids
        .iter()
        .map(|(p, s, j, id)| ((p.as_str(), s.as_str(), j.as_str()), *id))
        .collect();
    let sample_ids = order
        .iter()
        .map(|at| {
            let key = keys(at);
            ids.get(&key)
                .copied()
                .with_context(|| format!("no id returned for {key:?}"))
        })
        .collect::<anyhow::Result<Vec<i64>>>()?;
    let extracted = match extraction {
        Some(extraction) => extraction.await.context("feature extraction panicked")?,
        None => extract_all(&decoded, &order),
    };
    let rows: Vec<FeatureRow> = order
        .iter()
        .zip(&sample_ids)
        .zip(&extracted)
        .map(|((&(m, _), &sample_id), e)| FeatureRow {
            sample_id,
            extractor: e.0,
            version: e.1,
            values: &e.2,
            job_id: decoded[m].job_id.as_deref(),
            message_id: &decoded[m].message_id,
        })
        .collect();
    match sql {
        Sql::Unnest => unnest_features(&tx, &rows).await?,
        Sql::Copy => copy_features(&tx, &rows).await?,
    }
    tx.commit().await?;
    Ok(())
}

/// A sample's id as `RETURNING` gives it: `(project, site, subject, id)`.
type SampleId = (String, String, String, i64);

fn returned(rows: &[tokio_postgres::Row]) -> Vec<SampleId> {
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn unnest_samples(
    tx: &Transaction<'_>,
    decoded: &[Decoded],
    order: &[At],
) -> anyhow::Result<Vec<SampleId>> {
    let message_of = |&(m, _): &At| &decoded[m];
    let sample_of = |&(m, s): &At| &decoded[m].message.samples[s];
    let rows = tx
        .query(
            UPSERT_SAMPLES,
            &[
                &column(decoded, order, |d, (m, _)| &d[m].message.project),
                &column(decoded, order, |d, (m, _)| &d[m].message.site),
                &column(decoded, order, |d, (m, s)| &d[m].message.samples[s].subject),
                &column(decoded, order, |d, (m, s)| &d[m].message.samples[s].label),
                &column(decoded, order, |d, (m, s)| {
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
                &column(decoded, order, |d, (m, _)| &d[m].message_id),
            ],
        )
        .await?;
    Ok(returned(&rows))
}

/// The session's staging tables, made once per connection: temporary (no WAL, no other
/// session sees them), emptied at every commit, their values stored uncompressed like the
/// tables they stand for. `temp_buffers` can only be raised before a session's first temporary
/// table: enough for a batch's samples, so staging them stays in memory.
const STAGING: &str = r#"DO $$ BEGIN
    IF to_regclass('pg_temp.staged_samples') IS NULL THEN
        PERFORM set_config('temp_buffers', '64MB', false);
        CREATE TEMP TABLE staged_samples (project text, site text, subject text, label text,
            kind text, timepoints integer, "values" bytea, job_id text, message_id text)
            ON COMMIT DELETE ROWS;
        ALTER TABLE staged_samples ALTER COLUMN "values" SET STORAGE EXTERNAL;
        CREATE TEMP TABLE staged_features (sample_id bigint, extractor text, version integer,
            "values" bytea, job_id text, message_id text) ON COMMIT DELETE ROWS;
        ALTER TABLE staged_features ALTER COLUMN "values" SET STORAGE EXTERNAL;
    END IF;
END $$"#;

async fn copy_samples(
    tx: &Transaction<'_>,
    decoded: &[Decoded],
    order: &[At],
) -> anyhow::Result<Vec<SampleId>> {
    tx.batch_execute(STAGING).await?;
    let sink = tx
        .copy_in(
            r#"COPY staged_samples (project, site, subject, label, kind, timepoints, "values", job_id, message_id) FROM STDIN BINARY"#,
        )
        .await?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT4,
        Type::BYTEA,
        Type::TEXT,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for &(m, s) in order {
        let d = &decoded[m];
        let sample = &d.message.samples[s];
        writer
            .as_mut()
            .write(&[
                &d.message.project,
                &d.message.site,
                &sample.subject,
                &sample.label,
                &sample.kind.as_str(),
                &sample.timepoints.map(|t| t as i32),
                &Floats(&sample.values),
                &d.job_id,
                &d.message_id,
            ])
            .await?;
    }
    writer.finish().await?;
    let rows = tx
        .query(
            r#"INSERT INTO samples (project, site, subject, label, kind, timepoints, "values", job_id, message_id)
               SELECT * FROM staged_samples
               ON CONFLICT (project, site, subject) DO UPDATE SET
                   label = EXCLUDED.label, kind = EXCLUDED.kind, timepoints = EXCLUDED.timepoints,
                   "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
                   message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, updated_at = now()
               RETURNING project, site, subject, id"#,
            &[],
        )
        .await?;
    Ok(returned(&rows))
}

/// One `features` row to write.
struct FeatureRow<'a> {
    sample_id: i64,
    extractor: &'static str,
    version: i32,
    values: &'a [f32],
    job_id: Option<&'a str>,
    message_id: &'a str,
}

async fn unnest_features(tx: &Transaction<'_>, rows: &[FeatureRow<'_>]) -> anyhow::Result<()> {
    tx.execute(
        UPSERT_FEATURES,
        &[
            &rows.iter().map(|r| r.sample_id).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.extractor).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.version).collect::<Vec<_>>(),
            &rows.iter().map(|r| Floats(r.values)).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.job_id).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.message_id).collect::<Vec<_>>(),
        ],
    )
    .await?;
    Ok(())
}

async fn copy_features(tx: &Transaction<'_>, rows: &[FeatureRow<'_>]) -> anyhow::Result<()> {
    let sink = tx
        .copy_in(
            r#"COPY staged_features (sample_id, extractor, version, "values", job_id, message_id) FROM STDIN BINARY"#,
        )
        .await?;
    let types = [
        Type::INT8,
        Type::TEXT,
        Type::INT4,
        Type::BYTEA,
        Type::TEXT,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for r in rows {
        writer
            .as_mut()
            .write(&[
                &r.sample_id,
                &r.extractor,
                &r.version,
                &Floats(r.values),
                &r.job_id,
                &r.message_id,
            ])
            .await?;
    }
    writer.finish().await?;
    tx.execute(
        r#"INSERT INTO features (sample_id, extractor, version, "values", job_id, message_id)
           SELECT * FROM staged_features
           ON CONFLICT (sample_id, extractor, version) DO UPDATE SET
               "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
               message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, created_at = now()"#,
        &[],
    )
    .await?;
    Ok(())
}
