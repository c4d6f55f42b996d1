//! Errors of the APNs adapter, and how APNs' answers map to retry decisions.

use std::time::Duration;

use pushgate_api::provider::ProviderError;

/// An APNs provider that cannot be configured or built.
#[derive(Debug, thiserror::Error)]
pub enum ApnsError {
    #[error("invalid apns provider setting: {0}")]
    Config(String),
    #[error("private_key_file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("ca_file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(#[source] rustls::Error),
}

/// The `reason` of an APNs error answer (`{"reason": "BadDeviceToken"}`), else the status.
pub fn reason(status: u16, body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| status.to_string())
}

/// The retry decision for APNs' answer to a send.
///
/// 410 (`Unregistered`, `ExpiredToken`) and 400 `BadDeviceToken` unbind the device; other 400s,
/// 404 and 413 fail the delivery and keep it (`DeviceTokenNotForTopic` is a config mistake, not
/// a gone device); 429, 500 and 503 retry, no sooner than `Retry-After`; a 403 (the provider
/// token: `ExpiredProviderToken` is renewed before this is reached) retries, so fixing the key
/// loses no message.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> ProviderError {
    let reason = reason(status, body);
    let text = format!("APNs answered {status} {reason}");
    let error = match (status, reason.as_str()) {
        (410, _) | (400, "BadDeviceToken") => ProviderError::unregistered(reason, text),
        (403, _) | (429, _) | (500..=599, _) => ProviderError::transient(reason, text),
        _ => ProviderError::permanent(reason, text),
    };
    match retry_after {
        Some(after) if error.is_transient() => error.retry_after(after),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apns_answers_map_to_retry_decisions() {
        let gone = classify(410, None, r#"{"reason":"Unregistered","timestamp":1}"#);
        assert!(gone.unregistered && gone.code == "Unregistered");
        assert!(classify(400, None, r#"{"reason":"BadDeviceToken"}"#).unregistered);
        let topic = classify(400, None, r#"{"reason":"DeviceTokenNotForTopic"}"#);
        assert!(!topic.unregistered && !topic.is_transient());
        assert!(!classify(413, None, r#"{"reason":"PayloadTooLarge"}"#).is_transient());
        let busy = classify(
            429,
            Some(Duration::from_secs(3)),
            r#"{"reason":"TooManyRequests"}"#,
        );
        assert_eq!(
            busy.retry,
            pushgate_api::provider::Retry::Transient {
                after: Some(Duration::from_secs(3))
            }
        );
        assert!(classify(503, None, "").is_transient());
        assert_eq!(classify(503, None, "").code, "503");
        assert!(classify(403, None, r#"{"reason":"InvalidProviderToken"}"#).is_transient());
    }
}
