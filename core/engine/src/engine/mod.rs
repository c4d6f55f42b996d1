//! The routing engine: accepts messages, resolves targets to devices, drives each
//! delivery through its state machine, applies receipts and emits webhook events.
//!
//! All state lives in the [`Store`]; the engine keeps only locks, the in-flight set and
//! wake-ups in memory, so a restart resumes from the store alone.

mod accept;
mod events;
mod identity;
mod receipts;
mod transitions;
mod upstream;

pub(crate) use accept::request_guards;
pub use accept::Accepted;
pub use pushgate_api::request::MessageRequest;
pub use pushgate_api::{AppSettings, NewMessage, ReceiptReport, UpstreamReport};
pub use receipts::{AckOutcome, ReceiptOutcome};
pub use upstream::UpstreamOutcome;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::backoff::RetryPolicy;
use crate::error::EngineError;
use crate::locks::StripedLocks;
use crate::model::{DeliveryId, EventRecord, MessageId};
use crate::provider::{Provider, ProviderContext};
use crate::store::{Store, WriteOp};
use crate::upstream::UpstreamRouter;

/// Engine-wide delivery settings.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub retry: RetryPolicy,
    /// TTL of messages that give none.
    pub default_ttl: Duration,
    /// Longest TTL accepted.
    pub max_ttl: Duration,
    /// Longest a delivery keeps being retried after it was accepted; then it fails.
    pub max_retry_time: Duration,
    /// Consecutive transient failures that open a provider's circuit (0: no breaker).
    pub circuit_failures: u32,
    /// How long an open circuit stays open before a probe.
    pub circuit_open: Duration,
    /// How long a message is kept after its TTL (then purged with its deliveries).
    pub retention: Duration,
    /// How long a claim on due work (a send, a webhook event) holds at least; a node that
    /// dies mid-send loses its claims after this long and another node takes the work.
    pub lease: Duration,
    /// This node's name in claims (`[store] node_id`).
    pub node_id: String,
    /// Makes and checks device acknowledgement tokens (every node of a cluster needs the
    /// same secret).
    pub acks: crate::acks::AckSigner,
    /// How long the event log keeps each app's events for the event stream (`None`: no
    /// event log).
    pub event_log: Option<Duration>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            retry: RetryPolicy::default(),
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(3 * 24 * 3600),
            max_retry_time: Duration::from_secs(24 * 3600),
            circuit_failures: 10,
            circuit_open: Duration::from_secs(5),
            retention: Duration::from_secs(72 * 3600),
            lease: Duration::from_secs(30),
            node_id: default_node_id(),
            acks: crate::acks::AckSigner::new(&rand::random::<[u8; 32]>()),
            event_log: None,
        }
    }
}

/// How many times a step is run while its write finds a delivery changed meanwhile.
const CONFLICT_RETRIES: usize = 8;

/// The routing engine. Cheap to share behind an `Arc`.
pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) providers: HashMap<String, Arc<dyn Provider>>,
    pub(crate) apps: HashMap<String, AppSettings>,
    pub(crate) settings: EngineSettings,
    /// Serialises changes to one message's deliveries.
    pub(crate) message_locks: StripedLocks,
    /// This node's name in claims on due work.
    pub(crate) node: Arc<str>,
    pub(crate) provider_wakers: HashMap<String, Arc<Notify>>,
    pub(crate) event_waker: Notify,
    /// Wakes the alias mirror worker after a binding change queued a mirror.
    pub(crate) mirror_waker: Notify,
    pub(crate) expiry_waker: Notify,
    /// Until when the expiry worker sleeps (ms; 0 while it works): a write wakes it only for
    /// a timer due before that.
    pub(crate) expiry_sleeps_until: std::sync::atomic::AtomicU64,
    /// What upstream messages become; without one, upstream callbacks are refused.
    pub(crate) upstream_router: Option<Arc<dyn UpstreamRouter>>,
    /// Every event logged by this node, once its write succeeded (the event stream's live
    /// feed).
    pub(crate) event_feed: tokio::sync::broadcast::Sender<Arc<EventRecord>>,
    /// Wakes those waiting for a delivery's send step on this node.
    pub(crate) attempts: crate::attempts::AttemptSignals,
}

