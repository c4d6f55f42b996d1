//! The provider kinds this gateway knows: one registration per adapter crate. A new kind is
//! its crate's [`AdapterKind`](pushgate_api::adapter::AdapterKind) and one line here.

use std::sync::Arc;

use pushgate_engine::provider::Provider;

use crate::config::providers::{BuildFailure, Registration};
use crate::config::ProviderConfig;

/// Every kind a config may name, in the order error messages list them.
pub const REGISTRY: &[Registration] = &[
    Registration::of::<pushgate_mock::MockKind>(),
    Registration::of::<pushgate_getui::GetuiKind>(),
    Registration::of::<pushgate_webpush::WebPushKind>(),
    Registration::of::<pushgate_fcm::FcmKind>(),
    Registration::of::<pushgate_apns::ApnsKind>(),
    Registration::of::<crate::plugin_host::PluginKind>(),
];

/// A provider that could not be built; the adapter's error is its source.
#[derive(Debug, thiserror::Error)]
#[error("provider {name:?}: {source}")]
pub struct BuildError {
    pub name: String,
    #[source]
    pub source: BuildFailure,
}

/// Builds one provider from its validated config.
pub fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, BuildError> {
    config
        .spec
        .build(&config.name)
        .map_err(|source| BuildError {
            name: config.name.clone(),
            source,
        })
}
