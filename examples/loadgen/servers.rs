//! The servers the load generator runs itself: the webhook receiver that times deliveries,
//! and the no-work baseline.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn serve<F, Fut>(handler: F) -> Result<String, String>
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |r| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(r).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}"))
}

/// Records when each `message.delivered` event arrives (single events, or batches as JSON
/// arrays), and how many POSTs brought them.
pub struct DeliveryReceiver {
    pub url: String,
    delivered: Arc<Mutex<HashMap<String, Instant>>>,
    posts: Arc<std::sync::atomic::AtomicU64>,
}

impl DeliveryReceiver {
    pub async fn start() -> Result<Self, String> {
        let delivered: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
        let map = delivered.clone();
        let posts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = posts.clone();
        let url = serve(move |request: Request<hyper::body::Incoming>| {
            let map = map.clone();
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let at = Instant::now();
                let events = match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(serde_json::Value::Array(events)) => events,
                    Ok(event) => vec![event],
                    Err(_) => Vec::new(),
                };
                for event in events {
                    if event["type"] == "message.delivered" {
                        if let (Some(id), Ok(mut map)) =
                            (event["data"]["message_id"].as_str(), map.lock())
                        {
                            map.entry(id.to_string()).or_insert(at);
                        }
                    }
                }
                Response::new(Full::new(Bytes::new()))
            }
        })
        .await?;
        Ok(DeliveryReceiver {
            url: format!("{url}/events"),
            delivered,
            posts,
        })
    }

    /// Webhook POSTs received.
    pub fn posts(&self) -> u64 {
        self.posts.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn count(&self) -> usize {
        self.delivered.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn last(&self) -> Option<Instant> {
        self.delivered.lock().ok()?.values().max().copied()
    }

    /// Accept → delivered latency (µs) of every message accepted and delivered.
    pub fn latencies(&self, accepted: &HashMap<String, Instant>) -> Vec<u64> {
        let Ok(delivered) = self.delivered.lock() else {
            return Vec::new();
        };
        accepted
            .iter()
            .filter_map(|(id, at)| {
                delivered
                    .get(id)
                    .map(|d| d.saturating_duration_since(*at).as_micros() as u64)
            })
            .collect()
    }
}

/// A trivial server answering every request 202 with a fixed body, doing no work.
pub struct Baseline {
    pub url: String,
}

impl Baseline {
    pub async fn start() -> Result<Self, String> {
        let url = serve(|request: Request<hyper::body::Incoming>| async move {
            let _ = request.into_body().collect().await;
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"{\"message_id\":\"baseline\",\"deliveries\":1}",
            )));
            *r.status_mut() = StatusCode::ACCEPTED;
            r
        })
        .await?;
        Ok(Baseline { url })
    }
}
