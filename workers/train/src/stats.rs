//! Univariate statistics per feature, as SciPy and statsmodels compute them: Welch's t-test
//! (`ttest_ind(equal_var=False)`), one-way ANOVA (`f_oneway`), Pearson (`pearsonr`) and Spearman
//! (`spearmanr`, average ranks for ties) correlations with two-sided p-values, and the
//! Benjamini–Hochberg (`fdrcorrection`) and Bonferroni corrections.
//!
//! p-values come from `statrs`' Student's t and Fisher–Snedecor F distributions.

use statrs::distribution::{ContinuousCDF, FisherSnedecor, StudentsT};

/// A test result: statistic, two-sided p-value, effect size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    /// t, F or r.
    pub statistic: f64,
    /// p-value (NaN when undefined, e.g. a constant feature).
    pub p: f64,
    /// Cohen's d (t), η² (ANOVA) or r.
    pub effect_size: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample variance (ddof = 1).
fn var(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)
}

/// Welch's t-test of `a` against `b` (t > 0 when `a`'s mean is larger).
pub fn welch_t(a: &[f64], b: &[f64]) -> TestResult {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (m1, m2) = (mean(a), mean(b));
    let (v1, v2) = (var(a), var(b));
    let (s1, s2) = (v1 / n1, v2 / n2);
    let t = (m1 - m2) / (s1 + s2).sqrt();
    let df = (s1 + s2).powi(2) / (s1 * s1 / (n1 - 1.0) + s2 * s2 / (n2 - 1.0));
    let pooled = (((n1 - 1.0) * v1 + (n2 - 1.0) * v2) / (n1 + n2 - 2.0)).sqrt();
    TestResult {
        statistic: t,
        p: t_two_sided(t, df),
        effect_size: (m1 - m2) / pooled,
    }
}

/// One-way ANOVA across groups.
pub fn anova(groups: &[Vec<f64>]) -> TestResult {
    let n: f64 = groups.iter().map(|g| g.len() as f64).sum();
    let k = groups.len() as f64;
    let grand = groups.iter().flatten().sum::<f64>() / n;
    let ssb: f64 = groups
        .iter()
        .map(|g| g.len() as f64 * (mean(g) - grand).powi(2))
        .sum();
    let ssw: f64 = groups
        .iter()
        .map(|g| {
            let m = mean(g);
            g.iter().map(|x| (x - m).powi(2)).sum::<f64>()
        })
        .sum();
    let (dfb, dfw) = (k - 1.0, n - k);
    let f = (ssb / dfb) / (ssw / dfw);
    TestResult {
        statistic: f,
        p: f_sf(f, dfb, dfw),
        effect_size: ssb / (ssb + ssw),
    }
}

/// Pearson's r (NaN when either side is constant).
pub fn pearson_r(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// Pearson correlation with its two-sided p-value (t with n − 2 degrees of freedom).
pub fn pearson(x: &[f64], y: &[f64]) -> TestResult {
    let r = pearson_r(x, y);
    TestResult {
        statistic: r,
        p: correlation_p(r, x.len() as f64),
        effect_size: r,
    }
}

/// Spearman correlation: Pearson on average ranks, p-value as SciPy's (t, n − 2).
pub fn spearman(x: &[f64], y: &[f64]) -> TestResult {
    pearson(&ranks(x), &ranks(y))
}

fn correlation_p(r: f64, n: f64) -> f64 {
    if !r.is_finite() {
        return f64::NAN;
    }
    if r.abs() >= 1.0 {
        return 0.0;
    }
    let df = n - 2.0;
    let t = r * (df / ((1.0 - r) * (1.0 + r))).sqrt();
    t_two_sided(t, df)
}

/// Average ranks (1-based), ties sharing their mean rank.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Benjamini–Hochberg adjusted p-values (statsmodels' `fdrcorrection`, `indep`); NaN stays NaN
/// and does not count.
pub fn fdr_bh(p: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = idx.len() as f64;
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank as f64 + 1.0));
        out[i] = running.min(1.0);
    }
    out
}

/// Bonferroni adjusted p-values (NaN does not count).
pub fn bonferroni(p: &[f64]) -> Vec<f64> {
    let m = p.iter().filter(|v| !v.is_nan()).count() as f64;
    p.iter().map(|v| (v * m).min(1.0)).collect()
}

/// Two-sided p-value of Student's t with `df` degrees of freedom (SciPy's `2 · t.sf(|t|, df)`).
pub fn t_two_sided(t: f64, df: f64) -> f64 {
    if !t.is_finite() || !df.is_finite() || df <= 0.0 {
        return f64::NAN;
    }
    StudentsT::new(0.0, 1.0, df).map_or(f64::NAN, |d| (2.0 * d.sf(t.abs())).min(1.0))
}

