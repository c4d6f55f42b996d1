//! Accepting a message: validate, resolve the target to devices, write the message, its
//! deliveries and their outbox entries atomically, flush, wake the dispatchers.

use std::time::Duration;

use super::{AppSettings, Engine, NewMessage};
use crate::clock::now_ms;
use crate::error::EngineError;
use crate::metrics as m;
use crate::model::{
    DeliveryError, DeliveryId, DeliveryRecord, DeliveryState, DeviceRef, EventKind, MessageId,
    MessageRecord, Target,
};
use crate::store::{IdempotencyEntry, WriteOp};
use crate::validate;

/// A device a message goes to, with the provider data it is bound with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Recipient {
    pub device: DeviceRef,
    pub data: Option<serde_json::Value>,
}

/// The answer to an accepted message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub message_id: MessageId,
    pub deliveries: usize,
    /// False when an earlier message with the same `request_id` was returned.
    pub created: bool,
}

fn invalid(code: &'static str, e: validate::Invalid) -> EngineError {
    EngineError::invalid(code, e.0)
}

impl Engine {
    /// Accepts a message for `app`. Returns once the message and its deliveries are on disk.
    pub async fn accept(&self, app: &str, msg: NewMessage) -> Result<Accepted, EngineError> {
        let app = self
            .apps
            .get(app)
            .ok_or_else(|| EngineError::invalid("unknown_app", format!("no app named {app:?}")))?;
        let backlog = self.store.backlog(&app.id).await?;
        if app.max_backlog > 0 && backlog >= app.max_backlog {
            return Err(EngineError::Backlog {
                app: app.id.clone(),
                backlog,
            });
        }
        let (mut accepted, ops) = self.plan_accept(app, &msg).await?;
        if accepted.created {
            let written = self.write_if(request_guards(&ops), ops).await?;
            if !written {
                // The same request_id was accepted meanwhile (another request, another node):
                // answer as a replay of it.
                let (replay, _) = self.plan_accept(app, &msg).await?;
                if replay.created {
                    return Err(EngineError::Store(crate::error::StoreError::Backend(
                        "a request_id was taken but its record cannot be read".into(),
                    )));
                }
                accepted = replay;
            }
        }
        // A replay may find the first request not flushed yet: flush before answering too.
        self.store.commit().await?;
        if accepted.created {
            metrics::counter!(m::MESSAGES_ACCEPTED_TOTAL, "app" => app.id.clone()).increment(1);
        }
        Ok(accepted)
    }

    /// Validates and resolves a message; returns the ops that store it, or none (and
    /// `created: false`) for a replay of an earlier `request_id`. Callers write the ops
    /// guarded by [`request_guards`], so a request_id is taken once whatever races.
    pub(crate) async fn plan_accept(
        &self,
        app: &AppSettings,
        msg: &NewMessage,
    ) -> Result<(Accepted, Vec<WriteOp>), EngineError> {
        let ttl = self.validate_message(msg)?;
        // Only a request_id makes a message replayable: no digest without one.
        let fingerprint = msg.request_id.as_ref().map(|_| msg.fingerprint());
        if let (Some(request_id), Some(fingerprint)) = (&msg.request_id, &fingerprint) {
            if let Some(entry) = self.store.idempotency(&app.id, request_id).await? {
                if &entry.fingerprint != fingerprint {
                    return Err(EngineError::IdempotencyConflict(request_id.clone()));
                }
                let accepted = Accepted {
                    message_id: entry.message_id,
                    deliveries: entry.deliveries as usize,
                    created: false,
                };
                return Ok((accepted, Vec::new()));
            }
        }
        let mut devices = self.resolve(app, &msg.to, msg.provider.as_deref()).await?;
        if let (Target::Device(d), Some(data)) = (&msg.to, &msg.device_data) {
            let checked = self.check_device(d, Some(data))?;
            for r in &mut devices {
                r.data = checked.clone();
            }
        }
        self.check_payload(&devices, &msg.payload, msg.notification.as_ref())?;
        let now = now_ms();
        let record = MessageRecord {
            id: MessageId::generate(),
            app: app.id.clone(),
            from: msg.from.clone(),
            to: msg.to.clone(),
            payload: msg.payload.clone(),
            created_at: now,
            expires_at: now.saturating_add(ttl.as_millis() as u64),
            notify_sender: msg.notify_sender,
            request_id: msg.request_id.clone(),
            delivery_count: devices.len() as u16,
            system: false,
            urgency: msg.urgency,
            collapse_key: msg.collapse_key.clone(),
            notification: msg.notification.clone(),
        };
        let id = record.id;
        let mut ops = self.plan_message(record, &devices, now);
        if let (Some(request_id), Some(fingerprint)) = (&msg.request_id, fingerprint) {
            ops.push(WriteOp::PutIdempotency {
                app: app.id.clone(),
                request_id: request_id.clone(),
                entry: IdempotencyEntry {
                    message_id: id,
                    fingerprint,
                    deliveries: devices.len() as u16,
                },
            });
        }
        let accepted = Accepted {
            message_id: id,
            deliveries: devices.len(),
            created: true,
        };
        Ok((accepted, ops))
    }

