//! Support vector machines: libsvm's SMO solver (second-order working-set selection, Fan, Chen &
//! Lin 2005) with a kernel-row cache, for C-SVC (one-vs-one for more than two classes, votes with
//! ties to the lower class, as libsvm) and ε-SVR.
//!
//! This solver follows libsvm (what scikit-learn wraps) step by step — same dual, same
//! working-set rule, same stopping tolerance (`tol`, default 1e-3), same bias — so its models
//! match scikit-learn's, and a fitted model is plain data.

use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::matrix::{dot, gram, Matrix};

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

/// Kernel rows of a set of training rows, computed on demand and cached within a memory budget.
struct KernelCache<'a> {
    x: &'a Matrix,
    norms: Vec<f64>,
    kernel: Kernel,
    rows: Vec<Option<Rc<[f64]>>>,
    order: std::collections::VecDeque<usize>,
    capacity: usize,
}

/// Bytes of kernel rows one solver may cache.
const CACHE_BYTES: usize = 256 << 20;

impl<'a> KernelCache<'a> {
    fn new(x: &'a Matrix, kernel: Kernel) -> Self {
        let n = x.rows();
        let norms = (0..n).map(|i| dot(x.row(i), x.row(i))).collect();
        let capacity = (CACHE_BYTES / (8 * n.max(1))).clamp(2, n.max(2));
        Self {
            x,
            norms,
            kernel,
            rows: vec![None; n],
            order: Default::default(),
            capacity,
        }
    }

    fn diag(&self, i: usize) -> f64 {
        self.kernel
            .eval(self.x.row(i), self.x.row(i), self.norms[i], self.norms[i])
    }

    /// Kernel row `i` (shared, not copied: the solver holds two rows at a time).
    fn row(&mut self, i: usize) -> Rc<[f64]> {
        if self.rows[i].is_none() {
            if self.order.len() >= self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.rows[old] = None;
                }
            }
            let xi = self.x.row(i);
            let ni = self.norms[i];
            let row: Rc<[f64]> = (0..self.x.rows())
                .map(|t| self.kernel.eval(xi, self.x.row(t), ni, self.norms[t]))
                .collect();
            self.rows[i] = Some(row);
            self.order.push_back(i);
        }
        self.rows[i].clone().unwrap_or_else(|| Rc::from(Vec::new()))
    }
}

/// The dual problem `min ½ αᵀQα + pᵀα, yᵀα = const, 0 ≤ αₜ ≤ Cₜ` with `Q_st = y_s y_t K(s mod n,
/// t mod n)`, where `n` is the number of kernel rows (SVR has two variables per row).
struct Problem<'a> {
    cache: KernelCache<'a>,
    y: Vec<f64>,
    p: Vec<f64>,
    c: Vec<f64>,
    tol: f64,
}

/// The solution: α and the bias ρ (decision = Σ y α K − ρ).
struct Solution {
    alpha: Vec<f64>,
    rho: f64,
}

const TAU: f64 = 1e-12;

