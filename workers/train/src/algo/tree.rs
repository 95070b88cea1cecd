//! CART decision trees and random forests (classification by Gini impurity, regression by squared
//! error), as scikit-learn builds them: best split over a random subset of features (all of them
//! for a single tree, √p for a classification forest, p for a regression forest), thresholds
//! halfway between neighbouring values, bootstrap samples per tree, and forest probabilities
//! averaged over trees (not votes). Seeded with ChaCha8: the same seed gives the same forest.
//!
//! A tree stores class proportions in its leaves (so a forest has class probabilities and a ROC
//! curve) and impurity-based feature importances, and is plain serialisable data.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;

/// What a tree predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeTask {
    /// Class proportions over this many classes.
    Classify(usize),
    /// A mean.
    Regress,
}

/// Growth limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TreeParams {
    /// Depth limit (`None`: grow until pure).
    pub max_depth: Option<usize>,
    /// A node needs this many rows to be split.
    pub min_samples_split: usize,
    /// Each child keeps at least this many rows.
    pub min_samples_leaf: usize,
    /// Features tried per split.
    pub max_features: usize,
}

/// A node: internal when `feature` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Node {
    feature: Option<u32>,
    threshold: f64,
    left: u32,
    right: u32,
    value: Vec<f64>,
}

/// A fitted tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    task: TreeTask,
    nodes: Vec<Node>,
    /// Impurity decrease per feature, normalised to sum to 1 (all zero for a stump).
    importances: Vec<f64>,
}

