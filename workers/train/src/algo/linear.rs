//! Linear models: L2 logistic regression (binary and multinomial, L-BFGS), ordinary least squares,
//! ridge and lasso — with scikit-learn's objectives, so equal parameters give equal models.
//!
//! - Logistic: minimises `(1/n) Σ loss + ‖W‖² / (2 C n)` (scikit-learn's scaling of
//!   `C Σ loss + ½‖W‖²`), intercepts unpenalised; binary uses one weight vector (log-loss),
//!   more classes the full multinomial (softmax) with one vector per class. L-BFGS with
//!   scikit-learn's `tol` (1e-4) on the largest gradient component and `max_iter` (100).
//! - Ridge / OLS: `‖y − Xw − b‖² + α‖w‖²` on centred data, solved by Cholesky on the smaller of
//!   the primal (p × p) and dual (n × n) normal equations; α = 0 is OLS (the dual gives the
//!   minimum-norm solution when p > n, as `lstsq` does).
//! - Lasso and elastic net: `(1/2n)‖y − Xw − b‖² + αρ‖w‖₁ + ½α(1 − ρ)‖w‖²` (ρ = 1 for the
//!   lasso) by cyclic coordinate descent with scikit-learn's duality-gap stopping rule.

use serde::{Deserialize, Serialize};

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::solvers::Solve;
use faer::{Accum, Col, ColRef, Mat, MatRef, Par, Side};

use super::lbfgs::Lbfgs;
use crate::matrix::{dot, dot4, Matrix};

/// A fitted logistic regression: one row of `coef` per class (one row for two classes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    /// Number of classes.
    pub n_classes: usize,
    /// `K' × p` coefficients, K' = 1 for binary problems, else the number of classes.
    pub coef: Matrix,
    /// One intercept per row of `coef`.
    pub intercept: Vec<f64>,
    /// L-BFGS iterations used.
    pub iterations: usize,
}

impl Logistic {
    /// Fits on rows `x` and class indices `y` (`0..n_classes`).
    pub fn fit(
        x: &Matrix,
        y: &[usize],
        n_classes: usize,
        c: f64,
        tol: f64,
        max_iter: usize,
    ) -> Self {
        let (n, p) = (x.rows(), x.cols());
        let k = if n_classes == 2 { 1 } else { n_classes };
        let lambda = 1.0 / (c * n as f64);
        let solver = Lbfgs {
            gtol: tol,
            max_iter,
            ..Lbfgs::default()
        };
        let dim = k * (p + 1);
        let inv_n = 1.0 / n as f64;
        // Residuals P − Y of a block of rows: each weight row is read once per block for the
        // decision values and once for the gradient, not once per row.
        let mut resid = vec![0.0; BLOCK * k];
        let fg = |w: &[f64], g: &mut [f64]| -> f64 {
            g.fill(0.0);
            let (wc, b) = w.split_at(k * p);
            let (gw, gb) = g.split_at_mut(k * p);
            let mut loss = 0.0;
            for i0 in (0..n).step_by(BLOCK) {
                let m = BLOCK.min(n - i0);
                let rows: [&[f64]; BLOCK] = std::array::from_fn(|r| x.row(i0 + r.min(m - 1)));
                for (c, wrow) in wc.chunks_exact(p).enumerate() {
                    if m == BLOCK {
                        let d = dot4(rows, wrow);
                        for (r, v) in d.iter().enumerate() {
                            resid[r * k + c] = v + b[c];
                        }
                    } else {
                        for (r, row) in rows.iter().take(m).enumerate() {
                            resid[r * k + c] = dot(wrow, row) + b[c];
                        }
                    }
                }
                for (z, &yi) in resid.chunks_exact_mut(k).zip(&y[i0..i0 + m]) {
                    loss += residuals(z, yi);
                }
                for (c, gc) in gw.chunks_exact_mut(p).enumerate() {
                    if m == BLOCK {
                        let d = [resid[c], resid[k + c], resid[2 * k + c], resid[3 * k + c]];
                        let [x0, x1, x2, x3] = rows;
                        for ((((gj, a0), a1), a2), a3) in
                            gc.iter_mut().zip(x0).zip(x1).zip(x2).zip(x3)
                        {
                            *gj += d[0] * a0 + d[1] * a1 + d[2] * a2 + d[3] * a3;
                        }
                        gb[c] += (d[0] + d[1]) + (d[2] + d[3]);
                    } else {
                        for (r, row) in rows.iter().take(m).enumerate() {
                            let d = resid[r * k + c];
                            for (gj, xj) in gc.iter_mut().zip(*row) {
                                *gj += d * xj;
                            }
                            gb[c] += d;
                        }
                    }
                }
            }
            gb.iter_mut().for_each(|v| *v *= inv_n);
            let mut penalty = 0.0;
            for (gj, wj) in gw.iter_mut().zip(wc) {
                *gj = *gj * inv_n + lambda * wj;
                penalty += wj * wj;
            }
            loss * inv_n + 0.5 * lambda * penalty
        };
        let min = solver.minimise(fg, vec![0.0; dim]);
        let coef = Matrix::new(k, p, min.x[..k * p].to_vec());
        let intercept = min.x[k * p..].to_vec();
        Self {
            n_classes,
            coef,
            intercept,
            iterations: min.iterations,
        }
    }

