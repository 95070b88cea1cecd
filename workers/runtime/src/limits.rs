//! Input limits that protect the swarm, configurable per process through the environment.
//!
//! The defaults are the contract in [`broker_schemas::limits`]; an operator can lower (or raise)
//! them per deployment:
//!
//! | variable | default | checked |
//! |---|---|---|
//! | `MAX_MESSAGE_BYTES` | 16 MiB | body size, before decoding (every worker) |
//! | `MAX_SAMPLES_PER_BATCH` | 10 000 | samples in one `ingest.v1`, before decoding |
//! | `MAX_VALUES_PER_SAMPLE` | 480 000 | values (dimension, or T × R) of one sample, before decoding |
//! | `MAX_SUBJECT_LEN` | 128 | characters of a subject id, after decoding, before any database work |
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

impl Limits {
    /// Why a body of AMQP type `message_type` is refused before it is decoded, if it is: for
    /// `ingest.v1`, the number of samples and of values per sample, read from the MessagePack
    /// headers without allocating (a 16 MiB body of empty samples would otherwise decode into
    /// several times its size). A malformed body passes: the decoder says what is wrong with it.
    pub fn check_body(&self, message_type: &str, body: &[u8]) -> Result<(), String> {
        match message_type {
            "ingest.v1" => scan_ingest(body, self),
            _ => Ok(()),
        }
    }
}

/// A MessagePack reader that only looks at headers.
struct Reader<'a> {
    buf: &'a [u8],
}

/// What a MessagePack header says; scalars and binaries are skipped by [`Reader::head`].
enum Head {
    Map(usize),
    Array(usize),
    Str(usize),
    Scalar,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn uint(&mut self, bytes: usize) -> Option<usize> {
        let mut n = 0usize;
        for b in self.take(bytes)? {
            n = n.checked_mul(256)? + usize::from(*b);
        }
        Some(n)
    }

    fn head(&mut self) -> Option<Head> {
        let marker = self.take(1)?[0];
        let head = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Head::Scalar,
            0x80..=0x8f => Head::Map(usize::from(marker & 0x0f)),
            0x90..=0x9f => Head::Array(usize::from(marker & 0x0f)),
            0xa0..=0xbf => Head::Str(usize::from(marker & 0x1f)),
            0xd9 => Head::Str(self.uint(1)?),
            0xda => Head::Str(self.uint(2)?),
            0xdb => Head::Str(self.uint(4)?),
            0xdc => Head::Array(self.uint(2)?),
            0xdd => Head::Array(self.uint(4)?),
            0xde => Head::Map(self.uint(2)?),
            0xdf => Head::Map(self.uint(4)?),
            // bin 8/16/32, ext 8/16/32 (a type byte, then the data)
            0xc4..=0xc6 => {
                let n = self.uint(1 << (marker - 0xc4))?;
                self.take(n)?;
                Head::Scalar
            }
            0xc7..=0xc9 => {
                let n = self.uint(1 << (marker - 0xc7))?;
                self.take(n.checked_add(1)?)?;
                Head::Scalar
            }
            // float 32/64, uint 8..64, int 8..64, fixext 1..16
            0xca => self.skip_bytes(4)?,
            0xcb => self.skip_bytes(8)?,
            0xcc..=0xcf => self.skip_bytes(1 << (marker - 0xcc))?,
            0xd0..=0xd3 => self.skip_bytes(1 << (marker - 0xd0))?,
            0xd4..=0xd8 => self.skip_bytes(1 + (1 << (marker - 0xd4)))?,
            0xc1 => return None,
        };
        Some(head)
    }

    fn skip_bytes(&mut self, n: usize) -> Option<Head> {
        self.take(n).map(|_| Head::Scalar)
    }

    /// Skips one whole value.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > 64 {
            return None;
        }
        match self.head()? {
            Head::Map(n) => {
                for _ in 0..n.checked_mul(2)? {
                    self.skip(depth + 1)?;
                }
            }
            Head::Array(n) => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
            }
            Head::Str(n) => {
                self.take(n)?;
            }
            Head::Scalar => {}
        }
        Some(())
    }

    /// A map key that is a string.
    fn key(&mut self) -> Option<&'a [u8]> {
        match self.head()? {
            Head::Str(n) => self.take(n),
            _ => None,
        }
    }
}

fn scan_ingest(body: &[u8], limits: &Limits) -> Result<(), String> {
    let mut r = Reader { buf: body };
    let Some(Head::Map(fields)) = r.head() else {
        return Ok(());
    };
    for _ in 0..fields {
        let Some(key) = r.key() else { return Ok(()) };
        if key != b"samples" {
            if r.skip(0).is_none() {
                return Ok(());
            }
            continue;
        }
        let Some(Head::Array(n)) = r.head() else {
            return Ok(());
        };
        if n > limits.max_samples_per_batch {
            return Err(format!(
                "the batch has {n} samples; the limit is {} per message (MAX_SAMPLES_PER_BATCH)",
                limits.max_samples_per_batch
            ));
        }
        for i in 0..n {
            let Some(Head::Map(m)) = r.head() else {
                return Ok(());
            };
            for _ in 0..m {
                let Some(key) = r.key() else { return Ok(()) };
                if key == b"values" {
                    if let Some(Head::Array(v)) = r.head() {
                        if v > limits.max_values_per_sample {
                            return Err(format!(
                                "sample {i} has {v} values; the limit is {} (MAX_VALUES_PER_SAMPLE)",
                                limits.max_values_per_sample
                            ));
                        }
                        // Nearly always float 32s, a marker and four bytes each: the run of
                        // them is skipped at once, without the general walk (this loop sees
                        // every value of a batch).
                        let floats = float32_run(r.buf, v);
                        r.buf = &r.buf[floats * 5..];
                        for _ in floats..v {
                            if r.skip(0).is_none() {
                                return Ok(());
                            }
                        }
                        continue;
                    }
                    return Ok(());
                }
                if r.skip(0).is_none() {
                    return Ok(());
                }
            }
        }
        return Ok(());
    }
    Ok(())
}

