//! Batched commits (`BATCH_SIZE` > 1): up to N deliveries are handled in one transaction — each
//! still with its own idempotency record and outbox rows — and acked together with one
//! `multiple=true` ack after the commit. The batch's consumer span links to every message's
//! producer context. If anything in the batch fails, the transaction is rolled back and each
//! message goes through the per-message path, which retries, holds or dead-letters it on its
//! own, so the invariant (ack only after commit; each message's effects once) is the same.
//!
//! A batch closes when it is full, `BATCH_WAIT_MS` after its first delivery, or once no delivery
//! has come for `BATCH_IDLE_MS` (2 ms): a backlog still fills whole batches, but a job's last
//! messages — a partial batch — are not held back waiting for messages that are not there. In
//! the time-series bench that wait held both hops' last batches for 20 ms each.
//!
//! The batch's fresh messages go to [`Handler::handle_batch`] together, in delivery order, each
//! with its own [`Work`]. Ingest and features merge the batch's rows into set-based statements
//! for the whole batch (a row two messages write is written once, the later message's). Any
//! other handler keeps the default: each message's handler, concurrently on the one
//! transaction, their statements sharing the connection's pipeline, in no promised order — as
//! across batches and replicas, where none is promised.
//!
//! Up to `CONCURRENCY` batches are in flight at once (a batch's transaction overlaps the next
//! one's decoding and the one before's commit). A `multiple=true` ack covers every earlier
//! delivery on the channel, so batches are *acked in order*: each waits until the batch before it
//! has finished — committed and acked, or handled message by message — before its own ack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::Consumer;
use opentelemetry::trace::TraceContextExt;
use tokio::sync::{oneshot, watch};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::amqp::Publisher;
use crate::handler::{HandleError, Handler, Work};
use crate::metrics::Handled;
use crate::process::{catching_panics, failed, prepare, record, Outcome};
use crate::worker::{handle, stopped, InFlight, Shared};
use crate::{outbox, telemetry};

/// Consumes in batches until a stop is requested (Ok) or the consumer fails (Err). Returns
/// with batches still in flight: the caller waits for them with [`InFlight::drain`].
pub(crate) async fn consume<H: Handler>(
    shared: &Arc<Shared<H>>,
    publisher: &Publisher,
    consumer: &mut Consumer,
    stop: &mut watch::Receiver<bool>,
    in_flight: &InFlight,
) -> anyhow::Result<()> {
    let size = shared.settings.batch_size;
    let wait = Duration::from_millis(shared.settings.batch_wait_ms);
    let idle = Duration::from_millis(shared.settings.batch_idle_ms);
    // Resolved when the previous batch has finished (its sender is dropped).
    let mut previous: Option<oneshot::Receiver<()>> = None;
    loop {
        let first = tokio::select! {
            _ = stopped(stop) => return Ok(()),
            next = consumer.next() => next,
        };
        let mut batch = vec![delivery(first)?];
        let deadline = tokio::time::Instant::now() + wait;
        while batch.len() < size {
            let quiet = tokio::time::Instant::now() + idle;
            match tokio::time::timeout_at(deadline.min(quiet), consumer.next()).await {
                Ok(next) => batch.push(delivery(next)?),
                Err(_) => break,
            }
        }
        let permit = in_flight.acquire().await;
        let (finished, next) = oneshot::channel::<()>();
        let before = previous.replace(next);
        let (shared, publisher) = (shared.clone(), publisher.clone());
        tokio::spawn(async move {
            let mut order = Order { before };
            handle_batch(&shared, &publisher, batch, &mut order).await;
            // This batch is done only once the one before it is.
            order.wait().await;
            drop(finished);
            drop(permit);
        });
    }
}

/// A batch's place in the ack order.
struct Order {
    before: Option<oneshot::Receiver<()>>,
}

impl Order {
    /// Waits until the batch before has finished (at once if it has, or if there is none).
    async fn wait(&mut self) {
        if let Some(before) = self.before.take() {
            // Err means finished: the sender is dropped, never sent on.
            let _ = before.await;
        }
    }
}

fn delivery(next: Option<lapin::Result<Delivery>>) -> anyhow::Result<Delivery> {
    match next {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("the consumer failed")),
        None => Err(anyhow::anyhow!("the broker cancelled the consumer")),
    }
}

