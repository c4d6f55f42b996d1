//! The Matrix push gateway API's notify body (spec: Push Gateway API v1) and what pushgate
//! makes of it: for each device, the payload Sygnal's pushkins send (the flat JSON of its
//! webpush pushkin), an idempotency key so a homeserver's retried notify is accepted once, and
//! the collapse key and urgency the device's options ask for.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Longest `content.body` sent (as Sygnal's webpush pushkin cuts it).
pub const MAX_BODY_CHARS: usize = 1000;

/// `POST /_matrix/push/v1/notify`'s body.
#[derive(Debug, Deserialize)]
pub struct NotifyBody {
    pub notification: Notification,
}

/// A notification (unknown fields are ignored, as the spec asks of gateways).
#[derive(Debug, Deserialize)]
pub struct Notification {
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub sender_display_name: Option<String>,
    #[serde(default)]
    pub room_name: Option<String>,
    #[serde(default)]
    pub room_alias: Option<String>,
    #[serde(default)]
    pub user_is_target: Option<bool>,
    #[serde(default)]
    pub membership: Option<String>,
    /// `high` or `low`.
    #[serde(default)]
    pub prio: Option<String>,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub counts: Option<Counts>,
    pub devices: Vec<Device>,
}

/// `counts`: a badge update when nothing else is set.
#[derive(Debug, Default, Deserialize)]
pub struct Counts {
    #[serde(default)]
    pub unread: Option<u64>,
    #[serde(default)]
    pub missed_calls: Option<u64>,
}

/// One pusher the notification goes to.
#[derive(Debug, Deserialize)]
pub struct Device {
    pub app_id: String,
    pub pushkey: String,
    #[serde(default)]
    pub pushkey_ts: Option<u64>,
    /// The pusher's `data` (minus `url`): `format`, `default_payload`, `events_only`,
    /// `only_last_per_room`…
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub tweaks: Option<Value>,
}

impl Device {
    fn option(&self, key: &str) -> Option<&Value> {
        self.data.as_ref()?.get(key)
    }

    fn flag(&self, key: &str) -> bool {
        self.option(key).and_then(Value::as_bool).unwrap_or(false)
    }

    /// A string of the pusher's `data`.
    pub fn data_str(&self, key: &str) -> Option<&str> {
        self.option(key).and_then(Value::as_str)
    }

    /// For a Web Push pusher (pushkey = the subscription's `p256dh`, `data.endpoint` and
    /// `data.auth` the rest, as Sygnal's webpush pushkin reads them): the cid its deliveries
    /// use (the pushkey is too long for one) and the subscription; `None` if data lacks them.
    pub fn web_push_subscription(&self) -> Option<(String, Value)> {
        let (endpoint, auth) = (self.data_str("endpoint")?, self.data_str("auth")?);
        let cid = format!(
            "mx-{}",
            &hex::encode(Sha256::digest(self.pushkey.as_bytes()))[..32]
        );
        let subscription =
            json!({"endpoint": endpoint, "keys": {"p256dh": self.pushkey, "auth": auth}});
        Some((cid, subscription))
    }

    /// Whether the pusher asked for `event_id_only` notifications.
    pub fn event_id_only(&self) -> bool {
        self.option("format").and_then(Value::as_str) == Some("event_id_only")
    }
}

