//! Limited-memory BFGS for smooth unconstrained problems (logistic regression).
//!
//! The same stopping rule as SciPy's L-BFGS-B as scikit-learn calls it: stop when the largest
//! gradient component is at most `gtol`, when the relative decrease of the objective falls under
//! `ftol`, or after `max_iter` iterations. A backtracking line search enforces the Armijo
//! condition; a pair `(s, y)` is kept only when its curvature `sᵀy` is positive, so the inverse
//! Hessian estimate stays positive definite. Deterministic: no randomness, fixed order of sums.

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
}

impl Default for Lbfgs {
    fn default() -> Self {
        Self {
            gtol: 1e-4,
            ftol: 64.0 * f64::EPSILON,
            max_iter: 100,
            memory: 10,
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
    /// Whether a tolerance (not the iteration limit) stopped it.
    pub converged: bool,
}

impl Lbfgs {
    /// Minimises `fg` (which returns the objective and writes the gradient) from `x0`.
    pub fn minimise(&self, mut fg: impl FnMut(&[f64], &mut [f64]) -> f64, x0: Vec<f64>) -> Minimum {
        let n = x0.len();
        let mut x = x0;
        let mut g = vec![0.0; n];
        let mut f = fg(&x, &mut g);
        let mut s_hist: Vec<Vec<f64>> = Vec::new();
        let mut y_hist: Vec<Vec<f64>> = Vec::new();
        let mut rho_hist: Vec<f64> = Vec::new();
        let mut x_new = vec![0.0; n];
        let mut g_new = vec![0.0; n];
        let inf_norm = |v: &[f64]| v.iter().fold(0.0f64, |m, a| m.max(a.abs()));
        let mut iterations = 0;
        let mut converged = inf_norm(&g) <= self.gtol;
        while !converged && iterations < self.max_iter {
            iterations += 1;
            // Two-loop recursion: d = −H g.
            let mut q = g.clone();
            let mut alpha = vec![0.0; s_hist.len()];
            for k in (0..s_hist.len()).rev() {
                alpha[k] = rho_hist[k] * dot(&s_hist[k], &q);
                axpy(-alpha[k], &y_hist[k], &mut q);
            }
            let gamma = match (s_hist.last(), y_hist.last()) {
                (Some(s), Some(y)) => dot(s, y) / dot(y, y),
                _ => 1.0 / inf_norm(&g).max(1.0),
            };
            for v in &mut q {
                *v *= gamma;
            }
            for k in 0..s_hist.len() {
                let beta = rho_hist[k] * dot(&y_hist[k], &q);
                axpy(alpha[k] - beta, &s_hist[k], &mut q);
            }
            let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
            let mut slope = dot(&g, &d);
            if slope >= 0.0 {
                // Not a descent direction (numerical trouble): restart from steepest descent.
                s_hist.clear();
                y_hist.clear();
                rho_hist.clear();
                d = g.iter().map(|v| -v).collect();
                slope = dot(&g, &d);
                let scale = 1.0 / inf_norm(&g).max(1.0);
                for v in &mut d {
                    *v *= scale;
                }
                slope *= scale;
            }
            // Backtracking line search (Armijo, c1 = 1e-4).
            let mut step = 1.0;
            let mut f_new;
            let mut accepted = false;
            for _ in 0..60 {
                for i in 0..n {
                    x_new[i] = x[i] + step * d[i];
                }
                f_new = fg(&x_new, &mut g_new);
                if f_new.is_finite() && f_new <= f + 1e-4 * step * slope {
                    accepted = true;
                    let s: Vec<f64> = (0..n).map(|i| x_new[i] - x[i]).collect();
                    let y: Vec<f64> = (0..n).map(|i| g_new[i] - g[i]).collect();
                    let sy = dot(&s, &y);
                    if sy > 1e-10 * dot(&y, &y).max(f64::MIN_POSITIVE) {
                        if s_hist.len() == self.memory {
                            s_hist.remove(0);
                            y_hist.remove(0);
                            rho_hist.remove(0);
                        }
                        s_hist.push(s);
                        y_hist.push(y);
                        rho_hist.push(1.0 / sy);
                    }
                    let decrease = (f - f_new) / f.abs().max(f_new.abs()).max(1.0);
                    std::mem::swap(&mut x, &mut x_new);
                    std::mem::swap(&mut g, &mut g_new);
                    f = f_new;
                    converged = inf_norm(&g) <= self.gtol || decrease <= self.ftol;
                    break;
                }
                step *= 0.5;
            }
            if !accepted {
                // No decrease along the direction: we are at the attainable precision.
                converged = true;
            }
        }
        Minimum {
            x,
            f,
            iterations,
            converged,
        }
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
    }
}
