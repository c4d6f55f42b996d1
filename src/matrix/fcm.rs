//! Sygnal's gcm pushkin layout (FCM HTTP v1 data): every value a string.

use serde_json::{json, Value};

use super::{truncate_bytes, Device, Notification};

/// Longest field, in bytes (Sygnal's gcm pushkin's `MAX_BYTES_PER_FIELD`).
pub const MAX_FIELD_BYTES: usize = 1024;

/// Sygnal's FCM (HTTP v1) data: `default_payload`, then `event_id type sender room_name
/// room_alias membership sender_display_name room_id` (each cut to 1024 bytes with `…`),
/// `content`'s string fields as `content_<key>`, `prio` `high` (`normal` for low), and the
/// counts as strings `unread` / `missed_calls`. Every value is a string, as FCM data wants.
pub fn payload(n: &Notification, device: &Device) -> Option<Value> {
    if device.flag("events_only") && n.event_id.is_none() {
        return None;
    }
    let mut p = device.default_payload();
    let fields = [
        ("event_id", &n.event_id),
        ("type", &n.kind),
        ("sender", &n.sender),
        ("room_name", &n.room_name),
        ("room_alias", &n.room_alias),
        ("membership", &n.membership),
        ("sender_display_name", &n.sender_display_name),
        ("room_id", &n.room_id),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            p.insert(key.into(), json!(truncate_bytes(v, MAX_FIELD_BYTES)));
        }
    }
    if let Some(Value::Object(content)) = &n.content {
        for (key, value) in content {
            if let Value::String(v) = value {
                p.insert(
                    format!("content_{key}"),
                    json!(truncate_bytes(v, MAX_FIELD_BYTES)),
                );
            }
        }
    }
    let prio = if n.prio.as_deref() == Some("low") {
        "normal"
    } else {
        "high"
    };
    p.insert("prio".into(), json!(prio));
    if let Some(counts) = &n.counts {
        p.insert(
            "unread".into(),
            json!(counts.unread.unwrap_or(0).to_string()),
        );
        p.insert(
            "missed_calls".into(),
            json!(counts.missed_calls.unwrap_or(0).to_string()),
        );
    }
    Some(Value::Object(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::samples::{bodies, parse};

    #[test]
    fn fcm_gets_sygnals_gcm_layout() {
        let bodies = bodies();
        let message = parse(&bodies[1]);
        let p = crate::matrix::payload_for("fcm", &message, &message.devices[0]).expect("payload");
        assert_eq!(p["content_body"], "hello bob, this is alice");
        assert_eq!(p["content_msgtype"], "m.text");
        assert!(p.get("content").is_none());
        assert_eq!(p["prio"], "high");
        assert_eq!(p["unread"], "1");
        assert_eq!(p["missed_calls"], "0");
        assert!(p
            .as_object()
            .expect("object")
            .values()
            .all(Value::is_string));
        let long = "é".repeat(1000);
        let cut = truncate_bytes(&long, MAX_FIELD_BYTES);
        assert!(
            cut.len() <= MAX_FIELD_BYTES && cut.ends_with('…'),
            "{}",
            cut.len()
        );
        assert_eq!(truncate_bytes("short", 1024), "short");
        // Other providers keep the webpush layout.
        assert!(
            crate::matrix::payload_for("mock", &message, &message.devices[0]).expect("p")
                ["content"]
                .is_object()
        );
    }
}
