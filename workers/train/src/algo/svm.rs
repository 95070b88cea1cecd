//! Support vector machines: libsvm's SMO solver (second-order working-set selection, Fan, Chen &
//! Lin 2005) with a kernel-row cache, for C-SVC (one-vs-one for more than two classes, votes with
//! ties to the lower class, as libsvm) and ε-SVR.
//!
//! The solver (`svm/smo.rs`, over `Q` in `svm/qmatrix.rs`) follows libsvm (what scikit-learn
//! wraps) step by step — same dual, same working-set rule, same shrinking, same stopping
//! tolerance (`tol`, default 1e-3), same bias — so its models match scikit-learn's, and a fitted
//! model is plain data.

mod qmatrix;
mod smo;

use serde::{Deserialize, Serialize};

use crate::matrix::{dot, gram, Matrix};

use qmatrix::{SvcQ, SvrQ};
use smo::{solve, Problem, Settings};

/// A kernel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Kernel {
    /// `x·z`.
    Linear,
    /// `exp(−γ‖x − z‖²)`.
    Rbf {
        /// γ.
        gamma: f64,
    },
}

impl Kernel {
    fn eval(&self, a: &[f64], b: &[f64], na: f64, nb: f64) -> f64 {
        self.of_dot(dot(a, b), na, nb)
    }

    /// The kernel from the dot product and the squared norms.
    fn of_dot(&self, ab: f64, na: f64, nb: f64) -> f64 {
        match *self {
            Kernel::Linear => ab,
            Kernel::Rbf { gamma } => (-gamma * (na + nb - 2.0 * ab).max(0.0)).exp(),
        }
    }
}

/// One binary sub-model of an SVC: support vectors (indices into [`Svc::support`]), their
/// coefficients yα, and ρ. Decision > 0 means the first class of the pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairModel {
    /// The pair's classes (a < b).
    pub classes: (usize, usize),
    /// Indices into the support vectors.
    pub sv: Vec<u32>,
    /// yᵢαᵢ per support vector.
    pub coef: Vec<f64>,
    /// The bias.
    pub rho: f64,
}

/// A fitted C-SVC (one-vs-one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Svc {
    /// The kernel (with γ resolved).
    pub kernel: Kernel,
    /// Number of classes.
    pub n_classes: usize,
    /// Support vectors of all pairs, once each.
    pub support: Matrix,
    /// One model per class pair, in (0,1), (0,2), …, (1,2), … order.
    pub pairs: Vec<PairModel>,
}

impl Svc {
    /// Fits on rows `x` and class indices `y`.
    pub fn fit(
        x: &Matrix,
        y: &[usize],
        n_classes: usize,
        c: f64,
        kernel: Kernel,
        tol: f64,
    ) -> Self {
        let settings = Settings {
            tol,
            shrinking: true,
        };
        Self::fit_with(x, y, n_classes, c, kernel, settings)
    }

    fn fit_with(
        x: &Matrix,
        y: &[usize],
        n_classes: usize,
        c: f64,
        kernel: Kernel,
        settings: Settings,
    ) -> Self {
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
        for (i, &k) in y.iter().enumerate() {
            by_class[k].push(i);
        }
        let mut support_rows: Vec<usize> = Vec::new();
        let mut support_index: std::collections::HashMap<usize, u32> = Default::default();
        let mut pairs = Vec::new();
        for a in 0..n_classes {
            for b in a + 1..n_classes {
                let rows: Vec<usize> = by_class[a].iter().chain(&by_class[b]).copied().collect();
                let sub = x.select_rows(&rows);
                let ys: Vec<f64> = rows
                    .iter()
                    .map(|&r| if y[r] == a { 1.0 } else { -1.0 })
                    .collect();
                let l = rows.len();
                let sol = solve(
                    Problem {
                        q: SvcQ::new(&sub, &ys, kernel),
                        p: vec![-1.0; l],
                        c: vec![c; l],
                        y: ys.clone(),
                    },
                    settings,
                );
                let mut sv = Vec::new();
                let mut coef = Vec::new();
                for t in 0..l {
                    if sol.alpha[t] > 0.0 {
                        let next = support_index.len() as u32;
                        let id = *support_index.entry(rows[t]).or_insert_with(|| {
                            support_rows.push(rows[t]);
                            next
                        });
                        sv.push(id);
                        coef.push(ys[t] * sol.alpha[t]);
                    }
                }
                pairs.push(PairModel {
                    classes: (a, b),
                    sv,
                    coef,
                    rho: sol.rho,
                });
            }
        }
        Self {
            kernel,
            n_classes,
            support: x.select_rows(&support_rows),
            pairs,
        }
    }

