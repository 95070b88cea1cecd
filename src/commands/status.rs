//! `swarm status ID`: what became of a job. For an ingest job (the id `swarm publish` prints):
//! its samples ingested and featurised, and those refused, with the reasons, from the dead
//! letters its messages left; for a run, [`super::run_status`].
//!
//! Everything a job causes carries its id: `samples.job_id`, `features.job_id` and
//! `dead_letters.correlation_id`. A refused message refuses all of its samples (a batch is
//! checked as a whole), so the refused subjects are read from the dead-lettered bodies.

use std::collections::BTreeMap;

use anyhow::Context as _;
use broker_schemas::{FeaturesV1, IngestV1, Message as _};
use swarm_runtime::Settings;
use tokio_postgres::Client;
use uuid::Uuid;

use super::run_status;

/// Arguments of `swarm status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// A job id (as `swarm publish` prints it) or a run id (as `swarm train` prints it).
    pub id: Uuid,
}

/// Samples of an ingest job that a worker refused, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The dead letter's id (`swarm dead show ID`).
    pub dead_letter: i64,
    /// The queue that refused them.
    pub queue: String,
    /// Their subjects (sample ids where a subject is unknown).
    pub subjects: Vec<String>,
    /// Why.
    pub reason: String,
}

/// Where an ingest job stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestStatus {
    /// Samples and messages `swarm publish` sent under the job (none: another producer's job,
    /// or the CLI could not reach the database).
    pub published: Option<(i64, i64)>,
    /// Samples stored under the job.
    pub ingested: i64,
    /// Of those, samples whose features were extracted under the job.
    pub featurised: i64,
    /// The project and site of the stored samples (when some are).
    pub project_site: Option<(String, String)>,
    /// Refused before they were stored (`ingest.v1` dead letters).
    pub refused_at_ingest: Vec<Refusal>,
    /// Stored, but their features could not be extracted (`features.v1` dead letters).
    pub refused_at_features: Vec<Refusal>,
}

impl IngestStatus {
    /// Samples refused at either step.
    pub fn refused(&self) -> usize {
        self.refused_at_ingest
            .iter()
            .chain(&self.refused_at_features)
            .map(|r| r.subjects.len())
            .sum()
    }

    /// Whether anything under the job was recorded at all.
    pub fn is_empty(&self) -> bool {
        self.published.is_none()
            && self.ingested == 0
            && self.refused_at_ingest.is_empty()
            && self.refused_at_features.is_empty()
    }

    /// Whether all `published` samples have been stored or refused, and every stored one
    /// featurised or refused.
    pub fn is_settled(&self, published: usize) -> bool {
        let refused_at_ingest: usize = self
            .refused_at_ingest
            .iter()
            .map(|r| r.subjects.len())
            .sum();
        let refused_at_features: usize = self
            .refused_at_features
            .iter()
            .map(|r| r.subjects.len())
            .sum();
        self.ingested as usize + refused_at_ingest >= published
            && self.featurised as usize + refused_at_features >= self.ingested as usize
    }

    /// The refusals as lines for a terminal: which samples, where, why.
    pub fn refusal_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (step, refusals) in [
            ("ingest", &self.refused_at_ingest),
            ("features", &self.refused_at_features),
        ] {
            for r in refusals {
                lines.push(format!(
                    "refused by {step} ({}, dead letter {}): {}: {}",
                    r.queue,
                    r.dead_letter,
                    subjects_text(&r.subjects),
                    r.reason
                ));
            }
        }
        lines
    }
}

/// "1 sample (s1)", "3 samples (s1, s2, s3)", at most ten subjects named.
fn subjects_text(subjects: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut named = subjects
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if subjects.len() > SHOWN {
        named.push_str(&format!(", and {} more", subjects.len() - SHOWN));
    }
    format!("{} ({named})", super::count(subjects.len(), "sample"))
}

