//! The train worker's own settings, beside the runtime's: read from the environment.

/// How the train worker uses its machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainSettings {
    /// `TRAIN_THREADS`: threads that fit models, shared by every unit in flight (default: the
    /// cores this process may use, cgroup CPU limits included).
    pub threads: usize,
    /// `TRAIN_CACHE_MB`: memory for the feature matrices of the runs being computed, so the
    /// units of one run load it once per worker (default 1024).
    pub cache_mb: usize,
    /// `TRAIN_UNIT_WORK`: the work a unit aims at, in matrix cells × fits (default
    /// [`crate::plan::UNIT_WORK`], a few seconds of one core); the replica that plans a run
    /// decides, and the units are stored with it.
    pub unit_work: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            cache_mb: 1024,
            unit_work: crate::plan::UNIT_WORK,
        }
    }
}

impl TrainSettings {
    /// From `TRAIN_THREADS` and `TRAIN_CACHE_MB`, the defaults where unset; an error names a
    /// value that is not a whole number (or a zero thread count).
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut settings = Self::default();
        if let Some(v) = var("TRAIN_THREADS") {
            settings.threads = match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                        "TRAIN_THREADS must be a whole number ≥ 1, got {v:?}"
                    ))
                }
            };
        }
        if let Some(v) = var("TRAIN_CACHE_MB") {
            settings.cache_mb = v
                .trim()
                .parse()
                .map_err(|_| format!("TRAIN_CACHE_MB must be a whole number, got {v:?}"))?;
        }
        if let Some(v) = var("TRAIN_UNIT_WORK") {
            settings.unit_work = match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                        "TRAIN_UNIT_WORK must be a whole number ≥ 1, got {v:?}"
                    ))
                }
            };
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_threads_and_cache_and_refuses_nonsense() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = TrainSettings::from_vars(vars(&[("TRAIN_THREADS", "3"), ("TRAIN_CACHE_MB", "64")]));
        assert_eq!(
            s,
            Ok(TrainSettings {
                threads: 3,
                cache_mb: 64,
                ..TrainSettings::default()
            })
        );
        assert_eq!(
            TrainSettings::from_vars(vars(&[])),
            Ok(TrainSettings::default())
        );
        assert!(TrainSettings::from_vars(vars(&[("TRAIN_THREADS", "0")])).is_err());
        assert!(TrainSettings::from_vars(vars(&[("TRAIN_CACHE_MB", "lots")])).is_err());
        assert!(TrainSettings::from_vars(vars(&[("TRAIN_UNIT_WORK", "0")])).is_err());
    }
}
