//! Data generators shared by the benches (`mod shared;` in a bench's root file).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Regions of the synthetic connectivity set (its rows are the upper triangle: 116 · 115 / 2 =
/// 6,670 edges).
pub const REGIONS: usize = 116;

/// A synthetic connectivity set: `subjects` rows of 6,670 edges, uniform in [-0.5, 0.5), odd
/// subjects (`true`, the patients) shifted by 0.05 on every 20th edge (5 % of the edges): a
/// difference a linear model finds only in part, as in real data.
/// Deterministic (ChaCha8, seed 18): the same subjects give the same numbers.
pub fn connectivity(subjects: usize) -> (Vec<Vec<f32>>, Vec<bool>) {
    let edges = REGIONS * (REGIONS - 1) / 2;
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    let (mut rows, mut patients) = (Vec::new(), Vec::new());
    for s in 0..subjects {
        let patient = s % 2 == 1;
        rows.push(
            (0..edges)
                .map(|e| {
                    let shift = if patient && e % 20 == 0 { 0.05 } else { 0.0 };
                    rng.random_range(-1.0f32..1.0) * 0.5 + shift
                })
                .collect(),
        );
        patients.push(patient);
    }
    (rows, patients)
}
