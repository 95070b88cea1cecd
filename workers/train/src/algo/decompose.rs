//! Symmetric eigendecomposition (cyclic Jacobi) for PCA.

/// Eigenvalues (descending) and eigenvectors (`vectors[k]` belongs to `values[k]`) of a symmetric
/// row-major `d × d` matrix.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let scale: f64 = m
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * d + j] * m[i * d + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = m[p * d + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (m[q * d + q] - m[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (mkp, mkq) = (m[k * d + p], m[k * d + q]);
                    m[k * d + p] = c * mkp - s * mkq;
                    m[k * d + q] = s * mkp + c * mkq;
                }
                for k in 0..d {
                    let (mpk, mqk) = (m[p * d + k], m[q * d + k]);
                    m[p * d + k] = c * mpk - s * mqk;
                    m[q * d + k] = s * mpk + c * mqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| m[b * d + b].total_cmp(&m[a * d + a]).then(a.cmp(&b)));
    let values = order.iter().map(|&k| m[k * d + k]).collect();
    let vectors = order
        .iter()
        .map(|&k| {
            let mut col: Vec<f64> = (0..d).map(|i| v[i * d + k]).collect();
            // Deterministic sign: the largest |component| is positive.
            let big = col
                .iter()
                .cloned()
                .fold(0.0f64, |acc, x| if x.abs() > acc.abs() { x } else { acc });
            if big < 0.0 {
                col.iter_mut().for_each(|x| *x = -*x);
            }
            col
        })
        .collect();
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_of_a_small_symmetric_matrix() {
        let a = [2.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 5.0];
        let (values, vectors) = symmetric_eigen(&a, 3);
        assert!(
            (values[0] - 5.0).abs() < 1e-10
                && (values[1] - 3.0).abs() < 1e-10
                && (values[2] - 1.0).abs() < 1e-10
        );
        let v = &vectors[1];
        assert!((v[0] - v[1]).abs() < 1e-10 && v[2].abs() < 1e-10);
    }
}
