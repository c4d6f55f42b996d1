//! Sygnal's apns pushkin layout: an `aps` dictionary with a localised alert (`loc-key` and
//! `loc-args`, which the iOS app's `Localizable.strings` turn into text) and the badge, and
//! beside it the room and event ids; an `event_id_only` notification gets the ids and counts.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::{Device, Notification};

/// Longest sender or room name in `loc-args`, in characters (Sygnal's `MAX_FIELD_LENGTH`).
pub const MAX_FIELD_CHARS: usize = 1024;
/// What the payload may take of APNs' 4,096 bytes: pushgate adds its request id (and, with
/// device acks, the ack envelope) beside it.
pub const MAX_PAYLOAD_BYTES: usize = 3_800;

/// The payload for `device`, or `None` when there is nothing to show or count (Sygnal: an
/// event of no known kind and no counts).
pub fn payload(n: &Notification, device: &Device) -> Option<Value> {
    let p = if n.event_id.is_some() && n.kind.is_none() {
        event_id_only(n, device)
    } else {
        full(n, device)?
    };
    Some(fit(p, MAX_PAYLOAD_BYTES))
}

/// `default_payload`, `room_id`, `event_id`, `unread_count`, `missed_calls`.
fn event_id_only(n: &Notification, device: &Device) -> Value {
    let mut p = device.default_payload();
    let text = |s: &Option<String>| s.as_ref().map(|s| json!(s));
    for (key, value) in [
        ("room_id", text(&n.room_id)),
        ("event_id", text(&n.event_id)),
    ] {
        if let Some(v) = value {
            p.insert(key.into(), v);
        }
    }
    if let Some(counts) = &n.counts {
        if let Some(unread) = counts.unread {
            p.insert("unread_count".into(), json!(unread));
        }
        if let Some(missed) = counts.missed_calls {
            p.insert("missed_calls".into(), json!(missed));
        }
    }
    Value::Object(p)
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_FIELD_CHARS).collect()
}

/// The alert's `loc-key` and `loc-args` for `n`, as Sygnal picks them.
fn alert(n: &Notification) -> Option<(&'static str, Vec<String>)> {
    let present = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let from = match (&n.sender_display_name, &n.sender) {
        (name, sender) if present(name).is_none() && present(sender).is_none() => " ".into(),
        (Some(name), _) => cut(name),
        (None, sender) => cut(sender.as_deref().unwrap_or(" ")),
    };
    let room = present(&n.room_name)
        .or(present(&n.room_alias))
        .map(|r| cut(&r));
    let content = n.content.as_ref();
    let content_str = |key: &str| content.and_then(|c| c.get(key)).and_then(Value::as_str);
    match n.kind.as_deref()? {
        "m.room.message" | "m.room.encrypted" => {
            let (mut text, mut action, mut image) = (None, None, false);
            if let (Some(msgtype), Some(body)) = (content_str("msgtype"), content_str("body")) {
                match msgtype {
                    "m.emote" => action = Some(body.to_string()),
                    _ => text = Some(body.to_string()),
                }
                image = msgtype == "m.image";
            }
            // Sygnal tests the texts for truth: an empty one is none (an image keeps it).
            let (text, action) = match image {
                true => (text, action),
                false => (
                    text.filter(|t| !t.is_empty()),
                    action.filter(|a| !a.is_empty()),
                ),
            };
            Some(match (room, image, text, action) {
                (Some(room), true, text, _) => (
                    "IMAGE_FROM_USER_IN_ROOM",
                    vec![from, text.unwrap_or_default(), room],
                ),
                (Some(room), false, Some(text), _) => {
                    ("MSG_FROM_USER_IN_ROOM_WITH_CONTENT", vec![from, room, text])
                }
                (Some(room), false, None, Some(action)) => {
                    ("ACTION_FROM_USER_IN_ROOM", vec![room, from, action])
                }
                (Some(room), false, None, None) => ("MSG_FROM_USER_IN_ROOM", vec![from, room]),
                (None, true, text, _) => ("IMAGE_FROM_USER", vec![from, text.unwrap_or_default()]),
                (None, false, Some(text), _) => ("MSG_FROM_USER_WITH_CONTENT", vec![from, text]),
                (None, false, None, Some(action)) => ("ACTION_FROM_USER", vec![from, action]),
                (None, false, None, None) => ("MSG_FROM_USER", vec![from]),
            })
        }
        "m.call.invite" => {
            let sdp = content
                .and_then(|c| c.get("offer"))
                .and_then(|o| o.get("sdp"))
                .and_then(Value::as_str);
            let key = if sdp.is_some_and(|s| s.contains("m=video")) {
                "VIDEO_CALL_FROM_USER"
            } else {
                "VOICE_CALL_FROM_USER"
            };
            Some((key, vec![from]))
        }
        "m.room.member" => {
            if n.user_is_target != Some(true) || n.membership.as_deref() != Some("invite") {
                return None;
            }
            Some(match room {
                Some(room) => ("USER_INVITE_TO_NAMED_ROOM", vec![from, room]),
                None => ("USER_INVITE_TO_CHAT", vec![from]),
            })
        }
        // An event of a kind Sygnal does not know, important enough to push.
        _ => Some(("MSG_FROM_USER", vec![from])),
    }
}