    /// Decision values per pair: `n × pairs`.
    pub fn decision(&self, x: &Matrix) -> Matrix {
        let m = self.support.rows();
        let sv_norms: Vec<f64> = (0..m)
            .map(|s| dot(self.support.row(s), self.support.row(s)))
            .collect();
        let products = gram(x, &self.support);
        let mut out = Matrix::zeros(x.rows(), self.pairs.len());
        let mut k = vec![0.0; m];
        for i in 0..x.rows() {
            let xi = x.row(i);
            let ni = dot(xi, xi);
            let pi = products.row(i);
            for s in 0..m {
                k[s] = self.kernel.of_dot(pi[s], ni, sv_norms[s]);
            }
            for (p, pair) in self.pairs.iter().enumerate() {
                let f: f64 = pair
                    .sv
                    .iter()
                    .zip(&pair.coef)
                    .map(|(&s, c)| c * k[s as usize])
                    .sum();
                out.row_mut(i)[p] = f - pair.rho;
            }
        }
        out
    }

    /// Predicted classes (one-vs-one votes, ties to the lower class) and, for two classes, the
    /// decision score of the positive class (class 1).
    pub fn predict(&self, x: &Matrix) -> (Vec<usize>, Option<Vec<f64>>) {
        let d = self.decision(x);
        let mut classes = Vec::with_capacity(x.rows());
        for i in 0..x.rows() {
            let mut votes = vec![0u32; self.n_classes];
            for (p, pair) in self.pairs.iter().enumerate() {
                if d.get(i, p) > 0.0 {
                    votes[pair.classes.0] += 1;
                } else {
                    votes[pair.classes.1] += 1;
                }
            }
            let mut best = 0;
            for (k, &v) in votes.iter().enumerate() {
                if v > votes[best] {
                    best = k;
                }
            }
            classes.push(best);
        }
        let scores = (self.n_classes == 2).then(|| (0..x.rows()).map(|i| -d.get(i, 0)).collect());
        (classes, scores)
    }
}

/// A fitted ε-SVR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Svr {
    /// The kernel (with γ resolved).
    pub kernel: Kernel,
    /// Support vectors.
    pub support: Matrix,
    /// α − α* per support vector.
    pub coef: Vec<f64>,
    /// The bias.
    pub rho: f64,
}

impl Svr {
    /// Fits on rows `x` and targets `z`.
    pub fn fit(x: &Matrix, z: &[f64], c: f64, epsilon: f64, kernel: Kernel, tol: f64) -> Self {
        let settings = Settings {
            tol,
            shrinking: true,
        };
        Self::fit_with(x, z, c, epsilon, kernel, settings)
    }

    fn fit_with(
        x: &Matrix,
        z: &[f64],
        c: f64,
        epsilon: f64,
        kernel: Kernel,
        settings: Settings,
    ) -> Self {
        let n = x.rows();
        let mut y = vec![1.0; 2 * n];
        let mut p = vec![0.0; 2 * n];
        for i in 0..n {
            p[i] = epsilon - z[i];
            p[i + n] = epsilon + z[i];
            y[i + n] = -1.0;
        }
        let sol = solve(
            Problem {
                q: SvrQ::new(x, kernel),
                y,
                p,
                c: vec![c; 2 * n],
            },
            settings,
        );
        let mut rows = Vec::new();
        let mut coef = Vec::new();
        for i in 0..n {
            let w = sol.alpha[i] - sol.alpha[i + n];
            if w != 0.0 {
                rows.push(i);
                coef.push(w);
            }
        }
        Self {
            kernel,
            support: x.select_rows(&rows),
            coef,
            rho: sol.rho,
        }
    }

