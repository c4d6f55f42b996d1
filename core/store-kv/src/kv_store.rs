//! The storage contract over any ordered key-value engine ([`Kv`]): records are encoded
//! under the layout of [`crate::keys`], every change is one atomic batch of key writes, and
//! the engine's queries are range scans. The sled backend and the in-memory one share it.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::alias_codec;
use crate::claims::Claims;
use crate::keys;
use crate::kv::{prefix_end, Kv, Write1};
use crate::record_codec::{decode, encode, version_of};
use pushgate_store::{
    BindError, BindOutcome, Binding, DeliveryStore, Guard, IdempotencyEntry, IdentityStore, Lease,
    MirrorPlan, Removable, Timer, WriteOp,
};

/// The value that marks a message-timer entry as a retention purge (empty: TTL expiry).
const PURGE_MARK: &[u8] = b"P";
use pushgate_api::error::StoreError;
use pushgate_api::model::{
    AliasMirror, AliasRecord, BoundDevice, DeliveryId, DeliveryRecord, DeviceRef, EventRecord,
    MessageId, MessageRecord, Receipt, UpstreamRecord,
};

/// The deliveries and events whose outbox entries a write takes out.
struct EndedClaims {
    deliveries: Vec<DeliveryId>,
    events: Vec<MessageId>,
}

impl EndedClaims {
    fn of(ops: &[WriteOp]) -> Self {
        let mut ended = EndedClaims {
            deliveries: Vec::new(),
            events: Vec::new(),
        };
        for op in ops {
            match op {
                WriteOp::Unschedule { id, .. } => ended.deliveries.push(*id),
                WriteOp::DeleteEvent { id, .. } => ended.events.push(*id),
                _ => {}
            }
        }
        ended
    }
}

/// The [`pushgate_store::Store`] over the key-value engine `K`.
pub struct KvStore<K: Kv> {
    kv: K,
    /// Claims on due deliveries and events. A key-value engine here belongs to one process,
    /// so its claims live in that process and end with it.
    delivery_claims: Claims<DeliveryId>,
    event_claims: Claims<MessageId>,
    timer_claims: Claims<MessageId>,
    mirror_claims: Claims<MessageId>,
    /// Serialises read-modify-write batches: bindings, alias mirrors, ordered queues, guarded
    /// writes.
    identity_lock: Mutex<()>,
    /// Outbox entries per provider and per app, counted at open and kept up to date by
    /// `apply`.
    outbox_depth: Mutex<Depths>,
}

#[derive(Default)]
struct Depths {
    by_provider: HashMap<String, u64>,
    by_app: HashMap<String, u64>,
}

/// The writes of one atomic change.
#[derive(Default)]
struct Writes(Vec<Write1>);

impl Writes {
    fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.0.push((key.into(), Some(value.into())));
    }

    fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.0.push((key.into(), None));
    }
}

/// Whether a batch has ops that read what they change (a device's mirror pointer, a queue's
/// head): those are planned under the lock that serialises read-modify-writes.
fn reads_what_it_changes(ops: &[WriteOp]) -> bool {
    ops.iter().any(|op| {
        matches!(
            op,
            WriteOp::QueueAliasMirror(_)
                | WriteOp::RetryAliasMirror(_)
                | WriteOp::FinishAliasMirror(_)
                | WriteOp::EnqueueOrdered(_)
                | WriteOp::AdvanceOrdered { .. }
        )
    })
}

/// The ordering key of an event bound for an ordered queue.
fn ordering_key(event: &EventRecord) -> Result<String, StoreError> {
    event
        .ordering_key
        .clone()
        .ok_or_else(|| StoreError::Backend("an ordered event needs an ordering key".into()))
}

/// Outbox depth changes of a batch: `(provider, app, change)`.
type DepthChanges = Vec<(String, String, i64)>;

fn add(map: &mut HashMap<String, u64>, key: &str, change: i64) {
    let n = map.entry(key.to_string()).or_insert(0);
    *n = n.saturating_add_signed(change);
}

impl<K: Kv> KvStore<K> {
    /// The store over `kv`, counting its outbox.
    pub fn new(kv: K) -> Result<Self, StoreError> {
        let depth = count_outbox(&kv)?;
        Ok(KvStore {
            kv,
            delivery_claims: Claims::default(),
            event_claims: Claims::default(),
            timer_claims: Claims::default(),
            mirror_claims: Claims::default(),
            identity_lock: Mutex::new(()),
            outbox_depth: Mutex::new(depth),
        })
    }

