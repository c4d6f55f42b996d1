//! Strategy 2: upstream messages (device → provider → pushgate). Each is verified (the
//! adapter), deduplicated on (provider, msgid), stored, and forwarded to the app server as
//! an `upstream.received` event that is ordered per sender. The app server's reply, or with
//! `upstream_relay` an `{"to": "<alias>", "body": …}` envelope, becomes messages to deliver.

use std::collections::HashSet;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{AppSettings, Engine, MessageRequest, NewMessage, RepliesBody};
use crate::clock::{now_ms, rfc3339};
use crate::error::EngineError;
use crate::metrics as m;
use crate::model::{
    DeviceRef, EventKind, EventRecord, MessageId, Target, Upstream, UpstreamRecord,
};
use crate::provider::{CallbackRequest, UpstreamSink};
use crate::store::WriteOp;

/// What became of one upstream message.
#[derive(Clone, Debug, PartialEq)]
pub enum UpstreamOutcome {
    Accepted(UpstreamRecord),
    Duplicate,
    /// No app uses this provider: nowhere to forward it.
    Unowned,
}

/// Counts of what an upstream callback did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub relayed: usize,
}

impl Engine {
    /// The app a device's upstream message belongs to, and the sender alias: the first app
    /// (by id) where the device is bound, else the first app whose default provider it is.
    async fn upstream_owner(
        &self,
        device: &DeviceRef,
    ) -> Result<Option<(&AppSettings, Option<String>)>, EngineError> {
        let mut apps: Vec<&AppSettings> = self.apps.values().collect();
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        for app in &apps {
            if let Some(alias) = self.store.device_alias(&app.id, device).await? {
                return Ok(Some((app, Some(alias))));
            }
        }
        Ok(apps
            .into_iter()
            .find(|a| a.default_provider == device.provider)
            .map(|a| (a, None)))
    }

    /// Stores one verified upstream message and queues its event (not yet flushed).
    pub async fn accept_upstream(
        &self,
        provider: &str,
        upstream: Upstream,
    ) -> Result<(UpstreamOutcome, bool), EngineError> {
        let _guard = self.request_locks.lock(&(provider, &upstream.msgid)).await;
        if self
            .store
            .upstream(provider, &upstream.msgid)
            .await?
            .is_some()
        {
            return Ok((UpstreamOutcome::Duplicate, false));
        }
        let device = DeviceRef {
            provider: provider.to_string(),
            cid: upstream.cid.clone(),
        };
        let Some((app, from)) = self.upstream_owner(&device).await? else {
            return Ok((UpstreamOutcome::Unowned, false));
        };
        let now = now_ms();
        let record = UpstreamRecord {
            id: MessageId::generate(),
            app: app.id.clone(),
            provider: provider.to_string(),
            cid: upstream.cid,
            msgid: upstream.msgid,
            from,
            payload: upstream.payload,
            received_at: now,
            sent_at: upstream.sent_at,
        };
        let mut ops = vec![WriteOp::PutUpstream(record.clone())];
        let relay = self.plan_relay(app, &record).await?;
        let relayed = !relay.is_empty();
        ops.extend(relay);
        if app.webhooks {
            let key = format!(
                "upstream/{}/{}",
                app.id,
                match &record.from {
                    Some(alias) => format!("alias:{alias}"),
                    None => format!("cid:{provider}:{}", record.cid),
                }
            );
            let event = EventRecord {
                id: MessageId::generate(),
                app: app.id.clone(),
                kind: EventKind::UpstreamReceived,
                created_at: now,
                data: upstream_event_data(&record),
                attempts: 0,
                next_attempt_at: now,
                ordering_key: Some(key),
            };
            self.queue_ordered(event, ops).await?;
        } else {
            self.write(ops).await?;
        }
        Ok((UpstreamOutcome::Accepted(record), relayed))
    }

    /// Appends `event` to its ordering key's queue (making it the due head if the queue is
    /// empty) and writes it with `ops`, all under the key's lock.
    async fn queue_ordered(
        &self,
        event: EventRecord,
        mut ops: Vec<WriteOp>,
    ) -> Result<(), EngineError> {
        let key = event.ordering_key.clone().unwrap_or_default();
        let _guard = self.order_locks.lock(&key).await;
        let idle = self.store.next_ordered(&key, None).await?.is_none();
        ops.push(WriteOp::PutOrdered(event.clone()));
        if idle {
            ops.push(WriteOp::PutEvent(event));
        }
        self.write(ops).await
    }

    /// After the head of an ordering key's queue is done: removes it and makes the next due.
    pub(crate) async fn advance_ordered(
        &self,
        key: &str,
        done: MessageId,
        mut ops: Vec<WriteOp>,
    ) -> Result<(), EngineError> {
        let _guard = self.order_locks.lock(&key).await;
        ops.push(WriteOp::DeleteOrdered {
            key: key.to_string(),
            id: done,
        });
        if let Some(mut next) = self.store.next_ordered(key, Some(done)).await? {
            next.next_attempt_at = now_ms();
            ops.push(WriteOp::PutEvent(next));
        }
        self.write(ops).await
    }

