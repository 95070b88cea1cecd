//! The AMQP client of a producer that is not a worker (the `swarm` CLI, a site's exporter written
//! in Rust): one connection, a confirm-mode [`Publisher`] and the namespace's [`Topology`],
//! declared on connect unless `DECLARE_TOPOLOGY=false`, so a job published before its worker
//! first started is queued, not dropped. Through it, the runtime stays the only crate that talks
//! to lapin.

use broker_schemas::Message;
use lapin::Connection;

use crate::amqp::{self, Outgoing, Publisher};
use crate::settings::Settings;
use crate::topology::Topology;

/// A broker connection with a confirm-mode publisher and the topology declared.
#[derive(Debug)]
pub struct Client {
    connection: Connection,
    publisher: Publisher,
    topology: Topology,
}

impl Client {
    /// Connects as `name` (shown in the broker's management UI and as the messages' `app_id`)
    /// and declares the topology unless `settings.declare_topology` is false.
    pub async fn connect(settings: &Settings, name: &str) -> anyhow::Result<Self> {
        let connection = amqp::connect(&settings.amqp_url, name).await?;
        let publisher = Publisher::new(&connection, name).await?;
        let topology = Topology::new(settings.namespace.clone());
        if settings.declare_topology {
            topology.declare(publisher.channel()).await?;
        }
        Ok(Self {
            connection,
            publisher,
            topology,
        })
    }

    /// The namespace's names.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Publishes a message under a job id (its `correlation_id`); returns its message id.
    pub async fn send<M: Message>(&self, message: &M, job_id: &str) -> anyhow::Result<String> {
        self.publisher
            .send(&self.topology, message, Some(job_id))
            .await
    }

    /// Publishes a message as it is (e.g. a dead letter being replayed) and waits for its confirm.
    pub async fn publish(&self, out: &Outgoing) -> anyhow::Result<()> {
        self.publisher.publish(out).await
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}
