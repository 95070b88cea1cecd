//! PCA's decomposition, through faer's dense linear algebra: the leading principal axes of
//! centred rows and the variance along each.
//!
//! The method follows scikit-learn's `PCA(svd_solver="auto")`: exact (the symmetric
//! eigendecomposition of the smaller of XᵀX and XXᵀ) when the data are small, tall and narrow,
//! or most components are asked for; otherwise a randomised SVD as scikit-learn's
//! `randomized_svd` computes it (k + 10 random directions, 7 power iterations — 4 when k is at
//! least a tenth of min(n, p) — each re-orthonormalised, then the exact SVD of the small
//! projection). Both give the same leading axes up to rounding when the spectrum has gaps. Signs
//! are scikit-learn's `svd_flip(u_based_decision=False)`: each axis's largest |component| is
//! positive. The random directions come from a fixed seed, so a fit is repeatable.

use faer::{Mat, MatRef, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Principal axes: `components` is `k × p` row-major (axis `c` at `c * p..(c + 1) * p`),
/// `variance[c]` the variance along axis `c` (divided by n − 1), in decreasing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Axes {
    /// The axes, row-major.
    pub components: Vec<f64>,
    /// The variance along each.
    pub variance: Vec<f64>,
}

/// Extra random directions beyond k (scikit-learn's `n_oversamples`).
const OVERSAMPLES: usize = 10;

/// The `k` leading principal axes of the centred `n × p` rows `xc` (k ≤ min(n, p)).
pub fn principal_axes(xc: MatRef<'_, f64>, k: usize) -> Axes {
    let (n, p) = (xc.nrows(), xc.ncols());
    let k = k.min(n.min(p));
    let exact = (p <= 1000 && n >= 10 * p) || n.max(p) <= 500 || k * 5 >= 4 * n.min(p);
    let (mut vectors, values) = if exact {
        exact_axes(xc, k)
    } else {
        randomised_axes(xc, k)
    };
    super::avx::clear_upper();
    let denom = (n.max(2) - 1) as f64;
    for axis in vectors.chunks_mut(p) {
        let big = axis
            .iter()
            .fold(0.0f64, |acc, &x| if x.abs() > acc.abs() { x } else { acc });
        if big < 0.0 {
            axis.iter_mut().for_each(|x| *x = -*x);
        }
    }
    Axes {
        components: vectors,
        variance: values.iter().map(|s2| s2 / denom).collect(),
    }
}

/// Exact: eigenvectors of XᵀX (p ≤ n) or, through XᵀU, of XXᵀ. Returns the axes (row-major)
/// and the squared singular values.
fn exact_axes(xc: MatRef<'_, f64>, k: usize) -> (Vec<f64>, Vec<f64>) {
    let (n, p) = (xc.nrows(), xc.ncols());
    let wide = p > n;
    let gram: Mat<f64> = if wide {
        xc * xc.transpose()
    } else {
        xc.transpose() * xc
    };
    let d = gram.nrows();
    let mut components = Vec::with_capacity(k * p);
    let mut values = Vec::with_capacity(k);
    let Ok(evd) = gram.self_adjoint_eigen(Side::Lower) else {
        return (vec![0.0; k * p], vec![0.0; k]);
    };
    let (s, u) = (evd.S().column_vector(), evd.U());
    // Eigenvalues ascend: the largest are last.
    for c in (d - k..d).rev() {
        let value = s[c].max(0.0);
        values.push(value);
        if wide {
            let v = xc.transpose() * u.col(c);
            let norm = v.norm_l2().max(f64::MIN_POSITIVE);
            components.extend((0..p).map(|j| v[j] / norm));
        } else {
            components.extend((0..p).map(|j| u[(j, c)]));
        }
    }
    (components, values)
}

/// Randomised SVD (Halko, Martinsson and Tropp, as scikit-learn's `randomized_svd`). Returns the
/// axes (row-major) and the squared singular values.
fn randomised_axes(xc: MatRef<'_, f64>, k: usize) -> (Vec<f64>, Vec<f64>) {
    let (n, p) = (xc.nrows(), xc.ncols());
    let l = (k + OVERSAMPLES).min(n.min(p));
    let power_iterations = if k * 10 < n.min(p) { 7 } else { 4 };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let omega = Mat::<f64>::from_fn(p, l, |_, _| rng.random_range(-1.0..1.0));
    let mut q = orthonormal(xc * &omega);
    for _ in 0..power_iterations {
        let z = orthonormal(xc.transpose() * &q);
        q = orthonormal(xc * &z);
    }
    // B = QᵀX (l × p) = U S Vᵀ: the axes are V's columns.
    let b: Mat<f64> = q.transpose() * xc;
    let Ok(svd) = b.thin_svd() else {
        return (vec![0.0; k * p], vec![0.0; k]);
    };
    let (s, v) = (svd.S().column_vector(), svd.V());
    let mut components = Vec::with_capacity(k * p);
    let mut values = Vec::with_capacity(k);
    for c in 0..k {
        values.push(s[c] * s[c]);
        components.extend((0..p).map(|j| v[(j, c)]));
    }
    (components, values)
}

/// An orthonormal basis of the columns of `a` (the thin Q of its QR factorisation).
fn orthonormal(a: Mat<f64>) -> Mat<f64> {
    a.qr().compute_thin_Q()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows with variances 25, 4 and 1 along three orthogonal directions.
    fn rows(n: usize, p: usize) -> Mat<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let dirs: Vec<Vec<f64>> = (0..3)
            .map(|d| (0..p).map(|j| if j % 3 == d { 1.0 } else { 0.0 }).collect())
            .collect();
        let mut x = Mat::<f64>::from_fn(n, p, |i, j| {
            let scale = [5.0, 2.0, 1.0];
            let t: f64 = (0..3)
                .map(|d| scale[d] * (((i * 7 + d * 13) % 11) as f64 - 5.0) * dirs[d][j])
                .sum();
            t + 1e-3 * rng.random_range(-1.0..1.0)
        });
        for j in 0..p {
            let mean = (0..n).map(|i| x[(i, j)]).sum::<f64>() / n as f64;
            for i in 0..n {
                x[(i, j)] -= mean;
            }
        }
        x
    }

    #[test]
    fn exact_and_randomised_axes_agree_and_are_orthonormal() {
        // Tall (exact through XᵀX), wide (exact through XXᵀ) and large (randomised).
        for (n, p) in [(60, 6), (40, 90), (600, 900)] {
            let x = rows(n, p);
            let exact = {
                let (c, v) = exact_axes(x.as_ref(), 2);
                (c, v)
            };
            let got = principal_axes(x.as_ref(), 2);
            for c in 0..2 {
                let a = &got.components[c * p..(c + 1) * p];
                let b = &exact.0[c * p..(c + 1) * p];
                let cos: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                assert!((cos.abs() - 1.0).abs() < 1e-9, "{n}×{p} axis {c}: {cos}");
                let norm: f64 = a.iter().map(|x| x * x).sum();
                assert!((norm - 1.0).abs() < 1e-9);
            }
            assert!(got.variance[0] > got.variance[1]);
        }
    }
}
