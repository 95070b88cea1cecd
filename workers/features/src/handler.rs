//! The features handler: load the samples named by `features.v1` — a message's, or a whole
//! batch's — extract, upsert `features` in set-based statements.

use std::collections::HashMap;

use broker_schemas::{limits, FeaturesV1};
use futures_util::future::try_join_all;
use swarm_runtime::floats::{FloatVec, Floats};
use swarm_runtime::{HandleError, Handler, Work};
use tokio_postgres::types::ToSql;

use crate::{connectivity, text};

/// Extractor name for vectors used as they are.
pub const IDENTITY: &str = "identity";
/// Extractor name for hashed word uni+bi-gram frequencies of text samples.
pub const TEXT: &str = "text";

/// Consumes `features.v1` from `<ns>.features`.
#[derive(Debug, Default, Clone)]
pub struct FeaturesHandler;

struct Extracted {
    sample_id: i64,
    extractor: &'static str,
    version: i32,
    values: Vec<f32>,
}

/// A stored sample, as the extractors need it.
struct Stored {
    id: i64,
    kind: String,
    timepoints: Option<i32>,
    values: Vec<f32>,
    text: Option<String>,
}

fn extract(sample: Stored) -> Result<Extracted, String> {
    let Stored {
        id: sample_id,
        kind,
        timepoints,
        values,
        text,
    } = sample;
    if kind == "text" {
        return match text {
            Some(text) => Ok(Extracted {
                sample_id,
                extractor: TEXT,
                version: text::VERSION,
                values: text::extract(&text),
            }),
            None => Err(format!("text sample {sample_id} has no text")),
        };
    }
    let kind = kind.as_str();
    match (kind, timepoints) {
        ("vector", _) => Ok(Extracted {
            sample_id,
            extractor: IDENTITY,
            version: 1,
            values,
        }),
        ("timeseries", Some(t)) if t > 0 && values.len() % t as usize == 0 => Ok(Extracted {
            sample_id,
            extractor: connectivity::EXTRACTOR,
            version: connectivity::VERSION,
            values: connectivity::fisher_z(&values, t as usize),
        }),
        _ => Err(format!(
            "sample {sample_id} is a {kind} with an unusable shape"
        )),
    }
}

/// The cores this process may use (1 if unknown).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Handler for FeaturesHandler {
    type Message = FeaturesV1;
    const NAME: &'static str = "features";

    fn validate(&self, message: &FeaturesV1) -> Result<(), String> {
        if message.sample_ids.is_empty() {
            return Err("no sample ids".into());
        }
        if message.sample_ids.len() > limits::MAX_SAMPLES_PER_BATCH {
            return Err(format!(
                "{} sample ids; the limit is {}",
                message.sample_ids.len(),
                limits::MAX_SAMPLES_PER_BATCH
            ));
        }
        Ok(())
    }

    #[tracing::instrument(name = "features", skip_all, fields(project = %message.project, samples = message.sample_ids.len()), err)]
    async fn handle(&self, work: &mut Work<'_>, message: FeaturesV1) -> Result<(), HandleError> {
        store(std::slice::from_mut(work), vec![message]).await
    }

    #[tracing::instrument(name = "features", skip_all, fields(messages = messages.len()), err)]
    async fn handle_batch(
        &self,
        works: &mut [Work<'_>],
        messages: Vec<FeaturesV1>,
    ) -> Result<(), HandleError> {
        store(works, messages).await
    }
}

/// Samples loaded, extracted and upserted together, at most: bounds a batch's memory (about
/// 250 MB at the largest samples allowed).
pub const CHUNK: usize = 128;

