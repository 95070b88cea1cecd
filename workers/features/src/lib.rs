//! Swarm's features worker.
