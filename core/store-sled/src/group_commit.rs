//! Group commit: many writers share one flush instead of each paying an fsync.
//!
//! A writer makes its changes, then awaits [`GroupCommit::commit`]. At most one flush runs
//! at a time; every commit that arrives while it runs is covered by the next one, started
//! by the first waiter that sees the flusher idle. A commit returns only after a flush that
//! started after the commit was called has succeeded, so every write made before `commit`
//! is durable when it returns. Each flush runs in its own task, so a cancelled waiter never
//! leaves a flush half done, and no task outlives the store between flushes.
//!
//! The optional commit window gathers writers at low rates: a commit that finds the flusher
//! idle starts a flush that first waits for the window, and every commit arriving during
//! that wait joins it (the flush's epoch is sealed only when it starts writing). Where
//! writers gather by themselves there is no wait: not for a flush started by writers that
//! waited through the previous one, nor after a flush that covered [`GATHERED`] commits or
//! more (many writers in step: they all arrive just after the flush that answered them);
//! and a wait ends as soon as that many have joined.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use pushgate_engine::error::StoreError;
use pushgate_engine::metrics as m;

/// Commits covered by the last flush from which writers are taken to gather by themselves.
const GATHERED: usize = 4;

/// A boxed flush operation of the backend.
pub type FlushFn =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>> + Send + Sync>;

