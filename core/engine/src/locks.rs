//! Striped locks: the engine's in-process serialisation of one message's changes (claims on
//! due work are the store's, see `pushgate_store::Lease`).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

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
