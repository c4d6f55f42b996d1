//! The `UpstreamRouter` trait: what is done with upstream messages (strategy 2). Core keeps
//! the mechanics (verification by the provider, dedupe, durable storage, per-sender ordered
//! events, idempotent acceptance of the resulting messages); a router adapter (the
//! `pushgate-sendmessage` crate) decides how a message is forwarded to the app server and
//! what the server's answer means.

use crate::app::AppSettings;
use crate::message::NewMessage;
use crate::model::{EventRecord, UpstreamRecord};

/// Forward an upstream message to the app server as an `upstream.received` event.
#[derive(Clone, Debug, PartialEq)]
pub struct Forward {
    /// Events with the same key reach the app server one at a time, in order.
    pub ordering_key: String,
    /// The event's `data`.
    pub data: serde_json::Value,
}

/// What to do with one stored upstream message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpstreamPlan {
    /// Forward to the app server (only sent if the app has a webhook).
    pub forward: Option<Forward>,
    /// Messages to deliver at once (direct relay). Without a `request_id`, the engine gives
    /// each a stable one derived from the upstream message, so nothing is sent twice.
    pub deliver: Vec<NewMessage>,
}

/// The messages an app server's answer asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replies {
    /// Messages to deliver; without a `request_id` the engine derives a stable one.
    pub messages: Vec<NewMessage>,
    /// Entries that were refused (index, reason), logged and counted.
    pub refused: Vec<(usize, String)>,
    /// Set when the whole answer was unreadable (logged and counted; not retried).
    pub malformed: Option<String>,
}

/// Decides what upstream messages become. Implemented by the sendmessage adapter.
pub trait UpstreamRouter: Send + Sync {
    /// Plans one upstream message of `app` (already stored and deduplicated).
    fn route(&self, app: &AppSettings, upstream: &UpstreamRecord) -> UpstreamPlan;

    /// Reads the app server's 2xx answer to a forwarded event.
    fn replies(&self, app: &AppSettings, event: &EventRecord, body: &[u8]) -> Replies;
}