/// The full layout: `default_payload` (for an event), `aps.alert` with `loc-key` and
/// `loc-args`, `aps.badge` = unread + missed calls, and `room_id` / `event_id` with an alert.
fn full(n: &Notification, device: &Device) -> Option<Value> {
    let alert = alert(n);
    let badge = n
        .counts
        .as_ref()
        .and_then(|c| match (c.unread, c.missed_calls) {
            (None, None) => None,
            (unread, missed) => Some(unread.unwrap_or(0) + missed.unwrap_or(0)),
        });
    if alert.is_none() && badge.is_none() {
        return None;
    }
    let mut p = if n.kind.is_some() {
        device.default_payload()
    } else {
        Map::new()
    };
    let aps = p.entry("aps").or_insert_with(|| json!({}));
    if !aps.is_object() {
        *aps = json!({});
    }
    if let Some((key, args)) = &alert {
        let entry = &mut aps["alert"];
        if !entry.is_object() {
            *entry = json!({});
        }
        entry["loc-key"] = json!(key);
        entry["loc-args"] = json!(args);
    }
    if let Some(badge) = badge {
        aps["badge"] = json!(badge);
    }
    if alert.is_some() {
        for (key, value) in [("room_id", &n.room_id), ("event_id", &n.event_id)] {
            if let Some(v) = value {
                p.insert(key.into(), json!(v));
            }
        }
    }
    Some(Value::Object(p))
}

/// `payload` fitted into `max` bytes as Sygnal's apnstruncate does it: the longest of the
/// alert's texts (`alert` as a string, `alert.body`, each `loc-args` entry) loses characters
/// from its end until the JSON fits; left as it is when nothing is left to cut (the provider
/// then refuses it).
pub fn fit(mut payload: Value, max: usize) -> Value {
    let mut size = payload.to_string().len();
    while size > max {
        let Some((text, runner_up)) = longest_text(&mut payload) else {
            break;
        };
        let current = text.as_str().unwrap_or_default();
        // Cut the excess, but not below the next longest text, which is cut next.
        let drop = (size - max).min(current.len() - runner_up).max(1);
        let mut end = current.len().saturating_sub(drop);
        while !current.is_char_boundary(end) {
            end -= 1;
        }
        *text = Value::String(current[..end].to_string());
        size = payload.to_string().len();
    }
    payload
}