    /// Predictions.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        let m = self.support.rows();
        let sv_norms: Vec<f64> = (0..m)
            .map(|s| dot(self.support.row(s), self.support.row(s)))
            .collect();
        (0..x.rows())
            .map(|i| {
                let xi = x.row(i);
                let ni = dot(xi, xi);
                (0..m)
                    .map(|s| {
                        self.coef[s] * self.kernel.eval(xi, self.support.row(s), ni, sv_norms[s])
                    })
                    .sum::<f64>()
                    - self.rho
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::qmatrix::QMatrix;
    use super::*;

    /// Two overlapping clouds in 5 dimensions (class 1 shifted by 1 along every axis) and a
    /// noisy continuous target: hard enough that SMO needs thousands of iterations.
    fn overlapping(n: usize) -> (Matrix, Vec<usize>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut rows = Vec::with_capacity(n);
        let (mut classes, mut targets) = (Vec::new(), Vec::new());
        for i in 0..n {
            let class = i % 2;
            let row: Vec<f64> = (0..5)
                .map(|_| class as f64 + rng.random_range(-1.5..1.5))
                .collect();
            targets.push(row.iter().sum::<f64>().sin() + rng.random_range(-0.3..0.3));
            rows.push(row);
            classes.push(class);
        }
        (Matrix::from_rows(&rows), classes, targets)
    }

    /// `m(α) − M(α)` over every variable, with the gradient `Qα + p` computed afresh.
    fn kkt_gap(mut q: impl QMatrix, y: &[f64], p: &[f64], c: f64, alpha: &[f64]) -> f64 {
        let l = y.len();
        let mut g = p.to_vec();
        for s in 0..l {
            if alpha[s] != 0.0 {
                for (gt, q) in g.iter_mut().zip(q.row(s, l)) {
                    *gt += alpha[s] * q;
                }
            }
        }
        let (mut up, mut low) = (f64::NEG_INFINITY, f64::INFINITY);
        for t in 0..l {
            let v = -y[t] * g[t];
            let (can_rise, can_fall) = (alpha[t] < c, alpha[t] > 0.0);
            if (y[t] > 0.0 && can_rise) || (y[t] < 0.0 && can_fall) {
                up = up.max(v);
            }
            if (y[t] > 0.0 && can_fall) || (y[t] < 0.0 && can_rise) {
                low = low.min(v);
            }
        }
        up - low
    }

    /// Shrinking and without: both reach the stopping rule over all variables, the same dual
    /// objective, and the same model, on problems where shrinking happens.
    #[test]
    fn shrinking_changes_nothing_that_matters() {
        let tol = 1e-3;
        let (x, classes, targets) = overlapping(800);
        let (test, _, _) = overlapping(300);
        let with = |shrinking| Settings { tol, shrinking };
        for kernel in [Kernel::Linear, Kernel::Rbf { gamma: 0.2 }] {
            let c = 10.0;
            // C-SVC.
            let y: Vec<f64> = classes
                .iter()
                .map(|&k| if k == 0 { 1.0 } else { -1.0 })
                .collect();
            let svc = |shrinking| {
                let problem = Problem {
                    q: SvcQ::new(&x, &y, kernel),
                    y: y.clone(),
                    p: vec![-1.0; y.len()],
                    c: vec![c; y.len()],
                };
                solve(problem, with(shrinking))
            };
            let (shrunk, full) = (svc(true), svc(false));
            // ε-SVR.
            let (n, epsilon) = (targets.len(), 0.1);
            let y_svr: Vec<f64> = (0..2 * n).map(|t| if t < n { 1.0 } else { -1.0 }).collect();
            let p_svr: Vec<f64> = (0..2 * n)
                .map(|t| {
                    if t < n {
                        epsilon - targets[t]
                    } else {
                        epsilon + targets[t - n]
                    }
                })
                .collect();
            let svr = |shrinking| {
                let problem = Problem {
                    q: SvrQ::new(&x, kernel),
                    y: y_svr.clone(),
                    p: p_svr.clone(),
                    c: vec![c; 2 * n],
                };
                solve(problem, with(shrinking))
            };
            let (shrunk_svr, full_svr) = (svr(true), svr(false));
            for (what, shrunk, full, gap) in [
                (
                    "svc",
                    &shrunk,
                    &full,
                    kkt_gap(
                        SvcQ::new(&x, &y, kernel),
                        &y,
                        &vec![-1.0; y.len()],
                        c,
                        &shrunk.alpha,
                    ),
                ),
                (
                    "svr",
                    &shrunk_svr,
                    &full_svr,
                    kkt_gap(SvrQ::new(&x, kernel), &y_svr, &p_svr, c, &shrunk_svr.alpha),
                ),
            ] {
                let case = format!("{what} {kernel:?}: {:?}", shrunk.stats);
                assert!(shrunk.stats.iterations > 1000, "{case}");
                assert!(shrunk.stats.shrunk > 0, "{case}");
                assert!(shrunk.stats.reconstructions > 0, "{case}");
                assert_eq!(full.stats.shrunk, 0, "{case}");
                assert!(gap < tol, "{case}: gap {gap}");
                // Both stop within `tol` of optimality, not at the optimum.
                let diff = (shrunk.objective - full.objective).abs();
                assert!(
                    diff <= 1e-5 * full.objective.abs(),
                    "{case}: {} vs {}",
                    shrunk.objective,
                    full.objective
                );
            }
            let fit = |shrinking| Svc::fit_with(&x, &classes, 2, c, kernel, with(shrinking));
            assert_eq!(
                fit(true).predict(&test).0,
                fit(false).predict(&test).0,
                "{kernel:?}"
            );
            let fit = |shrinking| Svr::fit_with(&x, &targets, c, 0.1, kernel, with(shrinking));
            let (a, b) = (fit(true).predict(&test), fit(false).predict(&test));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-2, "{kernel:?}: predictions differ by {worst}");
        }
    }

    #[test]
    fn separates_two_and_three_classes() {
        let rows: Vec<Vec<f64>> = (0..60)
            .map(|i| {
                let c = (i % 3) as f64;
                vec![
                    c * 3.0 + ((i * 7) % 5) as f64 / 5.0,
                    -c + ((i * 3) % 4) as f64 / 4.0,
                ]
            })
            .collect();
        let y: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let x = Matrix::from_rows(&rows);
        for kernel in [Kernel::Linear, Kernel::Rbf { gamma: 0.5 }] {
            let m = Svc::fit(&x, &y, 3, 1.0, kernel, 1e-3);
            let (pred, scores) = m.predict(&x);
            assert_eq!(pred, y, "{kernel:?}");
            assert!(scores.is_none());
        }
        let y2: Vec<usize> = y.iter().map(|&c| usize::from(c > 0)).collect();
        let m = Svc::fit(&x, &y2, 2, 1.0, Kernel::Rbf { gamma: 0.5 }, 1e-3);
        let (pred, scores) = m.predict(&x);
        assert_eq!(pred, y2);
        let scores = scores.unwrap();
        assert!(pred
            .iter()
            .zip(&scores)
            .all(|(&c, &s)| (c == 1) == (s > 0.0)));
    }

    #[test]
    fn svr_fits_a_line_within_epsilon() {
        let rows: Vec<Vec<f64>> = (0..30).map(|i| vec![i as f64 / 10.0]).collect();
        let z: Vec<f64> = (0..30).map(|i| 2.0 * i as f64 / 10.0 + 1.0).collect();
        let m = Svr::fit(
            &Matrix::from_rows(&rows),
            &z,
            100.0,
            0.1,
            Kernel::Linear,
            1e-3,
        );
        let p = m.predict(&Matrix::from_rows(&rows));
        assert!(p.iter().zip(&z).all(|(a, b)| (a - b).abs() < 0.15), "{p:?}");
    }
}