    fn validate_message(&self, msg: &NewMessage) -> Result<Duration, EngineError> {
        match &msg.to {
            Target::Alias(alias) => {
                validate::alias(alias).map_err(|e| invalid("invalid_alias", e))?
            }
            Target::Device(d) => {
                self.provider(&d.provider)?;
                self.check_cid(d)?;
            }
        }
        if let Some(key) = &msg.collapse_key {
            let ok = !key.is_empty()
                && key.len() <= 32
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(EngineError::invalid(
                    "invalid_collapse_key",
                    format!("collapse_key must be 1 to 32 of A-Z a-z 0-9 - _, got {key:?}"),
                ));
            }
        }
        if msg.device_data.is_some() && !matches!(msg.to, Target::Device(_)) {
            return Err(EngineError::invalid(
                "invalid_request",
                "device_data goes with a device target only",
            ));
        }
        if let Some(n) = &msg.notification {
            n.check()
                .map_err(|e| EngineError::invalid("invalid_notification", e))?;
        }
        if let Some(from) = &msg.from {
            validate::alias(from)
                .map_err(|e| EngineError::invalid("invalid_from", format!("from: {}", e.0)))?;
        }
        if let Some(p) = &msg.provider {
            self.provider(p)?;
            if let Target::Device(d) = &msg.to {
                if &d.provider != p {
                    return Err(EngineError::invalid(
                        "provider_mismatch",
                        format!(
                            "provider {p:?} differs from the device's provider {:?}",
                            d.provider
                        ),
                    ));
                }
            }
        }
        if let Some(r) = &msg.request_id {
            validate::request_id(r).map_err(|e| invalid("invalid_request_id", e))?;
        }
        let ttl = msg.ttl.unwrap_or(self.settings.default_ttl);
        if ttl.is_zero() || ttl > self.settings.max_ttl {
            return Err(EngineError::invalid(
                "invalid_ttl",
                format!(
                    "ttl_seconds must be between 1 and {}",
                    self.settings.max_ttl.as_secs()
                ),
            ));
        }
        Ok(ttl)
    }

    /// The devices a target reaches: a device itself; an alias's bound devices (only
    /// `provider`'s if given); failing that, the devices the provider itself knows
    /// for the alias.
    /// Refuses a payload that a recipient's provider cannot carry.
    fn check_payload(
        &self,
        devices: &[Recipient],
        payload: &serde_json::Value,
        notification: Option<&crate::model::Notification>,
    ) -> Result<(), EngineError> {
        let mut checked: Vec<&str> = Vec::new();
        for r in devices {
            let name = r.device.provider.as_str();
            if checked.contains(&name) {
                continue;
            }
            checked.push(name);
            if let Some(provider) = self.providers.get(name) {
                let checked = provider
                    .check_payload(payload)
                    .and_then(|()| match notification {
                        Some(n) => provider.check_notification(payload, n),
                        None => Ok(()),
                    });
                checked.map_err(|e| {
                    EngineError::invalid(e.code(), format!("provider {name:?}: {e}"))
                })?;
            }
        }
        Ok(())
    }

    pub(crate) async fn resolve(
        &self,
        app: &AppSettings,
        to: &Target,
        provider: Option<&str>,
    ) -> Result<Vec<Recipient>, EngineError> {
        let alias = match to {
            Target::Device(d) => {
                // A device addressed directly carries the data it is bound with, if bound.
                let data =
                    match self.store.device_alias(&app.id, d).await? {
                        Some(alias) => self.store.alias(&app.id, &alias).await?.and_then(|r| {
                            r.devices.into_iter().find(|b| b.is(d)).and_then(|b| b.data)
                        }),
                        None => None,
                    };
                return Ok(vec![Recipient {
                    device: d.clone(),
                    data,
                }]);
            }
            Target::Alias(alias) => alias,
        };
        let mut devices: Vec<Recipient> = self
            .store
            .alias(&app.id, alias)
            .await?
            .map(|r| {
                r.devices
                    .into_iter()
                    .filter(|d| provider.is_none_or(|p| d.provider == p))
                    .map(|d| Recipient {
                        device: d.device(),
                        data: d.data,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if devices.is_empty() {
            let name = provider.unwrap_or(&app.default_provider);
            if let Some(remote) = self.providers.get(name) {
                let cids = remote
                    .resolve_alias(&app.id, alias)
                    .await
                    .map_err(|error| EngineError::Provider {
                        provider: name.to_string(),
                        error,
                    })?;
                devices = cids
                    .into_iter()
                    .filter(|cid| remote.check_cid(cid).is_ok())
                    .take(app.max_devices_per_alias)
                    .map(|cid| Recipient {
                        device: DeviceRef {
                            provider: name.to_string(),
                            cid,
                        },
                        data: None,
                    })
                    .collect();
            }
        }
        if devices.is_empty() {
            return Err(EngineError::UnknownAlias(alias.clone()));
        }
        Ok(devices)
    }

    /// The ops that store a message with one queued delivery per device. A device whose
    /// provider is no longer configured gets a delivery that fails at once.
    pub(crate) fn plan_message(
        &self,
        record: MessageRecord,
        devices: &[Recipient],
        now: u64,
    ) -> Vec<WriteOp> {
        let mut ops = Vec::with_capacity(devices.len() * 2 + 2);
        for (i, recipient) in devices.iter().enumerate() {
            let device = &recipient.device;
            let id = DeliveryId {
                message: record.id,
                index: i as u16,
            };
            let mut delivery = DeliveryRecord::queued(id, device, now);
            delivery.device_data = recipient.data.clone();
            if self.providers.contains_key(&device.provider) {
                ops.push(WriteOp::Schedule {
                    provider: device.provider.clone(),
                    due: now,
                    id,
                    app: record.app.clone(),
                });
            } else {
                delivery.next_attempt_at = None;
                delivery.transition(DeliveryState::Failed, now);
                delivery.error = Some(DeliveryError {
                    code: "provider_not_configured".into(),
                    message: format!("no provider named {:?} is configured", device.provider),
                    unregistered: false,
                });
                let data = super::events::delivery_event_data(&record, &delivery);
                ops.extend(self.event_op(&record, EventKind::MessageFailed, data, now));
            }
            ops.push(WriteOp::PutDelivery(delivery));
        }
        ops.push(WriteOp::ScheduleExpiry {
            at: record.expires_at,
            message: record.id,
        });
        ops.push(WriteOp::PutMessage(record));
        ops
    }
}

/// The guards that make a batch take each request id it records only if no message has it.
pub(crate) fn request_guards(ops: &[WriteOp]) -> Vec<crate::store::Guard> {
    ops.iter()
        .filter_map(|op| match op {
            WriteOp::PutIdempotency {
                app, request_id, ..
            } => Some(crate::store::Guard::NewRequest {
                app: app.clone(),
                request_id: request_id.clone(),
            }),
            _ => None,
        })
        .collect()
}
