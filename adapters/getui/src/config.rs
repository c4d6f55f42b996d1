//! `[[providers]] kind = "getui"` settings.

use std::fmt;

use serde::Deserialize;

use crate::error::GetuiError;

/// Largest `msg_list` of a batch push.
pub const MAX_BATCH: usize = 200;

/// How to reach one Getui app.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GetuiSettings {
    /// Origin of the REST API, without `/v2` (e.g. `https://restapi.getui.com`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub app_id: String,
    pub app_key: String,
    pub master_secret: String,
    /// Sends per second, if capped.
    #[serde(default)]
    pub qps: Option<u32>,
    /// Sends in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Timeout of each HTTP call, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Most deliveries in one `/push/single/batch/cid` call (1 disables batching).
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Mirror binds and unbinds made through pushgate to Getui's `/user/alias`.
    #[serde(default)]
    pub delegate_aliases: bool,
    /// Resolve aliases with no local device through Getui (`GET /user/cid/alias/{alias}`).
    #[serde(default)]
    pub remote_aliases: bool,
    /// How long a remote alias lookup is cached, in milliseconds.
    #[serde(default = "default_alias_cache")]
    pub remote_alias_cache_ms: u64,
    /// How long a sent delivery waits for its receipt before it is pushed again with the same
    /// request_id (0: never; set 0 when receipts are not enabled for the Getui app).
    #[serde(default = "default_receipt_timeout")]
    pub receipt_timeout_ms: u64,
    /// `settings.strategy` of every push: channel key → 1 (Getui online, vendor channel
    /// offline), 2 (vendor only), 3 (Getui only), 4 (vendor first). Empty: Getui's default (1).
    /// Keys: `default ios hw xm mz op vv st hx hwq ho hoshw`.
    #[serde(default)]
    pub strategy: std::collections::BTreeMap<String, i64>,
}

/// The channel keys `settings.strategy` takes.
pub const STRATEGY_KEYS: &[&str] = &[
    "default", "ios", "hw", "xm", "mz", "op", "vv", "st", "hx", "hwq", "ho", "hoshw",
];

fn default_base_url() -> String {
    "https://restapi.getui.com".into()
}
fn default_concurrency() -> usize {
    64
}
fn default_timeout() -> u64 {
    10_000
}
fn default_batch() -> usize {
    MAX_BATCH
}
fn default_alias_cache() -> u64 {
    30_000
}
fn default_receipt_timeout() -> u64 {
    60_000
}

impl fmt::Debug for GetuiSettings {
    /// Never prints the app key or the master secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetuiSettings")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("app_key", &"<redacted>")
            .field("master_secret", &"<redacted>")
            .field("qps", &self.qps)
            .field("concurrency", &self.concurrency)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_batch", &self.max_batch)
            .field("delegate_aliases", &self.delegate_aliases)
            .field("remote_aliases", &self.remote_aliases)
            .field("remote_alias_cache_ms", &self.remote_alias_cache_ms)
            .field("receipt_timeout_ms", &self.receipt_timeout_ms)
            .field("strategy", &self.strategy)
            .finish()
    }
}

impl GetuiSettings {
    /// Checks values; the error names the key.
    pub fn validate(&self) -> Result<(), GetuiError> {
        let bad = |m: String| Err(GetuiError::Config(m));
        let uri: Result<http::Uri, _> = self.base_url.parse();
        match uri {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => {
                return bad(format!(
                    "base_url {:?} must be an http(s) origin",
                    self.base_url
                ))
            }
        }
        for (key, v) in [
            ("app_id", &self.app_id),
            ("app_key", &self.app_key),
            ("master_secret", &self.master_secret),
        ] {
            if v.trim().is_empty() {
                return bad(format!("{key} must not be empty"));
            }
        }
        if self.app_id.contains('/') {
            return bad("app_id must not contain '/'".into());
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        if self.qps == Some(0) {
            return bad("qps must be at least 1".into());
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms must be at least 1".into());
        }
        if !(1..=MAX_BATCH).contains(&self.max_batch) {
            return bad(format!("max_batch must be between 1 and {MAX_BATCH}"));
        }
        for (key, value) in &self.strategy {
            if !STRATEGY_KEYS.contains(&key.as_str()) {
                return bad(format!(
                    "strategy key {key:?} is not a Getui channel (one of {})",
                    STRATEGY_KEYS.join(", ")
                ));
            }
            if !(1..=4).contains(value) {
                return bad(format!("strategy.{key} must be 1, 2, 3 or 4, got {value}"));
            }
        }
        Ok(())
    }
}
