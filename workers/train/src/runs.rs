//! The state of a fanned-out run in `run_jobs` and its units in `run_units`: every statement
//! the train worker and the CLI (`swarm status`, `swarm cancel`) run on them, bind parameters
//! only.
//!
//! A run is `running` from its plan until its last unit stores it (`finished`), a unit fails it
//! (`failed`, with the reason) or `swarm cancel` stops it (`cancelled`). A unit is `queued`
//! until its results are stored (`done`), once: the statement that stores it only changes a
//! queued unit of a running run, under the run row's lock, which also serialises the counter
//! whose last increment emits the run's final unit.

/// Records a planned run (or, with state `failed` and a reason, a run refused for its data);
/// affects no row when the run id is taken.
pub const INSERT_JOB_SQL: &str = "INSERT INTO run_jobs (run_id, project, state, reason, request, \
sample_ids, units_total, fits, job_id, message_id, trace_id, finished_at) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, CASE WHEN $3 = 'running' THEN NULL ELSE now() END) \
ON CONFLICT (run_id) DO NOTHING";

/// Whether a run id is taken (by a planned or a finished run).
pub const RUN_EXISTS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM run_jobs WHERE run_id = $1) \
OR EXISTS (SELECT 1 FROM runs WHERE id = $1)";

/// Records a run's units, all at once.
pub const INSERT_UNITS_SQL: &str = "INSERT INTO run_units (run_id, unit, spec) \
SELECT $1, * FROM unnest($2::int[], $3::jsonb[])";

/// Claims a unit for computing: counts the attempt and returns its spec, if the unit is still
/// queued and its run running. The run row is read `FOR SHARE`, so a cancel either committed
/// before (and the claim finds the run cancelled) or waits for the claim.
pub const CLAIM_SQL: &str = "WITH job AS (SELECT state FROM run_jobs WHERE run_id = $1 FOR SHARE) \
UPDATE run_units SET attempts = attempts + 1, started_at = clock_timestamp() \
WHERE run_id = $1 AND unit = $2 AND state = 'queued' AND (SELECT state FROM job) = 'running' \
RETURNING spec";

/// Why a unit was not claimed: its run's state and its own (NULL: no such unit), or no row
/// when the run is unknown.
pub const UNCLAIMED_SQL: &str = "SELECT j.state, u.state FROM run_jobs j \
LEFT JOIN run_units u ON u.run_id = j.run_id AND u.unit = $2 WHERE j.run_id = $1";

/// What a replica rebuilds a run from.
pub const LOAD_JOB_SQL: &str = "SELECT request, sample_ids, units_total, job_id, message_id, \
trace_id FROM run_jobs WHERE run_id = $1";

/// The stored results of a run's units before `$2` (the final unit), in unit order.
pub const RESULTS_SQL: &str = "SELECT unit, result FROM run_units \
WHERE run_id = $1 AND unit < $2 AND state = 'done' ORDER BY unit";

/// Locks a run row for a unit's transaction: its state, its counters and its age in ms.
pub const LOCK_JOB_SQL: &str = "SELECT state, units_done, units_total, \
(EXTRACT(EPOCH FROM clock_timestamp() - created_at) * 1000)::bigint FROM run_jobs \
WHERE run_id = $1 FOR UPDATE";

/// Stores a unit's results; affects no row when it is stored already.
pub const STORE_UNIT_SQL: &str = "UPDATE run_units SET state = 'done', result = $3, \
done_at = clock_timestamp(), duration_ms = $4 WHERE run_id = $1 AND unit = $2 AND state = 'queued'";

/// Counts a stored unit; returns the count and the total.
pub const COUNT_UNIT_SQL: &str =
    "UPDATE run_jobs SET units_done = units_done + 1 WHERE run_id = $1 RETURNING units_done, units_total";

/// Marks a run finished (its `runs` row stored in the same transaction).
pub const FINISH_SQL: &str = "UPDATE run_jobs SET state = 'finished', units_done = units_total, \
finished_at = clock_timestamp() WHERE run_id = $1";

