//! [`AdapterKind`]: how an adapter crate defines a `[[providers]] kind`: its settings, their
//! checks and how the provider is built. The gateway registers each kind once (one line in
//! its registry) and does the rest (parsing with line numbers, building, wiring) generically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::provider::Provider;

/// What the settings of a provider are checked against: where the config file is, so that
/// relative key and certificate paths name files beside it.
#[derive(Clone, Debug)]
pub struct SettingsContext {
    /// The directory of the config file (`.` for a config given without a directory).
    pub config_dir: PathBuf,
}

impl SettingsContext {
    /// `path` as written in the config, made relative to the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() || path.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            self.config_dir.join(path)
        }
    }
}

/// A provider kind, implemented by a zero-sized type in its adapter crate.
pub trait AdapterKind: 'static {
    /// The `kind = "…"` value that selects it.
    const KIND: &'static str;

    /// The kind's own keys in its `[[providers]]` table (besides `name` and `kind`).
    type Settings: DeserializeOwned + Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static;

    /// Why settings are refused or a provider cannot be built.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Checks parsed settings (the error names the key); resolves relative paths with
    /// `context`. Files are read by [`AdapterKind::build`], not here.
    fn prepare(settings: &mut Self::Settings, context: &SettingsContext)
        -> Result<(), Self::Error>;

    /// The key a refusal from [`AdapterKind::prepare`] is about, to point the config error at
    /// its line (default: the table's first line).
    fn key_of(_error: &Self::Error) -> Option<&'static str> {
        None
    }

    /// Builds the provider named `name` (reads its key files, builds its clients).
    fn build(name: &str, settings: Self::Settings) -> Result<Arc<dyn Provider>, Self::Error>;
}
