//! The run loop shared by every worker: connect, declare, consume with bounded concurrency, act
//! on each delivery's [`Outcome`], reconnect when the broker goes away, drain on shutdown.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Consumer;
use rand::Rng;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::amqp::{self, Publisher};
use crate::handler::Handler;
use crate::http::Health;
use crate::metrics::Handled;
use crate::process::{is_unavailable, process, Outcome};
use crate::settings::Settings;
use crate::topology::Topology;
use crate::{db, dead, outbox, telemetry};

/// How long a shutdown waits for the broker to answer one step (cancel, channel and connection
/// close) before going on without the answer.
const BROKER_STEP: Duration = Duration::from_secs(2);

pub(crate) struct Shared<H> {
    pub(crate) handler: H,
    pub(crate) pool: Pool,
    pub(crate) topology: Topology,
    pub(crate) settings: Settings,
    pub(crate) health: Arc<Health>,
    pub(crate) janitor: outbox::Janitor,
}

/// Runs `handler` until `shutdown` resolves, then finishes in-flight messages (up to the
/// shutdown timeout) and returns.
pub async fn run<H: Handler>(
    handler: H,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    run_until(handler, settings, stop_rx, Arc::default()).await
}

async fn run_until<H: Handler>(
    handler: H,
    settings: Settings,
    stop: watch::Receiver<bool>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    crate::metrics::handle();
    // A least-privilege role cannot migrate: the one-shot `swarm migrate` does it as the owner.
    let pool = if settings.migrate {
        db::connect_and_migrate(&settings.database_url, settings.db_pool_size).await?
    } else {
        db::pool(&settings.database_url, settings.db_pool_size)?
    };
    if let Some(addr) = settings.http_addr {
        let mut stop = stop.clone();
        let server = crate::http::serve(addr, health.clone(), pool.clone(), async move {
            stopped(&mut stop).await;
        });
        tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "The health endpoint stopped.");
            }
        });
    }
    let (janitor, janitor_task) = outbox::Janitor::spawn(pool.clone());
    let shared = Arc::new(Shared {
        topology: Topology::new(settings.namespace.clone()),
        handler,
        pool,
        settings,
        health,
        janitor,
    });
    let result = reconnecting(shared, stop).await;
    // The janitor's last delete: its task ends once the workers' handles are gone.
    if tokio::time::timeout(Duration::from_secs(5), janitor_task)
        .await
        .is_err()
    {
        tracing::warn!("Published outbox rows were left for the sweeper.");
    }
    result
}

/// Sessions until a stop is requested, reconnecting with backoff when the broker is lost.
async fn reconnecting<H: Handler>(
    shared: Arc<Shared<H>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match session(shared.clone(), stop.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                shared.health.set_consuming(false);
                crate::metrics::reconnect(&shared.topology.queue(H::NAME));
                tracing::warn!(error = format!("{error:#}"), worker = H::NAME, retry_in = ?backoff, "Lost the broker; reconnecting.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut stop) => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Resolves once a stop is requested.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it at once.
    let _ = stop.wait_for(|s| *s).await;
}

/// One connection's life: returns Ok on shutdown, Err when the broker connection is lost.
async fn session<H: Handler>(
    shared: Arc<Shared<H>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let settings = &shared.settings;
    let name = format!("swarm-{}", H::NAME);
    let connection = amqp::connect(&settings.amqp_url, &name).await?;
    let publisher = Publisher::new(&connection, &name).await?;
    if settings.declare_topology {
        shared.topology.declare(publisher.channel()).await?;
    }
    let channel = connection.create_channel().await?;
    let prefetch = if H::PREFETCH_AT_MOST_CONCURRENCY {
        let concurrency = u16::try_from(settings.concurrency.max(1)).unwrap_or(u16::MAX);
        settings.prefetch.min(concurrency)
    } else {
        settings.prefetch
    };
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let queue = shared.topology.queue(H::NAME);
    let mut consumer = channel
        .basic_consume(
            queue.clone().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("Failed to consume {queue}"))?;
    shared.health.set_consuming(true);
    tracing::info!(queue, "Consuming.");
    let sweeper = spawn_sweeper(shared.clone(), publisher.clone());

    // Messages (or, with BATCH_SIZE > 1, batches) being handled.
    let in_flight = InFlight::new(settings.concurrency);
    let result = if settings.batch_size > 1 {
        crate::batch::consume(&shared, &publisher, &mut consumer, &mut stop, &in_flight).await
    } else {
        consume(&shared, &publisher, &mut consumer, &mut stop, &in_flight).await
    };
    sweeper.abort();
    if result.is_ok() {
        shared.health.draining.store(true, Ordering::SeqCst);
        // Each step with the broker is bounded: a connection the broker has dropped without the
        // client noticing may never answer, and the shutdown has a deadline.
        let _ = tokio::time::timeout(
            BROKER_STEP,
            channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
        )
        .await;
        tracing::info!(in_flight = in_flight.count(), "Draining.");
        if !in_flight.drain(settings.shutdown_timeout()).await {
            tracing::warn!(
                "Shutdown timeout reached with messages in flight; they will be redelivered."
            );
        }
        let _ = tokio::time::timeout(BROKER_STEP, channel.close(200, "shutdown".into())).await;
        let _ = tokio::time::timeout(BROKER_STEP, connection.close(200, "shutdown".into())).await;
        tracing::info!("Stopped.");
    }
    result
}

/// What is being handled now, at most `CONCURRENCY` at once: messages, or batches.
pub(crate) struct InFlight {
    permits: Arc<Semaphore>,
    size: usize,
}

impl InFlight {
    /// Room for `size` at once (at least one).
    pub(crate) fn new(size: usize) -> Self {
        let size = size.max(1);
        InFlight {
            permits: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// Waits for room for one more; it is freed when the permit is dropped.
    pub(crate) async fn acquire(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }

    /// How many are being handled now.
    pub(crate) fn count(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// Waits until none is in flight, at most `timeout`; false if some still were.
    pub(crate) async fn drain(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.permits.acquire_many(self.size as u32))
            .await
            .is_ok()
    }
}

/// Consumes message by message, each on a task of its own, until a stop is requested (Ok) or the
/// consumer fails (Err). Returns with messages still in flight.
async fn consume<H: Handler>(
    shared: &Arc<Shared<H>>,
    publisher: &Publisher,
    consumer: &mut Consumer,
    stop: &mut watch::Receiver<bool>,
    in_flight: &InFlight,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = stopped(stop) => return Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let permit = in_flight.acquire().await;
                    let shared = shared.clone();
                    let publisher = publisher.clone();
                    tokio::spawn(async move {
                        handle(&shared, &publisher, delivery).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("the consumer failed")),
                None => return Err(anyhow::anyhow!("the broker cancelled the consumer")),
            },
        }
    }
}

fn spawn_sweeper<H: Handler>(shared: Arc<Shared<H>>, publisher: Publisher) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(outbox::SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = outbox::sweep(&shared.pool, &publisher, &shared.topology).await {
                tracing::warn!(error = format!("{error:#}"), "The outbox sweep failed.");
            }
            if let Ok(rows) = outbox::backlog(&shared.pool).await {
                crate::metrics::outbox_backlog(&shared.topology.queue(H::NAME), rows);
            }
        }
    })
}

