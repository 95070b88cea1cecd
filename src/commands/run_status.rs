//! The status of a training run (`swarm status RUN`): finished with its score, failed with the
//! reason, or not finished yet.

use tokio_postgres::Client;
use uuid::Uuid;

/// Whether `id` is a run: it has a `runs` row, or a `train.v1`/`report.v1` message under it
/// was dead-lettered.
pub async fn is_run(client: &Client, id: Uuid) -> anyhow::Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)
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
            "SELECT project, model,
                    coalesce(metrics->'accuracy', metrics->'r2'),
                    CASE WHEN metrics ? 'accuracy' THEN 'accuracy' ELSE 'r2' END
             FROM runs WHERE id = $1",
            &[&id],
        )
        .await?;
    if let Some(row) = finished {
        let (project, model): (String, String) = (row.get(0), row.get(1));
        let score: Option<serde_json::Value> = row.get(2);
        let metric: String = row.get(3);
        let number = |key: &str| {
            score
                .as_ref()
                .and_then(|s| s.get(key))
                .and_then(serde_json::Value::as_f64)
        };
        let score = match (number("mean"), number("sd")) {
            (Some(mean), Some(sd)) => format!("{metric} {mean:.3} ± {sd:.3}"),
            (Some(mean), None) => format!("{metric} {mean:.3}"),
            _ => "no score".to_owned(),
        };
        println!("run {id}: finished, {model} on project {project:?}, {score}");
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
        None => println!("run {id}: queued or running"),
    }
    Ok(())
}
