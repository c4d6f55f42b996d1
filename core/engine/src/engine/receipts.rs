//! Applying provider receipts: verify (the adapter), map back to the delivery through the
//! provider reference, deduplicate on the delivery's state, settle, tell the sender.

use async_trait::async_trait;
use serde_json::json;

use super::{Engine, ReceiptReport};
use crate::clock::now_ms;
use crate::error::EngineError;
use crate::metrics as m;
use crate::model::{
    DeliveryError, DeliveryId, DeliveryRecord, DeliveryState, MessageId, MessageRecord, Receipt,
    ReceiptStatus, Target,
};
use crate::provider::{CallbackRequest, ReceiptSink};
use crate::store::{Removable, WriteOp};

/// What became of one receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The delivery moved to `delivered` (or `failed`).
    Applied,
    /// The delivery was already final: a repeated receipt.
    Duplicate,
    /// No send with that reference is recorded yet; kept until it is.
    Early,
    /// The reference names a delivery to another device: refused.
    Mismatch,
}

impl ReceiptOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Early => "early",
            Self::Mismatch => "mismatch",
        }
    }
}

impl Engine {
    /// Applies verified receipts from `provider` (not yet flushed: see `receipts_callback`).
    pub async fn apply_receipts(
        &self,
        provider: &str,
        receipts: Vec<Receipt>,
    ) -> Result<ReceiptReport, EngineError> {
        let mut report = ReceiptReport::default();
        for receipt in receipts {
            let outcome = self
                .retrying(|| self.apply_receipt(provider, receipt.clone()))
                .await?;
            metrics::counter!(m::RECEIPTS_TOTAL, "provider" => provider.to_string(), "result" => outcome.label()).increment(1);
            match outcome {
                ReceiptOutcome::Applied => report.applied += 1,
                ReceiptOutcome::Duplicate => report.duplicates += 1,
                ReceiptOutcome::Early => report.early += 1,
                ReceiptOutcome::Mismatch => report.rejected += 1,
            }
        }
        Ok(report)
    }

    async fn apply_receipt(
        &self,
        provider: &str,
        receipt: Receipt,
    ) -> Result<ReceiptOutcome, EngineError> {
        // A reference that is the delivery id of a recorded send: one read, under the lock.
        if let Ok(id) = receipt.provider_ref.parse::<DeliveryId>() {
            let _guard = self.message_locks.lock(&id.message).await;
            if let Some(delivery) = self.store.delivery(id).await? {
                if names(&delivery, provider, &receipt.provider_ref) {
                    return self
                        .settle_receipt(provider, &receipt, delivery, false)
                        .await;
                }
            }
        }
        let id = match self
            .store
            .delivery_by_reference(provider, &receipt.provider_ref)
            .await?
        {
            Some(id) => id,
            None => {
                // Keep it, then look again: a send recorded meanwhile either sees the kept
                // receipt or is seen here (it writes its reference before it looks).
                self.store
                    .apply(vec![
                        WriteOp::PutEarlyReceipt {
                            provider: provider.to_string(),
                            receipt: receipt.clone(),
                        },
                        // Gone after the retention if its send never shows up.
                        WriteOp::ScheduleRemoval {
                            at: self.retention_end(now_ms()),
                            id: MessageId::generate(),
                            target: Removable::EarlyReceipt {
                                provider: provider.to_string(),
                                reference: receipt.provider_ref.clone(),
                            },
                        },
                    ])
                    .await?;
                match self
                    .delivery_for_reference(provider, &receipt.provider_ref)
                    .await?
                {
                    Some(id) => {
                        let _guard = self.message_locks.lock(&id.message).await;
                        let Some(delivery) = self.store.delivery(id).await? else {
                            return Ok(ReceiptOutcome::Mismatch);
                        };
                        return self
                            .settle_receipt(provider, &receipt, delivery, true)
                            .await;
                    }
                    None => return Ok(ReceiptOutcome::Early),
                }
            }
        };
        let _guard = self.message_locks.lock(&id.message).await;
        let Some(delivery) = self.store.delivery(id).await? else {
            return Ok(ReceiptOutcome::Mismatch);
        };
        self.settle_receipt(provider, &receipt, delivery, false)
            .await
    }

