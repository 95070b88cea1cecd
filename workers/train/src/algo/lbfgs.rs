//! Limited-memory BFGS for smooth unconstrained problems (logistic regression), step for step
//! as SciPy's L-BFGS-B runs without bounds, which is what scikit-learn calls.
//!
//! The same stopping rule: stop when the largest gradient component is at most `gtol`, when the
//! relative decrease of the objective falls under `ftol`, or after `max_iter` iterations. The
//! same line search: Moré and Thuente's (MINPACK-2 `dcsrch`) for the strong Wolfe conditions
//! (sufficient decrease 1e-3, curvature 0.9, interval tolerance 0.1), from a step of `1/‖g‖₂`
//! on the first iteration and 1 afterwards, at most `max_ls` evaluations; a search that fails
//! drops the correction pairs and restarts from steepest descent, and fails for good when there
//! were none. A pair `(s, y)` is kept only when its curvature `sᵀy` exceeds `ε·(−gᵀs)`, so the
//! inverse Hessian estimate stays positive definite. Matching SciPy's steps matters for the
//! cost, not only the model: a weaker search (Armijo backtracking) takes about as many
//! evaluations per iteration but far more iterations. Deterministic: no randomness, fixed order
//! of sums.

/// Settings of one minimisation.
#[derive(Debug, Clone, Copy)]
pub struct Lbfgs {
    /// Stop when `max |gᵢ| <= gtol`.
    pub gtol: f64,
    /// Stop when `(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol`.
    pub ftol: f64,
    /// Iteration limit.
    pub max_iter: usize,
    /// Stored correction pairs.
    pub memory: usize,
    /// Evaluations one line search may take beyond its first (scikit-learn's `maxls`).
    pub max_ls: usize,
}

impl Default for Lbfgs {
    fn default() -> Self {
        Self {
            gtol: 1e-4,
            ftol: 64.0 * f64::EPSILON,
            max_iter: 100,
            memory: 10,
            max_ls: 50,
        }
    }
}

/// The result of a minimisation.
#[derive(Debug, Clone)]
pub struct Minimum {
    /// The point reached.
    pub x: Vec<f64>,
    /// The objective there.
    pub f: f64,
    /// Iterations used.
    pub iterations: usize,
    /// Evaluations of the objective and gradient, the first one included.
    pub evaluations: usize,
    /// Whether a tolerance (not the iteration limit or a failed line search) stopped it.
    pub converged: bool,
}

/// L-BFGS-B's line search parameters: sufficient decrease, curvature, interval tolerance and
/// the largest step of an unbounded problem.
const LS_FTOL: f64 = 1e-3;
const LS_GTOL: f64 = 0.9;
const LS_XTOL: f64 = 0.1;
const LS_STPMAX: f64 = 1e10;

