//! Errors of the FCM adapter, and how FCM's answers map to retry decisions.

use std::time::Duration;

use pushgate_api::provider::ProviderError;
use serde::Deserialize;

/// An FCM provider that cannot be configured or built.
#[derive(Debug, thiserror::Error)]
pub enum FcmError {
    #[error("invalid fcm provider setting: {0}")]
    Config(String),
    #[error("service_account_file {path}: {reason}")]
    ServiceAccount { path: String, reason: String },
    #[error("{0}")]
    Key(String),
}

/// FCM's error body: a `google.rpc.Status`, with an `FcmError` detail.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Status,
}

#[derive(Debug, Default, Deserialize)]
struct Status {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Detail>,
}

#[derive(Debug, Default, Deserialize)]
struct Detail {
    #[serde(rename = "errorCode", default)]
    error_code: String,
}

/// What FCM's answer names: the `FcmError` code, else the status (`NOT_FOUND`…), else the
/// HTTP status; and its message.
pub fn error_code(status: u16, body: &str) -> (String, String) {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let detail = parsed
        .error
        .details
        .iter()
        .map(|d| d.error_code.as_str())
        .find(|c| !c.is_empty());
    let code = match detail {
        Some(c) => c.to_string(),
        None if !parsed.error.status.is_empty() => parsed.error.status.clone(),
        None => status.to_string(),
    };
    let message = if parsed.error.message.is_empty() {
        body.chars().take(200).collect()
    } else {
        parsed.error.message.chars().take(200).collect()
    };
    (code, message)
}

/// The retry decision for FCM's answer to a send (HTTP v1 `ErrorCode`s).
///
/// `UNREGISTERED`, and an `INVALID_ARGUMENT` about the registration token, unbind the
/// device; other `INVALID_ARGUMENT`s, `SENDER_ID_MISMATCH` and `THIRD_PARTY_AUTH_ERROR`
/// fail the delivery and keep it; `QUOTA_EXCEEDED`, `UNAVAILABLE`, `INTERNAL` and any 5xx
/// retry, no sooner than `Retry-After`. A 401/403 without an `FcmError` is the gateway's own
/// credentials (retried: fixing them must not have failed every message meanwhile).
pub fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> ProviderError {
    let (code, message) = error_code(status, body);
    let text = format!("FCM answered {status} {code}: {message}");
    let error = match code.as_str() {
        "UNREGISTERED" => ProviderError::unregistered(code, text),
        "INVALID_ARGUMENT" if message.to_ascii_lowercase().contains("registration token") => {
            ProviderError::unregistered(code, text)
        }
        "INVALID_ARGUMENT" | "SENDER_ID_MISMATCH" | "THIRD_PARTY_AUTH_ERROR" => {
            ProviderError::permanent(code, text)
        }
        "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL" => ProviderError::transient(code, text),
        _ => match status {
            401 | 403 | 429 | 500..=599 => ProviderError::transient(code, text),
            _ => ProviderError::permanent(code, text),
        },
    };
    match retry_after {
        Some(after) if error.is_transient() => error.retry_after(after),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_api::provider::Retry;

    fn body(status: &str, code: Option<&str>, message: &str) -> String {
        let details = code
            .map(|c| {
                serde_json::json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}])
            })
            .unwrap_or(serde_json::json!([]));
        serde_json::json!({"error": {"code": 400, "message": message, "status": status, "details": details}})
            .to_string()
    }

    #[test]
    fn fcm_answers_map_to_retry_decisions() {
        let gone = classify(
            404,
            None,
            &body(
                "NOT_FOUND",
                Some("UNREGISTERED"),
                "Requested entity was not found.",
            ),
        );
        assert!(gone.unregistered && !gone.is_transient());
        assert_eq!(gone.code, "UNREGISTERED");

        let bad_token = classify(
            400,
            None,
            &body(
                "INVALID_ARGUMENT",
                Some("INVALID_ARGUMENT"),
                "The registration token is not a valid FCM registration token",
            ),
        );
        assert!(bad_token.unregistered);

        let bad_message = classify(
            400,
            None,
            &body(
                "INVALID_ARGUMENT",
                Some("INVALID_ARGUMENT"),
                "Invalid value at 'message.android.ttl'",
            ),
        );
        assert!(!bad_message.unregistered && !bad_message.is_transient());

        let quota = classify(
            429,
            Some(Duration::from_secs(9)),
            &body("RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), "quota"),
        );
        assert_eq!(
            quota.retry,
            Retry::Transient {
                after: Some(Duration::from_secs(9))
            }
        );
        assert!(classify(503, None, &body("UNAVAILABLE", Some("UNAVAILABLE"), "")).is_transient());
        assert!(classify(500, None, "<html>oops</html>").is_transient());
        assert!(!classify(
            403,
            None,
            &body("PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"), "")
        )
        .is_transient());
        assert_eq!(classify(500, None, "<html>oops</html>").code, "500");
    }
}
