//! k-nearest neighbours (Euclidean, uniform weights, brute force) and Gaussian naive Bayes with
//! scikit-learn's `var_smoothing`.
//!
//! Brute force, because it beats a tree search at these sizes; the variance smoothing keeps a
//! feature that is constant within a class (digits' border pixels) from making every
//! probability NaN. Both give class probabilities.

use serde::{Deserialize, Serialize};

use super::linear::argmax;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::matrix::{dot, Matrix};

/// A fitted KNN classifier: the training rows themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knn {
    /// Neighbours consulted.
    pub k: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// Training rows.
    pub x: Matrix,
    /// Their classes.
    pub y: Vec<usize>,
}

impl Knn {
    /// Class votes per row (`n × classes`, fractions of k), with the neighbours chosen as
    /// scikit-learn's brute-force search chooses them (a bounded max-heap fed in index order);
    /// ties among classes go to the lower class.
    pub fn proba(&self, x: &Matrix) -> Matrix {
        let (n, p) = (self.x.rows(), self.x.cols());
        let k = self.k.min(n);
        let norms: Vec<f64> = (0..n).map(|i| dot(self.x.row(i), self.x.row(i))).collect();
        let mut out = Matrix::zeros(x.rows(), self.n_classes);
        let train = MatRef::from_row_major_slice(self.x.data(), n, p);
        // Tiles of test × training rows, so the products stay in cache; each test row's heap
        // still sees the training rows in index order, as scikit-learn's chunked search does.
        let mut heaps: Vec<Heap> = (0..TEST_TILE).map(|_| Heap::new(k)).collect();
        let mut products = vec![0.0; TEST_TILE * TRAIN_TILE];
        for i0 in (0..x.rows()).step_by(TEST_TILE) {
            let rows = TEST_TILE.min(x.rows() - i0);
            heaps.iter_mut().for_each(Heap::clear);
            for t0 in (0..n).step_by(TRAIN_TILE) {
                let cols = TRAIN_TILE.min(n - t0);
                let tile = &mut products[..rows * cols];
                matmul(
                    MatMut::from_row_major_slice_mut(tile, rows, cols),
                    Accum::Replace,
                    MatRef::from_row_major_slice(&x.data()[i0 * p..(i0 + rows) * p], rows, p),
                    train.subrows(t0, cols).transpose(),
                    1.0,
                    Par::Seq,
                );
                super::avx::clear_upper();
                // ‖t‖² − 2 x·t orders the training rows t as ‖x − t‖² does (‖x‖² is common),
                // with scikit-learn's rounding: no clamping at zero that would make near-ties
                // exact.
                for (heap, row) in heaps.iter_mut().zip(tile.chunks_exact(cols)) {
                    for (c, (xt, nt)) in row.iter().zip(&norms[t0..t0 + cols]).enumerate() {
                        heap.push(nt - 2.0 * xt, t0 + c);
                    }
                }
            }
            for (r, heap) in heaps.iter().take(rows).enumerate() {
                let row = out.row_mut(i0 + r);
                for t in heap.indices.iter().copied().filter(|&t| t != usize::MAX) {
                    row[self.y[t]] += 1.0 / k as f64;
                }
            }
        }
        out
    }
}

/// Test rows per tile of the distance computation.
const TEST_TILE: usize = 64;
/// Training rows per tile: a 64 × 256 tile of products is 128 KiB, within L2. Tiles keep the
/// matrix product faster than a dot product per pair even at 8 columns, where one product of
/// every test row with every training row was slower (its output does not fit in any cache).
const TRAIN_TILE: usize = 256;

/// A max-heap of the k smallest keys seen so far, as scikit-learn's `heap_push`
/// (`sklearn.utils._heap`) keeps it.
#[derive(Debug)]
struct Heap {
    values: Vec<f64>,
    indices: Vec<usize>,
}

impl Heap {
    fn new(k: usize) -> Self {
        Self {
            values: vec![f64::INFINITY; k],
            indices: vec![usize::MAX; k],
        }
    }

    fn clear(&mut self) {
        self.values.fill(f64::INFINITY);
        self.indices.fill(usize::MAX);
    }

    /// Offers `(value, index)`: it replaces the root when strictly smaller, then sifts down,
    /// preferring the left child on equal children.
    fn push(&mut self, value: f64, index: usize) {
        let size = self.values.len();
        if size == 0 || value >= self.values[0] {
            return;
        }
        let mut i = 0;
        loop {
            let left = 2 * i + 1;
            let right = left + 1;
            let swap = if left >= size {
                break;
            } else if right >= size || self.values[left] >= self.values[right] {
                left
            } else {
                right
            };
            if value >= self.values[swap] {
                break;
            }
            self.values[i] = self.values[swap];
            self.indices[i] = self.indices[swap];
            i = swap;
        }
        self.values[i] = value;
        self.indices[i] = index;
    }
}

/// The indices of the k smallest `keys`, chosen as scikit-learn's brute-force `kneighbors`
/// chooses them: every training row offered in index order to a bounded max-heap, so among
/// rows tied at the k-th distance the heap's order decides, not the lower index alone
/// ([`Knn::proba`] offers them tile by tile, in the same order).
#[cfg(test)]
fn nearest<'h>(keys: &[f64], heap: &'h mut Heap) -> impl Iterator<Item = usize> + 'h {
    heap.clear();
    for (t, &v) in keys.iter().enumerate() {
        heap.push(v, t);
    }
    heap.indices.iter().copied().filter(|&t| t != usize::MAX)
}

