//! Where a run's CPU went: the machine, this process (the consumers), PostgreSQL, RabbitMQ.

use std::time::{Duration, Instant};

/// CPU seconds: the whole machine's busy time (`/proc/stat`), this process's own
/// (`/proc/self/stat`), PostgreSQL's (every `postgres` process, with the backends that have
/// exited since, which the postmaster has reaped) and RabbitMQ's (its Erlang VM, `beam.smp`), so
/// a row shows where its work went — this process (the consumers), the database, the broker, or
/// the rest (the kernel's own threads writing pages back, anything else running).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cpu {
    pub(crate) machine: f64,
    pub(crate) process: f64,
    pub(crate) postgres: f64,
    pub(crate) rabbitmq: f64,
}

/// `utime stime cutime cstime` of one `/proc/<pid>/stat`, in ticks, if its command is `comm`
/// (any command when `None`).
pub(crate) fn process_ticks(stat: &str, comm: Option<&str>) -> Option<[f64; 4]> {
    let (head, rest) = stat.rsplit_once(')')?;
    if comm.is_some_and(|c| head.split_once('(').map(|(_, name)| name) != Some(c)) {
        return None;
    }
    // After "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse().ok());
    Some([tick(11)?, tick(12)?, tick(13)?, tick(14)?])
}

/// The CPU ticks of every process named `comm`, reaped children included.
pub(crate) fn ticks_of(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| process_ticks(&stat, Some(comm)))
        .map(|t| t.iter().sum::<f64>())
        .sum()
}

/// Waits until RabbitMQ has used at most one tick of CPU in each of two successive 50 ms windows
/// (it writes what a prefill left in its quorum queues' log out to segment files in the
/// background, up to half a second after the prefill here), at most 10 s.
pub(crate) async fn broker_quiet() {
    let started = Instant::now();
    let mut last = ticks_of("beam.smp");
    let mut quiet = 0;
    while quiet < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = ticks_of("beam.smp");
        quiet = if now - last <= 1.0 { quiet + 1 } else { 0 };
        last = now;
    }
}

/// Linux reports both in ticks of `USER_HZ`, 100 on every mainstream architecture.
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

impl Cpu {
    pub(crate) fn now() -> Option<Cpu> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // cpu user nice system idle iowait irq softirq steal ...: busy is all but idle/iowait.
        let ticks: Vec<f64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let busy: f64 = ticks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| v)
            .sum();
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let [utime, stime, _, _] = process_ticks(&own, None)?;
        Some(Cpu {
            machine: busy / TICKS_PER_SECOND,
            process: (utime + stime) / TICKS_PER_SECOND,
            postgres: ticks_of("postgres") / TICKS_PER_SECOND,
            rabbitmq: ticks_of("beam.smp") / TICKS_PER_SECOND,
        })
    }

    /// The CPU used since `start`.
    pub(crate) fn since(start: Option<Cpu>) -> Option<Cpu> {
        let (start, end) = (start?, Cpu::now()?);
        Some(Cpu {
            machine: end.machine - start.machine,
            process: end.process - start.process,
            postgres: end.postgres - start.postgres,
            rabbitmq: end.rabbitmq - start.rabbitmq,
        })
    }
}
