//! Errors of the Getui adapter, and how Getui's codes map to retry decisions.

use std::time::Duration;

use pushgate_api::provider::ProviderError;

/// A Getui adapter that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum GetuiError {
    #[error("invalid getui provider setting: {0}")]
    Config(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Getui's token is invalid or expired.
pub const TOKEN_INVALID: i64 = 10001;
/// Wrong domain: switch to `data.host_list`.
pub const WRONG_DOMAIN: i64 = 301;

/// The retry decision for a Getui error code (HTTP status as a fallback).
pub fn classify(code: i64, msg: &str, http_status: u16) -> ProviderError {
    let text = format!("getui {code}: {msg}");
    let code_s = code.to_string();
    match code {
        // Failure, service starting.
        1 | 2 => ProviderError::transient(code_s, text),
        // Token invalid (after the one refresh), blacklisted, rate limits.
        10001 | 10002 => ProviderError::transient(code_s, text),
        10003 | 10005 => {
            ProviderError::transient(code_s, text).retry_after(Duration::from_secs(60))
        }
        // No permission; parameter errors (bad cid, bad request id, payload too big…).
        10004 | 20001 => ProviderError::permanent(code_s, text),
        _ if http_status >= 500 || http_status == 429 || http_status == 0 => {
            ProviderError::transient(code_s, text)
        }
        _ if (400..500).contains(&http_status) => ProviderError::permanent(code_s, text),
        // Unknown codes on a 200: treat as transient, they are usually quota or service states.
        _ => ProviderError::transient(code_s, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_api::provider::Retry;

    #[test]
    fn codes_map_to_retry_decisions() {
        assert!(classify(2, "starting", 200).is_transient());
        assert!(classify(10001, "token", 401).is_transient());
        assert_eq!(
            classify(10005, "rate", 401).retry,
            Retry::Transient {
                after: Some(Duration::from_secs(60))
            }
        );
        assert!(!classify(20001, "target user is invalid", 400).is_transient());
        assert!(!classify(10004, "no permission", 401).is_transient());
        assert!(classify(-1, "bad gateway", 502).is_transient());
        assert!(!classify(-1, "not found", 404).is_transient());
        assert_eq!(classify(20001, "x", 400).code, "20001");
    }
}
