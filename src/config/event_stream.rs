//! `[event_stream]`: the event log behind `GET /v1/apps/{app}/events` and how the stream
//! treats its readers.

use serde::Deserialize;

use super::ConfigError;

/// `[event_stream]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventStreamConfig {
    /// How long each app's events are kept for readers to resume from (`Last-Event-ID`);
    /// 0 turns the event log and the stream off (every event then costs one write less).
    pub retention_seconds: u64,
    /// How often an idle stream sends a keep-alive comment.
    pub keepalive_seconds: u64,
    /// Events queued for one reader; a reader that falls this far behind is cut off (it
    /// reconnects with `Last-Event-ID` and resumes from the log).
    pub buffer: usize,
}

impl Default for EventStreamConfig {
    fn default() -> Self {
        EventStreamConfig {
            retention_seconds: 3600,
            keepalive_seconds: 15,
            buffer: 1024,
        }
    }
}

/// Checks `[event_stream]`.
pub fn validate(
    config: &EventStreamConfig,
    err: impl Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if config.retention_seconds > 30 * 24 * 3600 {
        return Err(err(
            "retention_seconds",
            "must be at most 2592000 (30 days); 0 turns the event stream off".into(),
        ));
    }
    if !(1..=300).contains(&config.keepalive_seconds) {
        return Err(err("keepalive_seconds", "must be between 1 and 300".into()));
    }
    if !(16..=65_536).contains(&config.buffer) {
        return Err(err("buffer", "must be between 16 and 65536".into()));
    }
    Ok(())
}
