//! The `swarm` CLI for sites, operators and analysts, as a library so integration tests and the
//! demo share its pieces: file loaders ([`load`]), a synthetic multi-site data set ([`synth`]),
//! and the commands ([`commands`]).

pub mod commands;
pub mod load;
pub mod synth;
