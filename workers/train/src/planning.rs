//! A `train.v1` job becomes a planned run: its rows are loaded and checked, its units planned
//! ([`crate::cv::plan`]) and stored (`run_jobs`, `run_units`), and one `train.unit.v1` per unit
//! is emitted through the outbox, all in the delivery's one transaction. A request that is
//! well-formed but impossible for its data (one class, an unknown project or site, too few
//! samples of a class for the folds, more PCA components than features, over the fit budget)
//! is recorded as a failed run with its reason, not dead-lettered: no replay could fix it.
//!
//! [`prepare`] is what every replica does again to compute a unit: the same rows (by the
//! sample ids stored with the plan) give the same configuration, data and plan. It also
//! resolves what depends on the project's kind: the `auto` scaler (`none` for text, else
//! `global`) and a text project's features — by default its documents counted into terms
//! ([`crate::tfidf::count`], which learns nothing) with TF-IDF fitted inside each fold
//! ([`crate::pipeline::TextStep`]), or the features worker's hashed vectors.

use std::sync::Arc;

use std::collections::{BTreeMap, BTreeSet};

use broker_schemas::{CvScheme, ScalerKind, TextKind, TrainRequest, TrainUnitV1};
use swarm_runtime::{HandleError, Work};

use crate::cache::Footprint;
use crate::cv::{self, Data, Plan, RunConfig, TargetData};
use crate::load::{load, project_kind, Dataset, Selection, Source};
use crate::matrix::Matrix;
use crate::model::Task;
use crate::pipeline::{TextStep, Vocabulary};
use crate::plan::{self, fit_count};
use crate::request::{check_budget, describe, validate_request};
use crate::runs::{INSERT_JOB_SQL, INSERT_UNITS_SQL, RUN_EXISTS_SQL};
use crate::store::Lineage;
use crate::tfidf::{self, TfidfConfig};

/// A run as every one of its units needs it.
#[derive(Debug)]
pub struct PlannedRun {
    /// The request.
    pub request: TrainRequest,
    /// Its configuration.
    pub config: RunConfig,
    /// The rows' ids, labels, sites and subjects (the features are in `data`).
    pub dataset: Dataset,
    /// The rows as analysed.
    pub data: Data,
    /// Splits and candidates.
    pub plan: Plan,
    /// Where the run came from.
    pub lineage: Lineage,
}

impl Footprint for PlannedRun {
    fn bytes(&self) -> usize {
        let rows = self.dataset.ids.len();
        self.data.x.rows() * self.data.x.cols() * 8 + rows * 128
    }
}

/// Where a run's rows come from: a text project's documents, unless the request asks for the
/// hashed features.
pub fn source_of(request: &TrainRequest, kind: Option<&str>) -> Source {
    let hashed = request
        .options
        .pipeline
        .text
        .is_some_and(|t| t.kind == TextKind::Hashed);
    if kind == Some("text") && !hashed {
        Source::Documents
    } else {
        Source::Features
    }
}

/// Builds a run from its request, its project's kind and its rows (loaded from
/// [`source_of`]), or the reason the data make it impossible.
pub fn prepare(
    request: TrainRequest,
    kind: Option<&str>,
    mut dataset: Dataset,
    lineage: Lineage,
) -> Result<PlannedRun, String> {
    let mut config = validate_request(&request)?;
    let context = describe(&request.train.project, &request.train.sites);
    let fail = |reason: String| format!("{context}: {reason}");
    let text = kind == Some("text");
    if let (Some(kind), Some(_)) = (kind, &request.options.pipeline.text) {
        if !text {
            return Err(fail(format!(
                "text features (pipeline.text) apply to text projects only, not to a {kind}                  project"
            )));
        }
    }
    if config.pipeline.scaler == ScalerKind::Auto {
        // TF-IDF rows have unit length; z-scoring sparse term weights would make them dense
        // and weigh rare terms up.
        config.pipeline.scaler = if text {
            ScalerKind::None
        } else {
            ScalerKind::Global
        };
    }
    let x = match dataset.documents.take() {
        Some(documents) => {
            let counts = tfidf::count(&documents).map_err(|e| fail(e.to_string()))?;
            let options = request.options.pipeline.text.unwrap_or_default();
            config.pipeline.text = Some(TextStep::Tfidf {
                config: TfidfConfig {
                    min_df: options.min_df as usize,
                    max_features: options.max_features.map(|m| m as usize),
                },
                vocabulary: Vocabulary(Arc::new(counts.vocabulary)),
            });
            counts.counts
        }
        None => {
            if text {
                config.pipeline.text = Some(TextStep::Hashed);
            }
            Matrix::from_rows(&dataset.x)
        }
    };
    check_rows(&request, &config, &dataset, x.cols()).map_err(fail)?;
    let task = config.spec.task();
    let target = TargetData::from_labels(&dataset.labels, task)
        .map_err(|e| fail(with_hint(e.to_string(), task, &dataset.labels)))?;
    let data = Data {
        x,
        sites: dataset.sites.clone(),
        target,
    };
    dataset.x = Vec::new();
    let plan = cv::plan(&config, &data)
        .map_err(|e| fail(with_hint(e.to_string(), task, &dataset.labels)))?;
    check_budget(&plan.shape)?;
    Ok(PlannedRun {
        request,
        config,
        dataset,
        data,
        plan,
        lineage,
    })
}

