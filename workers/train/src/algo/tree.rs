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

/// The training rows as the tree builder reads them: per feature, each row's rank among the
/// feature's distinct values (feature-major, so a node reads one contiguous column), and those
/// distinct values in order. Sorting a node's rows is then sorting integer keys, and splits
/// fall between neighbouring distinct values exactly as on the values themselves.
#[derive(Debug)]
pub struct Ranked {
    n: usize,
    ranks: Vec<u32>,
    values: Vec<Vec<f64>>,
}

impl Ranked {
    /// Ranks every column of `x` (once per forest: every tree shares it).
    pub fn new(x: &Matrix) -> Self {
        let (n, p) = (x.rows(), x.cols());
        let mut ranks = vec![0u32; n * p];
        let mut values = Vec::with_capacity(p);
        let mut column: Vec<(f64, u32)> = Vec::with_capacity(n);
        for f in 0..p {
            column.clear();
            column.extend((0..n).map(|r| (x.get(r, f), r as u32)));
            column.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            let mut distinct: Vec<f64> = Vec::new();
            for &(v, r) in &column {
                if distinct.last() != Some(&v) {
                    distinct.push(v);
                }
                ranks[f * n + r as usize] = (distinct.len() - 1) as u32;
            }
            values.push(distinct);
        }
        Self { n, ranks, values }
    }

    fn rank(&self, f: usize, row: u32) -> u32 {
        self.ranks[f * self.n + row as usize]
    }
}

