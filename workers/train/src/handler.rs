//! [`TrainHandler`]: consumes `train.v1`, writes `runs` + `folds`, emits `report.v1`.
//!
//! All SQL is in the constants below, with bind parameters only. Every failure caused by the
//! request or the data (unknown model, bad parameter, too few samples or classes, a run id used
//! before) is [`HandleError::Permanent`] with a reason naming the project; database errors are
//! transient and retried.

use std::collections::BTreeMap;
use std::time::Instant;

use broker_schemas::{ReportV1, TrainV1};
use serde_json::json;
use swarm_runtime::{HandleError, Handler, MessageMeta, Work};
use tokio_postgres::Transaction;
use tracing::Instrument;

use crate::cv::{cross_validate, CvConfig, CvOutcome};
use crate::model::ModelSpec;

/// The fewest folds a job may ask for.
pub const MIN_FOLDS: u32 = 2;
/// The most folds a job may ask for.
pub const MAX_FOLDS: u32 = 100;

/// Loads one feature vector per sample of a project (all sites when `$2` is empty). A sample with
/// several `features` rows uses the highest version (ties: the first extractor by name); a sample
/// without any has a NULL `values` and is left out (and counted in a warning).
pub const LOAD_SQL: &str = r#"SELECT DISTINCT ON (s.id) s.id, s.site, s.subject, s.label, f."values"
FROM samples s
LEFT JOIN features f ON f.sample_id = s.id
WHERE s.project = $1 AND (cardinality($2::text[]) = 0 OR s.site = ANY($2))
ORDER BY s.id, f.version DESC NULLS LAST, f.extractor"#;

/// Whether a run id is taken.
pub const RUN_EXISTS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)";

/// Inserts the run; affects no row when the id is taken (checked again here because a concurrent
/// job may have inserted it since [`RUN_EXISTS_SQL`]).
pub const INSERT_RUN_SQL: &str = "INSERT INTO runs (id, project, model, params, cv, sites, \
n_samples, n_features, classes, data_summary, metrics, model_format, model_blob, duration_ms, \
job_id, message_id, trace_id) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
ON CONFLICT (id) DO NOTHING";

/// Inserts one fold's scores.
pub const INSERT_FOLD_SQL: &str = "INSERT INTO folds (run_id, fold, n_train, n_test, accuracy, \
balanced_accuracy, confusion, metrics) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// The train worker's handler: cross-validates a model on a project's features, stores the run,
/// its folds and the final model, and asks for a report.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TrainHandler;

impl Handler for TrainHandler {
    type Message = TrainV1;
    const NAME: &'static str = "train";

    fn validate(&self, message: &TrainV1) -> Result<(), String> {
        validate_request(message).map(|_| ())
    }

    async fn handle(&self, work: &mut Work<'_>, message: TrainV1) -> Result<(), HandleError> {
        train(work, message).await
    }
}

/// Checks a `train.v1` before any database work: folds in `2..=100`, a known model, valid
/// parameters, a project name. Returns the parsed model.
pub fn validate_request(message: &TrainV1) -> Result<ModelSpec, String> {
    if message.project.trim().is_empty() {
        return Err("train.v1: project must not be empty".into());
    }
    if !(MIN_FOLDS..=MAX_FOLDS).contains(&message.cv.folds) {
        return Err(format!(
            "train.v1: cv.folds must be between {MIN_FOLDS} and {MAX_FOLDS}, got {}",
            message.cv.folds
        ));
    }
    ModelSpec::parse(&message.model, &message.params).map_err(|e| format!("train.v1: {e}"))
}

/// What the blocking training step hands back.
struct Trained {
    outcome: CvOutcome,
    /// The final model, serialised ([`crate::model::FittedModel::to_bytes`]).
    blob: Vec<u8>,
    /// Wall time from the start of handling to the end of training.
    duration_ms: i64,
}

/// The rows a run trains on.
#[derive(Debug, Default)]
struct Dataset {
    x: Vec<Vec<f64>>,
    labels: Vec<String>,
    sites: Vec<String>,
    /// Selected samples that have no features (yet).
    without_features: usize,
}

