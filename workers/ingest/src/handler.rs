//! The ingest handler: upsert the batch's samples, emit `features.v1`.

use broker_schemas::{FeaturesV1, IngestV1};
use futures_util::future::join_all;
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
        let stmt = tx
            .prepare_cached(
                r#"INSERT INTO samples (project, site, subject, label, kind, timepoints, "values", job_id, message_id, trace_id, covariates, text)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                   ON CONFLICT (project, site, subject) DO UPDATE SET
                       label = EXCLUDED.label, kind = EXCLUDED.kind, timepoints = EXCLUDED.timepoints,
                       "values" = EXCLUDED."values", job_id = EXCLUDED.job_id,
                       covariates = EXCLUDED.covariates, text = EXCLUDED.text,
                       message_id = EXCLUDED.message_id, trace_id = EXCLUDED.trace_id, updated_at = now()
                   RETURNING id"#,
            )
            .await?;
        // Queries on one connection are pipelined: issue them all, then await.
        let inserts = message.samples.iter().map(|s| {
            let timepoints = s.timepoints.map(|t| t as i32);
            let stmt = &stmt;
            let meta = &meta;
            let project = &message.project;
            let site = &message.site;
            async move {
                let covariates = serde_json::to_value(&s.covariates).unwrap_or_default();
                tx.query_one(
                    stmt,
                    &[
                        project,
                        site,
                        &s.subject,
                        &s.label,
                        &kind,
                        &timepoints,
                        &Floats(&s.values),
                        &meta.job_id,
                        &meta.message_id,
                        &meta.trace_id,
                        &covariates,
                        &s.text,
                    ],
                )
                .await
            }
        });
        // The first batch of a project fixes its kind and dimension. The check goes down the
        // connection's pipeline with the upserts, all prepared once per connection: one round
        // trip for the lot. A mismatch rolls the upserts back with the transaction.
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
            join_all(inserts),
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
        let rows = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
        let sample_ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        work.emit(&FeaturesV1 {
            project: message.project,
            sample_ids,
        })
        .await
    }
}