/// Targets: class indices or values.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// Class indices.
    Classes(&'a [usize]),
    /// Values.
    Values(&'a [f64]),
}

impl Tree {
    /// Grows a tree on the rows `sample` (repeats allowed: a bootstrap) of `x`.
    pub fn fit(
        x: &Matrix,
        y: Targets<'_>,
        task: TreeTask,
        sample: Vec<usize>,
        params: TreeParams,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let p = x.cols();
        let mut tree = Tree {
            task,
            nodes: Vec::new(),
            importances: vec![0.0; p],
        };
        let mut features: Vec<usize> = (0..p).collect();
        let mut buf: Vec<(f64, usize)> = Vec::with_capacity(sample.len());
        // (rows, depth, node index)
        let root_value = tree.leaf_value(y, &sample);
        tree.nodes.push(Node {
            feature: None,
            threshold: 0.0,
            left: 0,
            right: 0,
            value: root_value,
        });
        let mut stack = vec![(sample, 0usize, 0usize)];
        while let Some((rows, depth, node)) = stack.pop() {
            let m = rows.len();
            let impurity = tree.impurity(y, &rows);
            let can_split = m >= params.min_samples_split
                && m >= 2 * params.min_samples_leaf
                && params.max_depth.is_none_or(|d| depth < d)
                && impurity > 1e-12;
            if !can_split {
                continue;
            }
            features.shuffle(rng);
            let mut best: Option<(f64, usize, f64)> = None; // (child impurity sum, feature, threshold)
            let mut visited = 0;
            for &f in features.iter() {
                if visited >= params.max_features {
                    break;
                }
                buf.clear();
                buf.extend(rows.iter().map(|&r| (x.get(r, f), r)));
                buf.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                if buf[0].0 == buf[m - 1].0 {
                    continue; // constant here: does not count towards max_features
                }
                visited += 1;
                if let Some((score, threshold)) = tree.best_split(y, &buf, params.min_samples_leaf)
                {
                    if best.is_none_or(|(s, _, _)| score < s - 1e-12) {
                        best = Some((score, f, threshold));
                    }
                }
            }
            let Some((score, f, threshold)) = best else {
                continue;
            };
            let gain = m as f64 * impurity - score;
            tree.importances[f] += gain.max(0.0);
            let (left_rows, right_rows): (Vec<usize>, Vec<usize>) =
                rows.iter().partition(|&&r| x.get(r, f) <= threshold);
            let left = tree.nodes.len();
            let lv = tree.leaf_value(y, &left_rows);
            let rv = tree.leaf_value(y, &right_rows);
            tree.nodes.push(Node {
                feature: None,
                threshold: 0.0,
                left: 0,
                right: 0,
                value: lv,
            });
            tree.nodes.push(Node {
                feature: None,
                threshold: 0.0,
                left: 0,
                right: 0,
                value: rv,
            });
            let n = &mut tree.nodes[node];
            n.feature = Some(f as u32);
            n.threshold = threshold;
            n.left = left as u32;
            n.right = left as u32 + 1;
            stack.push((right_rows, depth + 1, left + 1));
            stack.push((left_rows, depth + 1, left));
        }
        let total: f64 = tree.importances.iter().sum();
        if total > 0.0 {
            for v in &mut tree.importances {
                *v /= total;
            }
        }
        tree
    }

    fn leaf_value(&self, y: Targets<'_>, rows: &[usize]) -> Vec<f64> {
        match (self.task, y) {
            (TreeTask::Classify(k), Targets::Classes(c)) => {
                let mut v = vec![0.0; k];
                for &r in rows {
                    v[c[r]] += 1.0;
                }
                let n = rows.len().max(1) as f64;
                v.iter_mut().for_each(|x| *x /= n);
                v
            }
            (_, Targets::Values(z)) => {
                vec![rows.iter().map(|&r| z[r]).sum::<f64>() / rows.len().max(1) as f64]
            }
            (TreeTask::Regress, Targets::Classes(c)) => {
                vec![rows.iter().map(|&r| c[r] as f64).sum::<f64>() / rows.len().max(1) as f64]
            }
        }
    }

    /// Node impurity (Gini or variance).
    fn impurity(&self, y: Targets<'_>, rows: &[usize]) -> f64 {
        let n = rows.len() as f64;
        match (self.task, y) {
            (TreeTask::Classify(k), Targets::Classes(c)) => {
                let mut counts = vec![0.0; k];
                for &r in rows {
                    counts[c[r]] += 1.0;
                }
                1.0 - counts.iter().map(|v| (v / n) * (v / n)).sum::<f64>()
            }
            (_, Targets::Values(z)) => {
                let mean = rows.iter().map(|&r| z[r]).sum::<f64>() / n;
                rows.iter().map(|&r| (z[r] - mean).powi(2)).sum::<f64>() / n
            }
            _ => 0.0,
        }
    }

    /// The best threshold on sorted `(value, row)` pairs: `(n_l·imp_l + n_r·imp_r, threshold)`.
    fn best_split(
        &self,
        y: Targets<'_>,
        sorted: &[(f64, usize)],
        min_leaf: usize,
    ) -> Option<(f64, f64)> {
        let m = sorted.len();
        let mut best: Option<(f64, f64)> = None;
        let consider = |k: usize, score: f64, best: &mut Option<(f64, f64)>| {
            // Split between position k-1 and k.
            if k < min_leaf || m - k < min_leaf || sorted[k - 1].0 >= sorted[k].0 {
                return;
            }
            if best.is_none_or(|(s, _)| score < s - 1e-12) {
                let mut t = sorted[k - 1].0 / 2.0 + sorted[k].0 / 2.0;
                if t >= sorted[k].0 {
                    t = sorted[k - 1].0;
                }
                *best = Some((score, t));
            }
        };
        match (self.task, y) {
            (TreeTask::Classify(nc), Targets::Classes(c)) => {
                let mut total = vec![0.0; nc];
                for &(_, r) in sorted {
                    total[c[r]] += 1.0;
                }
                let mut left = vec![0.0; nc];
                let mut sq_left = 0.0;
                let mut sq_right: f64 = total.iter().map(|v| v * v).sum();
                for k in 1..m {
                    let cls = c[sorted[k - 1].1];
                    let (l, r) = (left[cls], total[cls] - left[cls]);
                    sq_left += 2.0 * l + 1.0;
                    sq_right -= 2.0 * r - 1.0;
                    left[cls] += 1.0;
                    let (nl, nr) = (k as f64, (m - k) as f64);
                    // n·gini = n − Σc²/n per side.
                    let score = (nl - sq_left / nl) + (nr - sq_right / nr);
                    consider(k, score, &mut best);
                }
            }
            (_, Targets::Values(z)) => {
                let total: f64 = sorted.iter().map(|&(_, r)| z[r]).sum();
                let total_sq: f64 = sorted.iter().map(|&(_, r)| z[r] * z[r]).sum();
                let (mut sum_l, mut sq_l) = (0.0, 0.0);
                for k in 1..m {
                    let v = z[sorted[k - 1].1];
                    sum_l += v;
                    sq_l += v * v;
                    let (nl, nr) = (k as f64, (m - k) as f64);
                    let sum_r = total - sum_l;
                    let sq_r = total_sq - sq_l;
                    let score = (sq_l - sum_l * sum_l / nl) + (sq_r - sum_r * sum_r / nr);
                    consider(k, score, &mut best);
                }
            }
            _ => {}
        }
        best
    }

    /// The leaf value for one row.
    pub fn leaf(&self, row: &[f64]) -> &[f64] {
        let mut node = &self.nodes[0];
        while let Some(f) = node.feature {
            node = if row[f as usize] <= node.threshold {
                &self.nodes[node.left as usize]
            } else {
                &self.nodes[node.right as usize]
            };
        }
        &node.value
    }

    /// Normalised impurity-decrease importances.
    pub fn importances(&self) -> &[f64] {
        &self.importances
    }

    /// Number of nodes.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }
}

/// A random forest (or one tree: `n_trees = 1`, no bootstrap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    task: TreeTask,
    trees: Vec<Tree>,
}

