//! `swarm train`: publish a `train.v1` job, optionally wait for its report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use broker_schemas::{
    CrossValidation, CvScheme, ScalerKind, TextFeatures, TextKind, TrainOptions, TrainRequest,
    TrainV1,
};
use indicatif::{ProgressBar, ProgressStyle};
use swarm_runtime::db::Pool;
use swarm_runtime::Settings;
use swarm_train::cv::RunConfig;
use swarm_train::runs::Progress;
use uuid::Uuid;

/// Arguments of `swarm train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Project whose features to train on.
    #[arg(long)]
    pub project: String,
    /// Model, with scikit-learn's defaults: classification `logistic`, `svc`, `random_forest`,
    /// `knn`, `decision_tree`, `gaussian_nb`; regression (numeric labels) `linear`, `ridge`,
    /// `lasso`, `elastic_net`, `svr`, `random_forest_regressor`.
    #[arg(long, default_value = "logistic")]
    pub model: String,
    /// A model parameter as key=value (repeatable), e.g. `--param C=0.5`; unknown parameters and
    /// bad values are refused here, before anything is published.
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Validation scheme: `stratified-k-fold` (default), `repeated-k-fold`, `leave-one-out`,
    /// `leave-one-site-out`, `held-out-sites` (with --test-sites).
    #[arg(long, default_value = "stratified-k-fold", value_parser = parse_scheme)]
    pub scheme: CvScheme,
    /// Shorthand for `--scheme leave-one-site-out`.
    #[arg(long)]
    pub leave_site_out: bool,
    /// Repeats of `repeated-k-fold`.
    #[arg(long, default_value_t = 10)]
    pub repeats: u32,
    /// `held-out-sites`: the sites to test on (comma-separated); the others are trained on.
    #[arg(long, value_delimiter = ',')]
    pub test_sites: Vec<String>,
    /// Standardisation inside each fold: `auto` (default: `none` for a text project, whose
    /// TF-IDF rows have unit length; `global` otherwise), `global`, `per-site` or `none`.
    #[arg(long, default_value = "auto", value_parser = parse_scaler)]
    pub scaler: ScalerKind,
    /// Text projects: how documents become features. `tfidf` (default): words and pairs of
    /// neighbouring words counted, weighed by TF-IDF learned inside each fold from its training
    /// documents only. `hashed`: the features worker's 4,096 hashed term frequencies.
    #[arg(long, value_name = "tfidf|hashed", value_parser = parse_text)]
    pub text: Option<TextKind>,
    /// Text projects, tfidf: keep the terms found in at least N of a fold's training documents
    /// (default 1: every term).
    #[arg(long, value_name = "N")]
    pub min_df: Option<u32>,
    /// Text projects, tfidf: keep at most N terms, the most frequent over a fold's training
    /// documents (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_features: Option<u32>,
    /// Keep this percentile of features by their ANOVA F (fitted inside each fold).
    #[arg(long)]
    pub select_percentile: Option<f64>,
    /// PCA to this many components (fitted inside each fold).
    #[arg(long)]
    pub pca: Option<u32>,
    /// A grid parameter with its candidates (repeatable), e.g. `--grid C=0.1,1,10`.
    #[arg(long = "grid", value_parser = parse_param)]
    pub grid: Vec<(String, String)>,
    /// With --grid: choose the candidate inside each fold's training rows by an inner k-fold
    /// (nested cross-validation), so the reported score is not biased by the choice.
    #[arg(long)]
    pub nested: bool,
    /// Label permutations for a permutation test of the score (0: none).
    #[arg(long, default_value_t = 0)]
    pub permutations: u32,
    /// Folds of stratified k-fold cross-validation.
    #[arg(long, default_value_t = 5)]
    pub cv: u32,
    /// Seed of the fold shuffle: the same seed gives the same folds.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only these sites (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    pub sites: Vec<String>,
    /// Wait for the report and print the cross-validated accuracy.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

fn parse_scheme(s: &str) -> Result<CvScheme, String> {
    match s.replace('-', "_").as_str() {
        "stratified_k_fold" | "k_fold" => Ok(CvScheme::StratifiedKFold),
        "repeated_k_fold" => Ok(CvScheme::RepeatedKFold),
        "leave_one_out" => Ok(CvScheme::LeaveOneOut),
        "leave_one_site_out" => Ok(CvScheme::LeaveOneSiteOut),
        "held_out_sites" => Ok(CvScheme::HeldOutSites),
        _ => Err(format!(
            "unknown scheme {s:?}; expected stratified-k-fold, repeated-k-fold, leave-one-out, \
             leave-one-site-out or held-out-sites"
        )),
    }
}

fn parse_text(s: &str) -> Result<TextKind, String> {
    match s {
        "tfidf" => Ok(TextKind::Tfidf),
        "hashed" => Ok(TextKind::Hashed),
        _ => Err(format!(
            "unknown text features {s:?}; expected tfidf or hashed"
        )),
    }
}

