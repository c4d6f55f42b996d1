//! `[[providers]] kind = "webpush"` settings.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::WebPushError;

/// How to reach Web Push services.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebPushSettings {
    /// The VAPID private key (EC P-256, PEM: PKCS#8 or SEC1), as `pushgate vapid-keys` writes.
    pub vapid_private_key_file: PathBuf,
    /// The VAPID `sub`: a `mailto:` or `https:` contact for the push services.
    pub subject: String,
    /// `host:port` globs (`*` matches any run) that subscription endpoints may name besides
    /// public `https` hosts; only these may be `http` or private addresses (tests, an internal
    /// push service).
    #[serde(default)]
    pub allowed_endpoints: Vec<String>,
    /// Sends in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Timeout of one push request, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Devices acknowledge: each gets `{"payload", "ack"}` and posts the token to
    /// `POST /v1/device-acks`, which makes the delivery `delivered` (Web Push has no receipts).
    #[serde(default)]
    pub device_acks: bool,
    /// With device acks: how long a sent delivery waits for its ack before it is sent again
    /// (0: never).
    #[serde(default)]
    pub receipt_timeout_ms: u64,
}

fn default_concurrency() -> usize {
    256
}
fn default_timeout() -> u64 {
    10_000
}

impl WebPushSettings {
    /// Checks values; the error names the key.
    pub fn validate(&self) -> Result<(), WebPushError> {
        let bad = |m: String| Err(WebPushError::Config(m));
        if !(self.subject.starts_with("mailto:") || self.subject.starts_with("https://")) {
            return bad(format!(
                "subject must be a mailto: or https: contact, got {:?}",
                self.subject
            ));
        }
        pushgate_api::validate::sending_limits(
            self.concurrency,
            None,
            self.timeout_ms,
            self.device_acks,
            self.receipt_timeout_ms,
        )
        .map_err(|e| WebPushError::Config(e.0))?;
        if let Some(g) = self
            .allowed_endpoints
            .iter()
            .find(|g| g.is_empty() || !g.contains(':'))
        {
            return bad(format!(
                "allowed_endpoints entries are host:port globs, got {g:?}"
            ));
        }
        Ok(())
    }
}
