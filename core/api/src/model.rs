//! Domain types shared by the engine, the store and the adapters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// A device as a provider knows it: the provider's configured name and its client id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceRef {
    pub provider: String,
    pub cid: String,
}

/// A device bound to an alias, with the time of binding (epoch ms) and the provider data
/// it was bound with (a Web Push subscription's endpoint and keys), as its provider checked it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundDevice {
    pub provider: String,
    pub cid: String,
    pub bound_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl BoundDevice {
    /// The device without its binding time.
    pub fn device(&self) -> DeviceRef {
        DeviceRef {
            provider: self.provider.clone(),
            cid: self.cid.clone(),
        }
    }

    /// Whether this binding is for `device`.
    pub fn is(&self, device: &DeviceRef) -> bool {
        self.provider == device.provider && self.cid == device.cid
    }
}

/// An alias (an app's user id) and the devices bound to it, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub alias: String,
    pub devices: Vec<BoundDevice>,
}

/// Where a message goes: every device of an alias, or one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    Alias(String),
    Device(DeviceRef),
}

/// A time-ordered message id (a ULID, rendered in Crockford base32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub Ulid);

impl MessageId {
    /// A fresh id ordered after every id made earlier by this process.
    pub fn generate() -> Self {
        static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
        let mut guard = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
        let generator = guard.get_or_insert_with(ulid::Generator::new);
        // Monotonic within a millisecond; on the (2^80 per ms) overflow fall back to a fresh id.
        MessageId(generator.generate().unwrap_or_else(|_| Ulid::new()))
    }

    /// The 16 big-endian bytes of the id (sort in time order).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0 .0.to_be_bytes()
    }

    /// The id from its 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        MessageId(Ulid(u128::from_be_bytes(bytes)))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for MessageId {
    type Err = ulid::DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ulid::from_string(s).map(MessageId)
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One delivery of a message: the message id and the device's index within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId {
    pub message: MessageId,
    pub index: u16,
}

impl DeliveryId {
    /// 18 bytes: the message id then the index, big-endian.
    pub fn to_bytes(self) -> [u8; 18] {
        let mut out = [0u8; 18];
        out[..16].copy_from_slice(&self.message.to_bytes());
        out[16..].copy_from_slice(&self.index.to_be_bytes());
        out
    }

    /// Parses the 18-byte form; `None` if the slice is not 18 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let msg: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        let idx: [u8; 2] = bytes.get(16..18)?.try_into().ok()?;
        if bytes.len() != 18 {
            return None;
        }
        Some(DeliveryId {
            message: MessageId::from_bytes(msg),
            index: u16::from_be_bytes(idx),
        })
    }
}

impl fmt::Display for DeliveryId {
    /// `<message id>-<index>`, at most 32 characters (fits Getui's request_id).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.message, self.index)
    }
}

/// Error parsing a [`DeliveryId`] from text.
#[derive(Debug, thiserror::Error)]
#[error("not a delivery id (expected <message id>-<index>)")]
pub struct BadDeliveryId;

impl FromStr for DeliveryId {
    type Err = BadDeliveryId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (msg, idx) = s.rsplit_once('-').ok_or(BadDeliveryId)?;
        Ok(DeliveryId {
            message: msg.parse().map_err(|_| BadDeliveryId)?,
            index: idx.parse().map_err(|_| BadDeliveryId)?,
        })
    }
}

impl Serialize for DeliveryId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeliveryId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A message as accepted from an app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: MessageId,
    pub app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: Target,
    pub payload: serde_json::Value,
    pub created_at: u64,
    pub expires_at: u64,
    #[serde(default)]
    pub notify_sender: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub delivery_count: u16,
    /// Made by pushgate itself (a receipt push to the sender): emits no webhook events.
    #[serde(default)]
    pub system: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
    /// Messages with the same key replace each other while undelivered (Web Push `Topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
    /// What the phone shows when the app is not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notification>,
}

/// What a phone shows when the app is not running: each provider maps it (FCM
/// `notification`, APNs `aps.alert`, Web Push beside the payload, Getui's vendor channels).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub title: String,
    pub body: String,
}

impl<'de> Deserialize<'de> for Notification {
    /// From an object only (a derived impl would also take `[title, body]`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            title: String,
            #[serde(default)]
            body: String,
        }
        struct ObjectOnly;
        impl<'de> serde::de::Visitor<'de> for ObjectOnly {
            type Value = Notification;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object {\"title\", \"body\"}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Notification, A::Error> {
                let f = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Notification {
                    title: f.title,
                    body: f.body,
                })
            }
        }
        d.deserialize_map(ObjectOnly)
    }
}

/// Longest notification title, in characters.
pub const MAX_NOTIFICATION_TITLE: usize = 256;
/// Longest notification body, in characters.
pub const MAX_NOTIFICATION_BODY: usize = 2048;

