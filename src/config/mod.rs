//! The gateway's TOML config: loading, `${VAR}` expansion, validation with file lines,
//! and the embedded default.

pub mod event_stream;
mod expand;
pub mod matrix;
pub mod providers;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pushgate_api::adapter::SettingsContext;
use serde::Deserialize;

use providers::Located;
pub use providers::{ProviderConfig, ProviderSpec, RawProvider};
use pushgate_engine::backoff::RetryPolicy;

/// A config problem, with the file and line it was found at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl ConfigError {
    /// An error at a line of a file.
    pub fn at(file: &str, line: usize, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            line: Some(line),
            message: message.into(),
        }
    }

    /// An error about a whole file.
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            line: None,
            message: message.into(),
        }
    }
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: String,
    pub data_dir: PathBuf,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest provider callback body accepted (providers batch receipts: Getui sends up to
    /// 200 lines in one request, and treats any answer, a 413 too, as delivered).
    pub max_callback_bytes: usize,
    /// How long a graceful shutdown may take before in-flight work is abandoned to the outbox.
    pub shutdown_grace_ms: u64,
    /// How long a commit that finds the store idle waits for others to share its flush (0:
    /// none; a flush started by writers that waited through the previous one never waits).
    pub commit_window_ms: u64,
    /// sled's page cache, in MiB.
    pub cache_capacity_mb: u64,
    /// Longest a client may take to send its request headers (slow clients are cut off).
    pub header_read_timeout_ms: u64,
    /// Device acknowledgements taken per second at most (`POST /v1/device-acks` needs no API
    /// key); beyond, 429.
    pub device_ack_rps: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./pushgate-data"),
            max_body_bytes: 64 * 1024,
            max_callback_bytes: 1024 * 1024,
            shutdown_grace_ms: 10_000,
            commit_window_ms: 1,
            cache_capacity_mb: 64,
            header_read_timeout_ms: 10_000,
            device_ack_rps: 1000,
        }
    }
}

/// `[delivery]`: TTLs and the provider retry schedule.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub default_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub max_attempts: u32,
    /// Longest a delivery is retried after acceptance; then it fails with its last error.
    pub max_retry_seconds: u64,
    /// Consecutive transient failures that open a provider's circuit (0: no breaker).
    pub circuit_failures: u32,
    /// How long an open circuit waits before one probe send.
    pub circuit_open_ms: u64,
    /// How long a message (with its deliveries) is kept after its TTL; then it is removed.
    pub retention_seconds: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            default_ttl_seconds: 3600,
            max_ttl_seconds: 3 * 24 * 3600,
            retry_base_ms: 1000,
            retry_max_ms: 300_000,
            max_attempts: 12,
            max_retry_seconds: 24 * 3600,
            circuit_failures: 10,
            circuit_open_ms: 5000,
            retention_seconds: 3 * 24 * 3600,
        }
    }
}

impl DeliveryConfig {
    /// The retry policy it describes.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(self.retry_base_ms),
            max_delay: Duration::from_millis(self.retry_max_ms),
            max_attempts: self.max_attempts,
        }
    }
}

/// `[webhooks]`: how events reach app servers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub max_attempts: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout_ms: 10_000,
            concurrency: 16,
            retry_base_ms: 1000,
            retry_max_ms: 600_000,
            max_attempts: 15,
        }
    }
}

impl WebhookConfig {
    /// The retry policy it describes.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(self.retry_base_ms),
            max_delay: Duration::from_millis(self.retry_max_ms),
            max_attempts: self.max_attempts,
        }
    }
}

/// `[log]`: how the gateway logs (to stderr).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `"text"` (the default) or `"json"` (one object per line).
    pub format: crate::telemetry::LogFormat,
    /// A tracing filter (`info`, `warn,pushgate_engine=debug`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: crate::telemetry::LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `[store]`: where the gateway keeps its state.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `"sled"`: the embedded store in `server.data_dir` (one node); `"postgres"`: a shared
    /// PostgreSQL database (several nodes).
    pub backend: String,
    /// The PostgreSQL URL (`postgres://user:password@host:port/database`); postgres only.
    pub url: String,
    /// Most PostgreSQL connections this node opens; postgres only.
    pub pool_size: usize,
    /// How long a claim on due work (a send, a webhook event) holds at least.
    pub lease_ms: u64,
    /// This node's name in claims; default host name and process id.
    pub node_id: Option<String>,
}

