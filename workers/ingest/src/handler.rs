//! The ingest handler: upsert the batch's samples in one statement, emit `features.v1`.

use std::collections::HashMap;

use broker_schemas::{FeaturesV1, IngestV1};
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
        // `validate` has checked the whole batch; the first sample gives its shape.
        let first = message
            .samples
            .first()
            .ok_or_else(|| HandleError::permanent("the batch has no samples"))?;
        let shape = validate::sample_shape(first, &swarm_runtime::limits::current())
            .map_err(HandleError::Permanent)?;
        let tx = work.tx();
        let kind = shape.kind.as_str();
        let dimension = shape.dimension as i32;
        let meta = work.meta().clone();
        // One statement for the whole batch: its columns go as arrays, one element per sample,
        // and `unnest` turns them back into rows (a subject appears once per batch, which
        // `validate` checks, so no row is upserted twice by the statement).
        let stmt = tx
            .prepare_cached(
                r#"INSERT INTO samples (project, site, subject, label, kind, timepoints, "values", job_id, message_id, trace_id, covariates, text)
                   SELECT $1, $2, u.subject, u.label, $3, u.timepoints, u."values", $4, $5, $6, u.covariates, u.text
                   FROM unnest($7::text[], $8::text[], $9::integer[], $10::bytea[], $11::jsonb[], $12::text[])
                       AS u (subject, label, timepoints, "values", covariates, text)
                   ON CONFLICT (project, site, subject) DO UPDATE SET
                       label = EXCLUDED.label, kind = EXCLUDED.kind, timepoints = EXCLUDED.timepoints,
                       "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
                       covariates = EXCLUDED.covariates, text = EXCLUDED.text,
                       message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, updated_at = now()
                   RETURNING subject, id"#,
            )
            .await?;
        let samples = &message.samples;
        let subjects: Vec<&str> = samples.iter().map(|s| s.subject.as_str()).collect();
        let labels: Vec<&str> = samples.iter().map(|s| s.label.as_str()).collect();
        let timepoints: Vec<Option<i32>> = samples
            .iter()
            .map(|s| s.timepoints.map(|t| t as i32))
            .collect();
        let values: Vec<Floats> = samples.iter().map(|s| Floats(&s.values)).collect();
        let covariates: Vec<serde_json::Value> = samples
            .iter()
            .map(|s| serde_json::to_value(&s.covariates).unwrap_or_default())
            .collect();
        let texts: Vec<Option<&str>> = samples.iter().map(|s| s.text.as_deref()).collect();
        let upsert_params: [&(dyn ToSql + Sync); 12] = [
            &message.project,
            &message.site,
            &kind,
            &meta.job_id,
            &meta.message_id,
            &meta.trace_id,
            &subjects,
            &labels,
            &timepoints,
            &values,
            &covariates,
            &texts,
        ];
        // The first batch of a project fixes its kind and dimension. The check goes down the
        // connection's pipeline with the upsert, all prepared once per connection: one round
        // trip for the lot. A mismatch rolls the upsert back with the transaction.
        let (insert_project, select_project) = (
            tx.prepare_cached(
                "INSERT INTO projects (name, kind, dimension) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .await?,
            tx.prepare_cached("SELECT kind, dimension FROM projects WHERE name = $1")
                .await?,
        );
        let insert_params: [&(dyn ToSql + Sync); 3] = [&message.project, &kind, &dimension];
        let select_params: [&(dyn ToSql + Sync); 1] = [&message.project];
        let (inserted, project, rows) = futures_util::join!(
            tx.execute(&insert_project, &insert_params),
            tx.query_one(&select_project, &select_params),
            tx.query(&stmt, &upsert_params),
        );
        inserted?;
        let project = project?;
        let (project_kind, project_dimension): (String, i32) = (project.get(0), project.get(1));
        if project_kind != kind || project_dimension != dimension {
            return Err(HandleError::permanent(format!(
                "project {:?} holds {project_kind} samples of dimension {project_dimension}, but this batch has {kind} samples of dimension {dimension}",
                message.project
            )));
        }
        // `RETURNING` promises no order: the ids go downstream in the batch's order.
        let ids: HashMap<String, i64> = rows?.iter().map(|r| (r.get(0), r.get(1))).collect();
        let sample_ids = subjects
            .iter()
            .map(|subject| {
                ids.get(*subject).copied().ok_or_else(|| {
                    HandleError::Transient(anyhow::anyhow!(
                        "the upsert returned no id for subject {subject:?}"
                    ))
                })
            })
            .collect::<Result<Vec<i64>, _>>()?;
        work.emit(&FeaturesV1 {
            project: message.project,
            sample_ids,
        })
        .await
    }
}
