//! Small in-process concurrency helpers: striped locks and the in-flight set.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use tokio::sync::{Mutex as AsyncMutex, MutexGuard as AsyncMutexGuard};

/// A fixed set of async mutexes; a key always maps to the same one. Serialises the
/// read-modify-write of one message's deliveries (or one idempotency key) without a lock
/// per key.
pub struct StripedLocks {
    stripes: Vec<AsyncMutex<()>>,
}

impl StripedLocks {
    /// `n` stripes (at least 1).
    pub fn new(n: usize) -> Self {
        StripedLocks {
            stripes: (0..n.max(1)).map(|_| AsyncMutex::new(())).collect(),
        }
    }

    /// Locks the stripe of `key`.
    pub async fn lock<K: Hash + ?Sized>(&self, key: &K) -> AsyncMutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let i = (h.finish() % self.stripes.len() as u64) as usize;
        self.stripes[i].lock().await
    }
}

/// The set of items currently being worked on, so scanners skip them.
pub struct InFlight<T> {
    items: Mutex<HashSet<T>>,
}

impl<T: Hash + Eq + Clone> InFlight<T> {
    pub fn new() -> Self {
        InFlight {
            items: Mutex::new(HashSet::new()),
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, HashSet<T>> {
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `item`; false if it was already there.
    pub fn insert(&self, item: T) -> bool {
        self.guard().insert(item)
    }

    pub fn remove(&self, item: &T) {
        self.guard().remove(item);
    }

    pub fn contains(&self, item: &T) -> bool {
        self.guard().contains(item)
    }

    pub fn len(&self) -> usize {
        self.guard().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Hash + Eq + Clone> Default for InFlight<T> {
    fn default() -> Self {
        Self::new()
    }
}