/// Upper tail of the F distribution with `d1` and `d2` degrees of freedom (SciPy's `f.sf`).
pub fn f_sf(f: f64, d1: f64, d2: f64) -> f64 {
    if !f.is_finite() || f < 0.0 {
        return f64::NAN;
    }
    FisherSnedecor::new(d1, d2).map_or(f64::NAN, |d| d.sf(f))
}

/// Univariate statistics of the rows' features: the test per feature, both corrections, the
/// group sizes. An error says why the rows cannot be tested.
pub fn compute_stats(
    test: broker_schemas::StatsTest,
    x: &[Vec<f64>],
    labels: &[String],
    covariate: Option<&[f64]>,
    groups: &[String],
    alpha: f64,
) -> Result<broker_schemas::results::StatsResults, String> {
    use broker_schemas::results::{FeatureStat, StatsResults};
    use broker_schemas::StatsTest;
    let p = x.first().map_or(0, Vec::len);
    if x.len() < 3 || p == 0 {
        return Err(format!(
            "{} samples with {p} features: too few for statistics",
            x.len()
        ));
    }
    let mut group_sizes = std::collections::BTreeMap::new();
    let results: Vec<TestResult> = match test {
        StatsTest::WelchT | StatsTest::Anova => {
            let mut names: Vec<String> = if groups.is_empty() {
                let mut l = labels.to_vec();
                l.sort();
                l.dedup();
                l
            } else {
                groups.to_vec()
            };
            names.dedup();
            let members: Vec<Vec<usize>> = names
                .iter()
                .map(|g| (0..labels.len()).filter(|&i| &labels[i] == g).collect())
                .collect();
            for (name, m) in names.iter().zip(&members) {
                if m.len() < 2 {
                    return Err(format!(
                        "group \"{name}\" has {} sample(s); each group needs at least 2",
                        m.len()
                    ));
                }
                group_sizes.insert(name.clone(), m.len());
            }
            if test == StatsTest::WelchT && names.len() != 2 {
                return Err(format!(
                    "welch_t compares 2 groups, found {}: {}",
                    names.len(),
                    names.join(", ")
                ));
            }
            if names.len() < 2 {
                return Err("anova needs at least 2 groups".into());
            }
            (0..p)
                .map(|j| {
                    let values: Vec<Vec<f64>> = members
                        .iter()
                        .map(|m| m.iter().map(|&i| x[i][j]).collect())
                        .collect();
                    if test == StatsTest::WelchT {
                        welch_t(&values[0], &values[1])
                    } else {
                        anova(&values)
                    }
                })
                .collect()
        }
        StatsTest::Pearson | StatsTest::Spearman => {
            let c = covariate.ok_or("a correlation needs a covariate")?;
            (0..p)
                .map(|j| {
                    let col: Vec<f64> = x.iter().map(|r| r[j]).collect();
                    if test == StatsTest::Pearson {
                        pearson(&col, c)
                    } else {
                        spearman(&col, c)
                    }
                })
                .collect()
        }
    };
    let p_values: Vec<f64> = results.iter().map(|r| r.p).collect();
    let fdr = fdr_bh(&p_values);
    let bonf = bonferroni(&p_values);
    let finite = |v: f64, fallback: f64| if v.is_finite() { v } else { fallback };
    let features = results
        .iter()
        .enumerate()
        .map(|(j, r)| FeatureStat {
            name: format!("f{j}"),
            statistic: finite(r.statistic, 0.0),
            p: finite(r.p, 1.0),
            p_fdr: finite(fdr[j], 1.0),
            p_bonferroni: finite(bonf[j], 1.0),
            effect_size: finite(r.effect_size, 0.0),
            significant: fdr[j] < alpha,
        })
        .collect();
    Ok(StatsResults {
        test: test.as_str().to_owned(),
        covariate: None,
        groups: group_sizes,
        alpha,
        features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // t = 2.0 with 10 df: two-sided p = 0.0734 (tables).
        assert!((t_two_sided(2.0, 10.0) - 0.073_388_034_770_740_37).abs() < 1e-9);
        // F = 3.0 with (2, 12) df: upper tail 0.0878 (scipy.stats.f.sf(3, 2, 12)).
        assert!((f_sf(3.0, 2.0, 12.0) - 0.087_791_495_198_902_6).abs() < 1e-9);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        let adj = fdr_bh(&[0.01, 0.04, 0.03, 0.5]);
        assert!(
            (adj[0] - 0.04).abs() < 1e-12
                && (adj[1] - 0.0533333333333).abs() < 1e-9
                && (adj[3] - 0.5).abs() < 1e-12
        );
        assert_eq!(bonferroni(&[0.01, 0.5]), vec![0.02, 1.0]);
    }
}
