//! The status of a training run (`swarm status RUN`): queued, running (units done of all, time
//! so far, time left at the pace so far), finished with its score, failed with the reason, or
//! cancelled.

use tokio_postgres::Client;
use uuid::Uuid;

/// Whether `id` is a run: it was planned or stored, or a `train.v1`/`report.v1` message under
/// it was dead-lettered.
pub async fn is_run(client: &Client, id: Uuid) -> anyhow::Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)
                 OR EXISTS (SELECT 1 FROM run_jobs WHERE run_id = $1)
                 OR EXISTS (SELECT 1 FROM dead_letters WHERE correlation_id = $2
                            AND message_type IN ('train.v1', 'report.v1'))",
            &[&id, &id.to_string()],
        )
        .await?;
    Ok(row.get(0))
}

/// Prints the run's status.
pub async fn print(client: &Client, id: Uuid) -> anyhow::Result<()> {
    let finished = client
        .query_opt(
            &format!(
                "SELECT r.project, r.model, {} WHERE r.id = $1",
                super::train::HEADLINE_SQL
            ),
            &[&id],
        )
        .await?;
    if let Some(row) = finished {
        let (project, model): (String, String) = (row.get(0), row.get(1));
        let score = super::train::headline(&row.get::<_, String>(2), row.get(3), row.get(4));
        println!("run {id}: finished, {model} on project {project:?}, {score}");
        return Ok(());
    }
    if let Some(progress) = swarm_train::runs::progress(client, id).await? {
        println!("run {id}: {}", describe(&progress));
        return Ok(());
    }
    let dead = client
        .query_opt(
            "SELECT queue, reason FROM dead_letters
             WHERE correlation_id = $1 AND replayed_at IS NULL ORDER BY id LIMIT 1",
            &[&id.to_string()],
        )
        .await?;
    match dead {
        Some(row) => {
            let (queue, reason): (String, String) = (row.get(0), row.get(1));
            println!("run {id}: failed in {queue}: {reason}");
        }
        None => println!("run {id}: queued (no train worker has taken it yet)"),
    }
    Ok(())
}

/// A planned run's state in words: `queued`, `running: 12/40 units, 8s so far, about 19s left`,
/// `failed: <reason>`, `cancelled: <reason>`, `finished`.
pub fn describe(progress: &swarm_train::runs::Progress) -> String {
    let elapsed = seconds(progress.elapsed_secs);
    match progress.state.as_str() {
        "running" if progress.is_queued() => format!(
            "queued, {} units planned on project {:?}, waiting {elapsed}",
            progress.units_total, progress.project
        ),
        "running" => format!(
            "running, {}/{} units done, {elapsed} so far{}",
            progress.units_done,
            progress.units_total,
            progress
                .eta_secs()
                .map(|s| format!(", about {} left", seconds(s)))
                .unwrap_or_default()
        ),
        "finished" => format!("finished in {elapsed}, its report pending"),
        state => format!(
            "{state} after {elapsed}: {}",
            progress.reason.as_deref().unwrap_or("no reason given")
        ),
    }
}

/// `42s`, `3m 05s` or `2h 04m`.
fn seconds(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_train::runs::Progress;

    #[test]
    fn says_where_a_run_is() {
        let mut p = Progress {
            state: "running".into(),
            reason: None,
            units_done: 0,
            units_total: 40,
            units_started: 0,
            elapsed_secs: 8.0,
            project: "p".into(),
        };
        assert_eq!(
            describe(&p),
            "queued, 40 units planned on project \"p\", waiting 8s"
        );
        p.units_started = 14;
        p.units_done = 10;
        assert_eq!(
            describe(&p),
            "running, 10/40 units done, 8s so far, about 24s left"
        );
        p.state = "failed".into();
        p.reason = Some("fold 3: one class".into());
        p.elapsed_secs = 125.0;
        assert_eq!(describe(&p), "failed after 2m 05s: fold 3: one class");
    }
}
