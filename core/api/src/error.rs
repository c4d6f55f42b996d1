//! Errors of the store and the engine. Each engine error knows its API code and class,
//! so the HTTP layer maps it without matching on messages.

use crate::provider::{CallbackError, ProviderError};

/// A storage backend failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend error: {0}")]
    Backend(String),
    #[error("corrupt record under {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A guarded write found its record changed meanwhile (another writer, another node);
    /// the caller reads again and retries.
    #[error("the record changed meanwhile")]
    Conflict,
}

/// How an [`EngineError`] should be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    BadRequest,
    NotFound,
    Conflict,
    TooManyRequests,
    BadGateway,
    Unavailable,
    Forbidden,
}

/// A request the engine refused or could not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("alias {0:?} has no bound device")]
    UnknownAlias(String),
    #[error("device {provider}/{cid} is not bound to any alias")]
    UnknownDevice { provider: String, cid: String },
    #[error("no provider named {0:?} is configured")]
    UnknownProvider(String),
    #[error("no message with id {0:?}")]
    UnknownMessage(String),
    #[error("alias {alias:?} already has {max} devices, the most allowed")]
    AliasFull { alias: String, max: usize },
    #[error("request_id {0:?} was already used for a different message")]
    IdempotencyConflict(String),
    #[error("provider {provider} failed: {error}")]
    Provider {
        provider: String,
        error: ProviderError,
    },
    #[error("app {app:?} has {backlog} deliveries waiting, its limit; retry later")]
    Backlog { app: String, backlog: u64 },
    #[error(transparent)]
    Callback(#[from] CallbackError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A device acknowledgement whose token was not made by this gateway.
    #[error("the acknowledgement token is not valid")]
    ForgedAck,
}

impl EngineError {
    /// A 400 with the given code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        EngineError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The snake_case API error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { code, .. } => code,
            Self::UnknownAlias(_) => "unknown_alias",
            Self::UnknownDevice { .. } => "unknown_device",
            Self::UnknownProvider(_) => "unknown_provider",
            Self::UnknownMessage(_) => "unknown_message",
            Self::AliasFull { .. } => "alias_full",
            Self::IdempotencyConflict(_) => "idempotency_conflict",
            Self::Provider { .. } => "provider_error",
            Self::Backlog { .. } => "backlog_full",
            Self::Callback(CallbackError::NotSupported(_)) => "callback_not_supported",
            Self::Callback(CallbackError::Malformed(_)) => "malformed_callback",
            Self::Store(_) => "storage_unavailable",
            Self::ForgedAck => "forged_ack",
        }
    }

    /// How to answer it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Invalid { .. } | Self::UnknownProvider(_) => ErrorClass::BadRequest,
            Self::UnknownAlias(_) | Self::UnknownDevice { .. } | Self::UnknownMessage(_) => {
                ErrorClass::NotFound
            }
            Self::AliasFull { .. } | Self::IdempotencyConflict(_) => ErrorClass::Conflict,
            Self::Provider { .. } => ErrorClass::BadGateway,
            Self::Backlog { .. } => ErrorClass::TooManyRequests,
            Self::Callback(CallbackError::NotSupported(_)) => ErrorClass::NotFound,
            Self::Callback(CallbackError::Malformed(_)) => ErrorClass::BadRequest,
            Self::Store(_) => ErrorClass::Unavailable,
            Self::ForgedAck => ErrorClass::Forbidden,
        }
    }
}
