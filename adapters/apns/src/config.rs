//! `[[providers]] kind = "apns"` settings.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::ApnsError;

/// How to reach APNs for one app (bundle id).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApnsSettings {
    /// The Apple developer team id (10 characters), the token's `iss`.
    pub team_id: String,
    /// The key's id (10 characters), the token's `kid`.
    pub key_id: String,
    /// The `.p8` key file (EC P-256, PKCS#8 PEM); relative to the config file.
    pub private_key_file: PathBuf,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// `https://api.push.apple.com`, or `https://api.sandbox.push.apple.com` for development
    /// builds.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// An extra CA certificate (PEM) to trust, for tests against an emulator; empty: none.
    #[serde(default)]
    pub ca_file: PathBuf,
    /// Sends in flight at once (streams on the connection).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Sends per second, if capped.
    #[serde(default)]
    pub qps: Option<u32>,
    /// Timeout of one send, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Devices acknowledge: each payload carries `ack`, which the app posts to
    /// `POST /v1/device-acks` (APNs has no delivery receipts).
    #[serde(default)]
    pub device_acks: bool,
    /// With device acks: how long a sent delivery waits for its ack before it is sent again
    /// (0: never).
    #[serde(default)]
    pub receipt_timeout_ms: u64,
}

fn default_base_url() -> String {
    "https://api.push.apple.com".into()
}
fn default_concurrency() -> usize {
    256
}
fn default_timeout() -> u64 {
    10_000
}

fn apple_id(value: &str) -> bool {
    value.len() == 10 && value.chars().all(|c| c.is_ascii_alphanumeric())
}

impl ApnsSettings {
    /// Settings with every default for the given identity and key.
    pub fn new(team_id: &str, key_id: &str, private_key_file: PathBuf, topic: &str) -> Self {
        ApnsSettings {
            team_id: team_id.into(),
            key_id: key_id.into(),
            private_key_file,
            topic: topic.into(),
            base_url: default_base_url(),
            ca_file: PathBuf::new(),
            concurrency: default_concurrency(),
            qps: None,
            timeout_ms: default_timeout(),
            device_acks: false,
            receipt_timeout_ms: 0,
        }
    }

    /// Checks values; the error names the key. Files are read when the provider is built.
    pub fn validate(&self) -> Result<(), ApnsError> {
        let bad = |m: String| Err(ApnsError::Config(m));
        if !apple_id(&self.team_id) {
            return bad(format!(
                "team_id must be Apple's 10-character team id, got {:?}",
                self.team_id
            ));
        }
        if !apple_id(&self.key_id) {
            return bad(format!(
                "key_id must be the key's 10-character id, got {:?}",
                self.key_id
            ));
        }
        if self.topic.is_empty()
            || !self
                .topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return bad(format!(
                "topic must be the app's bundle id (letters, digits, . - _), got {:?}",
                self.topic
            ));
        }
        let uri: Result<http::Uri, _> = self.base_url.parse();
        match uri {
            Ok(u)
                if u.scheme_str() == Some("https")
                    && u.path().trim_end_matches('/').is_empty()
                    && u.query().is_none() => {}
            _ => {
                return bad(format!(
                    "base_url must be an https origin such as https://api.push.apple.com (APNs is HTTP/2 over TLS), got {:?}",
                    self.base_url
                ))
            }
        }
        if self.private_key_file.as_os_str().is_empty() {
            return bad("private_key_file must name the .p8 key".into());
        }
        pushgate_api::validate::sending_limits(
            self.concurrency,
            self.qps,
            self.timeout_ms,
            self.device_acks,
            self.receipt_timeout_ms,
        )
        .map_err(|e| ApnsError::Config(e.0))?;
        Ok(())
    }
}