/// The backends `[store] backend` names.
pub const STORE_BACKENDS: &[&str] = &["sled", "postgres"];

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: "sled".into(),
            url: String::new(),
            pool_size: 16,
            lease_ms: 30_000,
            node_id: None,
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    /// Never prints the URL: it may carry the database password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field(
                "url",
                &if self.url.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("pool_size", &self.pool_size)
            .field("lease_ms", &self.lease_ms)
            .field("node_id", &self.node_id)
            .finish()
    }
}

/// `[[apps]]`: a tenant.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub id: String,
    pub api_keys: Vec<String>,
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub webhook_secret: Option<String>,
    pub default_provider: String,
    #[serde(default = "default_max_devices")]
    pub max_devices_per_alias: usize,
    /// Deliver upstream `{"to": "<alias>", "body": …}` envelopes directly.
    #[serde(default)]
    pub upstream_relay: bool,
    /// Deliveries waiting in the outboxes beyond which new messages get 429 (0: no limit).
    #[serde(default = "default_max_backlog")]
    pub max_backlog: u64,
    /// Up to this many events in one webhook POST (a JSON array); 1: one event per POST.
    #[serde(default = "one")]
    pub webhook_batch_max: usize,
}

fn one() -> usize {
    1
}

fn default_max_backlog() -> u64 {
    1_000_000
}

fn default_max_devices() -> usize {
    10
}

impl fmt::Debug for AppConfig {
    /// Never prints keys or secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("id", &self.id)
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("webhook_url", &self.webhook_url)
            .field("default_provider", &self.default_provider)
            .field("max_devices_per_alias", &self.max_devices_per_alias)
            .field("upstream_relay", &self.upstream_relay)
            .field("webhook_batch_max", &self.webhook_batch_max)
            .finish()
    }
}

/// Shortest API key accepted.
pub const MIN_API_KEY_CHARS: usize = 16;
/// Shortest webhook secret accepted.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    delivery: DeliveryConfig,
    #[serde(default)]
    webhooks: WebhookConfig,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    event_stream: event_stream::EventStreamConfig,
    #[serde(default)]
    matrix: matrix::MatrixConfig,
    #[serde(default)]
    matrix_apps: Vec<toml::Spanned<matrix::MatrixApp>>,
    #[serde(default)]
    apps: Vec<toml::Spanned<AppConfig>>,
    #[serde(default)]
    providers: Vec<toml::Spanned<RawProvider>>,
}

/// A complete, validated config.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub delivery: DeliveryConfig,
    pub webhooks: WebhookConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub event_stream: event_stream::EventStreamConfig,
    pub matrix: matrix::MatrixConfig,
    pub matrix_apps: Vec<matrix::MatrixApp>,
    pub apps: Vec<AppConfig>,
    pub providers: Vec<ProviderConfig>,
    /// Where it came from: a file name, or "embedded default".
    pub source: String,
}

