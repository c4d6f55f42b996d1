//! A local FCM for tests and demos: the OAuth 2.0 token endpoint (it checks the assertion's
//! RS256 signature against the service account's key and its claims), `messages:send` (it
//! checks the bearer token and the message's shape as FCM does), device inboxes, devices that
//! post their ack token back to pushgate, and fault injection (unregistered and invalid
//! tokens, 429 with `Retry-After`, 5xx, slow answers). Admin routes live under `/_emulator/`.

mod routes;
mod verify;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::service_account::ServiceAccount;

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
    /// Share (0–1) of calls answered only after `slow_ms`.
    pub slow_rate: f64,
    pub slow_ms: u64,
}

/// How the emulator behaves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Lifetime of issued access tokens, in seconds.
    pub token_ttl_s: u64,
    /// Where devices post `{"ack"}` for messages whose data carries an `ack` (pushgate:
    /// `/v1/device-acks`); none: devices do not acknowledge.
    pub device_ack_url: Option<String>,
    /// Registration tokens with this prefix are not valid FCM tokens (400 INVALID_ARGUMENT).
    pub invalid_token_prefix: String,
    /// Registration tokens with this prefix are gone (404 UNREGISTERED).
    pub unregistered_token_prefix: String,
    /// Registration tokens with this prefix belong to another sender (403 SENDER_ID_MISMATCH).
    pub mismatched_token_prefix: String,
    pub faults: Faults,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            token_ttl_s: 3599,
            device_ack_url: None,
            invalid_token_prefix: "invalid".into(),
            unregistered_token_prefix: "unregistered".into(),
            mismatched_token_prefix: "mismatched".into(),
            faults: Faults::default(),
        }
    }
}

/// A message a simulated device received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceMessage {
    /// FCM's message name (`projects/{id}/messages/{n}`).
    pub name: String,
    pub data: HashMap<String, String>,
    /// The `android` block as sent.
    pub android: Value,
    /// The `notification` block, if the message had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Value>,
    pub received_at_ms: u64,
}

/// A request the emulator received (for protocol tests).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    pub body: String,
}

const MAX_RECORDED: usize = 2000;
const MAX_INBOX: usize = 10_000;

pub(crate) struct Shared {
    pub account: ServiceAccount,
    /// The DER `RSAPublicKey` of the account's key.
    pub public_key: Vec<u8>,
    pub config: RwLock<EmulatorConfig>,
    /// Issued access tokens and when they expire (epoch seconds).
    pub tokens: Mutex<HashMap<String, u64>>,
    pub unregistered: Mutex<HashSet<String>>,
    pub inboxes: Mutex<HashMap<String, Vec<DeviceMessage>>>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub sent: Mutex<u64>,
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

    pub fn record(&self, request: RecordedRequest) {
        let mut all = lock(&self.requests);
        if all.len() >= MAX_RECORDED {
            all.remove(0);
        }
        all.push(request);
    }

    pub fn deliver(&self, token: &str, message: DeviceMessage) {
        let mut inboxes = lock(&self.inboxes);
        let inbox = inboxes.entry(token.to_string()).or_default();
        if inbox.len() >= MAX_INBOX {
            inbox.remove(0);
        }
        inbox.push(message);
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("service account: {0}")]
    Account(#[from] crate::error::FcmError),
}

/// A running emulator; dropping it stops the server.
pub struct Emulator {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    ack_pump: JoinHandle<()>,
}

impl Emulator {
    /// Starts on `listen` (port 0 for a free one) for the project of `account`, whose key
    /// checks the assertions (its `token_uri` should be [`Emulator::token_uri`]).
    pub async fn start(
        listen: SocketAddr,
        account: ServiceAccount,
        config: EmulatorConfig,
    ) -> Result<Emulator, EmulatorError> {
        let public_key = account.signer()?.public_key_der();
        let listener = TcpListener::bind(listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (acks, rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            account,
            public_key,
            config: RwLock::new(config),
            tokens: Mutex::new(HashMap::new()),
            unregistered: Mutex::new(HashSet::new()),
            inboxes: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            sent: Mutex::new(0),
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
        let server = tokio::spawn(routes::serve(listener, shared.clone()));
        Ok(Emulator {
            url,
            shared,
            server,
            ack_pump,
        })
    }

    /// `http://127.0.0.1:<port>`: the `base_url` for pushgate.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token endpoint a service account for this emulator names.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.url)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.update(|c| c.faults = faults);
    }

    pub fn set_device_ack_url(&self, url: Option<String>) {
        self.shared.update(|c| c.device_ack_url = url);
    }

    /// Revokes every issued access token: the next sends get 401.
    pub fn revoke_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// Makes `token` gone: sends to it get 404 UNREGISTERED.
    pub fn unregister(&self, token: &str) {
        lock(&self.shared.unregistered).insert(token.to_string());
    }

    /// What a simulated device received.
    pub fn inbox(&self, token: &str) -> Vec<DeviceMessage> {
        lock(&self.shared.inboxes)
            .get(token)
            .cloned()
            .unwrap_or_default()
    }

    /// Writes the emulator's service account to `path`, its `token_uri` this emulator's.
    pub fn write_service_account(&self, path: &Path) -> std::io::Result<()> {
        let mut account = self.shared.account.clone();
        account.token_uri = self.token_uri();
        std::fs::write(path, account.to_json().to_string())
    }

    /// Every request received (bounded), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// How many access tokens were issued.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path == "/token")
            .count()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
        self.ack_pump.abort();
    }
}

/// A new service account for `project_id` (its RSA key made by `openssl genpkey`, which
/// must be installed); [`Emulator::write_service_account`] writes it with the emulator's
/// token endpoint.
pub fn generate_service_account(project_id: &str) -> Result<ServiceAccount, String> {
    let output = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .map_err(|e| format!("cannot run openssl (install it): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let private_key = String::from_utf8(output.stdout).map_err(|e| e.to_string())?;
    let file = json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": format!("{:032x}", rand::random::<u128>()),
        "private_key": private_key,
        "client_email": format!("pushgate@{project_id}.iam.gserviceaccount.com"),
        "token_uri": crate::service_account::AUDIENCE,
    });
    ServiceAccount::parse(&file.to_string())
}
