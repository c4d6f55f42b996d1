//! The background workers: one dispatcher per provider (its own outbox range, concurrency
//! cap and rate limit, so a slow provider never holds up another) and the TTL sweeper.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::breaker::{Breaker, CircuitState};
use crate::clock::now_ms;
use crate::engine::Engine;
use crate::metrics as m;
use crate::provider::Provider;
use crate::scan_cursor::ScanCursor;
use crate::store::Timer;

/// Most deliveries claimed in one outbox scan.
const SCAN_BATCH: usize = 256;
/// Longest sleep of an idle worker; new work due sooner wakes it.
pub(crate) const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How long handling one batch of message timers may take (their claims outlast it).
const TIMER_WORK: Duration = Duration::from_secs(30);
/// Pause after a storage error, so a broken disk does not spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// How often a rate-capped dispatcher tells the store it runs, and looks how many nodes
/// share the provider's `qps`.
const SHARE_EVERY: Duration = Duration::from_secs(2);
/// A node not heard from for this long no longer takes a share.
const SHARE_WINDOW: Duration = Duration::from_secs(6);

/// Paces sends to at most `qps` per second, split among the nodes sending for the provider.
struct Pacer {
    qps: u32,
    interval: Duration,
    next: Instant,
    /// When to look at the number of nodes again.
    recount_at: Instant,
}

impl Pacer {
    fn new(qps: u32) -> Self {
        Pacer {
            qps: qps.max(1),
            interval: Duration::from_secs(1) / qps.max(1),
            next: Instant::now(),
            recount_at: Instant::now(),
        }
    }

    /// Sends at `qps / nodes` per second from now on.
    fn share(&mut self, nodes: u64) {
        let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
        self.interval = Duration::from_secs(1).saturating_mul(nodes) / self.qps;
    }

    /// Refreshes this node's share once every [`SHARE_EVERY`].
    async fn recount(&mut self, engine: &Engine, provider: &str) {
        if Instant::now() < self.recount_at {
            return;
        }
        self.recount_at = Instant::now() + SHARE_EVERY;
        match engine
            .store()
            .live_dispatchers(
                provider,
                &engine.node,
                now_ms(),
                SHARE_WINDOW.as_millis() as u64,
            )
            .await
        {
            Ok(nodes) => self.share(nodes),
            Err(e) => {
                tracing::warn!(provider, error = %e, "counting the nodes that share the qps failed; keeping the last share")
            }
        }
    }

    async fn wait(&mut self) {
        let now = Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        }
        self.next = self.next.max(now) + self.interval;
    }
}

/// How long an idle worker may sleep before `next` (epoch ms) is due.
fn wait_until(next: Option<u64>, now: u64) -> Duration {
    match next {
        Some(t) if t > now => Duration::from_millis(t - now).min(IDLE_WAIT),
        _ => IDLE_WAIT,
    }
}

/// Whether the store has failed; if so, waits a moment (or for `shutdown`). A failed store
/// may show changes that never became durable, so nothing is sent from it.
pub(crate) async fn store_failed(engine: &Engine, shutdown: &mut watch::Receiver<bool>) -> bool {
    if engine.store().failure().is_none() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(ERROR_PAUSE) => {}
        _ = shutdown.changed() => {}
    }
    true
}

