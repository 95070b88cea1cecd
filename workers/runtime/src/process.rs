//! Handling one delivery, as a function that returns what should happen next. It touches the
//! database but not the broker, so tests can step it; [`crate::worker`] acts on its outcome.

use std::panic::AssertUnwindSafe;

use deadpool_postgres::{Pool, Transaction};
use futures_util::FutureExt;
use lapin::message::Delivery;
use tracing::Instrument;

use crate::handler::{HandleError, Handler, Incoming, MessageMeta, Work};

/// What happened to a delivery, and so what the loop does with it.
#[derive(Debug)]
pub enum Outcome {
    /// Committed; ack, then publish these outbox rows.
    Processed(Vec<crate::outbox::Emitted>),
    /// Seen before (a redelivery): ack and do nothing.
    Duplicate,
    /// Cannot ever succeed: dead-letter with this reason, then ack.
    DeadLettered(String),
    /// Failed for now: requeue after a backoff.
    Retry(anyhow::Error),
}

/// A delivery's `message_id`, if it has one that is not empty.
pub(crate) fn message_id(delivery: &Delivery) -> Option<String> {
    match delivery.properties.message_id() {
        Some(id) if !id.as_str().is_empty() => Some(id.as_str().to_string()),
        _ => None,
    }
}

/// Why a delivery was refused before any transaction, if it was.
pub fn check_envelope<M: Incoming>(delivery: &Delivery) -> Result<MessageIds, String> {
    let limits = crate::limits::current();
    limits.check_message_size(delivery.data.len())?;
    let props = &delivery.properties;
    let kind = props.kind().as_ref().map(|s| s.as_str()).unwrap_or("");
    if !M::TYPES.contains(&kind) {
        return Err(format!(
            "unknown message type {kind:?}: this queue takes {:?} (set the AMQP `type` property)",
            M::TYPES
        ));
    }
    limits.check_body(kind, &delivery.data)?;
    let message_id =
        message_id(delivery).ok_or("message has no message_id property (set a UUID)")?;
    let job_id = props
        .correlation_id()
        .as_ref()
        .map(|s| s.as_str().to_string());
    Ok(MessageIds {
        message_id,
        message_type: kind.to_string(),
        job_id,
    })
}

/// The ids a delivery carries in its properties.
#[derive(Debug, Clone)]
pub struct MessageIds {
    /// AMQP `message_id`.
    pub message_id: String,
    /// AMQP `type`.
    pub message_type: String,
    /// AMQP `correlation_id`.
    pub job_id: Option<String>,
}

/// Checks the envelope, decodes and validates a delivery: the message and its metadata, or the
/// reason to dead-letter it.
pub fn prepare<H: Handler>(
    handler: &H,
    queue: &str,
    delivery: &Delivery,
    trace_id: Option<String>,
) -> Result<(MessageMeta, H::Message), String> {
    let ids = check_envelope::<H::Message>(delivery)?;
    let message = H::Message::decode(&ids.message_type, &delivery.data)?;
    tracing::info_span!("validate")
        .in_scope(|| handler.validate(&message))
        .map_err(|reason| format!("invalid {}: {reason}", ids.message_type))?;
    let meta = MessageMeta {
        queue: queue.to_string(),
        message_id: ids.message_id,
        message_type: ids.message_type,
        job_id: ids.job_id,
        trace_id,
    };
    Ok((meta, message))
}

/// Decodes, validates and handles one delivery in one transaction.
pub async fn process<H: Handler>(
    handler: &H,
    pool: &Pool,
    queue: &str,
    delivery: &Delivery,
    trace_id: Option<String>,
) -> Outcome {
    match prepare(handler, queue, delivery, trace_id) {
        Ok((meta, message)) => catching_panics(handle_once(handler, pool, meta, message)).await,
        Err(reason) => Outcome::DeadLettered(reason),
    }
}

/// A panicking handler is a failed attempt, not a dead worker.
pub(crate) async fn catching_panics(work: impl std::future::Future<Output = Outcome>) -> Outcome {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::Retry(anyhow::anyhow!("handler panicked: {what}"))
        }
    }
}

/// Records a message as processed in `tx`; false if it was already (a redelivery).
pub(crate) async fn record(tx: &Transaction<'_>, meta: &MessageMeta) -> Result<bool, HandleError> {
    // Prepared once per connection: a plain string would be parsed and planned on every message.
    let stmt = tx
        .prepare_cached(
            "INSERT INTO processed_messages (queue, message_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let inserted = tx.execute(&stmt, &[&meta.queue, &meta.message_id]).await?;
    Ok(inserted == 1)
}

/// Runs a decoded message through the handler: its [`Handler::compute`] outside any
/// transaction, then its [`Handler::handle`] in one transaction with the idempotency record.
/// The core of [`process`], public so handlers can be tested against a real database without a
/// broker.
pub async fn handle_once<H: Handler>(
    handler: &H,
    pool: &Pool,
    meta: MessageMeta,
    message: H::Message,
) -> Outcome {
    let computed = handler
        .compute(pool, &meta, message)
        .instrument(tracing::info_span!("compute"))
        .await;
    let message = match computed {
        Ok(message) => message,
        Err(e) => return failed(e),
    };
    let span = tracing::info_span!("transaction", db.system = "postgresql");
    let result = async {
        let mut client = pool.get().await.map_err(anyhow::Error::new)?;
        let tx = client.transaction().await?;
        if !record(&tx, &meta).await? {
            return Ok::<_, HandleError>(None);
        }
        let mut work = Work::new(&tx, meta);
        handler.handle(&mut work, message).await?;
        let emitted = work.into_emitted();
        tx.commit().await?;
        Ok(Some(emitted))
    };
    match result.instrument(span).await {
        Ok(Some(emitted)) => Outcome::Processed(emitted),
        Ok(None) => Outcome::Duplicate,
        Err(e) => failed(e),
    }
}

/// What a handler's error means for its delivery.
pub(crate) fn failed(error: HandleError) -> Outcome {
    match error {
        HandleError::Permanent(reason) => Outcome::DeadLettered(reason),
        HandleError::Transient(e) => Outcome::Retry(e),
    }
}

/// Whether an error means the database is unreachable (rather than this message failing): then
/// the worker holds the delivery and retries it in place, without counting an attempt, until the
/// database is back.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if cause
            .downcast_ref::<deadpool_postgres::PoolError>()
            .is_some()
            || cause.downcast_ref::<std::io::Error>().is_some()
        {
            return true;
        }
        match cause.downcast_ref::<tokio_postgres::Error>() {
            Some(e) if e.is_closed() => true,
            Some(e) => match e.code() {
                // connection exceptions, and the server shutting down or starting up
                Some(code) => code.code().starts_with("08") || code.code().starts_with("57P"),
                None => std::error::Error::source(e)
                    .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()),
            },
            None => false,
        }
    })
}