fn parse_scaler(s: &str) -> Result<ScalerKind, String> {
    match s.replace('-', "_").as_str() {
        "auto" => Ok(ScalerKind::Auto),
        "global" => Ok(ScalerKind::Global),
        "per_site" => Ok(ScalerKind::PerSite),
        "none" => Ok(ScalerKind::None),
        _ => Err(format!(
            "unknown scaler {s:?}; expected auto, global, per-site or none"
        )),
    }
}

impl TrainArgs {
    /// The full job (`train.v1` with its options) and the run it asks for, checked as the worker
    /// will check it.
    pub fn request(&self, run_id: Uuid) -> anyhow::Result<(TrainRequest, RunConfig)> {
        let mut options = TrainOptions::default();
        options.validation.scheme = if self.leave_site_out {
            CvScheme::LeaveOneSiteOut
        } else {
            self.scheme
        };
        // The message's 0 means the default; the flag shows the default itself.
        options.validation.repeats = if options.validation.scheme == CvScheme::RepeatedKFold {
            self.repeats
        } else {
            0
        };
        options.validation.test_sites = self.test_sites.clone();
        options.pipeline.scaler = self.scaler;
        options.pipeline.select_percentile = self.select_percentile;
        options.pipeline.pca_components = self.pca;
        if self.text_flag().is_some() {
            options.pipeline.text = Some(TextFeatures {
                kind: self.text.unwrap_or_default(),
                min_df: self.min_df.unwrap_or(1),
                max_features: self.max_features,
            });
        }
        for (param, values) in &self.grid {
            options.grid.insert(
                param.clone(),
                values.split(',').map(|v| v.trim().to_owned()).collect(),
            );
        }
        options.permutations = self.permutations;
        options.nested = self.nested;
        let request = TrainRequest {
            train: self.message(run_id),
            options,
        };
        let config = swarm_train::request::validate_request(&request)
            .map_err(|e| anyhow::anyhow!(flag_names(&e)))?;
        Ok((request, config))
    }

    /// The first text flag given (`--text`, `--min-df`, `--max-features`), if any: they apply
    /// to text projects only.
    pub fn text_flag(&self) -> Option<&'static str> {
        if self.text.is_some() {
            Some("--text")
        } else if self.min_df.is_some() {
            Some("--min-df")
        } else if self.max_features.is_some() {
            Some("--max-features")
        } else {
            None
        }
    }

    /// The job message for a new run.
    pub fn message(&self, run_id: Uuid) -> TrainV1 {
        TrainV1 {
            run_id,
            project: self.project.clone(),
            model: self.model.clone(),
            params: self.params.iter().cloned().collect::<BTreeMap<_, _>>(),
            cv: CrossValidation {
                folds: self.cv,
                seed: self.seed,
            },
            sites: self.sites.clone(),
        }
    }
}

/// The worker's message for a refused request, with the message's field names replaced by the
/// flags that set them (`cv.folds` → `--cv`).
fn flag_names(error: &str) -> String {
    const FLAGS: [(&str, &str); 12] = [
        (
            "pipeline.text.min_df and pipeline.text.max_features apply to tfidf text features",
            "--min-df and --max-features apply to --text tfidf",
        ),
        ("pipeline.text.min_df", "--min-df"),
        ("pipeline.text.max_features", "--max-features"),
        (
            "text features (pipeline.text)",
            "--text, --min-df and --max-features",
        ),
        ("cv.folds", "--cv"),
        ("validation.repeats", "--repeats"),
        ("validation.test_sites", "--test-sites"),
        ("the held_out_sites scheme", "--scheme held-out-sites"),
        ("pipeline.pca_components", "--pca"),
        ("pipeline.select_percentile", "--select-percentile"),
        ("permutations must", "--permutations must"),
        ("nested validation", "--nested"),
    ];
    let mut error = error.strip_prefix("train.v1: ").unwrap_or(error).to_owned();
    for (field, flag) in FLAGS {
        error = error.replace(field, flag);
    }
    error.replacen("grid parameter", "--grid parameter", 1)
}

/// The headline of a finished run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Mean cross-validated accuracy (NaN for a regression).
    pub accuracy: f64,
    /// Its standard deviation across folds.
    pub accuracy_sd: f64,
    /// The headline metric: `accuracy` for a classifier, `r2` for a regression.
    pub metric: String,
    /// Its mean over folds (pooled over all held-out predictions for leave-one-out).
    pub score: Option<f64>,
    /// Its standard deviation across folds; none when pooled.
    pub score_sd: Option<f64>,
    /// The report's Markdown summary.
    pub summary: String,
}

impl RunResult {
    /// The headline in words: see [`headline`].
    pub fn headline(&self) -> String {
        headline(&self.metric, self.score, self.score_sd)
    }
}

/// `accuracy 0.912 ± 0.031`, `r2 0.480 ± 0.050`, or `accuracy 0.767 (pooled)` (leave-one-out:
/// one score over all held-out predictions, no spread).
pub fn headline(metric: &str, score: Option<f64>, sd: Option<f64>) -> String {
    match (score, sd) {
        (Some(score), Some(sd)) => format!("{metric} {score:.3} ± {sd:.3}"),
        (Some(score), None) => format!("{metric} {score:.3} (pooled)"),
        _ => format!("{metric}: no score"),
    }
}

