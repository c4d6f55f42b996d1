//! The plugin host: loads provider plugins (shared libraries speaking the C ABI of
//! `pushgate-plugin-abi`) with libloading and wraps each instance as a `Provider`.
//!
//! A library is loaded once per path and never unloaded. It is refused before the server
//! starts if the ABI version differs, a symbol is missing, the vtable is too small, or
//! `create` fails; the error names the file and the reason. Blocking `send` calls run on
//! Tokio's blocking pool under a per-provider concurrency cap; panics, bad JSON, unknown
//! statuses, slow calls and huge buffers are contained, counted and logged.

mod library;
mod provider;
pub mod shared_object;

pub use library::{load, PluginLibrary};
pub use provider::{PluginProvider, PluginSettings};

/// A plugin that cannot be loaded or started.
#[derive(Debug, thiserror::Error)]
#[error("plugin {path}: {reason}")]
pub struct PluginError {
    pub path: String,
    pub reason: String,
}

/// Why a plugin provider's settings are refused.
#[derive(Debug, thiserror::Error)]
pub enum PluginSettingsError {
    #[error("{0}")]
    Value(String),
    #[error("path {0}")]
    Path(#[source] shared_object::SharedObjectError),
}

/// A plugin provider that cannot be configured or started.
#[derive(Debug, thiserror::Error)]
pub enum PluginKindError {
    #[error(transparent)]
    Settings(#[from] PluginSettingsError),
    #[error(transparent)]
    Load(#[from] PluginError),
}

/// `kind = "plugin"`: a provider in a shared library (`path`, `options`).
pub struct PluginKind;

impl pushgate_api::adapter::AdapterKind for PluginKind {
    const KIND: &'static str = "plugin";
    type Settings = PluginSettings;
    type Error = PluginKindError;

    fn prepare(
        settings: &mut PluginSettings,
        _context: &pushgate_api::adapter::SettingsContext,
    ) -> Result<(), PluginKindError> {
        settings.validate().map_err(PluginSettingsError::Value)?;
        shared_object::check(&settings.path).map_err(PluginSettingsError::Path)?;
        Ok(())
    }

    fn key_of(error: &PluginKindError) -> Option<&'static str> {
        matches!(
            error,
            PluginKindError::Settings(PluginSettingsError::Path(_))
        )
        .then_some("path")
    }

    fn build(
        name: &str,
        settings: PluginSettings,
    ) -> Result<std::sync::Arc<dyn pushgate_engine::provider::Provider>, PluginKindError> {
        Ok(std::sync::Arc::new(PluginProvider::new(name, settings)?))
    }
}
