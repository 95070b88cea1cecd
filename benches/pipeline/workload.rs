//! The workloads: (b) vectors and (c) time series, as `ingest.v1` messages made on the fly.

use broker_schemas::{IngestV1, Sample, SampleKind};

/// What is being pushed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Vectors of 64 float32, 100 per message.
    Vectors,
    /// 200 timepoints × 116 regions, 10 subjects per message.
    Timeseries,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Workload {
    pub(crate) kind: Kind,
    pub(crate) messages: usize,
    pub(crate) per_message: usize,
}

impl Workload {
    pub(crate) fn new(kind: Kind, scale: f64) -> Self {
        let (full, per_message) = match kind {
            Kind::Vectors => (500, 100),
            Kind::Timeseries => (200, 10),
        };
        let messages = ((full as f64 * scale).round() as usize).max(1);
        Self {
            kind,
            messages,
            per_message,
        }
    }

    pub(crate) fn items(&self) -> usize {
        self.messages * self.per_message
    }

    pub(crate) fn unit(&self) -> &'static str {
        match self.kind {
            Kind::Vectors => "samples",
            Kind::Timeseries => "subjects",
        }
    }

    pub(crate) fn title(&self) -> String {
        match self.kind {
            Kind::Vectors => format!(
                "(b) {} vectors × 64 f32, {} per message",
                self.items(),
                self.per_message
            ),
            Kind::Timeseries => format!(
                "(c) {} subjects × 200 × 116 f32, {} per message",
                self.items(),
                self.per_message
            ),
        }
    }

    /// Message `i` of the workload: deterministic, a different subject in every sample.
    pub(crate) fn message(&self, i: usize) -> IngestV1 {
        let (project, kind, values, timepoints) = match self.kind {
            Kind::Vectors => ("bench-vectors", SampleKind::Vector, 64, None),
            Kind::Timeseries => (
                "bench-connectivity",
                SampleKind::Timeseries,
                200 * 116,
                Some(200),
            ),
        };
        IngestV1 {
            project: project.into(),
            site: "bench".into(),
            samples: (0..self.per_message)
                .map(|k| {
                    let n = i * self.per_message + k;
                    Sample {
                        subject: format!("sub-{n:06}"),
                        label: if n % 2 == 0 { "patient" } else { "control" }.into(),
                        kind,
                        values: noise(n as u64, values),
                        timepoints,
                        covariates: Default::default(),
                        text: None,
                    }
                })
                .collect(),
        }
    }
}

/// `n` values in [-1, 1) from a xorshift generator seeded by `seed`.
pub(crate) fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
