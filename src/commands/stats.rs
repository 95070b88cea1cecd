//! `swarm stats`: publish a `stats.v1` job (univariate statistics per feature), optionally wait
//! for its report.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use broker_schemas::{StatsTest, StatsV1};
use swarm_runtime::Settings;
use uuid::Uuid;

/// Arguments of `swarm stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Project whose features to test.
    #[arg(long)]
    pub project: String,
    /// The test: `welch-t` (two label groups), `anova` (label groups), `pearson` or `spearman`
    /// (with --covariate).
    #[arg(long, value_parser = parse_test)]
    pub test: StatsTest,
    /// `pearson`/`spearman`: the covariate to correlate with (a key of the samples' covariates,
    /// or `label` for numeric labels).
    #[arg(long)]
    pub covariate: Option<String>,
    /// `welch-t`/`anova`: the label groups to compare (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Only these sites (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    pub sites: Vec<String>,
    /// False-discovery rate of the Benjamini–Hochberg correction.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Wait for the report and print how many features are significant.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

fn parse_test(s: &str) -> Result<StatsTest, String> {
    match s.replace('-', "_").as_str() {
        "welch_t" | "t" | "ttest" => Ok(StatsTest::WelchT),
        "anova" => Ok(StatsTest::Anova),
        "pearson" => Ok(StatsTest::Pearson),
        "spearman" => Ok(StatsTest::Spearman),
        _ => Err(format!(
            "unknown test {s:?}; expected welch-t, anova, pearson or spearman"
        )),
    }
}

impl StatsArgs {
    /// The job message, checked as the worker will check it.
    pub fn message(&self, job_id: Uuid) -> anyhow::Result<StatsV1> {
        let message = StatsV1 {
            job_id,
            project: self.project.clone(),
            test: self.test,
            covariate: self.covariate.clone(),
            groups: self.groups.clone(),
            sites: self.sites.clone(),
            alpha: self.alpha,
        };
        swarm_train::request::validate_stats(&message).map_err(|e| anyhow::anyhow!(e))?;
        Ok(message)
    }
}

/// `swarm stats`.
pub async fn run(settings: &Settings, args: StatsArgs) -> anyhow::Result<()> {
    let job_id = Uuid::now_v7();
    let message = args.message(job_id)?;
    let outlet = super::connect(settings).await?;
    outlet.send(&message, &job_id.to_string()).await?;
    outlet.close().await;
    println!("{job_id}");
    if !args.wait {
        return Ok(());
    }
    let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
    eprintln!("Waiting for the statistics of job {job_id}...");
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let job = job_id.to_string();
    loop {
        let client = pool.get().await.context("Failed to connect to Postgres")?;
        if let Some(row) = client
            .query_opt(
                "SELECT n_features, (SELECT count(*) FROM jsonb_array_elements(results->'features') f
                                     WHERE (f->>'significant')::boolean)
                 FROM stats_jobs WHERE id = $1",
                &[&job_id],
            )
            .await?
        {
            let (n, significant): (i32, i64) = (row.get(0), row.get(1));
            println!(
                "{significant} of {n} features significant ({} with Benjamini–Hochberg FDR < {})",
                message.test.as_str(),
                message.alpha
            );
            return Ok(());
        }
        if let Some(dead) = client
            .query_opt(
                "SELECT queue, reason FROM dead_letters WHERE correlation_id = $1 ORDER BY id LIMIT 1",
                &[&job],
            )
            .await?
        {
            let (queue, reason): (String, String) = (dead.get(0), dead.get(1));
            bail!("the job failed in {queue}: {reason}");
        }
        if Instant::now() > deadline {
            bail!(
                "no statistics for job {job_id} after {}s: is the train worker running?",
                args.timeout
            );
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
