//! pushgate-webpush: the Web Push provider (`kind = "webpush"`) and the protocol's
//! cryptography. [`ece`] encrypts a message for a subscription (RFC 8291, `aes128gcm` content
//! coding of RFC 8188); [`vapid`] makes the application server's ES256 token (RFC 8292) and its
//! keys; [`endpoint`] is the SSRF guard for subscription endpoints; [`WebPushProvider`] sends.
//! Built on RustCrypto (p256, aes-gcm, hkdf, sha2); no primitive is written here.

mod config;
pub mod ece;
pub mod endpoint;
mod error;
mod provider;
pub mod vapid;

pub use config::WebPushSettings;
pub use error::{classify, WebPushError};
pub use provider::WebPushProvider;

/// Web Push keys and tokens are base64url without padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads base64url, with or without padding.
pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
}

/// `kind = "webpush"`: Web Push (RFC 8030, 8291, 8292).
pub struct WebPushKind;

impl pushgate_api::adapter::AdapterKind for WebPushKind {
    const KIND: &'static str = "webpush";
    type Settings = WebPushSettings;
    type Error = WebPushError;

    fn prepare(
        settings: &mut WebPushSettings,
        context: &pushgate_api::adapter::SettingsContext,
    ) -> Result<(), WebPushError> {
        settings.vapid_private_key_file = context.resolve(&settings.vapid_private_key_file);
        settings.validate()
    }

    fn build(
        name: &str,
        settings: WebPushSettings,
    ) -> Result<std::sync::Arc<dyn pushgate_api::provider::Provider>, WebPushError> {
        Ok(std::sync::Arc::new(WebPushProvider::new(name, settings)?))
    }
}
