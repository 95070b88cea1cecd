//! Swarm's report worker.
