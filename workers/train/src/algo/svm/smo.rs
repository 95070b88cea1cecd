//! libsvm's SMO solver (`Solver` in libsvm's `svm.cpp`; Fan, Chen & Lin 2005 for the
//! second-order working set) with its shrinking heuristic (Chang & Lin, "LIBSVM: a library for
//! support vector machines", section 5.1).
//!
//! Shrinking: every `min(l, 1000)` iterations, a variable at a bound whose gradient says it would
//! only press further against that bound leaves the active set; the working-set selection, the
//! gradient update and the kernel rows then cover the active variables only. `G_bar`, the part
//! of the gradient due to variables at their upper bound, is kept for every variable, so that
//! the gradient of an inactive variable can be rebuilt from it and the free variables. The
//! solver rebuilds it and reactivates everything once when the violation first falls below
//! `10·tol`, and again whenever the active set looks optimal: it stops only when the stopping
//! rule holds over all variables.

use super::qmatrix::QMatrix;

/// How to solve, besides the problem.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Stop when the maximal violation `m(α) − M(α)` is below this (libsvm's `eps`).
    pub tol: f64,
    /// libsvm's shrinking (`-h 1`, scikit-learn's `shrinking=True`): the same stopping rule,
    /// reached faster.
    pub shrinking: bool,
}

/// The dual problem `min ½ αᵀQα + pᵀα` subject to `yᵀα = 0` and `0 ≤ αₜ ≤ cₜ`, solved from
/// `α = 0`.
pub(super) struct Problem<Q> {
    pub q: Q,
    pub y: Vec<f64>,
    pub p: Vec<f64>,
    pub c: Vec<f64>,
}

/// The solution: α and the bias ρ (decision = Σ yα K − ρ).
#[derive(Debug)]
pub(super) struct Solution {
    pub alpha: Vec<f64>,
    pub rho: f64,
    /// The dual objective at α.
    #[cfg_attr(not(test), allow(dead_code))] // what the tests compare
    pub objective: f64,
    #[cfg_attr(not(test), allow(dead_code))] // what the tests check
    pub stats: Stats,
}

/// What happened during a solve.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stats {
    pub iterations: usize,
    /// Variables taken out of the active set, over all shrinking passes.
    pub shrunk: usize,
    /// Rebuilds of the inactive variables' gradient.
    pub reconstructions: usize,
}

/// Solves `problem`.
pub(super) fn solve<Q: QMatrix>(problem: Problem<Q>, settings: Settings) -> Solution {
    Solver::new(problem, settings.tol).run(settings.shrinking)
}

/// Denominator floor for a non-positive curvature (libsvm's `TAU`).
const TAU: f64 = 1e-12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Lower,
    Upper,
    Free,
}

fn bound(alpha: f64, c: f64) -> Bound {
    if alpha >= c {
        Bound::Upper
    } else if alpha <= 0.0 {
        Bound::Lower
    } else {
        Bound::Free
    }
}

/// The solver's state. Every per-variable vector is in the solver's order, which swaps keep
/// with the active variables first (`0..active`); `index` maps back to the caller's order.
struct Solver<Q> {
    q: Q,
    tol: f64,
    y: Vec<f64>,
    p: Vec<f64>,
    c: Vec<f64>,
    qd: Vec<f64>,
    alpha: Vec<f64>,
    status: Vec<Bound>,
    /// The gradient `Qα + p`; current for the active variables only.
    g: Vec<f64>,
    /// `Σ_{s at upper bound} c_s Q_st`, current for every variable.
    g_bar: Vec<f64>,
    index: Vec<usize>,
    active: usize,
    /// Whether the one reactivation near the end has happened.
    unshrunk: bool,
    stats: Stats,
}

