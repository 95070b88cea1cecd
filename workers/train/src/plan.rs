//! How a run is cut into work units, each sized to take seconds, not minutes.
//!
//! A unit validates one [`Pick`] (the request's model, one grid candidate, or the nested search)
//! on a range of splits, for the observed labels or for a range of label permutations. Every
//! unit of a run is independent of the others: they can run on any replica, any thread, in any
//! order. Only the run's last step ([`crate::cv::assemble`]: the grid's choice, the permutation
//! p-value, the final refit) needs them all.
//!
//! The units depend only on the request, the data's shape (rows × features) and the work per
//! unit; they are stored with the run, so every replica computes the units it was planned
//! into. How a run is cut never changes its results, only how long one unit takes.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// The work one unit aims at by default (`TRAIN_UNIT_WORK`), in matrix cells × fits: one fit
/// of an SVC on 1,800 × 64 digits costs about 115,000 cells and a quarter of a second on one
/// core here, so a unit is a few seconds.
pub const UNIT_WORK: u64 = 2_000_000;

/// The most fits a job may ask for, counted by [`fit_count`] (splits × candidates ×
/// (permutations + 1), nested searches included): a job above it is refused.
pub const MAX_FITS: u64 = 2_000_000;

/// Which model a unit validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Pick {
    /// The request's model (no grid).
    Base,
    /// Candidate `i` of the grid, in [`crate::cv::grid_candidates`] order.
    Candidate(usize),
    /// The nested search: every candidate by an inner k-fold over the split's training rows,
    /// then the best one on the split.
    Nested,
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitSpec {
    /// These label permutations; `None`: the observed labels.
    pub permutations: Option<Range<usize>>,
    /// The model validated.
    pub pick: Pick,
    /// Indices into the splits of each labelling (a permutation's splits are made from its
    /// labels, and are as many as the observed ones).
    pub splits: Range<usize>,
}

/// The shape of a run, all that its plan depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Rows.
    pub rows: usize,
    /// Features.
    pub features: usize,
    /// Splits of the validation scheme.
    pub splits: usize,
    /// Grid candidates (0: no grid).
    pub candidates: usize,
    /// Inner folds of the nested search (0: not nested).
    pub inner_folds: usize,
    /// Label permutations.
    pub permutations: usize,
}

impl Shape {
    /// Fits of one split of `pick`.
    fn fits_per_split(&self, pick: Pick) -> u64 {
        match pick {
            Pick::Nested => (self.candidates * self.inner_folds + 1) as u64,
            Pick::Base | Pick::Candidate(_) => 1,
        }
    }

    /// The picks validated on each labelling: (observed, permuted).
    fn picks(&self) -> (Vec<Pick>, Vec<Pick>) {
        if self.candidates == 0 {
            return (vec![Pick::Base], vec![Pick::Base]);
        }
        let mut observed: Vec<Pick> = (0..self.candidates).map(Pick::Candidate).collect();
        if self.inner_folds > 0 {
            observed.push(Pick::Nested);
            (observed, vec![Pick::Nested])
        } else {
            let permuted = observed.clone();
            (observed, permuted)
        }
    }
}

/// Every fit of a job: each validated pick's splits, for the observed labels and each
/// permutation, plus the final refit. What the budget ([`MAX_FITS`]) counts.
pub fn fit_count(shape: &Shape) -> u64 {
    let (observed, permuted) = shape.picks();
    let splits = shape.splits as u64;
    let per = |picks: &[Pick]| -> u64 {
        picks
            .iter()
            .map(|&p| shape.fits_per_split(p) * splits)
            .sum()
    };
    per(&observed) + shape.permutations as u64 * per(&permuted) + 1
}

