//! Swarm's configurations and one measured run of them.

use std::time::Instant;

use anyhow::{bail, Context as _};
use futures_util::StreamExt;
use swarm_runtime::WorkerHandle;
use uuid::Uuid;

use crate::cpu::Cpu;
use crate::report::Measured;
use crate::workload::Workload;
use crate::world::{Services, World};

/// One Swarm configuration of the bench.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// `BATCH_SIZE` (1: per-message commits).
    pub(crate) batch: usize,
    /// Replicas of each worker.
    pub(crate) replicas: usize,
    /// Which workers are measured.
    pub(crate) stages: Stages,
}

/// The workers a Swarm run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stages {
    /// Ingest and features together, until every feature is stored.
    Both,
    /// Ingest alone, until every sample is stored: what the first hop costs.
    IngestAlone,
    /// Features alone, over the `features.v1` messages an unmeasured ingest run left queued:
    /// what the second hop costs.
    FeaturesAlone,
}

impl Config {
    /// The row's name.
    pub(crate) fn what(&self) -> String {
        let replicas = self.replicas;
        let commits = if self.batch == 1 {
            "per-message commits".to_string()
        } else {
            format!("BATCH_SIZE={}", self.batch)
        };
        match self.stages {
            Stages::Both => {
                let s = if replicas == 1 { "" } else { "s" };
                format!("Swarm, {replicas} replica{s} each, {commits}")
            }
            Stages::IngestAlone => {
                format!("Swarm's ingest alone ({replicas} replica, {commits}; no features worker)")
            }
            Stages::FeaturesAlone => format!(
                "Swarm's features alone ({replicas} replica, {commits}; over the queue ingest filled)"
            ),
        }
    }
}

/// Swarm's ingest and features workers (or one of them alone), `replicas` of each, in this
/// process.
pub(crate) async fn measure(
    services: &Services,
    workload: &Workload,
    config: Config,
) -> anyhow::Result<Option<Measured>> {
    let world = World::new(services).await?;
    let Some(settings) = world.settings(config.batch)? else {
        world.finish().await?;
        return Ok(None);
    };
    let job = Uuid::new_v4().to_string();
    let prefill = world.prefill(workload, &job).await?;
    if config.stages == Stages::FeaturesAlone {
        // Ingest first, off the clock, until every `features.v1` is published (its outbox
        // empty): the features queue is then as full as the ingest queue is for the others.
        let ingest: Vec<WorkerHandle> = (0..config.replicas)
            .map(|_| swarm_runtime::spawn(swarm_ingest::IngestHandler, settings.clone()))
            .collect();
        world
            .wait_for_rows("samples", &job, workload.items())
            .await?;
        world.wait_for_empty_outbox().await?;
        for w in ingest {
            w.stop().await?;
        }
    }
    world.settle().await?;
    let mut workers: Vec<WorkerHandle> = Vec::new();
    for _ in 0..config.replicas {
        if config.stages != Stages::FeaturesAlone {
            workers.push(swarm_runtime::spawn(
                swarm_ingest::IngestHandler,
                settings.clone(),
            ));
        }
        if config.stages != Stages::IngestAlone {
            workers.push(swarm_runtime::spawn(
                swarm_features::FeaturesHandler,
                settings.clone(),
            ));
        }
    }
    // The clock starts when the first worker consumes (the ingest queue is full by then): its
    // start-up (connecting, migrating, declaring the topology; 10–60 ms here) is not
    // throughput, and the floors are timed from their consumer too.
    let (cpu, started) = match first_consuming(&workers).await {
        true => (Cpu::now(), Instant::now()),
        false => {
            let stopped =
                futures_util::future::join_all(workers.into_iter().map(WorkerHandle::stop));
            let stopped = stopped.await;
            world.finish().await?;
            stopped
                .into_iter()
                .collect::<anyhow::Result<Vec<()>>>()
                .context("a worker failed to start")?;
            bail!("no worker started");
        }
    };
    let last = match config.stages {
        Stages::IngestAlone => "samples",
        Stages::Both | Stages::FeaturesAlone => "features",
    };
    let waited = world.wait_for_rows(last, &job, workload.items()).await;
    let elapsed = started.elapsed();
    let cpu = Cpu::since(cpu);
    for w in workers {
        w.stop().await?;
    }
    let dead = world.dead_letters().await;
    world.finish().await?;
    waited?;
    let dead = dead?;
    if dead > 0 {
        bail!("{dead} messages were dead-lettered");
    }
    Ok(Some(Measured {
        items: workload.items(),
        elapsed,
        prefill,
        cpu,
    }))
}

/// Waits until the first of `workers` consumes: false if none ever does (they all exited).
pub(crate) async fn first_consuming(workers: &[WorkerHandle]) -> bool {
    let mut starting: futures_util::stream::FuturesUnordered<_> =
        workers.iter().map(WorkerHandle::consuming).collect();
    while let Some(consuming) = starting.next().await {
        if consuming {
            return true;
        }
    }
    false
}
