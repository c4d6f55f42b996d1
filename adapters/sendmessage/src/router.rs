//! Routing an upstream message: an `upstream.received` event ordered per sender, and with
//! `upstream_relay` the envelope's message delivered directly.

use pushgate_api::clock::rfc3339;
use pushgate_api::model::{EventRecord, Target, UpstreamRecord};
use pushgate_api::upstream::{Forward, Replies, UpstreamPlan, UpstreamRouter};
use pushgate_api::{AppSettings, NewMessage};
use serde_json::{json, Value};

use crate::config::SendMessageSettings;
use crate::replies;

/// The SendMessage strategy as core's [`UpstreamRouter`].
pub struct SendMessageRouter {
    settings: SendMessageSettings,
}

impl SendMessageRouter {
    pub fn new(settings: SendMessageSettings) -> Self {
        SendMessageRouter { settings }
    }
}

/// The ordering key: one queue per sender (alias, or the device when unbound).
pub fn ordering_key(upstream: &UpstreamRecord) -> String {
    match &upstream.from {
        Some(alias) => format!("upstream/{}/alias:{alias}", upstream.app),
        None => format!(
            "upstream/{}/cid:{}:{}",
            upstream.app, upstream.provider, upstream.cid
        ),
    }
}

/// The `data` of an `upstream.received` event.
pub fn event_data(upstream: &UpstreamRecord) -> Value {
    json!({
        "upstream_id": upstream.id,
        "provider": upstream.provider,
        "cid": upstream.cid,
        "from": upstream.from,
        "unbound": upstream.from.is_none(),
        "msgid": upstream.msgid,
        "payload": upstream.payload,
        "received_at": rfc3339(upstream.received_at),
        "sent_at": upstream.sent_at.map(rfc3339),
    })
}

/// An IM envelope `{"to": "<alias>", "body": <any>, "notify_sender"?: bool}` from a bound
/// sender, as the message it asks for.
pub fn envelope(upstream: &UpstreamRecord) -> Option<NewMessage> {
    let from = upstream.from.clone()?;
    let Ok(Value::Object(envelope)) = serde_json::from_str::<Value>(&upstream.payload) else {
        return None;
    };
    let (Some(Value::String(to)), Some(body)) = (envelope.get("to"), envelope.get("body")) else {
        return None;
    };
    Some(NewMessage {
        to: Target::Alias(to.clone()),
        payload: body.clone(),
        from: Some(from),
        request_id: None,
        ttl: None,
        notify_sender: envelope
            .get("notify_sender")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        provider: None,
        urgency: None,
        collapse_key: None,
        notification: None,
        device_data: None,
    })
}

impl UpstreamRouter for SendMessageRouter {
    fn route(&self, app: &AppSettings, upstream: &UpstreamRecord) -> UpstreamPlan {
        let relay = self.settings.relay_apps.contains(&app.id);
        UpstreamPlan {
            forward: Some(Forward {
                ordering_key: ordering_key(upstream),
                data: event_data(upstream),
            }),
            deliver: if relay {
                envelope(upstream).into_iter().collect()
            } else {
                Vec::new()
            },
        }
    }

    fn replies(&self, _app: &AppSettings, event: &EventRecord, body: &[u8]) -> Replies {
        let sender = event.data["from"].as_str().map(str::to_string);
        replies::parse(body, sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_api::model::MessageId;

    fn upstream(from: Option<&str>, payload: &str) -> UpstreamRecord {
        UpstreamRecord {
            id: MessageId::generate(),
            app: "demo".into(),
            provider: "mock".into(),
            cid: "c1".into(),
            msgid: "m1".into(),
            from: from.map(str::to_string),
            payload: payload.into(),
            received_at: 0,
            sent_at: None,
        }
    }

    fn app() -> AppSettings {
        AppSettings {
            id: "demo".into(),
            default_provider: "mock".into(),
            max_devices_per_alias: 10,
            webhooks: true,
            max_backlog: 0,
        }
    }

    #[test]
    fn events_are_keyed_per_sender() {
        assert_eq!(
            ordering_key(&upstream(Some("alice"), "x")),
            "upstream/demo/alias:alice"
        );
        assert_eq!(
            ordering_key(&upstream(None, "x")),
            "upstream/demo/cid:mock:c1"
        );
        let data = event_data(&upstream(None, "x"));
        assert_eq!(data["unbound"], true);
        assert_eq!(data["payload"], "x");
    }

    #[test]
    fn envelopes_relay_only_for_relay_apps_and_bound_senders() {
        let relay = SendMessageRouter::new(SendMessageSettings {
            relay_apps: ["demo".to_string()].into(),
        });
        let plain = SendMessageRouter::new(SendMessageSettings::default());
        let env = upstream(
            Some("alice"),
            r#"{"to": "bob", "body": {"t": 1}, "notify_sender": true}"#,
        );
        let plan = relay.route(&app(), &env);
        assert_eq!(plan.deliver.len(), 1);
        assert_eq!(plan.deliver[0].to, Target::Alias("bob".into()));
        assert_eq!(plan.deliver[0].from.as_deref(), Some("alice"));
        assert!(plan.deliver[0].notify_sender);
        assert!(
            plan.forward.is_some(),
            "the app server still gets the event"
        );
        assert!(plain.route(&app(), &env).deliver.is_empty());
        assert!(relay
            .route(&app(), &upstream(None, r#"{"to": "bob", "body": 1}"#))
            .deliver
            .is_empty());
        assert!(relay
            .route(&app(), &upstream(Some("alice"), "hello"))
            .deliver
            .is_empty());
        assert!(relay
            .route(&app(), &upstream(Some("alice"), r#"{"to": 5, "body": 1}"#))
            .deliver
            .is_empty());
    }
}
