//! The preprocessing before a model, fitted on training rows only: TF-IDF of a text project's
//! term counts, standardisation (global or per site), ANOVA F-test feature selection keeping a
//! percentile, and PCA.
//!
//! [`PipelineConfig::fit`] learns every step from the rows it is given and nothing else; the
//! cross-validation driver gives it a fold's training rows, so test rows never reach a fitted
//! statistic (the leakage that z-scoring pooled data causes). [`FittedPipeline::transform`] then
//! applies the same steps to any rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use broker_schemas::ScalerKind;
use serde::{Deserialize, Serialize};

use faer::MatRef;

use crate::algo::decompose::principal_axes;
use crate::matrix::{dot, Matrix};
use crate::preprocess::StandardScaler;
use crate::tfidf::{FittedTfidf, TfidfConfig};

/// Which steps run, before fitting.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// A text project's features: TF-IDF of term counts before every other step, or the
    /// hashed features as stored. `None` for other projects.
    pub text: Option<TextStep>,
    /// Standardisation (`Auto` is resolved from the project's kind before fitting; left
    /// unresolved, it standardises globally).
    pub scaler: ScalerKind,
    /// Keep this percentile of features by their univariate F statistic.
    pub select_percentile: Option<f64>,
    /// PCA components.
    pub pca_components: Option<usize>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            text: None,
            scaler: ScalerKind::Global,
            select_percentile: None,
            pca_components: None,
        }
    }
}

/// A text run's features.
#[derive(Debug, Clone, PartialEq)]
pub enum TextStep {
    /// The rows are term counts; TF-IDF is fitted on the training rows.
    Tfidf {
        /// `min_df` and `max_features`.
        config: TfidfConfig,
        /// The count matrix's column names (every term of the run's documents), shared by
        /// every fold's fit.
        vocabulary: Vocabulary,
    },
    /// The rows are the features worker's hashed term frequencies: nothing to fit.
    Hashed,
}

/// Terms, shared without copying (a fold's config is cloned per fit).
#[derive(Clone, PartialEq, Default)]
pub struct Vocabulary(pub Arc<Vec<String>>);

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vocabulary({} terms)", self.0.len())
    }
}

/// A fitted TF-IDF step with the names of the columns it keeps, so that the model carries its
/// own vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedText {
    /// Kept count columns and their IDF.
    pub tfidf: FittedTfidf,
    /// The kept terms, in column order.
    pub terms: Vec<String>,
}
/// The targets a supervised step (selection) may look at.
#[derive(Debug, Clone, Copy)]
pub enum Supervision<'a> {
    /// Class indices with the number of classes.
    Classes(&'a [usize], usize),
    /// Numeric targets.
    Values(&'a [f64]),
}

/// The fitted scaler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FittedScaler {
    /// Identity.
    None,
    /// One scaler.
    Global(StandardScaler),
    /// One scaler per site, and a global one for sites not seen in training.
    PerSite {
        /// Over all training rows.
        global: StandardScaler,
        /// Per training site.
        sites: BTreeMap<String, StandardScaler>,
    },
}

/// A fitted PCA: the training mean and the components (rows, unit length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    /// Training mean per feature.
    pub mean: Vec<f64>,
    /// `components × features`.
    pub components: Matrix,
    /// Variance explained per component.
    pub explained_variance: Vec<f64>,
}

/// The fitted steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedPipeline {
    /// Input features (for text: the run's count columns).
    pub n_features: usize,
    /// TF-IDF (text), first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<FittedText>,
    /// Standardisation.
    pub scaler: FittedScaler,
    /// The kept features (indices into the input), when selecting.
    pub selected: Option<Vec<usize>>,
    /// PCA, when reducing.
    pub pca: Option<Pca>,
}

/// Why a pipeline cannot be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    /// A parameter out of range.
    #[error("{0}")]
    Config(String),
    /// The rows cannot be standardised.
    #[error(transparent)]
    Scaler(#[from] crate::preprocess::ScalerError),
}