    /// With `upstream_relay`, the ops that deliver an `{"to": "<alias>", "body": …}`
    /// envelope from a bound sender; none otherwise.
    async fn plan_relay(
        &self,
        app: &AppSettings,
        record: &UpstreamRecord,
    ) -> Result<Vec<WriteOp>, EngineError> {
        let (true, Some(from)) = (app.upstream_relay, &record.from) else {
            return Ok(Vec::new());
        };
        let Ok(Value::Object(envelope)) = serde_json::from_str::<Value>(&record.payload) else {
            return Ok(Vec::new());
        };
        let (Some(Value::String(to)), Some(body)) = (envelope.get("to"), envelope.get("body"))
        else {
            return Ok(Vec::new());
        };
        let message = NewMessage {
            to: Target::Alias(to.clone()),
            payload: body.clone(),
            from: Some(from.clone()),
            request_id: Some(format!("relay-{}", record.id)),
            ttl: None,
            notify_sender: envelope
                .get("notify_sender")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            provider: None,
        };
        match self.plan_accept(app, &message).await {
            Ok((_, ops)) => {
                metrics::counter!(m::UPSTREAM_RELAYS_TOTAL, "result" => "accepted").increment(1);
                Ok(ops)
            }
            Err(EngineError::Store(e)) => Err(EngineError::Store(e)),
            Err(e) => {
                metrics::counter!(m::UPSTREAM_RELAYS_TOTAL, "result" => "rejected").increment(1);
                tracing::warn!(app = %app.id, upstream = %record.id, code = e.code(), error = %e, "upstream envelope not relayed");
                Ok(Vec::new())
            }
        }
    }

    /// The ops that accept the messages of an app server's reply to `event` (each as a
    /// `POST /messages` body, `from` set to the upstream sender). Bad entries are counted,
    /// logged and skipped; a malformed reply is ignored (the event is still done).
    pub(crate) async fn plan_replies(
        &self,
        event: &EventRecord,
        body: &[u8],
    ) -> Result<Vec<WriteOp>, EngineError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let replies: RepliesBody = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!(m::UPSTREAM_REPLIES_TOTAL, "result" => "malformed").increment(1);
                tracing::warn!(app = %event.app, event = %event.id, error = %e, "app server reply is not {{\"messages\": [...]}}; ignored");
                return Ok(Vec::new());
            }
        };
        let Some(app) = self.apps.get(&event.app) else {
            return Ok(Vec::new());
        };
        let sender = event.data["from"].as_str().map(str::to_string);
        let mut ops = Vec::new();
        let mut request_ids = HashSet::new();
        for (i, entry) in replies.messages.into_iter().enumerate() {
            let planned = match serde_json::from_value::<MessageRequest>(entry) {
                Ok(request) => match request.into_message() {
                    Ok(mut message) => {
                        message.from = sender.clone();
                        let id = message
                            .request_id
                            .get_or_insert_with(|| format!("reply-{}-{i}", event.id));
                        if !request_ids.insert(id.clone()) {
                            continue;
                        }
                        self.plan_accept(app, &message).await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(EngineError::invalid(
                    "invalid_request",
                    format!("invalid reply message: {e}"),
                )),
            };
            match planned {
                Ok((_, planned)) => {
                    metrics::counter!(m::UPSTREAM_REPLIES_TOTAL, "result" => "accepted")
                        .increment(1);
                    ops.extend(planned);
                }
                Err(EngineError::Store(e)) => return Err(EngineError::Store(e)),
                Err(e) => {
                    metrics::counter!(m::UPSTREAM_REPLIES_TOTAL, "result" => "rejected")
                        .increment(1);
                    tracing::warn!(app = %event.app, event = %event.id, index = i, code = e.code(), error = %e, "reply message refused");
                }
            }
        }
        Ok(ops)
    }
}

/// The `data` of an `upstream.received` event.
fn upstream_event_data(record: &UpstreamRecord) -> Value {
    json!({
        "upstream_id": record.id,
        "provider": record.provider,
        "cid": record.cid,
        "from": record.from,
        "unbound": record.from.is_none(),
        "msgid": record.msgid,
        "payload": record.payload,
        "received_at": rfc3339(record.received_at),
        "sent_at": record.sent_at.map(rfc3339),
    })
}

#[async_trait]
impl UpstreamSink for Engine {
    async fn upstream_callback(
        &self,
        provider: &str,
        request: CallbackRequest,
    ) -> Result<UpstreamReport, EngineError> {
        let adapter = self.provider(provider)?.clone();
        let parsed = adapter.parse_upstream(&request)?;
        let mut report = UpstreamReport {
            rejected: parsed.rejected.len(),
            ..UpstreamReport::default()
        };
        for rejected in &parsed.rejected {
            metrics::counter!(m::CALLBACKS_REJECTED_TOTAL, "provider" => provider.to_string(), "kind" => "upstream").increment(1);
            tracing::warn!(provider, line = rejected.line, reason = %rejected.reason, "upstream message rejected");
        }
        for upstream in parsed.messages {
            let (outcome, relayed) = self.accept_upstream(provider, upstream).await?;
            let label = match outcome {
                UpstreamOutcome::Accepted(_) => {
                    report.accepted += 1;
                    "accepted"
                }
                UpstreamOutcome::Duplicate => {
                    report.duplicates += 1;
                    "duplicate"
                }
                UpstreamOutcome::Unowned => {
                    report.rejected += 1;
                    tracing::warn!(
                        provider,
                        "upstream message from a provider no app uses; dropped"
                    );
                    "unowned"
                }
            };
            report.relayed += usize::from(relayed);
            metrics::counter!(m::UPSTREAM_MESSAGES_TOTAL, "provider" => provider.to_string(), "result" => label).increment(1);
        }
        self.store.commit().await?;
        Ok(report)
    }
}