/// Reads an ingest job's status.
pub async fn ingest_status(client: &Client, job: Uuid) -> anyhow::Result<IngestStatus> {
    let job = job.to_string();
    let stored = client
        .query_one(
            "SELECT count(*), min(project), min(site) FROM samples WHERE job_id = $1",
            &[&job],
        )
        .await?;
    let featurised: i64 = client
        .query_one(
            "SELECT count(DISTINCT f.sample_id) FROM features f JOIN samples s ON s.id = f.sample_id
             WHERE s.job_id = $1 AND f.job_id = $1",
            &[&job],
        )
        .await?
        .get(0);
    let published = client
        .query_opt(
            "SELECT samples::bigint, messages::bigint, project, site FROM published_jobs
             WHERE job_id = $1",
            &[&job],
        )
        .await?;
    let mut status = IngestStatus {
        published: published.as_ref().map(|r| (r.get(0), r.get(1))),
        ingested: stored.get(0),
        featurised,
        project_site: stored
            .get::<_, Option<String>>(1)
            .zip(stored.get::<_, Option<String>>(2))
            .or_else(|| published.as_ref().map(|r| (r.get(2), r.get(3)))),
        ..IngestStatus::default()
    };
    let dead = client
        .query(
            "SELECT id, queue, message_type, reason, body FROM dead_letters
             WHERE correlation_id = $1 AND replayed_at IS NULL
               AND message_type IN ('ingest.v1', 'features.v1')
             ORDER BY id",
            &[&job],
        )
        .await?;
    for row in dead {
        let (dead_letter, queue, kind, reason, body): (i64, String, String, String, Vec<u8>) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if kind == IngestV1::TYPE {
            let subjects = match broker_schemas::decode::<IngestV1>(&body) {
                Ok(message) => message.samples.into_iter().map(|s| s.subject).collect(),
                Err(_) => vec!["(an undecodable message)".to_owned()],
            };
            status.refused_at_ingest.push(Refusal {
                dead_letter,
                queue,
                subjects,
                reason,
            });
        } else {
            let ids = broker_schemas::decode::<FeaturesV1>(&body)
                .map(|m| m.sample_ids)
                .unwrap_or_default();
            let names: BTreeMap<i64, String> = client
                .query(
                    "SELECT id, subject FROM samples WHERE id = ANY($1)",
                    &[&ids],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let subjects = ids
                .iter()
                .map(|id| {
                    names
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| format!("sample {id}"))
                })
                .collect();
            status.refused_at_features.push(Refusal {
                dead_letter,
                queue,
                subjects,
                reason,
            });
        }
    }
    Ok(status)
}

/// `swarm status`.
pub async fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<()> {
    let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
    let client = pool.get().await.context("Failed to connect to Postgres")?;
    if run_status::is_run(&client, args.id).await? {
        return run_status::print(&client, args.id).await;
    }
    let status = ingest_status(&client, args.id).await?;
    if status.is_empty() {
        // Nothing under the id yet: a run not taken by a worker looks the same as this.
        return run_status::print(&client, args.id).await;
    }
    print_ingest(args.id, &status);
    Ok(())
}

/// Prints an ingest job's status.
pub fn print_ingest(job: Uuid, status: &IngestStatus) {
    let at = status
        .project_site
        .as_ref()
        .map(|(p, s)| format!(" (project {p:?}, site {s:?})"))
        .unwrap_or_default();
    println!("ingest job {job}{at}");
    if let Some((samples, messages)) = status.published {
        println!(
            "  published:  {} in {}",
            super::count(samples as usize, "sample"),
            super::count(messages as usize, "message")
        );
    }
    println!(
        "  ingested:   {}",
        super::count(status.ingested as usize, "sample")
    );
    println!(
        "  featurised: {}",
        super::count(status.featurised as usize, "sample")
    );
    println!("  refused:    {}", super::count(status.refused(), "sample"));
    for line in status.refusal_lines() {
        println!("  {line}");
    }
}