impl PipelineConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.select_percentile {
            if !(p.is_finite() && p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "pipeline.select_percentile must be in (0, 100], got {p}"
                ));
            }
        }
        if self.pca_components == Some(0) {
            return Err("pipeline.pca_components must be at least 1".into());
        }
        if let Some(TextStep::Tfidf { config, .. }) = &self.text {
            if config.min_df == 0 {
                return Err("pipeline.text.min_df must be at least 1".into());
            }
            if config.max_features == Some(0) {
                return Err("pipeline.text.max_features must be at least 1".into());
            }
        }
        Ok(())
    }

    /// Fits every step on `x` (with its `sites` and targets) only.
    pub fn fit(
        &self,
        x: &Matrix,
        sites: &[String],
        target: Supervision<'_>,
    ) -> Result<FittedPipeline, PipelineError> {
        self.validate().map_err(PipelineError::Config)?;
        let n_features = x.cols();
        // TF-IDF learns its terms and IDF from these (training) rows only: a term no training
        // document has gets no column.
        let text = match &self.text {
            Some(TextStep::Tfidf { config, vocabulary }) => {
                let tfidf = FittedTfidf::fit(x, config);
                let terms = tfidf
                    .kept
                    .iter()
                    .map(|&j| vocabulary.0.get(j).cloned().unwrap_or_default())
                    .collect();
                Some(FittedText { tfidf, terms })
            }
            Some(TextStep::Hashed) | None => None,
        };
        let weighed = text.as_ref().map(|t| t.tfidf.transform(x));
        let x = weighed.as_ref().unwrap_or(x);
        let rows: Vec<&[f64]> = (0..x.rows()).map(|i| x.row(i)).collect();
        let scaler = match self.scaler {
            ScalerKind::None => FittedScaler::None,
            ScalerKind::Global | ScalerKind::Auto => {
                FittedScaler::Global(StandardScaler::fit_matrix(x)?)
            }
            ScalerKind::PerSite => {
                let global = StandardScaler::fit(&rows)?;
                let mut by_site: BTreeMap<&str, Vec<&[f64]>> = BTreeMap::new();
                for (row, site) in rows.iter().zip(sites) {
                    by_site.entry(site.as_str()).or_default().push(*row);
                }
                let mut fitted = BTreeMap::new();
                for (site, site_rows) in by_site {
                    fitted.insert(site.to_owned(), StandardScaler::fit(&site_rows)?);
                }
                FittedScaler::PerSite {
                    global,
                    sites: fitted,
                }
            }
        };
        let mut pipeline = FittedPipeline {
            n_features,
            text,
            scaler,
            selected: None,
            pca: None,
        };
        if self.select_percentile.is_none() && self.pca_components.is_none() {
            // Nothing after the scaler learns from the scaled rows: don't compute them.
            return Ok(pipeline);
        }
        let mut z = pipeline.scale(x, sites)?;
        if let Some(percentile) = self.select_percentile {
            let scores = match target {
                Supervision::Classes(y, k) => f_classif(&z, y, k),
                Supervision::Values(v) => f_regression(&z, v),
            };
            let kept = select_percentile(&scores, percentile);
            z = z.select_cols(&kept);
            pipeline.selected = Some(kept);
        }
        if let Some(k) = self.pca_components {
            pipeline.pca = Some(fit_pca(&z, k));
        }
        Ok(pipeline)
    }
}

impl FittedPipeline {
    fn scale(&self, x: &Matrix, sites: &[String]) -> Result<Matrix, PipelineError> {
        Ok(match &self.scaler {
            FittedScaler::None => x.clone(),
            FittedScaler::Global(s) => s.transform_matrix(x)?,
            FittedScaler::PerSite {
                global,
                sites: by_site,
            } => {
                let mut out = Vec::with_capacity(x.rows());
                for i in 0..x.rows() {
                    let scaler = sites.get(i).and_then(|s| by_site.get(s)).unwrap_or(global);
                    out.push(scaler.transform(x.row(i))?);
                }
                Matrix::from_rows(&out)
            }
        })
    }

