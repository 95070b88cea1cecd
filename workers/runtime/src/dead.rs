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
    let message_id = props.message_id().as_ref().map(|s| s.as_str().to_string());
    let message_type = props.kind().as_ref().map(|s| s.as_str().to_string());
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
        message_id: message_id.unwrap_or_else(|| Uuid::now_v7().to_string()),
        correlation_id,
        headers,
        body: delivery.data.clone(),
    };
    publisher.publish(&out).await
}
