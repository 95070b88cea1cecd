//! Synthetic multi-site data sets with a real class signal, for `swarm demo`, tests and benches.
//!
//! Two classes, `patient` and `control`, alternate within each site (so each site is balanced,
//! with one more patient when `per_site` is odd). Every site adds its own offset (a site effect,
//! as scanners and protocols differ) that is the same for both classes, so pooling sites adds
//! noise but no bias. The class signal is strong enough that a linear model under 5-fold
//! cross-validation clearly beats chance (about 0.8–0.95 accuracy) but does not reach 1.0:
//!
//! - [`vector_dataset`]: the first [`informative_features`] features are shifted apart between the
//!   classes; the rest are noise.
//! - [`timeseries_dataset`]: a shared latent signal drives the regions `0..4`, more strongly in
//!   patients, so the correlations within that block (functional connectivity) separate the
//!   classes.
//!
//! Everything is drawn from a `ChaCha8Rng` seeded with `seed`: the same arguments give the same
//! data on every platform.

use broker_schemas::{Sample, SampleKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The label of the class with the signal.
pub const PATIENT: &str = "patient";
/// The label of the other class.
pub const CONTROL: &str = "control";

/// Distance between the class means of a vector data set, in noise standard deviations
/// (before the site effect), spread evenly over the informative features.
const VECTOR_SEPARATION: f64 = 3.0;
/// Standard deviation of a site's offset on each feature.
const VECTOR_SITE_SD: f64 = 0.5;

/// Regions driven by the latent signal in a time-series data set: `0..TIMESERIES_BLOCK`.
const TIMESERIES_BLOCK: usize = 4;
/// Mean weight of the latent signal in patients and in controls (noise has variance 1).
const PATIENT_COUPLING: f64 = 0.95;
const CONTROL_COUPLING: f64 = 0.45;
/// Standard deviation of a subject's coupling around its class mean.
const COUPLING_SD: f64 = 0.15;
/// Lag-one autocorrelation of every signal (BOLD-like slow drift).
const AUTOCORRELATION: f64 = 0.3;

/// How many of `dims` features carry the class signal in [`vector_dataset`]: the first quarter
/// (at least one).
pub fn informative_features(dims: usize) -> usize {
    (dims / 4).max(1)
}

/// The regions whose connectivity differs between the classes in [`timeseries_dataset`]:
/// `0..informative_regions(regions)`.
pub fn informative_regions(regions: usize) -> usize {
    TIMESERIES_BLOCK.min(regions)
}

/// The class of a site's `index`-th subject: patients and controls alternate.
fn label_of(index: usize) -> &'static str {
    if index % 2 == 0 {
        PATIENT
    } else {
        CONTROL
    }
}

fn subject_of(site: &str, index: usize) -> String {
    format!("{site}-sub-{index:04}")
}

/// A standard normal draw (Box–Muller; `rand_distr` is not a dependency).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // in (0, 1], so the log is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A labelled feature-vector data set: `per_site` subjects at each of `sites`, `dims` features
/// each, as `(site, sample)` in site order. Subjects are named `<site>-sub-<index>`.
///
/// Feature `j` of a subject is `site_offset[j] + noise + class_shift[j]`: noise is N(0, 1), the
/// site offset N(0, 0.5²) per site and feature, and the first [`informative_features`]`(dims)`
/// features are shifted by ±δ/2 (patients up, controls down) so the class means are 3 noise
/// standard deviations apart.
///
/// # Panics
/// When `dims` is 0.
pub fn vector_dataset(
    sites: &[&str],
    per_site: usize,
    dims: usize,
    seed: u64,
) -> Vec<(String, Sample)> {
    assert!(dims > 0, "a vector data set needs at least one feature");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let informative = informative_features(dims);
    let shift = VECTOR_SEPARATION / (informative as f64).sqrt() / 2.0;
    let mut data = Vec::with_capacity(sites.len() * per_site);
    for site in sites {
        let offsets: Vec<f64> = (0..dims)
            .map(|_| VECTOR_SITE_SD * normal(&mut rng))
            .collect();
        for index in 0..per_site {
            let label = label_of(index);
            let sign = if label == PATIENT { 1.0 } else { -1.0 };
            let values = offsets
                .iter()
                .enumerate()
                .map(|(j, offset)| {
                    let class = if j < informative { sign * shift } else { 0.0 };
                    (offset + normal(&mut rng) + class) as f32
                })
                .collect();
            let sample = Sample::vector(subject_of(site, index), label.to_owned(), values);
            data.push((site.to_string(), sample));
        }
    }
    data
}

