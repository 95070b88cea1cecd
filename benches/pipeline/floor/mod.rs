//! The floors the pipeline benchmark compares Swarm against: hand-written lapin loops with none of
//! the runtime around them, timed like Swarm's runs.
//!
//! - [`Floor::BrokerAlone`] ([`consume::broker_alone`]): consume the pre-filled queue and ack
//!   with `multiple=true` once per batch; no decoding, no database. The ceiling the broker sets.
//! - [`Floor::OneHop`] ([`one_hop::one_hop`]): the same queue, and per batch one transaction that
//!   writes what Swarm's ingest and features workers write — the least a correct consumer can
//!   do — through binary `COPY` and one `INSERT … SELECT … ON CONFLICT` per table
//!   ([`Sql::Copy`]) or multi-row upserts of `unnest`ed arrays ([`Sql::Unnest`]). On the
//!   production queue type (quorum), and once per round on a classic queue, so the quorum
//!   queue's cost is visible.
//!
//! Every floor takes a batch at a time and works on up to [`consume::IN_FLIGHT`] at once, acking
//! them in order, like the runtime's batched mode.

mod consume;
mod one_hop;

use std::time::Instant;

use lapin::options::{QueueBindOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use uuid::Uuid;

pub use consume::{Batching, IN_FLIGHT};
pub use one_hop::{Compute, Sql};

use crate::cpu::Cpu;
use crate::report::Measured;
use crate::workload::Workload;
use crate::world::{Services, World};
use crate::{BATCH, BATCH_WAIT};

/// The queue type the floor consumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Quorum, as every Swarm queue is declared.
    Quorum,
    /// Classic (durable, persistent messages): what the same loop costs without the quorum
    /// queue's replicated log.
    Classic,
}

/// Which floor.
#[derive(Debug, Clone, Copy)]
pub enum Floor {
    BrokerAlone,
    OneHop(Compute, Sql, Queue),
}

/// Measures `which` floor over `workload` in a world of its own.
pub async fn measure(
    services: &Services,
    workload: &Workload,
    which: Floor,
) -> anyhow::Result<Measured> {
    let world = World::new(services).await?;
    let queue = world.topology.queue("ingest");
    if let Floor::OneHop(_, _, Queue::Classic) = which {
        if let Err(error) = classic(&world, &queue).await {
            world.finish().await?;
            return Err(error);
        }
    }
    let job = Uuid::new_v4().to_string();
    let prefill = world.prefill(workload, &job).await?;
    world.settle().await?;
    let batching = Batching {
        size: BATCH,
        wait: BATCH_WAIT,
    };
    // Built before the clock, closed after the CPU is read, like Swarm's workers: its backends
    // then do not exit while the CPU is read (a backend reaped between the reading of the
    // postmaster's reaped children and its own `/proc` entry was counted in neither).
    let pool = swarm_runtime::db::pool(&world.database_url, 2)?;
    // Connected and consuming before the clock starts, as Swarm's workers are when its clock
    // starts: both are timed from their first delivery's arrival to their last commit.
    let ready = async {
        let connection =
            swarm_runtime::amqp::connect(&services.amqp_url, "swarm-bench-floor").await?;
        drop(pool.get().await?);
        let (channel, consumer) = consume::consume(&connection, &queue, batching).await?;
        anyhow::Ok((connection, channel, consumer))
    };
    let (connection, channel, mut consumer) = match ready.await {
        Ok(ready) => ready,
        Err(error) => {
            pool.close();
            world.finish().await?;
            return Err(error);
        }
    };
    let cpu = Cpu::now();
    let started = Instant::now();
    let result = match which {
        Floor::BrokerAlone => {
            consume::broker_alone(&mut consumer, workload.messages, batching).await
        }
        Floor::OneHop(compute, sql, _) => {
            one_hop::one_hop(
                &mut consumer,
                &pool,
                &queue,
                workload.messages,
                batching,
                compute,
                sql,
            )
            .await
        }
    };
    let elapsed = started.elapsed();
    let cpu = Cpu::since(cpu);
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    pool.close();
    if result.is_ok() {
        if let Floor::OneHop(..) = which {
            // The floor wrote what Swarm writes.
            world
                .wait_for_rows("features", &job, workload.items())
                .await?;
        }
    }
    world.finish().await?;
    result?;
    Ok(Measured {
        items: workload.items(),
        elapsed,
        prefill,
        cpu,
    })
}

/// Replaces the world's quorum `queue` by a classic one with the same arguments (but
/// `x-delivery-limit`, which only quorum queues have) and bindings.
async fn classic(world: &World, queue: &str) -> anyhow::Result<()> {
    let channel = world.connection.create_channel().await?;
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("classic"));
    args.insert(
        "x-dead-letter-exchange".into(),
        long_string(&world.topology.dead_exchange()),
    );
    args.insert("x-dead-letter-routing-key".into(), long_string(queue));
    channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            world.topology.exchange().into(),
            <broker_schemas::IngestV1 as broker_schemas::Message>::TYPE.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}
