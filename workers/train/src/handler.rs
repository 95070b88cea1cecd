//! [`TrainHandler`]: consumes `train.v1`, `train.unit.v1` and `stats.v1` ([`TrainJob`]).
//!
//! - `train.v1` → a planned run ([`crate::planning`]): `run_jobs`, `run_units` and one
//!   `train.unit.v1` per unit, or a failed run with its reason.
//! - `train.unit.v1` → one unit ([`crate::unit`]): computed before the transaction on the
//!   worker's thread pool, stored in a short one; the run's last unit stores `runs`, `folds`,
//!   `predictions` and emits `report.v1 { run_id }`.
//! - `stats.v1` → a `stats_jobs` row ([`crate::stats_job`]), then `report.v1 { run_id: job_id }`.
//!
//! Failures caused by a malformed request are [`HandleError::Permanent`] (dead letters); a
//! well-formed request that its data make impossible is a failed run; database errors are
//! transient and retried. A panic in the analysis fails the run (or the statistics job) at
//! once: it would panic again on every retry.

use std::sync::{Arc, Weak};

use broker_schemas::{Message, StatsV1, TrainRequest, TrainUnitV1, TrainV1};
use deadpool_postgres::Pool;
use swarm_runtime::{HandleError, Handler, Incoming, MessageMeta, Work};

use crate::cache::RunCache;
use crate::planning::{plan_run, PlannedRun};
use crate::request::{validate_request, validate_stats};
use crate::runs::FAIL_SQL;
use crate::settings::TrainSettings;
use crate::unit::{self, Computed};

/// The worker's job kinds.
#[derive(Debug)]
pub enum TrainJob {
    /// `train.v1`.
    Train(Box<TrainRequest>),
    /// `stats.v1`.
    Stats(StatsV1),
    /// `train.unit.v1`, as delivered.
    Unit(TrainUnitV1),
    /// A `train.unit.v1` after [`Handler::compute`]: what its transaction stores. Never on the
    /// wire.
    Computed(Box<Computed>),
}

impl Incoming for TrainJob {
    const TYPES: &'static [&'static str] = &[TrainV1::TYPE, StatsV1::TYPE, TrainUnitV1::TYPE];

    fn decode(message_type: &str, body: &[u8]) -> Result<Self, String> {
        match message_type {
            t if t == TrainV1::TYPE => broker_schemas::decode::<TrainRequest>(body)
                .map(|m| TrainJob::Train(Box::new(m)))
                .map_err(|e| e.to_string()),
            t if t == StatsV1::TYPE => broker_schemas::decode::<StatsV1>(body)
                .map(TrainJob::Stats)
                .map_err(|e| e.to_string()),
            t if t == TrainUnitV1::TYPE => broker_schemas::decode::<TrainUnitV1>(body)
                .map(TrainJob::Unit)
                .map_err(|e| e.to_string()),
            other => Err(format!(
                "the train worker does not handle messages of type {other}"
            )),
        }
    }
}

/// What every delivery of one worker shares: its threads and its cache of runs.
pub struct Shared {
    settings: TrainSettings,
    threads: rayon::ThreadPool,
    /// The runs whose units this worker computes.
    pub(crate) cache: RunCache<PlannedRun>,
    gauge: std::sync::OnceLock<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("threads", &self.threads.current_num_threads())
            .field("cache", &self.cache)
            .finish()
    }
}

impl Shared {
    /// Runs `work` on the worker's pool of `TRAIN_THREADS` threads, from a blocking thread so
    /// the async runtime is never held up; `Err` with the message if it panicked.
    pub(crate) async fn on_threads<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let shared = self.clone();
        let span = tracing::info_span!("compute_on_threads");
        tokio::task::spawn_blocking(move || shared.threads.install(|| span.in_scope(work)))
            .await
            .map_err(|e| format!("the analysis panicked: {e}"))
    }

    /// Starts refreshing the gauge of units waiting, once per worker; it stops with the worker.
    fn watch_waiting(self: &Arc<Self>, pool: &Pool, queue: &str) {
        if self.gauge.set(()).is_err() {
            return;
        }
        let (shared, pool, queue) = (Arc::downgrade(self), pool.clone(), queue.to_owned());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::prometheus::WAITING_EVERY);
            loop {
                tick.tick().await;
                if Weak::upgrade(&shared).is_none() {
                    return;
                }
                if let Err(error) = crate::prometheus::refresh_waiting(&pool, &queue).await {
                    tracing::debug!(
                        error = format!("{error:#}"),
                        "Counting units waiting failed."
                    );
                }
            }
        });
    }
}

/// The train worker's handler.
#[derive(Debug, Clone)]
pub struct TrainHandler {
    shared: Arc<Shared>,
}

impl Default for TrainHandler {
    /// With [`TrainSettings::from_env`]; a variable that does not parse is reported and its
    /// default used.
    fn default() -> Self {
        let settings = TrainSettings::from_env().unwrap_or_else(|error| {
            tracing::warn!(error, "Using the default train settings.");
            TrainSettings::default()
        });
        Self::new(settings)
    }
}

