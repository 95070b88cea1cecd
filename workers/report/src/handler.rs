//! [`ReportHandler`]: renders a finished run's (or statistics job's) report and stores it in
//! `reports`.
//!
//! One `report.v1` message → load the run (or else the statistics job) in the delivery's
//! transaction → render the summary, Markdown, HTML and JSON → upsert the `reports` row with the
//! delivery's lineage. Re-handling the same id replaces its report, so redeliveries and replays
//! are harmless.

use broker_schemas::ReportV1;
use swarm_runtime::{HandleError, Handler, Work};
use uuid::Uuid;

use crate::db::{self, LoadError, ReportLineage};
use crate::render::{self, RenderOptions};

/// The report worker's handler: `ReportHandler::default()` links nothing,
/// [`ReportHandler::from_env`] links trace ids to `JAEGER_UI_URL`.
#[derive(Debug, Clone, Default)]
pub struct ReportHandler {
    options: RenderOptions,
}

impl ReportHandler {
    /// A handler rendering with these options.
    pub fn new(options: RenderOptions) -> Self {
        Self { options }
    }

    /// A handler whose reports link trace ids to `JAEGER_UI_URL` (unset: no link).
    pub fn from_env() -> Self {
        Self::new(RenderOptions::from_env())
    }
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
        let subject = match db::load_subject(tx, run_id).await {
            Ok(Some(subject)) => subject,
            Ok(None) => return Err(not_found(run_id)),
            Err(error) => return Err(load_failed(error)),
        };
        let kind = subject.kind();

        // Rendering is CPU work (charts, a page of up to a few MB): off the async threads.
        let options = self.options.clone();
        // The span is made here: the blocking thread does not inherit the current one.
        let span = tracing::info_span!("render", run_id = %run_id, kind);
        let rendered =
            tokio::task::spawn_blocking(move || span.in_scope(|| render::all(&subject, &options)))
                .await
                .map_err(|error| {
                    HandleError::Transient(anyhow::anyhow!("rendering panicked: {error}"))
                })?
                .map_err(|error| HandleError::permanent(format!("{kind} {run_id}: {error}")))?;

        let meta = work.meta();
        let lineage = ReportLineage {
            job_id: meta.job_id.as_deref(),
            message_id: &meta.message_id,
            trace_id: meta.trace_id.as_deref(),
        };
        db::store_report(tx, run_id, kind, &rendered, lineage).await?;
        tracing::info!(
            run_id = %run_id,
            kind,
            html_bytes = rendered.html.len(),
            "Stored the report."
        );
        Ok(())
    }
}

/// A `report.v1` for an id that is neither a run nor a statistics job is dead-lettered: the
/// train and stats workers write their rows before they emit the message, in the same
/// transaction.
fn not_found(run_id: Uuid) -> HandleError {
    HandleError::permanent(format!(
        "run {run_id} not found (neither in runs nor in stats_jobs)"
    ))
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
            HandleError::Permanent(reason) => {
                assert!(reason.starts_with(&format!("run {id} not found")))
            }
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
