//! `[[providers]] kind = "fcm"` settings.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::FcmError;

/// How to reach FCM for one Firebase project.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FcmSettings {
    /// The service account key file (`project_id`, `private_key_id`, `private_key`,
    /// `client_email`, `token_uri`); relative to the config file.
    pub service_account_file: PathBuf,
    /// Origin of the FCM API (tests point it at the emulator).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Sends in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Sends per second, if capped.
    #[serde(default)]
    pub qps: Option<u32>,
    /// Timeout of one HTTP call (send or token), in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Devices acknowledge: each message's data carries `ack`, which the app posts to
    /// `POST /v1/device-acks` (FCM HTTP v1 has no delivery receipts).
    #[serde(default)]
    pub device_acks: bool,
    /// With device acks: how long a sent delivery waits for its ack before it is sent again
    /// (0: never).
    #[serde(default)]
    pub receipt_timeout_ms: u64,
}

fn default_base_url() -> String {
    "https://fcm.googleapis.com".into()
}
fn default_concurrency() -> usize {
    256
}
fn default_timeout() -> u64 {
    10_000
}

impl FcmSettings {
    /// Settings for `service_account_file` with every default.
    pub fn new(service_account_file: PathBuf) -> Self {
        FcmSettings {
            service_account_file,
            base_url: default_base_url(),
            concurrency: default_concurrency(),
            qps: None,
            timeout_ms: default_timeout(),
            device_acks: false,
            receipt_timeout_ms: 0,
        }
    }

    /// Checks values; the error names the key. The key file is read when the provider is built.
    pub fn validate(&self) -> Result<(), FcmError> {
        let bad = |m: String| Err(FcmError::Config(m));
        let uri: Result<http::Uri, _> = self.base_url.parse();
        match uri {
            Ok(u)
                if matches!(u.scheme_str(), Some("https" | "http"))
                    && u.path().trim_end_matches('/').is_empty()
                    && u.query().is_none() => {}
            _ => {
                return bad(format!(
                "base_url must be an http(s) origin such as https://fcm.googleapis.com, got {:?}",
                self.base_url
            ))
            }
        }
        pushgate_api::validate::sending_limits(
            self.concurrency,
            self.qps,
            self.timeout_ms,
            self.device_acks,
            self.receipt_timeout_ms,
        )
        .map_err(|e| FcmError::Config(e.0))?;
        if self.service_account_file.as_os_str().is_empty() {
            return bad("service_account_file must name the service account key file".into());
        }
        Ok(())
    }
}
