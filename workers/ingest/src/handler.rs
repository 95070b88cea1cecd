//! The ingest handler: upsert a message's — or a whole batch's — samples in set-based
//! statements, emit one `features.v1` per message.

use std::collections::HashMap;

use broker_schemas::{FeaturesV1, IngestV1};
use futures_util::future::try_join_all;
use swarm_runtime::floats::Floats;
use swarm_runtime::{HandleError, Handler, Work};
use tokio_postgres::types::ToSql;

use crate::validate;

/// Consumes `ingest.v1` from `<ns>.ingest`.
#[derive(Debug, Default, Clone)]
pub struct IngestHandler;

impl Handler for IngestHandler {
    type Message = IngestV1;
    const NAME: &'static str = "ingest";

    fn validate(&self, message: &IngestV1) -> Result<(), String> {
        validate::batch(message).map(|_| ())
    }

    #[tracing::instrument(name = "ingest", skip_all, fields(project = %message.project, site = %message.site, samples = message.samples.len()), err)]
    async fn handle(&self, work: &mut Work<'_>, message: IngestV1) -> Result<(), HandleError> {
        store(std::slice::from_mut(work), vec![message]).await
    }

    #[tracing::instrument(name = "ingest", skip_all, fields(messages = messages.len()), err)]
    async fn handle_batch(
        &self,
        works: &mut [Work<'_>],
        messages: Vec<IngestV1>,
    ) -> Result<(), HandleError> {
        store(works, messages).await
    }
}

/// The upsert: every column an array, one element per sample, `unnest`ed in the select list
/// (the arrays have one length, so they are read in lockstep, row by row, with nothing
/// materialised — `FROM unnest(…)` would first copy a batch's values into a tuplestore, onto
/// disk past `work_mem`).
const UPSERT: &str = r#"INSERT INTO samples (project, site, subject, label, kind, timepoints, "values", job_id, message_id, trace_id, covariates, text)
    SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::text[]),
        unnest($5::text[]), unnest($6::integer[]), unnest($7::bytea[]), unnest($8::text[]),
        unnest($9::text[]), unnest($10::text[]), unnest($11::jsonb[]), unnest($12::text[])
    ON CONFLICT (project, site, subject) DO UPDATE SET
        label = EXCLUDED.label, kind = EXCLUDED.kind, timepoints = EXCLUDED.timepoints,
        "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
        covariates = EXCLUDED.covariates, text = EXCLUDED.text,
        message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, updated_at = now()
    RETURNING project, site, subject, id"#;

/// Values one upsert statement carries at most (1 MB as `bytea`): the statements go down the
/// connection's pipeline one after the other, and the server works on the first while the
/// next are still being encoded and sent; one statement for a batch of time series (15 MB)
/// would have it wait for the last byte first.
const VALUES_PER_STATEMENT: usize = 1 << 18;

/// A sample's key: `(project, site, subject)`.
type Key<'a> = (&'a str, &'a str, &'a str);

/// Where a sample is: (message, sample) indices.
type At = (usize, usize);