impl Dataset {
    /// Per site, per class, the number of samples: `{"<site>": {"<class>": n}}`.
    fn summary(&self) -> BTreeMap<&str, BTreeMap<&str, u64>> {
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

#[tracing::instrument(
    name = "train",
    skip_all,
    fields(run_id = %message.run_id, project = %message.project, model = %message.model),
    err
)]
async fn train(work: &mut Work<'_>, message: TrainV1) -> Result<(), HandleError> {
    let started = Instant::now();
    let spec = validate_request(&message).map_err(HandleError::Permanent)?;
    let run_id = message.run_id;
    let context = describe(&message);

    let exists: bool = work
        .tx()
        .query_one(RUN_EXISTS_SQL, &[&run_id])
        .await?
        .try_get(0)?;
    if exists {
        return Err(HandleError::permanent(format!(
            "run {run_id} already exists"
        )));
    }

    let mut data = load(work.tx(), &message)
        .instrument(tracing::info_span!("load"))
        .await?;
    if data.without_features > 0 {
        tracing::warn!(
            without_features = data.without_features,
            "{context}: {} selected sample(s) have no features yet and are left out",
            data.without_features
        );
    }
    if data.x.is_empty() {
        return Err(HandleError::permanent(format!(
            "{context}: no samples with features to train on ({} without features)",
            data.without_features
        )));
    }

    let config = CvConfig {
        folds: usize::try_from(message.cv.folds).unwrap_or(usize::MAX),
        seed: message.cv.seed,
    };
    let span = tracing::info_span!(
        "cross_validate",
        folds = message.cv.folds,
        n_samples = data.x.len()
    );
    // The rows move to the blocking thread; labels and sites stay for the data summary.
    let (x, labels) = (std::mem::take(&mut data.x), data.labels.clone());
    let cv_spec = spec.clone();
    let joined = tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let outcome = cross_validate(&x, &labels, &cv_spec, config)?;
            let blob = outcome.model.to_bytes()?;
            Ok::<_, anyhow::Error>(Trained {
                outcome,
                blob,
                duration_ms: 0,
            })
        })
    })
    .await;
    let mut trained = match joined {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(HandleError::permanent(format!("{context}: {e}"))),
        Err(e) if e.is_panic() => {
            return Err(HandleError::permanent(format!(
                "{context}: training panicked: {e}"
            )))
        }
        Err(e) => return Err(HandleError::Transient(anyhow::Error::new(e))),
    };
    tracing::info!(
        accuracy = trained.outcome.accuracy.mean,
        accuracy_sd = trained.outcome.accuracy.sd,
        balanced_accuracy = trained.outcome.balanced_accuracy.mean,
        "cross-validated"
    );

    trained.duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    store(work.tx(), work.meta(), &message, &spec, &data, &trained)
        .instrument(tracing::info_span!("store"))
        .await?;
    work.emit(&ReportV1 { run_id }).await?;
    Ok(())
}

/// `project "p"` or `project "p" (sites "a", "b")`, for error messages.
fn describe(message: &TrainV1) -> String {
    if message.sites.is_empty() {
        format!("project \"{}\"", message.project)
    } else {
        let sites: Vec<String> = message.sites.iter().map(|s| format!("\"{s}\"")).collect();
        format!(
            "project \"{}\" (sites {})",
            message.project,
            sites.join(", ")
        )
    }
}

async fn load(tx: &Transaction<'_>, message: &TrainV1) -> Result<Dataset, HandleError> {
    let rows = tx
        .query(LOAD_SQL, &[&message.project, &message.sites])
        .await?;
    let mut data = Dataset::default();
    let mut first: Option<(String, String, usize)> = None;
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let site: String = row.try_get(1)?;
        let subject: String = row.try_get(2)?;
        let label: String = row.try_get(3)?;
        let Some(values) = row.try_get::<_, Option<Vec<Option<f32>>>>(4)? else {
            data.without_features += 1;
            continue;
        };
        let bad = |what: &str| {
            HandleError::permanent(format!(
                "{}: sample {id} (site \"{site}\", subject \"{subject}\") {what}",
                describe(message)
            ))
        };
        let row_values: Vec<f64> = values
            .into_iter()
            .map(|v| v.map(f64::from).filter(|v| v.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("has a NULL or non-finite feature value"))?;
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
        data.x.push(row_values);
        data.labels.push(label);
        data.sites.push(site);
    }
    Ok(data)
}

fn to_i32(what: &str, n: usize) -> Result<i32, HandleError> {
    i32::try_from(n)
        .map_err(|_| HandleError::permanent(format!("{what} {n} exceeds the int range")))
}

