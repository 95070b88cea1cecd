//! The measured runs and the table they are printed in.

use std::time::Duration;

use crate::cpu::Cpu;

/// One measured run.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) items: usize,
    pub(crate) elapsed: Duration,
    /// Publishing the pre-fill, with confirms.
    pub(crate) prefill: Duration,
    /// CPU spent while the clock ran.
    pub(crate) cpu: Option<Cpu>,
}

impl Measured {
    pub(crate) fn rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }
}

/// One line of the table.
pub(crate) struct Row {
    pub(crate) what: String,
    pub(crate) measured: Option<Measured>,
    pub(crate) unit: &'static str,
    /// Compared with this rate (the floor's), if any.
    pub(crate) floor: Option<f64>,
    pub(crate) note: String,
}

pub(crate) struct Table {
    pub(crate) rows: Vec<(String, Vec<Row>)>,
}

impl Table {
    pub(crate) fn section(&mut self, title: String) {
        eprintln!("== {title}");
        self.rows.push((title, Vec::new()));
    }

    pub(crate) fn push(&mut self, row: Row) {
        match &row.measured {
            Some(m) => eprintln!(
                "   {}: {:.0} {}/s ({:.2} s; CPU {})",
                row.what,
                m.rate(),
                row.unit,
                m.elapsed.as_secs_f64(),
                cpu_cell(m)
            ),
            None => eprintln!("   {}: {}", row.what, row.note),
        }
        self.rows.last_mut().expect("a section is open").1.push(row);
    }

    pub(crate) fn print(&self) {
        println!(
            "| workload | run | items | seconds | items/s | vs floor | CPU ms/item: all / bench / postgres / rabbitmq / rest | note |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---|");
        for (title, rows) in &self.rows {
            for (i, row) in rows.iter().enumerate() {
                let title = if i == 0 { title.as_str() } else { "" };
                let (items, secs, rate) = match &row.measured {
                    Some(m) => (
                        m.items.to_string(),
                        format!("{:.2}", m.elapsed.as_secs_f64()),
                        format!("{:.0} {}/s", m.rate(), row.unit),
                    ),
                    None => ("–".into(), "–".into(), "–".into()),
                };
                let ratio = match (&row.measured, row.floor) {
                    (Some(m), Some(f)) => format!("{:.0} %", 100.0 * m.rate() / f),
                    _ => String::new(),
                };
                let cpu = row.measured.as_ref().map(cpu_cell).unwrap_or_default();
                println!(
                    "| {title} | {} | {items} | {secs} | {rate} | {ratio} | {cpu} | {} |",
                    row.what, row.note
                );
            }
        }
    }
}

/// CPU milliseconds per item: the machine's, this process's (the consumers), PostgreSQL's,
/// RabbitMQ's, the rest's.
pub(crate) fn cpu_cell(m: &Measured) -> String {
    match m.cpu {
        Some(c) if m.items > 0 => {
            let per = |s: f64| 1000.0 * s / m.items as f64;
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} / {:.2}",
                per(c.machine),
                per(c.process),
                per(c.postgres),
                per(c.rabbitmq),
                // Tick rounding can take the difference a hair below zero.
                per((c.machine - c.process - c.postgres - c.rabbitmq).max(0.0))
            )
        }
        _ => String::new(),
    }
}

pub(crate) fn retried(failed: u32) -> String {
    if failed == 0 {
        String::new()
    } else {
        format!(
            " (run again after {failed} failed attempt{})",
            if failed == 1 { "" } else { "s" }
        )
    }
}

/// Each run's rate against the floor runs just before and after it (round `i` sits between floor
/// runs `i` and `i + 1`; their geometric mean), so that the machine's drift over a bench — its
/// speed can change by a third from one minute to the next — cancels out of the ratio. Empty if a
/// run failed and the rounds no longer line up.
pub(crate) fn paired_ratios(runs: &[f64], floors: &[f64]) -> Vec<f64> {
    if floors.len() != runs.len() + 1 {
        return Vec::new();
    }
    runs.iter()
        .zip(floors.windows(2))
        .map(|(run, around)| run / (around[0] * around[1]).sqrt())
        .collect()
}

pub(crate) fn paired_note(paired: &[f64]) -> String {
    if paired.is_empty() {
        return "no paired ratios".into();
    }
    let percent: Vec<String> = paired.iter().map(|r| format!("{:.0}", 100.0 * r)).collect();
    format!(
        "against the floor runs around each: median {:.0} % ({} %)",
        100.0 * median(paired),
        percent.join(", ")
    )
}

/// The median (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The run with the median rate (the lower middle one for an even count).
pub(crate) fn median_run(mut runs: Vec<Measured>) -> Option<Measured> {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let middle = runs.len().saturating_sub(1) / 2;
    runs.into_iter().nth(middle)
}

pub(crate) fn rates(values: &[f64]) -> String {
    values
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
