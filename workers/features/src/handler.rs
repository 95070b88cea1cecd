//! The features handler: load the samples named by `features.v1`, extract, upsert `features`.

use broker_schemas::{limits, FeaturesV1};
use futures_util::future::try_join_all;
use swarm_runtime::{HandleError, Handler, Work};

use crate::connectivity;

/// Extractor name for vectors used as they are.
pub const IDENTITY: &str = "identity";

/// Consumes `features.v1` from `<ns>.features`.
#[derive(Debug, Default, Clone)]
pub struct FeaturesHandler;

struct Extracted {
    sample_id: i64,
    extractor: &'static str,
    version: i32,
    values: Vec<f32>,
}

fn extract(
    sample_id: i64,
    kind: &str,
    timepoints: Option<i32>,
    values: Vec<f32>,
) -> Result<Extracted, String> {
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
        let tx = work.tx();
        let rows = tx
            .query(
                r#"SELECT id, kind, timepoints, "values" FROM samples WHERE id = ANY($1) AND project = $2"#,
                &[&message.sample_ids, &message.project],
            )
            .await?;
        if rows.len() != message.sample_ids.len() {
            let found: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
            let missing: Vec<i64> = message
                .sample_ids
                .iter()
                .copied()
                .filter(|id| !found.contains(id))
                .collect();
            return Err(HandleError::permanent(format!(
                "project {:?} has no samples with ids {missing:?}",
                message.project
            )));
        }
        let samples: Vec<(i64, String, Option<i32>, Vec<f32>)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        // Connectivity is CPU work: keep it off the async threads.
        // The span is made here: the blocking thread does not inherit the current one.
        let span = tracing::info_span!("extract");
        let extracted = tokio::task::spawn_blocking(move || {
            let _span = span.entered();
            samples
                .into_iter()
                .map(|(id, kind, t, values)| extract(id, &kind, t, values))
                .collect::<Result<Vec<_>, String>>()
        })
        .await
        .map_err(|e| HandleError::Transient(anyhow::anyhow!("extraction panicked: {e}")))?
        .map_err(HandleError::Permanent)?;
        let meta = work.meta().clone();
        let stmt = tx
            .prepare_cached(
                r#"INSERT INTO features (sample_id, extractor, version, "values", job_id, message_id, trace_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (sample_id, extractor, version) DO UPDATE SET
                       "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
                       message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, created_at = now()"#,
            )
            .await?;
        let upserts = extracted.iter().map(|e| {
            let (stmt, meta) = (&stmt, &meta);
            async move {
                tx.execute(
                    stmt,
                    &[
                        &e.sample_id,
                        &e.extractor,
                        &e.version,
                        &e.values,
                        &meta.job_id,
                        &meta.message_id,
                        &meta.trace_id,
                    ],
                )
                .await
            }
        });
        try_join_all(upserts).await?;
        Ok(())
    }
}