    /// Decision values: `n × K'` (one column for binary problems: the positive class's log-odds).
    pub fn decision(&self, x: &Matrix) -> Matrix {
        let k = self.coef.rows();
        let mut out = Matrix::zeros(x.rows(), k);
        for i in 0..x.rows() {
            for c in 0..k {
                out.row_mut(i)[c] = dot(self.coef.row(c), x.row(i)) + self.intercept[c];
            }
        }
        out
    }

    /// Predicted class indices.
    pub fn predict(&self, x: &Matrix) -> Vec<usize> {
        let d = self.decision(x);
        (0..x.rows())
            .map(|i| {
                let row = d.row(i);
                if row.len() == 1 {
                    usize::from(row[0] > 0.0)
                } else {
                    argmax(row)
                }
            })
            .collect()
    }
}

/// The index of the largest value (the first one on ties).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Rows per block of the logistic loss (the width of [`dot4`]).
const BLOCK: usize = 4;

/// One row's logistic loss from its decision values `z` (one for binary problems: the log-odds
/// of class 1), overwriting them with the residuals `P − Y` for true class `yi`.
fn residuals(z: &mut [f64], yi: usize) -> f64 {
    if let [zz] = z {
        let t = if yi == 1 { 1.0 } else { 0.0 };
        let v = *zz;
        *zz = 1.0 / (1.0 + (-v).exp()) - t;
        // log(1 + e^z) − t z, computed stably.
        return if v > 0.0 {
            v + (-v).exp().ln_1p()
        } else {
            v.exp().ln_1p()
        } - t * v;
    }
    let zy = z[yi];
    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
    z[yi] -= 1.0;
    max + sum.ln() - zy
}

/// A fitted linear regression (OLS, ridge, lasso or elastic net).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearRegression {
    /// Coefficients, one per feature.
    pub coef: Vec<f64>,
    /// Intercept.
    pub intercept: f64,
}

impl LinearRegression {
    /// Ridge regression with penalty `alpha` (0: ordinary least squares).
    pub fn fit_ridge(x: &Matrix, y: &[f64], alpha: f64) -> Self {
        let (n, p) = (x.rows(), x.cols());
        let (xc, x_mean, y_mean) = centre(x, y);
        let yc: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
        let xr = MatRef::from_row_major_slice(xc.data(), n, p);
        let yr = ColRef::from_slice(&yc);
        let coef = if p <= n {
            // (XᵀX + αI) w = Xᵀy
            let a = lower_gram(xr.transpose());
            let b: Col<f64> = xr.transpose() * yr;
            solve_spd(a, b, alpha)
        } else {
            // Dual: w = Xᵀ (XXᵀ + αI)⁻¹ y
            let a = lower_gram(xr);
            let dual = solve_spd(a, yr.to_owned(), alpha);
            let w: Col<f64> = xr.transpose() * ColRef::from_slice(&dual);
            w.iter().copied().collect()
        };
        super::avx::clear_upper();
        let intercept = y_mean - dot(&coef, &x_mean);
        Self { coef, intercept }
    }

