//! In-process signals for "this delivery's send step ran": a caller that waits for an
//! attempt's outcome (the Matrix notify's `rejected`) is woken by the dispatcher of this
//! node instead of polling the store. Attempts made by other nodes send no signal here, so
//! waiters still look at the store now and then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::model::DeliveryId;

/// The waiters of each delivery, woken once when a send step for it ends.
#[derive(Default)]
pub struct AttemptSignals {
    waiters: Mutex<HashMap<DeliveryId, Vec<oneshot::Sender<()>>>>,
    /// How many deliveries have waiters: a send step with none takes no lock.
    watched: AtomicUsize,
}

impl AttemptSignals {
    fn lock(&self) -> MutexGuard<'_, HashMap<DeliveryId, Vec<oneshot::Sender<()>>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A signal for the next send step of `id` that ends from now on. Look at the delivery
    /// after subscribing, so an attempt between the look and the wait is not missed.
    pub fn subscribe(&self, id: DeliveryId) -> AttemptSignal<'_> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.lock();
        let entry = waiters.entry(id).or_default();
        if entry.is_empty() {
            self.watched.fetch_add(1, Ordering::SeqCst);
        }
        entry.push(tx);
        AttemptSignal {
            signals: self,
            id,
            rx,
        }
    }

    /// Wakes every waiter of `id` (called when a send step for it ends, recorded or not).
    pub fn attempted(&self, id: DeliveryId) {
        if self.watched.load(Ordering::SeqCst) == 0 {
            return;
        }
        let woken = {
            let mut waiters = self.lock();
            let woken = waiters.remove(&id);
            if woken.is_some() {
                self.watched.fetch_sub(1, Ordering::SeqCst);
            }
            woken
        };
        for tx in woken.into_iter().flatten() {
            let _ = tx.send(());
        }
    }

    /// Deliveries with waiters (for tests).
    pub fn watched(&self) -> usize {
        self.watched.load(Ordering::SeqCst)
    }
}

/// One waiter's signal; dropping it unsubscribes.
pub struct AttemptSignal<'a> {
    signals: &'a AttemptSignals,
    id: DeliveryId,
    rx: oneshot::Receiver<()>,
}

impl AttemptSignal<'_> {
    /// Waits for the signal, at most `timeout`; true if it came.
    pub async fn wait(mut self, timeout: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, &mut self.rx).await,
            Ok(Ok(()))
        )
    }
}

impl Drop for AttemptSignal<'_> {
    fn drop(&mut self) {
        // Closed first, so this waiter's sender shows as closed below.
        self.rx.close();
        let mut waiters = self.signals.lock();
        if let Some(entry) = waiters.get_mut(&self.id) {
            entry.retain(|tx| !tx.is_closed());
            if entry.is_empty() {
                waiters.remove(&self.id);
                self.signals.watched.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageId;
    use std::time::Duration;

    fn id(index: u16) -> DeliveryId {
        DeliveryId {
            message: MessageId::generate(),
            index,
        }
    }

    #[tokio::test]
    async fn an_attempt_wakes_its_waiters_and_no_others() {
        let signals = AttemptSignals::default();
        let (a, b) = (id(0), id(1));
        let first = signals.subscribe(a);
        let second = signals.subscribe(a);
        let other = signals.subscribe(b);
        assert_eq!(signals.watched(), 2);
        signals.attempted(a);
        assert!(first.wait(Duration::from_millis(10)).await);
        assert!(second.wait(Duration::from_millis(10)).await);
        assert!(
            !other.wait(Duration::from_millis(10)).await,
            "b was not attempted"
        );
        assert_eq!(
            signals.watched(),
            0,
            "woken and dropped waiters leave nothing behind"
        );
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_unsubscribes_without_touching_others() {
        let signals = AttemptSignals::default();
        let a = id(0);
        let stays = signals.subscribe(a);
        drop(signals.subscribe(a));
        assert_eq!(signals.watched(), 1, "the other waiter still waits");
        signals.attempted(a);
        assert!(stays.wait(Duration::from_millis(10)).await);
        assert_eq!(signals.watched(), 0);
    }
}
