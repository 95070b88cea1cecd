//! Checks on an `ingest.v1` batch that need no database. The size limits are this process's
//! [`Limits`] (`MAX_SAMPLES_PER_BATCH`, `MAX_VALUES_PER_SAMPLE`, `MAX_SUBJECT_LEN`,
//! `MAX_NAME_LEN`); the batch size is checked before any sample is looked at.

use std::collections::HashSet;

use broker_schemas::{IngestV1, Sample, SampleKind};
use swarm_runtime::limits::{self, Limits};

/// The shape every sample of a batch shares: its kind and dimension (features, or regions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Vector or time series.
    pub kind: SampleKind,
    /// Vector length, or the number of regions R of a time series.
    pub dimension: usize,
}

fn check_name(what: &str, value: &str, max: usize, variable: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.chars().count() > max {
        return Err(format!(
            "{what} is longer than {max} characters (the limit, {variable})"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

/// Most covariates per subject.
pub const MAX_COVARIATES: usize = 64;

fn check_covariates(sample: &Sample) -> Result<(), String> {
    let subject = &sample.subject;
    if sample.covariates.len() > MAX_COVARIATES {
        return Err(format!(
            "subject {subject:?} has {} covariates; the limit is {MAX_COVARIATES}",
            sample.covariates.len()
        ));
    }
    for (name, value) in &sample.covariates {
        if name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control)
        {
            return Err(format!(
                "subject {subject:?} has a covariate with an invalid name {name:?}"
            ));
        }
        if !value.is_finite() {
            return Err(format!(
                "covariate {name:?} of subject {subject:?} is not finite ({value})"
            ));
        }
    }
    Ok(())
}

/// The shape of one sample, or why it is invalid.
pub fn sample_shape(sample: &Sample, limits: &Limits) -> Result<Shape, String> {
    let subject = &sample.subject;
    check_name(
        "subject",
        subject,
        limits.max_subject_len,
        "MAX_SUBJECT_LEN",
    )?;
    check_name(
        &format!("label of subject {subject:?}"),
        &sample.label,
        limits.max_name_len,
        "MAX_NAME_LEN",
    )?;
    check_covariates(sample)?;
    if sample.kind == SampleKind::Text {
        let text = sample.text.as_deref().unwrap_or("");
        if text.trim().is_empty() {
            return Err(format!("text sample of subject {subject:?} has no `text`"));
        }
        if !sample.values.is_empty() {
            return Err(format!(
                "text sample of subject {subject:?} carries `values`: a document goes in `text`"
            ));
        }
        // Every document hashes to the same feature space: one "dimension" for the project.
        return Ok(Shape {
            kind: SampleKind::Text,
            dimension: 1,
        });
    }
    let n = sample.values.len();
    if n == 0 {
        return Err(format!("subject {subject:?} has no values"));
    }
    if n > limits.max_values_per_sample {
        return Err(format!(
            "subject {subject:?} has {n} values; the limit is {} (MAX_VALUES_PER_SAMPLE)",
            limits.max_values_per_sample
        ));
    }
    // A pass without an early exit, which the compiler vectorises (a `position` is not: 10 µs
    // a series); the index is looked for only when something is off.
    let finite = sample.values.iter().fold(true, |ok, v| ok & v.is_finite());
    if let Some(i) = (!finite)
        .then(|| sample.values.iter().position(|v| !v.is_finite()))
        .flatten()
    {
        return Err(format!(
            "subject {subject:?} has a non-finite value ({}) at index {i}",
            sample.values[i]
        ));
    }
    let dimension = match sample.kind {
        SampleKind::Vector | SampleKind::Text => n,
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
            if let Some(region) = constant_region(&sample.values, regions) {
                return Err(format!(
                    "time series of subject {subject:?}: region {} of {regions} (columns count from 1) \
                     has the same value at all {t} timepoints, so its connectivity is undefined; \
                     leave the region out for every subject, or fix its signal",
                    region + 1
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

/// The first region (column, from 0) of a row-major `timepoints × regions` series whose values
/// are all equal, if any: its correlation with every other region is undefined (0 / 0).
fn constant_region(values: &[f32], regions: usize) -> Option<usize> {
    let (first, rest) = values.split_at(regions);
    let mut varies = vec![false; regions];
    // Row by row without an early exit: the comparisons vectorise.
    for row in rest.chunks_exact(regions) {
        for ((v, f), varies) in row.iter().zip(first).zip(&mut varies) {
            *varies |= v != f;
        }
    }
    varies.iter().position(|varies| !varies)
}

/// Validates a whole batch against this process's limits and returns its shape.
pub fn batch(message: &IngestV1) -> Result<Shape, String> {
    batch_within(message, &limits::current())
}

/// Validates a whole batch against `limits` and returns its shape.
pub fn batch_within(message: &IngestV1, limits: &Limits) -> Result<Shape, String> {
    let n = message.samples.len();
    if n > limits.max_samples_per_batch {
        return Err(format!(
            "the batch has {n} samples; the limit is {} per message (MAX_SAMPLES_PER_BATCH)",
            limits.max_samples_per_batch
        ));
    }
    check_name(
        "project",
        &message.project,
        limits.max_name_len,
        "MAX_NAME_LEN",
    )?;
    check_name("site", &message.site, limits.max_name_len, "MAX_NAME_LEN")?;
    if n == 0 {
        return Err("the batch has no samples".into());
    }
    let mut seen = HashSet::with_capacity(n);
    let mut shape: Option<Shape> = None;
    for sample in &message.samples {
        let s = sample_shape(sample, limits)?;
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
        Sample::vector(subject, "a", values)
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
            batch_within(&b, &Limits::default()),
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
            covariates: Default::default(),
            text: None,
        };
        let cases: Vec<(IngestV1, &str)> = vec![
            (batch_of(vec![vector("1", vec![f32::NAN])]), "non-finite"),
            (
                batch_of(vec![vector("1", vec![f32::INFINITY])]),
                "non-finite",
            ),
            (
                batch_of(vec![vector("1", vec![1.0, 2.0, f32::NEG_INFINITY, 3.0])]),
                "non-finite value (-inf) at index 2",
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
            (batch_of(vec![ts.clone()]), "rows of equal length"),
            (
                // 3 timepoints × 3 regions; region 2 is flat.
                batch_of(vec![Sample {
                    values: vec![1.0, 5.0, 0.0, 2.0, 5.0, 1.0, 4.0, 5.0, 0.5],
                    ..ts.clone()
                }]),
                "subject \"t\": region 2 of 3 (columns count from 1) has the same value at all 3 timepoints",
            ),
            (
                batch_of(vec![Sample {
                    values: vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 5.0, 6.0, 0.0],
                    ..ts.clone()
                }]),
                "region 3 of 3",
            ),
            (
                batch_of(vec![Sample {
                    label: " ".into(),
                    ..vector("1", vec![1.0])
                }]),
                "label",
            ),
            (
                batch_of(
                    (0..=Limits::default().max_samples_per_batch)
                        .map(|i| vector(&i.to_string(), vec![1.0]))
                        .collect(),
                ),
                "limit",
            ),
        ];
        for (b, expected) in cases {
            let err = batch_within(&b, &Limits::default()).expect_err(expected);
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn a_time_series_whose_regions_all_vary_is_accepted() {
        // Region 3 is constant but for its last timepoint, by the least step an f32 allows.
        let last = f32::from_bits(1.0f32.to_bits() + 1);
        let ts = Sample {
            subject: "t".into(),
            label: "a".into(),
            kind: SampleKind::Timeseries,
            values: vec![1.0, 5.0, 1.0, 2.0, 6.0, 1.0, 4.0, 5.0, last],
            timepoints: Some(3),
            covariates: Default::default(),
            text: None,
        };
        assert_eq!(
            batch_within(&batch_of(vec![ts]), &Limits::default()),
            Ok(Shape {
                kind: SampleKind::Timeseries,
                dimension: 3
            })
        );
    }

    #[test]
    fn configured_limits_apply_and_are_named_in_the_reason() {
        let tight = Limits {
            max_samples_per_batch: 2,
            max_values_per_sample: 3,
            max_subject_len: 4,
            max_name_len: 5,
            ..Limits::default()
        };
        let cases: Vec<(IngestV1, &str)> = vec![
            (
                batch_of((0..3).map(|i| vector(&i.to_string(), vec![1.0])).collect()),
                "MAX_SAMPLES_PER_BATCH",
            ),
            (
                batch_of(vec![vector("1", vec![1.0; 4])]),
                "MAX_VALUES_PER_SAMPLE",
            ),
            (
                batch_of(vec![vector("12345", vec![1.0])]),
                "MAX_SUBJECT_LEN",
            ),
            (
                IngestV1 {
                    project: "project".into(),
                    ..batch_of(vec![vector("1", vec![1.0])])
                },
                "MAX_NAME_LEN",
            ),
        ];
        for (b, expected) in cases {
            let err = batch_within(&b, &tight).expect_err(expected);
            assert!(err.contains(expected), "{err:?} should name {expected}");
            assert!(batch_within(&b, &Limits::default()).is_ok());
        }
    }
}
