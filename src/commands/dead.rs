//! `swarm dead list|replay`: what was dead-lettered, and putting it back once the cause is fixed.
//!
//! Dead letters are rows in `dead_letters` (body, headers, reason) and copies in
//! `<ns>.<worker>.dead`; replay re-publishes a row's body with its original type and message id
//! (a dead-lettered message was never recorded as processed, so it is handled afresh) and marks
//! the row replayed. If it fails again it is dead-lettered again, as a new row.

use std::collections::HashMap;
use std::io::Write as _;

use anyhow::{bail, Context as _};
use swarm_runtime::amqp::Outgoing;
use swarm_runtime::Settings;

/// `swarm dead ...`.
#[derive(Debug, clap::Subcommand)]
pub enum DeadCommand {
    /// List dead letters not yet replayed, oldest first.
    List {
        /// Only this queue, e.g. `swarm.ingest` (default: every queue).
        #[arg(long)]
        queue: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one dead letter whole: its reason, queue, type, ids and headers.
    Show {
        /// The dead letter's id (from `swarm dead list`).
        id: i64,
    },
    /// Re-publish dead letters by id (from `swarm dead list`), or all of them.
    Replay {
        /// Dead-letter ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every dead letter not yet replayed (of `--queue`, if given).
        #[arg(long)]
        all: bool,
        /// With --all: only this queue.
        #[arg(long)]
        queue: Option<String>,
    },
}

/// Runs a dead-letter command.
pub async fn run(settings: &Settings, command: DeadCommand) -> anyhow::Result<()> {
    let pool = swarm_runtime::db::connect_and_migrate(&settings.database_url, 1).await?;
    let mut client = pool.get().await.context("Failed to connect to Postgres")?;
    match command {
        DeadCommand::List { queue, limit } => {
            let rows = client
                .query(
                    "SELECT id, queue, coalesce(message_type, ''), coalesce(message_id, ''), reason,
                            to_char(created_at, 'YYYY-MM-DD HH24:MI:SS')
                     FROM dead_letters
                     WHERE replayed_at IS NULL AND ($1::text IS NULL OR queue = $1)
                     ORDER BY id LIMIT $2",
                    &[&queue, &limit],
                )
                .await?;
            // Written with `writeln!`: a closed pipe (`| head`) ends the listing, not a panic.
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>6}  {:<20}  {:<12}  {:<36}  {:<19}  reason",
                "id", "queue", "type", "message id", "dead since"
            )?;
            for row in &rows {
                let reason: String = row.get(4);
                let mut short: String = reason.chars().take(120).collect();
                if short.len() < reason.len() {
                    short.push_str(" … (swarm dead show ID)");
                }
                writeln!(
                    out,
                    "{:>6}  {:<20}  {:<12}  {:<36}  {:<19}  {short}",
                    row.get::<_, i64>(0),
                    row.get::<_, String>(1),
                    row.get::<_, String>(2),
                    row.get::<_, String>(3),
                    row.get::<_, Option<String>>(5).unwrap_or_default(),
                )?;
            }
            eprintln!("{}.", super::count(rows.len(), "dead letter"));
        }
        DeadCommand::Show { id } => {
            let Some(row) = client
                .query_opt(
                    "SELECT queue, coalesce(message_type, ''), coalesce(message_id, ''),
                            coalesce(correlation_id, ''), reason, headers::text,
                            to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'),
                            to_char(replayed_at, 'YYYY-MM-DD HH24:MI:SS')
                     FROM dead_letters WHERE id = $1",
                    &[&id],
                )
                .await?
            else {
                bail!("no dead letter {id}: see `swarm dead list`");
            };
            let text = |i: usize| row.get::<_, Option<String>>(i).unwrap_or_default();
            println!("dead letter {id}");
            println!("  queue:       {}", text(0));
            println!("  type:        {}", text(1));
            println!("  message id:  {}", text(2));
            println!("  job id:      {}", text(3));
            println!("  dead since:  {}", text(6));
            if let Some(replayed) = row.get::<_, Option<String>>(7) {
                println!("  replayed at: {replayed}");
            }
            println!("  headers:     {}", text(5));
            println!("  reason:      {}", text(4));
        }
        DeadCommand::Replay { ids, all, queue } => {
            let rows = if all {
                client
                    .query(
                        "SELECT id, message_type, message_id, correlation_id, body, headers FROM dead_letters
                         WHERE replayed_at IS NULL AND ($1::text IS NULL OR queue = $1) ORDER BY id",
                        &[&queue],
                    )
                    .await?
            } else {
                client
                    .query(
                        "SELECT id, message_type, message_id, correlation_id, body, headers FROM dead_letters
                         WHERE id = ANY($1) AND replayed_at IS NULL ORDER BY id",
                        &[&ids],
                    )
                    .await?
            };
            if !all && rows.len() != ids.len() {
                let found: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                let missing: Vec<i64> =
                    ids.iter().copied().filter(|i| !found.contains(i)).collect();
                bail!("no dead letters to replay with ids {missing:?} (already replayed, or never there): see `swarm dead list`");
            }
            let outlet = super::connect(settings).await?;
            let mut replayed = 0;
            for row in &rows {
                let id: i64 = row.get(0);
                let Some(message_type) = row.get::<_, Option<String>>(1).filter(|t| !t.is_empty())
                else {
                    eprintln!("dead letter {id} has no message type; it cannot be routed, skipped");
                    continue;
                };
                let headers: serde_json::Value = row.get(5);
                let mut headers: HashMap<String, String> =
                    serde_json::from_value(headers).unwrap_or_default();
                headers.retain(|k, _| !k.starts_with("x-"));
                let out = Outgoing {
                    exchange: outlet.topology().exchange(),
                    routing_key: message_type.clone(),
                    message_type,
                    message_id: row
                        .get::<_, Option<String>>(2)
                        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                    correlation_id: row.get(3),
                    headers,
                    body: row.get(4),
                };
                // Marked replayed in a transaction around the publish: if the message fails again
                // at once, its worker's new row waits for this one to be marked (the index of
                // migration 0011 holds one unreplayed row per message), and nothing is marked
                // replayed that was not published.
                let tx = client.transaction().await?;
                tx.execute(
                    "UPDATE dead_letters SET replayed_at = now() WHERE id = $1",
                    &[&id],
                )
                .await?;
                outlet.publish(&out).await?;
                tx.commit().await?;
                replayed += 1;
            }
            outlet.close().await;
            println!("Replayed {}.", super::count(replayed, "dead letter"));
        }
    }
    Ok(())
}