impl Notification {
    /// Checks the lengths; at least one of the two is needed.
    pub fn check(&self) -> Result<(), String> {
        if self.title.is_empty() && self.body.is_empty() {
            return Err("notification needs a title or a body".into());
        }
        let (t, b) = (self.title.chars().count(), self.body.chars().count());
        if t > MAX_NOTIFICATION_TITLE {
            return Err(format!(
                "notification.title is {t} characters; the limit is {MAX_NOTIFICATION_TITLE}"
            ));
        }
        if b > MAX_NOTIFICATION_BODY {
            return Err(format!(
                "notification.body is {b} characters; the limit is {MAX_NOTIFICATION_BODY}"
            ));
        }
        Ok(())
    }
}

/// How soon a message matters to its user (Web Push `Urgency`, RFC 8030 §5.3): providers may
/// hold back less urgent messages to save the device's battery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VeryLow => "very-low",
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

/// Where a delivery stands. `delivered`, `failed` and `expired` are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    Sending,
    Sent,
    RetryWait,
    Delivered,
    Failed,
    Expired,
}

impl DeliveryState {
    /// Whether no further transition can happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed | Self::Expired)
    }

    /// The snake_case name, as in the API and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::RetryWait => "retry_wait",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// Whether the state machine allows moving from `self` to `next`.
    pub fn can_become(self, next: DeliveryState) -> bool {
        use DeliveryState::*;
        match self {
            Queued | RetryWait => matches!(next, Sending | Delivered | Failed | Expired),
            Sending => matches!(next, Sent | RetryWait | Delivered | Failed | Expired),
            // Sent again when its receipt does not come within the provider's timeout.
            Sent => matches!(next, Sending | Delivered | Failed | Expired),
            Delivered | Failed | Expired => false,
        }
    }
}

/// A state a delivery entered, and when (epoch ms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub state: DeliveryState,
    pub at: u64,
    /// Why, where the state alone does not say (`receipt_timeout`: a `sent` delivery whose
    /// receipt did not come in time, sent again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The [`Transition::reason`] of a send made again because no receipt came in time.
pub const RECEIPT_TIMEOUT: &str = "receipt_timeout";

/// Why a delivery failed or is being retried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryError {
    pub code: String,
    pub message: String,
    /// The provider said the device is gone (uninstalled app, expired token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unregistered: bool,
}

/// One delivery of a message to one device, with its full state history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Bumped by every change: a change is written only over the version it was made from
    /// (see `pushgate_store::Guard::DeliveryVersion`), so concurrent writers never lose one.
    /// First, so a store reads it from the start of the stored record.
    #[serde(default)]
    pub version: u64,
    pub id: DeliveryId,
    pub provider: String,
    pub cid: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: u64,
    pub updated_at: u64,
    /// The outbox slot (epoch ms) while the delivery waits to be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<u64>,
    /// The provider's reference for the send (maps receipts back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DeliveryError>,
    pub history: Vec<Transition>,
    /// The device's provider data as bound when the message was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<serde_json::Value>,
}

impl DeliveryRecord {
    /// A new queued delivery, due at `now`.
    pub fn queued(id: DeliveryId, device: &DeviceRef, now: u64) -> Self {
        DeliveryRecord {
            id,
            provider: device.provider.clone(),
            cid: device.cid.clone(),
            state: DeliveryState::Queued,
            attempts: 0,
            created_at: now,
            updated_at: now,
            next_attempt_at: Some(now),
            provider_ref: None,
            error: None,
            history: vec![Transition {
                state: DeliveryState::Queued,
                at: now,
                reason: None,
            }],
            version: 0,
            device_data: None,
        }
    }

    /// Moves to `state` at `now`, recording the transition. Returns false (and changes nothing)
    /// if the state machine forbids it.
    pub fn transition(&mut self, state: DeliveryState, now: u64) -> bool {
        self.transition_because(state, now, None)
    }

    /// Like [`DeliveryRecord::transition`], recording why (see [`Transition::reason`]).
    pub fn transition_because(
        &mut self,
        state: DeliveryState,
        now: u64,
        reason: Option<&str>,
    ) -> bool {
        if !self.state.can_become(state) {
            return false;
        }
        self.state = state;
        self.updated_at = now;
        // Retries can repeat sending/retry_wait many times; keep the history bounded.
        if self.history.len() >= MAX_HISTORY {
            self.history.remove(1);
        }
        self.history.push(Transition {
            state,
            at: now,
            reason: reason.map(str::to_string),
        });
        true
    }
}

const MAX_HISTORY: usize = 32;

