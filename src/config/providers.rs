//! `[[providers]]` entries: the common keys, and each kind's own settings, deserialised
//! by the adapter's settings type with every error pointed at its line.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::ConfigError;
use crate::plugin_host::PluginSettings;
use pushgate_getui::GetuiSettings;
use pushgate_mock::MockSettings;
use pushgate_webpush::WebPushSettings;

/// One `[[providers]]` table as written: `name`, `kind`, and the kind's own keys.
#[derive(Debug, Deserialize)]
pub struct RawProvider {
    pub name: String,
    pub kind: String,
    #[serde(flatten)]
    pub rest: toml::Table,
}

/// A provider's validated settings, by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderSpec {
    Mock(MockSettings),
    Getui(GetuiSettings),
    Plugin(PluginSettings),
    WebPush(WebPushSettings),
}

/// Every kind a config may name.
pub const KINDS: &[&str] = &["mock", "getui", "webpush", "plugin"];

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

fn settings<T: DeserializeOwned>(raw: &RawProvider, at: &Located<'_>) -> Result<T, ConfigError> {
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
    /// Validates one entry.
    pub fn from_raw(raw: &RawProvider, at: &Located<'_>) -> Result<Self, ConfigError> {
        pushgate_engine::validate::name("provider name", &raw.name)
            .map_err(|e| at.error(Some("name"), e.0))?;
        let spec = match raw.kind.as_str() {
            "mock" => {
                let s: MockSettings = settings(raw, at)?;
                s.validate()
                    .map_err(|e| at.error(None, format!("provider {:?}: {e}", raw.name)))?;
                ProviderSpec::Mock(s)
            }
            "getui" => {
                let s: GetuiSettings = settings(raw, at)?;
                s.validate()
                    .map_err(|e| at.error(None, format!("provider {:?}: {e}", raw.name)))?;
                ProviderSpec::Getui(s)
            }
            "webpush" => {
                let s: WebPushSettings = settings(raw, at)?;
                s.validate()
                    .map_err(|e| at.error(None, format!("provider {:?}: {e}", raw.name)))?;
                ProviderSpec::WebPush(s)
            }
            "plugin" => {
                let s: PluginSettings = settings(raw, at)?;
                s.validate()
                    .map_err(|e| at.error(None, format!("provider {:?}: {e}", raw.name)))?;
                crate::plugin_host::shared_object::check(&s.path).map_err(|e| {
                    at.error(Some("path"), format!("provider {:?}: path {e}", raw.name))
                })?;
                ProviderSpec::Plugin(s)
            }
            other => {
                return Err(at.error(
                    Some("kind"),
                    format!(
                        "provider {:?}: unknown kind {other:?}; expected one of {}",
                        raw.name,
                        KINDS.join(", ")
                    ),
                ))
            }
        };
        Ok(ProviderConfig {
            name: raw.name.clone(),
            spec,
        })
    }
}
