//! A Getui REST v2 emulator: a local Getui for tests and for trying pushgate without
//! Getui credentials. Auth with sign check and configurable token expiry, 10001 on bad
//! tokens, 20001 on invalid parameters, `/user/alias` with Getui's rules, single and batch
//! pushes with request_id dedupe, simulated devices that send signed receipt lines to a
//! callback URL, upstream lines on demand, and fault injection (5xx, slow answers, dropped
//! receipts, a 301 redirect). Admin routes live under `/_emulator/`.

mod outbound;
mod routes;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use state::{Aliases, DeviceMessage, Pushes};

/// Fault injection knobs (all off by default).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share (0–1) of API calls answered with HTTP 500 and a non-Getui body.
    pub error_rate: f64,
    /// Share (0–1) of API calls answered only after `slow_ms` (then processed normally).
    pub slow_rate: f64,
    pub slow_ms: u64,
    /// Share (0–1) of push calls processed at once (the message reaches its device) but
    /// answered only after `late_ms`: a sender that dies meanwhile never learns the outcome.
    pub late_rate: f64,
    pub late_ms: u64,
    /// Share (0–1) of device receipts never sent.
    pub drop_receipt_rate: f64,
}

/// How the emulator behaves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    pub app_id: String,
    pub app_key: String,
    pub master_secret: String,
    /// Lifetime of issued tokens.
    pub token_ttl_ms: u64,
    /// Where device receipts are POSTed (pushgate: `/v1/callbacks/<name>/receipts`).
    pub receipt_url: Option<String>,
    /// Where upstream lines are POSTed (pushgate: `/v1/callbacks/<name>/upstream`).
    pub upstream_url: Option<String>,
    /// Push → device receipt.
    pub receipt_delay_ms: u64,
    /// Cids with this prefix are unknown to Getui (20001 "target user is invalid").
    pub unknown_cid_prefix: String,
    pub faults: Faults,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            app_id: "emu-app-id".into(),
            app_key: "emu-app-key".into(),
            master_secret: "emu-master-secret".into(),
            token_ttl_ms: 24 * 3600 * 1000,
            receipt_url: None,
            upstream_url: None,
            receipt_delay_ms: 20,
            unknown_cid_prefix: "unknown".into(),
            faults: Faults::default(),
        }
    }
}

/// A request the emulator received (for protocol tests).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

const MAX_RECORDED: usize = 2000;

pub(crate) struct Shared {
    pub config: RwLock<EmulatorConfig>,
    pub tokens: Mutex<HashMap<String, u64>>,
    pub aliases: Mutex<Aliases>,
    pub pushes: Mutex<Pushes>,
    pub inboxes: Mutex<HashMap<String, Vec<DeviceMessage>>>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    /// The next API call answers 301 naming this origin.
    pub redirect: Mutex<Option<String>>,
    pub receipts: mpsc::UnboundedSender<outbound::PendingReceipt>,
    pub http: pushgate_api::http_client::HttpClient,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn config(&self) -> EmulatorConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut EmulatorConfig)) {
        f(&mut self.config.write().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn record(&self, request: RecordedRequest) {
        let mut all = lock(&self.requests);
        if all.len() >= MAX_RECORDED {
            all.remove(0);
        }
        all.push(request);
    }
}

/// A running emulator; dropping it stops the server.
pub struct Emulator {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    pump: JoinHandle<()>,
}

impl Emulator {
    /// Starts on `listen` (use port 0 for a free one).
    pub async fn start(listen: SocketAddr, config: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config: RwLock::new(config),
            tokens: Mutex::new(HashMap::new()),
            aliases: Mutex::new(Aliases::default()),
            pushes: Mutex::new(Pushes::default()),
            inboxes: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            redirect: Mutex::new(None),
            receipts: tx,
            http: pushgate_api::http_client::build(8),
        });
        let pump = tokio::spawn(outbound::pump_receipts(shared.clone(), rx));
        let server = tokio::spawn(routes::serve(listener, shared.clone()));
        Ok(Emulator {
            url,
            shared,
            server,
            pump,
        })
    }

    /// `http://127.0.0.1:<port>`: the `base_url` for pushgate.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The current configuration.
    pub fn config(&self) -> EmulatorConfig {
        self.shared.config()
    }

    pub fn set_receipt_url(&self, url: Option<String>) {
        self.shared.update(|c| c.receipt_url = url);
    }

    pub fn set_upstream_url(&self, url: Option<String>) {
        self.shared.update(|c| c.upstream_url = url);
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.update(|c| c.faults = faults);
    }

    /// Invalidates every issued token: the next calls get 10001.
    pub fn expire_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// Makes the next API call answer 301 with `origin` as the host to use.
    pub fn redirect_once(&self, origin: &str) {
        *lock(&self.shared.redirect) = Some(origin.to_string());
    }

    /// What a simulated device received.
    pub fn inbox(&self, cid: &str) -> Vec<DeviceMessage> {
        lock(&self.shared.inboxes)
            .get(cid)
            .cloned()
            .unwrap_or_default()
    }

    /// The cids bound to an alias.
    pub fn alias_cids(&self, alias: &str) -> Vec<String> {
        lock(&self.shared.aliases).cids(alias)
    }

    /// Pushes that repeated an earlier request id (dropped, as Getui drops them).
    pub fn repeated_pushes(&self) -> u64 {
        lock(&self.shared.pushes).repeats
    }

    /// Every request received so far (the last 2000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Makes device `cid` send an upstream message; returns the callback's HTTP status.
    pub async fn send_upstream(&self, cid: &str, payload: &str) -> Result<u16, String> {
        outbound::send_upstream(&self.shared, cid, payload).await
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
        self.pump.abort();
    }
}