/// A labelled time-series data set: `per_site` subjects at each of `sites`, each a
/// `timepoints` × `regions` matrix (row-major, `timepoints: Some(T)`), as `(site, sample)` in
/// site order. Subjects are named `<site>-sub-<index>`.
///
/// Every region is AR(1) noise (variance 1, lag-one correlation 0.3) plus a site-wide global
/// signal whose weight differs per site (0.2–0.6), plus a per-site mean offset per region (the
/// site effect). Regions `0..`[`informative_regions`]`(regions)` also share a latent AR(1) signal
/// with a per-subject weight around 0.95 in patients and 0.45 in controls (standard deviation
/// 0.15), so their pairwise correlations are higher in patients.
///
/// # Panics
/// When `timepoints` < 3 or `regions` < 2 (there would be no connectivity to compute), or when
/// `timepoints` does not fit a `u32`.
pub fn timeseries_dataset(
    sites: &[&str],
    per_site: usize,
    timepoints: usize,
    regions: usize,
    seed: u64,
) -> Vec<(String, Sample)> {
    assert!(timepoints >= 3, "a time series needs at least 3 timepoints");
    assert!(regions >= 2, "a time series needs at least 2 regions");
    let t = u32::try_from(timepoints).expect("timepoints fit a u32");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let block = informative_regions(regions);
    let mut data = Vec::with_capacity(sites.len() * per_site);
    for site in sites {
        let global_weight = rng.random_range(0.2..0.6);
        let offsets: Vec<f64> = (0..regions).map(|_| normal(&mut rng)).collect();
        for index in 0..per_site {
            let label = label_of(index);
            let mean = if label == PATIENT {
                PATIENT_COUPLING
            } else {
                CONTROL_COUPLING
            };
            let coupling = (mean + COUPLING_SD * normal(&mut rng)).max(0.0);
            let latent = ar1(&mut rng, timepoints);
            let global = ar1(&mut rng, timepoints);
            let mut columns: Vec<Vec<f64>> =
                (0..regions).map(|_| ar1(&mut rng, timepoints)).collect();
            for (r, column) in columns.iter_mut().enumerate() {
                let weight = if r < block { coupling } else { 0.0 };
                for (i, value) in column.iter_mut().enumerate() {
                    *value += offsets[r] + global_weight * global[i] + weight * latent[i];
                }
            }
            let values = (0..timepoints)
                .flat_map(|i| columns.iter().map(move |column| column[i] as f32))
                .collect();
            let sample = Sample {
                subject: subject_of(site, index),
                label: label.to_owned(),
                kind: SampleKind::Timeseries,
                values,
                timepoints: Some(t),
                covariates: Default::default(),
                text: None,
            };
            data.push((site.to_string(), sample));
        }
    }
    data
}