impl Engine {
    /// Builds the engine and starts each provider with a handle back to it.
    pub fn new(
        store: Arc<dyn Store>,
        providers: Vec<Arc<dyn Provider>>,
        apps: Vec<AppSettings>,
        settings: EngineSettings,
        upstream_router: Option<Arc<dyn UpstreamRouter>>,
    ) -> Arc<Self> {
        let providers: HashMap<String, Arc<dyn Provider>> = providers
            .into_iter()
            .map(|p| (p.name().to_string(), p))
            .collect();
        let provider_wakers = providers
            .keys()
            .map(|name| (name.clone(), Arc::new(Notify::new())))
            .collect();
        let node: Arc<str> = Arc::from(settings.node_id.as_str());
        let engine = Arc::new(Engine {
            store,
            providers,
            apps: apps.into_iter().map(|a| (a.id.clone(), a)).collect(),
            settings,
            message_locks: StripedLocks::new(1024),
            node,
            provider_wakers,
            event_waker: Notify::new(),
            attempts: Default::default(),
            mirror_waker: Notify::new(),
            expiry_waker: Notify::new(),
            expiry_sleeps_until: std::sync::atomic::AtomicU64::new(0),
            upstream_router,
            event_feed: tokio::sync::broadcast::channel(crate::event_log::FEED_CAPACITY).0,
        });
        let receipts: Arc<dyn crate::provider::ReceiptSink> = engine.clone();
        let upstream: Arc<dyn crate::provider::UpstreamSink> = engine.clone();
        let context = ProviderContext {
            receipts: Arc::downgrade(&receipts),
            upstream: Arc::downgrade(&upstream),
        };
        for provider in engine.providers.values() {
            provider.start(context.clone());
        }
        engine
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Signals for waiting on a delivery's next send step on this node.
    pub fn attempt_signals(&self) -> &crate::attempts::AttemptSignals {
        &self.attempts
    }

    /// When something that happened at `now` (ms) has outlived the retention period.
    pub(crate) fn retention_end(&self, now: u64) -> u64 {
        now.saturating_add(self.settings.retention.as_millis() as u64)
    }

    /// The app's settings.
    pub fn app(&self, id: &str) -> Option<&AppSettings> {
        self.apps.get(id)
    }

    /// A configured provider by name.
    pub fn provider(&self, name: &str) -> Result<&Arc<dyn Provider>, EngineError> {
        self.providers
            .get(name)
            .ok_or_else(|| EngineError::UnknownProvider(name.to_string()))
    }

    /// Every configured provider.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.providers.values()
    }

    /// A claim for this node starting at `now`, outlasting `work` (a send or a webhook call
    /// that takes its whole timeout) by a margin.
    pub(crate) fn lease(&self, now: u64, work: Duration) -> crate::store::Lease {
        let hold = self.settings.lease.max(work + Duration::from_secs(5));
        crate::store::Lease {
            owner: self.node.clone(),
            until: now.saturating_add(hold.as_millis() as u64),
        }
    }

    /// Ends this node's claim on a delivery (a failure is logged: the lease runs out).
    pub(crate) async fn release_claim(&self, id: DeliveryId) {
        if let Err(e) = self.store.release(id, &self.node).await {
            tracing::warn!(delivery = %id, error = %e, "releasing a claim failed; it ends with its lease");
        }
    }

    /// Ends this node's claim on a message timer.
    pub(crate) async fn release_timer_claim(&self, id: MessageId) {
        if let Err(e) = self.store.release_timer(id, &self.node).await {
            tracing::warn!(message = %id, error = %e, "releasing a claim failed; it ends with its lease");
        }
    }

    /// Ends this node's claim on an alias mirror.
    pub(crate) async fn release_mirror_claim(&self, id: MessageId) {
        if let Err(e) = self.store.release_alias_mirror(id, &self.node).await {
            tracing::warn!(mirror = %id, error = %e, "releasing a claim failed; it ends with its lease");
        }
    }