    /// Applies the fitted steps to rows (with their sites, for per-site scaling).
    pub fn transform(&self, x: &Matrix, sites: &[String]) -> Result<Matrix, PipelineError> {
        let weighed = self.text.as_ref().map(|t| t.tfidf.transform(x));
        let mut z = self.scale(weighed.as_ref().unwrap_or(x), sites)?;
        if let Some(kept) = &self.selected {
            z = z.select_cols(kept);
        }
        if let Some(pca) = &self.pca {
            z = pca.transform(&z);
        }
        Ok(z)
    }

    /// The names of the features [`FittedPipeline::weights_to_input`] maps to, when the
    /// pipeline knows them: a text run's kept terms.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.text.as_ref().map(|t| &t.terms[..])
    }

    /// Maps per-model-input weights back to the input features (for text: the kept terms):
    /// through the PCA components (for linear weights) and the selection (unselected features
    /// get 0).
    pub fn weights_to_input(&self, weights: &[f64], linear: bool) -> Option<Vec<f64>> {
        let mut w = weights.to_vec();
        if let Some(pca) = &self.pca {
            if !linear {
                return None;
            }
            let p = pca.components.cols();
            let mut back = vec![0.0; p];
            for (c, wc) in w.iter().enumerate() {
                for (b, v) in back.iter_mut().zip(pca.components.row(c)) {
                    *b += wc * v;
                }
            }
            w = back;
        }
        if let Some(kept) = &self.selected {
            let width = self
                .text
                .as_ref()
                .map_or(self.n_features, |t| t.terms.len());
            let mut full = vec![0.0; width];
            for (&j, v) in kept.iter().zip(&w) {
                full[j] = *v;
            }
            w = full;
        }
        Some(w)
    }
}

impl Pca {
    /// Projects centred rows on the components.
    pub fn transform(&self, x: &Matrix) -> Matrix {
        let (n, p, k) = (x.rows(), x.cols(), self.components.rows());
        let rows = MatRef::from_row_major_slice(x.data(), n, p);
        let axes = MatRef::from_row_major_slice(self.components.data(), k, p);
        // (x − mean)·Cᵀ = x·Cᵀ − mean·Cᵀ: one matrix product, no centred copy.
        let projected = rows * axes.transpose();
        crate::algo::avx::clear_upper();
        let offset: Vec<f64> = (0..k)
            .map(|c| dot(&self.mean, self.components.row(c)))
            .collect();
        let mut out = Matrix::zeros(n, k);
        for i in 0..n {
            for (c, o) in out.row_mut(i).iter_mut().enumerate() {
                *o = projected[(i, c)] - offset[c];
            }
        }
        out
    }
}

