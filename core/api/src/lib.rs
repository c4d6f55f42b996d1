//! pushgate-api: what a provider adapter or plugin needs and nothing else: the domain types,
//! the [`provider::Provider`] trait, the [`adapter::AdapterKind`] an adapter registers, with its errors (which carry their retry decision), the
//! callback types and the sinks receipts and upstream messages go to, message requests, and
//! the upstream router trait. No store, no engine.

pub mod adapter;
pub mod app;
pub mod clock;
pub mod error;
#[cfg(feature = "http-client")]
pub mod http_client;
pub mod message;
pub mod model;
pub mod provider;
pub mod reports;
pub mod request;
pub mod upstream;
pub mod validate;

pub use app::AppSettings;
pub use error::{EngineError, ErrorClass, StoreError};
pub use message::NewMessage;
pub use reports::{ReceiptReport, UpstreamReport};