/// Gives up on a delivery: tells the handler ([`Handler::abandoned`]), then records and publishes
/// its dead letter. The caller acks on success and requeues on error.
pub(crate) async fn give_up<H: Handler>(
    shared: &Shared<H>,
    publisher: &Publisher,
    delivery: &Delivery,
    reason: &str,
) -> anyhow::Result<()> {
    let message_type = delivery
        .properties
        .kind()
        .as_ref()
        .map(|s| s.as_str())
        .unwrap_or_default();
    shared
        .handler
        .abandoned(&shared.pool, message_type, &delivery.data, reason)
        .await
        .context("the handler could not record the failure")?;
    dead::dead_letter(
        &shared.pool,
        publisher,
        &shared.topology,
        H::NAME,
        delivery,
        reason,
    )
    .await
}

/// The number of this attempt at a delivery (quorum queues count redeliveries).
fn attempt(delivery: &Delivery) -> u32 {
    let count = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned());
    let previous = match count {
        Some(AMQPValue::LongLongInt(n)) => n as u32,
        Some(AMQPValue::LongInt(n)) => n as u32,
        Some(AMQPValue::LongUInt(n)) => n,
        Some(AMQPValue::ShortInt(n)) => n as u32,
        _ => u32::from(delivery.redelivered),
    };
    previous + 1
}

