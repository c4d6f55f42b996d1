//! What pushgate sends APNs: the JSON payload and the `apns-*` headers.
//!
//! **How a payload travels.** Pass-through messages are background notifications
//! (`apns-push-type: background`, `apns-priority: 5`, `{"aps": {"content-available": 1}}`),
//! which iOS hands to the app without showing anything. A JSON object payload's top-level
//! keys sit beside `aps` as they are; any other payload travels as `payload`. Every payload
//! also carries `pushgate_request_id`, the same on every retry of a delivery, so the app can
//! drop a repeat. With device acks the payload is `{"payload": …, "ack": "<token>"}`.
//!
//! A message with a notification is an alert instead (`apns-push-type: alert`,
//! `apns-priority: 10`, or 5 for low urgency): `aps.alert` holds its title and body, and with
//! device acks `aps.mutable-content` is 1, so the app's notification service extension runs
//! (and can post the ack) even when the app does not.

use std::time::Duration;

use pushgate_api::model::{Notification, Urgency};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The payload key carrying the delivery's idempotency key.
pub const REQUEST_ID_KEY: &str = "pushgate_request_id";
/// APNs' limit on a notification's payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// The `aps` dictionary: an alert for a notification, else a background wake-up.
pub fn aps(notification: Option<&Notification>, mutable: bool) -> Value {
    match notification {
        Some(n) => {
            let mut alert = Map::new();
            for (key, value) in [("title", &n.title), ("body", &n.body)] {
                if !value.is_empty() {
                    alert.insert(key.into(), json!(value));
                }
            }
            let mut aps = json!({"alert": alert});
            if mutable {
                aps["mutable-content"] = json!(1);
            }
            aps
        }
        None => json!({"content-available": 1}),
    }
}

/// `apns-push-type` and `apns-priority` of a notification.
pub fn push_type(
    notification: Option<&Notification>,
    urgency: Option<Urgency>,
) -> (&'static str, &'static str) {
    match (notification, urgency) {
        (None, _) => ("background", "5"),
        (Some(_), Some(Urgency::VeryLow | Urgency::Low)) => ("alert", "5"),
        (Some(_), _) => ("alert", "10"),
    }
}

/// The JSON APNs gets for an app payload, with `aps` from [`aps`].
pub fn payload_of(payload: &Value, request_id: &str, aps: Value) -> Result<Value, String> {
    let mut body = Map::new();
    body.insert("aps".into(), aps);
    match payload {
        Value::Object(fields) => {
            for (key, value) in fields {
                if key == "aps" || key == REQUEST_ID_KEY {
                    return Err(format!(
                        "the payload key {key:?} is reserved (APNs' aps, pushgate's {REQUEST_ID_KEY})"
                    ));
                }
                body.insert(key.clone(), value.clone());
            }
        }
        other => {
            body.insert("payload".into(), other.clone());
        }
    }
    body.insert(REQUEST_ID_KEY.into(), json!(request_id));
    Ok(Value::Object(body))
}

/// `apns-id`: a UUID derived from the delivery's idempotency key, so a retry has the same.
pub fn apns_id(idempotency_key: &str) -> String {
    let d = Sha256::digest(idempotency_key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    // Version 8 (custom), RFC 9562 variant.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `id` is a UUID in its canonical text form.
pub fn is_uuid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `apns-expiration`: when APNs stops trying, epoch seconds (`now` + the TTL).
pub fn expiration(now_secs: u64, ttl: Duration) -> u64 {
    now_secs + ttl.as_secs()
}

/// A device token: 64 to 200 hex digits (Apple's are 32 bytes today).
pub fn check_device_token(token: &str) -> Result<(), String> {
    if !(64..=200).contains(&token.len()) || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "an APNs device token is 64 to 200 hex digits, got {} characters",
            token.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_sit_beside_aps() {
        let p = payload_of(&json!({"text": "hi", "n": 1}), "k", aps(None, false)).expect("payload");
        assert_eq!(
            p,
            json!({"aps": {"content-available": 1}, "text": "hi", "n": 1, "pushgate_request_id": "k"})
        );
        assert_eq!(
            payload_of(&json!("plain"), "k", aps(None, false)).expect("payload")["payload"],
            "plain"
        );
        assert!(payload_of(&json!({"aps": {}}), "k", aps(None, false)).is_err());
        let n = Notification {
            title: "Alice".into(),
            body: "hi".into(),
        };
        assert_eq!(
            aps(Some(&n), true),
            json!({"alert": {"title": "Alice", "body": "hi"}, "mutable-content": 1})
        );
        assert_eq!(push_type(Some(&n), None), ("alert", "10"));
        assert_eq!(push_type(None, Some(Urgency::High)), ("background", "5"));
    }

    #[test]
    fn apns_ids_are_stable_uuids() {
        let a = apns_id("01M8X7THT0MC3G8MHY6DM46NPS-0");
        assert!(is_uuid(&a), "{a}");
        assert_eq!(a, apns_id("01M8X7THT0MC3G8MHY6DM46NPS-0"));
        assert_ne!(a, apns_id("01M8X7THT0MC3G8MHY6DM46NPS-1"));
        assert!(!is_uuid("not-a-uuid"));
        assert!(check_device_token(&"ab".repeat(32)).is_ok());
        assert!(check_device_token("bob-phone").is_err());
    }
}