impl Lbfgs {
    /// Minimises `fg` (which returns the objective and writes the gradient) from `x0`.
    pub fn minimise(&self, mut fg: impl FnMut(&[f64], &mut [f64]) -> f64, x0: Vec<f64>) -> Minimum {
        let n = x0.len();
        let mut x = x0;
        let mut g = vec![0.0; n];
        let mut f = fg(&x, &mut g);
        let mut evaluations = 1;
        let mut s_hist: Vec<Vec<f64>> = Vec::new();
        let mut y_hist: Vec<Vec<f64>> = Vec::new();
        let mut rho_hist: Vec<f64> = Vec::new();
        let mut x_new = vec![0.0; n];
        let mut g_new = vec![0.0; n];
        let mut d = vec![0.0; n];
        let mut alpha = Vec::with_capacity(self.memory);
        let inf_norm = |v: &[f64]| v.iter().fold(0.0f64, |m, a| m.max(a.abs()));
        let mut iterations = 0;
        let mut converged = inf_norm(&g) <= self.gtol;
        while !converged && iterations < self.max_iter {
            // Two-loop recursion: d = −H g, H built from θ⁻¹ I (θ = yᵀy / sᵀy of the newest
            // pair), as L-BFGS-B's compact form is without bounds.
            d.copy_from_slice(&g);
            alpha.clear();
            alpha.resize(s_hist.len(), 0.0);
            for k in (0..s_hist.len()).rev() {
                alpha[k] = rho_hist[k] * dot(&s_hist[k], &d);
                axpy(-alpha[k], &y_hist[k], &mut d);
            }
            if let (Some(s), Some(y)) = (s_hist.last(), y_hist.last()) {
                let gamma = dot(s, y) / dot(y, y);
                d.iter_mut().for_each(|v| *v *= gamma);
            }
            for k in 0..s_hist.len() {
                let beta = rho_hist[k] * dot(&y_hist[k], &d);
                axpy(alpha[k] - beta, &s_hist[k], &mut d);
            }
            d.iter_mut().for_each(|v| *v = -*v);
            let gd0 = dot(&g, &d);
            let first = if iterations == 0 {
                (1.0 / dot(&d, &d).sqrt()).min(LS_STPMAX)
            } else {
                1.0
            };
            let found = if gd0 < 0.0 {
                let probe = Probe {
                    x: &x,
                    d: &d,
                    f,
                    gd: gd0,
                };
                self.line_search(
                    &mut fg,
                    probe,
                    first,
                    &mut x_new,
                    &mut g_new,
                    &mut evaluations,
                )
            } else {
                None
            };
            let Some((f_new, stp)) = found else {
                // The iterate stays; L-BFGS-B drops its pairs and restarts from steepest
                // descent, or gives up when it had none.
                if s_hist.is_empty() {
                    break;
                }
                s_hist.clear();
                y_hist.clear();
                rho_hist.clear();
                continue;
            };
            iterations += 1;
            std::mem::swap(&mut x, &mut x_new);
            std::mem::swap(&mut g, &mut g_new);
            let f_old = std::mem::replace(&mut f, f_new);
            converged = inf_norm(&g) <= self.gtol
                || f_old - f <= self.ftol * f_old.abs().max(f.abs()).max(1.0);
            // The pair s = stp·d, y = g_new − g_old, with sᵀy as L-BFGS-B forms it.
            let sy = (dot(&g, &d) - gd0) * stp;
            if !converged && sy > f64::EPSILON * (-gd0 * stp) {
                if s_hist.len() == self.memory {
                    s_hist.remove(0);
                    y_hist.remove(0);
                    rho_hist.remove(0);
                }
                s_hist.push(d.iter().map(|v| stp * v).collect());
                y_hist.push(g.iter().zip(&g_new).map(|(a, b)| a - b).collect());
                rho_hist.push(1.0 / sy);
            }
        }
        Minimum {
            x,
            f,
            iterations,
            evaluations,
            converged,
        }
    }

    /// Searches along `probe.d` from `stp`: the accepted objective and step, with the point in
    /// `x_new` and its gradient in `g_new`; `None` when the search fails (no acceptable step
    /// within `max_ls` further evaluations, or a non-finite objective).
    fn line_search(
        &self,
        fg: &mut impl FnMut(&[f64], &mut [f64]) -> f64,
        probe: Probe<'_>,
        mut stp: f64,
        x_new: &mut [f64],
        g_new: &mut [f64],
        evaluations: &mut usize,
    ) -> Option<(f64, f64)> {
        let mut search = MoreThuente::start(probe.f, probe.gd, stp);
        for tries in 0.. {
            for ((xn, x), d) in x_new.iter_mut().zip(probe.x).zip(probe.d) {
                *xn = x + stp * d;
            }
            let f_new = fg(x_new, g_new);
            *evaluations += 1;
            if !f_new.is_finite() || tries >= self.max_ls {
                return None;
            }
            if search.next(f_new, dot(g_new, probe.d), &mut stp) {
                return Some((f_new, stp));
            }
        }
        None
    }
}

/// Where a line search starts: the point, the direction, the objective and its slope there.
struct Probe<'a> {
    x: &'a [f64],
    d: &'a [f64],
    f: f64,
    gd: f64,
}

/// Moré and Thuente's line search (MINPACK-2 `dcsrch`/`dcstep`) as L-BFGS-B drives it: a
/// step that satisfies the strong Wolfe conditions, found by safeguarded cubic and quadratic
/// interpolation in an interval of uncertainty.
#[derive(Debug)]
struct MoreThuente {
    brackt: bool,
    stage_one: bool,
    finit: f64,
    ginit: f64,
    gtest: f64,
    width: f64,
    width1: f64,
    /// The best step so far, its objective and slope.
    stx: f64,
    fx: f64,
    gx: f64,
    /// The other end of the interval.
    sty: f64,
    fy: f64,
    gy: f64,
    stmin: f64,
    stmax: f64,
}