/// How many of the first `max` values in `buf` are float 32s (marker 0xca, four bytes): eight
/// markers at a time, OR-ed together without a branch per value (twice as fast as value by
/// value), then one by one.
fn float32_run(buf: &[u8], max: usize) -> usize {
    let limit = max.min(buf.len() / 5);
    let mut n = 0;
    for eight in buf[..limit / 8 * 40].chunks_exact(40) {
        if (0..8).fold(0, |other, k| other | (eight[k * 5] ^ 0xca)) != 0 {
            break;
        }
        n += 8;
    }
    n + buf[n * 5..limit * 5]
        .chunks_exact(5)
        .take_while(|value| value[0] == 0xca)
        .count()
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

    fn batch(samples: usize, values: usize) -> Vec<u8> {
        let sample = |i: usize| broker_schemas::Sample {
            subject: format!("s{i}"),
            label: "a".into(),
            kind: broker_schemas::SampleKind::Vector,
            values: vec![0.5; values],
            timepoints: None,
            covariates: Default::default(),
            text: None,
        };
        broker_schemas::encode(&broker_schemas::IngestV1 {
            project: "p".into(),
            site: "s".into(),
            samples: (0..samples).map(sample).collect(),
        })
    }

    #[test]
    fn ingest_counts_are_checked_before_decoding() {
        let limits = Limits {
            max_samples_per_batch: 10,
            max_values_per_sample: 20,
            ..Limits::default()
        };
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (batch(10, 20), None),
            (
                batch(11, 1),
                Some("the batch has 11 samples; the limit is 10"),
            ),
            (
                batch(3, 21),
                Some("sample 0 has 21 values; the limit is 20"),
            ),
            (batch(0, 0), None),
            // Malformed or cut short: left to the decoder, which explains.
            (batch(11, 1)[..3].to_vec(), None),
            (b"not msgpack at all".to_vec(), None),
            (vec![0xdd, 0xff, 0xff, 0xff, 0xff], None),
        ];
        for (body, expected) in cases {
            let result = limits.check_body("ingest.v1", &body);
            match expected {
                None => assert_eq!(result, Ok(())),
                Some(reason) => {
                    let error = result.expect_err(reason);
                    assert!(
                        error.contains(reason),
                        "{error:?} should contain {reason:?}"
                    );
                }
            }
        }
        // Other types are not looked into.
        assert_eq!(limits.check_body("train.v1", &batch(11, 1)), Ok(()));
    }

    #[test]
    fn a_run_of_floats_ends_at_the_first_other_value() {
        let floats = |n: usize| {
            (0..n)
                .flat_map(|_| [0xca, 0x3f, 0, 0, 0])
                .collect::<Vec<u8>>()
        };
        for n in [0, 1, 7, 8, 9, 16, 23, 40] {
            let body = floats(n);
            assert_eq!(float32_run(&body, n), n);
            assert_eq!(float32_run(&body, n + 5), n, "the buffer ends first");
            assert_eq!(float32_run(&body, n / 2), n / 2, "the count ends first");
            for other in 0..n {
                let mut body = body.clone();
                body[other * 5] = 0xcb;
                assert_eq!(
                    float32_run(&body, n),
                    other,
                    "{n} values, value {other} a float 64"
                );
            }
        }
    }

    #[test]
    fn values_that_are_not_all_float_32s_are_walked_one_by_one() {
        // {"samples": [{"values": [21 values, one a float 64]}, {"values": [21 float 32s]}]}:
        // the second sample's count is only found if the first's values are skipped exactly.
        let values = |n: u8, float64_at: Option<usize>| {
            let mut out = vec![0x81, 0xa6];
            out.extend(b"values");
            out.extend([0xdc, 0, n]);
            for i in 0..usize::from(n) {
                if Some(i) == float64_at {
                    out.extend([0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]);
                } else {
                    out.extend([0xca, 0x3f, 0, 0, 0]);
                }
            }
            out
        };
        let limits = Limits {
            max_values_per_sample: 21,
            ..Limits::default()
        };
        let tighter = Limits {
            max_values_per_sample: 20,
            ..Limits::default()
        };
        for float64_at in [None, Some(0), Some(5), Some(8), Some(19)] {
            let mut body = vec![0x81, 0xa7];
            body.extend(b"samples");
            body.push(0x92);
            body.extend(values(21, float64_at));
            body.extend(values(21, None));
            assert_eq!(limits.check_body("ingest.v1", &body), Ok(()));
            let error = tighter.check_body("ingest.v1", &body).unwrap_err();
            assert!(error.contains("sample 0 has 21 values"), "{error}");
            // Only the second sample over the limit: found after the first one's walk.
            let mut body = vec![0x81, 0xa7];
            body.extend(b"samples");
            body.push(0x92);
            body.extend(values(20, float64_at));
            body.extend(values(21, None));
            let error = tighter.check_body("ingest.v1", &body).unwrap_err();
            assert!(
                error.contains("sample 1 has 21 values"),
                "{float64_at:?}: {error}"
            );
        }
    }

    #[test]
    fn flags_parse_like_the_environment() {
        let cli = FromEnv::try_parse_from(["--max-samples-per-batch", "7"]).unwrap();
        assert_eq!(cli.limits.max_samples_per_batch, 7);
        assert!(FromEnv::try_parse_from(["--max-message-bytes", "lots"]).is_err());
    }
}
