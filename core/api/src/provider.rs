//! The `Provider` trait: what a push provider adapter (built-in or plugin) implements.
//!
//! Only [`Provider::name`] and [`Provider::send`] are required; every other hook has a
//! documented default, so a minimal adapter is a dozen lines.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{DeliveryId, MessageId, Receipt, Upstream};

/// One delivery handed to a provider.
#[derive(Clone, Debug)]
pub struct OutboundDelivery {
    pub delivery_id: DeliveryId,
    pub message_id: MessageId,
    pub app: String,
    pub cid: String,
    pub from: Option<String>,
    pub payload: Arc<serde_json::Value>,
    /// Time left before the message expires; providers pass it on as their own TTL.
    pub ttl: Duration,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The device's provider data as bound (a Web Push subscription), if it has any.
    pub device_data: Option<Arc<serde_json::Value>>,
    pub urgency: Option<crate::model::Urgency>,
    /// Messages with the same key replace each other while undelivered.
    pub collapse_key: Option<String>,
    /// What the phone shows when the app is not running, if the message has it.
    pub notification: Option<Arc<crate::model::Notification>>,
    /// Stable across retries of this delivery: providers use it as their request id so a
    /// retried send is deduplicated on their side (at most 32 characters).
    pub idempotency_key: String,
}

/// A successful hand-off to the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The provider's reference (Getui: the taskid), echoed in its receipts.
    pub provider_ref: String,
}

/// Whether a failed send may be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Timeouts, 5xx, rate limits: retry with backoff, no sooner than `after` if given.
    Transient { after: Option<Duration> },
    /// Unknown device, bad request: fail the delivery now.
    Permanent,
}

/// A failed provider call that carries its own retry decision (as pingora's errors do).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProviderError {
    pub retry: Retry,
    /// Short machine-readable code, e.g. the provider's own error code.
    pub code: String,
    /// Human sentence; must never contain credentials.
    pub message: String,
    /// The device no longer exists at the provider (Web Push 404/410, FCM UNREGISTERED):
    /// the delivery fails and the device is unbound.
    pub unregistered: bool,
}

impl ProviderError {
    /// A transient failure with no retry hint.
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError {
            retry: Retry::Transient { after: None },
            code: code.into(),
            message: message.into(),
            unregistered: false,
        }
    }

    /// A permanent failure.
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError {
            retry: Retry::Permanent,
            code: code.into(),
            message: message.into(),
            unregistered: false,
        }
    }

    /// A permanent failure because the device is gone: it is unbound (with a
    /// `device.unregistered` event).
    pub fn unregistered(code: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError {
            unregistered: true,
            ..Self::permanent(code, message)
        }
    }

    /// The same error, asking for a retry no sooner than `after`.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry = Retry::Transient { after: Some(after) };
        self
    }

    /// Whether the delivery may be retried.
    pub fn is_transient(&self) -> bool {
        matches!(self.retry, Retry::Transient { .. })
    }
}

/// How hard the dispatcher may drive a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Sends started per second, if capped.
    pub qps: Option<u32>,
    /// Longest a single send may take before it counts as a transient timeout.
    pub send_timeout: Duration,
    /// How long a `sent` delivery waits for its receipt before it is sent again with the same
    /// idempotency key (at-least-once to the device); `None` for providers without receipts.
    pub receipt_timeout: Option<Duration>,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        ProviderLimits {
            concurrency: 64,
            qps: None,
            send_timeout: Duration::from_secs(10),
            receipt_timeout: None,
        }
    }
}

/// An HTTP callback from a provider, as the gateway received it.
#[derive(Clone, Debug, Default)]
pub struct CallbackRequest {
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A callback line or item that failed parsing or verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedItem {
    /// 1-based line (or item) number within the callback body.
    pub line: usize,
    /// Why; safe to log (no secrets, no signatures).
    pub reason: String,
}

/// The verified receipts in a callback, and the items that were refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedReceipts {
    pub receipts: Vec<Receipt>,
    pub rejected: Vec<RejectedItem>,
}

/// The verified upstream messages in a callback, and the items that were refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedUpstream {
    pub messages: Vec<Upstream>,
    pub rejected: Vec<RejectedItem>,
}

