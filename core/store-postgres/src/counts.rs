//! Outbox depth per provider and backlog per app, counted by the database and kept for a
//! second (so the figures are at most that stale, and the accept path pays one count a
//! second per app, not one per request).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Counts {
    ttl: Duration,
    by_provider: Mutex<HashMap<String, (Instant, u64)>>,
    by_app: Mutex<HashMap<String, (Instant, u64)>>,
}

/// Which count.
#[derive(Clone, Copy)]
pub enum Count {
    Provider,
    App,
}

impl Counts {
    pub fn new(ttl: Duration) -> Self {
        Counts {
            ttl,
            by_provider: Mutex::new(HashMap::new()),
            by_app: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self, which: Count) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u64)>> {
        match which {
            Count::Provider => &self.by_provider,
            Count::App => &self.by_app,
        }
        .lock()
        .unwrap_or_else(|p| p.into_inner())
    }

    /// A count no older than the ttl, if one is kept.
    pub fn fresh(&self, which: Count, key: &str) -> Option<u64> {
        self.map(which)
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, n)| *n)
    }

    pub fn keep(&self, which: Count, key: &str, n: u64) {
        self.map(which).insert(key.to_string(), (Instant::now(), n));
    }
}
