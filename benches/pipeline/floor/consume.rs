//! Taking deliveries a batch at a time, as the runtime's batched mode does: up to `size` per
//! batch, up to [`IN_FLIGHT`] batches worked on at once, one `multiple=true` ack after each, in
//! order; and the broker-alone floor, which does nothing else.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::task::JoinHandle;

/// How a floor groups deliveries: up to `size` per batch, waiting at most `wait` for it to fill
/// (the runtime's `BATCH_SIZE` / `BATCH_WAIT_MS`).
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Deliveries per batch (and per transaction).
    pub size: usize,
    /// How long to wait for a batch to fill.
    pub wait: Duration,
}

impl Batching {
    /// Prefetch: two batches, so the next one is on its way while one is being committed.
    fn prefetch(&self) -> u16 {
        u16::try_from(self.size * 2).unwrap_or(u16::MAX)
    }
}

/// A channel consuming `queue` with the floors' prefetch: set up before the clock starts, as
/// Swarm's workers are consuming when theirs does.
pub async fn consume(
    connection: &Connection,
    queue: &str,
    batching: Batching,
) -> anyhow::Result<(Channel, Consumer)> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(batching.prefetch(), BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.to_string().into(),
            "floor".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("Failed to consume {queue}"))?;
    Ok((channel, consumer))
}

fn delivery(next: Option<lapin::Result<Delivery>>) -> anyhow::Result<Delivery> {
    match next {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("the consumer failed")),
        None => bail!("the broker cancelled the consumer"),
    }
}

/// The next batch: the first delivery, then as many more as arrive within the wait, up to `max`.
async fn next_batch(
    consumer: &mut Consumer,
    max: usize,
    wait: Duration,
) -> anyhow::Result<Vec<Delivery>> {
    let mut batch = vec![delivery(consumer.next().await)?];
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.next()).await {
            Ok(next) => batch.push(delivery(next)?),
            Err(_) => break,
        }
    }
    Ok(batch)
}

async fn ack_through(last: &Delivery) -> anyhow::Result<()> {
    last.acker
        .ack(BasicAckOptions { multiple: true })
        .await
        .context("Failed to ack")?;
    Ok(())
}

/// Batches a floor commits at once: the next batch is decoded and written while the one before
/// commits, as Swarm's workers keep batches in flight (`CONCURRENCY`); acks stay in order.
pub const IN_FLIGHT: usize = 2;

/// Takes `messages` deliveries from `consumer` (of [`consume`]) a batch at a time: `work` on
/// each batch on a task of its own, up to [`IN_FLIGHT`] at once, each giving its batch back
/// when done; then one `multiple=true` ack per batch, in their order.
pub(super) async fn each_batch<F, Fut>(
    consumer: &mut Consumer,
    messages: usize,
    batching: Batching,
    work: F,
) -> anyhow::Result<()>
where
    F: Fn(Vec<Delivery>) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<Delivery>>> + Send + 'static,
{
    let mut pending = VecDeque::new();
    let mut done = 0;
    while done < messages {
        let batch = next_batch(consumer, batching.size.min(messages - done), batching.wait).await?;
        done += batch.len();
        pending.push_back(tokio::spawn(work(batch)));
        if pending.len() == IN_FLIGHT {
            settle(pending.pop_front().expect("in flight")).await?;
        }
    }
    while let Some(task) = pending.pop_front() {
        settle(task).await?;
    }
    Ok(())
}

/// Waits for a batch's work, then acks through its last delivery.
async fn settle(task: JoinHandle<anyhow::Result<Vec<Delivery>>>) -> anyhow::Result<()> {
    let batch = task.await.context("a batch's task panicked")??;
    ack_through(batch.last().expect("a batch is never empty")).await
}

/// Takes `messages` deliveries from `consumer` and acks them, a batch at a time; no database.
pub async fn broker_alone(
    consumer: &mut Consumer,
    messages: usize,
    batching: Batching,
) -> anyhow::Result<()> {
    each_batch(
        consumer,
        messages,
        batching,
        |batch| async move { Ok(batch) },
    )
    .await
}
