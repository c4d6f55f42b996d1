//! Retry schedule: capped exponential backoff with jitter, honouring a provider's hint.

use std::time::Duration;

use rand::Rng;

/// How transient failures are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the second attempt (before jitter).
    pub base: Duration,
    /// Largest delay between attempts.
    pub max_delay: Duration,
    /// Attempts in all, the first one included; then the delivery fails.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            max_attempts: 12,
        }
    }
}

impl RetryPolicy {
    /// The delay after `attempts` failed attempts (1 after the first): `base * 2^(n-1)`,
    /// capped at `max_delay`, then "equal jitter" (half fixed, half random), and never
    /// shorter than the provider's `retry_after`.
    /// The longest [`RetryPolicy::delay`] after `attempts` attempts, without a hint.
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(32);
        self.base
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max_delay)
    }

    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let exp = attempts.saturating_sub(1).min(32);
        let raw = self
            .base
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max_delay);
        let half = raw / 2;
        let jitter_ms = half.as_millis() as u64;
        let jitter = if jitter_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::thread_rng().gen_range(0..=jitter_ms))
        };
        let delay = half + jitter;
        match retry_after {
            Some(hint) if hint > delay => hint.min(Duration::from_secs(24 * 3600)),
            _ => delay,
        }
    }

    /// Whether another attempt is allowed after `attempts` attempts.
    pub fn may_retry(&self, attempts: u32) -> bool {
        attempts < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_jittered_and_capped() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_attempts: 5,
        };
        for _ in 0..100 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d40 = p.delay(40, None);
            assert!(d40 >= Duration::from_millis(500) && d40 <= Duration::from_millis(1000));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert!(p.may_retry(4));
        assert!(!p.may_retry(5));
    }
}
