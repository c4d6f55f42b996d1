//! Errors of the mock adapter.

/// A mock provider that cannot be built or run.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("invalid mock provider setting: {0}")]
    Config(String),
    #[error("mock device state at {path}: {reason}")]
    State { path: String, reason: String },
}
