//! A `train.unit.v1` delivery: one unit of a planned run, computed outside any transaction
//! ([`compute`]), then stored in one short one ([`store`]).
//!
//! 1. **Claim** (autocommit, before any work): the unit must still be queued and its run
//!    running; the attempt is counted. A unit already stored (a redelivery after its commit)
//!    or of a run that failed, finished or was cancelled is acknowledged without computing.
//! 2. **Compute**, on the worker's `TRAIN_THREADS` pool: the run (request, rows, plan) comes
//!    from the worker's cache, loaded once per run; a validation unit's fits, or — for the
//!    run's last unit — the assembly of every unit's results and the final refit.
//! 3. **Store**, in the delivery's transaction, under the run row's lock: the unit's results
//!    (only if it is still queued and its run running: a duplicate stores nothing), the run's
//!    counter, and — when that counter reaches the last unit — the `train.unit.v1` of the
//!    run's final unit; the final unit stores the run (`runs`, `folds`, `predictions`) and
//!    emits `report.v1`. A unit that cannot be computed fails its run once, with the reason.
//!
//! A crash between compute and commit wastes only that unit: it is redelivered and computed
//! again, and stored once.

use std::sync::Arc;
use std::time::Instant;

use broker_schemas::{ReportV1, TrainRequest, TrainUnitV1};
use deadpool_postgres::Pool;
use swarm_runtime::{HandleError, MessageMeta, Work};
use uuid::Uuid;

use crate::cv::{self, RunOutcome, SplitResult};
use crate::handler::Shared;
use crate::load::{load, project_kind, Selection};
use crate::planning::{prepare, source_of, PlannedRun, Step};
use crate::request::describe;
use crate::runs::{
    CLAIM_SQL, COUNT_UNIT_SQL, FAIL_SQL, FINISH_SQL, LOAD_JOB_SQL, LOCK_JOB_SQL, RESULTS_SQL,
    STORE_UNIT_SQL, UNCLAIMED_SQL,
};
use crate::store::{store_run, Lineage, RunRecord};

/// A unit after its computation: what its transaction stores.
#[derive(Debug)]
pub struct Computed {
    /// The run.
    pub run_id: Uuid,
    /// The unit.
    pub unit: u32,
    /// What came of it.
    pub outcome: UnitOutcome,
    /// How long it computed.
    pub duration_ms: i64,
}

/// What came of computing a unit.
#[derive(Debug)]
pub enum UnitOutcome {
    /// Nothing to do: the unit is stored already, or its run is no longer running.
    Skipped,
    /// A validation unit's results (MessagePack of `Vec<SplitResult>`).
    Results(Vec<u8>),
    /// The run assembled, ready to store.
    Finished(Box<Finished>),
    /// The unit cannot be computed: its run fails with this reason.
    Failed(String),
}

/// An assembled run.
#[derive(Debug)]
pub struct Finished {
    run: Arc<PlannedRun>,
    outcome: RunOutcome,
    blob: Vec<u8>,
}

