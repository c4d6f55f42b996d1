//! A per-provider circuit breaker: after `threshold` consecutive transient failures the
//! circuit opens and the provider gets no sends for `open_for`; then one probe goes out
//! (half-open): success closes the circuit, failure opens it again. Deliveries wait in the
//! outbox meanwhile (no attempts are spent).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The breaker's state, as exported in `pushgate_circuit_state` (0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    failures: u32,
    open_until: Instant,
    probe_in_flight: bool,
}

/// One provider's breaker.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// `threshold` 0 disables the breaker.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold,
            open_for,
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                failures: 0,
                open_until: Instant::now(),
                probe_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many of `wanted` sends may start now, and, if none, how long to wait.
    pub fn admit(&self, wanted: usize, now: Instant) -> (usize, Option<Duration>) {
        if self.threshold == 0 {
            return (wanted, None);
        }
        let mut s = self.lock();
        match s.state {
            CircuitState::Closed => (wanted, None),
            CircuitState::Open if now < s.open_until => (0, Some(s.open_until - now)),
            CircuitState::Open | CircuitState::HalfOpen => {
                s.state = CircuitState::HalfOpen;
                if s.probe_in_flight || wanted == 0 {
                    (0, None)
                } else {
                    s.probe_in_flight = true;
                    (1, None)
                }
            }
        }
    }

    /// Records a send's outcome: `healthy` is false only for transient failures (timeouts,
    /// 5xx, rate limits); a permanent error means the provider answered.
    pub fn record(&self, healthy: bool, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let mut s = self.lock();
        s.probe_in_flight = false;
        if healthy {
            s.failures = 0;
            s.state = CircuitState::Closed;
            return;
        }
        s.failures = s.failures.saturating_add(1);
        if s.state == CircuitState::HalfOpen || s.failures >= self.threshold {
            s.state = CircuitState::Open;
            s.open_until = now + self.open_for;
        }
    }

    /// Gives back an admitted probe that did not send anything.
    pub fn release_probe(&self) {
        self.lock().probe_in_flight = false;
    }

    pub fn state(&self) -> CircuitState {
        self.lock().state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_and_closes() {
        let b = Breaker::new(3, Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(b.admit(10, t0), (10, None));
        b.record(false, t0);
        b.record(false, t0);
        assert_eq!(b.state(), CircuitState::Closed);
        b.record(true, t0);
        for _ in 0..3 {
            b.record(false, t0);
        }
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(
            b.admit(10, t0 + Duration::from_secs(1)),
            (0, Some(Duration::from_secs(4)))
        );
        // After the open period: one probe, nothing else while it runs.
        let later = t0 + Duration::from_secs(6);
        assert_eq!(b.admit(10, later), (1, None));
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.admit(10, later), (0, None));
        b.record(false, later);
        assert_eq!(
            b.state(),
            CircuitState::Open,
            "a failed probe opens it again"
        );
        let much_later = later + Duration::from_secs(6);
        assert_eq!(b.admit(10, much_later), (1, None));
        b.record(true, much_later);
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.admit(10, much_later), (10, None));
    }

    #[test]
    fn a_zero_threshold_disables_it() {
        let b = Breaker::new(0, Duration::from_secs(5));
        for _ in 0..100 {
            b.record(false, Instant::now());
        }
        assert_eq!(b.admit(7, Instant::now()), (7, None));
    }
}
