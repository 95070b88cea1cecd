//! [`ReportHandler`]: renders a finished run's report and stores it in `reports`.
//!
//! One `report.v1` message → load the run and its folds in the delivery's transaction → render
//! the summary, Markdown, HTML and JSON → upsert the `reports` row with the delivery's lineage.
//! Re-handling the same run replaces its report, so redeliveries and replays are harmless.

use broker_schemas::ReportV1;
use swarm_runtime::{HandleError, Handler, Work};
use uuid::Uuid;

use crate::db::{self, LoadError, ReportLineage};
use crate::render;

/// The report worker's handler; build it with `ReportHandler::default()`.
///
/// It holds no state yet. The private field keeps `default()` the one way to build it, so
/// settings can be added without breaking callers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportHandler {
    _private: (),
}

impl Handler for ReportHandler {
    type Message = ReportV1;

    const NAME: &'static str = "report";

    fn validate(&self, message: &ReportV1) -> Result<(), String> {
        if message.run_id.is_nil() {
            return Err("run_id is the nil UUID".to_owned());
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(run_id = %message.run_id), err)]
    async fn handle(&self, work: &mut Work<'_>, message: ReportV1) -> Result<(), HandleError> {
        let run_id = message.run_id;
        let tx = &**work.tx();
        let run = match db::load_run(tx, run_id).await {
            Ok(Some(run)) => run,
            Ok(None) => return Err(not_found(run_id)),
            Err(error) => return Err(load_failed(error)),
        };

        let rendered = tracing::info_span!("render", run_id = %run_id)
            .in_scope(|| render::all(&run))
            .map_err(|error| HandleError::permanent(format!("run {run_id}: {error}")))?;

        let meta = work.meta();
        let lineage = ReportLineage {
            job_id: meta.job_id.as_deref(),
            message_id: &meta.message_id,
            trace_id: meta.trace_id.as_deref(),
        };
        db::store_report(tx, run_id, &rendered, lineage).await?;
        tracing::info!(
            run_id = %run_id,
            html_bytes = rendered.html.len(),
            "Stored the report."
        );
        Ok(())
    }
}

/// A `report.v1` for a run that does not exist is dead-lettered: the train worker writes the run
/// before it emits the message, in the same transaction.
fn not_found(run_id: Uuid) -> HandleError {
    HandleError::permanent(format!("run {run_id} not found"))
}

fn load_failed(error: LoadError) -> HandleError {
    if error.is_permanent() {
        HandleError::permanent(error.to_string())
    } else {
        HandleError::Transient(anyhow::Error::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nil_run_ids_are_rejected_before_any_transaction() {
        let handler = ReportHandler::default();
        assert!(handler
            .validate(&ReportV1 {
                run_id: Uuid::nil()
            })
            .is_err());
        assert!(handler
            .validate(&ReportV1 {
                run_id: Uuid::now_v7()
            })
            .is_ok());
    }

    #[test]
    fn errors_say_what_happens_next() {
        let id = Uuid::nil();
        match not_found(id) {
            HandleError::Permanent(reason) => assert_eq!(reason, format!("run {id} not found")),
            other => panic!("expected a permanent error, got {other:?}"),
        }
        let malformed = LoadError::Malformed {
            run_id: id,
            what: "runs.cv: bad".to_owned(),
        };
        assert!(matches!(load_failed(malformed), HandleError::Permanent(_)));
        assert_eq!(ReportHandler::NAME, "report");
    }
}
