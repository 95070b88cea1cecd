//! Checks of a `train.v1` or `stats.v1` request before any database work: the limits, the
//! model and its parameters, the grid, the scheme and the fit budget. The worker runs them
//! before its transaction (a failure is a dead letter); the CLI runs the same before it
//! publishes.

use std::collections::BTreeMap;

use broker_schemas::{CvScheme, StatsTest, StatsV1, TextFeatures, TextKind, TrainRequest};

use crate::cv::{self, RunConfig};
use crate::model::{ModelSpec, Task};
use crate::pipeline::PipelineConfig;
use crate::plan::{fit_count, Shape, MAX_FITS};
use crate::validation::Scheme;

/// The fewest folds a job may ask for.
pub const MIN_FOLDS: u32 = 2;
/// The most folds a job may ask for.
pub const MAX_FOLDS: u32 = 100;
/// The most label permutations a job may ask for.
pub const MAX_PERMUTATIONS: u32 = 10_000;
/// The most grid candidates a job may ask for.
pub const MAX_GRID: usize = 400;
/// The most repeats of a repeated k-fold.
pub const MAX_REPEATS: u32 = 100;

/// Checks a `train.v1` before any database work and returns the run's configuration (without
/// the data).
pub fn validate_request(request: &TrainRequest) -> Result<RunConfig, String> {
    let (message, options) = (&request.train, &request.options);
    if message.project.trim().is_empty() {
        return Err("train.v1: project must not be empty".into());
    }
    let scheme = options.validation.scheme;
    if matches!(scheme, CvScheme::StratifiedKFold | CvScheme::RepeatedKFold)
        && !(MIN_FOLDS..=MAX_FOLDS).contains(&message.cv.folds)
    {
        return Err(format!(
            "train.v1: cv.folds must be between {MIN_FOLDS} and {MAX_FOLDS}, got {}",
            message.cv.folds
        ));
    }
    if options.validation.repeats > MAX_REPEATS {
        return Err(format!(
            "train.v1: validation.repeats must be at most {MAX_REPEATS}"
        ));
    }
    if scheme == CvScheme::HeldOutSites && options.validation.test_sites.is_empty() {
        return Err("train.v1: the held_out_sites scheme needs validation.test_sites".into());
    }
    if options.permutations > MAX_PERMUTATIONS {
        return Err(format!(
            "train.v1: permutations must be at most {MAX_PERMUTATIONS}"
        ));
    }
    let spec =
        ModelSpec::parse(&message.model, &message.params).map_err(|e| format!("train.v1: {e}"))?;
    if let Some(text) = &options.pipeline.text {
        validate_text(text).map_err(|e| format!("train.v1: {e}"))?;
    }
    // The text step and an `auto` scaler depend on the project's kind: the worker resolves them
    // once it has loaded the project (`planning::prepare`).
    let pipeline = PipelineConfig {
        text: None,
        scaler: options.pipeline.scaler,
        select_percentile: options.pipeline.select_percentile,
        pca_components: options.pipeline.pca_components.map(|c| c as usize),
    };
    pipeline.validate().map_err(|e| format!("train.v1: {e}"))?;
    let candidates = cv::grid_candidates(&options.grid);
    let inner_folds = (message.cv.folds as usize).max(2);
    if candidates.len() > MAX_GRID {
        return Err(format!(
            "train.v1: the grid has {} candidates, more than {MAX_GRID}",
            candidates.len()
        ));
    }
    if options.nested && options.grid.is_empty() {
        return Err("train.v1: nested validation needs a grid to choose from".into());
    }
    if let Some(splits) = known_splits(scheme, message.cv.folds, options.validation.repeats) {
        check_budget(&Shape {
            rows: 0,
            features: 0,
            splits,
            candidates: candidates.len(),
            inner_folds: if options.nested { inner_folds } else { 0 },
            permutations: options.permutations as usize,
        })?;
    }
    for (param, values) in &options.grid {
        if values.is_empty() {
            return Err(format!(
                "train.v1: grid parameter \"{param}\" has no values"
            ));
        }
        for value in values {
            let mut probe = spec.clone();
            probe
                .set(param, value)
                .map_err(|e| format!("train.v1: grid: {e}"))?;
        }
    }
    Ok(RunConfig {
        spec,
        pipeline,
        scheme: Scheme {
            kind: scheme,
            folds: message.cv.folds as usize,
            seed: message.cv.seed,
            repeats: options.validation.repeats as usize,
            test_sites: options.validation.test_sites.clone(),
        },
        grid: options.grid.clone(),
        permutations: options.permutations as usize,
        nested: options.nested,
    })
}

/// Checks a text project's options: `min_df` and `max_features` at least 1, and only for
/// TF-IDF.
pub fn validate_text(text: &TextFeatures) -> Result<(), String> {
    if text.min_df == 0 {
        return Err("pipeline.text.min_df must be at least 1, got 0".into());
    }
    if text.max_features == Some(0) {
        return Err("pipeline.text.max_features must be at least 1, got 0".into());
    }
    if text.kind == TextKind::Hashed && (text.min_df != 1 || text.max_features.is_some()) {
        return Err(
            "pipeline.text.min_df and pipeline.text.max_features apply to tfidf text features,              not hashed ones"
                .into(),
        );
    }
    Ok(())
}

