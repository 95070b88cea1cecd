//! Swarm's features worker: turns stored samples into feature vectors.
//!
//! `vector` samples are used as they are (extractor `identity`); `timeseries` samples (T
//! timepoints × R regions) become functional connectivity (extractor `connectivity`): the
//! Pearson correlation of every region pair, upper triangle without the diagonal, Fisher
//! z-transformed. Rows go to `features`, keyed by sample, extractor and version, so a re-run
//! replaces rather than duplicates.

pub mod connectivity;
mod handler;
pub mod text;

pub use handler::{FeaturesHandler, CHUNK};
