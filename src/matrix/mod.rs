//! The Matrix push gateway API's notify body (spec: Push Gateway API v1) and what pushgate
//! makes of it: for each device, the payload Sygnal's pushkin of the provider's kind sends
//! (FCM, APNs; the flat webpush JSON for the others), an idempotency key so a homeserver's
//! retried notify is accepted once, and the collapse key and urgency the device's options ask
//! for.

pub mod apns;
pub mod fcm;
pub mod webpush;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// `POST /_matrix/push/v1/notify`'s body.
#[derive(Debug, Deserialize)]
pub struct NotifyBody {
    pub notification: Notification,
}

impl NotifyBody {
    /// The body from its JSON: objects where the spec has objects (serde alone would also
    /// take an array for one), then the fields.
    pub fn parse(raw: &Value) -> Result<NotifyBody, String> {
        let n = &raw["notification"];
        let object_or_absent = |v: &Value| v.is_null() || v.is_object();
        if !n.is_object() {
            return Err("notification must be an object".into());
        }
        if !object_or_absent(&n["counts"]) {
            return Err("notification.counts must be an object".into());
        }
        let devices_are_objects = n["devices"]
            .as_array()
            .is_some_and(|d| d.iter().all(Value::is_object));
        if !devices_are_objects {
            return Err("notification.devices must be an array of objects".into());
        }
        serde_json::from_value(raw.clone()).map_err(|e| e.to_string())
    }
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

    /// The pusher's `default_payload` object (empty if none, or not an object).
    fn default_payload(&self) -> Map<String, Value> {
        match self.option("default_payload") {
            Some(Value::Object(fields)) => fields.clone(),
            _ => Map::new(),
        }
    }

    /// Whether the pusher asked for `event_id_only` notifications.
    pub fn event_id_only(&self) -> bool {
        self.option("format").and_then(Value::as_str) == Some("event_id_only")
    }
}

/// The payload for `device` on a provider of `kind`: Sygnal's gcm pushkin layout for FCM,
/// its apns pushkin layout for APNs, its webpush layout for the others.
pub fn payload_for(kind: &str, n: &Notification, device: &Device) -> Option<Value> {
    match kind {
        "fcm" => fcm::payload(n, device),
        "apns" => apns::payload(n, device),
        _ => webpush::payload(n, device),
    }
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

/// `payload` shortened for a provider that refused it as too large: the body halved (the
/// webpush layout's `content.body`, the FCM layout's `content_body`), then the content dropped;
/// an APNs alert cut to half its size (as Sygnal shortens rather than refuses); `None` once
/// nothing is left to cut.
pub fn shorten(payload: &Value) -> Option<Value> {
    if payload.get("aps").is_some() {
        let size = payload.to_string().len();
        let half = apns::fit(payload.clone(), size / 2);
        if half.to_string().len() < size {
            return Some(half);
        }
    }
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
pub(crate) mod samples {
    use super::*;

    /// The notify bodies Synapse 1.163 sent (`shared/specs/matrix-notify-samples.json`).
    pub fn bodies() -> Vec<Value> {
        let text = include_str!("../../tests/peers/matrix-notify-samples.json");
        let all: Vec<Value> = serde_json::from_str(text).expect("samples");
        all.into_iter().map(|s| s["body"].clone()).collect()
    }

    pub fn parse(body: &Value) -> Notification {
        serde_json::from_value::<NotifyBody>(body.clone())
            .expect("notify body")
            .notification
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{bodies, parse};
    use super::*;

    #[test]
    fn retried_notifies_have_the_same_request_id() {
        let bodies = bodies();
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

    #[test]
    fn notify_bodies_need_objects_where_the_spec_has_them() {
        assert!(NotifyBody::parse(&bodies()[1]).is_ok());
        for bad in [
            json!({"notification": [1]}),
            json!({"notification": {"counts": [null, null], "devices": []}}),
            json!({"notification": {"devices": [["app", "key"]]}}),
            json!({"notification": {"devices": {}}}),
        ] {
            assert!(NotifyBody::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oversized_payloads_are_shortened() {
        let shorter = shorten(&json!({"content": {"body": "y".repeat(100)}})).expect("cut");
        assert_eq!(shorter["content"]["body"].as_str().map(str::len), Some(50));
        assert_eq!(shorten(&json!({"content": {"body": "y"}})), Some(json!({})));
        assert_eq!(shorten(&json!({})), None);
        let alert = json!({"aps": {"alert": {"loc-args": ["a", "b".repeat(400)]}}});
        let half = shorten(&alert).expect("cut");
        assert!(half.to_string().len() <= alert.to_string().len() / 2);
        assert_eq!(half["aps"]["alert"]["loc-args"][0], "a");
        let badge = json!({"aps": {"badge": 1}, "content": {"body": "w".repeat(40)}});
        let half = shorten(&badge).expect("cut");
        assert_eq!(half["content"]["body"].as_str().map(str::len), Some(20));
        let fcm = shorten(&json!({"content_body": "z".repeat(40), "room_id": "!r"})).expect("cut");
        assert_eq!(fcm["content_body"].as_str().map(str::len), Some(20));
        assert_eq!(
            shorten(&json!({"content_body": "z", "content_msgtype": "m.text", "room_id": "!r"})),
            Some(json!({"room_id": "!r"}))
        );
    }
}