#[derive(Debug)]
struct State {
    /// The epoch the next flush will cover (or the one waiting for its window covers: it
    /// moves on when that flush starts writing).
    next_epoch: u64,
    /// Highest epoch whose flush succeeded.
    durable: u64,
    /// Highest epoch whose flush finished, well or not.
    attempted: u64,
    flushing: bool,
    /// A flush is waiting for its window.
    pausing: bool,
    /// Commits waiting for `next_epoch`, and how many the last sealed epoch had.
    joined: usize,
    last_joined: usize,
    last_error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped after every flush, to wake waiters.
    done: watch::Sender<u64>,
    /// Ends a flush's window early: enough commits have joined.
    gathered: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The group-commit coordinator.
pub struct GroupCommit {
    shared: Arc<Shared>,
    flush: Arc<FlushFn>,
    window: Duration,
}

impl GroupCommit {
    /// `window` is an optional pause before each flush to gather more writers
    /// (zero: flush as soon as asked; writers arriving meanwhile still share the next one).
    pub fn start(flush: FlushFn, window: Duration) -> Self {
        let (done, _) = watch::channel(0);
        GroupCommit {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    next_epoch: 1,
                    durable: 0,
                    attempted: 0,
                    flushing: false,
                    pausing: false,
                    joined: 0,
                    last_joined: 0,
                    last_error: None,
                }),
                done,
                gathered: Notify::new(),
            }),
            flush: Arc::new(flush),
            window,
        }
    }

    /// Waits until every write made before this call is flushed to disk.
    pub async fn commit(&self) -> Result<(), StoreError> {
        let mut rx = self.shared.done.subscribe();
        let (target, gathered) = {
            let mut s = self.shared.lock();
            s.joined += 1;
            (s.next_epoch, s.pausing && s.joined >= GATHERED)
        };
        if gathered {
            self.shared.gathered.notify_one();
        }
        // Only a commit that finds the flusher idle on arrival may wait for the window.
        let mut arriving = true;
        loop {
            {
                let mut s = self.shared.lock();
                if s.durable >= target {
                    return Ok(());
                }
                if s.attempted >= target {
                    return Err(StoreError::Backend(format!(
                        "flush failed: {}",
                        s.last_error.as_deref().unwrap_or("unknown error")
                    )));
                }
                if !s.flushing {
                    s.flushing = true;
                    let pause = if arriving && s.last_joined < GATHERED {
                        self.window
                    } else {
                        Duration::ZERO
                    };
                    s.pausing = !pause.is_zero();
                    self.spawn_flush(s.next_epoch, pause);
                }
            }
            arriving = false;
            if rx.changed().await.is_err() {
                return Err(StoreError::Backend("the store was closed".into()));
            }
        }
    }

    /// Flushes `epoch` after `pause`: commits that arrive until the flush starts join it.
    fn spawn_flush(&self, epoch: u64, pause: Duration) {
        let shared = self.shared.clone();
        let flush = self.flush.clone();
        tokio::spawn(async move {
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shared.gathered.notified() => {}
                }
            }
            // Sealed: a commit from now on needs the next flush (its writes may come after
            // this one has read what it writes).
            {
                let mut s = shared.lock();
                s.next_epoch = epoch + 1;
                s.pausing = false;
                s.last_joined = std::mem::take(&mut s.joined);
            }
            let started = Instant::now();
            let result = flush().await;
            metrics::histogram!(m::STORE_FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
            metrics::counter!(m::STORE_FLUSHES_TOTAL).increment(1);
            {
                let mut s = shared.lock();
                s.attempted = epoch;
                s.flushing = false;
                match &result {
                    Ok(()) => {
                        s.durable = epoch;
                        s.last_error = None;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "store flush failed");
                        s.last_error = Some(e.to_string());
                    }
                }
            }
            shared.done.send_modify(|n| *n += 1);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A flush that counts its starts in `flushes` and takes `takes`.
    fn counting(flushes: &Arc<AtomicUsize>, takes: Duration) -> FlushFn {
        let counter = flushes.clone();
        Box::new(move || {
            let counter = counter.clone();
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(takes).await;
                Ok(())
            })
        })
    }

    #[tokio::test]
    async fn concurrent_commits_share_flushes() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let gc = Arc::new(GroupCommit::start(
            counting(&flushes, Duration::from_millis(5)),
            Duration::ZERO,
        ));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let gc = gc.clone();
            tasks.push(tokio::spawn(async move { gc.commit().await }));
        }
        for t in tasks {
            t.await.expect("task").expect("commit");
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..200).contains(&n), "200 commits took {n} flushes");
    }

    /// On the runtime's paused clock: every sleep is exact, so the test reads the pauses.
    #[tokio::test(start_paused = true)]
    async fn commits_during_the_window_join_its_flush_and_waiters_do_not_wait_again() {
        use tokio::time::Instant;
        let flushes = Arc::new(AtomicUsize::new(0));
        let gc = Arc::new(GroupCommit::start(
            counting(&flushes, Duration::from_millis(30)),
            Duration::from_millis(60),
        ));
        let started = Instant::now();
        let first = tokio::spawn({
            let gc = gc.clone();
            async move { gc.commit().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Arrives while the first flush waits for its window: covered by it.
        gc.commit().await.expect("commit");
        first.await.expect("task").expect("commit");
        assert_eq!(flushes.load(Ordering::SeqCst), 1, "one flush for both");
        // Arrives while a flush runs: the next flush, started by the waiter without a pause.
        let running = tokio::spawn({
            let gc = gc.clone();
            async move { gc.commit().await }
        });
        tokio::time::sleep(Duration::from_millis(75)).await;
        assert_eq!(
            flushes.load(Ordering::SeqCst),
            2,
            "flushing after its window"
        );
        // Waits for the running flush (15 ms left), then its own without a window (30 ms).
        let waiter = Instant::now();
        gc.commit().await.expect("commit");
        running.await.expect("task").expect("commit");
        assert_eq!(flushes.load(Ordering::SeqCst), 3);
        assert_eq!(waiter.elapsed(), Duration::from_millis(45));
        assert_eq!(started.elapsed(), Duration::from_millis(210));
        // Writers in step: the window ends once enough have joined, and the flush that
        // covered many is followed by one without a wait.
        let together = Instant::now();
        let many: Vec<_> = (0..GATHERED)
            .map(|_| {
                let gc = gc.clone();
                tokio::spawn(async move { gc.commit().await })
            })
            .collect();
        for t in many {
            t.await.expect("task").expect("commit");
        }
        assert_eq!(
            together.elapsed(),
            Duration::from_millis(30),
            "the window ended early"
        );
        let next = Instant::now();
        gc.commit().await.expect("commit");
        assert_eq!(
            next.elapsed(),
            Duration::from_millis(30),
            "no window after a full flush"
        );
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_waiters_and_a_later_one_succeeds() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let gc = GroupCommit::start(
            Box::new(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    if n == 0 {
                        Err(StoreError::Backend("disk full".into()))
                    } else {
                        Ok(())
                    }
                })
            }),
            Duration::ZERO,
        );
        let err = gc.commit().await.expect_err("first flush fails");
        assert!(err.to_string().contains("disk full"));
        gc.commit().await.expect("second flush succeeds");
    }
}