async fn store(
    tx: &Transaction<'_>,
    meta: &MessageMeta,
    message: &TrainV1,
    spec: &ModelSpec,
    data: &Dataset,
    trained: &Trained,
) -> Result<(), HandleError> {
    let Trained {
        outcome,
        blob,
        duration_ms,
    } = trained;
    let cv = json!({
        "scheme": "stratified_k_fold",
        "folds": message.cv.folds,
        "seed": message.cv.seed,
    });
    let metrics = json!({
        "accuracy": outcome.accuracy,
        "balanced_accuracy": outcome.balanced_accuracy,
    });
    let data_summary = serde_json::to_value(data.summary())
        .map_err(|e| HandleError::Transient(anyhow::Error::new(e)))?;
    let inserted = tx
        .execute(
            INSERT_RUN_SQL,
            &[
                &message.run_id,
                &message.project,
                &spec.name(),
                &spec.params_json(),
                &cv,
                &message.sites,
                &to_i32("n_samples", outcome.n_samples)?,
                &to_i32("n_features", outcome.n_features)?,
                &outcome.classes,
                &data_summary,
                &metrics,
                &outcome.model.format(),
                blob,
                duration_ms,
                &meta.job_id,
                &meta.message_id,
                &meta.trace_id,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(HandleError::permanent(format!(
            "run {} already exists",
            message.run_id
        )));
    }
    for fold in &outcome.folds {
        let confusion = serde_json::to_value(&fold.confusion)
            .map_err(|e| HandleError::Transient(anyhow::Error::new(e)))?;
        let metrics = serde_json::json!({
            "accuracy": fold.accuracy,
            "balanced_accuracy": fold.balanced_accuracy,
        });
        tx.execute(
            INSERT_FOLD_SQL,
            &[
                &message.run_id,
                &to_i32("fold", fold.fold)?,
                &to_i32("n_train", fold.n_train)?,
                &to_i32("n_test", fold.n_test)?,
                &fold.accuracy,
                &fold.balanced_accuracy,
                &confusion,
                &metrics,
            ],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_schemas::CrossValidation;
    use uuid::Uuid;

    fn message() -> TrainV1 {
        TrainV1 {
            run_id: Uuid::nil(),
            project: "demo".into(),
            model: "logistic".into(),
            params: BTreeMap::new(),
            cv: CrossValidation::default(),
            sites: vec![],
        }
    }

    #[test]
    fn validates_folds_model_and_params() {
        let handler = TrainHandler::default();
        assert_eq!(handler.validate(&message()), Ok(()));

        for (folds, ok) in [(0, false), (1, false), (2, true), (100, true), (101, false)] {
            let mut m = message();
            m.cv.folds = folds;
            assert_eq!(handler.validate(&m).is_ok(), ok, "folds = {folds}");
        }

        let mut m = message();
        m.model = "svm".into();
        let reason = handler.validate(&m).unwrap_err();
        assert!(reason.contains("accepted models: logistic"), "{reason}");

        let mut m = message();
        m.params.insert("C".into(), "-1".into());
        assert!(handler.validate(&m).unwrap_err().contains("positive"));

        let mut m = message();
        m.params.insert("penalty".into(), "l1".into());
        assert!(handler
            .validate(&m)
            .unwrap_err()
            .contains("accepted parameters: C"));

        let mut m = message();
        m.project = " ".into();
        assert!(handler.validate(&m).is_err());
    }

    #[test]
    fn data_summary_counts_per_site_and_class() {
        let data = Dataset {
            x: vec![vec![0.0]; 4],
            labels: vec!["a".into(), "b".into(), "a".into(), "a".into()],
            sites: vec!["s1".into(), "s1".into(), "s2".into(), "s1".into()],
            without_features: 0,
        };
        assert_eq!(
            serde_json::to_value(data.summary()).unwrap(),
            json!({"s1": {"a": 2, "b": 1}, "s2": {"a": 1}})
        );
    }

    #[test]
    fn describes_the_selection() {
        let mut m = message();
        assert_eq!(describe(&m), "project \"demo\"");
        m.sites = vec!["x".into(), "y".into()];
        assert_eq!(describe(&m), "project \"demo\" (sites \"x\", \"y\")");
    }
}
