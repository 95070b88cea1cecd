//! Swarm's train worker.
