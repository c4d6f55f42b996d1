//! pushgate-core: the domain types, the `Provider` / `IdentityStore` / `ReceiptSink`
//! traits, the routing engine, the dispatcher and the sled store of pushgate.
//!
//! Core never names an adapter: adapters implement [`provider::Provider`] and the gateway
//! (the `pushgate` crate) wires them in.

pub mod allocator;
pub mod backoff;
pub mod breaker;
pub mod clock;
pub mod dispatcher;
pub mod engine;
pub mod error;
pub mod events;
#[cfg(feature = "http-client")]
pub mod http_client;
pub mod locks;
pub mod metrics;
pub mod mirrors;
pub mod model;
pub mod provider;
pub mod scan_cursor;
pub mod store;
pub mod upstream;
pub mod validate;

pub use engine::{AppSettings, Engine, EngineSettings};
pub use error::{EngineError, ErrorClass, StoreError};
