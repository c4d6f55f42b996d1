//! Alias bindings and read-only queries, with validation and provider delegation.

use super::Engine;
use crate::clock::now_ms;
use crate::error::EngineError;
use crate::metrics as m;
use crate::model::{
    AliasMirror, AliasRecord, DeliveryRecord, DeviceRef, MessageId, MessageRecord, MirrorOp,
};
use crate::provider::DeviceError;
use crate::store::{BindError, Binding, WriteOp};
use crate::validate;

impl Engine {
    fn check_app(&self, app: &str) -> Result<&super::AppSettings, EngineError> {
        self.apps
            .get(app)
            .ok_or_else(|| EngineError::invalid("unknown_app", format!("no app named {app:?}")))
    }

    fn check_alias(alias: &str) -> Result<(), EngineError> {
        validate::alias(alias).map_err(|e| EngineError::invalid("invalid_alias", e.0))
    }

    /// Checks a device with its provider (cid format, provider data); returns the data to
    /// keep with the binding.
    pub(crate) fn check_device(
        &self,
        device: &DeviceRef,
        data: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, EngineError> {
        let provider = self.provider(&device.provider)?;
        let refused = |e| match e {
            DeviceError::Cid(m) => EngineError::invalid("invalid_cid", m),
            DeviceError::Data(m) => EngineError::invalid("invalid_device_data", m),
        };
        provider.check_cid(&device.cid).map_err(refused)?;
        provider
            .check_device_data(&device.cid, data)
            .map_err(refused)
    }

    /// Checks a device's cid: in its provider's format, or the default one for a provider no
    /// longer configured (its bindings may still be there).
    pub(crate) fn check_cid(&self, device: &DeviceRef) -> Result<(), EngineError> {
        match self.providers.get(&device.provider) {
            Some(p) => p
                .check_cid(&device.cid)
                .map_err(|e| EngineError::invalid("invalid_cid", e.to_string())),
            None => {
                validate::cid(&device.cid).map_err(|e| EngineError::invalid("invalid_cid", e.0))
            }
        }
    }

    /// A device's data as the API shows it (its provider hides secrets).
    pub fn shown_device_data(&self, provider: &str, data: &serde_json::Value) -> serde_json::Value {
        match self.providers.get(provider) {
            Some(p) => p.redact_device_data(data),
            None => serde_json::Value::Null,
        }
    }

    /// The ops that queue an alias mirror of `op` for each of `devices` whose provider keeps
    /// aliases itself (written with the binding change; sent by the mirror worker).
    pub(crate) fn plan_mirrors(
        &self,
        app: &str,
        alias: &str,
        op: MirrorOp,
        devices: &[DeviceRef],
    ) -> Vec<WriteOp> {
        let now = now_ms();
        devices
            .iter()
            .filter(|d| {
                self.providers
                    .get(&d.provider)
                    .is_some_and(|p| p.mirrors_aliases())
            })
            .map(|d| {
                WriteOp::QueueAliasMirror(AliasMirror {
                    id: MessageId::generate(),
                    app: app.to_string(),
                    provider: d.provider.clone(),
                    cid: d.cid.clone(),
                    alias: alias.to_string(),
                    op,
                    attempts: 0,
                    next_attempt_at: now,
                    created_at: now,
                })
            })
            .collect()
    }

    /// Binds a device to an alias (moving it from any other alias of the app), durably,
    /// with the mirror to the provider if it keeps aliases too (sent by the mirror worker,
    /// retried until it succeeds or a newer change of the device supersedes it).
    /// When the provider reported `device` gone, if it did and it was not bound since.
    pub async fn gone_since(&self, device: &DeviceRef) -> Result<Option<u64>, EngineError> {
        Ok(self.store.gone_device(device).await?)
    }

    pub async fn bind(
        &self,
        app: &str,
        alias: &str,
        device: DeviceRef,
        data: Option<serde_json::Value>,
    ) -> Result<AliasRecord, EngineError> {
        let settings = self.check_app(app)?;
        Self::check_alias(alias)?;
        let data = self.check_device(&device, data.as_ref())?;
        // Written with the binding: its mirrors, and forgetting the device was ever gone.
        let mirror = |devices: &[DeviceRef]| {
            let mut ops = self.plan_mirrors(app, alias, MirrorOp::Bind, devices);
            ops.extend(devices.iter().cloned().map(WriteOp::DeleteGoneDevice));
            ops
        };
        let outcome = self
            .store
            .bind_device(
                app,
                alias,
                Binding {
                    device,
                    data,
                    max_devices: settings.max_devices_per_alias,
                    now: now_ms(),
                },
                &mirror,
            )
            .await
            .map_err(|e| match e {
                BindError::Full { max } => EngineError::AliasFull {
                    alias: alias.to_string(),
                    max,
                },
                BindError::Store(e) => EngineError::Store(e),
            })?;
        self.store.commit().await?;
        if outcome.changed {
            let result = if outcome.moved_from.is_some() {
                "moved"
            } else {
                "bound"
            };
            metrics::counter!(m::ALIAS_BINDINGS_TOTAL, "result" => result).increment(1);
            self.mirror_waker.notify_one();
        }
        Ok(outcome.record)
    }

    /// Unbinds one device from an alias, durably. `UnknownDevice` if it was not bound there.
    pub async fn unbind_device(
        &self,
        app: &str,
        alias: &str,
        device: DeviceRef,
    ) -> Result<(), EngineError> {
        self.check_app(app)?;
        Self::check_alias(alias)?;
        self.check_cid(&device)?;
        let mirror =
            |devices: &[DeviceRef]| self.plan_mirrors(app, alias, MirrorOp::Unbind, devices);
        if !self
            .store
            .unbind_device(app, alias, &device, &mirror)
            .await?
        {
            return Err(EngineError::UnknownDevice {
                provider: device.provider,
                cid: device.cid,
            });
        }
        self.store.commit().await?;
        metrics::counter!(m::ALIAS_BINDINGS_TOTAL, "result" => "unbound").increment(1);
        self.mirror_waker.notify_one();
        Ok(())
    }

    /// Unbinds every device of an alias, durably. `UnknownAlias` if it had none.
    pub async fn unbind_alias(&self, app: &str, alias: &str) -> Result<(), EngineError> {
        self.check_app(app)?;
        Self::check_alias(alias)?;
        let mirror =
            |devices: &[DeviceRef]| self.plan_mirrors(app, alias, MirrorOp::Unbind, devices);
        let Some(record) = self.store.unbind_alias(app, alias, &mirror).await? else {
            return Err(EngineError::UnknownAlias(alias.to_string()));
        };
        self.store.commit().await?;
        metrics::counter!(m::ALIAS_BINDINGS_TOTAL, "result" => "unbound")
            .increment(record.devices.len() as u64);
        self.mirror_waker.notify_one();
        Ok(())
    }

    /// An alias and its devices; `UnknownAlias` if none is bound.
    pub async fn alias(&self, app: &str, alias: &str) -> Result<AliasRecord, EngineError> {
        self.check_app(app)?;
        Self::check_alias(alias)?;
        self.store
            .alias(app, alias)
            .await?
            .ok_or_else(|| EngineError::UnknownAlias(alias.to_string()))
    }

    /// The alias a device is bound to; `UnknownDevice` if none.
    pub async fn device_alias(&self, app: &str, device: &DeviceRef) -> Result<String, EngineError> {
        self.check_app(app)?;
        self.provider(&device.provider)?;
        self.check_cid(device)?;
        self.store
            .device_alias(app, device)
            .await?
            .ok_or_else(|| EngineError::UnknownDevice {
                provider: device.provider.clone(),
                cid: device.cid.clone(),
            })
    }

    /// A message of `app` with its deliveries; `UnknownMessage` for another app's id too.
    pub async fn message(
        &self,
        app: &str,
        id: &str,
    ) -> Result<(MessageRecord, Vec<DeliveryRecord>), EngineError> {
        self.check_app(app)?;
        let unknown = || EngineError::UnknownMessage(id.to_string());
        let parsed: MessageId = id.parse().map_err(|_| unknown())?;
        let message = self.store.message(parsed).await?.ok_or_else(unknown)?;
        if message.app != app {
            return Err(unknown());
        }
        let deliveries = self.store.deliveries(parsed).await?;
        Ok((message, deliveries))
    }
}
