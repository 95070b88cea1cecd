//! Text documents → TF-IDF features, as scikit-learn's
//! `TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)` computes them.
//!
//! Two parts, so that nothing is learned from test documents:
//!
//! - [`count`] turns every document of a project into term counts over the vocabulary of all of
//!   them (words and pairs of neighbouring words, sorted). It learns nothing: a term no training
//!   document has is dropped by the fitted step.
//! - [`FittedTfidf::fit`] is a pipeline step fitted on a fold's training rows only, like the
//!   scaler: it keeps the terms in at least `min_df` training documents (the `max_features` most
//!   frequent of them, when set), learns their inverse document frequency
//!   `ln((1 + n) / (1 + df)) + 1` (smooth IDF), and [`FittedTfidf::transform`] weighs any
//!   document's counts `(1 + ln tf) · idf` (sublinear TF) and scales each row to unit length (L2).
//!
//! A token is a maximal run of two or more word characters (letters, digits, `_`) of the
//! lower-cased text: scikit-learn's default `token_pattern`, `(?u)\b\w\w+\b`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;

/// The most cells (documents × vocabulary) a count matrix may have: 2 GB of `f64`.
pub const MAX_CELLS: usize = 250_000_000;

/// The tokens of a document, lower-cased.
pub fn tokens(document: &str) -> Vec<String> {
    let lower = document.to_lowercase();
    lower
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().nth(1).is_some())
        .map(str::to_owned)
        .collect()
}

/// The terms of a document: its tokens, then every pair of neighbouring tokens (`"a b"`).
pub fn terms(document: &str) -> Vec<String> {
    let tokens = tokens(document);
    let pairs: Vec<String> = tokens
        .windows(2)
        .map(|pair| format!("{} {}", pair[0], pair[1]))
        .collect();
    let mut terms = tokens;
    terms.extend(pairs);
    terms
}

/// Term counts of a set of documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    /// Every term of the documents, sorted.
    pub vocabulary: Vec<String>,
    /// `documents × vocabulary`.
    pub counts: Matrix,
}

/// Why documents cannot be counted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TfidfError {
    /// The dense count matrix would be too large.
    #[error(
        "{documents} documents × {terms} distinct terms is more than {MAX_CELLS} cells: \
         raise --min-df, or publish the documents as hashed features"
    )]
    TooLarge {
        /// Documents.
        documents: usize,
        /// Distinct terms.
        terms: usize,
    },
}

/// Counts every term of every document over the vocabulary of them all.
pub fn count(documents: &[String]) -> Result<Counts, TfidfError> {
    let per_document: Vec<BTreeMap<String, f64>> = documents
        .iter()
        .map(|d| {
            let mut counts = BTreeMap::new();
            for term in terms(d) {
                *counts.entry(term).or_insert(0.0) += 1.0;
            }
            counts
        })
        .collect();
    let mut vocabulary: Vec<String> = per_document
        .iter()
        .flat_map(|c| c.keys().cloned())
        .collect();
    vocabulary.sort_unstable();
    vocabulary.dedup();
    let cells = documents.len().saturating_mul(vocabulary.len());
    if cells > MAX_CELLS {
        return Err(TfidfError::TooLarge {
            documents: documents.len(),
            terms: vocabulary.len(),
        });
    }
    let index: BTreeMap<&str, usize> = vocabulary
        .iter()
        .enumerate()
        .map(|(j, t)| (t.as_str(), j))
        .collect();
    let mut counts = Matrix::zeros(documents.len(), vocabulary.len());
    for (i, document) in per_document.iter().enumerate() {
        let row = counts.row_mut(i);
        for (term, n) in document {
            row[index[term.as_str()]] = *n;
        }
    }
    Ok(Counts { vocabulary, counts })
}

/// The TF-IDF step's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TfidfConfig {
    /// Keep terms found in at least this many training documents (scikit-learn's integer
    /// `min_df`; 1 keeps every term of the training documents).
    pub min_df: usize,
    /// Keep at most this many terms, the most frequent over the training documents (ties: the
    /// first in vocabulary order).
    pub max_features: Option<usize>,
}

impl Default for TfidfConfig {
    fn default() -> Self {
        Self {
            min_df: 1,
            max_features: None,
        }
    }
}