/// A stationary AR(1) series of `n` values with variance 1.
fn ar1(rng: &mut impl Rng, n: usize) -> Vec<f64> {
    let innovation = (1.0 - AUTOCORRELATION * AUTOCORRELATION).sqrt();
    let mut value = normal(rng);
    (0..n)
        .map(|_| {
            let current = value;
            value = AUTOCORRELATION * value + innovation * normal(rng);
            current
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];

    fn count(data: &[(String, Sample)], site: &str, label: &str) -> usize {
        data.iter()
            .filter(|(s, sample)| s == site && sample.label == label)
            .count()
    }

    #[test]
    fn vector_dataset_is_deterministic_for_a_seed() {
        let a = vector_dataset(&SITES, 10, 8, 42);
        assert_eq!(a, vector_dataset(&SITES, 10, 8, 42));
        assert_ne!(a, vector_dataset(&SITES, 10, 8, 43));
    }

    #[test]
    fn vector_dataset_has_the_asked_shape_and_balanced_classes() {
        let data = vector_dataset(&SITES, 10, 8, 1);
        assert_eq!(data.len(), 30);
        for (site, sample) in &data {
            assert!(SITES.contains(&site.as_str()));
            assert!(sample.subject.starts_with(site.as_str()));
            assert_eq!(sample.kind, SampleKind::Vector);
            assert_eq!(sample.values.len(), 8);
            assert_eq!(sample.timepoints, None);
            assert!(sample.values.iter().all(|v| v.is_finite()));
        }
        for site in SITES {
            assert_eq!(count(&data, site, PATIENT), 5);
            assert_eq!(count(&data, site, CONTROL), 5);
        }
        let mut subjects: Vec<_> = data.iter().map(|(_, s)| &s.subject).collect();
        subjects.sort();
        subjects.dedup();
        assert_eq!(subjects.len(), 30, "subjects are unique");
        // An odd count gives the extra subject to the patients.
        let odd = vector_dataset(&["x"], 5, 2, 1);
        assert_eq!(
            (count(&odd, "x", PATIENT), count(&odd, "x", CONTROL)),
            (3, 2)
        );
    }

    #[test]
    fn timeseries_dataset_is_deterministic_for_a_seed() {
        let a = timeseries_dataset(&SITES, 4, 20, 6, 7);
        assert_eq!(a, timeseries_dataset(&SITES, 4, 20, 6, 7));
        assert_ne!(a, timeseries_dataset(&SITES, 4, 20, 6, 8));
    }

    #[test]
    fn timeseries_dataset_has_the_asked_shape_and_balanced_classes() {
        let data = timeseries_dataset(&SITES, 6, 50, 10, 3);
        assert_eq!(data.len(), 18);
        for (_, sample) in &data {
            assert_eq!(sample.kind, SampleKind::Timeseries);
            assert_eq!(sample.timepoints, Some(50));
            assert_eq!(sample.values.len(), 50 * 10);
            assert!(sample.values.iter().all(|v| v.is_finite()));
        }
        for site in SITES {
            assert_eq!(count(&data, site, PATIENT), 3);
            assert_eq!(count(&data, site, CONTROL), 3);
        }
        // Two regions work: the whole "block" is those two.
        let small = timeseries_dataset(&["x"], 2, 3, 2, 0);
        assert_eq!(small[0].1.values.len(), 6);
    }

    /// Sites differ: the mean of a noise feature moves with the site.
    #[test]
    fn vector_dataset_has_a_site_effect() {
        let data = vector_dataset(&SITES, 200, 8, 5);
        let mean = |site: &str, feature: usize| {
            let values: Vec<f64> = data
                .iter()
                .filter(|(s, _)| s == site)
                .map(|(_, sample)| f64::from(sample.values[feature]))
                .collect();
            values.iter().sum::<f64>() / values.len() as f64
        };
        let spread: f64 = (2..8)
            .map(|f| {
                let means: Vec<f64> = SITES.iter().map(|s| mean(s, f)).collect();
                let max = means.iter().cloned().fold(f64::MIN, f64::max);
                let min = means.iter().cloned().fold(f64::MAX, f64::min);
                max - min
            })
            .sum::<f64>()
            / 6.0;
        // Sampling alone moves a mean of 200 by ~0.07; the offsets (sd 0.5) by much more.
        assert!(spread > 0.3, "site means spread by only {spread}");
    }

    /// Pearson correlations of the upper triangle, Fisher z: what the features worker computes.
    fn connectivity(sample: &Sample) -> Vec<f64> {
        let t = sample.timepoints.unwrap() as usize;
        let r = sample.values.len() / t;
        let column = |j: usize| -> Vec<f64> {
            let c: Vec<f64> = (0..t)
                .map(|i| f64::from(sample.values[i * r + j]))
                .collect();
            let mean = c.iter().sum::<f64>() / t as f64;
            let centred: Vec<f64> = c.iter().map(|v| v - mean).collect();
            let norm = centred.iter().map(|v| v * v).sum::<f64>().sqrt();
            centred.iter().map(|v| v / norm).collect()
        };
        let columns: Vec<Vec<f64>> = (0..r).map(column).collect();
        let mut features = Vec::new();
        for a in 0..r {
            for b in a + 1..r {
                let rho: f64 = columns[a].iter().zip(&columns[b]).map(|(x, y)| x * y).sum();
                features.push(rho.clamp(-0.999_999, 0.999_999).atanh());
            }
        }
        features
    }

    /// Accuracy of a nearest-class-mean classifier on standardised features (diagonal LDA, a
    /// linear model) under k-fold cross-validation, everything fitted inside the fold.
    fn cv_accuracy(x: &[Vec<f64>], y: &[bool], folds: usize) -> f64 {
        let n = x.len();
        let d = x[0].len();
        let mut correct = 0;
        for fold in 0..folds {
            let train: Vec<usize> = (0..n).filter(|i| i % folds != fold).collect();
            let stats = |f: usize, class: Option<bool>| {
                let v: Vec<f64> = train
                    .iter()
                    .filter(|&&i| class.is_none_or(|c| y[i] == c))
                    .map(|&i| x[i][f])
                    .collect();
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64;
                (mean, var.sqrt().max(1e-9))
            };
            let scale: Vec<f64> = (0..d).map(|f| stats(f, None).1).collect();
            let mean_p: Vec<f64> = (0..d).map(|f| stats(f, Some(true)).0).collect();
            let mean_c: Vec<f64> = (0..d).map(|f| stats(f, Some(false)).0).collect();
            for i in (0..n).filter(|i| i % folds == fold) {
                let dist = |m: &[f64]| -> f64 {
                    (0..d).map(|f| ((x[i][f] - m[f]) / scale[f]).powi(2)).sum()
                };
                let predicted = dist(&mean_p) < dist(&mean_c);
                if predicted == y[i] {
                    correct += 1;
                }
            }
        }
        correct as f64 / n as f64
    }

    fn labels(data: &[(String, Sample)]) -> Vec<bool> {
        data.iter().map(|(_, s)| s.label == PATIENT).collect()
    }

    #[test]
    fn vector_classes_are_separable_but_not_perfectly() {
        for seed in 0..3 {
            let data = vector_dataset(&SITES, 40, 20, seed);
            let x: Vec<Vec<f64>> = data
                .iter()
                .map(|(_, s)| s.values.iter().map(|&v| f64::from(v)).collect())
                .collect();
            let accuracy = cv_accuracy(&x, &labels(&data), 5);
            assert!(
                (0.7..0.98).contains(&accuracy),
                "seed {seed}: cross-validated accuracy {accuracy}"
            );
        }
    }

    #[test]
    fn timeseries_classes_are_separable_by_connectivity_but_not_perfectly() {
        for seed in 0..3 {
            let data = timeseries_dataset(&SITES, 40, 120, 8, seed);
            let x: Vec<Vec<f64>> = data.iter().map(|(_, s)| connectivity(s)).collect();
            let accuracy = cv_accuracy(&x, &labels(&data), 5);
            assert!(
                (0.7..0.98).contains(&accuracy),
                "seed {seed}: cross-validated accuracy {accuracy}"
            );
        }
    }
}