/// Runs `provider`'s dispatcher until `shutdown` turns true, then waits for the sends in
/// flight (their outcome is recorded; anything not started stays in the outbox).
pub async fn run_provider(
    engine: Arc<Engine>,
    provider: Arc<dyn Provider>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = provider.name().to_string();
    let Some(waker) = engine.provider_waker(&name) else {
        return;
    };
    let limits = provider.limits();
    let permits = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let breaker = Arc::new(Breaker::new(
        engine.settings.circuit_failures,
        engine.settings.circuit_open,
    ));
    let mut pacer = limits.qps.map(Pacer::new);
    let mut tasks = JoinSet::new();
    let store = engine.store().clone();
    let mut cursor = ScanCursor::default();
    tracing::debug!(provider = %name, "dispatcher started");
    while !*shutdown.borrow() {
        while tasks.try_join_next().is_some() {}
        if store_failed(&engine, &mut shutdown).await {
            continue;
        }
        if let Some(p) = pacer.as_mut() {
            p.recount(&engine, &name).await;
        }
        let (free, circuit_wait) =
            breaker.admit(permits.available_permits(), std::time::Instant::now());
        metrics::gauge!(m::CIRCUIT_STATE, "provider" => name.clone())
            .set(breaker.state() as i32 as f64);
        let now = now_ms();
        // A rate-capped provider takes one delivery per pacing slot.
        let batch = if pacer.is_some() { 1 } else { SCAN_BATCH };
        let asked = free.min(batch);
        let due = if free == 0 {
            Ok(Vec::new())
        } else {
            let lease = engine.lease(now, limits.send_timeout);
            store
                .claim_due(&name, cursor.from(), now, asked, &lease)
                .await
        };
        let due = match due {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(provider = %name, error = %e, "outbox scan failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let idle = free >= limits.concurrency.max(1);
        if cursor.scanned(due.last().map(|(d, _)| *d), idle, std::time::Instant::now()) {
            continue;
        }
        if due.is_empty() {
            if free > 0 && breaker.state() == CircuitState::HalfOpen {
                breaker.release_probe();
            }
            // Look up the next due time (a retry's backoff) only when no send is in flight:
            // a retry due within IDLE_WAIT wakes this loop when it is written.
            let nothing_in_flight = permits.available_permits() >= limits.concurrency.max(1);
            let next = if nothing_in_flight {
                store.next_due(&name).await.ok().flatten()
            } else {
                None
            };
            let wait = circuit_wait.map_or(wait_until(next, now), |w| w.min(IDLE_WAIT));
            tokio::select! {
                _ = waker.notified(), if circuit_wait.is_none() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        // Fewer than asked: nothing else is due now, so wait for new work instead of
        // scanning again at once.
        let drained = due.len() < asked;
        let mut claimed = due.into_iter();
        for (due, id) in claimed.by_ref() {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                engine.release_claim(id).await;
                break;
            };
            if let Some(p) = pacer.as_mut() {
                tokio::select! {
                    _ = p.wait() => {}
                    _ = shutdown.changed() => {
                        engine.release_claim(id).await;
                        break;
                    }
                }
            }
            let engine = engine.clone();
            let waker = waker.clone();
            let breaker = breaker.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let probing = breaker.state() != CircuitState::Closed;
                match engine.deliver(due, id).await {
                    // The recorded outcome took the claimed entry out, and the claim with it.
                    Ok(Some(healthy)) => breaker.record(healthy, std::time::Instant::now()),
                    Ok(None) => {
                        breaker.release_probe();
                        engine.release_claim(id).await;
                    }
                    Err(e) => {
                        breaker.release_probe();
                        tracing::error!(delivery = %id, error = %e, "delivery step failed; it stays queued");
                        tokio::time::sleep(ERROR_PAUSE).await;
                        engine.release_claim(id).await;
                    }
                }
                // A freed permit matters to a dispatcher that ran out of them, or that waits
                // for a probe's outcome; new and retried work wakes it by itself.
                let wanted = permits.available_permits() == 0
                    || probing
                    || breaker.state() != CircuitState::Closed;
                drop(permit);
                if wanted {
                    waker.notify_one();
                }
            });
        }
        // Stopping: what was claimed and not started is left for the next start.
        let stopping = !claimed.as_slice().is_empty();
        for (_, id) in claimed {
            engine.release_claim(id).await;
        }
        if drained && !stopping {
            cursor.restart();
            let wait = circuit_wait.map_or(IDLE_WAIT, |w| w.min(IDLE_WAIT));
            tokio::select! {
                _ = waker.notified(), if circuit_wait.is_none() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    tracing::debug!(provider = %name, "dispatcher stopped");
}

/// Runs the TTL and retention sweeper until `shutdown` turns true.
pub async fn run_expiry(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let store = engine.store().clone();
    while !*shutdown.borrow() {
        if store_failed(&engine, &mut shutdown).await {
            continue;
        }
        let now = now_ms();
        match store.remove_due(now, SCAN_BATCH).await {
            // A full batch: more may be due; go round again first.
            Ok(n) if n == SCAN_BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "scheduled removals failed"),
        }
        let lease = engine.lease(now, TIMER_WORK);
        let due = match store.claim_timers(now, SCAN_BATCH, &lease).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "expiry scan failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        if due.is_empty() {
            let next = match (
                store.next_expiry().await.ok().flatten(),
                store.next_removal().await.ok().flatten(),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // A timer written meanwhile and due before this wakes us (see `Engine::write`);
            // one written between the scan and here waits at most IDLE_WAIT.
            let wait = wait_until(next, now);
            engine.expiry_sleeps_until.store(
                now.saturating_add(wait.as_millis() as u64),
                std::sync::atomic::Ordering::SeqCst,
            );
            tokio::select! {
                _ = engine.expiry_waker.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for (at, id, timer) in due {
            let result = match timer {
                Timer::Expire => engine.retrying(|| engine.expire_message(at, id)).await,
                Timer::Purge => engine.purge_message(at, id).await,
            };
            engine.release_timer_claim(id).await;
            if let Err(e) = result {
                tracing::error!(message = %id, error = %e, ?timer, "message timer failed");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

/// Refreshes the outbox depth gauges once a second. (Writes no request waited for reach the
/// disk through the store's own background sync.)
pub async fn run_gauges(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let store = engine.store().clone();
    let mut tick = tokio::time::interval(IDLE_WAIT);
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tick.tick() => {
                for name in engine.providers.keys() {
                    match store.outbox_depth(name).await {
                        Ok(depth) => metrics::gauge!(m::OUTBOX_DEPTH, "provider" => name.clone())
                            .set(depth as f64),
                        Err(e) => tracing::warn!(provider = %name, error = %e, "outbox depth unavailable"),
                    }
                }
            }
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pacer_splits_its_qps_among_the_nodes() {
        let mut pacer = Pacer::new(10);
        assert_eq!(pacer.interval, Duration::from_millis(100));
        pacer.share(3);
        assert_eq!(
            pacer.interval,
            Duration::from_millis(300),
            "10/s over three nodes"
        );
        pacer.share(0);
        assert_eq!(
            pacer.interval,
            Duration::from_millis(100),
            "never below one node"
        );
    }

    #[test]
    fn idle_wait_is_capped_and_never_negative() {
        assert_eq!(wait_until(None, 10), IDLE_WAIT);
        assert_eq!(wait_until(Some(5), 10), IDLE_WAIT);
        assert_eq!(wait_until(Some(110), 10), Duration::from_millis(100));
        assert_eq!(wait_until(Some(1_000_000), 10), IDLE_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_sends() {
        let mut p = Pacer::new(10);
        let start = Instant::now();
        for _ in 0..5 {
            p.wait().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(400));
    }
}
