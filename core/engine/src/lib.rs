//! pushgate-engine: the routing engine, the dispatcher and the other workers, metric names,
//! and the storage contract ([`store`]) backends implement.
//!
//! The engine never names an adapter or a backend: adapters implement
//! [`provider::Provider`] (from `pushgate-api`, re-exported here with the other domain
//! modules), backends implement [`store::Store`], and the gateway (the `pushgate` crate)
//! wires them in.

pub mod acks;
pub mod allocator;
pub mod attempts;
pub mod backoff;
pub mod breaker;
pub mod dispatcher;
pub mod engine;
pub mod event_log;
pub mod events;
pub mod locks;
pub mod metrics;
pub mod mirrors;
pub mod scan_cursor;

#[cfg(feature = "http-client")]
pub use pushgate_api::http_client;
pub use pushgate_api::{clock, error, model, provider, upstream, validate};
pub use pushgate_store as store;

pub use engine::{AppSettings, Engine, EngineSettings};
pub use error::{EngineError, ErrorClass, StoreError};
