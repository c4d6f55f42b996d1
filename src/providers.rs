//! Builds the configured providers (every built-in adapter kind is wired here).

use std::sync::Arc;

use crate::plugin_host::PluginProvider;
use pushgate_engine::provider::Provider;
use pushgate_getui::GetuiProvider;
use pushgate_mock::MockProvider;
use pushgate_webpush::WebPushProvider;

use crate::config::{ProviderConfig, ProviderSpec};

/// A provider that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("provider {name:?}: {reason}")]
pub struct BuildError {
    pub name: String,
    pub reason: String,
}

/// Builds one provider from its validated config.
pub fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, BuildError> {
    let fail = |reason: String| BuildError {
        name: config.name.clone(),
        reason,
    };
    match &config.spec {
        ProviderSpec::Mock(settings) => MockProvider::new(&config.name, settings.clone())
            .map(|p| Arc::new(p) as Arc<dyn Provider>)
            .map_err(|e| fail(e.to_string())),
        ProviderSpec::Getui(settings) => GetuiProvider::new(&config.name, settings.clone())
            .map(|p| Arc::new(p) as Arc<dyn Provider>)
            .map_err(|e| fail(e.to_string())),
        ProviderSpec::WebPush(settings) => WebPushProvider::new(&config.name, settings.clone())
            .map(|p| Arc::new(p) as Arc<dyn Provider>)
            .map_err(|e| fail(e.to_string())),
        ProviderSpec::Plugin(settings) => PluginProvider::new(&config.name, settings.clone())
            .map(|p| Arc::new(p) as Arc<dyn Provider>)
            .map_err(|e| fail(e.to_string())),
    }
}
