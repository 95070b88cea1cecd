//! AMQP: connecting, and publishing with publisher confirms and trace context.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use broker_schemas::{Message, CONTENT_TYPE};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tracing::Instrument;
use uuid::Uuid;

use crate::client_cert::Files;
use crate::telemetry;
use crate::topology::Topology;

/// Opens a connection; `name` shows in the broker's management UI. An `amqps://` connection
/// presents the client certificate in `AMQP_SSLCERT` with its key in `AMQP_SSLKEY` (PEM files)
/// when they are set, for a broker that asks for one (and `?auth_mechanism=external` in the URL
/// logs in as the certificate's name).
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let identity = client_identity()?;
    let connected = match identity {
        None => Connection::connect(url, properties).await,
        Some(_) if !url.starts_with("amqps://") => bail!(
            "AMQP_SSLCERT and AMQP_SSLKEY are set, but AMQP_URL is not amqps://, so the \
             connection would be plain TCP and the certificate unused: use an amqps:// URL"
        ),
        Some(identity) => {
            let tls = lapin::tcp::OwnedTLSConfig {
                identity: Some(identity),
                cert_chain: None,
            };
            let runtime = lapin::runtime::default_runtime()?;
            Connection::connect_with_config(url, properties, tls, runtime).await
        }
    };
    connected.with_context(|| {
        format!(
            "Failed to connect to RabbitMQ at {}: is it running?",
            crate::settings::redact(url)
        )
    })
}

/// The client certificate of `AMQP_SSLCERT` and `AMQP_SSLKEY`, if they are set.
fn client_identity() -> anyhow::Result<Option<lapin::tcp::OwnedIdentity>> {
    let Some(files) = Files::from_env("AMQP_SSLCERT", "AMQP_SSLKEY")? else {
        return Ok(None);
    };
    Ok(Some(lapin::tcp::OwnedIdentity::PKCS8 {
        pem: files.read_cert("AMQP_SSLCERT")?,
        key: files.read_key("AMQP_SSLKEY")?,
    }))
}

/// A message ready to go on the wire.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Exchange to publish to.
    pub exchange: String,
    /// Routing key (the message type for swarm messages).
    pub routing_key: String,
    /// AMQP `type`.
    pub message_type: String,
    /// AMQP `message_id`.
    pub message_id: String,
    /// AMQP `correlation_id`: the job id.
    pub correlation_id: Option<String>,
    /// Extra headers (trace context, dead-letter reason).
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

/// A channel in confirm mode: [`Publisher::publish`] returns once the broker has the message.
#[derive(Debug, Clone)]
pub struct Publisher {
    channel: Channel,
    app_id: String,
}

impl Publisher {
    /// Opens a confirm-mode channel on `connection`; `app_id` names the publishing process.
    pub async fn new(connection: &Connection, app_id: &str) -> anyhow::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            app_id: app_id.to_string(),
        })
    }

    /// The underlying channel (for declaring topology).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes persistently and waits for the broker's confirm.
    pub async fn publish(&self, out: &Outgoing) -> anyhow::Result<()> {
        self.publish_all(std::slice::from_ref(out)).await
    }

    /// Publishes every message, then waits for all the confirms (one round trip, not one per
    /// message).
    pub async fn publish_all(&self, messages: &[Outgoing]) -> anyhow::Result<()> {
        let mut confirms = Vec::with_capacity(messages.len());
        for out in messages {
            let confirm = self
                .channel
                .basic_publish(
                    out.exchange.clone().into(),
                    out.routing_key.clone().into(),
                    // Mandatory: a message no queue is bound for comes back instead of vanishing.
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &out.body,
                    self.properties(out),
                )
                .await
                .context("Failed to publish")?;
            confirms.push((confirm, out));
        }
        for (confirm, out) in confirms {
            let confirmation = confirm.await.context("Failed to get a publisher confirm")?;
            if confirmation.is_nack() {
                bail!("the broker refused message {}", out.message_id);
            }
            if confirmation.take_message().is_some() {
                bail!(
                    "message {} was not routed: no queue is bound to exchange {:?} for routing key {:?} (declare the topology, or import deploy/rabbitmq/definitions.json)",
                    out.message_id,
                    out.exchange,
                    out.routing_key
                );
            }
        }
        Ok(())
    }

    fn properties(&self, out: &Outgoing) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (k, v) in &out.headers {
            headers.insert(
                k.clone().into(),
                AMQPValue::LongString(LongString::from(v.as_str())),
            );
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let props = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_delivery_mode(2)
            .with_type(out.message_type.clone().into())
            .with_message_id(out.message_id.clone().into())
            .with_timestamp(timestamp)
            .with_app_id(self.app_id.clone().into())
            .with_headers(headers);
        match &out.correlation_id {
            Some(c) => props.with_correlation_id(c.clone().into()),
            None => props,
        }
    }

    /// Publishes a swarm message to the namespace's exchange in a `send` span that carries the
    /// current trace; returns its message id.
    pub async fn send<M: Message>(
        &self,
        topology: &Topology,
        message: &M,
        job_id: Option<&str>,
    ) -> anyhow::Result<String> {
        let exchange = topology.exchange();
        let message_id = Uuid::now_v7().to_string();
        let body = broker_schemas::encode(message);
        let span = send_span(&exchange, M::TYPE, &message_id, job_id, body.len());
        let out = Outgoing {
            exchange: exchange.clone(),
            routing_key: M::TYPE.to_string(),
            message_type: M::TYPE.to_string(),
            message_id: message_id.clone(),
            correlation_id: job_id.map(str::to_string),
            headers: telemetry::headers_of(&span),
            body,
        };
        self.publish(&out).instrument(span).await?;
        Ok(message_id)
    }
}

/// The producer span of one message (OpenTelemetry messaging conventions for RabbitMQ); its
/// context is what goes into the message's `traceparent`.
pub fn send_span(
    exchange: &str,
    routing_key: &str,
    message_id: &str,
    job_id: Option<&str>,
    body_size: usize,
) -> tracing::Span {
    tracing::info_span!(
        "send",
        otel.name = format!("send {exchange}:{routing_key}"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.name = "send",
        messaging.operation.type = "send",
        messaging.destination.name = exchange,
        messaging.rabbitmq.destination.routing_key = routing_key,
        messaging.message.id = message_id,
        messaging.message.conversation_id = job_id.unwrap_or_default(),
        messaging.message.body.size = body_size,
    )
}