impl Forest {
    /// Grows `n_trees` trees on bootstrap samples (or one tree on all rows when `bootstrap` is
    /// false), each seeded from `seed` and its index.
    pub fn fit(
        x: &Matrix,
        y: Targets<'_>,
        task: TreeTask,
        n_trees: usize,
        bootstrap: bool,
        params: TreeParams,
        seed: u64,
    ) -> Self {
        let n = x.rows();
        let trees = (0..n_trees)
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .wrapping_add(t as u64),
                );
                let sample: Vec<usize> = if bootstrap {
                    (0..n).map(|_| rng.random_range(0..n)).collect()
                } else {
                    (0..n).collect()
                };
                Tree::fit(x, y, task, sample, params, &mut rng)
            })
            .collect();
        Self { task, trees }
    }

    /// Mean leaf value over the trees: class probabilities (`n × classes`) or predictions
    /// (`n × 1`).
    pub fn predict_values(&self, x: &Matrix) -> Matrix {
        let width = match self.task {
            TreeTask::Classify(k) => k,
            TreeTask::Regress => 1,
        };
        let mut out = Matrix::zeros(x.rows(), width);
        let scale = 1.0 / self.trees.len() as f64;
        for i in 0..x.rows() {
            let row = x.row(i);
            let acc = out.row_mut(i);
            for tree in &self.trees {
                for (a, v) in acc.iter_mut().zip(tree.leaf(row)) {
                    *a += v * scale;
                }
            }
        }
        out
    }

    /// Mean of the trees' normalised importances.
    pub fn importances(&self) -> Vec<f64> {
        let p = self.trees.first().map_or(0, |t| t.importances.len());
        let mut out = vec![0.0; p];
        for t in &self.trees {
            for (o, v) in out.iter_mut().zip(&t.importances) {
                *o += v / self.trees.len() as f64;
            }
        }
        out
    }

    /// Whether it predicts values (not classes).
    pub fn is_regressor(&self) -> bool {
        self.task == TreeTask::Regress
    }

    /// Number of trees.
    pub fn len(&self) -> usize {
        self.trees.len()
    }

    /// Whether there are no trees.
    pub fn is_empty(&self) -> bool {
        self.trees.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_fits_its_training_rows_and_a_forest_is_repeatable() {
        let rows: Vec<Vec<f64>> = (0..40)
            .map(|i| vec![(i % 7) as f64, (i / 7) as f64, ((i * 13) % 11) as f64])
            .collect();
        let y: Vec<usize> = (0..40)
            .map(|i| usize::from((i % 7) + (i / 7) > 6))
            .collect();
        let x = Matrix::from_rows(&rows);
        let params = TreeParams {
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: 3,
        };
        let tree = Forest::fit(
            &x,
            Targets::Classes(&y),
            TreeTask::Classify(2),
            1,
            false,
            params,
            0,
        );
        let p = tree.predict_values(&x);
        assert!((0..40).all(|i| (p.get(i, 1) > 0.5) == (y[i] == 1)));
        let imp = tree.importances();
        assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-9 && imp[2] < imp[0] + imp[1]);

        let params = TreeParams {
            max_features: 1,
            ..params
        };
        let a = Forest::fit(
            &x,
            Targets::Classes(&y),
            TreeTask::Classify(2),
            10,
            true,
            params,
            7,
        );
        let b = Forest::fit(
            &x,
            Targets::Classes(&y),
            TreeTask::Classify(2),
            10,
            true,
            params,
            7,
        );
        assert_eq!(a, b);
        let z: Vec<f64> = (0..40).map(|i| (i % 7) as f64 * 2.0).collect();
        let r = Forest::fit(
            &x,
            Targets::Values(&z),
            TreeTask::Regress,
            1,
            false,
            params,
            0,
        );
        let pr = r.predict_values(&x);
        assert!((0..40).all(|i| (pr.get(i, 0) - z[i]).abs() < 1e-9));
    }
}
