//! The `Handler` trait: what a worker adds to the runtime.
//!
//! The run loop decodes and validates a delivery, opens a transaction, records the message id, and
//! then calls [`Handler::handle`] with a [`Work`]: the open transaction plus an outbox writer
//! (with `BATCH_SIZE` > 1, [`Handler::handle_batch`] with a batch's messages and a [`Work`]
//! each). The handler writes its derived rows through [`Work::tx`] and its downstream messages
//! through [`Work::emit`]; the runtime commits, acks, and publishes the outbox.
//!
//! A handler with long, CPU-bound work does it in [`Handler::compute`], before the transaction
//! opens, and keeps [`Handler::handle`] to the short transaction that stores the result: a
//! transaction is never held open (with its connection and locks) while a model is fitted.

use std::future::Future;

use broker_schemas::Message;
use deadpool_postgres::{Pool, Transaction};

use crate::outbox;

/// The envelope of the delivery being handled.
#[derive(Debug, Clone)]
pub struct MessageMeta {
    /// The queue it came from, e.g. `swarm.ingest`.
    pub queue: String,
    /// AMQP `message_id`.
    pub message_id: String,
    /// AMQP `type`, e.g. `ingest.v1`.
    pub message_type: String,
    /// AMQP `correlation_id`: the job id that ties a pipeline together.
    pub job_id: Option<String>,
    /// The trace this delivery is handled in (32 hex digits), for lineage columns.
    pub trace_id: Option<String>,
}

/// What went wrong in a handler, and so what happens next.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Bad input: retrying cannot help. The message is dead-lettered at once with this reason.
    #[error("{0}")]
    Permanent(String),
    /// The database or broker hiccupped: the message is retried later.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

impl HandleError {
    /// A permanent error with a reason.
    pub fn permanent(reason: impl Into<String>) -> Self {
        HandleError::Permanent(reason.into())
    }
}

impl From<tokio_postgres::Error> for HandleError {
    /// A data exception (SQLSTATE class 22, e.g. a value out of range) is the message's fault:
    /// permanent. Anything else — a lost connection, a serialization failure, a deadlock — may
    /// pass: transient.
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(code) if code.code().starts_with("22") => {
                HandleError::Permanent(format!("the database rejected the data: {e}"))
            }
            _ => HandleError::Transient(anyhow::Error::new(e).context("database error")),
        }
    }
}

/// One message's unit of work: the open transaction (shared by the messages of a batch) and the
/// outbox.
pub struct Work<'t> {
    tx: &'t Transaction<'t>,
    meta: MessageMeta,
    emitted: Vec<outbox::Emitted>,
}

impl std::fmt::Debug for Work<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work").field("meta", &self.meta).finish()
    }
}

impl<'t> Work<'t> {
    pub(crate) fn new(tx: &'t Transaction<'t>, meta: MessageMeta) -> Self {
        Self {
            tx,
            meta,
            emitted: Vec::new(),
        }
    }

    /// The outbox rows emitted.
    pub(crate) fn into_emitted(self) -> Vec<outbox::Emitted> {
        self.emitted
    }

    /// The open transaction: write derived rows here.
    pub fn tx(&self) -> &'t Transaction<'t> {
        self.tx
    }

    /// The delivery's envelope.
    pub fn meta(&self) -> &MessageMeta {
        &self.meta
    }

    /// Queues a downstream message in the outbox, in this transaction. It keeps the job id and
    /// the current trace context, and is published after the commit.
    pub async fn emit<M: Message>(&mut self, message: &M) -> Result<(), HandleError> {
        let exchange = crate::topology::exchange_of_queue(&self.meta.queue);
        let emitted =
            outbox::insert(self.tx, exchange, message, self.meta.job_id.as_deref()).await?;
        self.emitted.push(emitted);
        Ok(())
    }
}

