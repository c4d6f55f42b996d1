//! Delivery state changes driven by the dispatcher and the TTL sweeper. Every change of a
//! message's deliveries happens under that message's stripe lock, on a fresh read.

use std::time::{Duration, Instant};

use super::events::delivery_event_data;
use super::Engine;
use crate::clock::now_ms;
use crate::error::EngineError;
use crate::metrics as m;
use crate::model::{
    DeliveryError, DeliveryId, DeliveryRecord, DeliveryState, DeviceRef, EventKind, MessageId,
    MessageRecord, RECEIPT_TIMEOUT,
};
use crate::provider::{OutboundDelivery, ProviderError, Retry, Sent};
use crate::store::WriteOp;

/// A send `begin_send` prepared: what the provider gets, and the records it was built from.
struct Begun {
    outbound: OutboundDelivery,
    provider: String,
    started_at: u64,
    message: MessageRecord,
    delivery: DeliveryRecord,
}

/// How long an in-flight delivery holds back its message's expiry sweep.
const EXPIRY_RECHECK: Duration = Duration::from_secs(1);

impl Engine {
    /// Sends one delivery found in its provider's outbox at `due`: build the send, call the
    /// provider under its timeout, record `sending` (with its start time) and the outcome in
    /// one write. The caller has marked it in flight. Returns whether the provider looked
    /// healthy (`None`: nothing was sent). A crash during the call leaves the delivery due: it
    /// is sent again with the same idempotency key (at-least-once, deduplicated by the
    /// provider).
    pub async fn deliver(&self, due: u64, id: DeliveryId) -> Result<Option<bool>, EngineError> {
        let result = self.send_step(due, id).await;
        self.attempts.attempted(id);
        result
    }

