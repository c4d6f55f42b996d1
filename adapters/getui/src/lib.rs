//! pushgate-getui: the Getui (个推) REST v2 provider, and a Getui emulator.
//!
//! The adapter speaks Getui's REST v2 as the official clients do: `POST /v2/{appId}/auth`
//! with a SHA-256 sign, the `token` header, refresh on 10001, the 301 host switch,
//! transmission pushes by cid (batched), `/user/alias` delegation, remote alias lookups,
//! and MD5-signed receipt lines. The [`emulator`] is a local Getui for tests and demos.

pub mod callbacks;
mod client;
mod config;
pub mod emulator;
mod error;
mod provider;
pub mod sign;
pub mod wire;

pub use client::GetuiClient;
pub use config::{GetuiSettings, MAX_BATCH};
pub use error::{classify, GetuiError};
pub use provider::{push_request, transmission, GetuiProvider, MAX_TRANSMISSION_CHARS};

/// `kind = "getui"`: Getui REST v2.
pub struct GetuiKind;

impl pushgate_api::adapter::AdapterKind for GetuiKind {
    const KIND: &'static str = "getui";
    type Settings = GetuiSettings;
    type Error = GetuiError;

    fn prepare(
        settings: &mut GetuiSettings,
        _context: &pushgate_api::adapter::SettingsContext,
    ) -> Result<(), GetuiError> {
        settings.validate()
    }

    fn build(
        name: &str,
        settings: GetuiSettings,
    ) -> Result<std::sync::Arc<dyn pushgate_api::provider::Provider>, GetuiError> {
        Ok(std::sync::Arc::new(GetuiProvider::new(name, settings)?))
    }
}
