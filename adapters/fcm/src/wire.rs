//! The FCM HTTP v1 message pushgate sends, as the Admin SDK shapes it: `{"message": {"token",
//! "data", "android": {"priority", "ttl", "collapse_key"?}}}`.
//!
//! **How a payload travels as `data`** (FCM takes string values only): a JSON object payload
//! gives one data entry per top-level key, string values as they are and any other value as
//! its JSON text; any other payload (a string, a number, an array) travels as one entry,
//! `payload`, holding the string or the JSON text. Every message also carries
//! `pushgate_request_id`, the same on every retry of a delivery, so the app can drop a repeat.
//! With device acks the payload is `{"payload": …, "ack": "<token>"}`, so the data holds
//! `payload` (JSON text) and `ack`.

use std::collections::BTreeMap;
use std::time::Duration;

use pushgate_api::model::{Notification, Urgency};
use serde_json::{json, Map, Value};

/// The data key carrying the delivery's idempotency key.
pub const REQUEST_ID_KEY: &str = "pushgate_request_id";
/// FCM's limit on a data message's payload (keys and values), in bytes.
pub const MAX_DATA_BYTES: usize = 4096;
/// Longest TTL FCM keeps a message (4 weeks).
pub const MAX_TTL_SECS: u64 = 28 * 24 * 3600;

/// Whether FCM (or pushgate) reserves `key` in a message's data.
pub fn reserved_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "from" | "message_type" | "notification" | "collapse_key"
    ) || lower.starts_with("google")
        || lower.starts_with("gcm")
        || key == REQUEST_ID_KEY
}

/// The `data` map of `payload` (see the module docs), without the request id.
pub fn data_of(payload: &Value) -> Result<BTreeMap<String, String>, String> {
    let mut data = BTreeMap::new();
    match payload {
        Value::Object(fields) => {
            for (key, value) in fields {
                if key.is_empty() {
                    return Err("a payload key is empty; FCM data keys must not be".into());
                }
                if reserved_key(key) {
                    return Err(format!(
                        "the payload key {key:?} is reserved by FCM (from, message_type, notification, collapse_key, google*, gcm*) or pushgate ({REQUEST_ID_KEY})"
                    ));
                }
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                data.insert(key.clone(), text);
            }
        }
        Value::String(s) => {
            data.insert("payload".into(), s.clone());
        }
        other => {
            data.insert("payload".into(), other.to_string());
        }
    }
    Ok(data)
}

/// Bytes FCM counts for `data`: every key and value.
pub fn data_bytes(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Android priority: `high` for normal and high urgency (and none given: IM wants it now),
/// `normal` for low and very low.
pub fn priority(urgency: Option<Urgency>) -> &'static str {
    match urgency {
        Some(Urgency::VeryLow | Urgency::Low) => "normal",
        _ => "high",
    }
}

/// The request body of `messages:send`; a notification becomes FCM's `notification`
/// (shown by Android when the app is in the background), beside the data.
pub fn send_body(
    token: &str,
    data: BTreeMap<String, String>,
    notification: Option<&Notification>,
    ttl: Duration,
    urgency: Option<Urgency>,
    collapse_key: Option<&str>,
) -> Value {
    let mut android = Map::new();
    android.insert("priority".into(), json!(priority(urgency)));
    android.insert(
        "ttl".into(),
        json!(format!("{}s", ttl.as_secs().min(MAX_TTL_SECS))),
    );
    if let Some(key) = collapse_key {
        android.insert("collapse_key".into(), json!(key));
    }
    let mut message = json!({"token": token, "data": data, "android": android});
    if let Some(n) = notification {
        let mut shown = Map::new();
        for (key, value) in [("title", &n.title), ("body", &n.body)] {
            if !value.is_empty() {
                shown.insert(key.into(), json!(value));
            }
        }
        message["notification"] = Value::Object(shown);
    }
    json!({ "message": message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_string_data() {
        let data = data_of(&json!({"text": "hi", "n": 3, "nested": {"a": [1]}})).expect("data");
        assert_eq!(data["text"], "hi");
        assert_eq!(data["n"], "3");
        assert_eq!(data["nested"], "{\"a\":[1]}");
        assert_eq!(data_of(&json!("plain")).expect("data")["payload"], "plain");
        assert_eq!(data_of(&json!([1, 2])).expect("data")["payload"], "[1,2]");
        for key in [
            "from",
            "google.c.a",
            "gcm.n.e",
            "message_type",
            "Notification",
            REQUEST_ID_KEY,
        ] {
            assert!(data_of(&json!({key: "x"})).is_err(), "{key} is refused");
        }
    }

    #[test]
    fn the_body_has_the_admin_sdk_shape() {
        let mut data = BTreeMap::new();
        data.insert("k".to_string(), "v".to_string());
        let body = send_body(
            "tok",
            data,
            None,
            Duration::from_secs(3600),
            Some(Urgency::Low),
            Some("room-1"),
        );
        assert_eq!(
            body,
            json!({"message": {"token": "tok", "data": {"k": "v"},
                "android": {"priority": "normal", "ttl": "3600s", "collapse_key": "room-1"}}})
        );
        let long = send_body(
            "t",
            BTreeMap::new(),
            Some(&Notification {
                title: "Alice".into(),
                body: String::new(),
            }),
            Duration::from_secs(10 * MAX_TTL_SECS),
            None,
            None,
        );
        assert_eq!(long["message"]["notification"], json!({"title": "Alice"}));
        assert_eq!(long["message"]["android"]["ttl"], "2419200s");
        assert_eq!(long["message"]["android"]["priority"], "high");
    }
}
