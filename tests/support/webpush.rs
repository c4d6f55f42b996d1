//! A Web Push service on 127.0.0.1 for the tests, and browsers that decrypt what it gets.
//!
//! The service stores each push by subscription path and answers 201; `/expired/…` answers
//! 410, `/forbidden/…` 403, `/busy/…` 429 with `Retry-After: 1` once (after `busy_once` is
//! set), and everything 503 while `failing` is set. A browser registered for a path decrypts
//! its pushes and, once `ack_url` is set, posts their ack tokens back as a service worker does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use p256::elliptic_curve::sec1::ToEncodedPoint;

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

/// A browser's subscription: its key pair and auth secret.
#[derive(Clone)]
pub struct Browser {
    pub key: p256::SecretKey,
    pub auth: [u8; 16],
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            key: p256::SecretKey::random(&mut rand::rngs::OsRng),
            auth: rand::random(),
        }
    }

    pub fn p256dh(&self) -> String {
        b64(self.key.public_key().to_encoded_point(false).as_bytes())
    }

    /// The subscription's `keys`, as `PushSubscription.toJSON()` gives them.
    pub fn keys(&self) -> serde_json::Value {
        serde_json::json!({"p256dh": self.p256dh(), "auth": b64(&self.auth)})
    }

    /// Decrypts an aes128gcm body as a browser does.
    pub fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        pushgate_webpush::ece::decrypt(body, &self.key, &self.auth).expect("authentic")
    }
}

/// A push as the service got it: headers and encrypted body.
pub type Push = (http::HeaderMap, Vec<u8>);

/// What the push service got, by subscription path, and how it answers.
#[derive(Default)]
pub struct PushService {
    pub received: Mutex<HashMap<String, Vec<Push>>>,
    pub busy_once: Mutex<bool>,
    pub failing: AtomicBool,
    /// Browsers by subscription path: they decrypt and ack.
    pub browsers: Mutex<HashMap<String, Browser>>,
    /// Where browsers post their acks (`…/v1/device-acks`).
    pub ack_url: Mutex<Option<String>>,
}

impl PushService {
    /// The status a push to `path` gets.
    fn status(&self, path: &str) -> u16 {
        if self.failing.load(Ordering::SeqCst) {
            503
        } else if path.starts_with("/expired/") {
            410
        } else if path.starts_with("/forbidden/") {
            403
        } else if path.starts_with("/busy/")
            && std::mem::replace(&mut *self.busy_once.lock().expect("lock"), false)
        {
            429
        } else {
            201
        }
    }

    /// The decrypted JSON pushes `path`'s browser got, oldest first.
    pub fn decrypted(&self, path: &str) -> Vec<serde_json::Value> {
        let Some(browser) = self.browsers.lock().expect("lock").get(path).cloned() else {
            return Vec::new();
        };
        self.received
            .lock()
            .expect("lock")
            .get(path)
            .map(|pushes| {
                pushes
                    .iter()
                    .filter_map(|(_, body)| serde_json::from_slice(&browser.decrypt(body)).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The browser at `path` posts the ack a push carries, if it has one.
    fn ack(&self, path: &str, body: &[u8]) {
        let Some(url) = self.ack_url.lock().expect("lock").clone() else {
            return;
        };
        let Some(browser) = self.browsers.lock().expect("lock").get(path).cloned() else {
            return;
        };
        let Ok(push) = serde_json::from_slice::<serde_json::Value>(&browser.decrypt(body)) else {
            return;
        };
        let Some(ack) = push["ack"].as_str().map(str::to_string) else {
            return;
        };
        tokio::spawn(async move {
            let api = super::client::Api::new(url.trim_end_matches("/v1/device-acks"), None);
            api.post("/v1/device-acks", &serde_json::json!({ "ack": ack }))
                .await;
        });
    }
}

/// Serves `service` on 127.0.0.1; its `http://` origin.
pub async fn push_service(service: Arc<PushService>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let headers = req.headers().clone();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().to_vec())
                            .unwrap_or_default();
                        let status = service.status(&path);
                        if status == 201 {
                            service.ack(&path, &body);
                            service
                                .received
                                .lock()
                                .expect("lock")
                                .entry(path)
                                .or_default()
                                .push((headers, body));
                        }
                        let mut answer = hyper::Response::new(Full::new(Bytes::new()));
                        *answer.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                        if status == 429 {
                            answer
                                .headers_mut()
                                .insert("retry-after", http::HeaderValue::from_static("1"));
                        }
                        Ok::<_, std::convert::Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), handler)
                    .await;
            });
        }
    });
    url
}