/// Parses a line-based callback body (one JSON object per line, as Getui's): every non-empty
/// line is decoded as `T` and checked by `verify`; returns the accepted items and a refusal
/// (1-based line, reason) for each other line. `what` names a line in refusal reasons.
pub fn parse_lines<T, O>(
    body: &[u8],
    what: &str,
    mut verify: impl FnMut(T) -> Result<O, String>,
) -> (Vec<O>, Vec<RejectedItem>)
where
    T: serde::de::DeserializeOwned,
{
    let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
    for (i, raw) in String::from_utf8_lossy(body).lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let outcome = serde_json::from_str::<T>(raw)
            .map_err(|e| format!("not {what}: {e}"))
            .and_then(&mut verify);
        match outcome {
            Ok(item) => accepted.push(item),
            Err(reason) => rejected.push(RejectedItem {
                line: i + 1,
                reason,
            }),
        }
    }
    (accepted, rejected)
}

/// How to refuse a callback that cannot be stored now (the store is failing), so that the
/// provider sends it again instead of taking it as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackRefusal {
    /// Answer `503 storage_unavailable` with `Retry-After` (providers that retry on 5xx).
    ServiceUnavailable,
    /// Close the connection without any answer (providers that take any HTTP answer as
    /// received and retry only when none comes, as Getui).
    CloseConnection,
}

/// Why a device cannot be bound to a provider; the message names the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The cid is not in the provider's format (API code `invalid_cid`).
    #[error("{0}")]
    Cid(String),
    /// The provider data is missing, malformed or refused (API code `invalid_device_data`).
    #[error("{0}")]
    Data(String),
}

/// Why a provider cannot carry a message payload; the message says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Over the provider's size limit (API code `payload_too_large`).
    #[error("{0}")]
    TooLarge(String),
    /// A shape the provider refuses, e.g. a key it reserves (API code `invalid_payload`).
    #[error("{0}")]
    Refused(String),
}

impl PayloadError {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::TooLarge(_) => "payload_too_large",
            PayloadError::Refused(_) => "invalid_payload",
        }
    }
}

/// A callback the provider cannot take at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("this provider does not accept {0} callbacks")]
    NotSupported(&'static str),
    #[error("malformed callback: {0}")]
    Malformed(String),
}

/// Where verified receipts go: the engine implements it. Providers that produce receipts
/// themselves (the mock) feed them through the same path as an HTTP callback
/// (parse, verify, apply, flush). The mock provider uses it for its simulated devices.
#[async_trait]
pub trait ReceiptSink: Send + Sync {
    /// Handles a receipts callback body for `provider`, exactly as
    /// `POST /v1/callbacks/{provider}/receipts` does.
    async fn receipts_callback(
        &self,
        provider: &str,
        request: CallbackRequest,
    ) -> Result<crate::reports::ReceiptReport, crate::error::EngineError>;

    /// Applies receipts that `provider`'s adapter already parsed and verified; returns once
    /// their effects are on disk.
    async fn apply_verified(
        &self,
        provider: &str,
        receipts: Vec<Receipt>,
    ) -> Result<crate::reports::ReceiptReport, crate::error::EngineError>;
}

/// Where verified upstream messages go: the engine implements it. Providers whose devices
/// send upstream messages themselves (the mock) use the same path as an HTTP callback.
#[async_trait]
pub trait UpstreamSink: Send + Sync {
    /// Handles an upstream callback body for `provider`, exactly as
    /// `POST /v1/callbacks/{provider}/upstream` does.
    async fn upstream_callback(
        &self,
        provider: &str,
        request: CallbackRequest,
    ) -> Result<crate::reports::UpstreamReport, crate::error::EngineError>;
}

/// What a provider gets when the gateway starts it.
#[derive(Clone)]
pub struct ProviderContext {
    /// The gateway's receipt path; weak because the engine owns the providers.
    pub receipts: Weak<dyn ReceiptSink>,
    /// The gateway's upstream path.
    pub upstream: Weak<dyn UpstreamSink>,
}

