//! Building webhook events for delivery outcomes.

use serde_json::{json, Value};

use super::Engine;
use crate::clock::rfc3339;
use crate::model::{DeliveryRecord, EventKind, EventRecord, MessageId, MessageRecord};
use crate::store::WriteOp;

impl Engine {
    /// The ops that queue `kind` for the message's app (see [`Engine::new_event`]); none for
    /// pushgate's own messages (a receipt push).
    pub(crate) fn event_op(
        &self,
        message: &MessageRecord,
        kind: EventKind,
        data: Value,
        now: u64,
    ) -> Vec<WriteOp> {
        if message.system {
            return Vec::new();
        }
        self.new_event(&message.app, kind, data, now)
    }

    /// The ops that record an event for `app`: into the webhook outbox if the app has a
    /// webhook, into the event log if there is one.
    pub(crate) fn new_event(
        &self,
        app: &str,
        kind: EventKind,
        data: Value,
        now: u64,
    ) -> Vec<WriteOp> {
        let webhooks = self.apps.get(app).is_some_and(|a| a.webhooks);
        if !webhooks && self.settings.event_log.is_none() {
            return Vec::new();
        }
        let event = EventRecord {
            id: MessageId::generate(),
            app: app.to_string(),
            kind,
            created_at: now,
            data,
            attempts: 0,
            next_attempt_at: now,
            ordering_key: None,
        };
        let mut ops = Vec::with_capacity(2);
        if self.settings.event_log.is_some() {
            ops.push(WriteOp::LogEvent(event.clone()));
        }
        if webhooks {
            ops.push(WriteOp::PutEvent(event));
        }
        ops
    }
}

/// The `data` of a `message.delivered|failed|expired` event.
pub(crate) fn delivery_event_data(message: &MessageRecord, delivery: &DeliveryRecord) -> Value {
    let mut d = json!({
        "provider": delivery.provider,
        "cid": delivery.cid,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "updated_at": rfc3339(delivery.updated_at),
    });
    if let (Some(err), Some(obj)) = (&delivery.error, d.as_object_mut()) {
        obj.insert(
            "error".into(),
            json!({"code": err.code, "message": err.message}),
        );
    }
    json!({
        "message_id": message.id,
        "from": message.from,
        "to": message.to,
        "delivery": d,
    })
}
