//! Loading a job's rows: one feature vector per sample of a project (or of the samples a run was
//! planned on), or for a TF-IDF run of a text project one document per sample, in an order fixed
//! by the data.

use std::collections::BTreeMap;

use swarm_runtime::floats::FloatVec;
use swarm_runtime::HandleError;
use tokio_postgres::GenericClient;

/// Loads one feature vector per sample of a project (all sites when `$2` is empty). A sample with
/// several `features` rows uses the highest version (ties: the first extractor by name); a sample
/// without any has a NULL `values` and is left out (and counted in a warning).
pub const LOAD_SQL: &str = r#"SELECT DISTINCT ON (s.id) s.id, s.site, s.subject, s.label, f."values", s.covariates
FROM samples s
LEFT JOIN features f ON f.sample_id = s.id
WHERE s.project = $1 AND (cardinality($2::text[]) = 0 OR s.site = ANY($2))
ORDER BY s.id, f.version DESC NULLS LAST, f.extractor"#;

/// Loads the samples a run was planned on by their ids, as [`LOAD_SQL`] does.
pub const LOAD_IDS_SQL: &str = r#"SELECT DISTINCT ON (s.id) s.id, s.site, s.subject, s.label, f."values", s.covariates
FROM samples s
LEFT JOIN features f ON f.sample_id = s.id
WHERE s.id = ANY($1)
ORDER BY s.id, f.version DESC NULLS LAST, f.extractor"#;

/// Loads one document per sample of a project, as [`LOAD_SQL`] selects them.
pub const LOAD_DOCUMENTS_SQL: &str = r#"SELECT s.id, s.site, s.subject, s.label, s.text, s.covariates
FROM samples s
WHERE s.project = $1 AND (cardinality($2::text[]) = 0 OR s.site = ANY($2))"#;

/// Loads the documents of the samples a run was planned on by their ids.
pub const LOAD_DOCUMENT_IDS_SQL: &str = r#"SELECT s.id, s.site, s.subject, s.label, s.text, s.covariates
FROM samples s
WHERE s.id = ANY($1)"#;