/// The payload for `device`, or `None` when its options say to send nothing (`events_only`
/// and a counts-only notification). Sygnal's webpush layout: `default_payload` first, then
/// `room_id room_name room_alias membership event_id sender sender_display_name
/// user_is_target type`, `content` (its `body` cut to [`MAX_BODY_CHARS`]), and the counts
/// flattened to `unread` / `missed_calls`; `event_id_only` keeps the ids and counts alone.
pub fn payload(n: &Notification, device: &Device) -> Option<Value> {
    if device.flag("events_only") && n.event_id.is_none() {
        return None;
    }
    let mut p = match device.option("default_payload") {
        Some(Value::Object(fields)) => fields.clone(),
        _ => Map::new(),
    };
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

/// Longest field of an FCM payload, in bytes (Sygnal's gcm pushkin's `MAX_BYTES_PER_FIELD`).
pub const MAX_FCM_FIELD_BYTES: usize = 1024;

/// The payload for `device` on a provider of `kind`: Sygnal's gcm pushkin layout for FCM
/// ([`fcm_payload`]), its webpush layout ([`payload`]) for the others.
pub fn payload_for(kind: &str, n: &Notification, device: &Device) -> Option<Value> {
    match kind {
        "fcm" => fcm_payload(n, device),
        _ => payload(n, device),
    }
}

/// Sygnal's FCM (HTTP v1) data: `default_payload`, then `event_id type sender room_name
/// room_alias membership sender_display_name room_id` (each cut to 1024 bytes with `…`),
/// `content`'s string fields as `content_<key>`, `prio` `high` (`normal` for low), and the
/// counts as strings `unread` / `missed_calls`. Every value is a string, as FCM data wants.
pub fn fcm_payload(n: &Notification, device: &Device) -> Option<Value> {
    if device.flag("events_only") && n.event_id.is_none() {
        return None;
    }
    let mut p = match device.option("default_payload") {
        Some(Value::Object(fields)) => fields.clone(),
        _ => Map::new(),
    };
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
            p.insert(key.into(), json!(truncate_bytes(v, MAX_FCM_FIELD_BYTES)));
        }
    }
    if let Some(Value::Object(content)) = &n.content {
        for (key, value) in content {
            if let Value::String(v) = value {
                p.insert(
                    format!("content_{key}"),
                    json!(truncate_bytes(v, MAX_FCM_FIELD_BYTES)),
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

/// `text` cut to at most `max` bytes, ending in `…` when cut (never inside a character).
pub fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
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

/// `payload` shortened for a provider that refused it as too large: the body halved (the
/// webpush layout's `content.body`, the FCM layout's `content_body`), then the content dropped
/// (as Sygnal shortens rather than refuses); `None` once nothing is left to cut.
pub fn shorten(payload: &Value) -> Option<Value> {
    let mut p = payload.clone();
    let halve = |text: &str| -> Option<String> {
        let n = text.chars().count();
        (n > 16).then(|| text.chars().take(n / 2).collect())
    };
    if let Some(half) = p["content"]["body"].as_str().and_then(halve) {
        p["content"]["body"] = json!(half);
        return Some(p);
    }
    if let Some(half) = p["content_body"].as_str().and_then(halve) {
        p["content_body"] = json!(half);
        return Some(p);
    }
    let fields = p.as_object_mut()?;
    let before = fields.len();
    fields.retain(|key, _| key != "content" && !key.starts_with("content_"));
    (fields.len() < before).then_some(p)
}

/// The idempotency key of `device`'s delivery of `n` (a retried notify gets the same): 32
/// characters from the app id, the pushkey and the notification.
pub fn request_id(n: &Notification, device: &Device, body: &Value) -> String {
    let mut h = Sha256::new();
    h.update(device.app_id.as_bytes());
    h.update([0]);
    h.update(device.pushkey.as_bytes());
    h.update([0]);
    match &n.event_id {
        Some(id) => h.update(id.as_bytes()),
        // A counts-only notification: the whole of it.
        None => h.update(body["notification"].to_string().as_bytes()),
    }
    let digest = hex::encode(h.finalize());
    format!("mx-{}", &digest[..29])
}

/// The collapse key `only_last_per_room` asks for: the room's, so a newer notification for
/// the room replaces an undelivered older one.
pub fn collapse_key(n: &Notification, device: &Device) -> Option<String> {
    if !device.flag("only_last_per_room") {
        return None;
    }
    let room = n.room_id.as_ref()?;
    Some(hex::encode(Sha256::digest(room.as_bytes()))[..32].to_string())
}

/// The urgency of `prio`: `low` is low, anything else the provider's default.
pub fn urgency(n: &Notification) -> Option<pushgate_engine::model::Urgency> {
    (n.prio.as_deref() == Some("low")).then_some(pushgate_engine::model::Urgency::Low)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The notify bodies Synapse 1.163 sent (`shared/specs/matrix-notify-samples.json`).
    fn samples() -> Vec<Value> {
        let text = include_str!("../tests/peers/matrix-notify-samples.json");
        let all: Vec<Value> = serde_json::from_str(text).expect("samples");
        all.into_iter().map(|s| s["body"].clone()).collect()
    }

    fn parse(body: &Value) -> Notification {
        serde_json::from_value::<NotifyBody>(body.clone())
            .expect("notify body")
            .notification
    }

    #[test]
    fn synapse_bodies_become_sygnal_payloads() {
        let bodies = samples();
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
        assert_eq!(urgency(&n), Some(pushgate_engine::model::Urgency::Low));
        let long = json!({"body": "x".repeat(5000), "msgtype": "m.text"});
        assert_eq!(cut_body(&long)["body"].as_str().map(str::len), Some(1000));
        let shorter = shorten(&json!({"content": {"body": "y".repeat(100)}})).expect("cut");
        assert_eq!(shorter["content"]["body"].as_str().map(str::len), Some(50));
        assert_eq!(shorten(&json!({"content": {"body": "y"}})), Some(json!({})));
        assert_eq!(shorten(&json!({})), None);
        let fcm = shorten(&json!({"content_body": "z".repeat(40), "room_id": "!r"})).expect("cut");
        assert_eq!(fcm["content_body"].as_str().map(str::len), Some(20));
        assert_eq!(
            shorten(&json!({"content_body": "z", "content_msgtype": "m.text", "room_id": "!r"})),
            Some(json!({"room_id": "!r"}))
        );
    }

    #[test]
    fn fcm_gets_sygnals_gcm_layout() {
        let bodies = samples();
        let message = parse(&bodies[1]);
        let p = payload_for("fcm", &message, &message.devices[0]).expect("payload");
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
        let cut = truncate_bytes(&long, MAX_FCM_FIELD_BYTES);
        assert!(
            cut.len() <= MAX_FCM_FIELD_BYTES && cut.ends_with('…'),
            "{}",
            cut.len()
        );
        assert_eq!(truncate_bytes("short", 1024), "short");
        // Other providers keep the webpush layout.
        assert!(
            payload_for("mock", &message, &message.devices[0]).expect("p")["content"].is_object()
        );
    }

    #[test]
    fn retried_notifies_have_the_same_request_id() {
        let bodies = samples();
        let n = parse(&bodies[1]);
        let a = request_id(&n, &n.devices[0], &bodies[1]);
        assert_eq!(a, request_id(&n, &n.devices[0], &bodies[1]));
        assert_eq!(a.len(), 32);
        let other = parse(&bodies[0]);
        assert_ne!(a, request_id(&other, &other.devices[0], &bodies[0]));
        let collapse_opt = json!({"notification": {"room_id": "!r:x", "devices": [
            {"app_id": "a", "pushkey": "k", "data": {"only_last_per_room": true}}]}});
        let c = parse(&collapse_opt);
        let key = collapse_key(&c, &c.devices[0]).expect("key");
        assert_eq!(key.len(), 32);
        assert!(collapse_key(&n, &n.devices[0]).is_none());
    }
}