impl MoreThuente {
    /// Starts from objective `f` and slope `g` (< 0) at step 0, the first trial step `stp`.
    fn start(f: f64, g: f64, stp: f64) -> Self {
        Self {
            brackt: false,
            stage_one: true,
            finit: f,
            ginit: g,
            gtest: LS_FTOL * g,
            width: LS_STPMAX,
            width1: 2.0 * LS_STPMAX,
            stx: 0.0,
            fx: f,
            gx: g,
            sty: 0.0,
            fy: f,
            gy: g,
            stmin: 0.0,
            stmax: stp + 4.0 * stp,
        }
    }

    /// Takes the objective `f` and slope `g` at `stp`: true when `stp` is accepted (the
    /// conditions hold, or no further progress is possible), else sets the next trial step.
    fn next(&mut self, f: f64, g: f64, stp: &mut f64) -> bool {
        let ftest = self.finit + *stp * self.gtest;
        if self.stage_one && f <= ftest && g >= 0.0 {
            self.stage_one = false;
        }
        let stuck = self.brackt
            && (*stp <= self.stmin
                || *stp >= self.stmax
                || self.stmax - self.stmin <= LS_XTOL * self.stmax);
        let at_max = *stp == LS_STPMAX && f <= ftest && g <= self.gtest;
        let at_min = *stp == 0.0 && (f > ftest || g >= self.gtest);
        let wolfe = f <= ftest && g.abs() <= LS_GTOL * -self.ginit;
        if stuck || at_max || at_min || wolfe {
            return true;
        }
        if self.stage_one && f <= self.fx && f > ftest {
            // The modified function ψ(α) = f(α) − f(0) − α·gtest until a step with a
            // sufficient decrease and a non-negative slope is found.
            let gtest = self.gtest;
            let mut m = Step {
                stx: self.stx,
                fx: self.fx - self.stx * gtest,
                dx: self.gx - gtest,
                sty: self.sty,
                fy: self.fy - self.sty * gtest,
                dy: self.gy - gtest,
            };
            let fm = f - *stp * gtest;
            m.step(stp, fm, g - gtest, &mut self.brackt, self.stmin, self.stmax);
            self.stx = m.stx;
            self.sty = m.sty;
            self.fx = m.fx + m.stx * gtest;
            self.fy = m.fy + m.sty * gtest;
            self.gx = m.dx + gtest;
            self.gy = m.dy + gtest;
        } else {
            let mut m = Step {
                stx: self.stx,
                fx: self.fx,
                dx: self.gx,
                sty: self.sty,
                fy: self.fy,
                dy: self.gy,
            };
            m.step(stp, f, g, &mut self.brackt, self.stmin, self.stmax);
            self.stx = m.stx;
            self.sty = m.sty;
            self.fx = m.fx;
            self.fy = m.fy;
            self.gx = m.dx;
            self.gy = m.dy;
        }
        if self.brackt {
            // Bisect when the interval did not shrink enough over two steps.
            if (self.sty - self.stx).abs() >= 0.66 * self.width1 {
                *stp = self.stx + 0.5 * (self.sty - self.stx);
            }
            self.width1 = self.width;
            self.width = (self.sty - self.stx).abs();
            self.stmin = self.stx.min(self.sty);
            self.stmax = self.stx.max(self.sty);
        } else {
            self.stmin = *stp + 1.1 * (*stp - self.stx);
            self.stmax = *stp + 4.0 * (*stp - self.stx);
        }
        *stp = stp.clamp(0.0, LS_STPMAX);
        if self.brackt
            && (*stp <= self.stmin
                || *stp >= self.stmax
                || self.stmax - self.stmin <= LS_XTOL * self.stmax)
        {
            *stp = self.stx;
        }
        false
    }
}

/// The interval of one `dcstep`: the best step `stx` and the other end `sty`, each with its
/// objective and slope.
struct Step {
    stx: f64,
    fx: f64,
    dx: f64,
    sty: f64,
    fy: f64,
    dy: f64,
}