/// PCA of the rows (see [`principal_axes`] for the method).
fn fit_pca(x: &Matrix, k: usize) -> Pca {
    let (n, p) = (x.rows(), x.cols());
    let mut mean = vec![0.0; p];
    for i in 0..n {
        for (m, v) in mean.iter_mut().zip(x.row(i)) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let centred = faer::Mat::<f64>::from_fn(n, p, |i, j| x.get(i, j) - mean[j]);
    let axes = principal_axes(centred.as_ref(), k);
    let k = axes.variance.len();
    Pca {
        mean,
        components: Matrix::new(k, p, axes.components),
        explained_variance: axes.variance,
    }
}

/// The features scikit-learn's `SelectPercentile(percentile)` keeps for `scores`, ascending.
///
/// As its `_get_support_mask`: NaN scores become the smallest finite value (ranked last); the
/// threshold is `np.percentile(scores, 100 − percentile)` (linear interpolation); every score
/// above it is kept, then the features tied at it in index order up to
/// `int(p · percentile / 100)` in all (a negative remainder drops ties from the end, as Python's
/// `ties[:r]`). So more than `int(p · percentile / 100)` may be kept (7 of 64 at 10 %). When
/// that keeps nothing, the single best feature (lowest index on ties) is kept instead.
pub fn select_percentile(scores: &[f64], percentile: f64) -> Vec<usize> {
    let p = scores.len();
    if percentile >= 100.0 {
        return (0..p).collect();
    }
    let clean: Vec<f64> = scores
        .iter()
        .map(|&s| if s.is_nan() { f64::MIN } else { s })
        .collect();
    let threshold = numpy_percentile(&clean, 100.0 - percentile);
    let mut kept: Vec<bool> = clean.iter().map(|&s| s > threshold).collect();
    let above = kept.iter().filter(|&&k| k).count() as i64;
    let ties: Vec<usize> = (0..p).filter(|&j| clean[j] == threshold).collect();
    if !ties.is_empty() {
        let max_feats = (p as f64 * percentile / 100.0) as i64;
        let r = max_feats - above;
        let end = if r >= 0 {
            (r as usize).min(ties.len())
        } else {
            ties.len().saturating_sub(r.unsigned_abs() as usize)
        };
        for &j in &ties[..end] {
            kept[j] = true;
        }
    }
    let mut out: Vec<usize> = (0..p).filter(|&j| kept[j]).collect();
    if out.is_empty() && p > 0 {
        let best = (0..p).fold(0, |b, j| if clean[j] > clean[b] { j } else { b });
        out.push(best);
    }
    out
}

/// `np.percentile(values, q)` with numpy's default linear method (and its `_lerp`).
fn numpy_percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let index = (n - 1) as f64 * (q / 100.0);
    let lo = (index.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = index - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// scikit-learn's `f_classif`: the one-way ANOVA F per feature — NaN for a constant feature and
/// infinite for one constant within every class, as scikit-learn's (which
/// [`select_percentile`] ranks as scikit-learn's `SelectPercentile` does).
pub fn f_classif(x: &Matrix, y: &[usize], n_classes: usize) -> Vec<f64> {
    // One pass over the rows: per-class sums and the sum of squares per feature, then
    // scikit-learn's `f_oneway` formula (sstot − ssbn within, from the same sums).
    let (n, p) = (x.rows(), x.cols());
    let mut count = vec![0.0; n_classes];
    let mut sums = vec![0.0; n_classes * p];
    let mut squares = vec![0.0; p];
    for (i, &c) in y.iter().enumerate().take(n) {
        count[c] += 1.0;
        let row = x.row(i);
        for ((s, q), &v) in sums[c * p..(c + 1) * p]
            .iter_mut()
            .zip(squares.iter_mut())
            .zip(row)
        {
            *s += v;
            *q += v * v;
        }
    }
    let present: Vec<usize> = (0..n_classes).filter(|&c| count[c] > 0.0).collect();
    let groups = present.len() as f64;
    let n_f = n as f64;
    let (dfb, dfw) = (groups - 1.0, n_f - groups);
    (0..p)
        .map(|j| {
            let total: f64 = present.iter().map(|&c| sums[c * p + j]).sum();
            let square_of_total = total * total;
            let sstot = squares[j] - square_of_total / n_f;
            let mut ssbn = 0.0;
            for &c in &present {
                let s = sums[c * p + j];
                ssbn += s * s / count[c];
            }
            ssbn -= square_of_total / n_f;
            let sswn = sstot - ssbn;
            (ssbn / dfb) / (sswn / dfw)
        })
        .collect()
}

/// scikit-learn's `f_regression`: F = r² / (1 − r²) · (n − 2) per feature.
pub fn f_regression(x: &Matrix, v: &[f64]) -> Vec<f64> {
    let (n, p) = (x.rows(), x.cols());
    (0..p)
        .map(|j| {
            let col: Vec<f64> = (0..n).map(|i| x.get(i, j)).collect();
            let r = crate::stats::pearson_r(&col, v);
            let f = r * r / (1.0 - r * r) * (n as f64 - 2.0);
            if f.is_finite() {
                f
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (Matrix, Vec<usize>, Vec<String>) {
        let rows: Vec<Vec<f64>> = (0..40)
            .map(|i| {
                let c = (i % 2) as f64;
                vec![
                    c * 3.0 + ((i * 7) % 5) as f64 / 5.0,
                    ((i * 11) % 13) as f64,
                    100.0 + ((i / 2) % 4) as f64,
                    c + ((i * 3) % 7) as f64,
                ]
            })
            .collect();
        let y = (0..40).map(|i| i % 2).collect();
        let sites = (0..40)
            .map(|i| if i < 20 { "a".into() } else { "b".into() })
            .collect();
        (Matrix::from_rows(&rows), y, sites)
    }

    #[test]
    fn selection_keeps_the_informative_features_and_pca_the_variance() {
        let (x, y, sites) = data();
        let config = PipelineConfig {
            scaler: ScalerKind::Global,
            select_percentile: Some(50.0),
            pca_components: Some(1),
            ..PipelineConfig::default()
        };
        let fitted = config.fit(&x, &sites, Supervision::Classes(&y, 2)).unwrap();
        assert_eq!(fitted.selected, Some(vec![0, 3]));
        let z = fitted.transform(&x, &sites).unwrap();
        assert_eq!((z.rows(), z.cols()), (40, 1));
        let w = fitted.weights_to_input(&[1.0], true).unwrap();
        assert_eq!(w.len(), 4);
        assert!(w[1] == 0.0 && w[2] == 0.0 && w[0] != 0.0);
    }

    #[test]
    fn tfidf_is_fitted_on_training_documents_only() {
        let documents: Vec<String> = [
            "red apple sweet",
            "green apple sour",
            "red cherry sweet",
            "green lime sour",
            "red zebra sweet",
            "green zebra sour",
        ]
        .iter()
        .map(|d| d.to_string())
        .collect();
        let counts = crate::tfidf::count(&documents).unwrap();
        let config = PipelineConfig {
            text: Some(TextStep::Tfidf {
                config: TfidfConfig::default(),
                vocabulary: Vocabulary(Arc::new(counts.vocabulary.clone())),
            }),
            scaler: ScalerKind::None,
            ..PipelineConfig::default()
        };
        // "zebra" is only in the test documents (rows 4 and 5).
        let train = counts.counts.select_rows(&[0, 1, 2, 3]);
        let y = [0, 1, 0, 1];
        let sites = vec![String::new(); 4];
        let fitted = config
            .fit(&train, &sites, Supervision::Classes(&y, 2))
            .unwrap();
        let terms = fitted.feature_names().unwrap();
        assert!(terms.iter().all(|t| !t.contains("zebra")), "{terms:?}");
        assert!(terms.iter().any(|t| t == "red apple"));
        let test = counts.counts.select_rows(&[4, 5]);
        let z = fitted.transform(&test, &sites[..2]).unwrap();
        assert_eq!(z.cols(), terms.len(), "no column for a test-only term");
        let model = crate::model::FittedModel::fit(
            &crate::model::ModelSpec::parse("logistic", &BTreeMap::new()).unwrap(),
            &config,
            &train,
            &sites,
            crate::model::Labels::Classes(&y, &["a".into(), "b".into()]),
            0,
        )
        .unwrap();
        let (_, weights) = model.feature_weights().unwrap();
        assert_eq!(weights.len(), terms.len(), "one weight per training term");
    }

    #[test]
    fn per_site_scaling_centres_each_site() {
        let (x, y, sites) = data();
        let config = PipelineConfig {
            scaler: ScalerKind::PerSite,
            ..PipelineConfig::default()
        };
        let fitted = config.fit(&x, &sites, Supervision::Classes(&y, 2)).unwrap();
        let z = fitted.transform(&x, &sites).unwrap();
        for site in 0..2 {
            let mean: f64 = (site * 20..site * 20 + 20)
                .map(|i| z.get(i, 1))
                .sum::<f64>()
                / 20.0;
            assert!(mean.abs() < 1e-9);
        }
    }
}
