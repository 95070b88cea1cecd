//! Input limits that protect the swarm; producers should stay within them.

/// Largest message body a worker accepts, in bytes (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Most samples in one `ingest.v1` batch.
pub const MAX_SAMPLES_PER_BATCH: usize = 10_000;
/// Longest subject id, in characters.
pub const MAX_SUBJECT_LEN: usize = 128;
/// Longest project, site or label name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Most values in one sample (a 1,200 × 400 time series fits).
pub const MAX_VALUES_PER_SAMPLE: usize = 480_000;