/// A project's kind (`vector`, `timeseries`, `text`), none for an unknown project.
pub async fn project_kind(
    client: &impl GenericClient,
    project: &str,
) -> Result<Option<String>, HandleError> {
    Ok(client
        .query_opt("SELECT kind FROM projects WHERE name = $1", &[&project])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

/// What a row is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The sample's stored feature vector (the features worker's).
    Features,
    /// The sample's document (`samples.text`), counted into terms by the run.
    Documents,
}

/// Which samples to load.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// A project's, from these sites (all when empty).
    Project {
        /// The project.
        project: &'a str,
        /// Its sites, or none for all.
        sites: &'a [String],
    },
    /// These samples (a planned run's).
    Samples(&'a [i64]),
}

/// The rows a job works on.
#[derive(Debug, Default, Clone)]
pub struct Dataset {
    /// `samples.id`.
    pub ids: Vec<i64>,
    /// Features, one row per sample.
    pub x: Vec<Vec<f64>>,
    /// Labels as the user gave them.
    pub labels: Vec<String>,
    /// Sites.
    pub sites: Vec<String>,
    /// Subjects.
    pub subjects: Vec<String>,
    /// Covariates (a JSON object per sample).
    pub covariates: Vec<serde_json::Value>,
    /// [`Source::Documents`]: one document per sample (and `x` is empty).
    pub documents: Option<Vec<String>>,
    /// Selected samples that have no features (yet), or no document.
    pub without_features: usize,
}

impl Dataset {
    /// Per site, per class, the number of samples: `{"<site>": {"<class>": n}}`.
    pub fn summary(&self) -> BTreeMap<&str, BTreeMap<&str, u64>> {
        let mut summary: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        for (site, label) in self.sites.iter().zip(&self.labels) {
            *summary
                .entry(site.as_str())
                .or_default()
                .entry(label.as_str())
                .or_default() += 1;
        }
        summary
    }
}

/// Loads the selected rows from `source`, sorted by (site, subject); a sample without features
/// (or document) is left out and counted. A non-finite value or a sample whose dimension
/// differs is a permanent error naming it.
pub async fn load(
    client: &impl GenericClient,
    selection: Selection<'_>,
    source: Source,
    context: &str,
) -> Result<Dataset, HandleError> {
    let documents = source == Source::Documents;
    let found = match (selection, documents) {
        (Selection::Project { project, sites }, false) => {
            client.query(LOAD_SQL, &[&project, &sites]).await?
        }
        (Selection::Project { project, sites }, true) => {
            client
                .query(LOAD_DOCUMENTS_SQL, &[&project, &sites])
                .await?
        }
        (Selection::Samples(ids), false) => client.query(LOAD_IDS_SQL, &[&ids]).await?,
        (Selection::Samples(ids), true) => client.query(LOAD_DOCUMENT_IDS_SQL, &[&ids]).await?,
    };
    let mut rows = Vec::new();
    for row in found {
        let key: (String, String) = (row.try_get(1)?, row.try_get(2)?);
        rows.push((key, row));
    }
    // The analysis sees the rows in an order fixed by the data (site, then subject, compared as
    // bytes), never the database's insertion order: folds, permutations and bootstrap draws are
    // then the same for the same data and seed in any database.
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut data = Dataset {
        documents: documents.then(Vec::new),
        ..Dataset::default()
    };
    let mut first: Option<(String, String, usize)> = None;
    for (_, row) in rows {
        let id: i64 = row.try_get(0)?;
        let site: String = row.try_get(1)?;
        let subject: String = row.try_get(2)?;
        let label: String = row.try_get(3)?;
        if let Some(texts) = data.documents.as_mut() {
            let Some(text) = row.try_get::<_, Option<String>>(4)? else {
                data.without_features += 1;
                continue;
            };
            texts.push(text);
            data.ids.push(id);
            data.labels.push(label);
            data.sites.push(site);
            data.subjects.push(subject);
            data.covariates.push(row.try_get(5)?);
            continue;
        }
        let Some(FloatVec(values)) = row.try_get::<_, Option<FloatVec>>(4)? else {
            data.without_features += 1;
            continue;
        };
        let covariates: serde_json::Value = row.try_get(5)?;
        let bad = |what: &str| {
            HandleError::permanent(format!(
                "{context}: sample {id} (site \"{site}\", subject \"{subject}\") {what}"
            ))
        };
        let row_values: Vec<f64> = values
            .into_iter()
            .map(|v| Some(f64::from(v)).filter(|v| v.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("has a non-finite feature value"))?;
        match &first {
            None => first = Some((site.clone(), subject.clone(), row_values.len())),
            Some((first_site, first_subject, n)) if *n != row_values.len() => {
                return Err(bad(&format!(
                    "has {} features but subject \"{first_subject}\" of site \"{first_site}\" has {n}",
                    row_values.len()
                )));
            }
            Some(_) => {}
        }
        if row_values.is_empty() {
            return Err(bad("has no features"));
        }
        data.ids.push(id);
        data.x.push(row_values);
        data.labels.push(label);
        data.sites.push(site);
        data.subjects.push(subject);
        data.covariates.push(covariates);
    }
    if data.without_features > 0 {
        tracing::warn!(
            without_features = data.without_features,
            "{context}: {} selected sample(s) have no features yet and are left out",
            data.without_features
        );
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_summary_counts_per_site_and_class() {
        let data = Dataset {
            labels: vec!["a".into(), "b".into(), "a".into(), "a".into()],
            sites: vec!["s1".into(), "s1".into(), "s2".into(), "s1".into()],
            ..Dataset::default()
        };
        assert_eq!(
            serde_json::to_value(data.summary()).unwrap(),
            json!({"s1": {"a": 2, "b": 1}, "s2": {"a": 1}})
        );
    }
}
