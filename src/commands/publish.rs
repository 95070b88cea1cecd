//! `swarm publish`: read a site's files and publish them as `ingest.v1` batches.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use broker_schemas::{limits, IngestV1, Sample, SampleKind};
use indicatif::{ProgressBar, ProgressStyle};
use swarm_runtime::{Client, Settings};
use tracing::Instrument;
use uuid::Uuid;

use super::regions::{self, Names};
use super::status::{self, IngestStatus};
use crate::load;

/// Arguments of `swarm publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Project the samples belong to (all samples of a project share one dimension).
    #[arg(long)]
    pub project: String,
    /// Site (lab, hospital) publishing them.
    #[arg(long)]
    pub site: String,
    /// Time-series or text mode: a CSV `subject,label` giving each file's label (subject = file
    /// name without extension); `.txt` files are text documents, others time series. Without it,
    /// every file is a feature table with header `subject,label,<feature>...` (or NEURO-LEARN's
    /// `ID,LABEL_*,<feature>...`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// NEURO-LEARN tables (`ID`, `LABEL_*`, features): the label column, e.g. `LABEL_SCORE` for a
    /// regression target (default `LABEL_GROUP`).
    #[arg(long)]
    pub label: Option<String>,
    /// Columns kept as covariates (e.g. `age,sex`) instead of features; for NEURO-LEARN tables,
    /// among the other numeric `LABEL_*` columns (named `age` for `LABEL_AGE`; default all).
    #[arg(long, value_delimiter = ',')]
    pub covariates: Vec<String>,
    /// Most samples per message (at least 1).
    #[arg(long, default_value_t = 100, value_parser = parse_batch_size)]
    pub batch_size: usize,
    /// Wait until every sample is ingested and featurised, or refused; print what was refused
    /// and why, and exit non-zero if anything was. Needs the database (DATABASE_URL).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Feature tables (.csv, .tsv), time series (.tsv, .csv, .1D, .npy: T rows × R regions) or
    /// text documents (.txt).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn parse_batch_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("a batch holds at least 1 sample".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Refuses a project or site name the workers would refuse (empty, blank, too long, control
/// characters), naming the flag.
pub fn check_name(flag: &str, name: &str) -> anyhow::Result<()> {
    if name.trim().is_empty() {
        bail!("{flag}: the name is empty");
    }
    let length = name.chars().count();
    if length > limits::MAX_NAME_LEN {
        bail!(
            "{flag}: the name is {length} characters long; at most {} are allowed",
            limits::MAX_NAME_LEN
        );
    }
    if name.chars().any(char::is_control) {
        bail!("{flag}: the name {name:?} contains control characters");
    }
    Ok(())
}

/// What the samples are, for the project check: their kind and dimension (features or regions).
fn shape(sample: &Sample) -> (SampleKind, usize) {
    let dimension = match (sample.kind, sample.timepoints) {
        (SampleKind::Timeseries, Some(t)) if t > 0 => sample.values.len() / t as usize,
        (SampleKind::Text, _) => 1,
        _ => sample.values.len(),
    };
    (sample.kind, dimension)
}

fn has_txt(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
}

