//! `swarm demo`: migrate, run the four workers in this process, publish a synthetic 3-site data
//! set with a real class signal, train, wait, and print the report's summary.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use broker_schemas::{CrossValidation, Sample, TrainV1};
use swarm_runtime::{Settings, WorkerHandle};
use tracing::Instrument;
use uuid::Uuid;

use super::publish::{progress, publish_samples};
use super::train::wait_for_report;
use crate::synth;

/// What kind of synthetic data the demo publishes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DemoKind {
    /// ROI time series (T × R), turned into functional connectivity by the features worker.
    Timeseries,
    /// Plain feature vectors.
    Vector,
}

/// Arguments of `swarm demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Kind of synthetic data.
    #[arg(long, value_enum, default_value = "timeseries")]
    pub kind: DemoKind,
    /// Subjects per site (3 sites, half patients, half controls).
    #[arg(long, default_value_t = 60)]
    pub subjects_per_site: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];

/// Starts the four workers in this process.
pub fn spawn_workers(settings: &Settings) -> Vec<WorkerHandle> {
    let mut settings = settings.clone();
    // One port cannot serve four in-process workers.
    settings.http_addr = None;
    vec![
        swarm_runtime::spawn(swarm_ingest::IngestHandler, settings.clone()),
        swarm_runtime::spawn(swarm_features::FeaturesHandler, settings.clone()),
        swarm_runtime::spawn(swarm_train::TrainHandler::default(), settings.clone()),
        swarm_runtime::spawn(swarm_report::ReportHandler::from_env(), settings),
    ]
}

/// `swarm demo`.
pub async fn run(settings: &Settings, args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout);
    eprintln!(
        "Migrating {} ...",
        swarm_runtime::settings::redact(&settings.database_url)
    );
    let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 2).await?;
    let workers = spawn_workers(settings);
    let result = pipeline(settings, &args, &pool, timeout).await;
    for worker in workers {
        worker.stop().await?;
    }
    let run_id = result?;
    eprintln!("Done in {:.1} s.", started.elapsed().as_secs_f64());
    eprintln!("The whole report: swarm report show {run_id} --format html --out report.html");
    Ok(())
}

async fn pipeline(
    settings: &Settings,
    args: &DemoArgs,
    pool: &swarm_runtime::db::Pool,
    timeout: Duration,
) -> anyhow::Result<Uuid> {
    let (project, data) = match args.kind {
        DemoKind::Timeseries => (
            "demo-connectivity",
            synth::timeseries_dataset(&SITES, args.subjects_per_site, 150, 16, args.seed),
        ),
        DemoKind::Vector => (
            "demo-vectors",
            synth::vector_dataset(&SITES, args.subjects_per_site, 64, args.seed),
        ),
    };
    let total = data.len();
    let mut by_site: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for (site, sample) in data {
        by_site.entry(site).or_default().push(sample);
    }
    let outlet = super::connect(settings).await?;
    let job_id = Uuid::now_v7();
    let bar = progress(total as u64, "publishing");
    let span = super::publish::job_span(job_id);
    for (site, samples) in by_site {
        publish_samples(&outlet, project, &site, samples, 20, job_id, &bar)
            .instrument(span.clone())
            .await?;
    }
    bar.finish_and_clear();
    eprintln!(
        "Published {total} subjects from {} sites as job {job_id}.",
        SITES.len()
    );

    let bar = progress(total as u64, "features");
    let deadline = Instant::now() + timeout;
    let job = job_id.to_string();
    loop {
        let client = pool.get().await.context("Failed to connect to Postgres")?;
        let done: i64 = client
            .query_one("SELECT count(*) FROM features WHERE job_id = $1", &[&job])
            .await?
            .get(0);
        bar.set_position(done as u64);
        if done as usize >= total {
            break;
        }
        if let Some(row) = client
            .query_opt(
                "SELECT reason FROM dead_letters WHERE correlation_id = $1 AND replayed_at IS NULL LIMIT 1",
                &[&job],
            )
            .await?
        {
            bail!(
                "a message of the demo was dead-lettered: {}",
                row.get::<_, String>(0)
            );
        }
        if Instant::now() > deadline {
            bail!("features for {done} of {total} subjects after {timeout:?}");
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    eprintln!("Extracted features for {total} subjects.");

    let run_id = Uuid::now_v7();
    let train = TrainV1 {
        run_id,
        project: project.to_string(),
        model: "logistic".into(),
        params: BTreeMap::new(),
        cv: CrossValidation { folds: 5, seed: 0 },
        sites: Vec::new(),
    };
    outlet.send(&train, &run_id.to_string()).await?;
    outlet.close().await;
    eprintln!("Training run {run_id} (logistic regression, stratified 5-fold) ...");
    let result = wait_for_report(pool, run_id, timeout).await?;
    println!("{}", result.summary);
    Ok(run_id)
}
