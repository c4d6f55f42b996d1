//! Assembles a running gateway from a config: store, providers, engine, workers, HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use pushgate_engine::dispatcher::{run_expiry, run_gauges, run_provider};
use pushgate_engine::engine::{AppSettings, EngineSettings};
use pushgate_engine::events::{run_events, EventSettings};
use pushgate_engine::mirrors::run_alias_mirrors;
use pushgate_engine::store::Store;
use pushgate_engine::{Engine, StoreError};
use pushgate_sendmessage::{SendMessageRouter, SendMessageSettings};
use pushgate_store_sled::SledOptions;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::{self, ApiKeys, ApiState};
use crate::providers::{self, BuildError};
use crate::webhook::WebhookSender;

/// How often the gateway looks whether its store has failed.
const STORE_CHECK: Duration = Duration::from_millis(100);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] BuildError),
    #[error("webhooks: {0}")]
    Webhooks(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid listen address: {0}")]
    Address(String),
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    state: Arc<ApiState>,
    store: Arc<dyn Store>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl Gateway {
    /// Opens the store, builds providers and the engine, starts the workers (which resume
    /// every unfinished delivery and event from the store) and starts serving HTTP.
    pub async fn start(
        config: &Config,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Gateway, GatewayError> {
        let data_dir = &config.server.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| GatewayError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let node_id = config
            .store
            .node_id
            .clone()
            .unwrap_or_else(pushgate_engine::engine::default_node_id);
        let store = open_store(config, &node_id).await?;

        let providers = config
            .providers
            .iter()
            .map(providers::build)
            .collect::<Result<Vec<_>, _>>()?;
        let apps = config
            .apps
            .iter()
            .map(|a| AppSettings {
                id: a.id.clone(),
                default_provider: a.default_provider.clone(),
                max_devices_per_alias: a.max_devices_per_alias,
                webhooks: a.webhook_url.is_some(),
                max_backlog: a.max_backlog,
            })
            .collect();
        let settings = EngineSettings {
            retry: config.delivery.retry(),
            default_ttl: Duration::from_secs(config.delivery.default_ttl_seconds),
            max_ttl: Duration::from_secs(config.delivery.max_ttl_seconds),
            max_retry_time: Duration::from_secs(config.delivery.max_retry_seconds),
            circuit_failures: config.delivery.circuit_failures,
            circuit_open: Duration::from_millis(config.delivery.circuit_open_ms),
            retention: Duration::from_secs(config.delivery.retention_seconds),
            lease: Duration::from_millis(config.store.lease_ms),
            node_id,
            acks: pushgate_engine::acks::AckSigner::new(
                &ack_secret(store.as_ref(), data_dir).await?,
            ),
            event_log: (config.event_stream.retention_seconds > 0)
                .then(|| Duration::from_secs(config.event_stream.retention_seconds)),
        };
        let router = SendMessageRouter::new(SendMessageSettings {
            relay_apps: config
                .apps
                .iter()
                .filter(|a| a.upstream_relay)
                .map(|a| a.id.clone())
                .collect(),
        });
        let engine = Engine::new(
            store.clone(),
            providers.clone(),
            apps,
            settings,
            Some(Arc::new(router)),
        );
        let webhooks = WebhookSender::new(
            &config.apps,
            Duration::from_millis(config.webhooks.timeout_ms),
            config.webhooks.concurrency,
        )
        .map_err(GatewayError::Webhooks)?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut workers = Vec::new();
        for provider in providers {
            workers.push(tokio::spawn(run_provider(
                engine.clone(),
                provider,
                shutdown_rx.clone(),
            )));
        }
        workers.push(tokio::spawn(run_expiry(
            engine.clone(),
            shutdown_rx.clone(),
        )));
        workers.push(tokio::spawn(run_alias_mirrors(
            engine.clone(),
            shutdown_rx.clone(),
        )));
        workers.push(tokio::spawn(run_gauges(
            engine.clone(),
            shutdown_rx.clone(),
        )));
        workers.push(tokio::spawn(pushgate_engine::event_log::run_pruner(
            engine.clone(),
            shutdown_rx.clone(),
        )));
        let event_settings = EventSettings {
            timeout: Duration::from_millis(config.webhooks.timeout_ms),
            concurrency: config.webhooks.concurrency,
            retry: config.webhooks.retry(),
            batch_max: config
                .apps
                .iter()
                .filter(|a| a.webhook_batch_max > 1)
                .map(|a| (a.id.clone(), a.webhook_batch_max))
                .collect(),
        };
        workers.push(tokio::spawn(run_events(
            engine.clone(),
            Arc::new(webhooks),
            event_settings,
            shutdown_rx.clone(),
        )));

        let addr = config.listen_addr().map_err(GatewayError::Address)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let grace = Duration::from_millis(config.server.shutdown_grace_ms);
        let state = Arc::new(ApiState {
            engine,
            keys: ApiKeys::new(&config.apps),
            max_body: config.server.max_body_bytes,
            max_callback: config.server.max_callback_bytes,
            header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
            device_acks: crate::http::RateLimit::new(config.server.device_ack_rps),
            matrix: crate::http::MatrixState {
                config: config.matrix.clone(),
                apps: config.matrix_apps.clone(),
                provider_kinds: config
                    .providers
                    .iter()
                    .map(|p| (p.name.clone(), p.spec.kind()))
                    .collect(),
                limit: config
                    .matrix
                    .per_source_rps
                    .map(crate::http::PerSourceLimit::new),
            },
            event_stream: crate::http::EventStreamState {
                keepalive: Duration::from_secs(config.event_stream.keepalive_seconds),
                buffer: config.event_stream.buffer,
                // Other nodes' events reach this node only through the shared store.
                poll_store: config.store.backend != "sled",
                settle: if config.store.backend == "sled" {
                    Duration::from_millis(250)
                } else {
                    Duration::from_secs(1)
                },
                shutdown: shutdown_rx.clone(),
            },
            metrics,
            ready: true.into(),
        });
        let server = tokio::spawn(http::serve(listener, state.clone(), shutdown_rx, grace));
        Ok(Gateway {
            addr,
            state,
            store,
            shutdown,
            server,
            workers,
            grace,
        })
    }

    /// The address the HTTP server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine (for embedding and tests).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.state.engine
    }

    /// Returns (why) once the store has failed: a journal write or sled failed, say the disk
    /// is full. Commits fail from then on; the caller should stop the gateway so that a
    /// restart replays the journal and resumes from what was durable.
    pub async fn store_failure(&self) -> String {
        let mut tick = tokio::time::interval(STORE_CHECK);
        loop {
            tick.tick().await;
            if let Some(reason) = self.store.failure() {
                return reason;
            }
        }
    }

    /// Stops accepting, lets open requests and in-flight sends finish (up to the grace
    /// period; anything unfinished stays in the durable outbox), and flushes the store.
    pub async fn shutdown(self) {
        self.state.ready.store(false, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        let all = async {
            let _ = self.server.await;
            for w in self.workers {
                let _ = w.await;
            }
        };
        if tokio::time::timeout(self.grace, all).await.is_err() {
            tracing::warn!("shutdown grace period passed; unfinished work stays queued on disk");
        }
        if let Err(e) = self.store.commit().await {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// The store `[store]` names: sled in `data_dir/store`, or the PostgreSQL database.
async fn open_store(config: &Config, node_id: &str) -> Result<Arc<dyn Store>, GatewayError> {
    match config.store.backend.as_str() {
        "postgres" => {
            let options = pushgate_store_postgres::PgOptions {
                url: config.store.url.clone(),
                pool_size: config.store.pool_size,
                application_name: format!("pushgate {node_id}"),
            };
            Ok(Arc::new(pushgate_store_postgres::open(&options).await?))
        }
        _ => {
            let mut options = SledOptions::new(config.server.data_dir.join("store"));
            options.cache_capacity = config.server.cache_capacity_mb * 1024 * 1024;
            options.commit_window = Duration::from_millis(config.server.commit_window_ms);
            Ok(Arc::new(pushgate_store_sled::open(&options)?))
        }
    }
}

/// The secret that signs device acknowledgement tokens, so tokens outlive restarts: the one
/// the store shares among nodes (PostgreSQL), or else the node's own, read from
/// `data_dir/device-ack-secret` or generated and saved there (mode 0600).
async fn ack_secret(store: &dyn Store, data_dir: &Path) -> Result<Vec<u8>, GatewayError> {
    let fresh: [u8; 32] = rand::thread_rng().gen();
    if let Some(shared) = store.shared_secret("device-ack", &fresh).await? {
        return Ok(shared);
    }
    let io = |source| GatewayError::DataDir {
        path: data_dir.display().to_string(),
        source,
    };
    let path = data_dir.join("device-ack-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if let Ok(secret) = hex::decode(existing.trim()) {
            if secret.len() >= 16 {
                return Ok(secret);
            }
        }
    }
    write_private(&path, &hex::encode(fresh)).map_err(io)?;
    Ok(fresh.to_vec())
}

/// The embedded default's API key: read from `data_dir/demo-api-key`, or generated and
/// saved there (mode 0600) on first start. Returns the key and whether it is new.
pub fn default_api_key(data_dir: &Path) -> Result<(String, PathBuf, bool), GatewayError> {
    let io = |source| GatewayError::DataDir {
        path: data_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let path = data_dir.join("demo-api-key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let key = existing.trim().to_string();
        if key.len() >= crate::config::MIN_API_KEY_CHARS {
            return Ok((key, path, false));
        }
    }
    let key = format!("pg_{}", hex::encode(rand::thread_rng().gen::<[u8; 20]>()));
    write_private(&path, &key).map_err(io)?;
    Ok((key, path, true))
}

/// Writes `contents` and a newline to a new file only its owner can read, synced.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