/// What the rows must offer the request: samples with features, every site asked for, every
/// class as often as there are folds, no more PCA components than `features` (the columns of
/// the rows, for text every term of the documents).
fn check_rows(
    request: &TrainRequest,
    config: &RunConfig,
    data: &Dataset,
    features: usize,
) -> Result<(), String> {
    if data.ids.is_empty() {
        return Err(if data.without_features > 0 {
            format!(
                "no samples with features to train on ({} without features yet)",
                data.without_features
            )
        } else {
            "no samples: is the project name right, and was its data published?".to_owned()
        });
    }
    let present: BTreeSet<&str> = data.sites.iter().map(String::as_str).collect();
    let missing = |asked: &[String]| -> Vec<String> {
        asked
            .iter()
            .filter(|s| !present.contains(s.as_str()))
            .map(|s| format!("\"{s}\""))
            .collect()
    };
    let unknown = missing(&request.train.sites);
    if !unknown.is_empty() {
        return Err(format!(
            "no samples from the site(s) {} (sites with samples: {})",
            unknown.join(", "),
            quoted(&present)
        ));
    }
    if config.scheme.kind == CvScheme::HeldOutSites {
        let unknown = missing(&config.scheme.test_sites);
        if !unknown.is_empty() {
            return Err(format!(
                "no samples from the test site(s) {} (sites with samples: {})",
                unknown.join(", "),
                quoted(&present)
            ));
        }
    }
    let k = config.scheme.folds;
    if config.spec.task() == Task::Classification
        && matches!(
            config.scheme.kind,
            CvScheme::StratifiedKFold | CvScheme::RepeatedKFold
        )
    {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for label in &data.labels {
            *counts.entry(label.as_str()).or_default() += 1;
        }
        if counts.len() >= 2 {
            if let Some((class, n)) = counts.iter().find(|(_, n)| **n < k) {
                return Err(with_hint(
                    format!(
                        "class \"{class}\" has {n} sample(s), fewer than the {k} folds: \
                         stratified {k}-fold cross-validation needs at least {k} samples of \
                         every class (use fewer folds with --cv)"
                    ),
                    Task::Classification,
                    &data.labels,
                ));
            }
        }
    }
    if let Some(components) = config.pipeline.pca_components {
        let kept = match config.pipeline.select_percentile {
            Some(pct) => ((features as f64 * pct / 100.0).floor() as usize).clamp(1, features),
            None => features,
        };
        if components > kept {
            return Err(format!(
                "--pca {components} asks for more components than the {kept} features{}",
                if kept < features {
                    " kept by --select-percentile"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

fn quoted(names: &BTreeSet<&str>) -> String {
    names
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A classifier's error on labels that are all numbers says that a regression model may be
/// what was meant.
fn with_hint(reason: String, task: Task, labels: &[String]) -> String {
    let numeric = !labels.is_empty() && labels.iter().all(|l| l.trim().parse::<f64>().is_ok());
    if task == Task::Classification && numeric {
        format!(
            "{reason}; the labels are numbers: to predict a number, use a regression model \
             (linear, ridge, lasso, svr, random_forest_regressor)"
        )
    } else {
        reason
    }
}

/// Plans a `train.v1` job in the delivery's transaction: a running run with its units, or a
/// failed run with its reason.
#[tracing::instrument(
    name = "plan",
    skip_all,
    fields(run_id = %request.train.run_id, project = %request.train.project, model = %request.train.model),
    err
)]
pub async fn plan_run(
    work: &mut Work<'_>,
    request: TrainRequest,
    unit_work: u64,
) -> Result<(), HandleError> {
    validate_request(&request).map_err(HandleError::Permanent)?;
    let run_id = request.train.run_id;
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
    let context = describe(&request.train.project, &request.train.sites);
    let selection = Selection::Project {
        project: &request.train.project,
        sites: &request.train.sites,
    };
    let kind = project_kind(&**work.tx(), &request.train.project).await?;
    let source = source_of(&request, kind.as_deref());
    let dataset = load(&**work.tx(), selection, source, &context).await?;
    let meta = work.meta().clone();
    let lineage = Lineage {
        job_id: meta.job_id.clone(),
        message_id: meta.message_id.clone(),
        trace_id: meta.trace_id.clone(),
    };
    let body = broker_schemas::encode(&request);
    let project = request.train.project.clone();
    let insert =
        |state: &'static str, reason: Option<String>, ids: Vec<i64>, units: i32, fits: i64| {
            let (tx, body, project, lineage) = (work.tx(), &body, &project, &lineage);
            async move {
                tx.execute(
                    INSERT_JOB_SQL,
                    &[
                        &run_id,
                        project,
                        &state,
                        &reason,
                        body,
                        &ids,
                        &units,
                        &fits,
                        &lineage.job_id,
                        &lineage.message_id,
                        &lineage.trace_id,
                    ],
                )
                .await
            }
        };
    let run = match prepare(request.clone(), kind.as_deref(), dataset, lineage.clone()) {
        Ok(run) => run,
        Err(reason) => {
            tracing::warn!(%run_id, reason, "The run is impossible for its data; it is recorded as failed.");
            insert("failed", Some(reason), Vec::new(), 0, 0).await?;
            return Ok(());
        }
    };
    let specs = plan::units(&run.plan.shape, unit_work);
    let units = specs.len();
    let total = i32::try_from(units + 1)
        .map_err(|_| HandleError::permanent(format!("{context}: {units} units")))?;
    let fits = i64::try_from(fit_count(&run.plan.shape)).unwrap_or(i64::MAX);
    insert("running", None, run.dataset.ids.clone(), total, fits).await?;
    let numbers: Vec<i32> = (0..total).collect();
    let specs = specs
        .into_iter()
        .map(|u| serde_json::to_value(Step::Validate(u)))
        .chain(std::iter::once(serde_json::to_value(Step::Finish)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HandleError::Transient(anyhow::Error::new(e)))?;
    work.tx()
        .execute(INSERT_UNITS_SQL, &[&run_id, &numbers, &specs])
        .await?;
    for unit in 0..units as u32 {
        work.emit(&TrainUnitV1 { run_id, unit }).await?;
    }
    tracing::info!(%run_id, units, fits, rows = run.dataset.ids.len(), "Run planned.");
    Ok(())
}

/// What a unit does, as stored in `run_units.spec`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Validate what the spec names.
    Validate(crate::plan::UnitSpec),
    /// Assemble the run from every other unit's results and store it.
    Finish,
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_schemas::{CrossValidation, TrainOptions, TrainV1};
    use uuid::Uuid;

    fn request(model: &str) -> TrainRequest {
        TrainRequest {
            train: TrainV1 {
                run_id: Uuid::nil(),
                project: "p".into(),
                model: model.into(),
                params: BTreeMap::new(),
                cv: CrossValidation::default(),
                sites: vec![],
            },
            options: TrainOptions::default(),
        }
    }

    fn rows(labels: &[&str], sites: &[&str]) -> Dataset {
        Dataset {
            ids: (0..labels.len() as i64).collect(),
            x: (0..labels.len()).map(|i| vec![i as f64, 1.0]).collect(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            sites: sites.iter().map(|s| s.to_string()).collect(),
            subjects: (0..labels.len()).map(|i| format!("s{i}")).collect(),
            covariates: vec![serde_json::Value::Null; labels.len()],
            documents: None,
            without_features: 0,
        }
    }

    fn lineage() -> Lineage {
        Lineage {
            job_id: None,
            message_id: "m".into(),
            trace_id: None,
        }
    }

    fn refused(request: TrainRequest, data: Dataset) -> String {
        prepare(request, None, data, lineage()).unwrap_err()
    }

    #[test]
    fn impossible_jobs_are_refused_with_the_users_names() {
        let ten = ["control"; 10]
            .iter()
            .chain(["patient"; 3].iter())
            .copied()
            .collect::<Vec<_>>();
        let sites = vec!["a"; ten.len()];
        let reason = refused(request("logistic"), rows(&ten, &sites));
        assert!(
            reason.contains("class \"patient\" has 3 sample(s)"),
            "{reason}"
        );
        assert!(!reason.contains("regression"), "{reason}");

        let one = vec!["control"; 10];
        let reason = refused(request("logistic"), rows(&one, &["a"; 10]));
        assert!(reason.contains("\"control\""), "{reason}");

        let numeric: Vec<String> = (0..12).map(|i| format!("{}", i % 4)).collect();
        let numeric: Vec<&str> = numeric.iter().map(String::as_str).collect();
        let reason = refused(request("logistic"), rows(&numeric, &["a"; 12]));
        assert!(reason.contains("regression model"), "{reason}");

        let mut r = request("logistic");
        r.train.sites = vec!["nosuchsite".into()];
        let labels = ["a", "b"].repeat(10);
        let reason = refused(r, rows(&labels, &["a"; 20]));
        assert!(reason.contains("\"nosuchsite\""), "{reason}");

        let mut r = request("logistic");
        r.options.validation.scheme = CvScheme::HeldOutSites;
        r.options.validation.test_sites = vec!["lab-z".into()];
        let reason = refused(r, rows(&labels, &["a"; 20]));
        assert!(reason.contains("\"lab-z\""), "{reason}");

        let mut r = request("logistic");
        r.options.pipeline.pca_components = Some(50);
        let reason = refused(r, rows(&labels, &["a"; 20]));
        assert!(
            reason.contains("--pca 50") && reason.contains("2 features"),
            "{reason}"
        );

        let reason = refused(request("logistic"), Dataset::default());
        assert!(reason.contains("no samples"), "{reason}");

        let mut r = request("logistic");
        r.options.pipeline.text = Some(Default::default());
        let reason = prepare(r, Some("vector"), rows(&labels, &["a"; 20]), lineage()).unwrap_err();
        assert!(reason.contains("text projects only"), "{reason}");

        let run = prepare(
            request("logistic"),
            Some("vector"),
            rows(&labels, &["a"; 20]),
            lineage(),
        )
        .unwrap();
        assert_eq!(run.config.pipeline.scaler, ScalerKind::Global, "auto");

        // A text project: documents counted into terms, TF-IDF inside the folds, no scaler.
        let mut documents = rows(&labels, &["a"; 20]);
        documents.x = Vec::new();
        documents.documents = Some(
            labels
                .iter()
                .map(|l| format!("word {l} and more {l}"))
                .collect(),
        );
        let run = prepare(request("logistic"), Some("text"), documents, lineage()).unwrap();
        assert_eq!(
            run.config.pipeline.scaler,
            ScalerKind::None,
            "auto for text"
        );
        assert!(matches!(
            run.config.pipeline.text,
            Some(TextStep::Tfidf { .. })
        ));
        // "a" and "b" are too short to be tokens: and, more, word, "word and", "and more".
        assert_eq!(run.data.x.cols(), 5);
        assert_eq!(run.plan.splits.len(), 5);
    }

    #[test]
    fn a_step_reads_back_as_stored() {
        let step = Step::Validate(crate::plan::UnitSpec {
            permutations: Some(3..5),
            pick: crate::plan::Pick::Candidate(2),
            splits: 0..5,
        });
        let json = serde_json::to_value(&step).unwrap();
        assert_eq!(serde_json::from_value::<Step>(json).unwrap(), step);
        let json = serde_json::to_value(Step::Finish).unwrap();
        assert_eq!(json, serde_json::json!("finish"));
    }
}