/// The units of a run, observed labels first, each aiming at `work` cells × fits (at least one
/// fit per unit).
pub fn units(shape: &Shape, work: u64) -> Vec<UnitSpec> {
    let cells = (shape.rows.max(1) * shape.features.max(1)) as u64;
    let (observed, permuted) = shape.picks();
    let mut out = Vec::new();
    for pick in observed {
        let cost = cells * shape.fits_per_split(pick);
        for splits in chunks(shape.splits, per_unit(cost, work)) {
            out.push(UnitSpec {
                permutations: None,
                pick,
                splits,
            });
        }
    }
    if shape.permutations > 0 {
        for pick in permuted {
            let cost = cells * shape.fits_per_split(pick);
            let all = cost * shape.splits as u64;
            if all <= work {
                // Whole labellings, several permutations per unit.
                for permutations in chunks(shape.permutations, per_unit(all, work)) {
                    out.push(UnitSpec {
                        permutations: Some(permutations),
                        pick,
                        splits: 0..shape.splits,
                    });
                }
            } else {
                for p in 0..shape.permutations {
                    for splits in chunks(shape.splits, per_unit(cost, work)) {
                        out.push(UnitSpec {
                            permutations: Some(p..p + 1),
                            pick,
                            splits,
                        });
                    }
                }
            }
        }
    }
    out
}

/// How many items of `cost` fit in `work` (at least one).
fn per_unit(cost: u64, work: u64) -> usize {
    (work / cost.max(1)).max(1) as usize
}

/// `0..n` in consecutive ranges of at most `size`.
fn chunks(n: usize, size: usize) -> Vec<Range<usize>> {
    (0..n)
        .step_by(size.max(1))
        .map(|start| start..(start + size).min(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(rows: usize, features: usize) -> Shape {
        Shape {
            rows,
            features,
            splits: 5,
            candidates: 0,
            inner_folds: 0,
            permutations: 0,
        }
    }

    /// Every (labelling, pick, split) of a plan exactly once.
    fn covered(units: &[UnitSpec]) -> Vec<(Option<usize>, Pick, usize)> {
        let mut all: Vec<_> = units
            .iter()
            .flat_map(|u| {
                let perms: Vec<Option<usize>> = match &u.permutations {
                    None => vec![None],
                    Some(r) => r.clone().map(Some).collect(),
                };
                perms.into_iter().flat_map(move |p| {
                    let pick = u.pick;
                    u.splits.clone().map(move |s| (p, pick, s))
                })
            })
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a (labelling, pick, split) twice");
        all
    }

    #[test]
    fn small_data_packs_many_fits_per_unit_and_large_data_one() {
        let mut small = shape(100, 20);
        small.permutations = 1000;
        let few = units(&small, UNIT_WORK);
        assert_eq!(few[0].splits, 0..5, "all observed splits in one unit");
        assert!(few.len() < 10, "{} units", few.len());
        assert_eq!(covered(&few).len(), 5 * 1001);

        let mut large = shape(5000, 6670);
        large.permutations = 3;
        let many = units(&large, UNIT_WORK);
        assert!(many.iter().all(|u| u.splits.len() == 1));
        assert_eq!(many.len(), 5 * 4);
        assert_eq!(covered(&many).len(), 5 * 4);
    }

    #[test]
    fn a_nested_grid_plans_candidates_nested_search_and_nested_permutations() {
        let mut s = shape(1800, 64);
        s.candidates = 9;
        s.inner_folds = 5;
        s.permutations = 20;
        let all = covered(&units(&s, UNIT_WORK));
        // 9 candidates + the nested search on the observed labels, the nested search per
        // permutation.
        assert_eq!(all.len(), (9 + 1) * 5 + 20 * 5);
        assert!(all
            .iter()
            .filter(|(p, ..)| p.is_some())
            .all(|(_, pick, _)| *pick == Pick::Nested));
        assert_eq!(fit_count(&s), 9 * 5 + 46 * 5 + 20 * 46 * 5 + 1);
    }

    #[test]
    fn a_grid_permutes_every_candidate() {
        let mut s = shape(60, 8);
        s.candidates = 3;
        s.permutations = 30;
        let all = covered(&units(&s, UNIT_WORK));
        assert_eq!(all.len(), 3 * 5 * 31);
        assert_eq!(fit_count(&s), 3 * 5 * 31 + 1);
        // One fit per unit at the smallest work.
        let one = units(&s, 1);
        assert_eq!(one.len(), 3 * 5 * 31);
        assert_eq!(covered(&one).len(), 3 * 5 * 31);
    }
}