/// A fitted Gaussian naive Bayes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianNb {
    /// Per class, per feature mean (`classes × p`).
    pub mean: Matrix,
    /// Per class, per feature variance plus the smoothing (`classes × p`).
    pub var: Matrix,
    /// Log prior per class.
    pub log_prior: Vec<f64>,
}

impl GaussianNb {
    /// Fits; `var_smoothing` times the largest feature variance is added to every variance.
    pub fn fit(x: &Matrix, y: &[usize], n_classes: usize, var_smoothing: f64) -> Self {
        let (n, p) = (x.rows(), x.cols());
        let mut max_var: f64 = 0.0;
        for j in 0..p {
            let mean = (0..n).map(|i| x.get(i, j)).sum::<f64>() / n as f64;
            let var = (0..n).map(|i| (x.get(i, j) - mean).powi(2)).sum::<f64>() / n as f64;
            max_var = max_var.max(var);
        }
        let epsilon = var_smoothing * max_var;
        let mut mean = Matrix::zeros(n_classes, p);
        let mut var = Matrix::zeros(n_classes, p);
        let mut count = vec![0usize; n_classes];
        for i in 0..n {
            count[y[i]] += 1;
            for (m, v) in mean.row_mut(y[i]).iter_mut().zip(x.row(i)) {
                *m += v;
            }
        }
        for c in 0..n_classes {
            let cnt = count[c].max(1) as f64;
            mean.row_mut(c).iter_mut().for_each(|m| *m /= cnt);
        }
        for i in 0..n {
            let c = y[i];
            for j in 0..p {
                let d = x.get(i, j) - mean.get(c, j);
                var.row_mut(c)[j] += d * d;
            }
        }
        for c in 0..n_classes {
            let cnt = count[c].max(1) as f64;
            var.row_mut(c)
                .iter_mut()
                .for_each(|v| *v = *v / cnt + epsilon);
        }
        let log_prior = count
            .iter()
            .map(|&c| {
                if c == 0 {
                    f64::NEG_INFINITY
                } else {
                    (c as f64 / n as f64).ln()
                }
            })
            .collect();
        Self {
            mean,
            var,
            log_prior,
        }
    }

    /// Joint log-likelihoods (`n × classes`).
    pub fn joint_log_likelihood(&self, x: &Matrix) -> Matrix {
        let k = self.log_prior.len();
        let mut out = Matrix::zeros(x.rows(), k);
        let log_norm: Vec<f64> = (0..k)
            .map(|c| {
                -0.5 * self
                    .var
                    .row(c)
                    .iter()
                    .map(|v| (2.0 * std::f64::consts::PI * v).ln())
                    .sum::<f64>()
            })
            .collect();
        for i in 0..x.rows() {
            let xi = x.row(i);
            for c in 0..k {
                let quad: f64 = xi
                    .iter()
                    .zip(self.mean.row(c))
                    .zip(self.var.row(c))
                    .map(|((x, m), v)| (x - m) * (x - m) / v)
                    .sum();
                out.row_mut(i)[c] = self.log_prior[c] + log_norm[c] - 0.5 * quad;
            }
        }
        out
    }

    /// Predicted classes.
    pub fn predict(&self, x: &Matrix) -> Vec<usize> {
        let jll = self.joint_log_likelihood(x);
        (0..x.rows()).map(|i| argmax(jll.row(i))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_and_bayes_learn_blobs_even_with_a_constant_feature() {
        let rows: Vec<Vec<f64>> = (0..30)
            .map(|i| vec![(i % 2) as f64 * 4.0 + ((i * 7) % 5) as f64 / 5.0, 1.0])
            .collect();
        let y: Vec<usize> = (0..30).map(|i| i % 2).collect();
        let x = Matrix::from_rows(&rows);
        let knn = Knn {
            k: 5,
            n_classes: 2,
            x: x.clone(),
            y: y.clone(),
        };
        let p = knn.proba(&x);
        assert!((0..30).all(|i| argmax(p.row(i)) == y[i]));
        let nb = GaussianNb::fit(&x, &y, 2, 1e-9);
        assert_eq!(nb.predict(&x), y);
        assert!(nb.joint_log_likelihood(&x).all_finite());
    }

    /// Keys (1, 1, 0, 0) and k = 3: scikit-learn's brute-force search keeps rows 1, 2, 3
    /// (`NearestNeighbors(n_neighbors=3, algorithm="brute")` on points at those squared
    /// distances), where ties to the lower index would keep 0, 2, 3 — and the vote follows.
    #[test]
    fn ties_at_the_kth_distance_are_broken_as_scikit_learn_breaks_them() {
        let mut heap = Heap::new(3);
        let mut kept: Vec<usize> = nearest(&[1.0, 1.0, 0.0, 0.0], &mut heap).collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![1, 2, 3]);
        let knn = Knn {
            k: 3,
            n_classes: 2,
            x: Matrix::from_rows(&[vec![1.0], vec![-1.0], vec![0.0], vec![0.0]]),
            y: vec![1, 0, 1, 0],
        };
        let p = knn.proba(&Matrix::from_rows(&[vec![0.0]]));
        assert_eq!(argmax(p.row(0)), 0, "{:?}", p.row(0));
    }
}
