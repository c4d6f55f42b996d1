//! `[matrix]` and `[[matrix_apps]]`: the Matrix push gateway API (`/_matrix/push/v1/notify`)
//! and which pushgate app and provider each Matrix `app_id` goes to.

use serde::Deserialize;

use super::providers::{Located, ProviderConfig};
use super::{AppConfig, ConfigError};

/// `[matrix]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatrixConfig {
    /// How long a notify waits for its first sends' outcome, to name rejected pushkeys.
    pub response_wait_ms: u64,
    /// The TTL of a notification's deliveries (a notify carries none; Sygnal's is 15 min).
    pub ttl_seconds: u64,
    /// Notifies taken per second from one source address (unset: no limit; a homeserver
    /// is one source and may send thousands a second).
    pub per_source_rps: Option<u32>,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        MatrixConfig {
            response_wait_ms: 2000,
            ttl_seconds: 900,
            per_source_rps: None,
        }
    }
}

/// `[[matrix_apps]]`: a Matrix `app_id` (exact, or a glob with `*` as Sygnal allows) →
/// a pushgate app and one of its providers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatrixApp {
    pub app_id: String,
    pub app: String,
    pub provider: String,
    /// APNs only: pushkeys are base64 device tokens, sent as hex (Sygnal's option, on by
    /// default; off when the app registers its pushers with hex tokens).
    #[serde(default = "yes")]
    pub convert_device_token_to_hex: bool,
}

fn yes() -> bool {
    true
}

impl MatrixApp {
    /// Whether `app_id` matches this entry (`*` matches any run of characters).
    pub fn matches(&self, app_id: &str) -> bool {
        glob(&self.app_id, app_id)
    }
}

/// `*`-only glob matching.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Checks `[matrix]`; `line_of` finds a key's line.
pub fn validate_matrix(
    matrix: &MatrixConfig,
    err: impl Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if !(100..=30_000).contains(&matrix.response_wait_ms) {
        return Err(err(
            "response_wait_ms",
            "must be between 100 and 30000".into(),
        ));
    }
    if !(1..=2_419_200).contains(&matrix.ttl_seconds) {
        return Err(err("ttl_seconds", "must be between 1 and 2419200".into()));
    }
    if matrix.per_source_rps == Some(0) {
        return Err(err(
            "per_source_rps",
            "must be at least 1 (leave it out for no limit)".into(),
        ));
    }
    Ok(())
}

/// Checks one `[[matrix_apps]]` entry against the apps and providers.
pub fn validate_matrix_app(
    entry: &MatrixApp,
    apps: &[AppConfig],
    providers: &[ProviderConfig],
    at: &Located<'_>,
) -> Result<(), ConfigError> {
    let label = format!("matrix app {:?}", entry.app_id);
    if entry.app_id.is_empty()
        || entry.app_id.len() > 255
        || entry
            .app_id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(at.error(
            Some("app_id"),
            format!(
                "{label}: app_id must be 1 to 255 characters without spaces (a glob may use *)"
            ),
        ));
    }
    if !apps.iter().any(|a| a.id == entry.app) {
        return Err(at.error(
            Some("app"),
            format!("{label}: app {:?} is not defined in [[apps]]", entry.app),
        ));
    }
    if !providers.iter().any(|p| p.name == entry.provider) {
        return Err(at.error(
            Some("provider"),
            format!(
                "{label}: provider {:?} is not defined in [[providers]]",
                entry.provider
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn app_id_globs_match_as_sygnal_does() {
        assert!(glob("com.example.chat", "com.example.chat"));
        assert!(!glob("com.example.chat", "com.example.chat.ios"));
        assert!(glob("com.example.*", "com.example.chat.ios"));
        assert!(glob("*.android", "com.example.android"));
        assert!(glob("com.*.ios", "com.example.ios"));
        assert!(!glob("com.*.ios", "com.example.android"));
        assert!(glob("*", "anything"));
        assert!(!glob("a*b*c", "ab"));
    }
}
