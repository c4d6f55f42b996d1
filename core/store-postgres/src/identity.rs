//! Bindings: one row per bound device (the primary key keeps a device on one alias per app).
//! A bind takes a transaction-level advisory lock on its alias before it counts the alias's
//! devices, so concurrent binds on several nodes keep the per-alias device limit; the
//! device's own row is locked (`FOR UPDATE`) while it moves. A transaction that loses a race
//! (two first binds of one device) runs again.

use std::time::Duration;

use async_trait::async_trait;
use pushgate_api::error::StoreError;
use pushgate_api::model::{AliasRecord, BoundDevice, DeviceRef};
use pushgate_store::{BindError, BindOutcome, Binding, IdentityStore, MirrorPlan};

use crate::codec::{self, ms};
use crate::error;
use crate::ops;
use crate::PgStore;

/// Most runs of a binding change that keeps losing races.
const ATTEMPTS: u32 = 10;

const DEVICES_OF_ALIAS: &str = "SELECT provider, cid, bound_at, data FROM bindings
     WHERE app = $1 AND alias = $2 ORDER BY seq";

/// How one run of a binding transaction ended.
enum Run<T> {
    Done(T),
    Refused(BindError),
}

fn devices(rows: &[tokio_postgres::Row]) -> Result<Vec<BoundDevice>, StoreError> {
    rows.iter()
        .map(|row| {
            let data: Option<Vec<u8>> = row.get(3);
            Ok(BoundDevice {
                provider: row.get(0),
                cid: row.get(1),
                bound_at: codec::from_ms(row.get(2)),
                data: data
                    .map(|d| codec::decode("bindings.data", &d))
                    .transpose()?,
            })
        })
        .collect()
}

fn record(alias: &str, devices: Vec<BoundDevice>) -> Option<AliasRecord> {
    (!devices.is_empty()).then(|| AliasRecord {
        alias: alias.to_string(),
        devices,
    })
}

/// Runs `$body` (a `Result<Result<Run<T>, StoreError>, tokio_postgres::Error>` using the
/// transaction `$tx`) in a transaction, committed when it is `Run::Done`, again while it
/// loses races.
macro_rules! binding_tx {
    ($store:expr, $tx:ident => $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut client = $store.client().await?;
            let result = async {
                let $tx = client.transaction().await?;
                let outcome: Result<Run<_>, StoreError> = $body?;
                if matches!(outcome, Ok(Run::Done(_))) {
                    $tx.commit().await?;
                }
                Ok::<_, tokio_postgres::Error>(outcome)
            }
            .await;
            match result {
                Ok(outcome) => break outcome,
                Err(e) if error::is_race(&e) && attempt < ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "a binding change lost a race; running it again");
                    tokio::time::sleep(Duration::from_millis(1 << attempt)).await;
                }
                Err(e) => break $store.note(Err(e))?,
            }
        }
    }};
}