/// Fails a running run with a reason; affects no row when it is not running.
pub const FAIL_SQL: &str = "UPDATE run_jobs SET state = 'failed', reason = $2, \
finished_at = clock_timestamp() WHERE run_id = $1 AND state = 'running'";

/// Cancels a running run; returns its state afterwards, no row when it was not running.
pub const CANCEL_SQL: &str = "UPDATE run_jobs SET state = 'cancelled', reason = $2, \
finished_at = clock_timestamp() WHERE run_id = $1 AND state = 'running' RETURNING state";

/// Units waiting in running runs (the Prometheus gauge).
pub const UNITS_WAITING_SQL: &str =
    "SELECT count(*) FROM run_units u JOIN run_jobs j USING (run_id) \
WHERE u.state = 'queued' AND j.state = 'running'";

/// A run's progress for `swarm status`: state, reason, units done and total, units started,
/// seconds since it was planned (or that it took), and whether a `runs` row exists.
pub const STATUS_SQL: &str = "SELECT j.state, j.reason, j.units_done, j.units_total, \
(SELECT count(*) FROM run_units u WHERE u.run_id = j.run_id AND u.attempts > 0), \
EXTRACT(EPOCH FROM coalesce(j.finished_at, clock_timestamp()) - j.created_at)::float8, \
j.project FROM run_jobs j WHERE j.run_id = $1";

/// Where a planned run is, for `swarm status` and `swarm train --wait`.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// `running`, `finished`, `failed` or `cancelled`.
    pub state: String,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Units stored.
    pub units_done: u64,
    /// Units planned (0 for a run refused before planning).
    pub units_total: u64,
    /// Units whose computing has started at least once.
    pub units_started: u64,
    /// Seconds since it was planned, or that it took.
    pub elapsed_secs: f64,
    /// Its project.
    pub project: String,
}

impl Progress {
    /// Whether no unit has started yet.
    pub fn is_queued(&self) -> bool {
        self.state == "running" && self.units_started == 0
    }

    /// Seconds left at the pace so far, while it runs and once a unit is stored.
    pub fn eta_secs(&self) -> Option<f64> {
        (self.state == "running" && self.units_done > 0).then(|| {
            let left = self.units_total.saturating_sub(self.units_done) as f64;
            self.elapsed_secs / self.units_done as f64 * left
        })
    }
}

/// A run's progress, or `None` when no train worker has planned it (yet).
pub async fn progress(
    client: &impl tokio_postgres::GenericClient,
    run_id: uuid::Uuid,
) -> Result<Option<Progress>, tokio_postgres::Error> {
    let Some(row) = client.query_opt(STATUS_SQL, &[&run_id]).await? else {
        return Ok(None);
    };
    let count = |i: usize| -> Result<u64, tokio_postgres::Error> {
        Ok(u64::try_from(row.try_get::<_, i32>(i)?).unwrap_or_default())
    };
    Ok(Some(Progress {
        state: row.try_get(0)?,
        reason: row.try_get(1)?,
        units_done: count(2)?,
        units_total: count(3)?,
        units_started: u64::try_from(row.try_get::<_, i64>(4)?).unwrap_or_default(),
        elapsed_secs: row.try_get(5)?,
        project: row.try_get(6)?,
    }))
}

/// Cancels a running run; `Ok(false)` when it was not running (unknown, finished, failed or
/// cancelled already).
pub async fn cancel(
    client: &impl tokio_postgres::GenericClient,
    run_id: uuid::Uuid,
    reason: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(CANCEL_SQL, &[&run_id, &reason])
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn estimates_the_time_left_from_the_pace_so_far() {
        let mut p = Progress {
            state: "running".into(),
            reason: None,
            units_done: 0,
            units_total: 10,
            units_started: 0,
            elapsed_secs: 8.0,
            project: "p".into(),
        };
        assert!(p.is_queued());
        assert_eq!(p.eta_secs(), None);
        p.units_started = 3;
        p.units_done = 2;
        assert!(!p.is_queued());
        assert_eq!(p.eta_secs(), Some(32.0));
        p.state = "finished".into();
        assert_eq!(p.eta_secs(), None);
    }
}
