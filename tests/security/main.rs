//! Deployment and access control against the real RabbitMQ and Postgres: the broker definitions
//! (`deploy/rabbitmq/definitions.json`), the database roles (`deploy/postgres/roles.sql`), the
//! input limits (a worker process fed oversized messages), and the deployment manifests
//! (`compose.yaml`, `deploy/k8s/`), and `amqps://` through a TLS terminator.

mod broker;
mod database;
mod deployment;
mod helpers;
mod limits;
mod manifests;
mod tls;