impl Config {
    /// Reads, expands and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::file(&file, format!("cannot read the config: {e}")))?;
        Self::parse(&file, &text, &|name| std::env::var(name).ok())
    }

    /// Expands and validates config text; `file` names it in errors.
    pub fn parse(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = expand::expand(file, text, env)?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            ConfigError {
                file: file.to_string(),
                line,
                message: e.message().trim_end().to_string(),
            }
        })?;
        let context = SettingsContext {
            config_dir: Path::new(file)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
        };
        let mut providers = Vec::new();
        for spanned in &raw.providers {
            let at = Located {
                file,
                text: &text,
                span: spanned.span(),
            };
            let provider = ProviderConfig::from_raw(spanned.get_ref(), &at, &context)?;
            if providers
                .iter()
                .any(|p: &ProviderConfig| p.name == provider.name)
            {
                return Err(at.error(
                    Some("name"),
                    format!("provider {:?} is defined twice", provider.name),
                ));
            }
            providers.push(provider);
        }
        let mut apps: Vec<AppConfig> = Vec::new();
        for spanned in &raw.apps {
            let at = Located {
                file,
                text: &text,
                span: spanned.span(),
            };
            let app = spanned.get_ref().clone();
            validate_app(&app, &providers, &at)?;
            if apps.iter().any(|a| a.id == app.id) {
                return Err(at.error(Some("id"), format!("app {:?} is defined twice", app.id)));
            }
            apps.push(app);
        }
        let mut matrix_apps = Vec::new();
        for spanned in &raw.matrix_apps {
            let at = Located {
                file,
                text: &text,
                span: spanned.span(),
            };
            let entry = spanned.get_ref().clone();
            matrix::validate_matrix_app(&entry, &apps, &providers, &at)?;
            matrix_apps.push(entry);
        }
        let config = Config {
            server: raw.server,
            delivery: raw.delivery,
            webhooks: raw.webhooks,
            store: raw.store,
            log: raw.log,
            event_stream: raw.event_stream,
            matrix: raw.matrix,
            matrix_apps,
            apps,
            providers,
            source: file.to_string(),
        };
        config.validate_global(&text)?;
        Ok(config)
    }

    fn validate_global(&self, text: &str) -> Result<(), ConfigError> {
        let line_of = |section: &str, key: &str| {
            let mut in_section = false;
            for (i, l) in text.lines().enumerate() {
                let t = l.trim();
                if t.starts_with('[') {
                    in_section = t == format!("[{section}]");
                } else if in_section
                    && t.strip_prefix(key)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                {
                    return Some(i + 1);
                }
            }
            None
        };
        let err = |section: &str, key: &str, message: String| ConfigError {
            file: self.source.clone(),
            line: line_of(section, key),
            message: format!("{section}.{key}: {message}"),
        };
        self.listen_addr().map_err(|m| err("server", "listen", m))?;
        let s = &self.server;
        if !(1024..=64 * 1024 * 1024).contains(&s.max_body_bytes) {
            return Err(err(
                "server",
                "max_body_bytes",
                "must be between 1024 and 67108864".into(),
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&s.max_callback_bytes) {
            return Err(err(
                "server",
                "max_callback_bytes",
                "must be between 1024 and 67108864".into(),
            ));
        }
        if s.header_read_timeout_ms == 0 {
            return Err(err(
                "server",
                "header_read_timeout_ms",
                "must be at least 1".into(),
            ));
        }
        if s.cache_capacity_mb == 0 {
            return Err(err(
                "server",
                "cache_capacity_mb",
                "must be at least 1".into(),
            ));
        }
        if s.commit_window_ms > 100 {
            return Err(err(
                "server",
                "commit_window_ms",
                "must be at most 100".into(),
            ));
        }
        let d = &self.delivery;
        if d.default_ttl_seconds == 0 || d.default_ttl_seconds > d.max_ttl_seconds {
            return Err(err(
                "delivery",
                "default_ttl_seconds",
                "must be between 1 and max_ttl_seconds".into(),
            ));
        }
        if d.max_attempts == 0 {
            return Err(err("delivery", "max_attempts", "must be at least 1".into()));
        }
        if d.max_retry_seconds == 0 {
            return Err(err(
                "delivery",
                "max_retry_seconds",
                "must be at least 1".into(),
            ));
        }
        if d.circuit_failures > 0 && d.circuit_open_ms == 0 {
            return Err(err(
                "delivery",
                "circuit_open_ms",
                "must be at least 1".into(),
            ));
        }
        if d.retry_base_ms == 0 || d.retry_base_ms > d.retry_max_ms {
            return Err(err(
                "delivery",
                "retry_base_ms",
                "must be between 1 and retry_max_ms".into(),
            ));
        }
        let w = &self.webhooks;
        if w.max_attempts == 0 {
            return Err(err("webhooks", "max_attempts", "must be at least 1".into()));
        }
        if w.concurrency == 0 {
            return Err(err("webhooks", "concurrency", "must be at least 1".into()));
        }
        if w.timeout_ms == 0 {
            return Err(err("webhooks", "timeout_ms", "must be at least 1".into()));
        }
        if w.retry_base_ms == 0 || w.retry_base_ms > w.retry_max_ms {
            return Err(err(
                "webhooks",
                "retry_base_ms",
                "must be between 1 and retry_max_ms".into(),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(err("log", "level", format!("not a log filter: {e}")));
        }
        let st = &self.store;
        if !STORE_BACKENDS.contains(&st.backend.as_str()) {
            return Err(err(
                "store",
                "backend",
                format!(
                    "unknown backend {:?}; expected \"sled\" or \"postgres\"",
                    st.backend
                ),
            ));
        }
        if st.backend == "postgres" {
            if st.url.trim().is_empty() {
                return Err(err(
                    "store",
                    "url",
                    "backend \"postgres\" needs a url (postgres://user:password@host:port/database)"
                        .into(),
                ));
            }
            if let Err(e) = pushgate_store_postgres::check_url(&st.url) {
                return Err(err("store", "url", e));
            }
            if !(2..=1000).contains(&st.pool_size) {
                return Err(err(
                    "store",
                    "pool_size",
                    "must be between 2 and 1000".into(),
                ));
            }
        } else if !st.url.is_empty() {
            return Err(err(
                "store",
                "url",
                "only backend \"postgres\" takes a url".into(),
            ));
        }
        if !(1000..=3_600_000).contains(&st.lease_ms) {
            return Err(err(
                "store",
                "lease_ms",
                "must be between 1000 and 3600000".into(),
            ));
        }
        if let Some(node) = &st.node_id {
            pushgate_engine::validate::name("node_id", node)
                .map_err(|e| err("store", "node_id", e.0))?;
        }
        matrix::validate_matrix(&self.matrix, |key, m| err("matrix", key, m))?;
        event_stream::validate(&self.event_stream, |key, m| err("event_stream", key, m))?;
        if self.server.device_ack_rps == 0 {
            return Err(err("server", "device_ack_rps", "must be at least 1".into()));
        }
        if self.apps.is_empty() {
            return Err(ConfigError::file(
                &self.source,
                "at least one [[apps]] entry is needed",
            ));
        }
        Ok(())
    }

    /// The socket address of `server.listen`.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.server.listen.parse().map_err(|_| {
            format!(
                "{:?} is not an address like 127.0.0.1:8080",
                self.server.listen
            )
        })
    }

    /// The embedded default: one `demo` app with `api_key` on the mock provider.
    pub fn embedded(data_dir: PathBuf, api_key: String) -> Config {
        Config {
            server: ServerConfig {
                data_dir,
                ..ServerConfig::default()
            },
            delivery: DeliveryConfig::default(),
            webhooks: WebhookConfig::default(),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            event_stream: event_stream::EventStreamConfig::default(),
            matrix: matrix::MatrixConfig::default(),
            matrix_apps: Vec::new(),
            apps: vec![AppConfig {
                id: "demo".into(),
                api_keys: vec![api_key],
                webhook_url: None,
                webhook_secret: None,
                default_provider: "mock".into(),
                max_devices_per_alias: default_max_devices(),
                upstream_relay: false,
                max_backlog: default_max_backlog(),
                webhook_batch_max: 1,
            }],
            providers: vec![ProviderConfig {
                name: "mock".into(),
                spec: ProviderSpec::new::<pushgate_mock::MockKind>(
                    pushgate_mock::MockSettings::default(),
                ),
            }],
            source: "embedded default".into(),
        }
    }
}

