//! Data generators shared by the benches (`mod shared;` in a bench's root file).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Regions of the synthetic connectivity set (its rows are the upper triangle: 116 · 115 / 2 =
/// 6,670 edges).
pub const REGIONS: usize = 116;

/// Latent networks behind the synthetic connectivity set.
const NETWORKS: usize = 12;

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A synthetic connectivity set: `subjects` rows of 6,670 edges with the structure of real
/// connectivity data — a few strong shared components over a noise floor. Each edge loads on 12
/// latent networks (standard normal loadings); each subject expresses network k with a standard
/// normal strength of scale 1/√(k+1), so the spectrum falls off and the first ten principal
/// components are well apart from each other and from the noise; each edge adds independent
/// noise (sd 0.25). The odd subjects (`true`, the patients) express the first network half a
/// standard deviation more and are shifted by 0.04 on every 20th edge (5 % of the edges): a
/// difference a linear model finds only in part, as in real data.
/// Deterministic (ChaCha8, seed 18): the same subjects give the same numbers.
pub fn connectivity(subjects: usize) -> (Vec<Vec<f32>>, Vec<bool>) {
    let edges = REGIONS * (REGIONS - 1) / 2;
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    let loadings: Vec<[f64; NETWORKS]> = (0..edges)
        .map(|_| std::array::from_fn(|_| normal(&mut rng)))
        .collect();
    let (mut rows, mut patients) = (Vec::new(), Vec::new());
    for s in 0..subjects {
        let patient = s % 2 == 1;
        let strength: [f64; NETWORKS] = std::array::from_fn(|k| {
            let z = normal(&mut rng) + if patient && k == 0 { 0.5 } else { 0.0 };
            0.1 * z / ((k + 1) as f64).sqrt()
        });
        rows.push(
            loadings
                .iter()
                .enumerate()
                .map(|(e, w)| {
                    let shared: f64 = w.iter().zip(&strength).map(|(a, b)| a * b).sum();
                    let shift = if patient && e % 20 == 0 { 0.04 } else { 0.0 };
                    (shared + 0.25 * normal(&mut rng) + shift) as f32
                })
                .collect(),
        );
        patients.push(patient);
    }
    (rows, patients)
}