    /// Lasso: [`LinearRegression::fit_elastic_net`] with `l1_ratio` 1.
    pub fn fit_lasso(x: &Matrix, y: &[f64], alpha: f64, tol: f64, max_iter: usize) -> Self {
        Self::fit_elastic_net(x, y, alpha, 1.0, tol, max_iter)
    }

    /// Elastic net by cyclic coordinate descent, minimising scikit-learn's
    /// `(1/2n)‖y − Xw − b‖² + α·ρ‖w‖₁ + ½α(1 − ρ)‖w‖²` (ρ = `l1_ratio`). As scikit-learn's
    /// `enet_coordinate_descent`: once the largest update of a sweep is at most `tol · max |w|`,
    /// the duality gap decides, and it stops when the gap is below `tol · ‖y − ȳ‖²`, or after
    /// `max_iter` sweeps.
    pub fn fit_elastic_net(
        x: &Matrix,
        y: &[f64],
        alpha: f64,
        l1_ratio: f64,
        tol: f64,
        max_iter: usize,
    ) -> Self {
        let (n, p) = (x.rows(), x.cols());
        let (xc, x_mean, y_mean) = centre(x, y);
        // Column-major, so each coordinate reads one contiguous column.
        let cols: Vec<Vec<f64>> = (0..p)
            .map(|j| (0..n).map(|i| xc.get(i, j)).collect())
            .collect();
        let yc: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
        let mut r = yc.clone();
        let col_sq: Vec<f64> = cols.iter().map(|c| dot(c, c)).collect();
        let mut w = vec![0.0; p];
        let l1 = alpha * l1_ratio * n as f64;
        let l2 = alpha * (1.0 - l1_ratio) * n as f64;
        let gap_tol = tol * dot(&yc, &yc);
        let converged = duality_gap(&cols, &r, &yc, &w, l1, l2) <= gap_tol;
        for sweep in 0..if converged { 0 } else { max_iter } {
            let mut max_delta: f64 = 0.0;
            let mut max_w: f64 = 0.0;
            for j in 0..p {
                if col_sq[j] == 0.0 {
                    continue;
                }
                let old = w[j];
                let rho = dot(&cols[j], &r) + col_sq[j] * old;
                let new = soft_threshold(rho, l1) / (col_sq[j] + l2);
                if new != old {
                    let delta = new - old;
                    for (ri, xi) in r.iter_mut().zip(&cols[j]) {
                        *ri -= xi * delta;
                    }
                    w[j] = new;
                    max_delta = max_delta.max(delta.abs());
                }
                max_w = max_w.max(new.abs());
            }
            if (max_w == 0.0 || max_delta <= tol * max_w || sweep + 1 == max_iter)
                && duality_gap(&cols, &r, &yc, &w, l1, l2) <= gap_tol
            {
                break;
            }
        }
        let intercept = y_mean - dot(&w, &x_mean);
        Self { coef: w, intercept }
    }

    /// Predictions.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        (0..x.rows())
            .map(|i| dot(&self.coef, x.row(i)) + self.intercept)
            .collect()
    }
}

/// The elastic net's duality gap at `w` with residuals `r` (scikit-learn's formulation A, in
/// its unscaled form: `l1` and `l2` are the penalties times n).
fn duality_gap(cols: &[Vec<f64>], r: &[f64], y: &[f64], w: &[f64], l1: f64, l2: f64) -> f64 {
    let dual_norm = cols
        .iter()
        .zip(w)
        .map(|(c, wj)| (dot(c, r) - l2 * wj).abs())
        .fold(0.0, f64::max);
    let quadratic = dot(r, r) + l2 * dot(w, w);
    let l1_norm: f64 = w.iter().map(|v| v.abs()).sum();
    let primal = 0.5 * quadratic + l1 * l1_norm;
    // Scaled residuals: a dual-feasible point.
    let scale = if dual_norm > l1 { l1 / dual_norm } else { 1.0 };
    let dual = -0.5 * scale * scale * quadratic + scale * dot(r, y);
    primal - dual
}

