//! Sygnal's webpush pushkin layout: the flat JSON a Web Push device (and, from pushgate,
//! any provider without a layout of its own) receives.

use serde_json::{json, Value};

use super::{Device, Notification};

/// Longest `content.body` sent (as Sygnal's webpush pushkin cuts it).
pub const MAX_BODY_CHARS: usize = 1000;

/// The payload for `device`, or `None` when its options say to send nothing (`events_only`
/// and a counts-only notification). Sygnal's webpush layout: `default_payload` first, then
/// `room_id room_name room_alias membership event_id sender sender_display_name
/// user_is_target type`, `content` (its `body` cut to [`MAX_BODY_CHARS`]), and the counts
/// flattened to `unread` / `missed_calls`; `event_id_only` keeps the ids and counts alone.
pub fn payload(n: &Notification, device: &Device) -> Option<Value> {
    if device.flag("events_only") && n.event_id.is_none() {
        return None;
    }
    let mut p = device.default_payload();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            p.insert(key.to_string(), v);
        }
    };
    let text = |s: &Option<String>| s.as_ref().map(|s| json!(s));
    put("room_id", text(&n.room_id));
    put("event_id", text(&n.event_id));
    if !device.event_id_only() {
        put("room_name", text(&n.room_name));
        put("room_alias", text(&n.room_alias));
        put("membership", text(&n.membership));
        put("sender", text(&n.sender));
        put("sender_display_name", text(&n.sender_display_name));
        put("user_is_target", n.user_is_target.map(Value::Bool));
        put("type", text(&n.kind));
        put("content", n.content.as_ref().map(cut_body));
    }
    if let Some(counts) = &n.counts {
        put("unread", counts.unread.map(Value::from));
        put("missed_calls", counts.missed_calls.map(Value::from));
    }
    if n.prio.as_deref() == Some("low") {
        put("prio", Some(json!("low")));
    }
    Some(Value::Object(p))
}

/// `content` with its `body` cut to [`MAX_BODY_CHARS`].
fn cut_body(content: &Value) -> Value {
    let mut content = content.clone();
    if let Some(body) = content.get("body").and_then(Value::as_str) {
        if body.chars().count() > MAX_BODY_CHARS {
            let cut: String = body.chars().take(MAX_BODY_CHARS).collect();
            content["body"] = json!(cut);
        }
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::samples::{bodies, parse};

    #[test]
    fn synapse_bodies_become_sygnal_payloads() {
        let bodies = bodies();
        let invite = parse(&bodies[0]);
        let p = payload(&invite, &invite.devices[0]).expect("payload");
        assert_eq!(p["type"], "m.room.member");
        assert_eq!(p["membership"], "invite");
        assert_eq!(p["sender_display_name"], "alice");
        assert_eq!(p["user_is_target"], true);
        assert_eq!(p["unread"], 1);
        let message = parse(&bodies[1]);
        let p = payload(&message, &message.devices[0]).expect("payload");
        assert_eq!(p["content"]["body"], "hello bob, this is alice");
        assert_eq!(
            p["room_id"],
            message.room_id.clone().expect("room").as_str()
        );
        assert!(p.get("prio").is_none(), "high is the default");
        let short = parse(&bodies[2]);
        assert!(short.devices[0].event_id_only());
        let p = payload(&short, &short.devices[0]).expect("payload");
        assert_eq!(
            p.as_object().expect("object").keys().collect::<Vec<_>>(),
            ["event_id", "room_id", "unread"]
        );
    }

    #[test]
    fn device_options_shape_the_payload() {
        let body = json!({"notification": {"counts": {"unread": 3}, "prio": "low", "devices": [
            {"app_id": "a", "pushkey": "k", "data": {"events_only": true}},
            {"app_id": "a", "pushkey": "k2", "data": {"default_payload": {"aps": {"sound": "x"}}}}
        ]}});
        let n = parse(&body);
        assert_eq!(
            payload(&n, &n.devices[0]),
            None,
            "events_only skips badge updates"
        );
        let p = payload(&n, &n.devices[1]).expect("payload");
        assert_eq!(
            p,
            json!({"aps": {"sound": "x"}, "unread": 3, "prio": "low"})
        );
        assert_eq!(
            crate::matrix::urgency(&n),
            Some(pushgate_engine::model::Urgency::Low)
        );
        let long = json!({"body": "x".repeat(5000), "msgtype": "m.text"});
        assert_eq!(cut_body(&long)["body"].as_str().map(str::len), Some(1000));
    }
}