    /// The key-value engine underneath.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    /// Records one atomic change (visible at once, durable after the next commit).
    fn write(&self, writes: Writes) -> Result<(), StoreError> {
        self.kv.write(writes.0)
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.kv.get(key)? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn get_alias(&self, key: &[u8], alias: &str) -> Result<Option<AliasRecord>, StoreError> {
        match self.kv.get(key)? {
            Some(bytes) => alias_codec::decode(alias, key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn get_string(&self, key: &[u8]) -> Result<Option<String>, StoreError> {
        Ok(self
            .kv
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn depths(&self) -> std::sync::MutexGuard<'_, Depths> {
        self.outbox_depth
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_identity(&self) -> std::sync::MutexGuard<'_, ()> {
        self.identity_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Turns ops into writes on `batch`; returns the outbox depth changes
    /// `(provider, app, change)`. Callers with mirror ops hold the identity lock.
    fn plan(&self, ops: Vec<WriteOp>, batch: &mut Writes) -> Result<DepthChanges, StoreError> {
        let mut depth_changes: DepthChanges = Vec::new();
        for op in ops {
            match op {
                WriteOp::PutMessage(m) => batch.insert(keys::message(m.id), encode(&m)),
                WriteOp::PutDelivery(d) => batch.insert(keys::delivery(d.id), encode(&d)),
                WriteOp::Schedule {
                    provider,
                    due,
                    id,
                    app,
                } => {
                    batch.insert(keys::outbox(&provider, due, id), app.as_bytes());
                    depth_changes.push((provider, app, 1));
                }
                WriteOp::Unschedule { provider, due, id } => {
                    let key = keys::outbox(&provider, due, id);
                    let app = self
                        .kv
                        .get(&key)?
                        .map(|v| String::from_utf8_lossy(&v).into_owned());
                    batch.remove(key);
                    depth_changes.push((provider, app.unwrap_or_default(), -1));
                }
                WriteOp::PutReference {
                    provider,
                    reference,
                    id,
                } => batch.insert(keys::reference(&provider, &reference), id.to_bytes()),
                WriteOp::PutIdempotency {
                    app,
                    request_id,
                    entry,
                } => batch.insert(keys::idempotency(&app, &request_id), encode(&entry)),
                WriteOp::ScheduleExpiry { at, message } => {
                    batch.insert(keys::expiry(at, message), [])
                }
                WriteOp::SchedulePurge { at, message } => {
                    batch.insert(keys::expiry(at, message), PURGE_MARK)
                }
                WriteOp::DeleteMessage(id) => batch.remove(keys::message(id)),
                WriteOp::DeleteDelivery(id) => batch.remove(keys::delivery(id)),
                WriteOp::DeleteReference {
                    provider,
                    reference,
                } => batch.remove(keys::reference(&provider, &reference)),
                WriteOp::DeleteIdempotency { app, request_id } => {
                    batch.remove(keys::idempotency(&app, &request_id))
                }
                WriteOp::UnscheduleExpiry { at, message } => {
                    batch.remove(keys::expiry(at, message))
                }
                WriteOp::PutEvent(e) => {
                    batch.insert(keys::event(e.next_attempt_at, e.id), encode(&e))
                }
                WriteOp::DeleteEvent { due, id } => batch.remove(keys::event(due, id)),
                WriteOp::LogEvent(e) => batch.insert(keys::event_log(&e.app, e.id), encode(&e)),
                WriteOp::PutEarlyReceipt { provider, receipt } => batch.insert(
                    keys::early_receipt(&provider, &receipt.provider_ref),
                    encode(&receipt),
                ),
                WriteOp::DeleteEarlyReceipt {
                    provider,
                    reference,
                } => batch.remove(keys::early_receipt(&provider, &reference)),
                WriteOp::PutGoneDevice { device, at } => {
                    batch.insert(keys::gone_device(&device), at.to_string())
                }
                WriteOp::DeleteGoneDevice(device) => batch.remove(keys::gone_device(&device)),
                WriteOp::ScheduleRemoval { at, id, target } => {
                    let key = match target {
                        Removable::Upstream { provider, msgid } => {
                            keys::upstream(&provider, &msgid)
                        }
                        Removable::EarlyReceipt {
                            provider,
                            reference,
                        } => keys::early_receipt(&provider, &reference),
                    };
                    batch.insert(keys::removal(at, id), key)
                }
                WriteOp::PutUpstream(u) => {
                    batch.insert(keys::upstream(&u.provider, &u.msgid), encode(&u))
                }
                WriteOp::EnqueueOrdered(e) => {
                    let key = ordering_key(&e)?;
                    if self.first_ordered(&key, None)?.is_none() {
                        batch.insert(keys::event(e.next_attempt_at, e.id), encode(&e));
                    }
                    batch.insert(keys::ordered(&key, e.id), encode(&e));
                }
                WriteOp::UpdateOrdered(e) => {
                    let key = ordering_key(&e)?;
                    batch.insert(keys::ordered(&key, e.id), encode(&e));
                }
                WriteOp::AdvanceOrdered { key, done, now } => {
                    batch.remove(keys::ordered(&key, done));
                    if let Some(mut next) = self.first_ordered(&key, Some(done))? {
                        next.next_attempt_at = now;
                        batch.insert(keys::event(now, next.id), encode(&next));
                    }
                }
                op @ (WriteOp::QueueAliasMirror(_)
                | WriteOp::RetryAliasMirror(_)
                | WriteOp::FinishAliasMirror(_)) => self.plan_mirror(op, batch)?,
            }
        }
        Ok(depth_changes)
    }

    /// Writes a planned batch and counts its outbox changes.
    /// Ends the claims on the entries a write took out (the store contract: `Unschedule` and
    /// `DeleteEvent` end them, as the row going does on PostgreSQL).
    fn end_claims(&self, ended: EndedClaims) {
        self.delivery_claims.end(&ended.deliveries);
        self.event_claims.end(&ended.events);
    }

    fn write_planned(&self, batch: Writes, depth_changes: DepthChanges) -> Result<(), StoreError> {
        self.write(batch)?;
        if !depth_changes.is_empty() {
            let mut depth = self.depths();
            for (provider, app, change) in depth_changes {
                add(&mut depth.by_provider, &provider, change);
                add(&mut depth.by_app, &app, change);
            }
        }
        Ok(())
    }

    /// The writes of a mirror op (identity lock held): queue supersedes the device's pending
    /// mirror; retry and finish apply only to the device's current one.
    fn plan_mirror(&self, op: WriteOp, batch: &mut Writes) -> Result<(), StoreError> {
        let (mirror, queue, finish) = match op {
            WriteOp::QueueAliasMirror(m) => (m, true, false),
            WriteOp::RetryAliasMirror(m) => (m, false, false),
            WriteOp::FinishAliasMirror(m) => (m, false, true),
            _ => return Ok(()),
        };
        let pointer_key = keys::mirror_of_device(&mirror.provider, &mirror.app, &mirror.cid);
        let current = self
            .kv
            .get(&pointer_key)?
            .and_then(|v| keys::parse_timed(&[&[keys::MIRROR][..], &v].concat()));
        if !queue && current.map(|(_, id)| id) != Some(mirror.id) {
            return Ok(());
        }
        if let Some((due, id)) = current {
            batch.remove(keys::mirror(due, id));
        }
        if finish {
            batch.remove(pointer_key);
            return Ok(());
        }
        let key = keys::mirror(mirror.next_attempt_at, mirror.id);
        batch.insert(pointer_key, &key[1..]);
        batch.insert(key, encode(&mirror));
        Ok(())
    }

    /// The oldest queued event of an ordering key, after `after` if given.
    fn first_ordered(
        &self,
        key: &str,
        after: Option<MessageId>,
    ) -> Result<Option<EventRecord>, StoreError> {
        let prefix = keys::ordered_prefix(key);
        let start = match after {
            // The smallest key greater than `after`'s own.
            Some(id) => {
                let mut k = keys::ordered(key, id);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        match self.kv.range(start, None).next() {
            Some(Ok((k, v))) if k.starts_with(&prefix) => decode(&k, &v).map(Some),
            Some(Err(e)) => Err(e),
            _ => Ok(None),
        }
    }

    /// Whether a guard holds now (the caller holds the lock the guarded write takes).
    fn holds(&self, guard: &Guard) -> Result<bool, StoreError> {
        Ok(match guard {
            Guard::NewRequest { app, request_id } => {
                self.kv.get(&keys::idempotency(app, request_id))?.is_none()
            }
            Guard::NewUpstream { provider, msgid } => {
                self.kv.get(&keys::upstream(provider, msgid))?.is_none()
            }
            Guard::DeliveryVersion { id, version } => {
                let key = keys::delivery(*id);
                let stored = match self.kv.get(&key)? {
                    Some(bytes) => version_of(&key, &bytes)?,
                    None => 0,
                };
                stored == *version
            }
        })
    }

    /// Claims up to `limit` records of a `tag ++ due(8) ++ id(16)` index due from `from` to
    /// `now` that no live claim holds (claimed ones are skipped before decoding).
    #[allow(clippy::too_many_arguments)]
    fn claim_records<T: DeserializeOwned>(
        &self,
        tag: u8,
        from: u64,
        now: u64,
        limit: usize,
        lease: &Lease,
        claims: &Claims<MessageId>,
        id_of: impl Fn(&T) -> MessageId,
    ) -> Result<Vec<T>, StoreError> {
        let prefix = [tag];
        let mut found: Vec<T> = Vec::new();
        {
            let held = claims.held(now);
            for item in self.kv.range(
                keys::time_start(&prefix, from),
                Some(keys::time_bound(&prefix, now)),
            ) {
                if found.len() >= limit {
                    break;
                }
                let (k, v) = item?;
                if keys::parse_timed(&k).is_some_and(|(_, id)| held.contains(&id)) {
                    continue;
                }
                found.push(decode(&k, &v)?);
            }
        }
        Ok(claims.claim(found, id_of, lease, now))
    }

    fn first_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<K::Bytes>, StoreError> {
        match self.kv.scan_prefix(prefix).next() {
            Some(item) => item.map(|(k, _)| Some(k)),
            None => Ok(None),
        }
    }
}

fn count_outbox<K: Kv>(db: &K) -> Result<Depths, StoreError> {
    let mut depths = Depths::default();
    for item in db.scan_prefix(&[keys::OUTBOX]) {
        let (k, app) = item?;
        let name_end = k[1..].iter().position(|b| *b == 0).map(|p| p + 1);
        if let Some(end) = name_end {
            add(
                &mut depths.by_provider,
                &String::from_utf8_lossy(&k[1..end]),
                1,
            );
            add(&mut depths.by_app, &String::from_utf8_lossy(&app), 1);
        }
    }
    Ok(depths)
}

#[async_trait]
impl<K: Kv> IdentityStore for KvStore<K> {
    async fn bind_device(
        &self,
        app: &str,
        alias: &str,
        binding: Binding,
        mirror: MirrorPlan<'_>,
    ) -> Result<BindOutcome, BindError> {
        let Binding {
            device,
            data,
            max_devices,
            now,
        } = binding;
        let device = &device;
        let _guard = self.lock_identity();
        let device_key = keys::device(app, device);
        let alias_key = keys::alias(app, alias);
        let current = self.get_string(&device_key)?;
        let mut record: AliasRecord =
            self.get_alias(&alias_key, alias)?
                .unwrap_or_else(|| AliasRecord {
                    alias: alias.to_string(),
                    devices: Vec::new(),
                });
        if current.as_deref() == Some(alias) {
            if let Some(bound) = record.devices.iter_mut().find(|d| d.is(device)) {
                if bound.data == data {
                    return Ok(BindOutcome {
                        record,
                        moved_from: None,
                        changed: false,
                    });
                }
                // Bound again with new provider data: the data is replaced.
                bound.data = data;
                let mut batch = Writes::default();
                batch.insert(alias_key, alias_codec::encode(&record));
                self.write_planned(batch, Vec::new())?;
                return Ok(BindOutcome {
                    record,
                    moved_from: None,
                    changed: false,
                });
            }
        }
        if record.devices.len() >= max_devices {
            return Err(BindError::Full { max: max_devices });
        }
        let mut batch = Writes::default();
        let moved_from = match current {
            Some(old) if old != alias => {
                let old_key = keys::alias(app, &old);
                if let Some(mut old_record) = self.get_alias(&old_key, &old)? {
                    old_record.devices.retain(|d| !d.is(device));
                    if old_record.devices.is_empty() {
                        batch.remove(old_key);
                    } else {
                        batch.insert(old_key, alias_codec::encode(&old_record));
                    }
                }
                Some(old)
            }
            _ => None,
        };
        record.devices.push(BoundDevice {
            provider: device.provider.clone(),
            cid: device.cid.clone(),
            bound_at: now,
            data,
        });
        batch.insert(alias_key, alias_codec::encode(&record));
        batch.insert(device_key, alias.as_bytes());
        let depth = self.plan(mirror(std::slice::from_ref(device)), &mut batch)?;
        self.write_planned(batch, depth)?;
        Ok(BindOutcome {
            record,
            moved_from,
            changed: true,
        })
    }

    async fn unbind_device(
        &self,
        app: &str,
        alias: &str,
        device: &DeviceRef,
        mirror: MirrorPlan<'_>,
    ) -> Result<bool, StoreError> {
        let _guard = self.lock_identity();
        let alias_key = keys::alias(app, alias);
        let Some(mut record) = self.get_alias(&alias_key, alias)? else {
            return Ok(false);
        };
        let before = record.devices.len();
        record.devices.retain(|d| !d.is(device));
        if record.devices.len() == before {
            return Ok(false);
        }
        let mut batch = Writes::default();
        if record.devices.is_empty() {
            batch.remove(alias_key);
        } else {
            batch.insert(alias_key, alias_codec::encode(&record));
        }
        let device_key = keys::device(app, device);
        if self.get_string(&device_key)?.as_deref() == Some(alias) {
            batch.remove(device_key);
        }
        let depth = self.plan(mirror(std::slice::from_ref(device)), &mut batch)?;
        self.write_planned(batch, depth)?;
        Ok(true)
    }

    async fn unbind_alias(
        &self,
        app: &str,
        alias: &str,
        mirror: MirrorPlan<'_>,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let _guard = self.lock_identity();
        let alias_key = keys::alias(app, alias);
        let Some(record) = self.get_alias(&alias_key, alias)? else {
            return Ok(None);
        };
        let mut batch = Writes::default();
        batch.remove(alias_key);
        for bound in &record.devices {
            let device_key = keys::device(app, &bound.device());
            if self.get_string(&device_key)?.as_deref() == Some(alias) {
                batch.remove(device_key);
            }
        }
        let devices: Vec<DeviceRef> = record.devices.iter().map(|d| d.device()).collect();
        let depth = self.plan(mirror(&devices), &mut batch)?;
        self.write_planned(batch, depth)?;
        Ok(Some(record))
    }

    async fn alias(&self, app: &str, alias: &str) -> Result<Option<AliasRecord>, StoreError> {
        self.get_alias(&keys::alias(app, alias), alias)
    }

    async fn device_alias(
        &self,
        app: &str,
        device: &DeviceRef,
    ) -> Result<Option<String>, StoreError> {
        self.get_string(&keys::device(app, device))
    }
}

#[async_trait]
impl<K: Kv> DeliveryStore for KvStore<K> {
    async fn apply(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let _guard = reads_what_it_changes(&ops).then(|| self.lock_identity());
        let ended = EndedClaims::of(&ops);
        let mut batch = Writes::default();
        let depth_changes = self.plan(ops, &mut batch)?;
        self.write_planned(batch, depth_changes)?;
        self.end_claims(ended);
        Ok(())
    }

    async fn commit(&self) -> Result<(), StoreError> {
        self.kv.commit().await
    }

    async fn message(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        self.get(&keys::message(id))
    }

    async fn deliveries(&self, id: MessageId) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.kv
            .scan_prefix(&keys::deliveries_of(id))
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.get(&keys::delivery(id))
    }

    async fn idempotency(
        &self,
        app: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyEntry>, StoreError> {
        self.get(&keys::idempotency(app, request_id))
    }

    async fn delivery_by_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<DeliveryId>, StoreError> {
        Ok(self
            .kv
            .get(&keys::reference(provider, reference))?
            .and_then(|v| DeliveryId::from_bytes(&v)))
    }

    async fn early_receipt(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<Receipt>, StoreError> {
        self.get(&keys::early_receipt(provider, reference))
    }

    async fn gone_device(&self, device: &DeviceRef) -> Result<Option<u64>, StoreError> {
        // A decimal number (as JSON), not a record.
        let key = keys::gone_device(device);
        self.get_string(&key)?
            .map(|at| {
                at.parse().map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: format!("{at:?} is not a time"),
                })
            })
            .transpose()
    }

    async fn claim_due(
        &self,
        provider: &str,
        from: u64,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<(u64, DeliveryId)>, StoreError> {
        let prefix = keys::outbox_prefix(provider);
        let end = keys::time_bound(&prefix, now);
        let mut found = Vec::new();
        {
            let held = self.delivery_claims.held(now);
            for item in self.kv.range(keys::time_start(&prefix, from), Some(end)) {
                if found.len() >= limit {
                    break;
                }
                let (k, _) = item?;
                if let Some((due, id)) = keys::parse_outbox(&k, prefix.len()) {
                    if !held.contains(&id) {
                        found.push((due, id));
                    }
                }
            }
        }
        Ok(self.delivery_claims.claim(found, |(_, id)| *id, lease, now))
    }

    async fn release(&self, id: DeliveryId, owner: &str) -> Result<(), StoreError> {
        self.delivery_claims.release(&id, owner);
        Ok(())
    }

    async fn claimed(&self, id: DeliveryId, now: u64) -> Result<bool, StoreError> {
        Ok(self.delivery_claims.is_held(&id, now))
    }

    async fn next_due(&self, provider: &str) -> Result<Option<u64>, StoreError> {
        let prefix = keys::outbox_prefix(provider);
        Ok(self
            .first_key_with_prefix(&prefix)?
            .and_then(|k| keys::parse_outbox(&k, prefix.len()))
            .map(|(due, _)| due))
    }

    async fn outbox_depth(&self, provider: &str) -> Result<u64, StoreError> {
        Ok({
            self.depths()
                .by_provider
                .get(provider)
                .copied()
                .unwrap_or(0)
        })
    }

    fn failure(&self) -> Option<String> {
        self.kv.failure()
    }

    async fn backlog(&self, app: &str) -> Result<u64, StoreError> {
        Ok(self.depths().by_app.get(app).copied().unwrap_or(0))
    }

    async fn claim_timers(
        &self,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<(u64, MessageId, Timer)>, StoreError> {
        let end = keys::time_bound(&[keys::EXPIRY], now);
        let mut found = Vec::new();
        {
            let held = self.timer_claims.held(now);
            for item in self.kv.range(vec![keys::EXPIRY], Some(end)) {
                if found.len() >= limit {
                    break;
                }
                let (k, v) = item?;
                if let Some((at, id)) = keys::parse_timed(&k) {
                    if held.contains(&id) {
                        continue;
                    }
                    let timer = if v.as_ref() == PURGE_MARK {
                        Timer::Purge
                    } else {
                        Timer::Expire
                    };
                    found.push((at, id, timer));
                }
            }
        }
        Ok(self.timer_claims.claim(found, |(_, id, _)| *id, lease, now))
    }

    async fn release_timer(&self, message: MessageId, owner: &str) -> Result<(), StoreError> {
        self.timer_claims.release(&message, owner);
        Ok(())
    }

    async fn remove_due(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let end = keys::time_bound(&[keys::REMOVAL], now);
        let mut batch = Writes::default();
        let mut n = 0;
        for item in self.kv.range(vec![keys::REMOVAL], Some(end)).take(limit) {
            let (k, target) = item?;
            batch.remove(target.as_ref());
            batch.remove(k.as_ref());
            n += 1;
        }
        if n > 0 {
            self.write(batch)?;
        }
        Ok(n)
    }

    async fn next_removal(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .first_key_with_prefix(&[keys::REMOVAL])?
            .and_then(|k| keys::parse_timed(&k))
            .map(|(at, _)| at))
    }

    async fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .first_key_with_prefix(&[keys::EXPIRY])?
            .and_then(|k| keys::parse_timed(&k))
            .map(|(at, _)| at))
    }

    async fn claim_events(
        &self,
        from: u64,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.claim_records(
            keys::EVENT,
            from,
            now,
            limit,
            lease,
            &self.event_claims,
            |e: &EventRecord| e.id,
        )
    }

    async fn release_event(&self, id: MessageId, owner: &str) -> Result<(), StoreError> {
        self.event_claims.release(&id, owner);
        Ok(())
    }

    async fn upstream(
        &self,
        provider: &str,
        msgid: &str,
    ) -> Result<Option<UpstreamRecord>, StoreError> {
        self.get(&keys::upstream(provider, msgid))
    }

    async fn next_ordered(
        &self,
        key: &str,
        after: Option<MessageId>,
    ) -> Result<Option<EventRecord>, StoreError> {
        self.first_ordered(key, after)
    }

    async fn logged_events(
        &self,
        app: &str,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let prefix = keys::event_log_prefix(app);
        let start = match after {
            // The smallest key greater than `after`'s own.
            Some(id) => {
                let mut k = keys::event_log(app, id);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut events = Vec::new();
        for item in self.kv.range(start, prefix_end(&prefix)).take(limit) {
            let (k, v) = item?;
            events.push(decode(&k, &v)?);
        }
        Ok(events)
    }

    async fn prune_event_log(&self, before: u64, limit: usize) -> Result<usize, StoreError> {
        let mut batch = Writes::default();
        let mut n = 0;
        let mut start = vec![keys::EVENT_LOG];
        let end = prefix_end(&[keys::EVENT_LOG]);
        'apps: while n < limit {
            for item in self.kv.range(start.clone(), end.clone()) {
                let (k, _) = item?;
                let Some((app_len, id)) = keys::parse_event_log(&k) else {
                    continue;
                };
                if id.0.timestamp_ms() < before {
                    batch.remove(k.as_ref());
                    n += 1;
                    if n >= limit {
                        break 'apps;
                    }
                    continue;
                }
                // The rest of this app's log is newer: go on with the next app's.
                match prefix_end(&k[..app_len]) {
                    Some(next) => start = next,
                    None => break 'apps,
                }
                continue 'apps;
            }
            break;
        }
        if n > 0 {
            self.write(batch)?;
        }
        Ok(n)
    }

    async fn apply_if(&self, guards: Vec<Guard>, ops: Vec<WriteOp>) -> Result<bool, StoreError> {
        // Records are encoded before taking the lock, unless planning reads the store.
        let ended = EndedClaims::of(&ops);
        let mut batch = Writes::default();
        let (planned, later) = if reads_what_it_changes(&ops) {
            (None, Some(ops))
        } else {
            (Some(self.plan(ops, &mut batch)?), None)
        };
        let _guard = self.lock_identity();
        for guard in &guards {
            if !self.holds(guard)? {
                return Ok(false);
            }
        }
        let depth_changes = match (planned, later) {
            (Some(depth_changes), _) => depth_changes,
            (None, Some(ops)) => self.plan(ops, &mut batch)?,
            (None, None) => Vec::new(),
        };
        self.write_planned(batch, depth_changes)?;
        self.end_claims(ended);
        Ok(true)
    }

    async fn claim_alias_mirrors(
        &self,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<AliasMirror>, StoreError> {
        self.claim_records(
            keys::MIRROR,
            0,
            now,
            limit,
            lease,
            &self.mirror_claims,
            |m: &AliasMirror| m.id,
        )
    }

    async fn release_alias_mirror(&self, id: MessageId, owner: &str) -> Result<(), StoreError> {
        self.mirror_claims.release(&id, owner);
        Ok(())
    }

    async fn next_alias_mirror(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .first_key_with_prefix(&[keys::MIRROR])?
            .and_then(|k| keys::parse_timed(&k))
            .map(|(due, _)| due))
    }

    async fn next_event_due(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .first_key_with_prefix(&[keys::EVENT])?
            .and_then(|k| keys::parse_timed(&k))
            .map(|(due, _)| due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_store::no_mirrors;

    fn open() -> crate::MemoryStore {
        crate::memory_store()
    }

    /// A lease that has already passed: claims taken with it never hold, so a listing can be
    /// repeated.
    fn test_lease() -> Lease {
        Lease {
            owner: "t".into(),
            until: 0,
        }
    }

    #[tokio::test]
    async fn the_event_log_pages_per_app_and_prunes_by_age() {
        let store = open();
        let logged = |app: &str, ms: u64| EventRecord {
            id: MessageId::from_bytes(((u128::from(ms) << 80) | rand_part(app, ms)).to_be_bytes()),
            app: app.into(),
            kind: pushgate_api::model::EventKind::MessageDelivered,
            created_at: ms,
            data: serde_json::json!({"at": ms}),
            attempts: 0,
            next_attempt_at: ms,
            ordering_key: None,
        };
        fn rand_part(app: &str, ms: u64) -> u128 {
            u128::from(ms) * 7 + app.len() as u128
        }
        let mut ops = Vec::new();
        for ms in [1_000, 2_000, 3_000, 4_000] {
            ops.push(WriteOp::LogEvent(logged("a", ms)));
            ops.push(WriteOp::LogEvent(logged("bb", ms)));
        }
        store.apply(ops).await.expect("apply");
        let all = store.logged_events("a", None, 10).await.expect("read");
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|e| e.app == "a"));
        let after = store
            .logged_events("a", Some(all[1].id), 1)
            .await
            .expect("page");
        assert_eq!(after, vec![all[2].clone()]);
        // Older than 2,500 ms: two of each app's, in one batch or in several.
        assert_eq!(store.prune_event_log(2_500, 3).await.expect("prune"), 3);
        assert_eq!(store.prune_event_log(2_500, 100).await.expect("prune"), 1);
        assert_eq!(store.prune_event_log(2_500, 100).await.expect("prune"), 0);
        for app in ["a", "bb"] {
            let left = store.logged_events(app, None, 10).await.expect("read");
            let times: Vec<u64> = left.iter().map(|e| e.created_at).collect();
            assert_eq!(times, [3_000, 4_000], "{app}");
        }
    }

    #[tokio::test]
    async fn only_the_head_of_an_ordered_queue_is_due() {
        let store = open();
        let event = |key: &str| EventRecord {
            id: MessageId::generate(),
            app: "demo".into(),
            kind: pushgate_api::model::EventKind::UpstreamReceived,
            created_at: 1,
            data: serde_json::Value::Null,
            attempts: 0,
            next_attempt_at: 1,
            ordering_key: Some(key.into()),
        };
        let (a1, b1, a2) = (event("a"), event("b"), event("a"));
        for e in [&a1, &b1, &a2] {
            store
                .apply(vec![WriteOp::EnqueueOrdered(e.clone())])
                .await
                .expect("enqueue");
        }
        let lease = Lease {
            owner: "n".into(),
            until: 1_000,
        };
        let due: Vec<MessageId> = store
            .claim_events(0, 10, 10, &lease)
            .await
            .expect("due")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(due, vec![a1.id, b1.id], "a2 waits behind a1");
        assert_eq!(
            store
                .next_ordered("a", Some(a1.id))
                .await
                .expect("next")
                .map(|e| e.id),
            Some(a2.id)
        );
        // a1 is done: a2 becomes due at `now`.
        store
            .apply(vec![
                WriteOp::DeleteEvent {
                    due: a1.next_attempt_at,
                    id: a1.id,
                },
                WriteOp::AdvanceOrdered {
                    key: "a".into(),
                    done: a1.id,
                    now: 5,
                },
            ])
            .await
            .expect("advance");
        let due = store.claim_events(0, 10, 10, &lease).await.expect("due");
        assert_eq!(due.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a2.id]);
        assert_eq!(due[0].next_attempt_at, 5);
        assert!(store.next_ordered("c", None).await.expect("none").is_none());
        let mut no_key = event("x");
        no_key.ordering_key = None;
        assert!(store
            .apply(vec![WriteOp::EnqueueOrdered(no_key)])
            .await
            .is_err());
    }

    /// A recorded outcome takes the claimed entry out, and the claim goes with it (as the
    /// row going does on PostgreSQL): a retry written with it is claimable at once, with no
    /// release.
    #[tokio::test]
    async fn taking_an_entry_out_ends_its_claim() {
        let store = open();
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 0,
        };
        let schedule = |due| WriteOp::Schedule {
            provider: "p".into(),
            due,
            id,
            app: "demo".into(),
        };
        store.apply(vec![schedule(1)]).await.expect("schedule");
        let lease = |owner: &str| Lease {
            owner: owner.into(),
            until: 1_000,
        };
        let claimed = store.claim_due("p", 0, 10, 10, &lease("a")).await;
        assert_eq!(claimed.expect("claim"), vec![(1, id)]);
        store.apply(vec![schedule(2)]).await.expect("schedule");
        assert!(
            store
                .claim_due("p", 0, 10, 10, &lease("b"))
                .await
                .expect("claim")
                .is_empty(),
            "held while its entry is there"
        );
        store
            .apply(vec![WriteOp::Unschedule {
                provider: "p".into(),
                due: 1,
                id,
            }])
            .await
            .expect("unschedule");
        assert!(!store.claimed(id, 10).await.expect("claimed"));
        let claimed = store.claim_due("p", 0, 10, 10, &lease("b")).await;
        assert_eq!(claimed.expect("claim"), vec![(2, id)]);

        let event = EventRecord {
            id: MessageId::generate(),
            app: "demo".into(),
            kind: pushgate_api::model::EventKind::MessageDelivered,
            created_at: 1,
            data: serde_json::Value::Null,
            attempts: 0,
            next_attempt_at: 1,
            ordering_key: None,
        };
        store
            .apply(vec![WriteOp::PutEvent(event.clone())])
            .await
            .expect("put");
        assert_eq!(
            store
                .claim_events(0, 10, 10, &lease("a"))
                .await
                .expect("claim")
                .len(),
            1
        );
        let mut retry = event.clone();
        retry.next_attempt_at = 3;
        store
            .apply(vec![
                WriteOp::DeleteEvent {
                    due: 1,
                    id: event.id,
                },
                WriteOp::PutEvent(retry),
            ])
            .await
            .expect("reschedule");
        let again = store
            .claim_events(0, 10, 10, &lease("b"))
            .await
            .expect("claim");
        assert_eq!(
            again.iter().map(|e| e.next_attempt_at).collect::<Vec<_>>(),
            vec![3]
        );
    }

    #[tokio::test]
    async fn a_delivery_is_written_only_over_the_version_it_was_read_at() {
        let store = open();
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 0,
        };
        let mut d = DeliveryRecord::queued(id, &device("c1"), 1);
        d.next_attempt_at = None;
        let put = |d: &DeliveryRecord, version: u64| {
            let mut d = d.clone();
            d.version = version + 1;
            (
                vec![Guard::DeliveryVersion { id, version }],
                vec![WriteOp::PutDelivery(d)],
            )
        };
        let (guards, ops) = put(&d, 0);
        assert!(
            store.apply_if(guards, ops).await.expect("new"),
            "absent counts as 0"
        );
        let (guards, ops) = put(&d, 1);
        assert!(store.apply_if(guards, ops).await.expect("next"));
        // A writer that read version 1 too is too late: nothing changes.
        let mut stale = d.clone();
        stale.attempts = 99;
        let (guards, ops) = put(&stale, 1);
        assert!(!store.apply_if(guards, ops).await.expect("stale"));
        let stored = store.delivery(id).await.expect("read").expect("stored");
        assert_eq!((stored.version, stored.attempts), (2, 0));
    }

    #[tokio::test]
    async fn binding_again_with_new_data_replaces_it_in_place() {
        let store = open();
        let with = |data: serde_json::Value| Binding {
            device: device("c1"),
            data: Some(data),
            max_devices: 1,
            now: 1,
        };
        let first = store
            .bind_device("app", "a", with(serde_json::json!({"v": 1})), &no_mirrors)
            .await
            .expect("bind");
        assert!(first.changed);
        let again = store
            .bind_device("app", "a", with(serde_json::json!({"v": 2})), &no_mirrors)
            .await
            .expect("rebind");
        assert!(!again.changed, "no move, no mirror: the same binding");
        let record = store.alias("app", "a").await.expect("read").expect("alias");
        assert_eq!(record.devices.len(), 1, "the alias limit of 1 is not hit");
        assert_eq!(record.devices[0].data, Some(serde_json::json!({"v": 2})));
    }

    #[tokio::test]
    async fn a_guarded_write_happens_once() {
        let store = open();
        let guard = || {
            vec![Guard::NewRequest {
                app: "demo".into(),
                request_id: "r1".into(),
            }]
        };
        let entry = IdempotencyEntry {
            message_id: MessageId::generate(),
            fingerprint: "f".into(),
            deliveries: 1,
        };
        let put = || {
            vec![WriteOp::PutIdempotency {
                app: "demo".into(),
                request_id: "r1".into(),
                entry: entry.clone(),
            }]
        };
        assert!(store.apply_if(guard(), put()).await.expect("first"));
        assert!(!store.apply_if(guard(), put()).await.expect("second"));
        assert_eq!(
            store.idempotency("demo", "r1").await.expect("read"),
            Some(entry.clone())
        );
    }

    #[tokio::test]
    async fn scheduled_removals_remove_their_record_when_due() {
        let store = open();
        let record = UpstreamRecord {
            id: MessageId::generate(),
            app: "demo".into(),
            provider: "mock".into(),
            cid: "c1".into(),
            msgid: "m1".into(),
            from: None,
            payload: "hi".into(),
            received_at: 1,
            sent_at: None,
        };
        store
            .apply(vec![
                WriteOp::PutUpstream(record.clone()),
                WriteOp::ScheduleRemoval {
                    at: 10,
                    id: record.id,
                    target: Removable::Upstream {
                        provider: "mock".into(),
                        msgid: "m1".into(),
                    },
                },
            ])
            .await
            .expect("apply");
        assert_eq!(store.next_removal().await.expect("next"), Some(10));
        assert_eq!(store.remove_due(9, 10).await.expect("early"), 0);
        assert!(store.upstream("mock", "m1").await.expect("read").is_some());
        assert_eq!(store.remove_due(10, 10).await.expect("due"), 1);
        assert!(store.upstream("mock", "m1").await.expect("read").is_none());
        assert_eq!(store.next_removal().await.expect("next"), None);
    }

    fn device(cid: &str) -> DeviceRef {
        DeviceRef {
            provider: "mock".into(),
            cid: cid.into(),
        }
    }

    #[tokio::test]
    async fn json_records_of_earlier_versions_read_and_take_guarded_writes() {
        let store = open();
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 0,
        };
        let mut old = DeliveryRecord::queued(id, &device("c1"), 5);
        old.version = 3;
        let json = serde_json::to_vec(&old).unwrap_or_default();
        store
            .kv()
            .write(vec![(keys::delivery(id).to_vec(), Some(json))])
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .kv()
            .write(vec![(
                keys::gone_device(&device("c1")),
                Some(b"1700".to_vec()),
            )])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.delivery(id).await.ok().flatten(), Some(old.clone()));
        assert_eq!(
            store.gone_device(&device("c1")).await.ok().flatten(),
            Some(1700)
        );

        let mut newer = old.clone();
        newer.version = 4;
        let guard = |version| vec![Guard::DeliveryVersion { id, version }];
        let put = |d: &DeliveryRecord| vec![WriteOp::PutDelivery(d.clone())];
        assert_eq!(
            store.apply_if(guard(2), put(&newer)).await.ok(),
            Some(false)
        );
        assert_eq!(store.apply_if(guard(3), put(&newer)).await.ok(), Some(true));
        assert_eq!(store.delivery(id).await.ok().flatten(), Some(newer));
        // Now stored in the binary encoding, its version still read without decoding.
        let stored = store.kv().get(&keys::delivery(id)).ok().flatten();
        assert_ne!(
            stored.as_ref().and_then(|b| b.as_ref().first()),
            Some(&b'{')
        );
        assert_eq!(store.apply_if(guard(3), put(&old)).await.ok(), Some(false));
    }

    #[tokio::test]
    async fn binding_moves_devices_and_enforces_the_limit() {
        let store = open();
        let out = store
            .bind_device("app", "alice", Binding::of(device("c1"), 2, 1), &no_mirrors)
            .await
            .expect("bind");
        assert!(out.changed);
        let again = store
            .bind_device("app", "alice", Binding::of(device("c1"), 2, 2), &no_mirrors)
            .await
            .expect("rebind");
        assert!(!again.changed);
        assert_eq!(again.record.devices.len(), 1);
        store
            .bind_device("app", "alice", Binding::of(device("c2"), 2, 3), &no_mirrors)
            .await
            .expect("second device");
        let full = store
            .bind_device("app", "alice", Binding::of(device("c3"), 2, 4), &no_mirrors)
            .await;
        assert!(matches!(full, Err(BindError::Full { max: 2 })));

        // c1 moves to bob: alice keeps c2 only.
        let moved = store
            .bind_device("app", "bob", Binding::of(device("c1"), 2, 5), &no_mirrors)
            .await
            .expect("move");
        assert_eq!(moved.moved_from.as_deref(), Some("alice"));
        let alice = store
            .alias("app", "alice")
            .await
            .expect("get")
            .expect("alice");
        assert_eq!(alice.devices.len(), 1);
        assert_eq!(alice.devices[0].cid, "c2");
        assert_eq!(
            store
                .device_alias("app", &device("c1"))
                .await
                .expect("get")
                .as_deref(),
            Some("bob")
        );
        // Other apps are separate namespaces.
        assert!(store.alias("other", "bob").await.expect("get").is_none());

        assert!(store
            .unbind_device("app", "bob", &device("c1"), &no_mirrors)
            .await
            .expect("unbind"));
        assert!(!store
            .unbind_device("app", "bob", &device("c1"), &no_mirrors)
            .await
            .expect("unbind"));
        assert!(store.alias("app", "bob").await.expect("get").is_none());
        let removed = store
            .unbind_alias("app", "alice", &no_mirrors)
            .await
            .expect("unbind all");
        assert_eq!(removed.map(|r| r.devices.len()), Some(1));
        assert!(store
            .device_alias("app", &device("c2"))
            .await
            .expect("get")
            .is_none());
    }

    fn mirror(cid: &str, alias: &str, due: u64) -> AliasMirror {
        AliasMirror {
            id: MessageId::generate(),
            app: "app".into(),
            provider: "getui".into(),
            cid: cid.into(),
            alias: alias.into(),
            op: pushgate_api::model::MirrorOp::Bind,
            attempts: 0,
            next_attempt_at: due,
            created_at: due,
        }
    }

    #[tokio::test]
    async fn a_newer_alias_mirror_supersedes_and_old_ones_change_nothing() {
        let store = open();
        let first = mirror("c1", "alice", 10);
        let other = mirror("c2", "bob", 20);
        store
            .apply(vec![
                WriteOp::QueueAliasMirror(first.clone()),
                WriteOp::QueueAliasMirror(other.clone()),
            ])
            .await
            .expect("queue");
        let newer = mirror("c1", "carol", 30);
        store
            .apply(vec![WriteOp::QueueAliasMirror(newer.clone())])
            .await
            .expect("supersede");
        let due = store
            .claim_alias_mirrors(100, 10, &test_lease())
            .await
            .expect("due");
        assert_eq!(
            due,
            vec![other.clone(), newer.clone()],
            "c1's first is gone"
        );
        // The superseded one finishing or retrying touches nothing.
        let mut late = first.clone();
        late.next_attempt_at = 5;
        store
            .apply(vec![
                WriteOp::RetryAliasMirror(late),
                WriteOp::FinishAliasMirror(first),
            ])
            .await
            .expect("stale ops");
        assert_eq!(
            store
                .claim_alias_mirrors(100, 10, &test_lease())
                .await
                .expect("due")
                .len(),
            2
        );
        // The current one is rescheduled, then finished.
        let mut retried = newer.clone();
        retried.attempts = 1;
        retried.next_attempt_at = 50;
        store
            .apply(vec![WriteOp::RetryAliasMirror(retried.clone())])
            .await
            .expect("retry");
        assert_eq!(store.next_alias_mirror().await.expect("next"), Some(20));
        assert_eq!(
            store
                .claim_alias_mirrors(40, 10, &test_lease())
                .await
                .expect("due"),
            vec![other.clone()]
        );
        store
            .apply(vec![WriteOp::FinishAliasMirror(retried)])
            .await
            .expect("finish");
        store
            .apply(vec![WriteOp::FinishAliasMirror(other)])
            .await
            .expect("finish");
        assert_eq!(store.next_alias_mirror().await.expect("next"), None);
    }
}
