//! A `stats.v1` job: univariate statistics of a project's features ([`crate::stats`]), stored
//! in `stats_jobs`, then `report.v1` with the job id.

use std::time::Instant;

use broker_schemas::{ReportV1, StatsTest, StatsV1};
use swarm_runtime::{HandleError, Work};

use crate::load::{load, Selection, Source};
use crate::request::{describe, validate_stats};
use crate::stats;
use crate::store::{json_value, to_i32, INSERT_STATS_SQL, STATS_EXISTS_SQL};

#[tracing::instrument(name = "stats", skip_all, fields(job_id = %message.job_id, project = %message.project, test = message.test.as_str()), err)]
pub async fn run_stats(work: &mut Work<'_>, message: StatsV1) -> Result<(), HandleError> {
    let started = Instant::now();
    validate_stats(&message).map_err(HandleError::Permanent)?;
    let context = describe(&message.project, &message.sites);
    let exists: bool = work
        .tx()
        .query_one(STATS_EXISTS_SQL, &[&message.job_id])
        .await?
        .try_get(0)?;
    if exists {
        return Err(HandleError::permanent(format!(
            "statistics job {} already exists",
            message.job_id
        )));
    }
    let selection = Selection::Project {
        project: &message.project,
        sites: &message.sites,
    };
    let mut data = load(&**work.tx(), selection, Source::Features, &context).await?;
    if !message.groups.is_empty() {
        // Only the compared groups' rows.
        let keep: Vec<usize> = (0..data.labels.len())
            .filter(|&i| message.groups.contains(&data.labels[i]))
            .collect();
        data.x = keep
            .iter()
            .map(|&i| std::mem::take(&mut data.x[i]))
            .collect();
        data.labels = keep.iter().map(|&i| data.labels[i].clone()).collect();
        data.subjects = keep.iter().map(|&i| data.subjects[i].clone()).collect();
        data.covariates = keep.iter().map(|&i| data.covariates[i].clone()).collect();
    }
    let covariate: Option<Vec<f64>> = match (&message.covariate, message.test) {
        (Some(name), StatsTest::Pearson | StatsTest::Spearman) => Some(
            data.covariates
                .iter()
                .zip(&data.labels)
                .zip(&data.subjects)
                .map(|((c, label), subject)| {
                    let value = if name == "label" {
                        label.trim().parse::<f64>().ok()
                    } else {
                        c.get(name).and_then(serde_json::Value::as_f64)
                    };
                    value.filter(|v| v.is_finite()).ok_or_else(|| {
                        HandleError::permanent(format!(
                            "{context}: subject \"{subject}\" has no numeric covariate \"{name}\""
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => None,
    };
    let (x, labels) = (std::mem::take(&mut data.x), data.labels.clone());
    let (test, groups, alpha) = (message.test, message.groups.clone(), message.alpha);
    let joined = tokio::task::spawn_blocking(move || {
        let r = stats::compute_stats(test, &x, &labels, covariate.as_deref(), &groups, alpha);
        (r, x.len(), x.first().map_or(0, Vec::len))
    })
    .await;
    let (result, n, p) = joined.map_err(|e| crate::handler::permanent_join(&context, e))?;
    let mut results = result.map_err(|e| HandleError::permanent(format!("{context}: {e}")))?;
    results.covariate = message.covariate.clone();
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let meta = work.meta().clone();
    let inserted = work
        .tx()
        .execute(
            INSERT_STATS_SQL,
            &[
                &message.job_id,
                &message.project,
                &message.test.as_str(),
                &message.covariate,
                &message.sites,
                &to_i32("n_samples", n)?,
                &to_i32("n_features", p)?,
                &json_value(&results)?,
                &duration_ms,
                &meta.job_id,
                &meta.message_id,
                &meta.trace_id,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(HandleError::permanent(format!(
            "statistics job {} already exists",
            message.job_id
        )));
    }
    work.emit(&ReportV1 {
        run_id: message.job_id,
    })
    .await?;
    Ok(())
}
