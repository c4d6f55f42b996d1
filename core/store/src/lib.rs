//! pushgate-store: the storage contract the engine talks to. Backends implement it: the
//! key-value layer of `pushgate-store-kv` (over sled in `pushgate-store-sled`, or in memory).
//!
//! Multi-record changes go through [`DeliveryStore::apply`] as one atomic list of
//! [`WriteOp`]s; durability is a separate, shared [`DeliveryStore::commit`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use pushgate_api::error::StoreError;
use pushgate_api::model::{
    AliasMirror, AliasRecord, DeliveryId, DeliveryRecord, DeviceRef, EventRecord, MessageId,
    MessageRecord, Receipt, UpstreamRecord,
};

/// A claim on due work: who holds it, and until when (epoch ms). Work whose lease has passed
/// may be claimed again (its holder is presumed dead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The node holding the claim (`[store] node_id`).
    pub owner: std::sync::Arc<str>,
    pub until: u64,
}

impl Lease {
    /// Whether the lease still holds at `now`.
    pub fn live(&self, now: u64) -> bool {
        self.until > now
    }
}

/// A condition of an atomic write, decided by the store in the same atomic step (so that two
/// gateway processes racing on one key cannot both write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// No message of `app` has been accepted with this request id.
    NewRequest { app: String, request_id: String },
    /// No upstream message of `provider` with this msgid has been recorded.
    NewUpstream { provider: String, msgid: String },
    /// The delivery is stored at this version (0: also when it is not stored yet).
    DeliveryVersion { id: DeliveryId, version: u64 },
}

/// A record [`WriteOp::ScheduleRemoval`] can remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removable {
    Upstream { provider: String, msgid: String },
    EarlyReceipt { provider: String, reference: String },
}

/// A device to bind, and the limits of the binding.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    pub device: DeviceRef,
    /// The provider data the provider checked (see `Provider::check_device_data`).
    pub data: Option<serde_json::Value>,
    /// Most devices the alias may hold (`max_devices_per_alias`).
    pub max_devices: usize,
    /// When (epoch ms).
    pub now: u64,
}

impl Binding {
    /// `device` with no data.
    pub fn of(device: DeviceRef, max_devices: usize, now: u64) -> Self {
        Binding {
            device,
            data: None,
            max_devices,
            now,
        }
    }
}

/// The result of binding a device to an alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindOutcome {
    /// The alias with its devices after the bind.
    pub record: AliasRecord,
    /// The alias the device was bound to before, if it moved.
    pub moved_from: Option<String>,
    /// False if the device was already bound to this alias (nothing changed).
    pub changed: bool,
}

/// Why a bind was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BindError {
    #[error("alias already has {max} devices")]
    Full { max: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The alias mirrors a binding change must queue, for the providers that keep aliases
/// themselves (see [`AliasMirror`]): given the devices the change touched, in the same atomic
/// write as the change.
pub type MirrorPlan<'a> = &'a (dyn Fn(&[DeviceRef]) -> Vec<WriteOp> + Send + Sync);

/// A [`MirrorPlan`] for changes no provider mirrors.
pub fn no_mirrors(_devices: &[DeviceRef]) -> Vec<WriteOp> {
    Vec::new()
}

/// Alias ↔ device bindings of each app. A device belongs to at most one alias per app.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Binds a device (with its provider data) to `alias`, moving it from any other alias of
    /// the app; binding it again with other data replaces the data. `mirror` gives the ops
    /// written with a new binding (not called when the device stays where it is).
    async fn bind_device(
        &self,
        app: &str,
        alias: &str,
        binding: Binding,
        mirror: MirrorPlan<'_>,
    ) -> Result<BindOutcome, BindError>;

    /// Unbinds one device from an alias; false if it was not bound there.
    async fn unbind_device(
        &self,
        app: &str,
        alias: &str,
        device: &DeviceRef,
        mirror: MirrorPlan<'_>,
    ) -> Result<bool, StoreError>;

    /// Unbinds every device of an alias; returns what was bound, if anything.
    async fn unbind_alias(
        &self,
        app: &str,
        alias: &str,
        mirror: MirrorPlan<'_>,
    ) -> Result<Option<AliasRecord>, StoreError>;

    /// The alias and its devices.
    async fn alias(&self, app: &str, alias: &str) -> Result<Option<AliasRecord>, StoreError>;

    /// The alias a device is bound to.
    async fn device_alias(
        &self,
        app: &str,
        device: &DeviceRef,
    ) -> Result<Option<String>, StoreError>;
}

