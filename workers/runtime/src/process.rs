//! Handling one delivery, as a function that returns what should happen next. It touches the
//! database but not the broker, so tests can step it; [`crate::worker`] acts on its outcome.

use std::panic::AssertUnwindSafe;

use broker_schemas::limits;
use deadpool_postgres::Pool;
use futures_util::FutureExt;
use lapin::message::Delivery;

use crate::handler::{HandleError, Handler, Incoming, MessageMeta, Work};

/// What happened to a delivery, and so what the loop does with it.
#[derive(Debug)]
pub enum Outcome {
    /// Committed; ack, then publish these outbox rows.
    Processed(Vec<i64>),
    /// Seen before (a redelivery): ack and do nothing.
    Duplicate,
    /// Cannot ever succeed: dead-letter with this reason, then ack.
    DeadLettered(String),
    /// Failed for now: requeue after a backoff.
    Retry(anyhow::Error),
}

/// Why a delivery was refused before any transaction, if it was.
pub fn check_envelope<M: Incoming>(delivery: &Delivery) -> Result<MessageIds, String> {
    if delivery.data.len() > limits::MAX_MESSAGE_BYTES {
        return Err(format!(
            "message of {} bytes exceeds the limit of {} bytes",
            delivery.data.len(),
            limits::MAX_MESSAGE_BYTES
        ));
    }
    let props = &delivery.properties;
    let kind = props.kind().as_ref().map(|s| s.as_str()).unwrap_or("");
    if !M::TYPES.contains(&kind) {
        return Err(format!(
            "unknown message type {kind:?}: this queue takes {:?} (set the AMQP `type` property)",
            M::TYPES
        ));
    }
    let message_id = match props.message_id() {
        Some(id) if !id.as_str().is_empty() => id.as_str().to_string(),
        _ => return Err("message has no message_id property (set a UUID)".into()),
    };
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

/// Decodes, validates and handles one delivery in one transaction.
pub async fn process<H: Handler>(
    handler: &H,
    pool: &Pool,
    queue: &str,
    delivery: &Delivery,
    trace_id: Option<String>,
) -> Outcome {
    let ids = match check_envelope::<H::Message>(delivery) {
        Ok(ids) => ids,
        Err(reason) => return Outcome::DeadLettered(reason),
    };
    let message = match H::Message::decode(&ids.message_type, &delivery.data) {
        Ok(m) => m,
        Err(reason) => return Outcome::DeadLettered(reason),
    };
    if let Err(reason) = tracing::info_span!("validate").in_scope(|| handler.validate(&message)) {
        return Outcome::DeadLettered(format!("invalid {}: {reason}", ids.message_type));
    }
    let meta = MessageMeta {
        queue: queue.to_string(),
        message_id: ids.message_id,
        message_type: ids.message_type,
        job_id: ids.job_id,
        trace_id,
    };
    // A panicking handler is a failed attempt, not a dead worker.
    match AssertUnwindSafe(handle_once(handler, pool, meta, message))
        .catch_unwind()
        .await
    {
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

/// Runs a decoded message through the handler in one transaction with the idempotency record:
/// the core of [`process`], public so handlers can be tested against a real database without a
/// broker.
pub async fn handle_once<H: Handler>(
    handler: &H,
    pool: &Pool,
    meta: MessageMeta,
    message: H::Message,
) -> Outcome {
    let span = tracing::info_span!("transaction", db.system = "postgresql");
    let result = async {
        let mut client = pool.get().await.map_err(anyhow::Error::new)?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO processed_messages (queue, message_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&meta.queue, &meta.message_id],
            )
            .await?;
        if inserted == 0 {
            return Ok::<_, HandleError>(None);
        }
        let mut work = Work::new(tx, meta);
        handler.handle(&mut work, message).await?;
        let (tx, emitted) = work.into_parts();
        tx.commit().await?;
        Ok(Some(emitted))
    };
    match tracing::Instrument::instrument(result, span).await {
        Ok(Some(emitted)) => Outcome::Processed(emitted),
        Ok(None) => Outcome::Duplicate,
        Err(HandleError::Permanent(reason)) => Outcome::DeadLettered(reason),
        Err(HandleError::Transient(e)) => Outcome::Retry(e),
    }
}
