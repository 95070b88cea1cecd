//! A dense row-major `f64` matrix: the one data layout every algorithm here works on.
//!
//! Deliberately small: rows, columns, a contiguous buffer, row views and row selection. The
//! algorithms in [`crate::algo`] read rows as slices so the inner loops stay contiguous.

use serde::{Deserialize, Serialize};

/// A dense matrix, rows stored one after another.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// A matrix from its row-major buffer; `data.len()` must be `rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        assert_eq!(data.len(), rows * cols, "buffer length is rows × cols");
        Self { rows, cols, data }
    }

    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self::new(rows, cols, vec![0.0; rows * cols])
    }

    /// A matrix from equally long rows (the caller checked the lengths).
    pub fn from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Self {
        let cols = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(rows.len() * cols);
        for row in rows {
            let row = row.as_ref();
            assert_eq!(row.len(), cols, "rows of equal length");
            data.extend_from_slice(row);
        }
        Self::new(rows.len(), cols, data)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Row `i`, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Element `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// The row-major buffer.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The rows at `index`, in that order.
    pub fn select_rows(&self, index: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(index.len() * self.cols);
        for &i in index {
            data.extend_from_slice(self.row(i));
        }
        Matrix::new(index.len(), self.cols, data)
    }

    /// The columns at `index`, in that order.
    pub fn select_cols(&self, index: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(self.rows * index.len());
        for i in 0..self.rows {
            let row = self.row(i);
            data.extend(index.iter().map(|&j| row[j]));
        }
        Matrix::new(self.rows, index.len(), data)
    }

    /// The rows as vectors.
    pub fn to_rows(&self) -> Vec<Vec<f64>> {
        (0..self.rows).map(|i| self.row(i).to_vec()).collect()
    }

    /// Whether every value is finite.
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    /// The variance of all entries (population), as scikit-learn's `X.var()`.
    pub fn variance(&self) -> f64 {
        let n = self.data.len() as f64;
        if n == 0.0 {
            return 0.0;
        }
        let mean = self.data.iter().sum::<f64>() / n;
        self.data
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum::<f64>()
            / n
    }
}

/// The dot product of two equally long slices.
#[inline]
#[allow(clippy::needless_range_loop)]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Eight independent accumulators over exact chunks: no bounds checks in the loop, so the
    // compiler vectorises it; the summation order is fixed, so results are deterministic.
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// The dot products of four rows with one: `[a0·b, a1·b, a2·b, a3·b]`, reading `b` once (the
/// register-blocked kernel of the distance and kernel matrices).
#[inline]
#[allow(clippy::needless_range_loop)]
pub fn dot4(a: [&[f64]; 4], b: &[f64]) -> [f64; 4] {
    let mut acc = [[0.0f64; 4]; 4];
    let n = b.len() / 4 * 4;
    let (a0, a1, a2, a3) = (&a[0][..n], &a[1][..n], &a[2][..n], &a[3][..n]);
    let bb = &b[..n];
    for k in (0..n).step_by(4) {
        for l in 0..4 {
            let v = bb[k + l];
            acc[0][l] += a0[k + l] * v;
            acc[1][l] += a1[k + l] * v;
            acc[2][l] += a2[k + l] * v;
            acc[3][l] += a3[k + l] * v;
        }
    }
    let mut out = [0.0; 4];
    for r in 0..4 {
        out[r] = (acc[r][0] + acc[r][2]) + (acc[r][1] + acc[r][3]);
        for k in n..b.len() {
            out[r] += a[r][k] * b[k];
        }
    }
    out
}

/// For every row of `a`, its dot products with every row of `b`: `a.rows() × b.rows()`.
pub fn gram(a: &Matrix, b: &Matrix) -> Matrix {
    let (m, n) = (a.rows(), b.rows());
    let mut out = Matrix::zeros(m, n);
    let mut i = 0;
    while i + 4 <= m {
        let rows = [a.row(i), a.row(i + 1), a.row(i + 2), a.row(i + 3)];
        for t in 0..n {
            let d = dot4(rows, b.row(t));
            for (r, v) in d.iter().enumerate() {
                out.data[(i + r) * n + t] = *v;
            }
        }
        i += 4;
    }
    for i in i..m {
        for t in 0..n {
            out.data[i * n + t] = dot(a.row(i), b.row(t));
        }
    }
    out
}

/// The squared Euclidean distance of two equally long slices.
#[inline]
pub fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_columns_and_selection() {
        let m = Matrix::from_rows(&[vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
        assert_eq!((m.rows(), m.cols()), (2, 3));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
        assert_eq!(m.select_rows(&[1, 0]).row(0), &[4.0, 5.0, 6.0]);
        assert_eq!(
            m.select_cols(&[2, 0]).to_rows(),
            vec![vec![3.0, 1.0], vec![6.0, 4.0]]
        );
        assert_eq!(dot(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0; 5]), 15.0);
        assert!((m.variance() - 35.0 / 12.0).abs() < 1e-12);
        let a = Matrix::from_rows(
            &(0..7)
                .map(|i| (0..9).map(|j| (i * 9 + j) as f64 * 0.5).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        );
        let full = gram(&a, &a);
        for i in 0..7 {
            for j in 0..7 {
                assert!((full.get(i, j) - dot(a.row(i), a.row(j))).abs() < 1e-9);
            }
        }
    }
}
