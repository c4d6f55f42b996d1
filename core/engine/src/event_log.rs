//! The event log: every app's events (the ones webhooks carry, with the same ids) kept for a
//! while, so an event stream can follow them live and a client that reconnects resumes after
//! the last id it saw. The log is pruned by age; this node's new events are also broadcast
//! as their writes succeed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::clock::now_ms;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::model::{EventRecord, MessageId};

/// Events the live feed holds for a subscriber that lags (then it catches up from the log).
pub const FEED_CAPACITY: usize = 4096;
/// Logged events dropped per prune write.
const PRUNE_BATCH: usize = 5_000;
/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

impl Engine {
    /// Whether events are logged (`[event_stream] retention_seconds` above 0).
    pub fn event_log_enabled(&self) -> bool {
        self.settings.event_log.is_some()
    }

    /// The live feed of events this node logs from now on (every app's).
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.event_feed.subscribe()
    }

    /// Up to `limit` logged events of `app` after `after`, oldest first.
    pub async fn logged_events(
        &self,
        app: &str,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, EngineError> {
        Ok(self.store.logged_events(app, after, limit).await?)
    }
}

/// Prunes logged events older than the retention until `shutdown` turns true.
pub async fn run_pruner(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let Some(retention) = engine.settings.event_log else {
        return;
    };
    let store = engine.store().clone();
    while !*shutdown.borrow() {
        let before = now_ms().saturating_sub(retention.as_millis() as u64);
        match store.prune_event_log(before, PRUNE_BATCH).await {
            // A full batch: more are old; go on at once.
            Ok(n) if n == PRUNE_BATCH => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "pruning the event log failed; trying again later")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.changed() => {}
        }
    }
}