fn soft_threshold(v: f64, t: f64) -> f64 {
    if v > t {
        v - t
    } else if v < -t {
        v + t
    } else {
        0.0
    }
}

/// Centred copy of `x`, the column means and the mean of `y`.
fn centre(x: &Matrix, y: &[f64]) -> (Matrix, Vec<f64>, f64) {
    let (n, p) = (x.rows(), x.cols());
    let mut mean = vec![0.0; p];
    for i in 0..n {
        for (m, v) in mean.iter_mut().zip(x.row(i)) {
            *m += v;
        }
    }
    for m in &mut mean {
        *m /= n as f64;
    }
    let mut xc = x.clone();
    for i in 0..n {
        for (v, m) in xc.row_mut(i).iter_mut().zip(&mean) {
            *v -= m;
        }
    }
    let y_mean = y.iter().sum::<f64>() / n as f64;
    (xc, mean, y_mean)
}

/// The lower triangle (diagonal included) of `M Mᵀ`: half the work of the full product, and
/// all a Cholesky factorisation of the lower side reads.
fn lower_gram(m: MatRef<'_, f64>) -> Mat<f64> {
    let mut a = Mat::<f64>::zeros(m.nrows(), m.nrows());
    triangular::matmul(
        a.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        m,
        BlockStructure::Rectangular,
        m.transpose(),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    a
}

/// Solves `(A + αI) x = b` for a symmetric positive semi-definite `A`, of which only the lower
/// triangle is read, by faer's LLT (Cholesky); when the factorisation fails (α = 0 and `A`
/// singular), retries with a tiny growing jitter.
pub fn solve_spd(a: Mat<f64>, b: Col<f64>, alpha: f64) -> Vec<f64> {
    let d = a.nrows();
    let trace: f64 = (0..d).map(|i| a[(i, i)]).sum::<f64>() / d.max(1) as f64;
    let mut jitter = 0.0;
    loop {
        let mut m = a.clone();
        for i in 0..d {
            m[(i, i)] += alpha + jitter;
        }
        if let Ok(llt) = m.llt(Side::Lower) {
            let x = llt.solve(b.as_mat());
            if x.col(0).iter().all(|v| v.is_finite()) {
                return x.col(0).iter().copied().collect();
            }
        }
        jitter = if jitter == 0.0 {
            1e-12 * trace.max(1e-300)
        } else {
            jitter * 10.0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ols_recovers_a_line_and_ridge_shrinks() {
        let x = Matrix::from_rows(
            &(0..20)
                .map(|i| vec![i as f64, (i % 3) as f64])
                .collect::<Vec<_>>(),
        );
        let y: Vec<f64> = (0..20)
            .map(|i| 2.0 * i as f64 - 3.0 * (i % 3) as f64 + 1.0)
            .collect();
        let ols = LinearRegression::fit_ridge(&x, &y, 0.0);
        assert!((ols.coef[0] - 2.0).abs() < 1e-8 && (ols.coef[1] + 3.0).abs() < 1e-8);
        assert!((ols.intercept - 1.0).abs() < 1e-8);
        let ridge = LinearRegression::fit_ridge(&x, &y, 100.0);
        assert!(ridge.coef[1].abs() < 3.0);
        let lasso = LinearRegression::fit_lasso(&x, &y, 0.01, 1e-8, 10_000);
        assert!((lasso.coef[0] - 2.0).abs() < 0.05, "{:?}", lasso.coef);
        // More features than rows: the dual path gives an exact fit.
        let wide = Matrix::from_rows(&[vec![1.0, 0.0, 2.0], vec![0.0, 1.0, 1.0]]);
        let fit = LinearRegression::fit_ridge(&wide, &[1.0, 2.0], 0.0);
        let p = fit.predict(&wide);
        assert!(
            (p[0] - 1.0).abs() < 1e-6 && (p[1] - 2.0).abs() < 1e-6,
            "{p:?}"
        );
    }
}