impl TrainHandler {
    /// A handler with these settings.
    pub fn new(settings: TrainSettings) -> Self {
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.threads.max(1))
            .thread_name(|i| format!("train-{i}"))
            .build()
            .expect("the train thread pool starts");
        Self {
            shared: Arc::new(Shared {
                settings,
                threads,
                cache: RunCache::new(settings.cache_mb.saturating_mul(1 << 20)),
                gauge: std::sync::OnceLock::new(),
            }),
        }
    }
}

impl Handler for TrainHandler {
    type Message = TrainJob;
    const NAME: &'static str = "train";
    const PREFETCH_AT_MOST_CONCURRENCY: bool = true;

    fn validate(&self, message: &TrainJob) -> Result<(), String> {
        match message {
            TrainJob::Train(m) => validate_request(m).map(|_| ()),
            TrainJob::Stats(m) => validate_stats(m),
            TrainJob::Unit(_) | TrainJob::Computed(_) => Ok(()),
        }
    }

    async fn compute(
        &self,
        pool: &Pool,
        meta: &MessageMeta,
        message: TrainJob,
    ) -> Result<TrainJob, HandleError> {
        match message {
            TrainJob::Unit(unit) => {
                self.shared.watch_waiting(pool, &meta.queue);
                let computed = unit::compute(&self.shared, pool, meta, unit).await?;
                Ok(TrainJob::Computed(Box::new(computed)))
            }
            other => Ok(other),
        }
    }

    /// A unit given up on (it failed `MAX_ATTEMPTS` times, or its worker kept stopping) fails its
    /// run with the reason, so that the run does not wait for it.
    async fn abandoned(
        &self,
        pool: &Pool,
        message_type: &str,
        body: &[u8],
        reason: &str,
    ) -> anyhow::Result<()> {
        if message_type != TrainUnitV1::TYPE {
            return Ok(());
        }
        let Ok(TrainUnitV1 { run_id, unit }) = broker_schemas::decode::<TrainUnitV1>(body) else {
            return Ok(());
        };
        let reason = format!("unit {unit} was given up on: {reason}");
        let client = pool.get().await?;
        let failed = client.execute(FAIL_SQL, &[&run_id, &reason]).await?;
        self.shared.cache.forget(run_id);
        if failed > 0 {
            tracing::warn!(%run_id, unit, reason, "A unit was given up on; the run failed.");
        }
        Ok(())
    }

    async fn handle(&self, work: &mut Work<'_>, message: TrainJob) -> Result<(), HandleError> {
        match message {
            TrainJob::Train(m) => plan_run(work, *m, self.shared.settings.unit_work).await,
            TrainJob::Stats(m) => crate::stats_job::run_stats(work, m).await,
            TrainJob::Computed(c) => unit::store(&self.shared, work, *c).await,
            TrainJob::Unit(u) => Err(HandleError::Transient(anyhow::anyhow!(
                "unit {} of run {} reached its transaction uncomputed",
                u.unit,
                u.run_id
            ))),
        }
    }
}

/// A panicked blocking task as a permanent failure (it would panic again), a cancelled one as
/// transient.
pub(crate) fn permanent_join(context: &str, e: tokio::task::JoinError) -> HandleError {
    if e.is_panic() {
        HandleError::permanent(format!("{context}: the analysis panicked: {e}"))
    } else {
        HandleError::Transient(anyhow::Error::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_schemas::{CrossValidation, StatsTest, TrainOptions};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    #[test]
    fn decodes_every_job_kind_and_an_old_train_body() {
        let old = TrainV1 {
            run_id: Uuid::nil(),
            project: "demo".into(),
            model: "logistic".into(),
            params: BTreeMap::new(),
            cv: CrossValidation::default(),
            sites: vec![],
        };
        match TrainJob::decode("train.v1", &broker_schemas::encode(&old)).unwrap() {
            TrainJob::Train(r) => assert_eq!(
                *r,
                TrainRequest {
                    train: old,
                    options: TrainOptions::default()
                }
            ),
            other => panic!("{other:?}"),
        }
        let stats = StatsV1 {
            job_id: Uuid::nil(),
            project: "p".into(),
            test: StatsTest::Anova,
            covariate: None,
            groups: vec![],
            sites: vec![],
            alpha: 0.05,
        };
        match TrainJob::decode("stats.v1", &broker_schemas::encode(&stats)).unwrap() {
            TrainJob::Stats(s) => assert_eq!(s, stats),
            other => panic!("{other:?}"),
        }
        let unit = TrainUnitV1 {
            run_id: Uuid::nil(),
            unit: 7,
        };
        match TrainJob::decode("train.unit.v1", &broker_schemas::encode(&unit)).unwrap() {
            TrainJob::Unit(u) => assert_eq!(u, unit),
            other => panic!("{other:?}"),
        }
        assert!(TrainJob::decode("report.v1", b"").is_err());
        assert!(TrainJob::decode("stats.v1", b"\xc1").is_err());
    }
}
