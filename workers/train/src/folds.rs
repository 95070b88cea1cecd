//! Stratified k-fold splits: seeded, repeatable, proportion-keeping.
//!
//! The indices of each class are shuffled with a [`ChaCha8Rng`] seeded from the job's seed (ChaCha
//! gives the same stream on every platform), then dealt round-robin into the `k` test folds. The
//! dealing carries on from class to class instead of restarting at fold 0, so:
//!
//! - per class, the folds' counts differ by at most 1 (class proportions are kept);
//! - overall, the folds' sizes differ by at most 1.
//!
//! Classes are visited in their sorted order, so the split depends only on the labels, `k` and the
//! seed (and on the `rand` version's shuffle, which is pinned by `Cargo.lock`).
//!
//! # When is `k` allowed?
//!
//! scikit-learn's `StratifiedKFold` raises an error only when `k` exceeds every class's size, and
//! merely warns when the smallest class has fewer than `k` members. Here **every class must have at
//! least `k` members** (which also implies `k <= n_samples`). A smaller class would leave some test
//! folds without it — their balanced accuracy would then average over fewer classes, their confusion
//! matrices would have empty rows — and a class of one would vanish from a training set (a binary
//! problem then cannot be fitted at all). Failing early with a clear reason beats a run whose
//! per-fold numbers are not comparable.

use std::collections::BTreeMap;
use std::fmt::Display;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The smallest number of folds.
pub const MIN_FOLDS: usize = 2;

/// One fold: the rows to train on and the rows to test on, both sorted ascending and disjoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    /// Indices of the training rows.
    pub train: Vec<usize>,
    /// Indices of the test rows.
    pub test: Vec<usize>,
}

/// Why the rows cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// `k` is below [`MIN_FOLDS`].
    #[error("cross-validation needs at least {MIN_FOLDS} folds, got {k}")]
    TooFewFolds {
        /// The requested number of folds.
        k: usize,
    },
    /// There are no rows at all.
    #[error("there are no samples to split into folds")]
    Empty,
    /// A class is smaller than `k`.
    #[error(
        "class \"{class}\" has {count} sample(s), fewer than the {k} folds: \
         stratified {k}-fold cross-validation needs at least {k} samples of every class"
    )]
    ClassTooSmall {
        /// The class label.
        class: String,
        /// How many rows it has.
        count: usize,
        /// The requested number of folds.
        k: usize,
    },
}