/// Claims and computes a unit, outside any transaction.
#[tracing::instrument(name = "unit", skip_all, fields(run_id = %message.run_id, unit = message.unit))]
pub async fn compute(
    shared: &Arc<Shared>,
    pool: &Pool,
    meta: &MessageMeta,
    message: TrainUnitV1,
) -> Result<Computed, HandleError> {
    let TrainUnitV1 { run_id, unit } = message;
    let started = Instant::now();
    let done = |outcome| {
        let computed = Computed {
            run_id,
            unit,
            outcome,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        };
        crate::prometheus::unit(&meta.queue, &computed.outcome);
        Ok(computed)
    };
    let number = i32::try_from(unit).map_err(|_| {
        HandleError::permanent(format!("unit {unit} of run {run_id} is out of range"))
    })?;
    let client = pool.get().await.map_err(anyhow::Error::new)?;
    let Some(claimed) = client.query_opt(CLAIM_SQL, &[&run_id, &number]).await? else {
        return match client.query_opt(UNCLAIMED_SQL, &[&run_id, &number]).await? {
            None => Err(HandleError::permanent(format!(
                "train.unit.v1: run {run_id} was never planned"
            ))),
            Some(row) if row.try_get::<_, Option<String>>(1)?.is_none() => Err(
                HandleError::permanent(format!("train.unit.v1: run {run_id} has no unit {unit}")),
            ),
            Some(row) => {
                let state: String = row.try_get(0)?;
                if state != "running" {
                    shared.cache.forget(run_id);
                }
                tracing::debug!(
                    state,
                    "Unit skipped: stored already, or its run is not running."
                );
                done(UnitOutcome::Skipped)
            }
        };
    };
    let step: Step = serde_json::from_value(claimed.try_get(0)?)
        .map_err(|e| HandleError::permanent(format!("run {run_id}, unit {unit}: {e}")))?;
    drop(client);
    let run = match shared
        .cache
        .get_or_load(run_id, load_run(pool, run_id))
        .await
    {
        Ok(run) => run,
        // The rows no longer make the run the plan was made from.
        Err(HandleError::Permanent(reason)) => return done(UnitOutcome::Failed(reason)),
        Err(e) => return Err(e),
    };
    let context = describe(&run.request.train.project, &run.request.train.sites);
    let outcome = match step {
        Step::Validate(spec) => {
            let run = run.clone();
            let computed = shared
                .on_threads(move || {
                    cv::compute_unit(&run.config, &run.plan, &run.data, &spec)
                        .map(|results| rmp_serde::to_vec(&results))
                })
                .await;
            match computed {
                Ok(Ok(Ok(bytes))) => UnitOutcome::Results(bytes),
                Ok(Ok(Err(e))) => return Err(HandleError::Transient(anyhow::Error::new(e))),
                Ok(Err(e)) => UnitOutcome::Failed(format!("{context}: {e}")),
                Err(panic) => UnitOutcome::Failed(format!("{context}: {panic}")),
            }
        }
        Step::Finish => {
            let results = unit_results(pool, run_id, unit).await?;
            let assembled = {
                let run = run.clone();
                shared
                    .on_threads(move || {
                        let outcome = cv::assemble(&run.config, &run.plan, &run.data, results)
                            .map_err(|e| e.to_string())?;
                        let blob = outcome.model.to_bytes().map_err(|e| e.to_string())?;
                        Ok::<_, String>((outcome, blob))
                    })
                    .await
            };
            match assembled {
                Ok(Ok((outcome, blob))) => {
                    UnitOutcome::Finished(Box::new(Finished { run, outcome, blob }))
                }
                Ok(Err(e)) => UnitOutcome::Failed(format!("{context}: {e}")),
                Err(panic) => UnitOutcome::Failed(format!("{context}: {panic}")),
            }
        }
    };
    done(outcome)
}

/// Rebuilds a planned run from its `run_jobs` row and its rows.
async fn load_run(pool: &Pool, run_id: Uuid) -> Result<PlannedRun, HandleError> {
    let client = pool.get().await.map_err(anyhow::Error::new)?;
    let row = client
        .query_opt(LOAD_JOB_SQL, &[&run_id])
        .await?
        .ok_or_else(|| HandleError::permanent(format!("run {run_id} was never planned")))?;
    let body: Vec<u8> = row.try_get(0)?;
    let request: TrainRequest = broker_schemas::decode(&body)
        .map_err(|e| HandleError::permanent(format!("run {run_id}: {e}")))?;
    let ids: Vec<i64> = row.try_get(1)?;
    let lineage = Lineage {
        job_id: row.try_get(3)?,
        message_id: row.try_get(4)?,
        trace_id: row.try_get(5)?,
    };
    let context = describe(&request.train.project, &request.train.sites);
    let kind = project_kind(&**client, &request.train.project).await?;
    let source = source_of(&request, kind.as_deref());
    let dataset = load(&**client, Selection::Samples(&ids), source, &context).await?;
    if dataset.ids != ids {
        return Err(HandleError::permanent(format!(
            "{context}: {} of the {} samples the run was planned on are left",
            dataset.ids.len(),
            ids.len()
        )));
    }
    let run =
        tokio::task::spawn_blocking(move || prepare(request, kind.as_deref(), dataset, lineage))
            .await
            .map_err(|e| HandleError::Transient(anyhow::Error::new(e)))?;
    run.map_err(HandleError::Permanent)
}

