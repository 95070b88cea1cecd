//! Standardisation (z-scoring), fitted on training rows only.
//!
//! [`StandardScaler`] matches scikit-learn's `StandardScaler` with its defaults: it centres every
//! feature on its mean and divides by its *population* standard deviation (`ddof = 0`). A constant
//! feature (every training value equal) gets a scale of 1, so it transforms to 0 instead of
//! dividing by zero.
//!
//! Inside cross-validation the scaler is fitted on each fold's training rows and only then applied
//! to the test rows: z-scoring the pooled data first would leak the test rows' statistics into the
//! model (one of the flaws of the system this one learns from).

use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;

/// Why a scaler cannot be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScalerError {
    /// No rows, or rows without features.
    #[error("cannot fit a scaler on no data ({rows} rows, {features} features)")]
    Empty {
        /// Number of rows given.
        rows: usize,
        /// Number of features in the first row.
        features: usize,
    },
    /// A row's length differs from the scaler's number of features.
    #[error("row {row} has {found} features, expected {expected}")]
    Dimension {
        /// The row's position in the input.
        row: usize,
        /// The expected number of features.
        expected: usize,
        /// The row's number of features.
        found: usize,
    },
    /// A value is NaN or infinite.
    #[error("row {row}, feature {feature} is not a finite number")]
    NonFinite {
        /// The row's position in the input.
        row: usize,
        /// The feature's position in the row.
        feature: usize,
    },
}

/// Per-feature mean and scale learnt from training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl StandardScaler {
    /// Learns each feature's mean and population standard deviation from `rows`.
    ///
    /// Every row must have the same, non-zero number of features, and every value must be finite.
    pub fn fit<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self, ScalerError> {
        let features = rows.first().map_or(0, |r| r.as_ref().len());
        if rows.is_empty() || features == 0 {
            return Err(ScalerError::Empty {
                rows: rows.len(),
                features,
            });
        }
        check_rows(rows, features)?;
        Ok(Self::fit_unchecked(rows.iter().map(AsRef::as_ref), features).0)
    }

    /// Mean and scale of finite rows of `features` values: one pass for the sums and ranges,
    /// one for the squared deviations (two passes, as scikit-learn, for the precision); and
    /// whether every sum was finite (a NaN or an infinity among the values makes one not).
    fn fit_unchecked<'a>(
        rows: impl Iterator<Item = &'a [f64]> + Clone,
        features: usize,
    ) -> (Self, bool) {
        let mut n = 0usize;
        let mut mean = vec![0.0; features];
        let mut min = vec![f64::INFINITY; features];
        let mut max = vec![f64::NEG_INFINITY; features];
        for row in rows.clone() {
            n += 1;
            for (((m, lo), hi), &v) in mean.iter_mut().zip(&mut min).zip(&mut max).zip(row) {
                *m += v;
                *lo = lo.min(v);
                *hi = hi.max(v);
            }
        }
        let n = n as f64;
        let finite = mean.iter().all(|m| m.is_finite());
        for m in &mut mean {
            *m /= n;
        }
        let mut var = vec![0.0; features];
        for row in rows {
            for ((s, m), &v) in var.iter_mut().zip(&mean).zip(row) {
                let d = v - m;
                *s += d * d;
            }
        }
        let scale = var
            .iter()
            .enumerate()
            .map(|(j, &ss)| {
                let sd = (ss / n).sqrt();
                if min[j] == max[j] || !sd.is_normal() {
                    // Constant feature: centre exactly on its value and leave it unscaled.
                    mean[j] = min[j];
                    1.0
                } else {
                    sd
                }
            })
            .collect();
        (Self { mean, scale }, finite)
    }

    /// The number of features the scaler was fitted on.
    pub fn n_features(&self) -> usize {
        self.mean.len()
    }

    /// Each feature's training mean.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Each feature's divisor: its training population standard deviation, or 1 if it was constant.
    pub fn scale(&self) -> &[f64] {
        &self.scale
    }

    /// Standardises one row.
    pub fn transform(&self, row: &[f64]) -> Result<Vec<f64>, ScalerError> {
        self.transform_rows(&[row]).map(|mut rows| rows.remove(0))
    }

    /// Standardises rows: `(x - mean) / scale`, feature by feature.
    pub fn transform_rows<R: AsRef<[f64]>>(
        &self,
        rows: &[R],
    ) -> Result<Vec<Vec<f64>>, ScalerError> {
        check_rows(rows, self.n_features())?;
        Ok(rows
            .iter()
            .map(|row| {
                row.as_ref()
                    .iter()
                    .zip(self.mean.iter().zip(&self.scale))
                    .map(|(&x, (&m, &s))| (x - m) / s)
                    .collect()
            })
            .collect())
    }
}

impl StandardScaler {
    /// [`StandardScaler::fit`] on a matrix's rows, without copying them. The values are
    /// checked only when a sum is not finite (a NaN or infinity makes it so), to name the
    /// first one: no pass of its own.
    pub fn fit_matrix(x: &Matrix) -> Result<Self, ScalerError> {
        let (n, p) = (x.rows(), x.cols());
        if n == 0 || p == 0 {
            return Err(ScalerError::Empty {
                rows: n,
                features: p,
            });
        }
        let rows = (0..n).map(|i| x.row(i));
        let (scaler, finite) = Self::fit_unchecked(rows.clone(), p);
        if !finite {
            check_rows(&rows.collect::<Vec<_>>(), p)?;
        }
        Ok(scaler)
    }

