//! A local APNs for tests and demos: HTTP/2 over TLS (ALPN `h2`, a certificate from a CA of
//! its own), `POST /3/device/{token}` checking the ES256 provider token (signature, `kid`,
//! `iss`, age) and the `apns-*` headers and payload as APNs does, device inboxes, devices that
//! post their ack token back to pushgate, and fault injection (gone and foreign tokens, 429
//! with `Retry-After`, 5xx, slow answers, GOAWAY after some streams).

mod routes;
mod verify;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use p256::ecdsa::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Fault injection knobs (all off by default).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share (0–1) of sends answered with `error_status` (429, 500 or 503).
    pub error_rate: f64,
    /// The status of injected errors (default 503).
    pub error_status: Option<u16>,
    /// `Retry-After` seconds on injected errors, if any.
    pub retry_after_s: Option<u64>,
    /// Share (0–1) of sends answered only after `slow_ms`.
    pub slow_rate: f64,
    pub slow_ms: u64,
    /// Each connection is closed with GOAWAY after this many streams.
    pub goaway_after_streams: Option<u64>,
}

/// How the emulator behaves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    pub team_id: String,
    pub key_id: String,
    /// The bundle id tokens belong to.
    pub topic: String,
    /// Where devices post `{"ack"}` for notifications that carry one (pushgate:
    /// `/v1/device-acks`); none: devices do not acknowledge.
    pub device_ack_url: Option<String>,
    /// Device tokens with this prefix are gone (410 Unregistered).
    pub unregistered_token_prefix: String,
    /// Device tokens with this prefix belong to another app (400 DeviceTokenNotForTopic).
    pub foreign_token_prefix: String,
    pub faults: Faults,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            team_id: "EMUTEAM001".into(),
            key_id: "EMUKEY0001".into(),
            topic: "com.example.chat".into(),
            device_ack_url: None,
            unregistered_token_prefix: "dead".into(),
            foreign_token_prefix: "beef".into(),
            faults: Faults::default(),
        }
    }
}

/// A notification a simulated device received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceNotification {
    pub apns_id: String,
    pub push_type: String,
    pub priority: String,
    pub expiration: Option<u64>,
    pub collapse_id: Option<String>,
    pub payload: Value,
    pub received_at_ms: u64,
}

/// The emulator's TLS identity, made by [`generate_tls`].
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA that signed the server certificate: pushgate's `ca_file`.
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

const MAX_INBOX: usize = 10_000;

pub(crate) struct Shared {
    pub key: VerifyingKey,
    pub config: RwLock<EmulatorConfig>,
    pub inboxes: Mutex<HashMap<String, Vec<DeviceNotification>>>,
    /// Every distinct provider token seen.
    pub tokens_seen: Mutex<HashSet<String>>,
    /// Provider tokens answered `ExpiredProviderToken` from now on.
    pub expired_tokens: Mutex<HashSet<String>>,
    pub connections: AtomicU64,
    pub streams: AtomicU64,
    pub acks: tokio::sync::mpsc::UnboundedSender<String>,
    pub http: pushgate_api::http_client::HttpClient,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn config(&self) -> EmulatorConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut EmulatorConfig)) {
        f(&mut self.config.write().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn deliver(&self, token: &str, notification: DeviceNotification) {
        let mut inboxes = lock(&self.inboxes);
        let inbox = inboxes.entry(token.to_string()).or_default();
        if inbox.len() >= MAX_INBOX {
            inbox.remove(0);
        }
        inbox.push(notification);
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("TLS identity: {0}")]
    Tls(String),
}

/// A running emulator; dropping it stops the server.
pub struct Emulator {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    ack_pump: JoinHandle<()>,
}

impl Emulator {
    /// Starts on `listen` (port 0 for a free one) with the TLS identity `tls`; provider tokens
    /// must verify with `key`.
    pub async fn start(
        listen: SocketAddr,
        key: VerifyingKey,
        tls: &TlsFiles,
        config: EmulatorConfig,
    ) -> Result<Emulator, EmulatorError> {
        let acceptor = routes::acceptor(tls).map_err(EmulatorError::Tls)?;
        let listener = TcpListener::bind(listen).await?;
        let url = format!("https://{}", listener.local_addr()?);
        let (acks, rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            key,
            config: RwLock::new(config),
            inboxes: Mutex::new(HashMap::new()),
            tokens_seen: Mutex::new(HashSet::new()),
            expired_tokens: Mutex::new(HashSet::new()),
            connections: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            acks,
            http: pushgate_api::http_client::build(8),
        });
        let ack_pump = {
            let shared = shared.clone();
            tokio::spawn(pushgate_api::http_client::pump_device_acks(
                shared.http.clone(),
                rx,
                move || shared.config().device_ack_url,
            ))
        };
        let server = tokio::spawn(routes::serve(listener, acceptor, shared.clone()));
        Ok(Emulator {
            url,
            shared,
            server,
            ack_pump,
        })
    }

    /// `https://127.0.0.1:<port>`: the `base_url` for pushgate.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> EmulatorConfig {
        self.shared.config()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.update(|c| c.faults = faults);
    }

    pub fn set_device_ack_url(&self, url: Option<String>) {
        self.shared.update(|c| c.device_ack_url = url);
    }

    /// What a simulated device received.
    pub fn inbox(&self, token: &str) -> Vec<DeviceNotification> {
        lock(&self.shared.inboxes)
            .get(token)
            .cloned()
            .unwrap_or_default()
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Streams (requests) received so far.
    pub fn streams(&self) -> u64 {
        self.shared.streams.load(Ordering::SeqCst)
    }

    /// Makes every provider token seen so far expired (as an hour passing would).
    pub fn expire_provider_tokens(&self) {
        let seen = lock(&self.shared.tokens_seen).clone();
        lock(&self.shared.expired_tokens).extend(seen);
    }

    /// Distinct provider tokens seen so far.
    pub fn provider_tokens_seen(&self) -> usize {
        lock(&self.shared.tokens_seen).len()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
        self.ack_pump.abort();
    }
}

fn openssl(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run openssl (install it): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Makes a CA and a server certificate for 127.0.0.1 and localhost in `dir` (with
/// `openssl`, which must be installed).
pub fn generate_tls(dir: &Path) -> Result<TlsFiles, String> {
    let path = |name: &str| dir.join(name);
    let text = |p: &PathBuf| p.display().to_string();
    let (ca_key, ca_cert) = (path("apns-emu-ca.key"), path("apns-emu-ca.pem"));
    let (key, csr, cert, ext) = (
        path("apns-emu-server.key"),
        path("apns-emu-server.csr"),
        path("apns-emu-server.pem"),
        path("apns-emu-server.ext"),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &text(&ca_key),
        "-out",
        &text(&ca_cert),
        "-days",
        "30",
        "-subj",
        "/CN=pushgate APNs emulator CA",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &text(&key),
        "-out",
        &text(&csr),
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &text(&csr),
        "-CA",
        &text(&ca_cert),
        "-CAkey",
        &text(&ca_key),
        "-CAcreateserial",
        "-out",
        &text(&cert),
        "-days",
        "30",
        "-extfile",
        &text(&ext),
    ])?;
    Ok(TlsFiles {
        ca_cert,
        server_cert: cert,
        server_key: key,
    })
}
