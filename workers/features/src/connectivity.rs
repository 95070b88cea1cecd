//! Functional connectivity: Pearson correlation between regions, upper triangle, Fisher z.

use std::cell::RefCell;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis, Slice};
use wide::f64x4;

/// Extractor name stored in `features.extractor`.
pub const EXTRACTOR: &str = "connectivity";

/// Bumped when the computation changes, so old and new features can coexist.
pub const VERSION: i32 = 1;

/// |r| is clipped below 1 so that Fisher z stays finite (z(0.9999999) ≈ 8.4).
const MAX_R: f64 = 1.0 - 1e-7;

/// Regions per block row of the correlation matrix. The matrix is symmetric, so each block row
/// is one product over the columns from its diagonal on: 57 % of the whole product for 116
/// regions (63 % with blocks of 32). A multiple of the matrix kernel's width (8), small enough to
/// skip most of the lower half, large enough that each product stays efficient: for 200 × 116,
/// 357 µs against 387 µs with 32 and 389 µs with 8 (`cargo bench --bench connectivity`, 2-core
/// AMD EPYC); 1,200 × 400 takes the same as with 32.
const BLOCK: usize = 16;

thread_local! {
    /// The centred values and the correlation matrix, reused from call to call: allocating them
    /// afresh (100–200 KB each) cost a page fault per 4 KB, a tenth of the time.
    static SCRATCH: RefCell<(Vec<f64>, Vec<f64>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Connectivity of a `timepoints × regions` matrix in row-major order: for each pair i < j (row
/// by row of the upper triangle), `atanh(r_ij)`. A region with no variance correlates 0 with all
/// (ingest refuses such a series, naming the region; this keeps the function total).
pub fn fisher_z(values: &[f32], timepoints: usize) -> Vec<f32> {
    assert!(
        timepoints > 0 && values.len() % timepoints == 0,
        "values are not T rows of equal length"
    );
    let regions = values.len() / timepoints;
    SCRATCH.with_borrow_mut(|(x, g)| {
        // Centre each region's column: the correlations are then the Gram matrix XᵀX scaled by
        // each column's inverse length, computed by matrix products (matrixmultiply's kernels,
        // with the CPU's vector instructions), about 4× faster than a dot product per pair.
        // Every pass walks the row-major input in order, a row at a time, so that the sums run
        // across regions.
        x.clear();
        let mut mean = vec![0.0; regions];
        for row in values.chunks_exact(regions) {
            let start = x.len();
            x.extend(row.iter().map(|&v| f64::from(v)));
            mean.iter_mut().zip(&x[start..]).for_each(|(m, v)| *m += v);
        }
        mean.iter_mut().for_each(|m| *m /= timepoints as f64);
        let mut scale = vec![0.0; regions];
        for row in x.chunks_exact_mut(regions) {
            for ((v, m), s) in row.iter_mut().zip(&mean).zip(&mut scale) {
                *v -= m;
                *s += *v * *v;
            }
        }
        // A flat region's column is all zeros after centring: its scale 0 makes it correlate 0.
        scale
            .iter_mut()
            .for_each(|s| *s = if *s > 0.0 { 1.0 / s.sqrt() } else { 0.0 });
        g.clear();
        g.resize(regions * regions, 0.0);
        let x = ArrayView2::from_shape((timepoints, regions), x.as_slice())
            .expect("timepoints × regions values");
        let mut gram = ArrayViewMut2::from_shape((regions, regions), g.as_mut_slice())
            .expect("regions × regions values");
        // One product per block row (not per block): each packs its operands once.
        for i in (0..regions).step_by(BLOCK) {
            let rows = Slice::from(i..(i + BLOCK).min(regions));
            let columns = Slice::from(i..regions);
            let mut block = gram.slice_axis_mut(Axis(0), rows);
            block.slice_axis_inplace(Axis(1), columns);
            general_mat_mul(
                1.0,
                &x.slice_axis(Axis(1), rows).t(),
                &x.slice_axis(Axis(1), columns),
                0.0,
                &mut block,
            );
        }
        let mut out = Vec::with_capacity(regions * regions.saturating_sub(1) / 2);
        let mut r = Vec::with_capacity(regions);
        for i in 0..regions {
            let (si, gram_row) = (scale[i], &g[i * regions + i + 1..(i + 1) * regions]);
            r.clear();
            r.extend(
                gram_row
                    .iter()
                    .zip(&scale[i + 1..])
                    .map(|(c, sj)| c * si * sj),
            );
            fisher(&r, &mut out);
        }
        out
    })
}

/// Appends atanh(r), clipped, of each r as ½·ln((1 + r)/(1 − r)): one division and one `ln`, a
/// fraction of `f64::atanh`'s time (whose `log1p` took a quarter of [`fisher_z`]), with the
/// logarithms four at a time (`wide`'s vector `ln`, within an ulp of the scalar one; the
/// scalar `ln` took a third of the time left). Near r = 0 the quotient loses digits `log1p`
/// would keep, an absolute error of about 1e-16, below what the f32 result can show for any
/// |z| > 1e-8.
fn fisher(r: &[f64], out: &mut Vec<f32>) {
    let quotient = |r: f64| {
        let r = r.clamp(-MAX_R, MAX_R);
        (1.0 + r) / (1.0 - r)
    };
    let mut fours = r.chunks_exact(4);
    for four in &mut fours {
        let q = f64x4::from([
            quotient(four[0]),
            quotient(four[1]),
            quotient(four[2]),
            quotient(four[3]),
        ]);
        out.extend((q.ln() * 0.5).to_array().map(|z| z as f32));
    }
    out.extend(
        fours
            .remainder()
            .iter()
            .map(|&r| (0.5 * quotient(r).ln()) as f32),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hand_computed_case() {
        // Three regions over four timepoints (rows):
        //   a = 1 2 3 4,  b = 2 4 6 9,  c = 4 3 2 1
        // r(a,b): a-ā = (-1.5,-0.5,0.5,1.5), b-b̄ = (-3.25,-1.25,0.75,3.75)
        //   Σxy = 4.875+0.625+0.375+5.625 = 11.5; Σx² = 5; Σy² = 10.5625+1.5625+0.5625+14.0625 = 26.75
        //   r = 11.5 / sqrt(5 · 26.75) = 0.994393…
        // r(a,c) = -1 (clipped), r(b,c) = -0.994393…
        let values = [1.0, 2.0, 4.0, 2.0, 4.0, 3.0, 3.0, 6.0, 2.0, 4.0, 9.0, 1.0];
        let z = fisher_z(&values, 4);
        let r_ab = 11.5f64 / (5.0f64 * 26.75).sqrt();
        assert_eq!(z.len(), 3);
        assert!((f64::from(z[0]) - r_ab.atanh()).abs() < 1e-5, "{z:?}");
        assert!((f64::from(z[1]) - (-MAX_R).atanh()).abs() < 1e-3, "{z:?}");
        assert!((f64::from(z[2]) + r_ab.atanh()).abs() < 1e-5, "{z:?}");
    }

    /// The textbook formula, one pair at a time, against the matrix products: few regions (one
    /// block), and more than two blocks with a partial last one.
    #[test]
    fn matches_pearson_pair_by_pair() {
        for (t, r) in [(37, 9), (41, 2 * BLOCK + 11)] {
            let values: Vec<f32> = (0..t * r)
                .map(|i| ((i * 7919 % 211) as f32 / 13.0).sin() * (1 + i % 5) as f32)
                .collect();
            let z = fisher_z(&values, t);
            let column = |j: usize| {
                (0..t)
                    .map(|k| f64::from(values[k * r + j]))
                    .collect::<Vec<_>>()
            };
            let mut k = 0;
            for i in 0..r {
                for j in i + 1..r {
                    let (a, b) = (column(i), column(j));
                    let (ma, mb) = (
                        a.iter().sum::<f64>() / t as f64,
                        b.iter().sum::<f64>() / t as f64,
                    );
                    let sab: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
                    let saa: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
                    let sbb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
                    let want = (sab / (saa * sbb).sqrt()).atanh();
                    assert!(
                        (f64::from(z[k]) - want).abs() < 1e-5,
                        "{t}×{r}: pair ({i}, {j})"
                    );
                    k += 1;
                }
            }
            assert_eq!(k, z.len());
        }
    }

    #[test]
    fn fisher_z_equals_atanh_to_the_last_bits_of_an_f32() {
        // Seven at a time: the vector path and the scalar remainder both.
        let r: Vec<f64> = (-1000..=1000).map(|i| f64::from(i) / 1000.0).collect();
        for seven in r.chunks(7) {
            let mut z = Vec::new();
            fisher(seven, &mut z);
            assert_eq!(z.len(), seven.len());
            for (&r, &z) in seven.iter().zip(&z) {
                let want = r.clamp(-MAX_R, MAX_R).atanh() as f32;
                assert!(
                    (z - want).abs() <= f32::EPSILON * want.abs().max(1e-6),
                    "r = {r}: {z} against {want}"
                );
            }
        }
        let mut z = Vec::new();
        fisher(&[0.0, 1.0, -1.0, 0.5, 1.0], &mut z);
        assert_eq!(z[0], 0.0);
        assert!(z.iter().all(|z| z.is_finite()), "{z:?}");
    }

    #[test]
    fn a_flat_region_correlates_zero() {
        let values = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0];
        assert_eq!(fisher_z(&values, 3), vec![0.0]);
    }

    #[test]
    fn output_has_one_value_per_region_pair() {
        let values: Vec<f32> = (0..200 * 10).map(|i| ((i * 7919) % 101) as f32).collect();
        let z = fisher_z(&values, 200);
        assert_eq!(z.len(), 45);
        assert!(z.iter().all(|v| v.is_finite()));
    }
}
