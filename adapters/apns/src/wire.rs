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
//!
//! A payload may bring its own `aps` object (badges, sounds, `loc-key` alerts: the Matrix
//! gateway sends Sygnal's layout so): it is APNs' `aps` as it is, an alert push when it has
//! `alert`, `badge` or `sound`, else a background one (`content-available` set).

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

/// What a delivery becomes on the wire: the JSON body and its push type and priority.
#[derive(Debug, PartialEq)]
pub struct Outgoing {
    pub body: Value,
    pub push_type: &'static str,
    pub priority: &'static str,
}

/// The `aps` keys that make a notification visible (an alert push, not a background one).
const VISIBLE_KEYS: [&str; 3] = ["alert", "badge", "sound"];

/// The JSON APNs gets for a delivery's `payload` (with device acks, the ack envelope
/// `{"payload": …, "ack": …}`), its notification and urgency. The `aps` is the payload's own
/// when it brings one (then it may not have a notification part too), else [`aps`].
pub fn outgoing(
    payload: &Value,
    notification: Option<&Notification>,
    urgency: Option<Urgency>,
    request_id: &str,
    acks: bool,
) -> Result<Outgoing, String> {
    let (payload, own) = take_aps(payload, acks)?;
    let aps = match (own, notification) {
        (Some(_), Some(_)) => {
            return Err("a payload with its own aps cannot have a notification part too".into())
        }
        (Some(mut own), None) => {
            let visible = VISIBLE_KEYS.iter().any(|k| own.contains_key(*k));
            if !visible {
                own.insert("content-available".into(), json!(1));
            } else if acks && own.contains_key("alert") {
                own.entry("mutable-content").or_insert(json!(1));
            }
            Value::Object(own)
        }
        (None, n) => aps(n, acks),
    };
    let visible = VISIBLE_KEYS.iter().any(|k| aps.get(*k).is_some());
    let (push_type, priority) = match (visible, urgency) {
        (false, _) => ("background", "5"),
        (true, Some(Urgency::VeryLow | Urgency::Low)) => ("alert", "5"),
        (true, _) => ("alert", "10"),
    };
    Ok(Outgoing {
        body: payload_of(&payload, request_id, aps)?,
        push_type,
        priority,
    })
}

/// `payload` without its `aps` (with device acks, the app payload's inside the envelope),
/// and that `aps`, which must be an object.
fn take_aps(payload: &Value, acks: bool) -> Result<(Value, Option<Map<String, Value>>), String> {
    let mut payload = payload.clone();
    let app = if acks {
        &mut payload["payload"]
    } else {
        &mut payload
    };
    let own = match app.as_object_mut().and_then(|fields| fields.remove("aps")) {
        None => None,
        Some(Value::Object(aps)) => Some(aps),
        Some(_) => return Err("the payload's aps must be an object (APNs' aps dictionary)".into()),
    };
    Ok((payload, own))
}

/// The JSON APNs gets for an app payload (without `aps`), with `aps` beside its keys.
fn payload_of(payload: &Value, request_id: &str, aps: Value) -> Result<Value, String> {
    let mut body = Map::new();
    body.insert("aps".into(), aps);
    match payload {
        Value::Object(fields) => {
            for (key, value) in fields {
                if key == REQUEST_ID_KEY {
                    return Err(format!("the payload key {key:?} is reserved (pushgate's)"));
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

    fn out(payload: Value, n: Option<&Notification>, acks: bool) -> Outgoing {
        outgoing(&payload, n, None, "k", acks).expect("outgoing")
    }

    #[test]
    fn payloads_sit_beside_aps() {
        let o = out(json!({"text": "hi", "n": 1}), None, false);
        assert_eq!(
            o.body,
            json!({"aps": {"content-available": 1}, "text": "hi", "n": 1, "pushgate_request_id": "k"})
        );
        assert_eq!((o.push_type, o.priority), ("background", "5"));
        assert_eq!(out(json!("plain"), None, false).body["payload"], "plain");
        assert!(outgoing(&json!({"pushgate_request_id": 1}), None, None, "k", false).is_err());
        let n = Notification {
            title: "Alice".into(),
            body: "hi".into(),
        };
        let o = out(json!({}), Some(&n), true);
        assert_eq!(
            o.body["aps"],
            json!({"alert": {"title": "Alice", "body": "hi"}, "mutable-content": 1})
        );
        assert_eq!((o.push_type, o.priority), ("alert", "10"));
        let low = outgoing(&json!({}), Some(&n), Some(Urgency::Low), "k", false).expect("low");
        assert_eq!(low.priority, "5");
    }

    #[test]
    fn a_payloads_own_aps_is_apns_aps() {
        let alert = json!({"aps": {"alert": {"loc-key": "MSG_FROM_USER", "loc-args": ["Alice"]}, "badge": 2}, "room_id": "!r"});
        let o = out(alert.clone(), None, false);
        assert_eq!(o.body["aps"], alert["aps"]);
        assert_eq!(o.body["room_id"], "!r");
        assert_eq!((o.push_type, o.priority), ("alert", "10"));
        // Under device acks the aps leaves the envelope, and an extension may run to ack.
        let o = out(json!({"payload": alert, "ack": "t"}), None, true);
        assert_eq!(o.body["aps"]["mutable-content"], 1);
        assert_eq!(o.body["aps"]["badge"], 2);
        assert!(o.body["payload"].get("aps").is_none());
        assert_eq!(o.body["payload"]["room_id"], "!r");
        // A badge alone is an alert push; an aps with nothing visible a background one.
        assert_eq!(
            out(json!({"aps": {"badge": 0}}), None, false).push_type,
            "alert"
        );
        let o = out(json!({"aps": {"thread-id": "x"}}), None, false);
        assert_eq!(
            (o.push_type, o.body["aps"]["content-available"].clone()),
            ("background", json!(1))
        );
        let n = Notification {
            title: "t".into(),
            body: "b".into(),
        };
        assert!(outgoing(&json!({"aps": {}}), Some(&n), None, "k", false).is_err());
        assert!(outgoing(&json!({"aps": "alert"}), None, None, "k", false).is_err());
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