/// Splits rows with these `labels` into `k` stratified folds, shuffled with `seed`.
///
/// Returns `k` folds; every index `0..labels.len()` is in exactly one fold's `test`, and in the
/// `train` of every other fold.
pub fn stratified_k_fold<L: Ord + Display>(
    labels: &[L],
    k: usize,
    seed: u64,
) -> Result<Vec<Fold>, FoldError> {
    if k < MIN_FOLDS {
        return Err(FoldError::TooFewFolds { k });
    }
    if labels.is_empty() {
        return Err(FoldError::Empty);
    }

    let mut by_class: BTreeMap<&L, Vec<usize>> = BTreeMap::new();
    for (i, label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(i);
    }
    if let Some((class, members)) = by_class.iter().find(|(_, members)| members.len() < k) {
        return Err(FoldError::ClassTooSmall {
            class: class.to_string(),
            count: members.len(),
            k,
        });
    }

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tests: Vec<Vec<usize>> = vec![Vec::with_capacity(labels.len() / k + 1); k];
    let mut next = 0;
    for members in by_class.values_mut() {
        members.shuffle(&mut rng);
        for &i in members.iter() {
            tests[next].push(i);
            next = (next + 1) % k;
        }
    }

    let folds = tests
        .into_iter()
        .map(|mut test| {
            test.sort_unstable();
            let mut in_test = vec![false; labels.len()];
            for &i in &test {
                in_test[i] = true;
            }
            let train = (0..labels.len()).filter(|&i| !in_test[i]).collect();
            Fold { train, test }
        })
        .collect();
    Ok(folds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn class_counts(labels: &[u8], rows: &[usize]) -> BTreeMap<u8, usize> {
        let mut counts = BTreeMap::new();
        for &i in rows {
            *counts.entry(labels[i]).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn keeps_class_proportions() {
        // 30 of class 0, 12 of class 1, 8 of class 2: 4 folds.
        let labels: Vec<u8> = std::iter::repeat_n(0, 30)
            .chain(std::iter::repeat_n(1, 12))
            .chain(std::iter::repeat_n(2, 8))
            .collect();
        let folds = stratified_k_fold(&labels, 4, 7).unwrap();
        assert_eq!(folds.len(), 4);
        for fold in &folds {
            let counts = class_counts(&labels, &fold.test);
            assert!((7..=8).contains(&counts[&0]), "{counts:?}");
            assert_eq!(counts[&1], 3);
            assert_eq!(counts[&2], 2);
            assert_eq!(fold.train.len() + fold.test.len(), labels.len());
        }
    }

    #[test]
    fn same_seed_same_folds_other_seed_other_folds() {
        let labels: Vec<u8> = (0..100).map(|i| (i % 3) as u8).collect();
        let a = stratified_k_fold(&labels, 5, 42).unwrap();
        let b = stratified_k_fold(&labels, 5, 42).unwrap();
        let c = stratified_k_fold(&labels, 5, 43).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn shuffles_within_classes() {
        // Without shuffling, fold 0 would get indices 0, 5, 10, ...
        let labels = vec![0u8; 50];
        let folds = stratified_k_fold(&labels, 5, 1).unwrap();
        let unshuffled: Vec<usize> = (0..50).step_by(5).collect();
        assert_ne!(folds[0].test, unshuffled);
    }

    #[test]
    fn rejects_bad_k() {
        let labels = vec!["a", "a", "b", "b", "b"];
        assert_eq!(
            stratified_k_fold(&labels, 1, 0),
            Err(FoldError::TooFewFolds { k: 1 })
        );
        assert_eq!(
            stratified_k_fold(&labels, 3, 0),
            Err(FoldError::ClassTooSmall {
                class: "a".into(),
                count: 2,
                k: 3
            })
        );
        assert!(stratified_k_fold(&labels, 2, 0).is_ok());
        let empty: [u8; 0] = [];
        assert_eq!(stratified_k_fold(&empty, 2, 0), Err(FoldError::Empty));
    }

    #[test]
    fn error_message_names_the_class() {
        let labels = vec!["patient", "control", "control"];
        let message = stratified_k_fold(&labels, 2, 0).unwrap_err().to_string();
        assert!(message.contains("\"patient\" has 1 sample"), "{message}");
    }

    proptest! {
        #[test]
        fn partitions_and_stratifies(
            labels in prop::collection::vec(0u8..4, 1..200),
            k in 2usize..12,
            seed in any::<u64>(),
        ) {
            let smallest = class_counts(&labels, &(0..labels.len()).collect::<Vec<_>>())
                .into_values()
                .min()
                .unwrap_or(0);
            let result = stratified_k_fold(&labels, k, seed);
            if smallest < k {
                let is_class_too_small = matches!(result, Err(FoldError::ClassTooSmall { .. }));
                prop_assert!(is_class_too_small);
                return Ok(());
            }
            let folds = result.unwrap();
            prop_assert_eq!(folds.len(), k);

            // Every index is in exactly one test fold, and trains on every other fold.
            let mut seen = vec![0usize; labels.len()];
            for fold in &folds {
                for &i in &fold.test {
                    seen[i] += 1;
                }
                let mut all: Vec<usize> = fold.train.iter().chain(&fold.test).copied().collect();
                all.sort_unstable();
                prop_assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
            }
            prop_assert!(seen.iter().all(|&n| n == 1));

            // Per class, fold counts differ by at most 1; overall sizes too.
            for class in 0u8..4 {
                let counts: Vec<usize> = folds
                    .iter()
                    .map(|f| f.test.iter().filter(|&&i| labels[i] == class).count())
                    .collect();
                let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                prop_assert!(hi - lo <= 1, "class {}: {:?}", class, counts);
            }
            let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "sizes {:?}", sizes);
        }
    }
}
