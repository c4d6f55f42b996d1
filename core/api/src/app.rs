//! An app (tenant) as the engine and routers see it.

/// What the engine needs to know of an app (the HTTP layer keeps its API keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSettings {
    pub id: String,
    /// Provider for messages that name none and for remote alias resolution.
    pub default_provider: String,
    pub max_devices_per_alias: usize,
    /// Whether the app has a webhook URL (no events are stored otherwise).
    pub webhooks: bool,
    /// Deliveries waiting in the outboxes beyond which new messages get 429 (0: no limit).
    pub max_backlog: u64,
}
