//! Swarm's AMQP messages: the serde types every producer and worker agrees on.
//!
//! Bodies are MessagePack maps with named fields (`rmp_serde` struct-map, ids as strings), so a
//! producer in any language can publish by following the JSON Schemas checked in under
//! `broker-schemas/schemas/` (one per message, generated from these types; a test fails when they
//! drift) and the examples under `broker-schemas/examples/`.
//!
//! AMQP properties carry the envelope: `type` = [`Message::TYPE`] (also the routing key),
//! `message_id` (UUID v7), `correlation_id` (the job id), `content_type` = [`CONTENT_TYPE`],
//! `timestamp`, `app_id`, persistent delivery, and W3C `traceparent`/`tracestate` headers.
//!
//! Compatibility: unknown fields are ignored; a new field is optional with a default; a breaking
//! change is a new `vN` type consumed side by side with the old one.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

pub mod limits;
pub mod results;

/// The `content_type` of every Swarm message.
pub const CONTENT_TYPE: &str = "application/msgpack";

/// A message type on the swarm's exchange.
pub trait Message: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The AMQP `type` property and routing key, e.g. `ingest.v1`.
    const TYPE: &'static str;
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode a {kind} body as MessagePack: {source}")]
pub struct DecodeError {
    kind: &'static str,
    #[source]
    source: rmp_serde::decode::Error,
}

/// Encodes a message as a MessagePack map with named fields (ids as strings).
pub fn encode<M: Message>(message: &M) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    let mut ser = rmp_serde::Serializer::new(&mut buf)
        .with_struct_map()
        .with_human_readable();
    message
        .serialize(&mut ser)
        .expect("serialising to a Vec cannot fail");
    buf
}

/// Decodes a MessagePack body into a message.
pub fn decode<M: Message>(body: &[u8]) -> Result<M, DecodeError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(body).with_human_readable();
    M::deserialize(&mut de).map_err(|source| DecodeError {
        kind: M::TYPE,
        source,
    })
}

/// The JSON Schema of a message, pretty-printed, as checked in under `schemas/<type>.json`.
pub fn schema_json<M: Message>() -> String {
    let schema = schemars::schema_for!(M);
    serde_json::to_string_pretty(&schema).expect("a schema serialises") + "\n"
}

/// Every message type with its JSON Schema: `(type, schema)`.
pub fn all_schemas() -> Vec<(&'static str, String)> {
    vec![
        (IngestV1::TYPE, schema_json::<IngestV1>()),
        (FeaturesV1::TYPE, schema_json::<FeaturesV1>()),
        (TrainV1::TYPE, schema_json::<TrainRequest>()),
        (ReportV1::TYPE, schema_json::<ReportV1>()),
        (StatsV1::TYPE, schema_json::<StatsV1>()),
        (TrainUnitV1::TYPE, schema_json::<TrainUnitV1>()),
    ]
}

/// `ingest.v1`: a batch of samples from one site of one project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngestV1 {
    /// Project name (1–64 characters); every sample of a project has the same dimension.
    pub project: String,
    /// Site (lab, hospital) that produced the samples (1–64 characters).
    pub site: String,
    /// The samples; at most `limits::MAX_SAMPLES_PER_BATCH`.
    pub samples: Vec<Sample>,
}

impl Message for IngestV1 {
    const TYPE: &'static str = "ingest.v1";
}

/// One subject's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sample {
    /// Subject id, unique per project and site (1–128 characters). Re-sending a subject replaces it.
    pub subject: String,
    /// Class label (for classification), non-empty.
    pub label: String,
    /// How to read `values`.
    pub kind: SampleKind,
    /// `vector`: the features. `timeseries`: a T×R matrix in row-major order (timepoint by
    /// timepoint), R regions per row. Every value must be finite.
    pub values: Vec<f32>,
    /// `timeseries` only: T, the number of timepoints (rows); R = values.len() / T.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timepoints: Option<u32>,
    /// Subject-level covariates (age, sex coded as a number, …) for statistics and
    /// harmonisation; at most 64, finite, names of 1–64 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub covariates: BTreeMap<String, f64>,
    /// `text` only: the document (then `values` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Sample {
    /// A feature vector with no covariates.
    pub fn vector(subject: impl Into<String>, label: impl Into<String>, values: Vec<f32>) -> Self {
        Self {
            subject: subject.into(),
            label: label.into(),
            kind: SampleKind::Vector,
            values,
            timepoints: None,
            covariates: BTreeMap::new(),
            text: None,
        }
    }
}

/// What a sample holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SampleKind {
    /// A feature vector, used as is.
    Vector,
    /// A time-series matrix (e.g. ROI signals), turned into functional connectivity.
    Timeseries,
    /// A text document: TF-IDF of its words and word pairs in training (or the features
    /// worker's hashed uni+bi-gram frequencies).
    Text,
}

impl SampleKind {
    /// The name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SampleKind::Vector => "vector",
            SampleKind::Timeseries => "timeseries",
            SampleKind::Text => "text",
        }
    }
}

