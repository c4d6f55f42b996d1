//! pushgate-apns: the Apple Push Notification service as a pushgate provider
//! (`kind = "apns"`), and an APNs emulator for tests and demos.
//!
//! The adapter speaks APNs' provider API: HTTP/2 over TLS (ALPN `h2`), one connection carrying
//! many concurrent streams (a new one after a GOAWAY), token-based auth (an ES256 JWT with
//! `iss` = team id and `kid` = key id, reused for 40 minutes, renewed on
//! `ExpiredProviderToken`), `POST /3/device/{token}` with the `apns-*` headers, and maps
//! APNs' reasons to retry decisions ([`classify`]). The [`emulator`] checks all of it.

mod client;
mod config;
pub mod emulator;
mod error;
mod provider;
mod token;
pub mod wire;

pub use config::ApnsSettings;
pub use error::{classify, ApnsError};
pub use provider::ApnsProvider;
pub use token::ProviderKey;

/// base64url without padding (JWT segments).
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads base64url, with or without padding.
pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// `kind = "apns"`: the Apple Push Notification service.
pub struct ApnsKind;

impl pushgate_api::adapter::AdapterKind for ApnsKind {
    const KIND: &'static str = "apns";
    type Settings = ApnsSettings;
    type Error = ApnsError;

    fn prepare(
        settings: &mut ApnsSettings,
        context: &pushgate_api::adapter::SettingsContext,
    ) -> Result<(), ApnsError> {
        settings.private_key_file = context.resolve(&settings.private_key_file);
        settings.ca_file = context.resolve(&settings.ca_file);
        settings.validate()
    }

    fn build(
        name: &str,
        settings: ApnsSettings,
    ) -> Result<std::sync::Arc<dyn pushgate_api::provider::Provider>, ApnsError> {
        Ok(std::sync::Arc::new(ApnsProvider::new(name, settings)?))
    }
}
