//! Strategy 2 mechanics: upstream messages (device → provider → pushgate) are verified (the
//! provider's adapter), deduplicated on (provider, msgid) and stored; the upstream router
//! (the sendmessage adapter) plans what they become: an `upstream.received` event, ordered
//! per sender, and messages to deliver; the app server's answer becomes messages too. All
//! of it is written atomically, and every resulting message has a stable request_id.

use std::collections::HashSet;

use async_trait::async_trait;

use super::accept::request_guards;
use super::{AppSettings, Engine, NewMessage, UpstreamReport};
use crate::clock::now_ms;
use crate::error::EngineError;
use crate::metrics as m;
use crate::model::{DeviceRef, EventKind, EventRecord, MessageId, Upstream, UpstreamRecord};
use crate::provider::{CallbackRequest, UpstreamSink};
use crate::store::{Guard, Removable, WriteOp};

/// What became of one upstream message.
#[derive(Clone, Debug, PartialEq)]
pub enum UpstreamOutcome {
    Accepted(UpstreamRecord),
    Duplicate,
    /// No app uses this provider: nowhere to forward it.
    Unowned,
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
        let mut ops = vec![
            WriteOp::PutUpstream(record.clone()),
            // The dedupe record outlives any provider retry by far; then it goes.
            WriteOp::ScheduleRemoval {
                at: self.retention_end(now),
                id: record.id,
                target: Removable::Upstream {
                    provider: record.provider.clone(),
                    msgid: record.msgid.clone(),
                },
            },
        ];
        let plan = match &self.upstream_router {
            Some(router) => router.route(app, &record),
            None => Default::default(),
        };
        let relayed = self
            .plan_messages(
                app,
                plan.deliver,
                &format!("relay-{}", record.id),
                "relay",
                &mut ops,
            )
            .await?;
        if let Some(forward) = plan.forward {
            let event = EventRecord {
                id: MessageId::generate(),
                app: app.id.clone(),
                kind: EventKind::UpstreamReceived,
                created_at: now,
                data: forward.data,
                attempts: 0,
                next_attempt_at: now,
                ordering_key: Some(forward.ordering_key),
            };
            if self.settings.event_log.is_some() {
                ops.push(WriteOp::LogEvent(event.clone()));
            }
            if app.webhooks {
                ops.push(WriteOp::EnqueueOrdered(event));
            }
        }
        // Recorded once whatever races (a provider's retry on another node): the dedupe
        // record and any relayed request ids are taken in the same atomic write.
        let mut guards = vec![Guard::NewUpstream {
            provider: record.provider.clone(),
            msgid: record.msgid.clone(),
        }];
        guards.extend(request_guards(&ops));
        if !self.write_if(guards, ops).await? {
            return Ok((UpstreamOutcome::Duplicate, false));
        }
        Ok((UpstreamOutcome::Accepted(record), relayed > 0))
    }

    /// Plans `messages` into `ops` (each without a request_id gets `<id_prefix>-<index>`,
    /// stable across retries). Refused ones are counted under `what` and logged. Returns how
    /// many were planned.
    async fn plan_messages(
        &self,
        app: &AppSettings,
        messages: Vec<NewMessage>,
        id_prefix: &str,
        what: &'static str,
        ops: &mut Vec<WriteOp>,
    ) -> Result<usize, EngineError> {
        let metric = if what == "relay" {
            m::UPSTREAM_RELAYS_TOTAL
        } else {
            m::UPSTREAM_REPLIES_TOTAL
        };
        let mut request_ids = HashSet::new();
        let mut planned = 0;
        for (i, mut message) in messages.into_iter().enumerate() {
            let id = message
                .request_id
                .get_or_insert_with(|| format!("{id_prefix}-{i}"))
                .clone();
            if !request_ids.insert(id) {
                continue;
            }
            match self.plan_accept(app, &message).await {
                Ok((_, more)) => {
                    metrics::counter!(metric, "result" => "accepted").increment(1);
                    ops.extend(more);
                    planned += 1;
                }
                Err(EngineError::Store(e)) => return Err(EngineError::Store(e)),
                Err(e) => {
                    metrics::counter!(metric, "result" => "rejected").increment(1);
                    tracing::warn!(app = %app.id, what, index = i, code = e.code(), error = %e, "upstream message not delivered");
                }
            }
        }
        Ok(planned)
    }

    /// The ops that accept the messages of an app server's answer to `event`.
    pub(crate) async fn plan_replies(
        &self,
        event: &EventRecord,
        body: &[u8],
    ) -> Result<Vec<WriteOp>, EngineError> {
        let (Some(app), Some(router)) = (self.apps.get(&event.app), &self.upstream_router) else {
            return Ok(Vec::new());
        };
        let replies = router.replies(app, event, body);
        if let Some(reason) = &replies.malformed {
            metrics::counter!(m::UPSTREAM_REPLIES_TOTAL, "result" => "malformed").increment(1);
            tracing::warn!(app = %event.app, event = %event.id, %reason, "app server answer ignored");
        }
        for (index, reason) in &replies.refused {
            metrics::counter!(m::UPSTREAM_REPLIES_TOTAL, "result" => "rejected").increment(1);
            tracing::warn!(app = %event.app, event = %event.id, index, %reason, "reply message refused");
        }
        let mut ops = Vec::new();
        self.plan_messages(
            app,
            replies.messages,
            &format!("reply-{}", event.id),
            "reply",
            &mut ops,
        )
        .await?;
        Ok(ops)
    }
}

#[async_trait]
impl UpstreamSink for Engine {
    async fn upstream_callback(
        &self,
        provider: &str,
        request: CallbackRequest,
    ) -> Result<UpstreamReport, EngineError> {
        let adapter = self.provider(provider)?.clone();
        if self.upstream_router.is_none() {
            return Err(EngineError::Callback(
                crate::provider::CallbackError::NotSupported("upstream"),
            ));
        }
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