impl<Q: QMatrix> Solver<Q> {
    fn new(problem: Problem<Q>, tol: f64) -> Self {
        let Problem { mut q, y, p, c } = problem;
        let l = y.len();
        let alpha = vec![0.0; l];
        let status: Vec<Bound> = (0..l).map(|t| bound(alpha[t], c[t])).collect();
        let mut g = p.clone();
        let mut g_bar = vec![0.0; l];
        // With α = 0 only a zero bound puts a variable at its upper bound, and it adds nothing;
        // the loop keeps the state right for any start.
        for s in 0..l {
            if status[s] != Bound::Lower {
                let row = q.row(s, l);
                for t in 0..l {
                    g[t] += alpha[s] * row[t];
                }
                if status[s] == Bound::Upper {
                    for t in 0..l {
                        g_bar[t] += c[s] * row[t];
                    }
                }
            }
        }
        Self {
            qd: q.diagonal(),
            q,
            tol,
            y,
            p,
            c,
            alpha,
            status,
            g,
            g_bar,
            index: (0..l).collect(),
            active: l,
            unshrunk: false,
            stats: Stats::default(),
        }
    }

    fn len(&self) -> usize {
        self.y.len()
    }

    /// Iterates to the stopping rule over all variables (or libsvm's iteration cap), then
    /// computes ρ and the objective.
    fn run(mut self, shrinking: bool) -> Solution {
        let l = self.len();
        let max_iter = (100 * l).max(10_000_000);
        let mut counter = l.min(1000) + 1;
        while self.stats.iterations < max_iter {
            counter -= 1;
            if counter == 0 {
                counter = l.min(1000);
                if shrinking {
                    self.shrink();
                }
            }
            let (i, j) = match self.select_working_set() {
                Some(pair) => pair,
                None => {
                    // Optimal on the active set: check against every variable.
                    self.unshrink();
                    match self.select_working_set() {
                        Some(pair) => {
                            counter = 1;
                            pair
                        }
                        None => break,
                    }
                }
            };
            self.stats.iterations += 1;
            self.step(i, j);
        }
        self.unshrink();
        let rho = self.rho();
        let objective = (0..l)
            .map(|t| self.alpha[t] * (self.g[t] + self.p[t]))
            .sum::<f64>()
            / 2.0;
        let mut alpha = vec![0.0; l];
        for (t, &a) in self.alpha.iter().enumerate() {
            alpha[self.index[t]] = a;
        }
        Solution {
            alpha,
            rho,
            objective,
            stats: self.stats,
        }
    }

    /// The working set among the active variables: `i` maximises `−yᵢ∇ᵢ` over `I_up`, `j`
    /// minimises the second-order decrease of the objective over `I_low`; `None` when the
    /// maximal violation is below `tol`.
    fn select_working_set(&mut self) -> Option<(usize, usize)> {
        let n = self.active;
        let (y, g, status, qd) = (&self.y[..n], &self.g[..n], &self.status[..n], &self.qd[..n]);
        let mut gmax = f64::NEG_INFINITY;
        let mut i = usize::MAX;
        for t in 0..n {
            if y[t] > 0.0 {
                if status[t] != Bound::Upper && -g[t] >= gmax {
                    gmax = -g[t];
                    i = t;
                }
            } else if status[t] != Bound::Lower && g[t] >= gmax {
                gmax = g[t];
                i = t;
            }
        }
        if i == usize::MAX {
            return None;
        }
        let qi = self.q.row(i, n);
        let (qd_i, y_i) = (qd[i], y[i]);
        let mut gmax2 = f64::NEG_INFINITY;
        let mut j = usize::MAX;
        let mut best = f64::INFINITY;
        for t in 0..n {
            let (diff, quad) = if y[t] > 0.0 {
                if status[t] == Bound::Lower {
                    continue;
                }
                gmax2 = gmax2.max(g[t]);
                (gmax + g[t], qd_i + qd[t] - 2.0 * y_i * qi[t])
            } else {
                if status[t] == Bound::Upper {
                    continue;
                }
                gmax2 = gmax2.max(-g[t]);
                (gmax - g[t], qd_i + qd[t] + 2.0 * y_i * qi[t])
            };
            if diff > 0.0 {
                let quad = if quad > 0.0 { quad } else { TAU };
                let obj = -(diff * diff) / quad;
                if obj <= best {
                    best = obj;
                    j = t;
                }
            }
        }
        (gmax + gmax2 >= self.tol && j != usize::MAX).then_some((i, j))
    }