/// Stores `messages` (each recorded as processed in the transaction `works[i]` holds) and emits
/// each one's `features.v1`: their projects checked, their samples upserted in as few
/// statements as [`VALUES_PER_STATEMENT`] allows. A subject named by two messages is written
/// once, with the later message's sample and lineage, as if they had come one after the other:
/// `ON CONFLICT DO UPDATE` may not touch one row twice in a statement.
async fn store(works: &mut [Work<'_>], messages: Vec<IngestV1>) -> Result<(), HandleError> {
    let Some(first) = works.first() else {
        return Ok(());
    };
    let tx = first.tx();
    // `validate` has checked each message whole; its first sample gives its shape.
    let limits = swarm_runtime::limits::current();
    let shapes = messages
        .iter()
        .map(|m| {
            let first = m
                .samples
                .first()
                .ok_or_else(|| HandleError::permanent("the batch has no samples"))?;
            let shape = validate::sample_shape(first, &limits).map_err(HandleError::Permanent)?;
            Ok((shape.kind.as_str(), shape.dimension as i32))
        })
        .collect::<Result<Vec<_>, HandleError>>()?;

    // The samples to write, the later of two with one key.
    let mut rows: Vec<At> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    for (m, message) in messages.iter().enumerate() {
        for (s, sample) in message.samples.iter().enumerate() {
            let key = (
                message.project.as_str(),
                message.site.as_str(),
                sample.subject.as_str(),
            );
            match index.get(&key) {
                Some(&i) => rows[i] = (m, s),
                None => {
                    index.insert(key, rows.len());
                    rows.push((m, s));
                }
            }
        }
    }
    let upsert = tx.prepare_cached(UPSERT).await?;
    let metas: Vec<_> = works.iter().map(|w| w.meta().clone()).collect();
    let upserts = parts(&messages, &rows).map(|part| {
        let sample = |(m, s): At| &messages[m].samples[s];
        let projects = column(part, |(m, _)| &messages[m].project);
        let sites = column(part, |(m, _)| &messages[m].site);
        let subjects = column(part, |at| &sample(at).subject);
        let labels = column(part, |at| &sample(at).label);
        let kinds = column(part, |at| sample(at).kind.as_str());
        let timepoints: Vec<Option<i32>> = part
            .iter()
            .map(|&at| sample(at).timepoints.map(|t| t as i32))
            .collect();
        let values: Vec<Floats> = part.iter().map(|&at| Floats(&sample(at).values)).collect();
        let job_ids: Vec<Option<&str>> = part
            .iter()
            .map(|&(m, _)| metas[m].job_id.as_deref())
            .collect();
        let message_ids = column(part, |(m, _)| &metas[m].message_id);
        let trace_ids: Vec<Option<&str>> = part
            .iter()
            .map(|&(m, _)| metas[m].trace_id.as_deref())
            .collect();
        let covariates: Vec<serde_json::Value> = part
            .iter()
            .map(|&at| serde_json::to_value(&sample(at).covariates).unwrap_or_default())
            .collect();
        let texts: Vec<Option<&str>> = part.iter().map(|&at| sample(at).text.as_deref()).collect();
        let upsert = &upsert;
        async move {
            let params: [&(dyn ToSql + Sync); 12] = [
                &projects,
                &sites,
                &subjects,
                &labels,
                &kinds,
                &timepoints,
                &values,
                &job_ids,
                &message_ids,
                &trace_ids,
                &covariates,
                &texts,
            ];
            tx.query(upsert, &params).await
        }
    });
    // The first message of a project fixes its kind and dimension. The checks go down the
    // connection's pipeline with the upserts, all prepared once per connection: one round trip
    // for the lot. A mismatch rolls the upserts back with the transaction.
    let (insert_project, select_project) = (
        tx.prepare_cached(
            "INSERT INTO projects (name, kind, dimension) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .await?,
        tx.prepare_cached("SELECT kind, dimension FROM projects WHERE name = $1")
            .await?,
    );
    let mut projects: Vec<(&str, &str, i32)> = Vec::new();
    for (message, &(kind, dimension)) in messages.iter().zip(&shapes) {
        if !projects.iter().any(|p| p.0 == message.project) {
            projects.push((&message.project, kind, dimension));
        }
    }
    let checks = projects.iter().map(|&(project, kind, dimension)| {
        let (insert_project, select_project) = (&insert_project, &select_project);
        async move {
            let insert: [&(dyn ToSql + Sync); 3] = [&project, &kind, &dimension];
            let select: [&(dyn ToSql + Sync); 1] = [&project];
            let (inserted, stored) = futures_util::join!(
                tx.execute(insert_project, &insert),
                tx.query_one(select_project, &select),
            );
            inserted?;
            let stored = stored?;
            Ok::<_, tokio_postgres::Error>((
                project,
                stored.get::<_, String>(0),
                stored.get::<_, i32>(1),
            ))
        }
    });
    let (stored, upserted) = futures_util::join!(try_join_all(checks), try_join_all(upserts));
    let stored = stored?;
    for (message, &(kind, dimension)) in messages.iter().zip(&shapes) {
        let (_, project_kind, project_dimension) = stored
            .iter()
            .find(|p| p.0 == message.project)
            .expect("every message's project was checked");
        if project_kind != kind || *project_dimension != dimension {
            return Err(HandleError::permanent(format!(
                "project {:?} holds {project_kind} samples of dimension {project_dimension}, but this batch has {kind} samples of dimension {dimension}",
                message.project
            )));
        }
    }
    // `RETURNING` promises no order: the ids go downstream in each message's order.
    let mut ids: HashMap<(String, String, String), i64> = HashMap::new();
    for row in upserted?.iter().flatten() {
        ids.insert((row.get(0), row.get(1), row.get(2)), row.get(3));
    }
    for (work, message) in works.iter_mut().zip(messages) {
        let sample_ids = message
            .samples
            .iter()
            .map(|sample| {
                let key = (
                    message.project.clone(),
                    message.site.clone(),
                    sample.subject.clone(),
                );
                ids.get(&key).copied().ok_or_else(|| {
                    HandleError::Transient(anyhow::anyhow!(
                        "the upsert returned no id for subject {:?}",
                        sample.subject
                    ))
                })
            })
            .collect::<Result<Vec<i64>, _>>()?;
        work.emit(&FeaturesV1 {
            project: message.project,
            sample_ids,
        })
        .await?;
    }
    Ok(())
}

/// A text column of the samples at `part`.
fn column<'a>(part: &[At], f: impl Fn(At) -> &'a str) -> Vec<&'a str> {
    part.iter().map(|&at| f(at)).collect()
}

/// `rows` in consecutive parts of at most [`VALUES_PER_STATEMENT`] values each (a sample with
/// more is a part of its own).
fn parts<'a>(messages: &'a [IngestV1], rows: &'a [At]) -> impl Iterator<Item = &'a [At]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut values = 0;
        let n = rest
            .iter()
            .take_while(|&&(m, s)| {
                values += messages[m].samples[s].values.len();
                values <= VALUES_PER_STATEMENT
            })
            .count()
            .max(1);
        let (part, tail) = rest.split_at(n);
        rest = tail;
        Some(part)
    })
}