    /// Applies `receipt` to `delivery`, read under its message's lock (which the caller
    /// holds). `kept`: this call kept the receipt as early, so it deletes that copy.
    async fn settle_receipt(
        &self,
        provider: &str,
        receipt: &Receipt,
        mut delivery: DeliveryRecord,
        kept: bool,
    ) -> Result<ReceiptOutcome, EngineError> {
        let id = delivery.id;
        let Some(message) = self.store.message(id.message).await? else {
            return Ok(ReceiptOutcome::Mismatch);
        };
        // A receipt kept by an earlier call was taken by the send it waited for, or goes
        // with its scheduled removal.
        let mut ops = Vec::new();
        if kept {
            ops.push(WriteOp::DeleteEarlyReceipt {
                provider: provider.to_string(),
                reference: receipt.provider_ref.clone(),
            });
        }
        let outcome = if delivery.provider != provider || delivery.cid != receipt.cid {
            tracing::warn!(provider, delivery = %id, "receipt names another device than the delivery; refused");
            ReceiptOutcome::Mismatch
        } else if delivery.state.is_final() {
            ReceiptOutcome::Duplicate
        } else {
            let now = now_ms();
            self.apply_receipt_status(&message, &mut delivery, &receipt.status, now, &mut ops)
                .await?;
            self.write_deliveries(std::mem::take(&mut ops)).await?;
            ReceiptOutcome::Applied
        };
        if !ops.is_empty() {
            self.write(ops).await?;
        }
        Ok(outcome)
    }

    /// The delivery a provider reference names, once its send is recorded. A reference that
    /// is the delivery id itself (the mock, every provider with device acks) is not indexed:
    /// the delivery record, written with its `sent` state, names it. Others (a Getui taskid)
    /// are looked up in the reference index.
    async fn delivery_for_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<DeliveryId>, EngineError> {
        if let Ok(id) = reference.parse::<DeliveryId>() {
            if let Some(d) = self.store.delivery(id).await? {
                if names(&d, provider, reference) {
                    return Ok(Some(id));
                }
            }
        }
        Ok(self
            .store
            .delivery_by_reference(provider, reference)
            .await?)
    }

