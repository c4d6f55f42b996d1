//! The public HTTP API (hyper 1, HTTP/1.1): the accept loop with graceful shutdown, and
//! per-request routing, error mapping and metrics.

mod auth;
pub mod request;
pub mod response;
pub mod routes;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use pushgate_engine::metrics as m;
use pushgate_engine::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::ApiKeys;
use response::{ApiError, HttpResponse};
use routes::Route;

/// What every request handler can reach.
pub struct ApiState {
    pub engine: Arc<Engine>,
    pub keys: ApiKeys,
    pub max_body: usize,
    /// Largest provider callback body.
    pub max_callback: usize,
    /// Longest a client may take to send its request headers.
    pub header_read_timeout: Duration,
    pub metrics: Option<PrometheusHandle>,
    /// True while the gateway serves (false while starting or shutting down).
    pub ready: AtomicBool,
    /// Paces `POST /v1/device-acks` (no API key).
    pub device_acks: RateLimit,
    /// The Matrix push gateway API's settings and app map.
    pub matrix: MatrixState,
    /// How `GET /v1/apps/{app}/events` serves its readers.
    pub event_stream: EventStreamState,
}

/// What the event stream needs.
pub struct EventStreamState {
    pub keepalive: Duration,
    /// Events queued per reader before it is cut off.
    pub buffer: usize,
    /// Also read the log every second (a shared store: other nodes log events too).
    pub poll_store: bool,
    /// How old an event must be before it is streamed: longer than any write takes to
    /// commit, so ids go out in order and none commits behind the cursor.
    pub settle: Duration,
    /// Turns true when the gateway stops: streams end so connections can close.
    pub shutdown: watch::Receiver<bool>,
}

/// What `POST /_matrix/push/v1/notify` needs.
pub struct MatrixState {
    pub config: crate::config::matrix::MatrixConfig,
    pub apps: Vec<crate::config::matrix::MatrixApp>,
    /// Provider name → kind (`fcm`, `mock`…): the payload layout follows the kind.
    pub provider_kinds: std::collections::HashMap<String, &'static str>,
    /// `[matrix] per_source_rps`, if set.
    pub limit: Option<PerSourceLimit>,
}

/// The peer address of a request's connection (in its extensions).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// A [`RateLimit`] per source address (at most 10,000 sources tracked; past that the table
/// starts over).
pub struct PerSourceLimit {
    rate: u32,
    sources: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, RateLimit>>,
}

impl PerSourceLimit {
    pub fn new(rate: u32) -> Self {
        PerSourceLimit {
            rate,
            sources: Default::default(),
        }
    }

    /// Takes one token for `source`; false when it has none left.
    pub fn take(&self, source: std::net::IpAddr) -> bool {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= 10_000 && !sources.contains_key(&source) {
            sources.clear();
        }
        sources
            .entry(source)
            .or_insert_with(|| RateLimit::new(self.rate))
            .take()
    }
}

/// A token bucket: `rate` a second, bursts of up to one second's worth.
pub struct RateLimit {
    rate: f64,
    state: std::sync::Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        RateLimit {
            rate,
            state: std::sync::Mutex::new((rate, Instant::now())),
        }
    }

    /// Takes one token; false when none is left.
    pub fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves connections until `shutdown` turns true, then lets open requests finish for up
/// to `grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let header_timeout = state.header_read_timeout;
                let state = state.clone();
                let service = service_fn(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(PeerAddr(peer));
                    handle(state.clone(), request)
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .max_buf_size(64 * 1024)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("open connections did not finish within the shutdown grace period"),
    }
}

/// A request left unanswered on purpose: hyper closes the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("closed without an answer: {0}")]
pub struct Unanswered(String);

async fn handle(
    state: Arc<ApiState>,
    request: Request<Incoming>,
) -> Result<HttpResponse, Unanswered> {
    let started = Instant::now();
    let (label, response) = match Route::parse(request.uri().path()) {
        Ok(Some(route)) => {
            let label = route.label();
            let response = match routes::dispatch(&state, route, request).await {
                Ok(response) => response,
                Err(e) if e.unanswered => {
                    metrics::counter!(m::HTTP_REQUESTS_TOTAL, "route" => label, "code" => "closed")
                        .increment(1);
                    return Err(Unanswered(e.message));
                }
                Err(e) => e.into_response(),
            };
            (label, response)
        }
        Ok(None) => {
            let message = format!("no route for {}", request.uri().path());
            (
                "unmatched",
                ApiError::not_found("not_found", message).into_response(),
            )
        }
        Err(e) => ("unmatched", e.into_response()),
    };
    let code = response.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS_TOTAL, "route" => label, "code" => code).increment(1);
    metrics::histogram!(m::HTTP_REQUEST_SECONDS, "route" => label)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}
