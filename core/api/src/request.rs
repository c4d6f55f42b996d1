//! The JSON form of a message request: the body of `POST /v1/apps/{app}/messages`, and each
//! entry of an app server's `{"messages": [...]}` reply to an upstream event.

use std::time::Duration;

use serde::Deserialize;

use crate::error::EngineError;
use crate::message::NewMessage;
use crate::model::Target;

/// A message as JSON.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    pub to: Target,
    pub payload: serde_json::Value,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
    #[serde(default)]
    pub notify_sender: Option<bool>,
    #[serde(default)]
    pub provider: Option<String>,
    /// `very-low`, `low`, `normal` or `high`.
    #[serde(default)]
    pub urgency: Option<crate::model::Urgency>,
    /// 1–32 characters of `A-Z a-z 0-9 - _`.
    #[serde(default)]
    pub collapse_key: Option<String>,
    /// `{"title", "body"}`: what the phone shows when the app is not running.
    #[serde(default)]
    pub notification: Option<crate::model::Notification>,
}

impl MessageRequest {
    /// The engine's form; refuses a negative or zero TTL.
    pub fn into_message(self) -> Result<NewMessage, EngineError> {
        let ttl = match self.ttl_seconds {
            None => None,
            Some(s) if s > 0 => Some(Duration::from_secs(s as u64)),
            Some(s) => {
                return Err(EngineError::invalid(
                    "invalid_ttl",
                    format!("ttl_seconds must be a positive number of seconds, got {s}"),
                ))
            }
        };
        Ok(NewMessage {
            to: self.to,
            payload: self.payload,
            from: self.from,
            request_id: self.request_id,
            ttl,
            notify_sender: self.notify_sender.unwrap_or(false),
            provider: self.provider,
            urgency: self.urgency,
            collapse_key: self.collapse_key,
            notification: self.notification,
            device_data: None,
        })
    }
}
