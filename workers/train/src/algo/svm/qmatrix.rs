//! The SMO solver's matrix `Q` (`Q_st = y_s y_t K(x_s, x_t)`), row by row on demand, in the
//! solver's order of the variables: shrinking moves the active variables to the front (libsvm's
//! `swap_index`), so a row is computed only for the active prefix the solver asks for and grown
//! when it asks for more. Rows are cached under a budget of entries, least recently used first
//! out, as libsvm's `Cache`.

use crate::matrix::{dot, dot4, Matrix};

use super::Kernel;

/// `Q` as the solver sees it. A returned row is valid until the next call.
pub(super) trait QMatrix {
    /// `Q_tt` per variable, in the caller's order (before any swap).
    fn diagonal(&self) -> Vec<f64>;
    /// The first `len` entries of row `i`.
    fn row(&mut self, i: usize, len: usize) -> &[f64];
    /// The first `len` entries of rows `i` and `j`, both at once.
    fn rows(&mut self, i: usize, j: usize, len: usize) -> (&[f64], &[f64]);
    /// Exchanges variables `a` and `b` in the solver's order.
    fn swap_index(&mut self, a: usize, b: usize);
}

/// Bytes of kernel rows one solver may cache.
const CACHE_BYTES: usize = 256 << 20;

/// Rows keyed `0..n`, each holding the prefix computed so far (empty: not cached), in a
/// least-recently-used list; evicting frees whole rows until a growth fits the budget.
#[derive(Debug)]
struct RowCache {
    rows: Vec<Vec<f64>>,
    /// The LRU list, doubly linked through `prev`/`next`; index `n` is its head (sentinel).
    prev: Vec<usize>,
    next: Vec<usize>,
    /// Entries the budget still allows.
    free: usize,
}

impl RowCache {
    fn new(n: usize) -> Self {
        // Two full rows at least: the solver holds two at once.
        let budget = (CACHE_BYTES / std::mem::size_of::<f64>()).max(2 * n);
        Self {
            rows: vec![Vec::new(); n],
            prev: vec![n; n + 1],
            next: vec![n; n + 1],
            free: budget,
        }
    }

    fn head(&self) -> usize {
        self.rows.len()
    }

    fn unlink(&mut self, k: usize) {
        let (p, n) = (self.prev[k], self.next[k]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    /// Makes `k` the most recently used.
    fn push_back(&mut self, k: usize) {
        let head = self.head();
        let last = self.prev[head];
        self.next[last] = k;
        self.prev[k] = last;
        self.next[k] = head;
        self.prev[head] = k;
    }

    fn evict(&mut self, k: usize) {
        self.unlink(k);
        self.free += self.rows[k].len();
        self.rows[k] = Vec::new();
    }

    /// Grows row `k` to at least `len` entries and marks it most recently used; returns where
    /// the entries still to compute start (`len` or more when none). The row the caller touched
    /// last is never evicted here: the budget holds two full rows.
    fn grow(&mut self, k: usize, len: usize) -> usize {
        let have = self.rows[k].len();
        if have > 0 {
            self.unlink(k);
        }
        if len > have {
            let more = len - have;
            while self.free < more {
                let oldest = self.next[self.head()];
                debug_assert_ne!(oldest, self.head(), "the budget holds two full rows");
                self.evict(oldest);
            }
            self.rows[k].reserve_exact(more);
            self.rows[k].resize(len, 0.0);
            self.free -= more;
        }
        if !self.rows[k].is_empty() {
            self.push_back(k);
        }
        have
    }

    /// Exchanges keys `a` and `b` and entries `a` and `b` within every row; a row that holds one
    /// of the two entries but not the other is dropped (libsvm's "give up").
    fn swap_index(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        for k in [a, b] {
            if !self.rows[k].is_empty() {
                self.unlink(k);
            }
        }
        self.rows.swap(a, b);
        for k in [a, b] {
            if !self.rows[k].is_empty() {
                self.push_back(k);
            }
        }
        let (lo, hi) = (a.min(b), a.max(b));
        let mut h = self.next[self.head()];
        while h != self.head() {
            let next = self.next[h];
            let len = self.rows[h].len();
            if len > hi {
                self.rows[h].swap(lo, hi);
            } else if len > lo {
                self.evict(h);
            }
            h = next;
        }
    }
}

/// `K(xᵢ, x_{row_of(t)})` for `t` from `start` on, into `out` (`out[0]` for `start`), with
/// `norms[t]` the squared norm of row `row_of(t)`: four rows per pass, so that `xᵢ` is read once
/// for four dot products (`dot4`).
fn kernel_entries(
    kernel: Kernel,
    x: &Matrix,
    (xi, ni): (&[f64], f64),
    row_of: impl Fn(usize) -> usize,
    norms: &[f64],
    out: &mut [f64],
    start: usize,
) {
    let mut t = start;
    for block in out.chunks_mut(4) {
        if block.len() == 4 {
            let rows = [
                x.row(row_of(t)),
                x.row(row_of(t + 1)),
                x.row(row_of(t + 2)),
                x.row(row_of(t + 3)),
            ];
            let d = dot4(rows, xi);
            for (k, o) in block.iter_mut().enumerate() {
                *o = kernel.of_dot(d[k], ni, norms[t + k]);
            }
        } else {
            for (k, o) in block.iter_mut().enumerate() {
                *o = kernel.eval(xi, x.row(row_of(t + k)), ni, norms[t + k]);
            }
        }
        t += block.len();
    }
}

/// `Q` of a C-SVC: one variable per training row, its rows cached in the solver's order.
#[derive(Debug)]
pub(super) struct SvcQ<'a> {
    x: &'a Matrix,
    kernel: Kernel,
    /// Per variable in the solver's order: its row of `x`, its label, its squared norm.
    data_row: Vec<usize>,
    y: Vec<f64>,
    norms: Vec<f64>,
    cache: RowCache,
}

impl<'a> SvcQ<'a> {
    /// `Q` for rows `x` with labels `y` (±1).
    pub(super) fn new(x: &'a Matrix, y: &[f64], kernel: Kernel) -> Self {
        let n = x.rows();
        Self {
            x,
            kernel,
            data_row: (0..n).collect(),
            y: y.to_vec(),
            norms: (0..n).map(|i| dot(x.row(i), x.row(i))).collect(),
            cache: RowCache::new(n),
        }
    }

