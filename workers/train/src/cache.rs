//! The runs a worker is computing units of, each loaded once: the request, the rows and the
//! plan. Bounded by `TRAIN_CACHE_MB` (least recently used first out); a run larger than the
//! whole cache is loaded for each unit and not kept. Units of one run that arrive together wait
//! for one load instead of each loading it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use uuid::Uuid;

/// Something cached, with its size.
pub trait Footprint {
    /// Bytes it holds, about.
    fn bytes(&self) -> usize;
}

struct Entry<T> {
    cell: Arc<OnceCell<Arc<T>>>,
    bytes: usize,
    used: u64,
}

/// A bounded cache of runs, keyed by run id.
pub struct RunCache<T> {
    capacity: usize,
    entries: Mutex<(u64, HashMap<Uuid, Entry<T>>)>,
}

impl<T> std::fmt::Debug for RunCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCache")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<T: Footprint> RunCache<T> {
    /// A cache of at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new((0, HashMap::new())),
        }
    }

    /// The run `id`, loaded by `load` unless it is cached or being loaded.
    pub async fn get_or_load<E, F>(&self, id: Uuid, load: F) -> Result<Arc<T>, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let cell = {
            let mut guard = self.entries.lock().expect("not poisoned");
            let (clock, entries) = &mut *guard;
            *clock += 1;
            let entry = entries.entry(id).or_insert_with(|| Entry {
                cell: Arc::new(OnceCell::new()),
                bytes: 0,
                used: 0,
            });
            entry.used = *clock;
            entry.cell.clone()
        };
        let value = cell
            .get_or_try_init(|| async { load.await.map(Arc::new) })
            .await?
            .clone();
        self.account(id, value.bytes());
        Ok(value)
    }

    /// Records a loaded run's size and evicts the least recently used runs beyond capacity.
    fn account(&self, id: Uuid, bytes: usize) {
        let mut guard = self.entries.lock().expect("not poisoned");
        let (_, entries) = &mut *guard;
        if let Some(entry) = entries.get_mut(&id) {
            entry.bytes = bytes;
        }
        loop {
            let total: usize = entries.values().map(|e| e.bytes).sum();
            if total <= self.capacity {
                break;
            }
            let Some(oldest) = entries
                .iter()
                .filter(|(_, e)| e.bytes > 0)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            entries.remove(&oldest);
        }
    }

    /// Forgets a run (finished, failed or cancelled).
    pub fn forget(&self, id: Uuid) {
        self.entries.lock().expect("not poisoned").1.remove(&id);
    }

    /// Runs cached now.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("not poisoned").1.len()
    }

    /// Whether none is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Blob(usize);
    impl Footprint for Blob {
        fn bytes(&self) -> usize {
            self.0
        }
    }

    #[tokio::test]
    async fn loads_once_and_evicts_the_least_recently_used() {
        let cache = RunCache::<Blob>::new(100);
        let loads = AtomicUsize::new(0);
        let load = |n| {
            let loads = &loads;
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(Blob(n))
            }
        };
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        cache.get_or_load(a, load(40)).await.unwrap();
        cache.get_or_load(a, load(40)).await.unwrap();
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "a second unit reuses the run"
        );
        cache.get_or_load(b, load(40)).await.unwrap();
        cache.get_or_load(a, load(40)).await.unwrap(); // a is now the most recent
        cache.get_or_load(c, load(40)).await.unwrap(); // over 100: b goes
        assert_eq!(loads.load(Ordering::SeqCst), 3);
        cache.get_or_load(a, load(40)).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 3, "a stayed");
        cache.get_or_load(b, load(40)).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 4, "b was evicted");
        // Larger than the cache: returned, not kept.
        let big = cache
            .get_or_load(Uuid::from_u128(4), load(500))
            .await
            .unwrap();
        assert_eq!(big.bytes(), 500);
        assert!(cache.len() <= 2);
    }
}
