//! Checks on an `ingest.v1` batch that need no database.

use std::collections::HashSet;

use broker_schemas::{limits, IngestV1, Sample, SampleKind};

/// The shape every sample of a batch shares: its kind and dimension (features, or regions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Vector or time series.
    pub kind: SampleKind,
    /// Vector length, or the number of regions R of a time series.
    pub dimension: usize,
}

fn check_name(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.chars().count() > max {
        return Err(format!("{what} is longer than {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

/// The shape of one sample, or why it is invalid.
pub fn sample_shape(sample: &Sample) -> Result<Shape, String> {
    check_name("subject", &sample.subject, limits::MAX_SUBJECT_LEN)?;
    let subject = &sample.subject;
    check_name(
        &format!("label of subject {subject:?}"),
        &sample.label,
        limits::MAX_NAME_LEN,
    )?;
    let n = sample.values.len();
    if n == 0 {
        return Err(format!("subject {subject:?} has no values"));
    }
    if n > limits::MAX_VALUES_PER_SAMPLE {
        return Err(format!(
            "subject {subject:?} has {n} values; the limit is {}",
            limits::MAX_VALUES_PER_SAMPLE
        ));
    }
    if let Some(i) = sample.values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "subject {subject:?} has a non-finite value ({}) at index {i}",
            sample.values[i]
        ));
    }
    let dimension = match sample.kind {
        SampleKind::Vector => n,
        SampleKind::Timeseries => {
            let t = sample.timepoints.unwrap_or(0) as usize;
            if t < 3 {
                return Err(format!(
                    "time series of subject {subject:?} needs `timepoints` of at least 3"
                ));
            }
            if n % t != 0 {
                return Err(format!(
                    "time series of subject {subject:?}: {n} values are not {t} rows of equal length"
                ));
            }
            let regions = n / t;
            if regions < 2 {
                return Err(format!(
                    "time series of subject {subject:?} needs at least 2 regions, has {regions}"
                ));
            }
            regions
        }
    };
    Ok(Shape {
        kind: sample.kind,
        dimension,
    })
}

/// Validates a whole batch and returns its shape.
pub fn batch(message: &IngestV1) -> Result<Shape, String> {
    check_name("project", &message.project, limits::MAX_NAME_LEN)?;
    check_name("site", &message.site, limits::MAX_NAME_LEN)?;
    let n = message.samples.len();
    if n == 0 {
        return Err("the batch has no samples".into());
    }
    if n > limits::MAX_SAMPLES_PER_BATCH {
        return Err(format!(
            "the batch has {n} samples; the limit is {} per message",
            limits::MAX_SAMPLES_PER_BATCH
        ));
    }
    let mut seen = HashSet::with_capacity(n);
    let mut shape: Option<Shape> = None;
    for sample in &message.samples {
        let s = sample_shape(sample)?;
        if !seen.insert(sample.subject.as_str()) {
            return Err(format!(
                "subject {:?} appears twice in the batch",
                sample.subject
            ));
        }
        match shape {
            None => shape = Some(s),
            Some(first) if first != s => {
                return Err(format!(
                    "subject {:?} is a {} of dimension {}, but the batch started with a {} of dimension {}",
                    sample.subject,
                    s.kind.as_str(),
                    s.dimension,
                    first.kind.as_str(),
                    first.dimension
                ))
            }
            Some(_) => {}
        }
    }
    Ok(shape.expect("the batch is not empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(subject: &str, values: Vec<f32>) -> Sample {
        Sample {
            subject: subject.into(),
            label: "a".into(),
            kind: SampleKind::Vector,
            values,
            timepoints: None,
        }
    }

    fn batch_of(samples: Vec<Sample>) -> IngestV1 {
        IngestV1 {
            project: "p".into(),
            site: "s".into(),
            samples,
        }
    }

    #[test]
    fn accepts_a_consistent_batch() {
        let b = batch_of(vec![
            vector("1", vec![1.0, 2.0]),
            vector("2", vec![3.0, 4.0]),
        ]);
        assert_eq!(
            batch(&b),
            Ok(Shape {
                kind: SampleKind::Vector,
                dimension: 2
            })
        );
    }

    #[test]
    fn rejects_bad_batches_with_a_reason() {
        let ts = Sample {
            subject: "t".into(),
            label: "a".into(),
            kind: SampleKind::Timeseries,
            values: vec![0.0; 10],
            timepoints: Some(3),
        };
        let cases: Vec<(IngestV1, &str)> = vec![
            (batch_of(vec![vector("1", vec![f32::NAN])]), "non-finite"),
            (
                batch_of(vec![vector("1", vec![f32::INFINITY])]),
                "non-finite",
            ),
            (
                batch_of(vec![vector("1", vec![1.0]), vector("2", vec![1.0, 2.0])]),
                "dimension",
            ),
            (batch_of(vec![vector("", vec![1.0])]), "subject is empty"),
            (
                batch_of(vec![vector(&"x".repeat(129), vec![1.0])]),
                "longer than",
            ),
            (
                batch_of(vec![vector("1", vec![1.0]), vector("1", vec![1.0])]),
                "twice",
            ),
            (batch_of(vec![]), "no samples"),
            (batch_of(vec![vector("1", vec![])]), "no values"),
            (batch_of(vec![ts]), "rows of equal length"),
            (
                batch_of(vec![Sample {
                    label: " ".into(),
                    ..vector("1", vec![1.0])
                }]),
                "label",
            ),
            (
                batch_of(
                    (0..=limits::MAX_SAMPLES_PER_BATCH)
                        .map(|i| vector(&i.to_string(), vec![1.0]))
                        .collect(),
                ),
                "limit",
            ),
        ];
        for (b, expected) in cases {
            let err = batch(&b).expect_err(expected);
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }
}