/// What an idempotency key maps to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    pub message_id: MessageId,
    /// Hex digest of the request that created it; a different request with the same key
    /// is a conflict.
    pub fingerprint: String,
    pub deliveries: u16,
}

/// What a message timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The TTL passed: expire what is unfinished.
    Expire,
    /// The retention passed: remove the message and its deliveries.
    Purge,
}

/// One change within an atomic [`DeliveryStore::apply`].
#[derive(Clone, Debug)]
pub enum WriteOp {
    PutMessage(MessageRecord),
    PutDelivery(DeliveryRecord),
    /// Puts the delivery in its provider's outbox, due at `due` (epoch ms); counted in the
    /// backlog of `app` (empty: of none, as a receipt-timeout resend).
    Schedule {
        provider: String,
        due: u64,
        id: DeliveryId,
        app: String,
    },
    /// Takes an outbox entry out (it must exist: the engine knows its `due`), and with it
    /// any claim on the delivery.
    Unschedule {
        provider: String,
        due: u64,
        id: DeliveryId,
    },
    /// Maps a provider reference (e.g. a Getui taskid) to a delivery for receipts. A
    /// reference that is the delivery id itself is never indexed: the engine finds it by id.
    PutReference {
        provider: String,
        reference: String,
        id: DeliveryId,
    },
    PutIdempotency {
        app: String,
        request_id: String,
        entry: IdempotencyEntry,
    },
    /// Indexes a message for the TTL sweeper.
    ScheduleExpiry {
        at: u64,
        message: MessageId,
    },
    /// Indexes a finished message for removal (retention).
    SchedulePurge {
        at: u64,
        message: MessageId,
    },
    /// Removes a message record (its deliveries, references and idempotency key are removed
    /// by their own ops).
    DeleteMessage(MessageId),
    DeleteDelivery(DeliveryId),
    DeleteReference {
        provider: String,
        reference: String,
    },
    DeleteIdempotency {
        app: String,
        request_id: String,
    },
    UnscheduleExpiry {
        at: u64,
        message: MessageId,
    },
    /// Adds or replaces an event, keyed by its `next_attempt_at`.
    PutEvent(EventRecord),
    /// Takes an event out, and with it any claim on it.
    DeleteEvent {
        due: u64,
        id: MessageId,
    },
    /// Keeps a receipt that arrived before its send was recorded.
    PutEarlyReceipt {
        provider: String,
        receipt: Receipt,
    },
    DeleteEarlyReceipt {
        provider: String,
        reference: String,
    },
    /// Records that the provider reported the device gone at `at` (kept until a bind of it
    /// clears it).
    PutGoneDevice {
        device: DeviceRef,
        at: u64,
    },
    /// Forgets that a device was reported gone (it was bound again).
    DeleteGoneDevice(DeviceRef),
    /// Records an upstream message (also its dedupe key).
    PutUpstream(UpstreamRecord),
    /// Removes a record that nothing else cleans up (an upstream dedupe record, an early
    /// receipt whose send never came) at time `at`; `id` only keeps schedules apart.
    ScheduleRemoval {
        at: u64,
        id: MessageId,
        target: Removable,
    },
    /// Appends an event to its ordering key's queue; if the queue was empty the event is
    /// its head and also goes into the event outbox (due at its `next_attempt_at`). Only a
    /// queue's head is ever due, so a key's events reach the app server one at a time.
    EnqueueOrdered(EventRecord),
    /// Keeps the queued copy of an event in step (its attempts) while it is retried.
    UpdateOrdered(EventRecord),
    /// Removes `done` (the head) from `key`'s queue; the next event becomes due at `now`.
    AdvanceOrdered {
        key: String,
        done: MessageId,
        now: u64,
    },
    /// Queues an alias mirror, superseding any mirror still pending for the same device
    /// (provider, app, cid).
    QueueAliasMirror(AliasMirror),
    /// Reschedules a mirror (at its `next_attempt_at`), if it is still its device's current one.
    RetryAliasMirror(AliasMirror),
    /// Removes a mirror the provider took, if it is still its device's current one.
    FinishAliasMirror(AliasMirror),
    /// Appends an event to its app's event log (what the event stream serves and resumes
    /// from), kept until [`DeliveryStore::prune_event_log`] drops it.
    LogEvent(EventRecord),
}

