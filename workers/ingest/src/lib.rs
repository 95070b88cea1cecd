//! Swarm's ingest worker.