    /// One SMO step on the pair: the two-variable subproblem solved exactly, the active
    /// gradient updated, and `G_bar` kept for variables that reach or leave their upper bound.
    fn step(&mut self, i: usize, j: usize) {
        let n = self.active;
        let (qi, qj) = self.q.rows(i, j, n);
        let (old_i, old_j) = (self.alpha[i], self.alpha[j]);
        let (ai, aj) = pair_optimum(
            self.y[i] != self.y[j],
            self.qd[i] + self.qd[j],
            qi[j],
            (self.g[i], self.g[j]),
            (old_i, old_j),
            (self.c[i], self.c[j]),
        );
        self.alpha[i] = ai;
        self.alpha[j] = aj;
        let (di, dj) = (ai - old_i, aj - old_j);
        for ((g, a), b) in self.g[..n].iter_mut().zip(qi).zip(qj) {
            *g += a * di + b * dj;
        }
        self.update_bound(i);
        self.update_bound(j);
    }

    /// Refreshes variable `t`'s bound after α changed, moving its share of `G_bar` when it
    /// reaches or leaves the upper bound.
    fn update_bound(&mut self, t: usize) {
        let was_upper = self.status[t] == Bound::Upper;
        self.status[t] = bound(self.alpha[t], self.c[t]);
        let is_upper = self.status[t] == Bound::Upper;
        if was_upper != is_upper {
            let l = self.len();
            let row = self.q.row(t, l);
            let c = if is_upper { self.c[t] } else { -self.c[t] };
            for (gb, q) in self.g_bar.iter_mut().zip(row) {
                *gb += c * q;
            }
        }
    }

    /// The largest violations over the active set: `max −yₜ∇ₜ` over `I_up` and `max yₜ∇ₜ` over
    /// `I_low`.
    fn max_violations(&self) -> (f64, f64) {
        let (mut up, mut low) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for t in 0..self.active {
            let (g, status) = (self.g[t], self.status[t]);
            // −yₜ∇ₜ and yₜ∇ₜ.
            let (minus, plus) = if self.y[t] > 0.0 { (-g, g) } else { (g, -g) };
            let in_up = if self.y[t] > 0.0 {
                status != Bound::Upper
            } else {
                status != Bound::Lower
            };
            let in_low = if self.y[t] > 0.0 {
                status != Bound::Lower
            } else {
                status != Bound::Upper
            };
            if in_up {
                up = up.max(minus);
            }
            if in_low {
                low = low.max(plus);
            }
        }
        (up, low)
    }

    /// Whether variable `t`, at a bound, would only be pushed further against it: it cannot
    /// enter a violating pair while the violations stay below `up` and `low`.
    fn can_shrink(&self, t: usize, up: f64, low: f64) -> bool {
        let (g, positive) = (self.g[t], self.y[t] > 0.0);
        match self.status[t] {
            Bound::Upper => -g > if positive { up } else { low },
            Bound::Lower => g > if positive { low } else { up },
            Bound::Free => false,
        }
    }

    /// libsvm's `do_shrinking`: moves the variables that can be shrunk behind the active ones.
    fn shrink(&mut self) {
        let (up, low) = self.max_violations();
        if !self.unshrunk && up + low <= 10.0 * self.tol {
            // Near the end: bring every variable back once, so that the last iterations
            // decide on current gradients what to shrink.
            self.unshrunk = true;
            self.unshrink();
        }
        let before = self.active;
        let mut t = 0;
        while t < self.active {
            if self.can_shrink(t, up, low) {
                self.active -= 1;
                // Fill slot t with the last active variable that stays.
                while self.active > t {
                    if !self.can_shrink(self.active, up, low) {
                        self.swap_index(t, self.active);
                        break;
                    }
                    self.active -= 1;
                }
            }
            t += 1;
        }
        self.stats.shrunk += before - self.active;
    }