/// What a handler consumes: one message type, or (for a worker with several job kinds) an enum
/// of them that decodes by the AMQP `type`. Every [`Message`] is one.
pub trait Incoming: Sized + Send + 'static {
    /// The AMQP `type`s accepted (and bound to the worker's queue).
    const TYPES: &'static [&'static str];

    /// Decodes a body of one of [`Incoming::TYPES`]; `Err` is the reason to dead-letter it.
    fn decode(message_type: &str, body: &[u8]) -> Result<Self, String>;
}

impl<M: Message> Incoming for M {
    const TYPES: &'static [&'static str] = &[M::TYPE];

    fn decode(_message_type: &str, body: &[u8]) -> Result<Self, String> {
        broker_schemas::decode(body).map_err(|e| e.to_string())
    }
}

/// A worker's domain logic. Handlers must be idempotent and keep all effects in [`Work::tx`].
pub trait Handler: Send + Sync + 'static {
    /// The message this handler consumes.
    type Message: Incoming;

    /// The worker's name and queue suffix: `ingest` consumes `<namespace>.ingest`.
    const NAME: &'static str;

    /// Deliveries are long work units: the broker sends this worker at most `CONCURRENCY` at a
    /// time (its prefetch is capped there), so waiting units stay in the queue for whichever
    /// replica is free instead of queueing behind a busy one.
    const PREFETCH_AT_MOST_CONCURRENCY: bool = false;

    /// Checks a decoded message before any transaction; `Err(reason)` dead-letters it.
    fn validate(&self, _message: &Self::Message) -> Result<(), String> {
        Ok(())
    }

    /// Work before the transaction: long, CPU-bound work that must not hold a transaction open
    /// while it runs. It may read the database through `pool` (outside any transaction) and
    /// returns the message that [`Handler::handle`] then gets in the transaction, e.g. with the
    /// computed result in it. It runs for every delivery, a redelivery of a message already
    /// committed included (the runtime cannot tell before its transaction): a handler whose
    /// work is costly checks its own state first. Its errors mean what `handle`'s do. Default:
    /// the message as it is.
    fn compute(
        &self,
        _pool: &Pool,
        _meta: &MessageMeta,
        message: Self::Message,
    ) -> impl Future<Output = Result<Self::Message, HandleError>> + Send {
        async { Ok(message) }
    }

    /// Called when the runtime gives up on a message, before its dead letter is recorded: it was
    /// refused as permanent, or it failed `MAX_ATTEMPTS` times, or the worker stopped (a crash, a
    /// kill) while handling it that many times. A handler whose messages are parts of a larger
    /// job records the failure of that job here, so that nothing waits for a part that will not
    /// come. `body` is the raw delivery (it may not decode). An error keeps the message for a
    /// later attempt (it is requeued, not dead-lettered). Default: nothing.
    fn abandoned(
        &self,
        _pool: &Pool,
        _message_type: &str,
        _body: &[u8],
        _reason: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Writes the derived rows and downstream messages of one message.
    fn handle(
        &self,
        work: &mut Work<'_>,
        message: Self::Message,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;

    /// Writes the derived rows and downstream messages of a batch's messages (`BATCH_SIZE` >
    /// 1), all on the batch's one transaction: `works[i]` (its envelope, its outbox) goes with
    /// `messages[i]`, in delivery order, each already recorded as processed. A handler may merge
    /// their rows into set-based statements for the whole batch; where two messages write the
    /// same row, the later must win, as if they had been handled one after the other. An error
    /// fails the whole batch: its transaction is rolled back and every message is handled on
    /// its own. Default: every message's [`Handler::handle`], side by side on the transaction.
    fn handle_batch(
        &self,
        works: &mut [Work<'_>],
        messages: Vec<Self::Message>,
    ) -> impl Future<Output = Result<(), HandleError>> + Send {
        async move {
            let handled = works
                .iter_mut()
                .zip(messages)
                .map(|(work, message)| self.handle(work, message));
            futures_util::future::try_join_all(handled).await?;
            Ok(())
        }
    }
}