    /// Settles a delivery per its receipt and, for the first device of a message that asked
    /// for it, plans the receipt push to the sender.
    pub(crate) async fn apply_receipt_status(
        &self,
        message: &MessageRecord,
        delivery: &mut DeliveryRecord,
        status: &ReceiptStatus,
        now: u64,
        ops: &mut Vec<WriteOp>,
    ) -> Result<(), EngineError> {
        match status {
            ReceiptStatus::Failed {
                code,
                message: text,
            } => {
                delivery.error = Some(DeliveryError {
                    code: code.clone(),
                    message: text.clone(),
                    unregistered: false,
                });
                self.settle(message, delivery, DeliveryState::Failed, now, ops);
                Ok(())
            }
            ReceiptStatus::Delivered => {
                self.settle(message, delivery, DeliveryState::Delivered, now, ops);
                metrics::histogram!(m::ACCEPT_TO_DELIVERED_SECONDS, "provider" => delivery.provider.clone())
                    .record(now.saturating_sub(message.created_at) as f64 / 1000.0);
                let wants_receipt = message.notify_sender && !message.system;
                let Some(from) = message.from.as_deref().filter(|_| wants_receipt) else {
                    return Ok(());
                };
                // Tell the sender once: when the first of the recipient's devices has it.
                let first = self
                    .store
                    .deliveries(message.id)
                    .await?
                    .iter()
                    .all(|d| d.id == delivery.id || d.state != DeliveryState::Delivered);
                if first {
                    self.plan_sender_receipt(message, from, now, ops).await
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Plans `{"type":"receipt","message_id","state":"delivered"}` to the sender's devices.
    async fn plan_sender_receipt(
        &self,
        message: &MessageRecord,
        from: &str,
        now: u64,
        ops: &mut Vec<WriteOp>,
    ) -> Result<(), EngineError> {
        let Some(app) = self.apps.get(&message.app) else {
            return Ok(());
        };
        let target = Target::Alias(from.to_string());
        let devices = match self.resolve(app, &target, None).await {
            Ok(devices) => devices,
            Err(EngineError::UnknownAlias(_)) => {
                tracing::debug!(message = %message.id, "sender has no device; no receipt push");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let record = MessageRecord {
            id: MessageId::generate(),
            app: message.app.clone(),
            from: None,
            to: target,
            payload: json!({"type": "receipt", "message_id": message.id, "state": "delivered"}),
            created_at: now,
            expires_at: now.saturating_add(self.settings.default_ttl.as_millis() as u64),
            notify_sender: false,
            request_id: None,
            delivery_count: devices.len() as u16,
            system: true,
            urgency: message.urgency,
            collapse_key: None,
            notification: None,
        };
        ops.extend(self.plan_message(record, &devices, now));
        Ok(())
    }
}

/// What a device acknowledgement did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// The delivery became `delivered`.
    Applied,
    /// Already final, or gone (purged): nothing changed.
    Duplicate,
}

impl Engine {
    /// Applies a device's acknowledgement token (`POST /v1/device-acks`) as its provider's
    /// receipt would be applied: `delivered`, webhooks, the receipt push to the sender.
    /// Returns once its effects are on disk; a token this gateway did not make is
    /// [`EngineError::ForgedAck`].
    pub async fn apply_device_ack(&self, token: &str) -> Result<AckOutcome, EngineError> {
        let Some(id) = self.settings.acks.verify(token) else {
            metrics::counter!(m::DEVICE_ACKS_TOTAL, "result" => "forged").increment(1);
            return Err(EngineError::ForgedAck);
        };
        let Some(delivery) = self.store.delivery(id).await? else {
            metrics::counter!(m::DEVICE_ACKS_TOTAL, "result" => "duplicate").increment(1);
            return Ok(AckOutcome::Duplicate);
        };
        // Before the send is recorded there is no reference yet: the send's own id is the one
        // providers with device acks use (kept as an early receipt until the send records it).
        let reference = delivery
            .provider_ref
            .clone()
            .unwrap_or_else(|| id.to_string());
        let receipt = Receipt {
            provider_ref: reference,
            cid: delivery.cid.clone(),
            status: ReceiptStatus::Delivered,
            at: Some(now_ms()),
        };
        let report = self
            .apply_receipts(&delivery.provider, vec![receipt])
            .await?;
        self.store.commit().await?;
        // An ack before the send is recorded is kept and settles it then: taken as well.
        let outcome = if report.applied > 0 || report.early > 0 {
            AckOutcome::Applied
        } else {
            AckOutcome::Duplicate
        };
        let label = if outcome == AckOutcome::Applied {
            "applied"
        } else {
            "duplicate"
        };
        metrics::counter!(m::DEVICE_ACKS_TOTAL, "result" => label).increment(1);
        Ok(outcome)
    }
}

#[async_trait]
impl ReceiptSink for Engine {
    async fn receipts_callback(
        &self,
        provider: &str,
        request: CallbackRequest,
    ) -> Result<ReceiptReport, EngineError> {
        let adapter = self.provider(provider)?.clone();
        let parsed = adapter.parse_receipts(&request)?;
        for rejected in &parsed.rejected {
            metrics::counter!(m::CALLBACKS_REJECTED_TOTAL, "provider" => provider.to_string(), "kind" => "receipt").increment(1);
            tracing::warn!(provider, line = rejected.line, reason = %rejected.reason, "receipt rejected");
        }
        let mut report = self.apply_receipts(provider, parsed.receipts).await?;
        report.rejected += parsed.rejected.len();
        self.store.commit().await?;
        Ok(report)
    }

    async fn apply_verified(
        &self,
        provider: &str,
        receipts: Vec<Receipt>,
    ) -> Result<ReceiptReport, EngineError> {
        self.provider(provider)?;
        let report = self.apply_receipts(provider, receipts).await?;
        self.store.commit().await?;
        Ok(report)
    }
}

/// Whether `delivery`'s recorded send has `reference` on `provider`.
fn names(delivery: &DeliveryRecord, provider: &str, reference: &str) -> bool {
    delivery.provider == provider && delivery.provider_ref.as_deref() == Some(reference)
}
