//! Cutting samples into `ingest.v1` batches within the message limits.

use broker_schemas::limits::{MAX_MESSAGE_BYTES, MAX_NAME_LEN, MAX_SAMPLES_PER_BATCH};
use broker_schemas::Sample;

/// Bytes of an `ingest.v1` message besides its samples (field names, project, site, map and array
/// headers), an over-estimate.
const BATCH_OVERHEAD_BYTES: usize = 64 + 2 * MAX_NAME_LEN * 4;

/// An upper estimate of a sample's size in MessagePack: 5 bytes per `f32`, its strings, and the
/// field names and headers.
pub fn estimated_bytes(sample: &Sample) -> usize {
    // Field names (`subject`, `label`, `kind`, `values`, `timepoints`) with their headers, the
    // kind, the timepoints, and the string and array headers.
    const FIXED: usize = 96;
    // A covariate: its name, a map key header and an f64 (9 bytes); text: its bytes and header.
    let covariates: usize = sample.covariates.keys().map(|k| k.len() + 12).sum();
    let text = sample.text.as_ref().map_or(0, |t| t.len() + 16);
    FIXED + sample.subject.len() + sample.label.len() + 5 * sample.values.len() + covariates + text
}

/// Splits samples into batches, in order, of at most `max_per_batch` samples and at most about
/// `max_bytes_estimate` bytes each (by [`estimated_bytes`], plus room for the project and site),
/// never above [`MAX_SAMPLES_PER_BATCH`] and [`MAX_MESSAGE_BYTES`] whatever is asked.
///
/// A sample too big for a batch on its own still gets a batch of its own (the ingest worker
/// rejects it with a clear error); no sample is dropped. No samples give no batches.
pub fn batches(
    samples: Vec<Sample>,
    max_per_batch: usize,
    max_bytes_estimate: usize,
) -> Vec<Vec<Sample>> {
    let max_count = max_per_batch.clamp(1, MAX_SAMPLES_PER_BATCH);
    let max_bytes = max_bytes_estimate
        .min(MAX_MESSAGE_BYTES)
        .saturating_sub(BATCH_OVERHEAD_BYTES);
    let mut batches = Vec::new();
    let mut batch: Vec<Sample> = Vec::new();
    let mut bytes = 0;
    for sample in samples {
        let size = estimated_bytes(&sample);
        if !batch.is_empty() && (batch.len() == max_count || bytes + size > max_bytes) {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.push(sample);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_schemas::SampleKind;

    fn sample(values: usize) -> Sample {
        Sample::vector("subject-0001", "patient", vec![0.1; values])
    }

    fn sizes(batches: &[Vec<Sample>]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn batches_respect_the_count() {
        assert!(batches(Vec::new(), 10, MAX_MESSAGE_BYTES).is_empty());
        let samples = vec![sample(3); 25];
        assert_eq!(
            sizes(&batches(samples.clone(), 10, MAX_MESSAGE_BYTES)),
            [10, 10, 5]
        );
        // Zero means one per batch; more than the limit means the limit.
        assert_eq!(
            sizes(&batches(samples[..3].to_vec(), 0, MAX_MESSAGE_BYTES)),
            [1, 1, 1]
        );
        let many = vec![sample(1); MAX_SAMPLES_PER_BATCH + 1];
        assert_eq!(
            sizes(&batches(many, usize::MAX, usize::MAX)),
            [MAX_SAMPLES_PER_BATCH, 1]
        );
    }

    #[test]
    fn batches_respect_the_bytes_and_keep_order() {
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                subject: format!("s{i}"),
                ..sample(1000)
            })
            .collect();
        let per_sample = estimated_bytes(&samples[0]);
        let max_bytes = BATCH_OVERHEAD_BYTES + 3 * per_sample;
        let split = batches(samples.clone(), 100, max_bytes);
        assert_eq!(sizes(&split), [3, 3, 3, 1]);
        assert_eq!(split.concat(), samples);
        // A sample bigger than the budget still goes, alone.
        assert_eq!(sizes(&batches(samples, 100, 10)), [1; 10]);
        // The message limit caps any budget: two samples of 60 % of it cannot share a batch.
        let big = sample(MAX_MESSAGE_BYTES * 6 / 10 / 5);
        assert_eq!(
            sizes(&batches(vec![big.clone(), big], 100, usize::MAX)),
            [1, 1]
        );
    }

    #[test]
    fn the_estimate_bounds_the_encoded_message() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| Sample {
                subject: format!("site-a-subject-{i:04}"),
                label: if i % 2 == 0 { "patient" } else { "control" }.into(),
                kind: SampleKind::Timeseries,
                values: (0..200).map(|v| v as f32 * 0.37).collect(),
                timepoints: Some(20),
                covariates: Default::default(),
                text: None,
            })
            .collect();
        let max_bytes = 20_000;
        for batch in batches(samples, 1000, max_bytes) {
            let message = broker_schemas::IngestV1 {
                project: "p".repeat(MAX_NAME_LEN),
                site: "s".repeat(MAX_NAME_LEN),
                samples: batch,
            };
            let encoded = broker_schemas::encode(&message).len();
            assert!(encoded <= max_bytes, "{encoded} > {max_bytes}");
        }
    }
}