/// The fitted step: which columns of the counts it keeps, and their inverse document frequency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedTfidf {
    /// Kept columns of the count matrix, ascending.
    pub kept: Vec<usize>,
    /// IDF of each kept column.
    pub idf: Vec<f64>,
}

impl FittedTfidf {
    /// Learns the kept terms and their IDF from the training rows `counts` only.
    pub fn fit(counts: &Matrix, config: &TfidfConfig) -> Self {
        let n = counts.rows();
        let mut df = vec![0usize; counts.cols()];
        let mut total = vec![0.0f64; counts.cols()];
        for i in 0..n {
            for (j, &c) in counts.row(i).iter().enumerate() {
                if c > 0.0 {
                    df[j] += 1;
                    total[j] += c;
                }
            }
        }
        let min_df = config.min_df.max(1);
        let mut kept: Vec<usize> = (0..counts.cols()).filter(|&j| df[j] >= min_df).collect();
        if let Some(limit) = config.max_features {
            if kept.len() > limit {
                // Stable: equal totals keep vocabulary order.
                kept.sort_by(|&a, &b| total[b].total_cmp(&total[a]));
                kept.truncate(limit);
                kept.sort_unstable();
            }
        }
        let idf = kept
            .iter()
            .map(|&j| ((1.0 + n as f64) / (1.0 + df[j] as f64)).ln() + 1.0)
            .collect();
        Self { kept, idf }
    }

    /// TF-IDF of `counts` (any rows over the same vocabulary), each row of unit length.
    pub fn transform(&self, counts: &Matrix) -> Matrix {
        let mut out = Matrix::zeros(counts.rows(), self.kept.len());
        for i in 0..counts.rows() {
            let row = counts.row(i);
            let target = out.row_mut(i);
            for (k, (&j, &idf)) in self.kept.iter().zip(&self.idf).enumerate() {
                let tf = row[j];
                if tf > 0.0 {
                    target[k] = (1.0 + tf.ln()) * idf;
                }
            }
            let norm = target.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                target.iter_mut().for_each(|v| *v /= norm);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_runs_of_two_or_more_word_characters_lower_cased() {
        assert_eq!(
            tokens("A cat's  Whiskers_2, é-tude!"),
            vec!["cat", "whiskers_2", "tude"]
        );
        assert_eq!(
            terms("Big red dog"),
            vec!["big", "red", "dog", "big red", "red dog"]
        );
    }

    #[test]
    fn terms_only_in_test_documents_are_dropped_and_rows_have_unit_length() {
        let docs: Vec<String> = ["red red dog", "red cat", "blue whale"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let counts = count(&docs).unwrap();
        let train = counts.counts.select_rows(&[0, 1]);
        let fitted = FittedTfidf::fit(&train, &TfidfConfig::default());
        let names: Vec<&str> = fitted
            .kept
            .iter()
            .map(|&j| counts.vocabulary[j].as_str())
            .collect();
        assert_eq!(
            names,
            vec!["cat", "dog", "red", "red cat", "red dog", "red red"]
        );
        // "red" is in both training documents: idf 1; "dog" in one: ln(3/2) + 1.
        let red = names.iter().position(|&t| t == "red").unwrap();
        let dog = names.iter().position(|&t| t == "dog").unwrap();
        assert!((fitted.idf[red] - 1.0).abs() < 1e-12);
        assert!((fitted.idf[dog] - (1.5f64.ln() + 1.0)).abs() < 1e-12);
        let x = fitted.transform(&counts.counts);
        let norm: f64 = x.row(0).iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-12);
        assert!(
            x.row(2).iter().all(|&v| v == 0.0),
            "a document of unseen terms is zeros"
        );
    }

    #[test]
    fn min_df_and_max_features_are_learned_from_training_rows() {
        let docs: Vec<String> = ["aa bb", "aa cc", "aa bb dd"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let counts = count(&docs).unwrap();
        let two = FittedTfidf::fit(
            &counts.counts,
            &TfidfConfig {
                min_df: 2,
                max_features: None,
            },
        );
        let kept: Vec<&str> = two
            .kept
            .iter()
            .map(|&j| counts.vocabulary[j].as_str())
            .collect();
        assert_eq!(kept, vec!["aa", "aa bb", "bb"]);
        let one = FittedTfidf::fit(
            &counts.counts,
            &TfidfConfig {
                min_df: 1,
                max_features: Some(1),
            },
        );
        assert_eq!(counts.vocabulary[one.kept[0]], "aa");
    }
}
