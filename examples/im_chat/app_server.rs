//! The chat app's message server, built the way the seed article describes, on pushgate's
//! public API only: it sends messages with `POST /messages`, learns "delivered" from signed
//! `message.delivered` webhooks, and answers `upstream.received` with the message to push.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the server has seen, for the timeline.
#[derive(Default)]
pub struct Seen {
    /// message id → when `message.delivered` arrived (epoch ms).
    pub delivered: HashMap<String, u64>,
    /// upstream payload text → when `upstream.received` arrived.
    pub upstream: Vec<(String, u64, Value)>,
    /// Webhooks refused for a bad signature.
    pub forged: usize,
}

#[derive(Clone)]
pub struct AppServer {
    pub url: String,
    pub seen: Arc<Mutex<Seen>>,
    pub changed: Arc<Notify>,
}

fn now_ms() -> u64 {
    pushgate_engine::clock::now_ms()
}

impl AppServer {
    /// Listens on `listen`; verifies every webhook with `secret`.
    pub async fn start(listen: &str, secret: String) -> Result<AppServer, String> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("app server on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let changed = Arc::new(Notify::new());
        let server = AppServer {
            url: format!("http://{addr}/pushgate"),
            seen,
            changed,
        };
        let handler = server.clone();
        let secret = Arc::new(secret);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, secret) = (handler.clone(), secret.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (handler, secret) = (handler.clone(), secret.clone());
                        async move { Ok::<_, Infallible>(handler.handle(&secret, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(server)
    }

    async fn handle(
        &self,
        secret: &str,
        request: Request<hyper::body::Incoming>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let signature = parts
            .headers
            .get("x-pushgate-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let reply = |status: StatusCode, v: Value| {
            let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
            *r.status_mut() = status;
            r
        };
        if pushgate::webhook::signature(secret.as_bytes(), &body) != signature {
            self.seen.lock().unwrap_or_else(|p| p.into_inner()).forged += 1;
            return reply(StatusCode::UNAUTHORIZED, json!({"error": "bad signature"}));
        }
        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut answer = json!({});
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match event["type"].as_str() {
                Some("message.delivered") => {
                    if let Some(id) = event["data"]["message_id"].as_str() {
                        seen.delivered.entry(id.to_string()).or_insert_with(now_ms);
                    }
                }
                Some("upstream.received") => {
                    let text = event["data"]["payload"].as_str().unwrap_or("").to_string();
                    seen.upstream
                        .push((text.clone(), now_ms(), event["data"].clone()));
                    // The chat server's decision: an upstream `{"to": …, "text": …}` goes to `to`.
                    if let Ok(chat) = serde_json::from_str::<Value>(&text) {
                        answer = json!({"messages": [{
                            "to": {"alias": chat["to"]},
                            "payload": {"text": chat["text"]},
                            "notify_sender": true,
                        }]});
                    }
                }
                _ => {}
            }
        }
        self.changed.notify_waiters();
        reply(StatusCode::OK, answer)
    }

    pub fn delivered_at(&self, message_id: &str) -> Option<u64> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delivered
            .get(message_id)
            .copied()
    }

    pub fn upstream_at(&self, text: &str) -> Option<u64> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.upstream
            .iter()
            .find(|(t, _, _)| t == text)
            .map(|(_, at, _)| *at)
    }
}