    /// Makes row `i` hold at least `len` entries.
    fn fill(&mut self, i: usize, len: usize) {
        let start = self.cache.grow(i, len);
        if start >= len {
            return;
        }
        let xi = (self.x.row(self.data_row[i]), self.norms[i]);
        let row = &mut self.cache.rows[i];
        let data_row = &self.data_row;
        kernel_entries(
            self.kernel,
            self.x,
            xi,
            |t| data_row[t],
            &self.norms,
            &mut row[start..len],
            start,
        );
        let yi = self.y[i];
        for (q, &yt) in row[start..len].iter_mut().zip(&self.y[start..len]) {
            *q *= yi * yt;
        }
    }
}

impl QMatrix for SvcQ<'_> {
    fn diagonal(&self) -> Vec<f64> {
        (0..self.x.rows())
            .map(|i| {
                let xi = self.x.row(i);
                self.kernel.eval(xi, xi, self.norms[i], self.norms[i])
            })
            .collect()
    }

    fn row(&mut self, i: usize, len: usize) -> &[f64] {
        self.fill(i, len);
        &self.cache.rows[i][..len]
    }

    fn rows(&mut self, i: usize, j: usize, len: usize) -> (&[f64], &[f64]) {
        self.fill(i, len);
        self.fill(j, len);
        (&self.cache.rows[i][..len], &self.cache.rows[j][..len])
    }

    fn swap_index(&mut self, a: usize, b: usize) {
        self.cache.swap_index(a, b);
        self.data_row.swap(a, b);
        self.y.swap(a, b);
        self.norms.swap(a, b);
    }
}

/// `Q` of an ε-SVR: two variables per training row (α with sign +1, α* with sign −1). Kernel
/// rows are cached whole, by training row, and gathered into the solver's order on request
/// (libsvm's `SVR_Q`): a kernel row serves both variables of its training row.
#[derive(Debug)]
pub(super) struct SvrQ<'a> {
    x: &'a Matrix,
    kernel: Kernel,
    norms: Vec<f64>,
    /// Per variable in the solver's order: its training row and its sign.
    data_row: Vec<usize>,
    sign: Vec<f64>,
    cache: RowCache,
    /// The two rows handed out last, gathered.
    gathered: [Vec<f64>; 2],
}

impl<'a> SvrQ<'a> {
    /// `Q` for rows `x`: variables `0..n` are the α, `n..2n` the α*.
    pub(super) fn new(x: &'a Matrix, kernel: Kernel) -> Self {
        let n = x.rows();
        Self {
            x,
            kernel,
            norms: (0..n).map(|i| dot(x.row(i), x.row(i))).collect(),
            data_row: (0..2 * n).map(|t| t % n).collect(),
            sign: (0..2 * n).map(|t| if t < n { 1.0 } else { -1.0 }).collect(),
            cache: RowCache::new(n),
            gathered: [vec![0.0; 2 * n], vec![0.0; 2 * n]],
        }
    }

    /// Makes the whole kernel row of training row `r` cached.
    fn fill(&mut self, r: usize) {
        let n = self.x.rows();
        let start = self.cache.grow(r, n);
        if start < n {
            let xr = (self.x.row(r), self.norms[r]);
            let row = &mut self.cache.rows[r][start..n];
            kernel_entries(self.kernel, self.x, xr, |t| t, &self.norms, row, start);
        }
    }

    /// Gathers the first `len` entries of variable `i`'s row into buffer `slot`.
    fn gather(&mut self, i: usize, len: usize, slot: usize) {
        let kernel_row = &self.cache.rows[self.data_row[i]];
        let si = self.sign[i];
        let out = &mut self.gathered[slot][..len];
        for ((o, &r), &s) in out.iter_mut().zip(&self.data_row).zip(&self.sign) {
            *o = si * s * kernel_row[r];
        }
    }
}

impl QMatrix for SvrQ<'_> {
    fn diagonal(&self) -> Vec<f64> {
        self.data_row
            .iter()
            .map(|&r| {
                let xr = self.x.row(r);
                self.kernel.eval(xr, xr, self.norms[r], self.norms[r])
            })
            .collect()
    }

    fn row(&mut self, i: usize, len: usize) -> &[f64] {
        self.fill(self.data_row[i]);
        self.gather(i, len, 0);
        &self.gathered[0][..len]
    }

    fn rows(&mut self, i: usize, j: usize, len: usize) -> (&[f64], &[f64]) {
        self.fill(self.data_row[i]);
        self.fill(self.data_row[j]);
        self.gather(i, len, 0);
        self.gather(j, len, 1);
        (&self.gathered[0][..len], &self.gathered[1][..len])
    }

    fn swap_index(&mut self, a: usize, b: usize) {
        self.data_row.swap(a, b);
        self.sign.swap(a, b);
    }
}