impl Step {
    /// MINPACK-2's `dcstep`: the next trial step from the trial `stp` (objective `fp`, slope
    /// `dp`), and the interval updated around the minimiser.
    fn step(&mut self, stp: &mut f64, fp: f64, dp: f64, brackt: &mut bool, lo: f64, hi: f64) {
        let (stx, fx, dx) = (self.stx, self.fx, self.dx);
        let sgnd = dp * dx.signum();
        let s0 = *stp;
        let stpf = if fp > fx {
            // A higher objective: the minimum is bracketed; the cubic step if it is closer to
            // stx than the quadratic one, else their mean.
            let theta = 3.0 * (fx - fp) / (s0 - stx) + dx + dp;
            let s = theta.abs().max(dx.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s).powi(2) - (dx / s) * (dp / s)).sqrt();
            if s0 < stx {
                gamma = -gamma;
            }
            let p = (gamma - dx) + theta;
            let q = ((gamma - dx) + gamma) + dp;
            let stpc = stx + p / q * (s0 - stx);
            let stpq = stx + dx / ((fx - fp) / (s0 - stx) + dx) / 2.0 * (s0 - stx);
            *brackt = true;
            if (stpc - stx).abs() < (stpq - stx).abs() {
                stpc
            } else {
                stpc + (stpq - stpc) / 2.0
            }
        } else if sgnd < 0.0 {
            // Slopes of opposite sign: bracketed; the step farther from stp.
            let theta = 3.0 * (fx - fp) / (s0 - stx) + dx + dp;
            let s = theta.abs().max(dx.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s).powi(2) - (dx / s) * (dp / s)).sqrt();
            if s0 > stx {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = ((gamma - dp) + gamma) + dx;
            let stpc = s0 + p / q * (stx - s0);
            let stpq = s0 + dp / (dp - dx) * (stx - s0);
            *brackt = true;
            if (stpc - s0).abs() > (stpq - s0).abs() {
                stpc
            } else {
                stpq
            }
        } else if dp.abs() < dx.abs() {
            // Same sign, the slope's magnitude decreasing: the cubic only if it heads the right
            // way, kept inside the interval.
            let theta = 3.0 * (fx - fp) / (s0 - stx) + dx + dp;
            let s = theta.abs().max(dx.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s).powi(2) - (dx / s) * (dp / s)).max(0.0).sqrt();
            if s0 > stx {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = (gamma + (dx - dp)) + gamma;
            let r = p / q;
            let stpc = if r < 0.0 && gamma != 0.0 {
                s0 + r * (stx - s0)
            } else if s0 > stx {
                hi
            } else {
                lo
            };
            let stpq = s0 + dp / (dp - dx) * (stx - s0);
            if *brackt {
                let stpf = if (stpc - s0).abs() < (stpq - s0).abs() {
                    stpc
                } else {
                    stpq
                };
                if s0 > stx {
                    stpf.min(s0 + 0.66 * (self.sty - s0))
                } else {
                    stpf.max(s0 + 0.66 * (self.sty - s0))
                }
            } else {
                let stpf = if (stpc - s0).abs() > (stpq - s0).abs() {
                    stpc
                } else {
                    stpq
                };
                stpf.min(hi).max(lo)
            }
        } else if *brackt {
            // Same sign, the slope not decreasing: the cubic step of the interval's far end.
            let (sty, fy, dy) = (self.sty, self.fy, self.dy);
            let theta = 3.0 * (fp - fy) / (sty - s0) + dy + dp;
            let s = theta.abs().max(dy.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s).powi(2) - (dy / s) * (dp / s)).sqrt();
            if s0 > sty {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = ((gamma - dp) + gamma) + dy;
            s0 + p / q * (sty - s0)
        } else if s0 > stx {
            hi
        } else {
            lo
        };
        if fp > fx {
            self.sty = s0;
            self.fy = fp;
            self.dy = dp;
        } else {
            if sgnd < 0.0 {
                self.sty = stx;
                self.fy = fx;
                self.dy = dx;
            }
            self.stx = s0;
            self.fx = fp;
            self.dx = dp;
        }
        *stp = stpf;
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_a_rosenbrock_valley() {
        let solver = Lbfgs {
            gtol: 1e-8,
            max_iter: 1000,
            ..Lbfgs::default()
        };
        let min = solver.minimise(
            |x, g| {
                let (a, b) = (x[0], x[1]);
                g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
                g[1] = 200.0 * (b - a * a);
                (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
            },
            vec![-1.2, 1.0],
        );
        assert!(min.converged);
        assert!(
            (min.x[0] - 1.0).abs() < 1e-4 && (min.x[1] - 1.0).abs() < 1e-4,
            "{:?}",
            min.x
        );
        // SciPy's L-BFGS-B on the same problem (`minimize(method="L-BFGS-B", jac=True,
        // options={"gtol": 1e-8, "ftol": 64 * eps, "maxls": 50})`): nit 38, nfev 46. The same
        // line search takes the same steps.
        assert_eq!((min.iterations, min.evaluations), (38, 46));
    }
}