/// Checks a `stats.v1` before any database work.
pub fn validate_stats(message: &StatsV1) -> Result<(), String> {
    if message.project.trim().is_empty() {
        return Err("stats.v1: project must not be empty".into());
    }
    if !(message.alpha > 0.0 && message.alpha < 1.0) {
        return Err(format!(
            "stats.v1: alpha must be in (0, 1), got {}",
            message.alpha
        ));
    }
    match message.test {
        StatsTest::Pearson | StatsTest::Spearman
            if message
                .covariate
                .as_deref()
                .is_none_or(|c| c.trim().is_empty()) =>
        {
            Err(format!(
                "stats.v1: the {} test needs a covariate",
                message.test.as_str()
            ))
        }
        StatsTest::WelchT if !(message.groups.is_empty() || message.groups.len() == 2) => {
            Err(format!(
                "stats.v1: welch_t compares exactly 2 groups, got {}",
                message.groups.len()
            ))
        }
        _ => Ok(()),
    }
}

/// The number of splits a scheme makes when the request alone tells (k-fold and repeated
/// k-fold); `None` when it depends on the data (leave-one-out, sites).
pub fn known_splits(scheme: CvScheme, folds: u32, repeats: u32) -> Option<usize> {
    match scheme {
        CvScheme::StratifiedKFold => Some(folds as usize),
        CvScheme::RepeatedKFold => {
            Some(folds as usize * if repeats == 0 { 10 } else { repeats as usize })
        }
        _ => None,
    }
}

/// Refuses a job whose fit count is over [`MAX_FITS`], giving both.
pub fn check_budget(shape: &Shape) -> Result<(), String> {
    let fits = fit_count(shape);
    if fits > MAX_FITS {
        return Err(format!(
            "train.v1: the job needs {fits} model fits ({} splits × {} candidate(s){} × ({} \
             permutations + 1), plus the final fit); the limit is {MAX_FITS}: use fewer \
             permutations, folds or grid values",
            shape.splits,
            shape.candidates.max(1),
            if shape.inner_folds > 0 {
                format!(", nested with {} inner folds", shape.inner_folds)
            } else {
                String::new()
            },
            shape.permutations
        ));
    }
    Ok(())
}

/// `project "p"` or `project "p" (sites "a", "b")`, for error messages.
pub fn describe(project: &str, sites: &[String]) -> String {
    if sites.is_empty() {
        format!("project \"{project}\"")
    } else {
        let sites: Vec<String> = sites.iter().map(|s| format!("\"{s}\"")).collect();
        format!("project \"{project}\" (sites {})", sites.join(", "))
    }
}

/// Whether `task` suits labels: used by the CLI to explain a mismatch early.
pub fn task_of(model: &str) -> Option<Task> {
    ModelSpec::parse(model, &BTreeMap::new())
        .ok()
        .map(|s| s.task())
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_schemas::{CrossValidation, TrainOptions, TrainV1};
    use uuid::Uuid;

    fn request() -> TrainRequest {
        TrainRequest {
            train: TrainV1 {
                run_id: Uuid::nil(),
                project: "demo".into(),
                model: "logistic".into(),
                params: BTreeMap::new(),
                cv: CrossValidation::default(),
                sites: vec![],
            },
            options: TrainOptions::default(),
        }
    }

    #[test]
    fn validates_folds_model_params_grid_and_scheme() {
        assert!(validate_request(&request()).is_ok());
        for (folds, ok) in [(0, false), (1, false), (2, true), (100, true), (101, false)] {
            let mut m = request();
            m.train.cv.folds = folds;
            assert_eq!(validate_request(&m).is_ok(), ok, "folds = {folds}");
        }
        let mut m = request();
        m.train.model = "svm".into();
        assert!(validate_request(&m)
            .unwrap_err()
            .contains("accepted models: logistic, svc"));
        let mut m = request();
        m.train.params.insert("C".into(), "-1".into());
        assert!(validate_request(&m).unwrap_err().contains("positive"));
        let mut m = request();
        m.train.params.insert("penalty".into(), "l1".into());
        assert!(validate_request(&m)
            .unwrap_err()
            .contains("accepted parameters: C, max_iter, tol"));
        let mut m = request();
        m.options
            .grid
            .insert("C".into(), vec!["1".into(), "zero".into()]);
        assert!(validate_request(&m).unwrap_err().contains("grid"));
        let mut m = request();
        m.options.validation.scheme = CvScheme::HeldOutSites;
        assert!(validate_request(&m).unwrap_err().contains("test_sites"));
        for (min_df, max_features, ok) in [(1, None, true), (0, None, false), (2, Some(0), false)] {
            let mut m = request();
            m.options.pipeline.text = Some(TextFeatures {
                kind: TextKind::Tfidf,
                min_df,
                max_features,
            });
            let checked = validate_request(&m);
            assert_eq!(checked.is_ok(), ok, "{checked:?}");
            if !ok {
                assert!(checked.unwrap_err().contains("pipeline.text."));
            }
        }
        let mut m = request();
        m.train.project = " ".into();
        assert!(validate_request(&m).is_err());
        let mut m = request();
        m.options.nested = true;
        assert!(validate_request(&m).unwrap_err().contains("needs a grid"));
        m.options
            .grid
            .insert("C".into(), vec!["1".into(), "10".into()]);
        assert!(validate_request(&m).is_ok());
        m.options.permutations = MAX_PERMUTATIONS;
        assert!(validate_request(&m).is_ok());
        m.options
            .grid
            .insert("C".into(), (1..=11).map(|c| c.to_string()).collect());
        let refused = validate_request(&m).unwrap_err();
        assert!(
            refused.contains("needs 2800336 model fits") && refused.contains("limit is 2000000"),
            "{refused}"
        );
    }

    #[test]
    fn describes_the_selection() {
        assert_eq!(describe("demo", &[]), "project \"demo\"");
        assert_eq!(
            describe("demo", &["x".into(), "y".into()]),
            "project \"demo\" (sites \"x\", \"y\")"
        );
    }
}
