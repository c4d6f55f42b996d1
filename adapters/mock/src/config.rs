//! `[[providers]] kind = "mock"` settings.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::MockError;

/// How the simulated provider and its devices behave.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MockSettings {
    /// Time each send takes, in milliseconds.
    #[serde(default)]
    pub send_latency_ms: u64,
    /// Time from a send to the device's receipt, in milliseconds.
    #[serde(default = "default_receipt_delay")]
    pub receipt_delay_ms: u64,
    /// Share of sends (0 to 1) that fail transiently (retried).
    #[serde(default)]
    pub transient_failure_rate: f64,
    /// Share of sends (0 to 1) that fail permanently.
    #[serde(default)]
    pub permanent_failure_rate: f64,
    /// Share of receipts (0 to 1) the device never sends.
    #[serde(default)]
    pub receipt_loss_rate: f64,
    /// How long a sent delivery waits for its receipt before the gateway sends it again
    /// (0: never).
    #[serde(default = "default_receipt_timeout")]
    pub receipt_timeout_ms: u64,
    /// Every delivery fails transiently on its first N attempts (deterministic outages).
    #[serde(default)]
    pub fail_first_attempts: u32,
    /// Client ids starting with this prefix are unknown: permanent failure, like Getui's
    /// "target user is invalid".
    #[serde(default = "default_unknown_prefix")]
    pub unknown_cid_prefix: String,
    /// Client ids starting with this prefix are gone (an uninstalled app, as FCM's
    /// UNREGISTERED): the delivery fails and the device is unbound.
    #[serde(default = "default_gone_prefix")]
    pub gone_cid_prefix: String,
    /// Secret that signs the simulated devices' receipts. Unset: random, kept in `state_dir`
    /// when there is one (so receipts owed across a restart still verify), per process if not.
    #[serde(default)]
    pub secret: Option<String>,
    /// Where device inboxes are kept across restarts; in memory only if unset.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Messages kept per device inbox in memory (oldest dropped first).
    #[serde(default = "default_inbox_limit")]
    pub inbox_limit: usize,
    /// Sends in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Sends per second, if capped.
    #[serde(default)]
    pub qps: Option<u32>,
    /// The gateway's timeout for one send (default: send latency + 10 s). With a latency above
    /// it, every send times out: a provider that is down.
    #[serde(default)]
    pub send_timeout_ms: Option<u64>,
}

fn default_receipt_delay() -> u64 {
    5
}
fn default_receipt_timeout() -> u64 {
    60_000
}
fn default_unknown_prefix() -> String {
    "unknown".into()
}
fn default_gone_prefix() -> String {
    "gone".into()
}
fn default_inbox_limit() -> usize {
    1000
}
fn default_concurrency() -> usize {
    256
}

impl std::fmt::Debug for MockSettings {
    /// Never prints the receipt-signing secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockSettings")
            .field("send_latency_ms", &self.send_latency_ms)
            .field("receipt_delay_ms", &self.receipt_delay_ms)
            .field("transient_failure_rate", &self.transient_failure_rate)
            .field("permanent_failure_rate", &self.permanent_failure_rate)
            .field("receipt_loss_rate", &self.receipt_loss_rate)
            .field("receipt_timeout_ms", &self.receipt_timeout_ms)
            .field("fail_first_attempts", &self.fail_first_attempts)
            .field("unknown_cid_prefix", &self.unknown_cid_prefix)
            .field("gone_cid_prefix", &self.gone_cid_prefix)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("state_dir", &self.state_dir)
            .field("inbox_limit", &self.inbox_limit)
            .field("concurrency", &self.concurrency)
            .field("qps", &self.qps)
            .field("send_timeout_ms", &self.send_timeout_ms)
            .finish()
    }
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            send_latency_ms: 0,
            receipt_delay_ms: default_receipt_delay(),
            transient_failure_rate: 0.0,
            permanent_failure_rate: 0.0,
            receipt_loss_rate: 0.0,
            receipt_timeout_ms: default_receipt_timeout(),
            fail_first_attempts: 0,
            unknown_cid_prefix: default_unknown_prefix(),
            gone_cid_prefix: default_gone_prefix(),
            secret: None,
            state_dir: None,
            inbox_limit: default_inbox_limit(),
            concurrency: default_concurrency(),
            qps: None,
            send_timeout_ms: None,
        }
    }
}

impl MockSettings {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), MockError> {
        for (key, rate) in [
            ("transient_failure_rate", self.transient_failure_rate),
            ("permanent_failure_rate", self.permanent_failure_rate),
            ("receipt_loss_rate", self.receipt_loss_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(MockError::Config(format!(
                    "{key} must be between 0 and 1, got {rate}"
                )));
            }
        }
        if self.transient_failure_rate + self.permanent_failure_rate > 1.0 {
            return Err(MockError::Config(
                "transient_failure_rate + permanent_failure_rate must not exceed 1".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(MockError::Config("concurrency must be at least 1".into()));
        }
        if self.inbox_limit == 0 {
            return Err(MockError::Config("inbox_limit must be at least 1".into()));
        }
        if self.qps == Some(0) {
            return Err(MockError::Config("qps must be at least 1".into()));
        }
        if matches!(&self.secret, Some(s) if s.is_empty()) {
            return Err(MockError::Config("secret must not be empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod debug_tests {
    #[test]
    fn debug_hides_the_secret() {
        let settings = super::MockSettings {
            secret: Some("hunter2-secret".into()),
            ..Default::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