/// `features.v1`: extract features for these stored samples (emitted by the ingest worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeaturesV1 {
    /// Project name.
    pub project: String,
    /// Database ids of the samples (`samples.id`).
    pub sample_ids: Vec<i64>,
}

impl Message for FeaturesV1 {
    const TYPE: &'static str = "features.v1";
}

/// `train.v1`: cross-validate a model on a project's features, then fit it on all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainV1 {
    /// The run this job creates (chosen by the producer so it can wait for it).
    pub run_id: Uuid,
    /// Project name.
    pub project: String,
    /// Model name: `logistic`.
    pub model: String,
    /// Model parameters as strings, e.g. `{"C": "1.0"}`; defaults equal scikit-learn's.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Cross-validation scheme.
    #[serde(default)]
    pub cv: CrossValidation,
    /// Only samples from these sites; empty means all sites.
    #[serde(default)]
    pub sites: Vec<String>,
}

impl Message for TrainV1 {
    const TYPE: &'static str = "train.v1";
}

/// `train.v1` with the options added after its first version ([`TrainOptions`]), as the CLI
/// sends it. Same type and routing key as [`TrainV1`]: a body from an older producer (a plain
/// `TrainV1`) decodes into it with every option at its default, and a consumer that only knows
/// `TrainV1` ignores the options. The checked-in `train.v1` schema is this type's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainRequest {
    /// The first version's fields.
    #[serde(flatten)]
    pub train: TrainV1,
    /// The later, optional fields.
    #[serde(flatten)]
    pub options: TrainOptions,
}

impl Message for TrainRequest {
    const TYPE: &'static str = TrainV1::TYPE;
}

impl From<TrainV1> for TrainRequest {
    fn from(train: TrainV1) -> Self {
        Self {
            train,
            options: TrainOptions::default(),
        }
    }
}

/// Optional `train.v1` fields: validation scheme, preprocessing, grid, permutation test. Every
/// field has a default, so older producers still work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainOptions {
    /// The validation scheme (default: stratified k-fold with `cv.folds` and `cv.seed`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub validation: Validation,
    /// The steps before the model, each fitted inside every fold (default: standardisation
    /// chosen by the project's kind and, for text, TF-IDF).
    #[serde(default, skip_serializing_if = "is_default")]
    pub pipeline: Pipeline,
    /// A parameter grid: parameter name → candidate values (strings), e.g.
    /// `{"C": ["0.1", "1", "10"]}`. Every combination is validated under the scheme; the best
    /// (by balanced accuracy, or R² for regression) is refitted on all rows. Empty (default): no
    /// search.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grid: BTreeMap<String, Vec<String>>,
    /// With a grid: choose the candidate inside each outer training set by an inner stratified
    /// k-fold (nested cross-validation, k = `cv.folds`), so the reported scores are not biased
    /// by the choice (default false: candidates are compared on the run's own folds).
    #[serde(default, skip_serializing_if = "is_default")]
    pub nested: bool,
    /// Label permutations of a permutation test of the validated score (default 0: none; at
    /// most 10000).
    #[serde(default, skip_serializing_if = "is_default")]
    pub permutations: u32,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The validation scheme; `cv.folds` and `cv.seed` of [`TrainV1`] give k and the shuffle seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Validation {
    /// The scheme (default `stratified_k_fold`; regression models use plain k-fold for it).
    #[serde(default)]
    pub scheme: CvScheme,
    /// `repeated_k_fold`: the number of repeats, each with its own shuffle (default 0 = 10, as
    /// scikit-learn's `RepeatedStratifiedKFold`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub repeats: u32,
    /// `held_out_sites`: the sites tested on; the other selected sites are trained on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_sites: Vec<String>,
}

/// A validation scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CvScheme {
    /// Stratified k-fold, seeded (plain k-fold for regression).
    #[default]
    StratifiedKFold,
    /// Stratified k-fold repeated `repeats` times, each with its own shuffle.
    RepeatedKFold,
    /// One fold per sample.
    LeaveOneOut,
    /// One fold per site: train on the other sites, test on it.
    LeaveOneSiteOut,
    /// Train on every selected site but `test_sites`, test once on those.
    HeldOutSites,
}

impl CvScheme {
    /// The name stored in `runs.cv` under `scheme`.
    pub fn as_str(self) -> &'static str {
        match self {
            CvScheme::StratifiedKFold => "stratified_k_fold",
            CvScheme::RepeatedKFold => "repeated_k_fold",
            CvScheme::LeaveOneOut => "leave_one_out",
            CvScheme::LeaveOneSiteOut => "leave_one_site_out",
            CvScheme::HeldOutSites => "held_out_sites",
        }
    }
}

/// Preprocessing steps, each fitted on a fold's training rows only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Pipeline {
    /// Standardisation: `auto` (default: `none` for a text project, else `global`), `global`,
    /// `per_site` (each site centred and scaled with its own training rows: multi-site
    /// harmonisation) or `none`.
    #[serde(default)]
    pub scaler: ScalerKind,
    /// Text projects only: how documents become features. Default (absent): TF-IDF fitted
    /// inside each fold with `min_df` 1 and no `max_features`. Refused for other projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextFeatures>,
    /// ANOVA F-test feature selection (F-regression for regression models): the percentile of
    /// features kept, in (0, 100]. Default: no selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_percentile: Option<f64>,
    /// PCA to this many components. Default: no PCA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pca_components: Option<u32>,
}

