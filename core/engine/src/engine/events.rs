//! Building webhook events for delivery outcomes.

use serde_json::{json, Value};

use super::Engine;
use crate::clock::rfc3339;
use crate::model::{DeliveryRecord, EventKind, EventRecord, MessageId, MessageRecord};
use crate::store::WriteOp;

impl Engine {
    /// An op that queues `kind` for the message's app, or `None` if the app has no webhook
    /// or the message is pushgate's own (a receipt push).
    pub(crate) fn event_op(
        &self,
        message: &MessageRecord,
        kind: EventKind,
        data: Value,
        now: u64,
    ) -> Option<WriteOp> {
        if message.system {
            return None;
        }
        self.new_event(&message.app, kind, data, now)
    }

    /// An op that queues an event for `app`, if the app has a webhook.
    pub(crate) fn new_event(
        &self,
        app: &str,
        kind: EventKind,
        data: Value,
        now: u64,
    ) -> Option<WriteOp> {
        if !self.apps.get(app).is_some_and(|a| a.webhooks) {
            return None;
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
        Some(WriteOp::PutEvent(event))
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