    /// [`StandardScaler::transform_rows`] on a matrix: one pass over its buffer, one output.
    pub fn transform_matrix(&self, x: &Matrix) -> Result<Matrix, ScalerError> {
        let p = self.n_features();
        if x.cols() != p && x.rows() > 0 {
            return Err(ScalerError::Dimension {
                row: 0,
                expected: p,
                found: x.cols(),
            });
        }
        let mut out = Vec::with_capacity(x.rows() * p);
        for i in 0..x.rows() {
            let row = x.row(i);
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(ScalerError::NonFinite { row: i, feature: j });
            }
            out.extend(
                row.iter()
                    .zip(self.mean.iter().zip(&self.scale))
                    .map(|(&v, (&m, &s))| (v - m) / s),
            );
        }
        Ok(Matrix::new(x.rows(), p, out))
    }
}

fn check_rows<R: AsRef<[f64]>>(rows: &[R], expected: usize) -> Result<(), ScalerError> {
    for (i, row) in rows.iter().enumerate() {
        let row = row.as_ref();
        if row.len() != expected {
            return Err(ScalerError::Dimension {
                row: i,
                expected,
                found: row.len(),
            });
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(ScalerError::NonFinite { row: i, feature: j });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn population_mean_and_sd() {
        let rows = vec![
            vec![1.0, 10.0],
            vec![2.0, 10.0],
            vec![3.0, 10.0],
            vec![6.0, 10.0],
        ];
        let scaler = StandardScaler::fit(&rows).unwrap();
        assert_eq!(scaler.mean(), &[3.0, 10.0]);
        // Population variance of 1, 2, 3, 6 around 3: (4 + 1 + 0 + 9) / 4 = 3.5.
        assert!(close(scaler.scale()[0], 3.5f64.sqrt()));
        // A constant feature keeps a scale of 1 and maps to 0.
        assert_eq!(scaler.scale()[1], 1.0);

        let z = scaler.transform_rows(&rows).unwrap();
        let col0: Vec<f64> = z.iter().map(|r| r[0]).collect();
        let mean: f64 = col0.iter().sum::<f64>() / 4.0;
        let var: f64 = col0.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0;
        assert!(close(mean, 0.0));
        assert!(close(var, 1.0));
        assert!(z.iter().all(|r| r[1] == 0.0));
    }

    #[test]
    fn a_matrix_fits_and_transforms_as_its_rows_do() {
        let rows: Vec<Vec<f64>> = (0..9)
            .map(|i| vec![i as f64 * 0.3, (i * i % 5) as f64, 0.1, -(i as f64).sqrt()])
            .collect();
        let x = Matrix::from_rows(&rows);
        let scaler = StandardScaler::fit(&rows).unwrap();
        assert_eq!(StandardScaler::fit_matrix(&x).unwrap(), scaler);
        assert_eq!(
            scaler.transform_matrix(&x).unwrap().to_rows(),
            scaler.transform_rows(&rows).unwrap()
        );
    }

    #[test]
    fn constant_feature_with_an_inexact_mean_is_still_zero() {
        let rows = vec![vec![0.1]; 7];
        let scaler = StandardScaler::fit(&rows).unwrap();
        assert_eq!(scaler.transform(&[0.1]).unwrap(), vec![0.0]);
        assert_eq!(scaler.scale(), &[1.0]);
    }

    #[test]
    fn fitted_on_the_given_rows_only() {
        let data = vec![
            vec![0.0, 1.0],
            vec![2.0, 3.0],
            vec![4.0, 8.0],
            vec![100.0, -50.0],
        ];
        let train = [&data[0], &data[1], &data[2]];
        let before = StandardScaler::fit(&train).unwrap();

        // Changing a row outside the training set changes nothing.
        let mut changed = data.clone();
        changed[3] = vec![-1e6, 1e6];
        let train_again = [&changed[0], &changed[1], &changed[2]];
        let after = StandardScaler::fit(&train_again).unwrap();
        assert_eq!(before, after);

        // ...while changing a training row does (so the test above can fail).
        changed[0] = vec![1.0, 1.0];
        let moved = StandardScaler::fit(&[&changed[0], &changed[1], &changed[2]]).unwrap();
        assert_ne!(before, moved);
    }

    #[test]
    fn bad_input_is_an_error() {
        let none: Vec<Vec<f64>> = vec![];
        assert!(matches!(
            StandardScaler::fit(&none),
            Err(ScalerError::Empty { .. })
        ));
        assert!(matches!(
            StandardScaler::fit(&[vec![]]),
            Err(ScalerError::Empty { .. })
        ));
        assert_eq!(
            StandardScaler::fit(&[vec![1.0, 2.0], vec![1.0]]),
            Err(ScalerError::Dimension {
                row: 1,
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            StandardScaler::fit(&[vec![1.0, f64::NAN]]),
            Err(ScalerError::NonFinite { row: 0, feature: 1 })
        );
        // A matrix is checked too, also where the other values are equal (a constant
        // feature's mean is replaced by its value, which must not hide the NaN).
        assert_eq!(
            StandardScaler::fit_matrix(&Matrix::from_rows(&[
                vec![1.0, 2.0],
                vec![f64::NAN, 3.0],
                vec![1.0, 4.0]
            ])),
            Err(ScalerError::NonFinite { row: 1, feature: 0 })
        );
        let scaler = StandardScaler::fit(&[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        assert!(matches!(
            scaler.transform(&[1.0]),
            Err(ScalerError::Dimension { .. })
        ));
        assert!(matches!(
            scaler.transform(&[1.0, f64::INFINITY]),
            Err(ScalerError::NonFinite { .. })
        ));
    }
}