#[async_trait]
impl IdentityStore for PgStore {
    async fn bind_device(
        &self,
        app: &str,
        alias: &str,
        binding: Binding,
        mirror: MirrorPlan<'_>,
    ) -> Result<BindOutcome, BindError> {
        let binding = &binding;
        let run = binding_tx!(self, tx => async {
                    let device = &binding.device;
                    let data = binding.data.as_ref().map(codec::encode);
                    // Every bind to this alias counts its devices under this lock.
                    tx.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended('alias:' || $1 || chr(1) || $2, 0))",
                        &[&app, &alias],
                    )
                    .await?;
                    let current: Option<String> = tx
                        .query_opt(
                            "SELECT alias FROM bindings
                             WHERE app = $1 AND provider = $2 AND cid = $3 FOR UPDATE",
                            &[&app, &device.provider, &device.cid],
                        )
                        .await?
                        .map(|row| row.get(0));
                    let rows = tx.query(DEVICES_OF_ALIAS, &[&app, &alias]).await?;
                    let mut bound = match devices(&rows) {
                        Ok(d) => d,
                        Err(e) => return Ok(Err(e)),
                    };
                    if current.as_deref() == Some(alias) {
                        if let Some(existing) = bound.iter_mut().find(|d| d.is(device)) {
                            if existing.data != binding.data {
                                // Bound again with new provider data: the data is replaced.
                                tx.execute(
                                    "UPDATE bindings SET data = $4
                                     WHERE app = $1 AND provider = $2 AND cid = $3",
                                    &[&app, &device.provider, &device.cid, &data],
                                )
                                .await?;
                                existing.data = binding.data.clone();
                            }
                            return Ok(Ok(Run::Done(BindOutcome {
                                record: AliasRecord {
                                    alias: alias.to_string(),
                                    devices: bound,
                                },
                                moved_from: None,
                                changed: false,
                            })));
                        }
                    }
                    if bound.len() >= binding.max_devices {
                        return Ok(Ok(Run::Refused(BindError::Full {
                            max: binding.max_devices,
                        })));
                    }
                    tx.execute(
                        "INSERT INTO bindings (app, provider, cid, alias, bound_at, data)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (app, provider, cid) DO UPDATE
                         SET alias = EXCLUDED.alias, bound_at = EXCLUDED.bound_at,
                             data = EXCLUDED.data, seq = nextval('bindings_seq_seq')",
                        &[
                            &app,
                            &device.provider,
                            &device.cid,
                            &alias,
                            &ms(binding.now),
                            &data,
                        ],
                    )
                    .await?;
                    ops::execute(&tx, &ops::plan(mirror(std::slice::from_ref(device)))).await?;
                    bound.push(BoundDevice {
                        provider: device.provider.clone(),
                        cid: device.cid.clone(),
                        bound_at: binding.now,
                        data: binding.data.clone(),
                    });
                    Ok::<_, tokio_postgres::Error>(Ok(Run::Done(BindOutcome {
                        record: AliasRecord {
                            alias: alias.to_string(),
                            devices: bound,
                        },
                        moved_from: current.filter(|old| old != alias),
                        changed: true,
                    })))
            }
            .await)?;
        match run {
            Run::Done(outcome) => Ok(outcome),
            Run::Refused(e) => Err(e),
        }
    }

    async fn unbind_device(
        &self,
        app: &str,
        alias: &str,
        device: &DeviceRef,
        mirror: MirrorPlan<'_>,
    ) -> Result<bool, StoreError> {
        let run = binding_tx!(self, tx => async {
                    let removed = tx
                        .execute(
                            "DELETE FROM bindings
                             WHERE app = $1 AND provider = $2 AND cid = $3 AND alias = $4",
                            &[&app, &device.provider, &device.cid, &alias],
                        )
                        .await?;
                    if removed > 0 {
                        ops::execute(&tx, &ops::plan(mirror(std::slice::from_ref(device))))
                            .await?;
                    }
                    Ok::<_, tokio_postgres::Error>(Ok(Run::Done(removed > 0)))
            }
            .await)?;
        match run {
            Run::Done(removed) => Ok(removed),
            Run::Refused(BindError::Store(e)) => Err(e),
            Run::Refused(e) => Err(StoreError::Backend(e.to_string())),
        }
    }

    async fn unbind_alias(
        &self,
        app: &str,
        alias: &str,
        mirror: MirrorPlan<'_>,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let run = binding_tx!(self, tx => async {
                    let rows = tx.query(DEVICES_OF_ALIAS, &[&app, &alias]).await?;
                    let bound = match devices(&rows) {
                        Ok(d) => d,
                        Err(e) => return Ok(Err(e)),
                    };
                    let Some(record) = record(alias, bound) else {
                        return Ok(Ok(Run::Done(None)));
                    };
                    tx.execute(
                        "DELETE FROM bindings WHERE app = $1 AND alias = $2",
                        &[&app, &alias],
                    )
                    .await?;
                    let devices: Vec<DeviceRef> =
                        record.devices.iter().map(|d| d.device()).collect();
                    ops::execute(&tx, &ops::plan(mirror(&devices))).await?;
                    Ok::<_, tokio_postgres::Error>(Ok(Run::Done(Some(record))))
            }
            .await)?;
        match run {
            Run::Done(record) => Ok(record),
            Run::Refused(BindError::Store(e)) => Err(e),
            Run::Refused(e) => Err(StoreError::Backend(e.to_string())),
        }
    }

    async fn alias(&self, app: &str, alias: &str) -> Result<Option<AliasRecord>, StoreError> {
        let client = self.client().await?;
        let rows = self.note(client.query(DEVICES_OF_ALIAS, &[&app, &alias]).await)?;
        Ok(record(alias, devices(&rows)?))
    }

    async fn device_alias(
        &self,
        app: &str,
        device: &DeviceRef,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = self.note(
            client
                .query_opt(
                    "SELECT alias FROM bindings WHERE app = $1 AND provider = $2 AND cid = $3",
                    &[&app, &device.provider, &device.cid],
                )
                .await,
        )?;
        Ok(row.map(|r| r.get(0)))
    }
}