/// Every validation unit's results (those before the final unit), in unit order.
async fn unit_results(
    pool: &Pool,
    run_id: Uuid,
    final_unit: u32,
) -> Result<Vec<SplitResult>, HandleError> {
    let client = pool.get().await.map_err(anyhow::Error::new)?;
    let mut results = Vec::new();
    for row in client
        .query(RESULTS_SQL, &[&run_id, &(final_unit as i32)])
        .await?
    {
        let unit: i32 = row.try_get(0)?;
        let bytes: Vec<u8> = row.try_get(1)?;
        let part: Vec<SplitResult> = rmp_serde::from_slice(&bytes).map_err(|e| {
            HandleError::permanent(format!("run {run_id}, unit {unit}: stored results: {e}"))
        })?;
        results.extend(part);
    }
    Ok(results)
}

/// Stores a computed unit in the delivery's transaction.
pub async fn store(
    shared: &Shared,
    work: &mut Work<'_>,
    computed: Computed,
) -> Result<(), HandleError> {
    let Computed {
        run_id,
        unit,
        outcome,
        duration_ms,
    } = computed;
    if matches!(outcome, UnitOutcome::Skipped) {
        return Ok(());
    }
    let tx = work.tx();
    let job = tx
        .query_opt(LOCK_JOB_SQL, &[&run_id])
        .await?
        .ok_or_else(|| HandleError::permanent(format!("run {run_id} was never planned")))?;
    let state: String = job.try_get(0)?;
    if state != "running" {
        // Cancelled or failed while the unit computed: nothing of it is stored.
        shared.cache.forget(run_id);
        return Ok(());
    }
    let number = unit as i32;
    match outcome {
        UnitOutcome::Skipped => Ok(()),
        UnitOutcome::Failed(reason) => {
            tx.execute(FAIL_SQL, &[&run_id, &reason]).await?;
            shared.cache.forget(run_id);
            tracing::warn!(%run_id, unit, reason, "A unit cannot be computed; the run failed.");
            Ok(())
        }
        UnitOutcome::Results(bytes) => {
            let stored = tx
                .execute(STORE_UNIT_SQL, &[&run_id, &number, &bytes, &duration_ms])
                .await?;
            if stored == 0 {
                return Ok(());
            }
            let counted = tx.query_one(COUNT_UNIT_SQL, &[&run_id]).await?;
            let (done, total): (i32, i32) = (counted.try_get(0)?, counted.try_get(1)?);
            if done == total - 1 {
                // Every validation unit is stored: the final unit assembles the run.
                let last = u32::try_from(total - 1).unwrap_or_default();
                work.emit(&TrainUnitV1 { run_id, unit: last }).await?;
            }
            Ok(())
        }
        UnitOutcome::Finished(finished) => {
            let stored = tx
                .execute(
                    STORE_UNIT_SQL,
                    &[&run_id, &number, &None::<Vec<u8>>, &duration_ms],
                )
                .await?;
            if stored == 0 {
                return Ok(());
            }
            let run = &finished.run;
            let age_ms: i64 = job.try_get(3)?;
            store_run(
                tx,
                &RunRecord {
                    lineage: &run.lineage,
                    request: &run.request,
                    config: &run.config,
                    dataset: &run.dataset,
                    data: &run.data,
                    outcome: &finished.outcome,
                    model_blob: &finished.blob,
                    duration_ms: age_ms,
                },
            )
            .await?;
            tx.execute(FINISH_SQL, &[&run_id]).await?;
            work.emit(&ReportV1 { run_id }).await?;
            shared.cache.forget(run_id);
            Ok(())
        }
    }
}