fn solve(mut prob: Problem<'_>) -> Solution {
    let l = prob.y.len();
    let n = prob.cache.x.rows();
    let kd: Vec<f64> = (0..n).map(|i| prob.cache.diag(i)).collect();
    let mut alpha = vec![0.0; l];
    let mut g = prob.p.clone();
    let (y, c) = (&prob.y, &prob.c);
    let upper = |a: &[f64], t: usize| a[t] >= c[t];
    let lower = |a: &[f64], t: usize| a[t] <= 0.0;
    let max_iter = (100 * l).max(10_000_000);
    // `t mod n` for t < 2n (SVR has two variables per row) without a division in the hot loops.
    let row_of = |t: usize| if t >= n { t - n } else { t };
    for _ in 0..max_iter {
        // Working set: i maximises −yᵢ∇ᵢ over I_up; j minimises the second-order decrease.
        let mut gmax = f64::NEG_INFINITY;
        let mut i = usize::MAX;
        for t in 0..l {
            if y[t] > 0.0 {
                if !upper(&alpha, t) && -g[t] >= gmax {
                    gmax = -g[t];
                    i = t;
                }
            } else if !lower(&alpha, t) && g[t] >= gmax {
                gmax = g[t];
                i = t;
            }
        }
        if i == usize::MAX {
            break;
        }
        let ki = prob.cache.row(i % n);
        let kd_i = kd[i % n];
        let mut gmax2 = f64::NEG_INFINITY;
        let mut j = usize::MAX;
        let mut best = f64::INFINITY;
        for t in 0..l {
            let kit = ki[row_of(t)];
            let quad = kd_i + kd[row_of(t)] - 2.0 * kit;
            let quad = if quad > 0.0 { quad } else { TAU };
            if y[t] > 0.0 {
                if !lower(&alpha, t) {
                    let diff = gmax + g[t];
                    if g[t] >= gmax2 {
                        gmax2 = g[t];
                    }
                    if diff > 0.0 {
                        let obj = -(diff * diff) / quad;
                        if obj <= best {
                            best = obj;
                            j = t;
                        }
                    }
                }
            } else if !upper(&alpha, t) {
                let diff = gmax - g[t];
                if -g[t] >= gmax2 {
                    gmax2 = -g[t];
                }
                if diff > 0.0 {
                    let obj = -(diff * diff) / quad;
                    if obj <= best {
                        best = obj;
                        j = t;
                    }
                }
            }
        }
        if gmax + gmax2 < prob.tol || j == usize::MAX {
            break;
        }
        let kj = prob.cache.row(j % n);
        let q_ij = y[i] * y[j] * ki[j % n];
        let (q_ii, q_jj) = (kd[i % n], kd[j % n]);
        let (ci, cj) = (c[i], c[j]);
        let (old_i, old_j) = (alpha[i], alpha[j]);
        let (mut ai, mut aj) = (old_i, old_j);
        if y[i] != y[j] {
            let quad = q_ii + q_jj + 2.0 * q_ij;
            let quad = if quad > 0.0 { quad } else { TAU };
            let delta = (-g[i] - g[j]) / quad;
            let diff = ai - aj;
            ai += delta;
            aj += delta;
            if diff > 0.0 {
                if aj < 0.0 {
                    aj = 0.0;
                    ai = diff;
                }
            } else if ai < 0.0 {
                ai = 0.0;
                aj = -diff;
            }
            if diff > ci - cj {
                if ai > ci {
                    ai = ci;
                    aj = ci - diff;
                }
            } else if aj > cj {
                aj = cj;
                ai = cj + diff;
            }
        } else {
            let quad = q_ii + q_jj - 2.0 * q_ij;
            let quad = if quad > 0.0 { quad } else { TAU };
            let delta = (g[i] - g[j]) / quad;
            let sum = ai + aj;
            ai -= delta;
            aj += delta;
            if sum > ci {
                if ai > ci {
                    ai = ci;
                    aj = sum - ci;
                }
            } else if aj < 0.0 {
                aj = 0.0;
                ai = sum;
            }
            if sum > cj {
                if aj > cj {
                    aj = cj;
                    ai = sum - cj;
                }
            } else if ai < 0.0 {
                ai = 0.0;
                aj = sum;
            }
        }
        alpha[i] = ai;
        alpha[j] = aj;
        let (di, dj) = ((ai - old_i) * y[i], (aj - old_j) * y[j]);
        for t in 0..l {
            let r = row_of(t);
            g[t] += y[t] * (ki[r] * di + kj[r] * dj);
        }
    }
    // ρ as libsvm: the mean of yₜ∇ₜ over free variables, else the middle of the feasible range.
    let (mut ub, mut lb) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut free, mut sum) = (0usize, 0.0);
    for t in 0..l {
        let yg = y[t] * g[t];
        if upper(&alpha, t) {
            if y[t] < 0.0 {
                ub = ub.min(yg);
            } else {
                lb = lb.max(yg);
            }
        } else if lower(&alpha, t) {
            if y[t] > 0.0 {
                ub = ub.min(yg);
            } else {
                lb = lb.max(yg);
            }
        } else {
            free += 1;
            sum += yg;
        }
    }
    let rho = if free > 0 {
        sum / free as f64
    } else {
        (ub + lb) / 2.0
    };
    Solution { alpha, rho }
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
                let sol = solve(Problem {
                    cache: KernelCache::new(&sub, kernel),
                    p: vec![-1.0; l],
                    c: vec![c; l],
                    y: ys.clone(),
                    tol,
                });
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
        let n = x.rows();
        let mut y = vec![1.0; 2 * n];
        let mut p = vec![0.0; 2 * n];
        for i in 0..n {
            p[i] = epsilon - z[i];
            p[i + n] = epsilon + z[i];
            y[i + n] = -1.0;
        }
        let sol = solve(Problem {
            cache: KernelCache::new(x, kernel),
            y,
            p,
            c: vec![c; 2 * n],
            tol,
        });
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
    use super::*;

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