/// Reads the files into samples, with the names the files give their features or regions.
pub fn read_samples(args: &PublishArgs) -> anyhow::Result<(Vec<Sample>, Option<Names>)> {
    match &args.labels {
        Some(labels) => {
            let labels = load::read_labels(labels)?;
            match args.files.iter().filter(|p| has_txt(p)).count() {
                0 => Ok((
                    load::timeseries_samples(&args.files, &labels)?,
                    load::region_names(&args.files)?.map(Names::Regions),
                )),
                n if n == args.files.len() => Ok((load::text_samples(&args.files, &labels)?, None)),
                _ => bail!("publish text (.txt) and time-series files in separate runs"),
            }
        }
        None => {
            if let Some(document) = args.files.iter().find(|p| has_txt(p)) {
                bail!(
                    "{}: text documents need a labels file: --labels FILE, a CSV `subject,label` \
                     giving each document's label (its subject is the file name without .txt)",
                    document.display()
                );
            }
            let mut samples = Vec::new();
            let mut names: Option<(&PathBuf, Vec<String>)> = None;
            for path in &args.files {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("Failed to read {}", path.display()))?;
                let (read, features) =
                    load::read_table_with(path, &bytes, args.label.as_deref(), &args.covariates)?;
                match &names {
                    Some((first, first_names)) if *first_names != features => bail!(
                        "{} and {} name their features differently; give the tables one header, \
                         or publish them into separate projects",
                        first.display(),
                        path.display()
                    ),
                    Some(_) => {}
                    None => names = Some((path, features)),
                }
                samples.extend(read);
            }
            Ok((samples, names.map(|(_, n)| Names::Features(n))))
        }
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Publishes samples of one site in batches under one job id; returns the number of messages.
pub async fn publish_samples(
    outlet: &Client,
    project: &str,
    site: &str,
    samples: Vec<Sample>,
    batch_size: usize,
    job_id: Uuid,
    bar: &ProgressBar,
) -> anyhow::Result<usize> {
    let job = job_id.to_string();
    let batches = load::batches(samples, batch_size, limits::MAX_MESSAGE_BYTES / 2);
    let count = batches.len();
    for batch in batches {
        let n = batch.len() as u64;
        let message = IngestV1 {
            project: project.to_string(),
            site: site.to_string(),
            samples: batch,
        };
        outlet.send(&message, &job).await?;
        bar.inc(n);
    }
    Ok(count)
}

/// The root span of a job: every message published under it, and everything the workers do with
/// them, is one trace.
pub fn job_span(job_id: Uuid) -> tracing::Span {
    tracing::info_span!("job", otel.name = format!("job {job_id}"), job_id = %job_id)
}

/// `swarm publish`.
pub async fn run(settings: &Settings, args: PublishArgs) -> anyhow::Result<()> {
    check_name("--project", &args.project)?;
    check_name("--site", &args.site)?;
    let (samples, names) = read_samples(&args)?;
    let Some(first) = samples.first() else {
        bail!("the files hold no samples");
    };
    let what = if names.is_some() {
        "the project's kind (and the feature names not stored)"
    } else {
        "the project's kind"
    };
    let database = super::precheck::connect(settings, what).await;
    if let Some(client) = &database {
        let (kind, dimension) = shape(first);
        super::precheck::publish(client, &args.project, kind, dimension).await?;
        if let Some(names) = &names {
            if let Some(before) = regions::store(client, &args.project, names).await? {
                eprintln!(
                    "note: project {:?}'s {} were named {}; the names in these files replace them",
                    args.project,
                    names.what(),
                    before.join(", ")
                );
            }
        }
    }
    let outlet = super::connect(settings).await?;
    let job_id = Uuid::now_v7();
    let bar = progress(samples.len() as u64, "publishing");
    let n = samples.len();
    let messages = publish_samples(
        &outlet,
        &args.project,
        &args.site,
        samples,
        args.batch_size,
        job_id,
        &bar,
    )
    .instrument(job_span(job_id))
    .await?;
    bar.finish_and_clear();
    outlet.close().await;
    if let Some(client) = &database {
        client
            .execute(
                "INSERT INTO published_jobs (job_id, project, site, samples, messages)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &job_id.to_string(),
                    &args.project,
                    &args.site,
                    &(n as i32),
                    &(messages as i32),
                ],
            )
            .await
            .map_err(|e| {
                eprintln!("note: the job's sample count is not recorded ({e}); `swarm status` shows what arrived")
            })
            .ok();
    }
    eprintln!(
        "Published {} of project {:?}, site {:?} in {}.",
        super::count(n, "sample"),
        args.project,
        args.site,
        super::count(messages, "message")
    );
    println!("{job_id}");
    if args.wait {
        wait_for_ingest(settings, job_id, n, Duration::from_secs(args.timeout)).await?;
    }
    Ok(())
}

/// Polls the job's status until its `published` samples are all ingested and featurised, or
/// refused; fails if any was refused, or at the deadline.
pub async fn wait_for_ingest(
    settings: &Settings,
    job_id: Uuid,
    published: usize,
    timeout: Duration,
) -> anyhow::Result<IngestStatus> {
    let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
    let deadline = Instant::now() + timeout;
    let bar = progress(published as u64, "featurising");
    let status = loop {
        let client = pool.get().await.context("Failed to connect to Postgres")?;
        let status = status::ingest_status(&client, job_id).await?;
        drop(client);
        bar.set_position(
            (status.featurised as u64 + status.refused() as u64).min(published as u64),
        );
        if status.is_settled(published) {
            break status;
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!(
                "job {job_id}: after {timeout:?}, {} of {published} ingested and {} featurised: \
                 are the ingest and features workers running? (`swarm status {job_id}` shows it later)",
                status.ingested,
                status.featurised
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    bar.finish_and_clear();
    let refused = status.refused();
    for line in status.refusal_lines() {
        eprintln!("{line}");
    }
    if refused > 0 {
        bail!(
            "{} of {published} refused (job {job_id}); fix them and publish those again",
            super::count(refused, "sample")
        );
    }
    eprintln!(
        "Ingested and featurised {}.",
        super::count(status.featurised as usize, "sample")
    );
    Ok(status)
}