/// Extracts and stores the features of the samples `messages` name (each recorded as processed
/// in the transaction `works[i]` holds), a chunk of samples at a time: all the messages'
/// samples together, in set-based statements. A sample named twice is extracted once; its row's
/// lineage is the last message that names it, as if the messages had come one after the other.
async fn store(works: &mut [Work<'_>], messages: Vec<FeaturesV1>) -> Result<(), HandleError> {
    let Some(first) = works.first() else {
        return Ok(());
    };
    // Each sample id, with the messages that name it (the last one writes its row).
    let mut named: HashMap<i64, Vec<usize>> = HashMap::new();
    for (m, message) in messages.iter().enumerate() {
        for &id in &message.sample_ids {
            let by = named.entry(id).or_default();
            if by.last() != Some(&m) {
                by.push(m);
            }
        }
    }
    let mut ids: Vec<i64> = named.keys().copied().collect();
    ids.sort_unstable();
    let lineage: Vec<Lineage> = works
        .iter()
        .map(|w| {
            let meta = w.meta();
            Lineage {
                job_id: meta.job_id.clone(),
                message_id: meta.message_id.clone(),
                trace_id: meta.trace_id.clone(),
            }
        })
        .collect();
    let writer = |id: i64| &lineage[*named[&id].last().expect("a sample id is named")];
    // A chunk at a time: a message may name 10,000 samples of up to 480,000 values, far more
    // than should be in memory at once. The chunks are even, so no last one runs nearly empty.
    let chunks = ids.len().div_ceil(CHUNK).max(1);
    for ids in ids.chunks(ids.len().div_ceil(chunks).max(1)) {
        let samples = load(first, ids).await?;
        check_projects(&messages, &named, ids, &samples)?;
        let samples = samples.into_iter().map(|(_, stored)| stored).collect();
        let extracted = extract_all(samples).await?;
        upsert(first, &extracted, writer).await?;
    }
    Ok(())
}

/// The lineage columns of the message that writes a row.
struct Lineage {
    job_id: Option<String>,
    message_id: String,
    trace_id: Option<String>,
}

/// Loads the samples `ids` that exist, each with its project.
async fn load(work: &Work<'_>, ids: &[i64]) -> Result<Vec<(String, Stored)>, HandleError> {
    let tx = work.tx();
    // By primary key only: with `AND project = $2` in the query the planner, whose row
    // estimates lag behind a growing table, chose the (project, site, subject) index and
    // read every sample of the project for each message. The project is checked after.
    let select = tx
        .prepare_cached(
            r#"SELECT id, kind, timepoints, "values", text, project FROM samples WHERE id = ANY($1)"#,
        )
        .await?;
    let rows = tx.query(&select, &[&ids]).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get(5),
                Stored {
                    id: r.get(0),
                    kind: r.get(1),
                    timepoints: r.get(2),
                    values: r.get::<_, FloatVec>(3).0,
                    text: r.get(4),
                },
            )
        })
        .collect())
}

/// A permanent error for the first message that names, among `ids`, a sample its project does
/// not have.
fn check_projects(
    messages: &[FeaturesV1],
    named: &HashMap<i64, Vec<usize>>,
    ids: &[i64],
    loaded: &[(String, Stored)],
) -> Result<(), HandleError> {
    let project_of: HashMap<i64, &str> = loaded.iter().map(|(p, s)| (s.id, p.as_str())).collect();
    let mut missing: Vec<Vec<i64>> = vec![Vec::new(); messages.len()];
    for id in ids {
        for &m in &named[id] {
            if project_of.get(id) != Some(&messages[m].project.as_str()) {
                missing[m].push(*id);
            }
        }
    }
    match missing.iter().position(|ids| !ids.is_empty()) {
        None => Ok(()),
        Some(m) => Err(HandleError::permanent(format!(
            "project {:?} has no samples with ids {:?}",
            messages[m].project, missing[m]
        ))),
    }
}

/// Extracts the features of `samples`, spread over the cores.
async fn extract_all(samples: Vec<Stored>) -> Result<Vec<Extracted>, HandleError> {
    let count = samples.len();
    // Connectivity is CPU work: keep it off the async threads, and spread a message's
    // samples over the cores (a lone message, e.g. the last of a job, then takes a fraction
    // of the time). The span is made here: blocking threads do not inherit the current one.
    let span = tracing::info_span!("extract");
    let per_thread = count.div_ceil(cores()).max(1);
    let mut chunks = Vec::new();
    let mut samples = samples.into_iter();
    loop {
        let chunk: Vec<Stored> = samples.by_ref().take(per_thread).collect();
        if chunk.is_empty() {
            break;
        }
        let span = span.clone();
        chunks.push(tokio::task::spawn_blocking(move || {
            let _span = span.entered();
            chunk
                .into_iter()
                .map(extract)
                .collect::<Result<Vec<_>, String>>()
        }));
    }
    let mut extracted = Vec::with_capacity(count);
    for chunk in try_join_all(chunks)
        .await
        .map_err(|e| HandleError::Transient(anyhow::anyhow!("extraction panicked: {e}")))?
    {
        extracted.extend(chunk.map_err(HandleError::Permanent)?);
    }
    Ok(extracted)
}