/// The kinds of webhook events sent to app servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    #[serde(rename = "message.failed")]
    MessageFailed,
    #[serde(rename = "message.expired")]
    MessageExpired,
    #[serde(rename = "upstream.received")]
    UpstreamReceived,
    /// The provider reported a device gone (Web Push 404/410): it was unbound.
    #[serde(rename = "device.unregistered")]
    DeviceUnregistered,
}

impl EventKind {
    /// The dotted event type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageDelivered => "message.delivered",
            Self::MessageFailed => "message.failed",
            Self::MessageExpired => "message.expired",
            Self::UpstreamReceived => "upstream.received",
            Self::DeviceUnregistered => "device.unregistered",
        }
    }
}

/// A webhook event waiting in the durable event outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: MessageId,
    pub app: String,
    pub kind: EventKind,
    pub created_at: u64,
    pub data: serde_json::Value,
    pub attempts: u32,
    pub next_attempt_at: u64,
    /// Events with the same key reach the app server one at a time, in id order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
}

/// What an alias mirror tells the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorOp {
    Bind,
    Unbind,
}

/// A bind or unbind made through pushgate that a provider keeping aliases itself (Getui with
/// `delegate_aliases`) must be told of: stored with the change, retried until the provider
/// takes it or a newer change of the same device supersedes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasMirror {
    /// Unique per change; a retry or completion applies only while it is the device's
    /// current mirror.
    pub id: MessageId,
    pub app: String,
    pub provider: String,
    pub cid: String,
    pub alias: String,
    pub op: MirrorOp,
    pub attempts: u32,
    pub next_attempt_at: u64,
    pub created_at: u64,
}

/// An upstream message: device → provider → pushgate, forwarded to the app server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpstreamRecord {
    pub id: MessageId,
    pub app: String,
    pub provider: String,
    pub cid: String,
    /// The provider's id of the upstream message (dedupe key with the provider).
    pub msgid: String,
    /// The sender's alias; `None` if the device is bound to no alias (forwarded unbound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub payload: String,
    pub received_at: u64,
    /// The device's own timestamp, if the provider gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
}

/// A verified upstream message as a provider's adapter parsed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub cid: String,
    pub msgid: String,
    pub payload: String,
    pub sent_at: Option<u64>,
}

/// What a provider says happened to a delivery on the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ReceiptStatus {
    Delivered,
    Failed { code: String, message: String },
}

/// A verified provider acknowledgement, mapped to a delivery by `provider_ref`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub provider_ref: String,
    pub cid: String,
    pub status: ReceiptStatus,
    /// Provider's receipt time (epoch ms), if it sent one.
    #[serde(default)]
    pub at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_id_round_trips_and_fits_getui_request_id() {
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 65535,
        };
        let text = id.to_string();
        assert!(text.len() <= 32, "{text}");
        assert_eq!(text.parse::<DeliveryId>().ok(), Some(id));
        assert_eq!(DeliveryId::from_bytes(&id.to_bytes()), Some(id));
        assert_eq!(DeliveryId::from_bytes(&id.to_bytes()[..17]), None);
        assert!("nope".parse::<DeliveryId>().is_err());
    }

    #[test]
    fn state_machine_refuses_leaving_final_states() {
        let device = DeviceRef {
            provider: "mock".into(),
            cid: "c1".into(),
        };
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 0,
        };
        let mut d = DeliveryRecord::queued(id, &device, 1);
        assert!(d.transition(DeliveryState::Sending, 2));
        assert!(d.transition(DeliveryState::Sent, 3));
        assert!(!d.transition(DeliveryState::RetryWait, 4));
        assert!(!d.transition(DeliveryState::Queued, 4));
        // Sent again after a receipt timeout.
        assert!(d.transition_because(DeliveryState::Sending, 4, Some(RECEIPT_TIMEOUT)));
        assert_eq!(d.history[3].reason.as_deref(), Some(RECEIPT_TIMEOUT));
        assert!(d.transition(DeliveryState::Sent, 4));
        assert!(d.transition(DeliveryState::Delivered, 5));
        for s in [
            DeliveryState::Queued,
            DeliveryState::Sent,
            DeliveryState::Failed,
            DeliveryState::Expired,
        ] {
            assert!(!d.transition(s, 6));
        }
        assert_eq!(d.history.len(), 6);
        assert_eq!(d.updated_at, 5);
    }

    #[test]
    fn history_stays_bounded_under_many_retries() {
        let device = DeviceRef {
            provider: "mock".into(),
            cid: "c1".into(),
        };
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 0,
        };
        let mut d = DeliveryRecord::queued(id, &device, 0);
        for i in 0..100 {
            d.transition(DeliveryState::Sending, i);
            d.transition(DeliveryState::RetryWait, i);
        }
        assert_eq!(d.history.len(), MAX_HISTORY);
        assert_eq!(d.history[0].state, DeliveryState::Queued);
    }
}