fn validate_app(
    app: &AppConfig,
    providers: &[ProviderConfig],
    at: &Located<'_>,
) -> Result<(), ConfigError> {
    let label = format!("app {:?}", app.id);
    pushgate_engine::validate::name("app id", &app.id).map_err(|e| at.error(Some("id"), e.0))?;
    if app.api_keys.is_empty() {
        return Err(at.error(
            Some("api_keys"),
            format!("{label}: api_keys must list at least one key"),
        ));
    }
    if let Some(short) = app
        .api_keys
        .iter()
        .position(|k| k.chars().count() < MIN_API_KEY_CHARS)
    {
        return Err(at.error(
            Some("api_keys"),
            format!(
                "{label}: api key #{} is shorter than {MIN_API_KEY_CHARS} characters",
                short + 1
            ),
        ));
    }
    if !providers.iter().any(|p| p.name == app.default_provider) {
        return Err(at.error(
            Some("default_provider"),
            format!(
                "{label}: default_provider {:?} is not a configured provider",
                app.default_provider
            ),
        ));
    }
    if !(1..=1000).contains(&app.max_devices_per_alias) {
        return Err(at.error(
            Some("max_devices_per_alias"),
            format!("{label}: max_devices_per_alias must be between 1 and 1000"),
        ));
    }
    if !(1..=1000).contains(&app.webhook_batch_max) {
        return Err(at.error(
            Some("webhook_batch_max"),
            format!("{label}: webhook_batch_max must be between 1 and 1000"),
        ));
    }
    match (&app.webhook_url, &app.webhook_secret) {
        (Some(url), secret) => {
            crate::webhook::check_url(url)
                .map_err(|m| at.error(Some("webhook_url"), format!("{label}: webhook_url {m}")))?;
            match secret {
                Some(s) if s.chars().count() >= MIN_WEBHOOK_SECRET_CHARS => {}
                _ => {
                    return Err(at.error(
                        Some("webhook_secret"),
                        format!("{label}: webhook_url needs a webhook_secret of at least {MIN_WEBHOOK_SECRET_CHARS} characters"),
                    ))
                }
            }
        }
        (None, Some(_)) => {
            return Err(at.error(
                Some("webhook_secret"),
                format!("{label}: webhook_secret without webhook_url"),
            ))
        }
        (None, None) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
