//! Validation schemes: which rows each fold trains and tests on.
//!
//! - `stratified_k_fold`: [`crate::folds::stratified_k_fold`] on the classes (plain shuffled
//!   k-fold for regression);
//! - `repeated_k_fold`: the same, `repeats` times with seeds `seed, seed + 1, …`;
//! - `leave_one_out`: one fold per row;
//! - `leave_one_site_out`: one fold per site (sorted by name), testing on that site;
//! - `held_out_sites`: one split, training on every site but the `test_sites`.
//!
//! Folds are numbered from 1 across repeats (repeat r's fold f is `r·k + f`).

use std::collections::BTreeSet;

use broker_schemas::CvScheme;

use crate::folds::stratified_k_fold;

/// The scheme with its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheme {
    /// Which scheme.
    pub kind: CvScheme,
    /// k.
    pub folds: usize,
    /// Shuffle seed.
    pub seed: u64,
    /// Repeats of `repeated_k_fold` (0 means 10).
    pub repeats: usize,
    /// Sites tested on by `held_out_sites`.
    pub test_sites: Vec<String>,
}

/// One split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Repeat (0-based).
    pub repeat: usize,
    /// Fold number, 1-based across repeats.
    pub fold: usize,
    /// The site tested on (leave-one-site-out), or the test sites joined by `+` (held-out).
    pub name: Option<String>,
    /// Training rows, ascending.
    pub train: Vec<usize>,
    /// Test rows, ascending.
    pub test: Vec<usize>,
}

/// Makes the splits. `strata` are class indices for stratification (`None` for regression).
pub fn make_splits(
    scheme: &Scheme,
    strata: Option<&[usize]>,
    sites: &[String],
) -> Result<Vec<Split>, String> {
    let n = sites.len();
    let kfold = |seed: u64, repeat: usize| -> Result<Vec<Split>, String> {
        let folds = match strata {
            Some(y) => stratified_k_fold(y, scheme.folds, seed).map_err(|e| e.to_string())?,
            None => {
                if n < scheme.folds {
                    return Err(format!(
                        "{n} samples cannot be split into {} folds",
                        scheme.folds
                    ));
                }
                stratified_k_fold(&vec![0u8; n], scheme.folds, seed).map_err(|e| e.to_string())?
            }
        };
        Ok(folds
            .into_iter()
            .enumerate()
            .map(|(f, fold)| Split {
                repeat,
                fold: repeat * scheme.folds + f + 1,
                name: None,
                train: fold.train,
                test: fold.test,
            })
            .collect())
    };
    match scheme.kind {
        CvScheme::StratifiedKFold => kfold(scheme.seed, 0),
        CvScheme::RepeatedKFold => {
            let repeats = if scheme.repeats == 0 {
                10
            } else {
                scheme.repeats
            };
            let mut all = Vec::new();
            for r in 0..repeats {
                all.extend(kfold(scheme.seed.wrapping_add(r as u64), r)?);
            }
            Ok(all)
        }
        CvScheme::LeaveOneOut => {
            if n < 2 {
                return Err("leave-one-out needs at least 2 samples".into());
            }
            Ok((0..n)
                .map(|i| Split {
                    repeat: 0,
                    fold: i + 1,
                    name: None,
                    train: (0..n).filter(|&j| j != i).collect(),
                    test: vec![i],
                })
                .collect())
        }
        CvScheme::LeaveOneSiteOut => {
            let names: BTreeSet<&str> = sites.iter().map(String::as_str).collect();
            if names.len() < 2 {
                return Err(format!(
                    "leave-one-site-out needs samples from at least 2 sites, found {}",
                    names.len()
                ));
            }
            Ok(names
                .iter()
                .enumerate()
                .map(|(f, site)| Split {
                    repeat: 0,
                    fold: f + 1,
                    name: Some((*site).to_owned()),
                    train: (0..n).filter(|&i| sites[i] != *site).collect(),
                    test: (0..n).filter(|&i| sites[i] == *site).collect(),
                })
                .collect())
        }
        CvScheme::HeldOutSites => {
            if scheme.test_sites.is_empty() {
                return Err("held_out_sites needs validation.test_sites".into());
            }
            let test_sites: BTreeSet<&str> = scheme.test_sites.iter().map(String::as_str).collect();
            let test: Vec<usize> = (0..n)
                .filter(|&i| test_sites.contains(sites[i].as_str()))
                .collect();
            let train: Vec<usize> = (0..n)
                .filter(|&i| !test_sites.contains(sites[i].as_str()))
                .collect();
            if test.is_empty() {
                return Err(format!(
                    "no samples from the test sites {}",
                    scheme.test_sites.join(", ")
                ));
            }
            if train.is_empty() {
                return Err("no samples left to train on outside the test sites".into());
            }
            Ok(vec![Split {
                repeat: 0,
                fold: 1,
                name: Some(test_sites.iter().copied().collect::<Vec<_>>().join("+")),
                train,
                test,
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(kind: CvScheme) -> Scheme {
        Scheme {
            kind,
            folds: 3,
            seed: 1,
            repeats: 2,
            test_sites: vec!["c".into()],
        }
    }

    #[test]
    fn every_scheme_partitions_its_rows() {
        let sites: Vec<String> = (0..12).map(|i| ["a", "b", "c"][i % 3].to_owned()).collect();
        let y: Vec<usize> = (0..12).map(|i| i % 2).collect();
        let loso = make_splits(&scheme(CvScheme::LeaveOneSiteOut), Some(&y), &sites).unwrap();
        assert_eq!(loso.len(), 3);
        for s in &loso {
            let site = s.name.as_deref().unwrap();
            assert!(
                s.test.iter().all(|&i| sites[i] == site)
                    && s.train.iter().all(|&i| sites[i] != site)
            );
        }
        let held = make_splits(&scheme(CvScheme::HeldOutSites), Some(&y), &sites).unwrap();
        assert_eq!(held.len(), 1);
        assert!(held[0].train.iter().all(|&i| sites[i] != "c") && held[0].test.len() == 4);
        assert_eq!(
            make_splits(&scheme(CvScheme::LeaveOneOut), Some(&y), &sites)
                .unwrap()
                .len(),
            12
        );
        let rep = make_splits(&scheme(CvScheme::RepeatedKFold), Some(&y), &sites).unwrap();
        assert_eq!(rep.len(), 6);
        assert_ne!(rep[0].test, rep[3].test);
        assert_eq!(rep.last().unwrap().fold, 6);
        let plain = make_splits(&scheme(CvScheme::StratifiedKFold), None, &sites).unwrap();
        let mut all: Vec<usize> = plain.iter().flat_map(|s| s.test.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..12).collect::<Vec<_>>());
        let one_site = vec!["a".to_owned(); 12];
        assert!(make_splits(&scheme(CvScheme::LeaveOneSiteOut), Some(&y), &one_site).is_err());
    }
}