/// The longest non-empty text of the alert that can be cut, and the length of the next
/// longest, in bytes.
fn longest_text(payload: &mut Value) -> Option<(&mut Value, usize)> {
    let alert = payload.get_mut("aps")?.get_mut("alert")?;
    let mut texts: Vec<&mut Value> = match alert {
        Value::String(_) => vec![alert],
        Value::Object(fields) => {
            let mut texts = Vec::new();
            for (key, value) in fields.iter_mut() {
                match (key.as_str(), value) {
                    ("body", v @ Value::String(_)) => texts.push(v),
                    ("loc-args", Value::Array(args)) => {
                        texts.extend(args.iter_mut().filter(|a| a.is_string()))
                    }
                    _ => {}
                }
            }
            texts
        }
        _ => return None,
    };
    let len = |t: &Value| t.as_str().map_or(0, str::len);
    texts.retain(|t| len(t) > 0);
    texts.sort_by_key(|t| std::cmp::Reverse(len(t)));
    let runner_up = texts.get(1).map_or(0, |t| len(t));
    let longest = texts.into_iter().next()?;
    Some((longest, runner_up))
}

/// The APNs device token for a pushkey: Sygnal's pushers register the token base64-encoded
/// (`convert_device_token_to_hex`, on by default), APNs wants it as hex.
pub fn device_token(pushkey: &str, convert_to_hex: bool) -> Option<String> {
    if !convert_to_hex {
        return Some(pushkey.to_string());
    }
    base64::engine::general_purpose::STANDARD
        .decode(pushkey)
        .ok()
        .map(hex::encode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::samples::{bodies, parse};

    fn one(notification: Value) -> Notification {
        let mut n = notification;
        n["devices"] = json!([{"app_id": "a", "pushkey": "k"}]);
        parse(&json!({ "notification": n }))
    }

    fn loc(n: &Notification) -> (Value, Value) {
        let p = payload(n, &n.devices[0]).expect("payload");
        (
            p["aps"]["alert"]["loc-key"].clone(),
            p["aps"]["alert"]["loc-args"].clone(),
        )
    }

    #[test]
    fn synapse_bodies_get_sygnals_aps() {
        let bodies = bodies();
        let invite = parse(&bodies[0]);
        let p = payload(&invite, &invite.devices[0]).expect("payload");
        assert_eq!(p["aps"]["alert"]["loc-key"], "USER_INVITE_TO_CHAT");
        assert_eq!(p["aps"]["alert"]["loc-args"], json!(["alice"]));
        assert_eq!(p["aps"]["badge"], 1);
        let message = parse(&bodies[1]);
        let p = payload(&message, &message.devices[0]).expect("payload");
        assert_eq!(
            p["aps"],
            json!({"alert": {"loc-key": "MSG_FROM_USER_WITH_CONTENT",
                "loc-args": ["alice", "hello bob, this is alice"]}, "badge": 1})
        );
        assert_eq!(
            p["event_id"],
            message.event_id.clone().expect("id").as_str()
        );
        assert!(p["room_id"].is_string());
        let short = parse(&bodies[2]);
        let p = payload(&short, &short.devices[0]).expect("payload");
        assert_eq!(
            p,
            json!({"room_id": short.room_id.clone().expect("room"),
                "event_id": short.event_id.clone().expect("id"), "unread_count": 2})
        );
    }

    #[test]
    fn loc_keys_follow_the_event() {
        let msg = |content: Value, room: Option<&str>| {
            let mut n = json!({"type": "m.room.message", "event_id": "$e", "room_id": "!r",
                "sender": "@alice:x", "content": content});
            if let Some(room) = room {
                n["room_name"] = json!(room);
            }
            one(n)
        };
        let text = json!({"msgtype": "m.text", "body": "hi"});
        assert_eq!(
            loc(&msg(text.clone(), Some("Team"))),
            (
                json!("MSG_FROM_USER_IN_ROOM_WITH_CONTENT"),
                json!(["@alice:x", "Team", "hi"])
            )
        );
        let emote = json!({"msgtype": "m.emote", "body": "waves"});
        assert_eq!(
            loc(&msg(emote.clone(), None)),
            (json!("ACTION_FROM_USER"), json!(["@alice:x", "waves"]))
        );
        assert_eq!(
            loc(&msg(emote, Some("Team"))).1,
            json!(["Team", "@alice:x", "waves"])
        );
        let image = json!({"msgtype": "m.image", "body": "cat.png"});
        assert_eq!(
            loc(&msg(image, Some("Team"))),
            (
                json!("IMAGE_FROM_USER_IN_ROOM"),
                json!(["@alice:x", "cat.png", "Team"])
            )
        );
        assert_eq!(
            loc(&msg(json!({}), None)),
            (json!("MSG_FROM_USER"), json!(["@alice:x"]))
        );
        let call = |sdp: &str| {
            one(
                json!({"type": "m.call.invite", "event_id": "$c", "sender_display_name": "Bob",
                "content": {"offer": {"sdp": sdp}}}),
            )
        };
        assert_eq!(loc(&call("v=0\r\nm=video 9")).0, "VIDEO_CALL_FROM_USER");
        assert_eq!(loc(&call("v=0\r\nm=audio 9")).0, "VOICE_CALL_FROM_USER");
        let named_invite = one(json!({"type": "m.room.member", "event_id": "$i",
            "membership": "invite", "user_is_target": true, "room_alias": "#team:x"}));
        assert_eq!(
            loc(&named_invite),
            (json!("USER_INVITE_TO_NAMED_ROOM"), json!([" ", "#team:x"]))
        );
        let unknown = one(json!({"type": "m.sticker", "event_id": "$s", "sender": "@a:x"}));
        assert_eq!(loc(&unknown).0, "MSG_FROM_USER");
    }

    #[test]
    fn badges_default_payloads_and_nothing_to_do() {
        let counts = one(json!({"counts": {"unread": 2, "missed_calls": 1}}));
        let p = payload(&counts, &counts.devices[0]).expect("payload");
        assert_eq!(p, json!({"aps": {"badge": 3}}));
        // A membership change that is not an invite to the user, with no counts: nothing.
        let leave = one(json!({"type": "m.room.member", "event_id": "$l", "membership": "leave"}));
        assert_eq!(payload(&leave, &leave.devices[0]), None);
        let body = json!({"notification": {"type": "m.room.message", "event_id": "$e",
            "sender": "@a:x", "content": {"msgtype": "m.text", "body": "hi"},
            "devices": [{"app_id": "a", "pushkey": "k", "data": {"default_payload":
                {"aps": {"mutable-content": 1, "alert": {"title": "New message"}}, "extra": 1}}}]}});
        let n = parse(&body);
        let p = payload(&n, &n.devices[0]).expect("payload");
        assert_eq!(p["extra"], 1);
        assert_eq!(p["aps"]["mutable-content"], 1);
        assert_eq!(p["aps"]["alert"]["title"], "New message");
        assert_eq!(p["aps"]["alert"]["loc-key"], "MSG_FROM_USER_WITH_CONTENT");
    }

    #[test]
    fn long_alerts_are_cut_to_fit_as_sygnal_cuts_them() {
        let long = "ü".repeat(3000);
        let n = one(
            json!({"type": "m.room.message", "event_id": "$e", "sender": "@a:x",
            "room_name": "r".repeat(2000), "content": {"msgtype": "m.text", "body": long}}),
        );
        let p = payload(&n, &n.devices[0]).expect("payload");
        assert!(
            p.to_string().len() <= MAX_PAYLOAD_BYTES,
            "{}",
            p.to_string().len()
        );
        let args = p["aps"]["alert"]["loc-args"].as_array().expect("args");
        assert_eq!(
            args[1].as_str().map(|s| s.chars().count()),
            Some(MAX_FIELD_CHARS)
        );
        assert!(args[2].as_str().is_some_and(|s| s.starts_with("üü")));
        let plain = json!({"aps": {"alert": "x".repeat(5000)}});
        assert_eq!(fit(plain, 100).to_string().len(), 100);
        let nothing = json!({"aps": {"badge": 1}, "big": "y".repeat(500)});
        assert_eq!(fit(nothing.clone(), 100), nothing);
    }

    #[test]
    fn pushkeys_are_base64_tokens() {
        let token = [0xab_u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(token);
        assert_eq!(device_token(&b64, true), Some("ab".repeat(32)));
        assert_eq!(device_token("ab12", false).as_deref(), Some("ab12"));
        assert_eq!(device_token("not base64!", true), None);
    }
}