/// The SQL of a run's headline metric, its mean and its sd (NULL when pooled), from `runs r`.
pub const HEADLINE_SQL: &str = "m.metric, (r.metrics->m.metric->>'mean')::float8,
    CASE WHEN r.cv->>'scheme' = 'leave_one_out' THEN NULL
         ELSE (r.metrics->m.metric->>'sd')::float8 END
    FROM runs r CROSS JOIN LATERAL (SELECT CASE WHEN r.metrics ? 'accuracy' THEN 'accuracy'
                                                ELSE 'r2' END AS metric) m";

/// Polls until the run's report exists, the run fails or is cancelled, the job is
/// dead-lettered, or the deadline passes.
pub async fn wait_for_report(
    pool: &Pool,
    run_id: Uuid,
    timeout: Duration,
) -> anyhow::Result<RunResult> {
    wait(pool, run_id, timeout, |_| {}).await
}

/// [`wait_for_report`], telling `on_progress` where the run is at every poll.
async fn wait(
    pool: &Pool,
    run_id: Uuid,
    timeout: Duration,
    mut on_progress: impl FnMut(&Progress),
) -> anyhow::Result<RunResult> {
    let deadline = Instant::now() + timeout;
    let job = run_id.to_string();
    loop {
        let client = pool.get().await.context("Failed to connect to Postgres")?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT (r.metrics->'accuracy'->>'mean')::float8,
                            (r.metrics->'accuracy'->>'sd')::float8, p.summary, {HEADLINE_SQL}
                     JOIN reports p ON p.run_id = r.id WHERE r.id = $1"
                ),
                &[&run_id],
            )
            .await?;
        if let Some(row) = row {
            return Ok(RunResult {
                accuracy: row.get::<_, Option<f64>>(0).unwrap_or(f64::NAN),
                accuracy_sd: row.get::<_, Option<f64>>(1).unwrap_or(f64::NAN),
                summary: row.get(2),
                metric: row.get(3),
                score: row.get(4),
                score_sd: row.get(5),
            });
        }
        if let Some(progress) = swarm_train::runs::progress(&**client, run_id).await? {
            on_progress(&progress);
            let reason = progress.reason.as_deref().unwrap_or("no reason given");
            match progress.state.as_str() {
                "failed" => bail!("run {run_id} failed: {reason}"),
                "cancelled" => bail!("run {run_id} was cancelled: {reason}"),
                _ => {}
            }
        }
        if let Some(dead) = client
            .query_opt(
                "SELECT queue, reason FROM dead_letters WHERE correlation_id = $1 AND replayed_at IS NULL ORDER BY id LIMIT 1",
                &[&job],
            )
            .await?
        {
            let (queue, reason): (String, String) = (dead.get(0), dead.get(1));
            bail!("the job failed in {queue}: {reason}");
        }
        if Instant::now() > deadline {
            bail!("no report for run {run_id} after {timeout:?}: are the train and report workers running?");
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A progress bar over a run's units on stderr (drawn only on a terminal).
fn units_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} units ({elapsed}, eta {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message("queued");
    bar
}

/// Shows a run's progress on the bar.
fn show(bar: &ProgressBar, progress: &Progress) {
    bar.set_length(progress.units_total);
    bar.set_position(progress.units_done);
    bar.set_message(
        match progress.state.as_str() {
            "running" if progress.is_queued() => "queued",
            "running" => "training",
            "finished" => "reporting",
            other => other,
        }
        .to_owned(),
    );
}

/// `swarm train`.
pub async fn run(settings: &Settings, args: TrainArgs) -> anyhow::Result<()> {
    let run_id = Uuid::now_v7();
    let (message, config) = args.request(run_id)?;
    if let Some(client) = super::precheck::connect(settings, "the project, sites and labels").await
    {
        super::precheck::train(
            &client,
            &args.project,
            &args.sites,
            &config,
            args.text_flag(),
            args.text,
        )
        .await?;
    }
    let outlet = super::connect(settings).await?;
    outlet.send(&message, &run_id.to_string()).await?;
    outlet.close().await;
    println!("{run_id}");
    if args.wait {
        let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
        let bar = units_bar();
        let result = wait(&pool, run_id, Duration::from_secs(args.timeout), |p| {
            show(&bar, p)
        })
        .await;
        bar.finish_and_clear();
        let result = result?;
        println!(
            "{} ({})",
            result.headline(),
            message.options.validation.scheme.as_str()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::headline;

    #[test]
    fn headlines_name_the_metric_and_say_when_a_score_is_pooled() {
        assert_eq!(headline("r2", Some(0.4812), Some(0.05)), "r2 0.481 ± 0.050");
        assert_eq!(
            headline("accuracy", Some(0.7666), None),
            "accuracy 0.767 (pooled)"
        );
        assert_eq!(headline("r2", None, None), "r2: no score");
    }
}