async fn handle_batch<H: Handler>(
    shared: &Shared<H>,
    publisher: &Publisher,
    batch: Vec<Delivery>,
    order: &mut Order,
) {
    let queue = shared.topology.queue(H::NAME);
    let exchange = shared.topology.exchange();
    let span = tracing::info_span!(
        "process",
        otel.name = format!("process {exchange}:{queue}"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.name = "process",
        messaging.operation.type = "process",
        messaging.destination.name = %exchange,
        messaging.consumer.group.name = %queue,
        messaging.batch.message_count = batch.len(),
        error.type = tracing::field::Empty,
    );
    for d in &batch {
        let cx = telemetry::extract(d.properties.headers().as_ref());
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            span.add_link(sc);
        }
    }
    let trace_id = telemetry::trace_id_of(&span);
    async {
        let started = Instant::now();
        // Bad input is dead-lettered (and acked) at once; the rest is committed together.
        let mut valid = Vec::with_capacity(batch.len());
        for d in batch {
            match prepare(&shared.handler, &queue, &d, trace_id.clone()) {
                Ok(prepared) => valid.push((d, prepared)),
                Err(reason) => {
                    tracing::warn!(reason, "Dead-lettering the message.");
                    match crate::worker::give_up(shared, publisher, &d, &reason).await {
                        Ok(()) => {
                            crate::worker::ack(&d).await;
                            crate::metrics::handled(&queue, Handled::DeadLettered, started.elapsed());
                        }
                        // Let the per-message path retry it.
                        Err(_) => handle(shared, publisher, d).await,
                    }
                }
            }
        }
        if valid.is_empty() {
            return;
        }
        let (deliveries, prepared): (Vec<Delivery>, Vec<_>) = valid.into_iter().unzip();
        let n = deliveries.len();
        match catching_panics(commit(shared, prepared)).await {
            Outcome::Processed(emitted) => {
                crate::metrics::batch(&queue, true);
                // The multiple ack covers every earlier delivery: those of earlier batches must
                // be settled first.
                order.wait().await;
                let last = deliveries.last().expect("not empty");
                let multiple = BasicAckOptions { multiple: true };
                if let Err(error) = last.acker.ack(multiple).await {
                    tracing::warn!(%error, "Ack failed; the batch will be redelivered and skipped.");
                }
                for _ in 0..n {
                    crate::metrics::handled(&queue, Handled::Processed, started.elapsed());
                }
                if let Err(error) = outbox::publish(&shared.janitor, publisher, &emitted).await {
                    tracing::warn!(error = format!("{error:#}"), "Outbox publish failed; the sweeper will retry.");
                }
            }
            failed => {
                crate::metrics::batch(&queue, false);
                tracing::info!(?failed, messages = n, "The batch failed; handling its messages one by one.");
                for d in deliveries {
                    handle(shared, publisher, d).await;
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Handles every message in one transaction, through the handler's [`Handler::handle_batch`];
/// `Processed` with all their outbox rows, or a failure (the transaction is then rolled back).
async fn commit<H: Handler>(
    shared: &Shared<H>,
    prepared: Vec<(crate::MessageMeta, H::Message)>,
) -> Outcome {
    let result = async {
        // Each message's work before the transaction, side by side.
        let prepared = try_join_all(prepared.into_iter().map(|(meta, message)| async move {
            let message = shared.handler.compute(&shared.pool, &meta, message).await?;
            Ok::<_, HandleError>((meta, message))
        }))
        .instrument(tracing::info_span!("compute"))
        .await?;
        let mut client = shared.pool.get().await.map_err(anyhow::Error::new)?;
        let tx = client.transaction().await?;
        // One statement per message, not one `RETURNING` for the batch (a worker's role may
        // insert into processed_messages but not read it), all sent down the connection's
        // pipeline at once: one round trip. The server runs them in order, so a message id twice
        // in one batch is fresh only the first time.
        let fresh = try_join_all(prepared.iter().map(|(meta, _)| record(&tx, meta))).await?;
        let (mut works, messages): (Vec<Work>, Vec<H::Message>) = prepared
            .into_iter()
            .zip(fresh)
            .filter(|(_, fresh)| *fresh)
            .map(|((meta, message), _)| (Work::new(&tx, meta), message))
            .unzip();
        if !works.is_empty() {
            shared.handler.handle_batch(&mut works, messages).await?;
        }
        let emitted: Vec<_> = works.into_iter().flat_map(Work::into_emitted).collect();
        tx.commit().await?;
        Ok::<_, HandleError>(emitted)
    };
    match result
        .instrument(tracing::info_span!("transaction", db.system = "postgresql"))
        .await
    {
        Ok(emitted) => Outcome::Processed(emitted),
        Err(e) => failed(e),
    }
}