pub(crate) fn consumer_span<H: Handler>(shared: &Shared<H>, delivery: &Delivery) -> tracing::Span {
    let queue = shared.topology.queue(H::NAME);
    let exchange = delivery.exchange.as_str();
    let routing_key = delivery.routing_key.as_str();
    let props = &delivery.properties;
    let span = tracing::info_span!(
        "process",
        otel.name = format!("process {exchange}:{routing_key}:{queue}"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.name = "process",
        messaging.operation.type = "process",
        messaging.destination.name = %exchange,
        messaging.rabbitmq.destination.routing_key = %routing_key,
        messaging.consumer.group.name = %queue,
        messaging.message.id = props.message_id().as_ref().map(|s| s.as_str()).unwrap_or_default(),
        messaging.message.conversation_id = props.correlation_id().as_ref().map(|s| s.as_str()).unwrap_or_default(),
        messaging.message.body.size = delivery.data.len(),
        messaging.message.type = props.kind().as_ref().map(|s| s.as_str()).unwrap_or_default(),
        error.type = tracing::field::Empty,
    );
    let _ = span.set_parent(telemetry::extract(props.headers().as_ref()));
    span
}

/// Handles one delivery and acts on the outcome: ack after commit, dead letter, or requeue.
pub(crate) async fn handle<H: Handler>(
    shared: &Shared<H>,
    publisher: &Publisher,
    delivery: Delivery,
) {
    let span = consumer_span(shared, &delivery);
    let trace_id = telemetry::trace_id_of(&span);
    async {
        let queue = shared.topology.queue(H::NAME);
        let started = std::time::Instant::now();
        crate::metrics::in_flight(&queue, 1.0);
        let attempt = attempt(&delivery);
        // Delivered more often than any attempt ends: earlier deliveries ended with the worker
        // (a crash, an out-of-memory kill), so this one would likely end it too.
        let outcome = if attempt > shared.settings.max_attempts {
            Outcome::DeadLettered(format!(
                "delivered {} times without an outcome: the worker stopped while handling it",
                attempt - 1
            ))
        } else {
            // While the database is down, hold the message (unacked, so nothing is lost) and
            // retry it in place: an outage is not the message's fault and must not use up its
            // attempts.
            let mut wait = Duration::from_millis(250);
            loop {
                let outcome = process(
                    &shared.handler,
                    &shared.pool,
                    &queue,
                    &delivery,
                    trace_id.clone(),
                )
                .await;
                let unavailable = matches!(&outcome, Outcome::Retry(e) if is_unavailable(e));
                if !unavailable || shared.health.draining.load(Ordering::SeqCst) {
                    break outcome;
                }
                tracing::warn!(retry_in = ?wait, "The database is unavailable; holding the message.");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        };
        let outcome = match outcome {
            Outcome::Retry(error) if attempt >= shared.settings.max_attempts => {
                Outcome::DeadLettered(format!("gave up after {attempt} attempts: {error:#}"))
            }
            other => other,
        };
        match outcome {
            Outcome::Processed(emitted) => {
                ack(&delivery).await;
                crate::metrics::handled(&queue, Handled::Processed, started.elapsed());
                if let Err(error) = outbox::publish(&shared.janitor, publisher, &emitted).await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "Outbox publish failed; the sweeper will retry."
                    );
                }
                tracing::debug!("Processed.");
            }
            Outcome::Duplicate => {
                tracing::info!("Already processed; acking the redelivery.");
                ack(&delivery).await;
                crate::metrics::handled(&queue, Handled::Duplicate, started.elapsed());
            }
            Outcome::DeadLettered(reason) => {
                tracing::Span::current().record("error.type", "permanent");
                tracing::warn!(reason, "Dead-lettering the message.");
                match give_up(shared, publisher, &delivery, &reason).await {
                    Ok(()) => {
                        ack(&delivery).await;
                        crate::metrics::handled(&queue, Handled::DeadLettered, started.elapsed());
                    }
                    Err(error) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "Failed to dead-letter; requeueing."
                        );
                        crate::metrics::handled(&queue, Handled::Retried, started.elapsed());
                        requeue(&delivery, attempt).await;
                    }
                }
            }
            Outcome::Retry(error) => {
                tracing::Span::current().record("error.type", "transient");
                tracing::warn!(
                    error = format!("{error:#}"),
                    attempt,
                    "Failed; will retry."
                );
                crate::metrics::handled(&queue, Handled::Retried, started.elapsed());
                requeue(&delivery, attempt).await;
            }
        }
        crate::metrics::in_flight(&queue, -1.0);
    }
    .instrument(span)
    .await
}

pub(crate) async fn ack(delivery: &Delivery) {
    if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
        // The channel is gone: the broker redelivers, and the idempotency record makes it a no-op.
        tracing::warn!(%error, "Ack failed; the message will be redelivered and skipped.");
    }
}

/// Waits an exponential backoff with jitter, then hands the message back to the broker.
async fn requeue(delivery: &Delivery, attempt: u32) {
    let base = 100u64.saturating_mul(1 << attempt.min(7));
    let jitter = rand::rng().random_range(0..=base / 2);
    tokio::time::sleep(Duration::from_millis((base + jitter).min(15_000))).await;
    let options = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    if let Err(error) = delivery.acker.nack(options).await {
        tracing::warn!(%error, "Nack failed; the broker will redeliver anyway.");
    }
}

/// A worker running in this process (for the demo and tests).
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    health: Arc<Health>,
    /// Becomes true when the worker has exited.
    exited: watch::Receiver<bool>,
}

impl WorkerHandle {
    /// Asks the worker to stop and waits for it to drain.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("the worker task panicked")?
    }

    /// Whether the worker has already exited (e.g. on a start-up error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the worker is consuming its queue (connected, migrated, topology declared):
    /// true, or false if it exited first (a start-up error, which [`WorkerHandle::stop`]
    /// returns).
    pub async fn consuming(&self) -> bool {
        let mut exited = self.exited.clone();
        tokio::select! {
            _ = self.health.until_consuming() => true,
            _ = exited.wait_for(|e| *e) => self.health.consuming.load(Ordering::SeqCst),
        }
    }
}

/// Starts `handler` on a task of this runtime.
pub fn spawn<H: Handler>(handler: H, settings: Settings) -> WorkerHandle {
    let (stop, rx) = watch::channel(false);
    let (exit, exited) = watch::channel(false);
    let health = Arc::new(Health::default());
    let run = run_until(handler, settings, rx, health.clone());
    let task = tokio::spawn(async move {
        let result = run.await;
        exit.send_replace(true);
        result
    });
    WorkerHandle {
        stop,
        task,
        health,
        exited,
    }
}