/// Messages, deliveries, the outbox, the TTL index and the webhook event outbox.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Applies every op atomically (all or none). Applied ops are durable after the next
    /// commit, or after the backend's own background sync (the sled backend: 100 ms).
    async fn apply(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;

    /// Applies `ops` atomically if every guard holds; `false` (and nothing written) if one
    /// does not.
    async fn apply_if(&self, guards: Vec<Guard>, ops: Vec<WriteOp>) -> Result<bool, StoreError>;

    /// Returns once every write made before the call is on disk (group commit).
    async fn commit(&self) -> Result<(), StoreError>;

    async fn message(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError>;
    async fn deliveries(&self, id: MessageId) -> Result<Vec<DeliveryRecord>, StoreError>;
    async fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;
    async fn idempotency(
        &self,
        app: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyEntry>, StoreError>;
    async fn delivery_by_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<DeliveryId>, StoreError>;
    /// When the provider reported `device` gone, if it did (and it was not bound since).
    async fn gone_device(&self, device: &DeviceRef) -> Result<Option<u64>, StoreError>;

    async fn early_receipt(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<Receipt>, StoreError>;

    /// Claims up to `limit` deliveries of `provider` due from `from` to `now` (inclusive),
    /// oldest first, that no live lease holds, for `lease`; returns them with their due times.
    /// A claimed delivery is sent by its holder only; once the lease has passed (its holder
    /// died mid-send) another claim may take it. The holder ends it with
    /// [`DeliveryStore::release`].
    async fn claim_due(
        &self,
        provider: &str,
        from: u64,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<(u64, DeliveryId)>, StoreError>;

    /// Ends `owner`'s claim on a delivery that needed no send, or whose outcome could not be
    /// recorded (a recorded outcome took the claimed entry out, which ended the claim).
    async fn release(&self, id: DeliveryId, owner: &str) -> Result<(), StoreError>;

    /// Whether a live lease (at `now`) holds the delivery: a send of it is under way.
    async fn claimed(&self, id: DeliveryId, now: u64) -> Result<bool, StoreError>;

    /// The earliest due time in `provider`'s outbox.
    async fn next_due(&self, provider: &str) -> Result<Option<u64>, StoreError>;

    /// How many deliveries wait in `provider`'s outbox (a backend may answer from a count
    /// it keeps, or one at most a second old).
    async fn outbox_depth(&self, provider: &str) -> Result<u64, StoreError>;

    /// How many deliveries of `app` wait in the outboxes (its backlog; cached as
    /// `outbox_depth`).
    async fn backlog(&self, app: &str) -> Result<u64, StoreError>;

    /// Why the store cannot take writes any more (say its journal failed), if so. Once
    /// failed, the workers send nothing more (reads may show changes that are not durable)
    /// and the gateway stops so that a restart recovers.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Why the store cannot be reached right now, if so (a shared database that is down or
    /// restarting): requests fail with `503 storage_unavailable` and `/readyz` says why, and
    /// everything resumes when it is back. Unlike [`DeliveryStore::failure`], nothing stops.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Records that `node` runs a dispatcher for `provider` at `now` (epoch ms) and returns
    /// how many nodes (this one included) did so within the last `within_ms`: a provider's
    /// `qps` is split among them. A store of one node answers 1.
    async fn live_dispatchers(
        &self,
        _provider: &str,
        _node: &str,
        _now: u64,
        _within_ms: u64,
    ) -> Result<u64, StoreError> {
        Ok(1)
    }

    /// A secret every node on this store shares (the key of device-ack tokens, say): the
    /// one stored under `name`, or `fresh`, stored now, if there is none. `None` if the
    /// backend keeps no secrets (a store of one node: the node keeps its own).
    async fn shared_secret(
        &self,
        _name: &str,
        _fresh: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    /// Claims up to `limit` message timers (TTL expiry, retention purge) due at or before
    /// `now` that no live lease holds, for `lease`, so each is handled by one node.
    async fn claim_timers(
        &self,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<(u64, MessageId, Timer)>, StoreError>;

    /// Ends `owner`'s claim on a message timer.
    async fn release_timer(&self, message: MessageId, owner: &str) -> Result<(), StoreError>;

    /// The earliest TTL index entry.
    async fn next_expiry(&self) -> Result<Option<u64>, StoreError>;

    /// Carries out up to `limit` scheduled removals due at or before `now`; returns how
    /// many.
    async fn remove_due(&self, now: u64, limit: usize) -> Result<usize, StoreError>;

    /// When the earliest scheduled removal is due.
    async fn next_removal(&self) -> Result<Option<u64>, StoreError>;

    /// Claims up to `limit` webhook events due from `from` to `now` (inclusive), oldest
    /// first, that no live lease holds, for `lease` (as [`DeliveryStore::claim_due`]).
    async fn claim_events(
        &self,
        from: u64,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// Ends `owner`'s claim on an event whose outcome could not be recorded (a recorded one
    /// took the event out, which ended the claim).
    async fn release_event(&self, id: MessageId, owner: &str) -> Result<(), StoreError>;

    /// The earliest due time in the event outbox.
    async fn next_event_due(&self) -> Result<Option<u64>, StoreError>;

    /// An upstream message already recorded for `(provider, msgid)`.
    async fn upstream(
        &self,
        provider: &str,
        msgid: &str,
    ) -> Result<Option<UpstreamRecord>, StoreError>;

    /// Claims up to `limit` alias mirrors due at or before `now`, oldest first, that no live
    /// lease holds, for `lease`.
    async fn claim_alias_mirrors(
        &self,
        now: u64,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<AliasMirror>, StoreError>;

    /// Ends `owner`'s claim on an alias mirror.
    async fn release_alias_mirror(&self, id: MessageId, owner: &str) -> Result<(), StoreError>;

    /// When the earliest pending alias mirror is due.
    async fn next_alias_mirror(&self) -> Result<Option<u64>, StoreError>;

    /// Up to `limit` events of `app`'s event log after `after` (from the oldest kept when
    /// `None`), in id order.
    async fn logged_events(
        &self,
        app: &str,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// Drops up to `limit` logged events whose ids were made before `before` (epoch ms);
    /// returns how many.
    async fn prune_event_log(&self, before: u64, limit: usize) -> Result<usize, StoreError>;

    /// The oldest queued event of an ordering key, after `after` if given.
    async fn next_ordered(
        &self,
        key: &str,
        after: Option<MessageId>,
    ) -> Result<Option<EventRecord>, StoreError>;
}

/// A complete storage backend.
pub trait Store: IdentityStore + DeliveryStore {}

impl<T: IdentityStore + DeliveryStore> Store for T {}
