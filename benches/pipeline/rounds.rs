//! A workload's section of the table: the floors and Swarm's configurations, measured round
//! after round, each row its median run with ratios to the floor's median and paired ratios.

use std::time::Duration;

use anyhow::bail;

use crate::floor::{self, Compute, Floor, Queue, Sql, IN_FLIGHT};
use crate::report::{
    median, median_run, paired_note, paired_ratios, rates, retried, Measured, Row, Table,
};
use crate::swarm::{self, Config, Stages};
use crate::workload::{Kind, Workload};
use crate::world::Services;
use crate::{BATCH, PUBLISH_WINDOW};

/// Attempts at one measurement: other engineers' fault tests close every broker connection and
/// restart Postgres now and then, which fails a run; it is then done again from scratch.
pub(crate) const ATTEMPTS: u32 = 3;

/// Runs `measure` until it succeeds (at most [`ATTEMPTS`] times); returns the result and how many
/// failed attempts came before it.
pub(crate) async fn again<T, F, Fut>(what: &str, mut measure: F) -> anyhow::Result<(T, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut failed = 0;
    loop {
        match measure().await {
            Ok(t) => return Ok((t, failed)),
            Err(error) if failed + 1 < ATTEMPTS => {
                failed += 1;
                eprintln!("   {what} failed ({error:#}); starting it again in 10 s");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(error) => return Err(error.context(format!("{what} failed {ATTEMPTS} times"))),
        }
    }
}

pub(crate) async fn run_workload(
    services: &Services,
    workload: &Workload,
    table: &mut Table,
) -> anyhow::Result<()> {
    let unit = workload.unit();
    table.section(workload.title());
    let (broker, failed) = again("broker alone", || {
        floor::measure(services, workload, Floor::BrokerAlone)
    })
    .await?;
    let publish = Measured {
        items: broker.items,
        elapsed: broker.prefill,
        prefill: broker.prefill,
        cpu: None,
    };
    table.push(Row {
        what: "(a) broker alone: publish with confirms".into(),
        measured: Some(publish),
        unit,
        floor: None,
        note: format!("{} messages, {PUBLISH_WINDOW} in flight", workload.messages),
    });
    table.push(Row {
        what: "(a) broker alone: consume + ack".into(),
        measured: Some(broker),
        unit,
        floor: None,
        note: format!("multiple=true every {BATCH}{}", retried(failed)),
    });
    // Rounds: the floor, then every Swarm configuration, again and again, and the floor once
    // more at the end. Each row reports its median run and the floor reference is the median of
    // the floor's runs, so a burst of other work on this shared machine during one run moves
    // nothing much.
    let rounds = rounds()?;
    let mut configs: Vec<Config> = [1, BATCH]
        .into_iter()
        .flat_map(|batch| {
            [1, 2].map(|replicas| Config {
                batch,
                replicas,
                stages: Stages::Both,
            })
        })
        .collect();
    configs.extend(
        [Stages::IngestAlone, Stages::FeaturesAlone].map(|stages| Config {
            batch: BATCH,
            replicas: 1,
            stages,
        }),
    );
    // The one-hop floor in each of its SQL forms, every round; the fastest is the reference.
    let forms = [Sql::Copy, Sql::Unnest];
    let mut floors: Vec<(Vec<Measured>, u32)> = forms.iter().map(|_| (Vec::new(), 0)).collect();
    // Floors for reference, not targets: on a classic queue (what the quorum queue costs), and
    // for the time series the same loop with nothing overlapped; both through COPY.
    let mut others: Vec<Other> = vec![Other::new(
        Floor::OneHop(Compute::WhileWriting, Sql::Copy, Queue::Classic),
        "(a) floor on a classic queue: the same loop, COPY",
        "what the quorum queue costs",
    )];
    if workload.kind == Kind::Timeseries {
        others.push(Other::new(
            Floor::OneHop(Compute::AfterWrites, Sql::Copy, Queue::Quorum),
            "(a) sequential floor: the same, COPY, features computed after the samples are written",
            "nothing overlapped within a batch",
        ));
    }
    let mut swarm_runs: Vec<(Vec<Measured>, u32, bool)> =
        configs.iter().map(|_| (Vec::new(), 0, true)).collect();
    for round in 0..=rounds {
        for (&sql, (runs, failed)) in forms.iter().zip(floors.iter_mut()) {
            let floor = Floor::OneHop(Compute::WhileWriting, sql, Queue::Quorum);
            let (m, f) = again("floor", || floor::measure(services, workload, floor)).await?;
            eprintln!(
                "   floor, {} (round {}): {:.0} {unit}/s",
                sql_name(sql),
                round + 1,
                m.rate()
            );
            runs.push(m);
            *failed += f;
        }
        if round == rounds {
            break;
        }
        for other in &mut others {
            let (m, failed) = again(other.what, || {
                floor::measure(services, workload, other.floor)
            })
            .await?;
            eprintln!(
                "   {} (round {}): {:.0} {unit}/s",
                other.what,
                round + 1,
                m.rate()
            );
            other.runs.push(m);
            other.failed += failed;
        }
        for (&config, runs) in configs.iter().zip(swarm_runs.iter_mut()) {
            let (measured, failed) = again(&config.what(), || {
                swarm::measure(services, workload, config)
            })
            .await?;
            runs.1 += failed;
            match measured {
                Some(m) => {
                    eprintln!(
                        "   {} (round {}): {:.0} {unit}/s",
                        config.what(),
                        round + 1,
                        m.rate()
                    );
                    runs.0.push(m);
                }
                None => runs.2 = false,
            }
        }
    }
    let form_rates: Vec<Vec<f64>> = floors
        .iter()
        .map(|(runs, _)| runs.iter().map(Measured::rate).collect())
        .collect();
    let best = (0..forms.len())
        .max_by(|&a, &b| median(&form_rates[a]).total_cmp(&median(&form_rates[b])))
        .expect("a floor form");
    let floor_rates = form_rates[best].clone();
    let floor_rate = median(&floor_rates);
    let mut floors: Vec<(Sql, (Vec<Measured>, u32))> = forms.into_iter().zip(floors).collect();
    let (best_sql, (best_runs, floor_failed)) = floors.remove(best);
    let floor_row = median_run(best_runs);
    table.push(Row {
        what: format!(
            "(a) floor: one hop, {BATCH} messages per transaction, {IN_FLIGHT} in flight, {}, quorum queue",
            sql_name(best_sql)
        ),
        // The row shows one run (the one nearest below the median); the ratios below are to the
        // median itself, which the note gives.
        measured: floor_row,
        unit,
        floor: None,
        note: format!(
            "bare lapin + tokio-postgres, the faster SQL form; the reference: median {:.0} {unit}/s of {} runs ({}){}",
            floor_rate,
            floor_rates.len(),
            rates(&floor_rates),
            retried(floor_failed)
        ),
    });
    for (sql, (runs, failed)) in floors {
        let other_rates: Vec<f64> = runs.iter().map(Measured::rate).collect();
        table.push(Row {
            what: format!("(a) the same floor, {}", sql_name(sql)),
            measured: median_run(runs),
            unit,
            floor: Some(floor_rate),
            note: format!(
                "the slower SQL form; median {:.0} {unit}/s of {} runs ({}){}",
                median(&other_rates),
                other_rates.len(),
                rates(&other_rates),
                retried(failed)
            ),
        });
    }
    let mut sequential_rate = None;
    for other in others {
        let other_rates: Vec<f64> = other.runs.iter().map(Measured::rate).collect();
        let rate = median(&other_rates);
        if let Floor::OneHop(Compute::AfterWrites, ..) = other.floor {
            sequential_rate = Some(rate);
        }
        table.push(Row {
            what: other.what.into(),
            measured: median_run(other.runs),
            unit,
            floor: Some(floor_rate),
            note: format!(
                "for reference, not a target: {}; median {rate:.0} {unit}/s of {} runs ({}){}",
                other.note,
                other_rates.len(),
                rates(&other_rates),
                retried(other.failed)
            ),
        });
    }
    for (config, (runs, failed, supported)) in configs.iter().zip(swarm_runs) {
        let run_rates: Vec<f64> = runs.iter().map(Measured::rate).collect();
        let paired = paired_ratios(&run_rates, &floor_rates);
        let path = match config.stages {
            Stages::Both => "ingest → features.v1 → features",
            Stages::IngestAlone => "ingest only, until every sample is stored",
            Stages::FeaturesAlone => "features only, until every feature is stored",
        };
        let note = if supported {
            let against_sequential = sequential_rate.map_or(String::new(), |rate| {
                format!(
                    "; {:.0} % of the sequential floor",
                    100.0 * median(&run_rates) / rate
                )
            });
            format!(
                "{path}; median of {} runs ({}); {}{against_sequential}{}",
                run_rates.len(),
                rates(&run_rates),
                paired_note(&paired),
                retried(failed)
            )
        } else {
            "skipped: this runtime has no BATCH_SIZE".into()
        };
        table.push(Row {
            what: config.what(),
            measured: median_run(runs),
            unit,
            floor: Some(floor_rate),
            note,
        });
    }
    Ok(())
}

/// Rounds of every measurement (`BENCH_ROUNDS`, default 3).
pub(crate) fn rounds() -> anyhow::Result<usize> {
    match std::env::var("BENCH_ROUNDS") {
        Ok(s) => match s.parse::<usize>() {
            Ok(n) if (1..=20).contains(&n) => Ok(n),
            _ => bail!("BENCH_ROUNDS={s} is not a whole number from 1 to 20"),
        },
        Err(_) => Ok(3),
    }
}

/// How a floor's SQL form is named in the table.
fn sql_name(sql: Sql) -> &'static str {
    match sql {
        Sql::Copy => "binary COPY into a staging table + one INSERT … SELECT … ON CONFLICT",
        Sql::Unnest => "multi-row upserts of unnest(arrays)",
    }
}

/// A floor measured each round for reference.
struct Other {
    floor: Floor,
    what: &'static str,
    note: &'static str,
    runs: Vec<Measured>,
    failed: u32,
}

impl Other {
    pub(crate) fn new(floor: Floor, what: &'static str, note: &'static str) -> Self {
        Self {
            floor,
            what,
            note,
            runs: Vec::new(),
            failed: 0,
        }
    }
}