/// How a text project's documents become features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TextFeatures {
    /// `tfidf` (default) or `hashed`.
    #[serde(default)]
    pub kind: TextKind,
    /// `tfidf`: keep the terms found in at least this many of a fold's training documents
    /// (default 1: every term; at least 1).
    #[serde(default = "default_min_df")]
    pub min_df: u32,
    /// `tfidf`: keep at most this many terms, the most frequent over a fold's training
    /// documents (at least 1). Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_features: Option<u32>,
}

fn default_min_df() -> u32 {
    1
}

impl Default for TextFeatures {
    fn default() -> Self {
        Self {
            kind: TextKind::default(),
            min_df: default_min_df(),
            max_features: None,
        }
    }
}

/// The features of a text project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextKind {
    /// Word and bigram counts of the documents, weighed by TF-IDF (sublinear TF, smooth IDF,
    /// rows of unit length) learned inside each fold from its training documents only.
    #[default]
    Tfidf,
    /// The features worker's hashed term frequencies (4,096 buckets), as stored.
    Hashed,
}

impl TextKind {
    /// The name stored in `runs.results.pipeline.text.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            TextKind::Tfidf => "tfidf",
            TextKind::Hashed => "hashed",
        }
    }
}

/// How features are standardised inside each fold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScalerKind {
    /// Chosen by the train worker from the project's kind: `none` for text (TF-IDF rows are
    /// already of unit length; z-scoring sparse counts makes them dense), `global` otherwise.
    #[default]
    Auto,
    /// One mean and sd per feature over the training rows.
    Global,
    /// One mean and sd per feature and site over that site's training rows; a test row of a
    /// site without training rows uses the global statistics.
    PerSite,
    /// No standardisation.
    None,
}

impl ScalerKind {
    /// The name stored in `runs.results.pipeline.scaler`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScalerKind::Auto => "auto",
            ScalerKind::Global => "global",
            ScalerKind::PerSite => "per_site",
            ScalerKind::None => "none",
        }
    }
}

/// Stratified k-fold cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrossValidation {
    /// Number of folds, 2–100 (default 5).
    #[serde(default = "default_folds")]
    pub folds: u32,
    /// Shuffle seed (default 0): the same seed gives the same folds.
    #[serde(default)]
    pub seed: u64,
}

fn default_folds() -> u32 {
    5
}

impl Default for CrossValidation {
    fn default() -> Self {
        Self {
            folds: default_folds(),
            seed: 0,
        }
    }
}

/// `report.v1`: render the report of a finished run (emitted by the train worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReportV1 {
    /// The run to render.
    pub run_id: Uuid,
}

impl Message for ReportV1 {
    const TYPE: &'static str = "report.v1";
}

/// `train.unit.v1`: one work unit of a `train.v1` run (emitted by the train worker to the train
/// workers): validate what unit `unit` of the run's stored plan names, store its result, and
/// — for the run's last unit — assemble and store the run. Every replica computes the same unit
/// the same way, so any may take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainUnitV1 {
    /// The run (`train.v1`'s `run_id`).
    pub run_id: Uuid,
    /// The unit's number in the run's plan (`run_units.unit`).
    pub unit: u32,
}

impl Message for TrainUnitV1 {
    const TYPE: &'static str = "train.unit.v1";
}

/// `stats.v1`: univariate statistics per feature of a project (handled by the train worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatsV1 {
    /// The statistics job this creates (`stats_jobs.id`; its report is keyed by it too).
    pub job_id: Uuid,
    /// Project name.
    pub project: String,
    /// The test.
    pub test: StatsTest,
    /// `pearson`/`spearman`: what to correlate every feature with — a key of the samples'
    /// `covariates`, or `label` for numeric labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariate: Option<String>,
    /// `welch_t`/`anova`: the label groups to compare; empty (default) means every label
    /// (`welch_t` then needs exactly two).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Only samples from these sites; empty means all sites.
    #[serde(default)]
    pub sites: Vec<String>,
    /// The false-discovery rate of the Benjamini–Hochberg correction (default 0.05).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

/// A univariate test, per feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatsTest {
    /// Welch's two-sample t-test between two label groups (unequal variances).
    WelchT,
    /// One-way ANOVA across the label groups.
    Anova,
    /// Pearson correlation with a covariate.
    Pearson,
    /// Spearman rank correlation with a covariate.
    Spearman,
}

impl StatsTest {
    /// The name stored in `stats_jobs.test`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatsTest::WelchT => "welch_t",
            StatsTest::Anova => "anova",
            StatsTest::Pearson => "pearson",
            StatsTest::Spearman => "spearman",
        }
    }
}

fn default_alpha() -> f64 {
    0.05
}

impl Message for StatsV1 {
    const TYPE: &'static str = "stats.v1";
}