    /// [`Engine::deliver`] before its waiters are woken.
    async fn send_step(&self, due: u64, id: DeliveryId) -> Result<Option<bool>, EngineError> {
        let Some(begun) = self.retrying(|| self.begin_send(due, id)).await? else {
            return Ok(None);
        };
        let Begun {
            outbound,
            provider: provider_name,
            started_at,
            message,
            delivery,
        } = begun;
        let provider = self.provider(&provider_name)?.clone();
        let timeout = provider.limits().send_timeout;
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, provider.send(&outbound)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::transient(
                "timeout",
                format!("no answer within {} ms", timeout.as_millis()),
            )),
        };
        metrics::histogram!(m::PROVIDER_SEND_SECONDS, "provider" => provider_name.clone())
            .record(started.elapsed().as_secs_f64());
        // Device acks name the delivery, and an ack may come before this answer is recorded
        // (kept as an early receipt under the delivery id): its reference is the delivery id,
        // whatever the provider calls the message (FCM's message name).
        let result = result.map(|sent| {
            if provider.device_acks() && sent.provider_ref != id.to_string() {
                tracing::debug!(delivery = %id, provider_ref = %sent.provider_ref, "sent");
                Sent {
                    provider_ref: id.to_string(),
                }
            } else {
                sent
            }
        });
        let healthy = !matches!(&result, Err(e) if e.is_transient());
        // The first try records over the delivery as `begin_send` read it (its version guard
        // catches a change meanwhile); a try after a conflict reads it again.
        let mut as_read = Some(delivery);
        let sent = match self
            .retrying(|| self.finish_send(id, as_read.take(), &message, started_at, result.clone()))
            .await
        {
            Ok(sent) => sent,
            Err(e) => {
                if let Ok(s) = &result {
                    self.settle_kept_receipt_after_failure(id, &provider_name, &s.provider_ref)
                        .await;
                }
                return Err(e);
            }
        };
        if let Err(error) = &result {
            if error.unregistered {
                let device = DeviceRef {
                    provider: provider_name.clone(),
                    cid: outbound.cid.clone(),
                };
                self.device_gone(&outbound.app, device, &error.code).await?;
            }
        }
        if let Some(reference) = sent {
            // Only now look for a receipt that came between finish_send's look and its write
            // (the receipt path writes first and looks after, so one of us sees the other).
            // If the store fails now, keep looking until it answers: that receipt has no one
            // else to find it, and the delivery would wait for its receipt timeout.
            if let Err(e) = self
                .retrying(|| self.apply_early_receipt(id, &provider_name, &reference))
                .await
            {
                self.settle_kept_receipt_after_failure(id, &provider_name, &reference)
                    .await;
                return Err(e);
            }
        }
        Ok(Some(healthy))
    }

    /// After the provider took a send but recording it, or the look for a receipt kept
    /// meanwhile, failed: the record may have committed all the same (a connection lost after
    /// COMMIT), and a receipt that came meanwhile was kept with no one left to look for it, so
    /// the delivery would wait for its receipt timeout. Looks for that receipt until the store answers (30 tries, a second apart); a
    /// verified receipt settles the delivery whether the record committed or not.
    async fn settle_kept_receipt_after_failure(
        &self,
        id: DeliveryId,
        provider: &str,
        reference: &str,
    ) {
        for _ in 0..30 {
            match self.apply_early_receipt(id, provider, reference).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(delivery = %id, error = %e, "looking for a kept receipt failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Builds what the provider gets for a delivery due at `due`, with its provider and the
    /// send's start time; `None` if it needs no send (already final, expired now, or no
    /// longer scheduled at `due`: an outbox read older than the send that took it out).
    async fn begin_send(&self, due: u64, id: DeliveryId) -> Result<Option<Begun>, EngineError> {
        let _guard = self.message_locks.lock(&id.message).await;
        let now = now_ms();
        let Some(mut delivery) = self.store.delivery(id).await? else {
            tracing::warn!(delivery = %id, "outbox entry without a delivery record; dropping it");
            return Ok(None);
        };
        if delivery.next_attempt_at != Some(due) {
            // The scan saw the entry before a finished send removed it: sending again now
            // would push a delivery that already has its answer.
            tracing::debug!(delivery = %id, due, "outbox entry already taken; not sent again");
            return Ok(None);
        }
        let Some(message) = self.store.message(id.message).await? else {
            tracing::warn!(delivery = %id, "delivery without a message record; dropping it");
            let mut ops = Vec::new();
            unschedule(&mut delivery, &mut ops);
            self.write_deliveries(ops).await?;
            return Ok(None);
        };
        let mut ops = Vec::new();
        if delivery.state.is_final() {
            unschedule(&mut delivery, &mut ops);
            ops.push(WriteOp::PutDelivery(delivery));
            self.write_deliveries(ops).await?;
            return Ok(None);
        }
        if now >= message.expires_at {
            self.settle(
                &message,
                &mut delivery,
                DeliveryState::Expired,
                now,
                &mut ops,
            );
            self.write_deliveries(ops).await?;
            return Ok(None);
        }
        if delivery.state == DeliveryState::Sent {
            metrics::counter!(m::RECEIPT_TIMEOUTS_TOTAL, "provider" => delivery.provider.clone())
                .increment(1);
            tracing::info!(delivery = %id, attempt = delivery.attempts + 1, "no receipt in time; sending again");
        }
        let payload = match self.providers.get(&delivery.provider) {
            // A device that acknowledges itself gets the payload with its ack token.
            Some(p) if p.device_acks() => serde_json::json!({
                "payload": &message.payload,
                "ack": self.settings.acks.token(id),
            }),
            _ => message.payload.clone(),
        };
        let outbound = OutboundDelivery {
            delivery_id: id,
            message_id: message.id,
            app: message.app.clone(),
            cid: delivery.cid.clone(),
            from: message.from.clone(),
            payload: std::sync::Arc::new(payload),
            ttl: Duration::from_millis(message.expires_at - now),
            attempt: delivery.attempts + 1,
            device_data: delivery.device_data.clone().map(std::sync::Arc::new),
            urgency: message.urgency,
            collapse_key: message.collapse_key.clone(),
            notification: message.notification.clone().map(std::sync::Arc::new),
            idempotency_key: id.to_string(),
        };
        Ok(Some(Begun {
            outbound,
            provider: delivery.provider.clone(),
            started_at: now,
            message,
            delivery,
        }))
    }

    /// Records a provider's answer: `sent`, another attempt later, or a final state. Returns
    /// the provider's reference when it recorded `sent`: the caller then looks for a receipt
    /// kept before the record. `message` is the delivery's message as `begin_send` read it
    /// (message records never change once written); `as_read` its delivery, if that read is
    /// still the one to write over (else it is read again).
    async fn finish_send(
        &self,
        id: DeliveryId,
        as_read: Option<DeliveryRecord>,
        message: &MessageRecord,
        started_at: u64,
        result: Result<Sent, ProviderError>,
    ) -> Result<Option<String>, EngineError> {
        let _guard = self.message_locks.lock(&id.message).await;
        let now = now_ms();
        let mut delivery = match as_read {
            Some(d) => d,
            None => match self.store.delivery(id).await? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        delivery.attempts += 1;
        let resend = (delivery.state == DeliveryState::Sent).then_some(RECEIPT_TIMEOUT);
        delivery.transition_because(DeliveryState::Sending, started_at, resend);
        let mut ops = Vec::new();
        let provider = delivery.provider.clone();
        match result {
            Ok(sent) => {
                // A reference that is the delivery id needs no index: the delivery record
                // names it (see `Engine::delivery_for_reference`).
                if sent.provider_ref != id.to_string() {
                    ops.push(WriteOp::PutReference {
                        provider: provider.clone(),
                        reference: sent.provider_ref.clone(),
                        id,
                    });
                }
                unschedule(&mut delivery, &mut ops);
                if delivery.state.is_final() {
                    // A receipt (or the TTL) got there first.
                    ops.push(WriteOp::PutDelivery(delivery));
                    self.write_deliveries(ops).await?;
                    return Ok(None);
                }
                delivery.transition(DeliveryState::Sent, now);
                delivery.provider_ref = Some(sent.provider_ref.clone());
                delivery.error = None;
                metrics::counter!(m::DELIVERIES_TOTAL, "provider" => provider.clone(), "outcome" => "sent").increment(1);
                self.schedule_receipt_timeout(message, &mut delivery, now, &mut ops);
                ops.push(WriteOp::PutDelivery(delivery.clone()));
                self.write_deliveries(ops).await?;
                return Ok(Some(sent.provider_ref));
            }
            Err(error) if delivery.state.is_final() => {
                tracing::debug!(delivery = %id, %error, "send failed after the delivery was settled");
                unschedule(&mut delivery, &mut ops);
                ops.push(WriteOp::PutDelivery(delivery));
            }
            Err(error) => {
                delivery.error = Some(DeliveryError {
                    code: error.code.clone(),
                    message: error.message.clone(),
                    unregistered: error.unregistered,
                });
                match error.retry {
                    Retry::Transient { after }
                        if self.settings.retry.may_retry(delivery.attempts)
                            && now.saturating_sub(delivery.created_at)
                                < self.settings.max_retry_time.as_millis() as u64 =>
                    {
                        let delay = self.settings.retry.delay(delivery.attempts, after);
                        let due = now.saturating_add(delay.as_millis() as u64);
                        if due >= message.expires_at {
                            self.settle(
                                message,
                                &mut delivery,
                                DeliveryState::Expired,
                                now,
                                &mut ops,
                            );
                        } else {
                            unschedule(&mut delivery, &mut ops);
                            delivery.transition(DeliveryState::RetryWait, now);
                            delivery.next_attempt_at = Some(due);
                            ops.push(WriteOp::Schedule {
                                provider: provider.clone(),
                                due,
                                id,
                                app: message.app.clone(),
                            });
                            ops.push(WriteOp::PutDelivery(delivery));
                            metrics::counter!(m::RETRIES_TOTAL, "provider" => provider.clone())
                                .increment(1);
                            metrics::counter!(m::DELIVERIES_TOTAL, "provider" => provider.clone(), "outcome" => "retry").increment(1);
                            tracing::debug!(delivery = %id, %error, delay_ms = delay.as_millis() as u64, "transient send failure; will retry");
                        }
                    }
                    _ => {
                        tracing::info!(delivery = %id, provider = %provider, %error, "delivery failed");
                        self.settle(message, &mut delivery, DeliveryState::Failed, now, &mut ops);
                    }
                }
            }
        }
        self.write_deliveries(ops).await?;
        Ok(None)
    }

    /// Unbinds a device its provider reported gone, and tells the app
    /// (`device.unregistered`). Later sends to its alias find no device.
    pub(crate) async fn device_gone(
        &self,
        app: &str,
        device: DeviceRef,
        reason: &str,
    ) -> Result<(), EngineError> {
        self.write(vec![WriteOp::PutGoneDevice {
            device: device.clone(),
            at: now_ms(),
        }])
        .await?;
        let Some(alias) = self.store.device_alias(app, &device).await? else {
            return Ok(());
        };
        let mirror = |devices: &[DeviceRef]| {
            self.plan_mirrors(app, &alias, crate::model::MirrorOp::Unbind, devices)
        };
        if !self
            .store
            .unbind_device(app, &alias, &device, &mirror)
            .await?
        {
            return Ok(());
        }
        metrics::counter!(m::DEVICES_UNREGISTERED_TOTAL, "provider" => device.provider.clone())
            .increment(1);
        tracing::info!(provider = %device.provider, alias = %alias, reason, "provider reported the device gone; unbound");
        let data = serde_json::json!({
            "provider": device.provider,
            "cid": device.cid,
            "alias": alias,
            "reason": reason,
        });
        let ops = self.new_event(app, EventKind::DeviceUnregistered, data, now_ms());
        if !ops.is_empty() {
            self.write(ops).await?;
        }
        self.mirror_waker.notify_one();
        Ok(())
    }

    /// Applies a receipt `provider` sent before the send of `id` was recorded, if one was
    /// kept.
    async fn apply_early_receipt(
        &self,
        id: DeliveryId,
        provider: &str,
        reference: &str,
    ) -> Result<(), EngineError> {
        let _guard = self.message_locks.lock(&id.message).await;
        // Mostly there is none: look for it before reading the records.
        let Some(early) = self.store.early_receipt(provider, reference).await? else {
            return Ok(());
        };
        let (Some(mut delivery), Some(message)) = (
            self.store.delivery(id).await?,
            self.store.message(id.message).await?,
        ) else {
            return Ok(());
        };
        if delivery.state.is_final() || delivery.provider != provider {
            return Ok(());
        }
        let mut ops = Vec::new();
        self.plan_early_receipt(&message, &mut delivery, early, now_ms(), &mut ops)
            .await?;
        self.write_deliveries(ops).await?;
        Ok(())
    }

    /// Plans applying a kept early receipt to `delivery` (and deleting it); true if it settled
    /// the delivery (the ops then also write the delivery record).
    async fn plan_early_receipt(
        &self,
        message: &MessageRecord,
        delivery: &mut DeliveryRecord,
        early: crate::model::Receipt,
        now: u64,
        ops: &mut Vec<WriteOp>,
    ) -> Result<bool, EngineError> {
        let provider = delivery.provider.clone();
        ops.push(WriteOp::DeleteEarlyReceipt {
            provider: provider.clone(),
            reference: early.provider_ref.clone(),
        });
        if early.cid != delivery.cid {
            tracing::warn!(provider = %provider, delivery = %delivery.id, "kept receipt names another device; dropped");
            return Ok(false);
        }
        self.apply_receipt_status(message, delivery, &early.status, now, ops)
            .await?;
        metrics::counter!(m::RECEIPTS_TOTAL, "provider" => provider, "result" => "applied")
            .increment(1);
        Ok(delivery.state.is_final())
    }

    /// Schedules the send again for when the provider's receipt timeout passes, if it has
    /// one and attempts and TTL allow (the outbox entry counts in no app's backlog).
    fn schedule_receipt_timeout(
        &self,
        message: &MessageRecord,
        delivery: &mut DeliveryRecord,
        now: u64,
        ops: &mut Vec<WriteOp>,
    ) {
        let Some(timeout) = self
            .providers
            .get(&delivery.provider)
            .and_then(|p| p.limits().receipt_timeout)
        else {
            return;
        };
        let due = now.saturating_add(timeout.as_millis() as u64);
        if !self.settings.retry.may_retry(delivery.attempts) || due >= message.expires_at {
            return;
        }
        delivery.next_attempt_at = Some(due);
        ops.push(WriteOp::Schedule {
            provider: delivery.provider.clone(),
            due,
            id: delivery.id,
            app: String::new(),
        });
    }

    /// Moves a delivery to a final state (`failed`, `expired`, `delivered`), takes it out of
    /// the outbox, queues its webhook event and pushes the delivery record.
    pub(crate) fn settle(
        &self,
        message: &MessageRecord,
        delivery: &mut DeliveryRecord,
        state: DeliveryState,
        now: u64,
        ops: &mut Vec<WriteOp>,
    ) {
        if !delivery.transition(state, now) {
            return;
        }
        unschedule(delivery, ops);
        let (kind, outcome) = match state {
            DeliveryState::Delivered => (EventKind::MessageDelivered, "delivered"),
            DeliveryState::Expired => (EventKind::MessageExpired, "expired"),
            _ => (EventKind::MessageFailed, "failed"),
        };
        metrics::counter!(m::DELIVERIES_TOTAL, "provider" => delivery.provider.clone(), "outcome" => outcome).increment(1);
        ops.extend(self.event_op(message, kind, delivery_event_data(message, delivery), now));
        ops.push(WriteOp::PutDelivery(delivery.clone()));
    }

    /// Expires every unfinished delivery of a message whose TTL has passed. A delivery in
    /// flight keeps the index entry (rechecked shortly) until its send returns.
    pub async fn expire_message(&self, at: u64, id: MessageId) -> Result<(), EngineError> {
        let _guard = self.message_locks.lock(&id).await;
        let now = now_ms();
        let mut ops = vec![WriteOp::UnscheduleExpiry { at, message: id }];
        if let Some(message) = self.store.message(id).await? {
            let mut busy = false;
            for mut delivery in self.store.deliveries(id).await? {
                if delivery.state.is_final() {
                    continue;
                }
                if self.store.claimed(delivery.id, now).await? {
                    busy = true;
                    continue;
                }
                self.settle(
                    &message,
                    &mut delivery,
                    DeliveryState::Expired,
                    now,
                    &mut ops,
                );
            }
            if busy {
                ops.push(WriteOp::ScheduleExpiry {
                    at: now + EXPIRY_RECHECK.as_millis() as u64,
                    message: id,
                });
            } else {
                ops.push(WriteOp::SchedulePurge {
                    at: message
                        .expires_at
                        .saturating_add(self.settings.retention.as_millis() as u64),
                    message: id,
                });
            }
        }
        self.write_deliveries(ops).await?;
        Ok(())
    }

    /// Removes a message whose retention has passed: the message, its deliveries, their
    /// provider references and its idempotency key. `GET` on it answers 404 from then on.
    pub async fn purge_message(&self, at: u64, id: MessageId) -> Result<(), EngineError> {
        let _guard = self.message_locks.lock(&id).await;
        let mut ops = vec![WriteOp::UnscheduleExpiry { at, message: id }];
        if let Some(message) = self.store.message(id).await? {
            let deliveries = self.store.deliveries(id).await?;
            if deliveries.iter().any(|d| !d.state.is_final()) {
                // Not finished (a send was in flight at expiry): look again later.
                ops.push(WriteOp::SchedulePurge {
                    at: now_ms() + EXPIRY_RECHECK.as_millis() as u64 * 60,
                    message: id,
                });
                return self.write_deliveries(ops).await;
            }
            for d in deliveries {
                if let Some(reference) = d.provider_ref {
                    ops.push(WriteOp::DeleteReference {
                        provider: d.provider.clone(),
                        reference,
                    });
                }
                ops.push(WriteOp::DeleteDelivery(d.id));
            }
            if let Some(request_id) = message.request_id {
                ops.push(WriteOp::DeleteIdempotency {
                    app: message.app,
                    request_id,
                });
            }
            ops.push(WriteOp::DeleteMessage(id));
        }
        self.write_deliveries(ops).await
    }
}

/// Takes the delivery's outbox entry out, if it has one.
fn unschedule(delivery: &mut DeliveryRecord, ops: &mut Vec<WriteOp>) {
    if let Some(due) = delivery.next_attempt_at.take() {
        ops.push(WriteOp::Unschedule {
            provider: delivery.provider.clone(),
            due,
            id: delivery.id,
        });
    }
}