/// Values one upsert statement carries at most (32 MB as `bytea`): a chunk of the largest
/// samples is written in a few statements, not one of a quarter gigabyte.
const VALUES_PER_STATEMENT: usize = 8 << 20;

/// Upserts `extracted`, each row with the lineage `lineage` gives its sample: one statement
/// per [`VALUES_PER_STATEMENT`] values, its rows sent as arrays and `unnest`ed in the select
/// list (read in lockstep, nothing materialised; the ids are distinct, so no row is upserted
/// twice by a statement).
async fn upsert<'l>(
    work: &Work<'_>,
    extracted: &[Extracted],
    lineage: impl Fn(i64) -> &'l Lineage,
) -> Result<(), HandleError> {
    let tx = work.tx();
    let stmt = tx
        .prepare_cached(
            r#"INSERT INTO features (sample_id, extractor, version, "values", job_id, message_id, trace_id)
               SELECT unnest($1::bigint[]), unnest($2::text[]), unnest($3::integer[]),
                   unnest($4::bytea[]), unnest($5::text[]), unnest($6::text[]), unnest($7::text[])
               ON CONFLICT (sample_id, extractor, version) DO UPDATE SET
                   "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
                   message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, created_at = now()"#,
        )
        .await?;
    for part in parts(extracted, VALUES_PER_STATEMENT) {
        let sample_ids: Vec<i64> = part.iter().map(|e| e.sample_id).collect();
        let extractors: Vec<&str> = part.iter().map(|e| e.extractor).collect();
        let versions: Vec<i32> = part.iter().map(|e| e.version).collect();
        let values: Vec<Floats> = part.iter().map(|e| Floats(&e.values)).collect();
        let lineages: Vec<&Lineage> = part.iter().map(|e| lineage(e.sample_id)).collect();
        let job_ids: Vec<Option<&str>> = lineages.iter().map(|l| l.job_id.as_deref()).collect();
        let message_ids: Vec<&str> = lineages.iter().map(|l| l.message_id.as_str()).collect();
        let trace_ids: Vec<Option<&str>> = lineages.iter().map(|l| l.trace_id.as_deref()).collect();
        let params: [&(dyn ToSql + Sync); 7] = [
            &sample_ids,
            &extractors,
            &versions,
            &values,
            &job_ids,
            &message_ids,
            &trace_ids,
        ];
        tx.execute(&stmt, &params).await?;
    }
    Ok(())
}

/// `extracted` in consecutive parts of at most `max` values each (a row with more is a part of
/// its own).
fn parts(extracted: &[Extracted], max: usize) -> impl Iterator<Item = &[Extracted]> {
    let mut rest = extracted;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut values = 0;
        let rows = rest
            .iter()
            .take_while(|e| {
                values += e.values.len();
                values <= max
            })
            .count()
            .max(1);
        let (part, tail) = rest.split_at(rows);
        rest = tail;
        Some(part)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_upserted_in_parts_of_at_most_so_many_values() {
        let rows = |lengths: &[usize]| -> Vec<Extracted> {
            lengths
                .iter()
                .enumerate()
                .map(|(i, &n)| Extracted {
                    sample_id: i as i64,
                    extractor: IDENTITY,
                    version: 1,
                    values: vec![0.0; n],
                })
                .collect()
        };
        let sizes = |lengths: &[usize], max: usize| -> Vec<Vec<i64>> {
            parts(&rows(lengths), max)
                .map(|p| p.iter().map(|e| e.sample_id).collect())
                .collect()
        };
        assert_eq!(sizes(&[3, 3, 3], 10), vec![vec![0, 1, 2]]);
        assert_eq!(sizes(&[3, 3, 3], 6), vec![vec![0, 1], vec![2]]);
        // A row over the limit goes alone; nothing is lost or repeated.
        assert_eq!(sizes(&[2, 20, 2], 5), vec![vec![0], vec![1], vec![2]]);
        assert!(sizes(&[], 5).is_empty());
    }
}
