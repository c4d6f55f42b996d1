//! Errors of the Web Push adapter, and how push services' answers map to retry decisions.

use std::time::Duration;

use pushgate_api::provider::ProviderError;

/// A Web Push provider that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WebPushError {
    #[error("invalid webpush provider setting: {0}")]
    Config(String),
    #[error("vapid_private_key_file {path}: {reason}")]
    Key { path: String, reason: String },
}

/// The retry decision for a push service's answer to a push (RFC 8030 §5, §8.4).
pub fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> ProviderError {
    let detail: String = body.chars().take(200).collect();
    let text = format!("push service answered {status}: {detail}");
    let error = match status {
        404 | 410 => ProviderError::unregistered("unsubscribed", text),
        413 => ProviderError::permanent("payload_too_large", text),
        401 | 403 => ProviderError::permanent("vapid_rejected", text),
        429 | 500..=599 => ProviderError::transient(status.to_string(), text),
        _ => ProviderError::permanent(status.to_string(), text),
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
    fn answers_map_to_retry_decisions() {
        assert_eq!(classify(410, None, "gone").code, "unsubscribed");
        assert!(classify(410, None, "gone").unregistered);
        assert!(!classify(404, None, "").is_transient());
        assert_eq!(classify(413, None, "").code, "payload_too_large");
        assert_eq!(classify(403, None, "").code, "vapid_rejected");
        let limited = classify(429, Some(Duration::from_secs(7)), "");
        assert_eq!(
            limited.retry,
            pushgate_api::provider::Retry::Transient {
                after: Some(Duration::from_secs(7))
            }
        );
        assert!(classify(503, None, "").is_transient());
        assert!(!classify(400, None, "bad").is_transient());
    }
}