    /// Makes every variable active again, with its gradient rebuilt.
    fn unshrink(&mut self) {
        if self.active < self.len() {
            self.reconstruct_gradient();
            self.stats.reconstructions += 1;
            self.active = self.len();
        }
    }

    /// libsvm's `reconstruct_gradient`: `∇ₜ = G_barₜ + pₜ + Σ_{free s} α_s Q_st` for the inactive
    /// `t`, summed by inactive row or by free row, whichever needs fewer kernel entries.
    fn reconstruct_gradient(&mut self) {
        let (n, l) = (self.active, self.len());
        for t in n..l {
            self.g[t] = self.g_bar[t] + self.p[t];
        }
        let free = self.status[..n]
            .iter()
            .filter(|&&s| s == Bound::Free)
            .count();
        if free * l > 2 * n * (l - n) {
            for t in n..l {
                let row = self.q.row(t, n);
                let mut sum = 0.0;
                for s in 0..n {
                    if self.status[s] == Bound::Free {
                        sum += self.alpha[s] * row[s];
                    }
                }
                self.g[t] += sum;
            }
        } else {
            for s in 0..n {
                if self.status[s] == Bound::Free {
                    let row = self.q.row(s, l);
                    let a = self.alpha[s];
                    for t in n..l {
                        self.g[t] += a * row[t];
                    }
                }
            }
        }
    }

    fn swap_index(&mut self, a: usize, b: usize) {
        self.q.swap_index(a, b);
        self.y.swap(a, b);
        self.p.swap(a, b);
        self.c.swap(a, b);
        self.qd.swap(a, b);
        self.alpha.swap(a, b);
        self.status.swap(a, b);
        self.g.swap(a, b);
        self.g_bar.swap(a, b);
        self.index.swap(a, b);
    }

    /// ρ as libsvm: the mean of `yₜ∇ₜ` over free variables, else the middle of the feasible
    /// range.
    fn rho(&self) -> f64 {
        let (mut ub, mut lb) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut free, mut sum) = (0usize, 0.0);
        for t in 0..self.active {
            let yg = self.y[t] * self.g[t];
            match (self.status[t], self.y[t] > 0.0) {
                (Bound::Upper, false) | (Bound::Lower, true) => ub = ub.min(yg),
                (Bound::Upper, true) | (Bound::Lower, false) => lb = lb.max(yg),
                (Bound::Free, _) => {
                    free += 1;
                    sum += yg;
                }
            }
        }
        if free > 0 {
            sum / free as f64
        } else {
            (ub + lb) / 2.0
        }
    }
}

/// The optimum of the two-variable subproblem in (αᵢ, αⱼ), clipped to the box along the
/// constraint `yᵢαᵢ + yⱼαⱼ = const`; `qd_sum` is `Q_ii + Q_jj`, `q_ij` the off-diagonal entry.
fn pair_optimum(
    opposite: bool,
    qd_sum: f64,
    q_ij: f64,
    (gi, gj): (f64, f64),
    (mut ai, mut aj): (f64, f64),
    (ci, cj): (f64, f64),
) -> (f64, f64) {
    if opposite {
        let quad = qd_sum + 2.0 * q_ij;
        let quad = if quad > 0.0 { quad } else { TAU };
        let delta = (-gi - gj) / quad;
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
        let quad = qd_sum - 2.0 * q_ij;
        let quad = if quad > 0.0 { quad } else { TAU };
        let delta = (gi - gj) / quad;
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
    (ai, aj)
}