    /// Ends this node's claim on a webhook event.
    pub(crate) async fn release_event_claim(&self, id: MessageId) {
        if let Err(e) = self.store.release_event(id, &self.node).await {
            tracing::warn!(event = %id, error = %e, "releasing a claim failed; it ends with its lease");
        }
    }

    /// Applies `ops` atomically, then wakes the workers that have new work: the providers
    /// whose outbox got an entry, the TTL sweeper, the event sender.
    pub(crate) async fn write(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
        self.write_if(Vec::new(), ops).await.map(|_| ())
    }

    /// Like [`Engine::write`], if every guard holds; false (nothing written) if one fails.
    pub(crate) async fn write_if(
        &self,
        guards: Vec<crate::store::Guard>,
        ops: Vec<WriteOp>,
    ) -> Result<bool, EngineError> {
        let mut wake: Vec<String> = Vec::new();
        let (mut events, mut expiry) = (false, u64::MAX);
        let mut logged = Vec::new();
        // A dispatcher looks at its outbox at least this often: work due later (a receipt
        // timeout, a later retry) needs no wake-up.
        let wake_before =
            crate::clock::now_ms().saturating_add(crate::dispatcher::IDLE_WAIT.as_millis() as u64);
        for op in &ops {
            match op {
                WriteOp::LogEvent(e) if self.event_feed.receiver_count() > 0 => {
                    logged.push(Arc::new(e.clone()))
                }
                WriteOp::Schedule { provider, due, .. }
                    if *due < wake_before && !wake.contains(provider) =>
                {
                    wake.push(provider.clone())
                }
                WriteOp::PutEvent(_)
                | WriteOp::EnqueueOrdered(_)
                | WriteOp::AdvanceOrdered { .. } => events = true,
                WriteOp::ScheduleExpiry { at, .. } => expiry = expiry.min(*at),
                _ => {}
            }
        }
        if guards.is_empty() {
            self.store.apply(ops).await?;
        } else if !self.store.apply_if(guards, ops).await? {
            return Ok(false);
        }
        for provider in &wake {
            self.wake_provider(provider);
        }
        for event in logged {
            // No receiver left: nobody streams now, and the log keeps the event.
            let _ = self.event_feed.send(event);
        }
        if events {
            self.event_waker.notify_one();
        }
        let sleeps_until = self
            .expiry_sleeps_until
            .load(std::sync::atomic::Ordering::SeqCst);
        if expiry < sleeps_until {
            self.expiry_waker.notify_one();
        }
        Ok(true)
    }

    /// Writes `ops`, each delivery in them only over the version it was read at (and one
    /// higher): `Err(StoreError::Conflict)` if one changed meanwhile, nothing written. Callers
    /// run the step again through [`Engine::retrying`].
    pub(crate) async fn write_deliveries(&self, mut ops: Vec<WriteOp>) -> Result<(), EngineError> {
        let mut guards = Vec::new();
        for op in &mut ops {
            if let WriteOp::PutDelivery(d) = op {
                guards.push(crate::store::Guard::DeliveryVersion {
                    id: d.id,
                    version: d.version,
                });
                d.version += 1;
            }
        }
        if self.write_if(guards, ops).await? {
            Ok(())
        } else {
            Err(EngineError::Store(crate::error::StoreError::Conflict))
        }
    }

    /// Runs a step that reads deliveries and writes them with [`Engine::write_deliveries`],
    /// again (from a fresh read) while its write finds a delivery changed by another writer.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut step: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, EngineError>>,
    {
        for _ in 1..CONFLICT_RETRIES {
            match step().await {
                Err(EngineError::Store(crate::error::StoreError::Conflict)) => {
                    tracing::debug!("a delivery changed under a step; running it again");
                }
                other => return other,
            }
        }
        step().await
    }

    pub(crate) fn wake_provider(&self, name: &str) {
        if let Some(w) = self.provider_wakers.get(name) {
            w.notify_one();
        }
    }

    pub(crate) fn provider_waker(&self, name: &str) -> Option<Arc<Notify>> {
        self.provider_wakers.get(name).cloned()
    }
}

/// A node name unique enough among gateways on one store: host name and process id.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    format!("{host}-{}", std::process::id())
}
