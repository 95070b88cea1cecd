//! Swarm's ingest worker: validates `ingest.v1` batches, upserts `samples` (unique per
//! project/site/subject, so a re-sent subject replaces the old one), and emits `features.v1`
//! for the stored samples through the outbox.
//!
//! Bad input — non-finite values, mixed or wrong dimensions, a time series with a constant
//! region (its connectivity undefined), empty ids or labels, batches over the limits — is a
//! permanent error: the message is dead-lettered with the reason.

mod handler;
pub mod validate;

pub use handler::IngestHandler;
