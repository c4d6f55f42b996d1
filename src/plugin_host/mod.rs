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
