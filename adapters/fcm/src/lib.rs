//! pushgate-fcm: Firebase Cloud Messaging (HTTP v1) as a pushgate provider (`kind = "fcm"`),
//! and an FCM emulator for tests and demos.
//!
//! The adapter authenticates as the official Admin SDKs do (an RS256 assertion signed with the
//! service account's key, traded at its `token_uri` for an access token cached until shortly
//! before it expires), sends data messages with `POST /v1/projects/{id}/messages:send`, and
//! maps FCM's error codes to retry decisions ([`classify`]). The [`emulator`] checks all of it.

mod config;
pub mod emulator;
mod error;
mod provider;
pub mod service_account;
mod token;
pub mod wire;

pub use config::FcmSettings;
pub use error::{classify, error_code, FcmError};
pub use provider::FcmProvider;
pub use service_account::ServiceAccount;

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

/// The DER inside the first PEM block labelled `label` (e.g. `PRIVATE KEY`).
pub(crate) fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// `kind = "fcm"`: Firebase Cloud Messaging, HTTP v1.
pub struct FcmKind;

impl pushgate_api::adapter::AdapterKind for FcmKind {
    const KIND: &'static str = "fcm";
    type Settings = FcmSettings;
    type Error = FcmError;

    fn prepare(
        settings: &mut FcmSettings,
        context: &pushgate_api::adapter::SettingsContext,
    ) -> Result<(), FcmError> {
        settings.service_account_file = context.resolve(&settings.service_account_file);
        settings.validate()
    }

    fn build(
        name: &str,
        settings: FcmSettings,
    ) -> Result<std::sync::Arc<dyn pushgate_api::provider::Provider>, FcmError> {
        Ok(std::sync::Arc::new(FcmProvider::new(name, settings)?))
    }
}