/// Per-row targets as the builder uses them.
#[derive(Clone, Copy)]
enum Y<'a> {
    Classes(&'a [usize], usize),
    Values(&'a [f64]),
}

/// Weighted target statistics of a set of rows: class weights, or (weight, Σ w·y, Σ w·y²).
#[derive(Clone, Debug)]
struct Stats {
    weight: f64,
    classes: Vec<f64>,
    sum: f64,
    sum_sq: f64,
}

impl Stats {
    fn of(y: Y<'_>, rows: &[u32], weights: &[u32]) -> Self {
        let mut s = Stats {
            weight: 0.0,
            classes: vec![0.0; if let Y::Classes(_, k) = y { k } else { 0 }],
            sum: 0.0,
            sum_sq: 0.0,
        };
        for &r in rows {
            let w = f64::from(weights[r as usize]);
            s.weight += w;
            match y {
                Y::Classes(c, _) => s.classes[c[r as usize]] += w,
                Y::Values(z) => {
                    let v = z[r as usize];
                    s.sum += w * v;
                    s.sum_sq += w * v * v;
                }
            }
        }
        s
    }

    /// Gini impurity or variance.
    fn impurity(&self) -> f64 {
        if self.weight <= 0.0 {
            return 0.0;
        }
        if self.classes.is_empty() {
            let mean = self.sum / self.weight;
            (self.sum_sq / self.weight - mean * mean).max(0.0)
        } else {
            1.0 - self
                .classes
                .iter()
                .map(|v| (v / self.weight).powi(2))
                .sum::<f64>()
        }
    }

    /// The leaf's value: class proportions or the mean.
    fn value(&self) -> Vec<f64> {
        let w = self.weight.max(f64::MIN_POSITIVE);
        if self.classes.is_empty() {
            vec![self.sum / w]
        } else {
            self.classes.iter().map(|v| v / w).collect()
        }
    }
}

impl Tree {
    /// Grows a tree on the rows of `x` weighted by `weights` (bootstrap counts; 0 leaves a row
    /// out), as scikit-learn grows one from sample weights: impurities and leaf values weigh
    /// rows by their counts, while `min_samples_split` and `min_samples_leaf` count rows.
    pub fn fit(
        x: &Ranked,
        y: Targets<'_>,
        task: TreeTask,
        weights: &[u32],
        params: TreeParams,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let p = x.values.len();
        let converted: Vec<f64>;
        let y = match (task, y) {
            (TreeTask::Classify(k), Targets::Classes(c)) => Y::Classes(c, k),
            (_, Targets::Values(z)) => Y::Values(z),
            (TreeTask::Regress, Targets::Classes(c)) => {
                converted = c.iter().map(|&v| v as f64).collect();
                Y::Values(&converted)
            }
        };
        let mut tree = Tree {
            task,
            nodes: Vec::new(),
            importances: vec![0.0; p],
        };
        let mut rows: Vec<u32> = (0..x.n as u32)
            .filter(|&r| weights[r as usize] > 0)
            .collect();
        let mut features: Vec<usize> = (0..p).collect();
        let mut keys: Vec<u64> = Vec::with_capacity(rows.len());
        let root = Stats::of(y, &rows, weights);
        tree.nodes.push(Node {
            feature: None,
            threshold: 0.0,
            left: 0,
            right: 0,
            value: root.value(),
        });
        // (start, end, depth, node, the node's statistics)
        let mut stack = vec![(0usize, rows.len(), 0usize, 0usize, root)];
        while let Some((start, end, depth, node, stats)) = stack.pop() {
            let m = end - start;
            let impurity = stats.impurity();
            let can_split = m >= params.min_samples_split
                && m >= 2 * params.min_samples_leaf
                && params.max_depth.is_none_or(|d| depth < d)
                && impurity > 1e-12;
            if !can_split {
                continue;
            }
            features.shuffle(rng);
            // (child impurity sum, feature, last rank going left)
            let mut best: Option<(f64, usize, u32)> = None;
            let mut visited = 0;
            for &f in features.iter() {
                if visited >= params.max_features {
                    break;
                }
                keys.clear();
                keys.extend(
                    rows[start..end]
                        .iter()
                        .map(|&r| (u64::from(x.rank(f, r)) << 32) | u64::from(r)),
                );
                keys.sort_unstable();
                if keys[0] >> 32 == keys[m - 1] >> 32 {
                    continue; // constant here: does not count towards max_features
                }
                visited += 1;
                if let Some((score, rank)) =
                    best_split(y, &stats, &keys, weights, params.min_samples_leaf)
                {
                    if best.is_none_or(|(s, _, _)| score < s - 1e-12) {
                        best = Some((score, f, rank));
                    }
                }
            }
            let Some((score, f, rank)) = best else {
                continue;
            };
            let gain = stats.weight * impurity - score;
            tree.importances[f] += gain.max(0.0);
            // Rows going left first, in place.
            let mut split = start;
            for i in start..end {
                if x.rank(f, rows[i]) <= rank {
                    rows.swap(i, split);
                    split += 1;
                }
            }
            let (lo, hi) = (x.values[f][rank as usize], x.values[f][rank as usize + 1]);
            let mut threshold = lo / 2.0 + hi / 2.0;
            if threshold >= hi {
                threshold = lo;
            }
            let left_stats = Stats::of(y, &rows[start..split], weights);
            let right_stats = Stats::of(y, &rows[split..end], weights);
            let left = tree.nodes.len();
            for s in [&left_stats, &right_stats] {
                tree.nodes.push(Node {
                    feature: None,
                    threshold: 0.0,
                    left: 0,
                    right: 0,
                    value: s.value(),
                });
            }
            let n = &mut tree.nodes[node];
            n.feature = Some(f as u32);
            n.threshold = threshold;
            n.left = left as u32;
            n.right = left as u32 + 1;
            stack.push((split, end, depth + 1, left + 1, right_stats));
            stack.push((start, split, depth + 1, left, left_stats));
        }
        let total: f64 = tree.importances.iter().sum();
        if total > 0.0 {
            for v in &mut tree.importances {
                *v /= total;
            }
        }
        tree
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

/// The best split of a node's rows sorted by `(rank << 32) | row`: `(Σ W·impurity over the
/// two children, the last rank going left)`, only between distinct values, each child keeping
/// at least `min_leaf` rows.
fn best_split(
    y: Y<'_>,
    node: &Stats,
    keys: &[u64],
    weights: &[u32],
    min_leaf: usize,
) -> Option<(f64, u32)> {
    let m = keys.len();
    let mut best: Option<(f64, u32)> = None;
    let row = |k: usize| (keys[k] & 0xFFFF_FFFF) as usize;
    let rank = |k: usize| (keys[k] >> 32) as u32;
    let mut consider = |k: usize, score: f64| {
        // Between positions k − 1 and k.
        if k < min_leaf || m - k < min_leaf || rank(k - 1) == rank(k) {
            return;
        }
        if best.is_none_or(|(s, _)| score < s - 1e-12) {
            best = Some((score, rank(k - 1)));
        }
    };
    let total_w = node.weight;
    let mut w_left = 0.0;
    match y {
        Y::Classes(c, _) => {
            let total = &node.classes;
            let mut left = vec![0.0; total.len()];
            let mut sq_left = 0.0;
            let mut sq_right: f64 = total.iter().map(|v| v * v).sum();
            for k in 1..m {
                let r = row(k - 1);
                let (cls, w) = (c[r], f64::from(weights[r]));
                let (l, rr) = (left[cls], total[cls] - left[cls]);
                sq_left += 2.0 * l * w + w * w;
                sq_right -= 2.0 * rr * w - w * w;
                left[cls] += w;
                w_left += w;
                let w_right = total_w - w_left;
                // W·gini = W − Σc²/W per side.
                let score = (w_left - sq_left / w_left) + (w_right - sq_right / w_right);
                consider(k, score);
            }
        }
        Y::Values(z) => {
            let (mut sum_l, mut sq_l) = (0.0, 0.0);
            for k in 1..m {
                let r = row(k - 1);
                let (v, w) = (z[r], f64::from(weights[r]));
                sum_l += w * v;
                sq_l += w * v * v;
                w_left += w;
                let w_right = total_w - w_left;
                let sum_r = node.sum - sum_l;
                let sq_r = node.sum_sq - sq_l;
                let score = (sq_l - sum_l * sum_l / w_left) + (sq_r - sum_r * sum_r / w_right);
                consider(k, score);
            }
        }
    }
    best
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
        let ranked = Ranked::new(x);
        let mut weights = vec![0u32; n];
        let trees = (0..n_trees)
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(
                    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .wrapping_add(t as u64),
                );
                if bootstrap {
                    weights.fill(0);
                    for _ in 0..n {
                        weights[rng.random_range(0..n)] += 1;
                    }
                } else {
                    weights.fill(1);
                }
                Tree::fit(&ranked, y, task, &weights, params, &mut rng)
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
