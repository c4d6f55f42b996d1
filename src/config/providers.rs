//! `[[providers]]` entries: the common keys, and each kind's own settings, deserialised
//! by the adapter's settings type (see [`crate::providers::REGISTRY`]) with every error
//! pointed at its line.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use pushgate_api::adapter::{AdapterKind, SettingsContext};
use pushgate_engine::provider::Provider;
use serde::Deserialize;

use super::ConfigError;

/// One `[[providers]]` table as written: `name`, `kind`, and the kind's own keys.
#[derive(Debug, Deserialize)]
pub struct RawProvider {
    pub name: String,
    pub kind: String,
    #[serde(flatten)]
    pub rest: toml::Table,
}

/// A provider's validated settings, of the kind that parsed them.
#[derive(Clone)]
pub struct ProviderSpec {
    kind: &'static str,
    settings: Arc<dyn KindSettings>,
}

/// Settings of some [`AdapterKind`], with what the gateway does with them.
trait KindSettings: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn same(&self, other: &dyn KindSettings) -> bool;
    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildFailure>;
}

/// Why a provider could not be built: the adapter's own error.
pub type BuildFailure = Box<dyn std::error::Error + Send + Sync>;

struct Settings<K: AdapterKind>(K::Settings);

impl<K: AdapterKind> KindSettings for Settings<K> {
    fn as_any(&self) -> &dyn Any {
        &self.0
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
    fn same(&self, other: &dyn KindSettings) -> bool {
        other
            .as_any()
            .downcast_ref::<K::Settings>()
            .is_some_and(|o| *o == self.0)
    }
    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildFailure> {
        K::build(name, self.0.clone()).map_err(|e| Box::new(e) as BuildFailure)
    }
}

impl ProviderSpec {
    /// Settings of kind `K`, as checked by its `prepare`.
    pub fn new<K: AdapterKind>(settings: K::Settings) -> Self {
        ProviderSpec {
            kind: K::KIND,
            settings: Arc::new(Settings::<K>(settings)),
        }
    }

    /// The `kind` these settings are of.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The settings, if they are of type `S`.
    pub fn settings<S: 'static>(&self) -> Option<&S> {
        self.settings.as_any().downcast_ref()
    }

    /// Builds the provider named `name`.
    pub fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildFailure> {
        self.settings.build(name)
    }
}

impl fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.debug(f)
    }
}

impl PartialEq for ProviderSpec {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.settings.same(other.settings.as_ref())
    }
}

/// One registered kind: its name and its parser (see [`crate::providers::REGISTRY`]).
pub struct Registration {
    pub kind: &'static str,
    parse: fn(&RawProvider, &Located<'_>, &SettingsContext) -> Result<ProviderSpec, ConfigError>,
}

impl Registration {
    /// The registration of kind `K`.
    pub const fn of<K: AdapterKind>() -> Self {
        Registration {
            kind: K::KIND,
            parse: parse_kind::<K>,
        }
    }
}

/// Parses and prepares settings of kind `K`.
fn parse_kind<K: AdapterKind>(
    raw: &RawProvider,
    at: &Located<'_>,
    context: &SettingsContext,
) -> Result<ProviderSpec, ConfigError> {
    let mut settings: K::Settings = settings(raw, at)?;
    K::prepare(&mut settings, context)
        .map_err(|e| at.error(K::key_of(&e), format!("provider {:?}: {e}", raw.name)))?;
    Ok(ProviderSpec::new::<K>(settings))
}

/// A provider entry after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    pub spec: ProviderSpec,
}

/// Where a provider table sits in the file, to point errors at lines.
pub struct Located<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub span: std::ops::Range<usize>,
}

impl Located<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line of `key = ...` within the table, or the table's first line.
    fn line_of_key(&self, key: &str) -> usize {
        let body = self.text.get(self.span.clone()).unwrap_or("");
        let mut offset = self.span.start;
        for line in body.split_inclusive('\n') {
            let t = line.trim_start();
            let bare = t
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='));
            let quoted = t.starts_with(&format!("\"{key}\"")) || t.starts_with(&format!("'{key}'"));
            if bare || quoted {
                return self.line_of(offset);
            }
            offset += line.len();
        }
        self.line_of(self.span.start)
    }

    pub(super) fn error(&self, key: Option<&str>, message: impl Into<String>) -> ConfigError {
        let line = match key {
            Some(k) => self.line_of_key(k),
            None => self.line_of(self.span.start),
        };
        ConfigError::at(self.file, line, message)
    }
}

fn settings<T: serde::de::DeserializeOwned>(
    raw: &RawProvider,
    at: &Located<'_>,
) -> Result<T, ConfigError> {
    let value = toml::Value::Table(raw.rest.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = inner.lines().next().unwrap_or("").trim_end();
        // An unknown key is named in the message itself; the path is the table then.
        let key = inner
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
            .map(str::to_string)
            .or_else(|| (path != ".").then(|| path.split('.').next().unwrap_or("").to_string()));
        let label = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        at.error(
            key.as_deref(),
            format!("provider {:?}: {label}{inner}", raw.name),
        )
    })
}

impl ProviderConfig {
    /// Validates one entry; relative paths in it are resolved with `context`.
    pub fn from_raw(
        raw: &RawProvider,
        at: &Located<'_>,
        context: &SettingsContext,
    ) -> Result<Self, ConfigError> {
        pushgate_engine::validate::name("provider name", &raw.name)
            .map_err(|e| at.error(Some("name"), e.0))?;
        let registry = crate::providers::REGISTRY;
        let Some(registration) = registry.iter().find(|r| r.kind == raw.kind) else {
            let kinds: Vec<&str> = registry.iter().map(|r| r.kind).collect();
            return Err(at.error(
                Some("kind"),
                format!(
                    "provider {:?}: unknown kind {:?}; expected one of {}",
                    raw.name,
                    raw.kind,
                    kinds.join(", ")
                ),
            ));
        };
        Ok(ProviderConfig {
            name: raw.name.clone(),
            spec: (registration.parse)(raw, at, context)?,
        })
    }
}
