//! Input limits that protect the swarm, configurable per process through the environment.
//!
//! The defaults are the contract in [`broker_schemas::limits`]; an operator can lower (or raise)
//! them per deployment:
//!
//! | variable | default | checked |
//! |---|---|---|
//! | `MAX_MESSAGE_BYTES` | 16 MiB | body size, before decoding (every worker) |
//! | `MAX_SAMPLES_PER_BATCH` | 10 000 | samples in one `ingest.v1`, before any database work |
//! | `MAX_VALUES_PER_SAMPLE` | 480 000 | values (dimension, or T × R) of one sample |
//! | `MAX_SUBJECT_LEN` | 128 | characters of a subject id |
//! | `MAX_NAME_LEN` | 64 | characters of a project, site or label name |
//!
//! A message over a limit is a permanent failure: dead-lettered with the limit in its reason.
//! The body has already crossed the wire when a worker sees it, so a worker's memory per message
//! is bounded by the broker's own `max_message_size` (set it to `MAX_MESSAGE_BYTES`:
//! `deploy/rabbitmq/rabbitmq.conf`) times `PREFETCH`.
//!
//! The limits are read once per process ([`current`]); tests and embedders may
//! [`install`] others first.

use std::sync::OnceLock;

use broker_schemas::limits as contract;
use clap::Parser;

/// The input limits of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct Limits {
    /// Largest message body a worker accepts, in bytes; checked before decoding.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = contract::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Most samples in one `ingest.v1` batch.
    #[arg(long, env = "MAX_SAMPLES_PER_BATCH", default_value_t = contract::MAX_SAMPLES_PER_BATCH)]
    pub max_samples_per_batch: usize,
    /// Most values in one sample: a vector's dimension, or a time series' T × R.
    #[arg(long, env = "MAX_VALUES_PER_SAMPLE", default_value_t = contract::MAX_VALUES_PER_SAMPLE)]
    pub max_values_per_sample: usize,
    /// Longest subject id, in characters.
    #[arg(long, env = "MAX_SUBJECT_LEN", default_value_t = contract::MAX_SUBJECT_LEN)]
    pub max_subject_len: usize,
    /// Longest project, site or label name, in characters.
    #[arg(long, env = "MAX_NAME_LEN", default_value_t = contract::MAX_NAME_LEN)]
    pub max_name_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: contract::MAX_MESSAGE_BYTES,
            max_samples_per_batch: contract::MAX_SAMPLES_PER_BATCH,
            max_values_per_sample: contract::MAX_VALUES_PER_SAMPLE,
            max_subject_len: contract::MAX_SUBJECT_LEN,
            max_name_len: contract::MAX_NAME_LEN,
        }
    }
}

#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct FromEnv {
    #[command(flatten)]
    limits: Limits,
}

impl Limits {
    /// The limits given by the environment variables, the defaults for those unset.
    pub fn from_env() -> Result<Self, String> {
        FromEnv::try_parse_from(std::iter::empty::<String>())
            .map(|cli| cli.limits)
            .map_err(|e| format!("invalid input limit in the environment: {e}"))
    }

    /// Why a body of `len` bytes is refused, if it is.
    pub fn check_message_size(&self, len: usize) -> Result<(), String> {
        if len > self.max_message_bytes {
            return Err(format!(
                "message of {len} bytes exceeds the limit of {} bytes (MAX_MESSAGE_BYTES)",
                self.max_message_bytes
            ));
        }
        Ok(())
    }
}

static CURRENT: OnceLock<Limits> = OnceLock::new();

/// This process's limits: those [`install`]ed, else the environment's (read once). An invalid
/// value is logged and the defaults apply, so a typo cannot take every worker down.
pub fn current() -> Limits {
    *CURRENT.get_or_init(|| match Limits::from_env() {
        Ok(limits) => {
            tracing::info!(?limits, "Input limits.");
            limits
        }
        Err(error) => {
            let limits = Limits::default();
            tracing::error!(error, ?limits, "Using the default input limits.");
            limits
        }
    })
}

/// Sets this process's limits; false if they were already fixed (by an earlier call or a
/// [`current`]).
pub fn install(limits: Limits) -> bool {
    CURRENT.set(limits).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_contract() {
        let cli = FromEnv::try_parse_from(Vec::<String>::new()).unwrap();
        // Only meaningful when the test's environment sets none of them, as in CI.
        if std::env::vars().all(|(k, _)| !k.starts_with("MAX_")) {
            assert_eq!(cli.limits, Limits::default());
        }
    }

    #[test]
    fn sizes_over_the_limit_are_refused_with_the_limit_named() {
        let limits = Limits {
            max_message_bytes: 10,
            ..Limits::default()
        };
        assert!(limits.check_message_size(10).is_ok());
        let reason = limits.check_message_size(11).unwrap_err();
        assert!(
            reason.contains("11 bytes") && reason.contains("limit of 10"),
            "{reason}"
        );
    }

    #[test]
    fn flags_parse_like_the_environment() {
        let cli = FromEnv::try_parse_from(["--max-samples-per-batch", "7"]).unwrap();
        assert_eq!(cli.limits.max_samples_per_batch, 7);
        assert!(FromEnv::try_parse_from(["--max-message-bytes", "lots"]).is_err());
    }
}
