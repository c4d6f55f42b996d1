//! A message as an app submits it (the engine's input; routers build them too).

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::model::Target;

/// A message as an app submits it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub to: Target,
    pub payload: serde_json::Value,
    pub from: Option<String>,
    pub request_id: Option<String>,
    /// `None`: the engine's default TTL.
    pub ttl: Option<Duration>,
    pub notify_sender: bool,
    /// Restricts an alias target to this provider's devices (and names the provider that
    /// resolves aliases it keeps itself).
    pub provider: Option<String>,
    pub urgency: Option<crate::model::Urgency>,
    /// Messages with the same key replace each other while undelivered, where the provider
    /// supports it (Web Push `Topic`).
    pub collapse_key: Option<String>,
    /// What the phone shows when the app is not running.
    pub notification: Option<crate::model::Notification>,
    /// The provider data of a device addressed directly, in place of any it is bound with
    /// (a Matrix Web Push pusher's subscription travels in each notify); checked by the
    /// provider as a bind's would be.
    pub device_data: Option<serde_json::Value>,
}

impl NewMessage {
    /// A digest of everything that defines the message, to detect a reused request_id.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::json!({
            "to": self.to,
            "payload": self.payload,
            "from": self.from,
            "ttl_ms": self.ttl.map(|t| t.as_millis() as u64),
            "notify_sender": self.notify_sender,
            "provider": self.provider,
            "urgency": self.urgency,
            "collapse_key": self.collapse_key,
            "notification": self.notification,
            "device_data": self.device_data,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}