/// A push provider. Implemented by each adapter crate and by the plugin host.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The configured provider name (as in `[[providers]] name`).
    fn name(&self) -> &str;

    /// Hands one delivery to the provider.
    async fn send(&self, delivery: &OutboundDelivery) -> Result<Sent, ProviderError>;

    /// Concurrency, rate and timeout limits for this provider. Default: 64 in flight,
    /// no rate cap, 10 s timeout, no receipt timeout.
    fn limits(&self) -> ProviderLimits {
        ProviderLimits::default()
    }

    /// Called once when the gateway is assembled. Default: nothing.
    fn start(&self, _context: ProviderContext) {}

    /// Parses and verifies a receipts callback. Default: receipts are not supported.
    fn parse_receipts(&self, _request: &CallbackRequest) -> Result<ParsedReceipts, CallbackError> {
        Err(CallbackError::NotSupported("receipt"))
    }

    /// Parses and verifies an upstream callback. Default: upstream is not supported.
    fn parse_upstream(&self, _request: &CallbackRequest) -> Result<ParsedUpstream, CallbackError> {
        Err(CallbackError::NotSupported("upstream"))
    }

    /// Checks a cid is in this provider's format. Default: 1–64 ASCII letters, digits and
    /// `_ - . :`.
    fn check_cid(&self, cid: &str) -> Result<(), DeviceError> {
        crate::validate::cid(cid).map_err(|e| DeviceError::Cid(e.0))
    }

    /// Checks the provider data a device is bound with (its cid already checked); returns the
    /// data to keep with the binding, handed to `send` in [`OutboundDelivery::device_data`].
    /// Default: no data.
    fn check_device_data(
        &self,
        _cid: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, DeviceError> {
        match data {
            None => Ok(None),
            Some(_) => Err(DeviceError::Data(format!(
                "provider {:?} takes no device data",
                self.name()
            ))),
        }
    }

    /// Whether devices of this provider acknowledge deliveries themselves (a provider with no
    /// receipts of its own): each gets `{"payload": <app payload>, "ack": "<token>"}` and posts
    /// the token to `POST /v1/device-acks`. The delivery's reference is then its id, whatever
    /// [`Sent::provider_ref`] says, since an ack may come before the send is recorded.
    /// Default: no.
    fn device_acks(&self) -> bool {
        false
    }

    /// Checks a message payload fits what the provider carries, so an oversized or
    /// unsendable message gets a 400 when it is sent (`payload_too_large`,
    /// `invalid_payload`), not a failed delivery later. Default: any.
    fn check_payload(&self, _payload: &serde_json::Value) -> Result<(), PayloadError> {
        Ok(())
    }

    /// Checks a message's notification fits what the provider shows (with the payload, for a
    /// provider whose limit covers both), so it gets a 400 when sent. Default: any.
    fn check_notification(
        &self,
        _payload: &serde_json::Value,
        _notification: &crate::model::Notification,
    ) -> Result<(), PayloadError> {
        Ok(())
    }

    /// A device's data as the API shows it (secrets such as encryption keys hidden).
    /// Default: as kept.
    fn redact_device_data(&self, data: &serde_json::Value) -> serde_json::Value {
        data.clone()
    }

    /// How a receipt or upstream callback that cannot be stored is refused, per this
    /// provider's retry contract. Default: `503` with `Retry-After`.
    fn callback_refusal(&self) -> CallbackRefusal {
        CallbackRefusal::ServiceUnavailable
    }

    /// Resolves an alias the provider keeps itself (bound on the device) to client ids.
    /// Called only when pushgate has no local device for the alias. Default: none.
    async fn resolve_alias(&self, _app: &str, _alias: &str) -> Result<Vec<String>, ProviderError> {
        Ok(Vec::new())
    }

    /// Whether binds and unbinds made through pushgate are mirrored to this provider (through
    /// `alias_bound` / `alias_unbound`, durably retried). Default: no.
    fn mirrors_aliases(&self) -> bool {
        false
    }

    /// Mirrors a bind made through pushgate to the provider. Default: nothing.
    async fn alias_bound(&self, _app: &str, _alias: &str, _cid: &str) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Mirrors an unbind made through pushgate to the provider. Default: nothing.
    async fn alias_unbound(
        &self,
        _app: &str,
        _alias: &str,
        _cid: &str,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The adapter as `Any`, so the gateway can reach adapter-specific extras
    /// (e.g. the mock's device inboxes).
    fn as_any(&self) -> &dyn Any;
}
