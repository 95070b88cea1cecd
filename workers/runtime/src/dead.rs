//! Dead letters: a message that cannot succeed is recorded in `dead_letters` and published to
//! the namespace's exchange with the routing key `dead.<worker>` (bound to `<ns>.<worker>.dead`)
//! and its reason in the `x-swarm-reason` header, then acked. Never retried, never silently
//! dropped: the publish is mandatory, so a missing binding is an error, not a lost message.

use std::collections::HashMap;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use lapin::message::Delivery;
use lapin::types::AMQPValue;
use uuid::Uuid;

use crate::amqp::{Outgoing, Publisher};
use crate::topology::Topology;

/// Header carrying the reason a message was dead-lettered.
pub const REASON_HEADER: &str = "x-swarm-reason";
/// Header naming the queue the message was dead-lettered from.
pub const QUEUE_HEADER: &str = "x-swarm-queue";

/// The string-valued headers of a delivery.
pub fn string_headers(delivery: &Delivery) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Some(table) = delivery.properties.headers() {
        for (k, v) in table {
            let value = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_string(),
                _ => continue,
            };
            map.insert(k.as_str().to_string(), value);
        }
    }
    map
}

/// The id of a message that came without one (a producer's mistake, and a reason to dead-letter
/// it): a UUID v5 of its type and body, the same on every attempt, so that it gets one row until
/// replayed like any other (migration 0011) and distinct messages keep distinct rows. A missing id
/// stored as NULL gave a row per attempt; an empty one put every such message in one row.
pub fn derived_id(message_type: Option<&str>, body: &[u8]) -> String {
    let mut name = message_type.unwrap_or_default().as_bytes().to_vec();
    name.push(0);
    name.extend_from_slice(body);
    Uuid::new_v5(&Uuid::NAMESPACE_OID, &name).to_string()
}

/// Records and publishes a dead letter for `delivery` from `worker`'s queue. The caller acks.
pub async fn dead_letter(
    pool: &Pool,
    publisher: &Publisher,
    topology: &Topology,
    worker: &str,
    delivery: &Delivery,
    reason: &str,
) -> anyhow::Result<()> {
    let queue = topology.queue(worker);
    let props = &delivery.properties;
    let message_type = props.kind().as_ref().map(|s| s.as_str().to_string());
    let message_id = crate::process::message_id(delivery)
        .unwrap_or_else(|| derived_id(message_type.as_deref(), &delivery.data));
    let correlation_id = props
        .correlation_id()
        .as_ref()
        .map(|s| s.as_str().to_string());
    let mut headers = string_headers(delivery);
    let stored_headers = serde_json::to_value(&headers)?;
    let client = pool
        .get()
        .await
        .context("Failed to get a database connection")?;
    // A message dead-lettered again (its earlier publish failed, and it was requeued) keeps the
    // row of its first attempt (migration 0011).
    client
        .execute(
            "INSERT INTO dead_letters (queue, message_id, message_type, correlation_id, reason, body, headers)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[&queue, &message_id, &message_type, &correlation_id, &reason, &delivery.data, &stored_headers],
        )
        .await?;
    headers.insert(REASON_HEADER.into(), reason.to_string());
    headers.insert(QUEUE_HEADER.into(), queue.clone());
    let out = Outgoing {
        exchange: topology.exchange(),
        routing_key: topology.dead_routing_key(worker),
        message_type: message_type.unwrap_or_default(),
        message_id,
        correlation_id,
        headers,
        body: delivery.data.clone(),
    };
    publisher.publish(&out).await
}
