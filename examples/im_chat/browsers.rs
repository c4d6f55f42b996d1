//! Browsers and their push service, in this process, for `--provider webpush`: the gateway
//! posts each push to `POST /push/<user>`; the user's browser decrypts it (RFC 8291, as a
//! browser does), keeps it in its inbox, and acknowledges it to the gateway
//! (`POST /v1/device-acks`) as the README's service worker does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{json, Value};

use crate::http::Http;
use pushgate_engine::clock::now_ms;

/// A message as a browser decrypted it.
#[derive(Clone)]
pub struct Push {
    /// The ack token: `<message id>-<device index>.<mac>`.
    pub ack: String,
    pub payload: Value,
    pub at: u64,
}

struct Browser {
    key: p256::SecretKey,
    auth: [u8; 16],
    inbox: Vec<Push>,
}

/// The browsers of every user, behind one push service.
pub struct Browsers {
    url: String,
    gateway: Mutex<String>,
    users: Mutex<HashMap<String, Browser>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Browsers {
    /// Starts the push service on 127.0.0.1.
    pub async fn start() -> Result<Arc<Self>, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("push service: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let browsers = Arc::new(Browsers {
            url: format!("http://{addr}"),
            gateway: Mutex::new(String::new()),
            users: Mutex::new(HashMap::new()),
        });
        let service = browsers.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let browsers = service.clone();
                tokio::spawn(async move {
                    let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let browsers = browsers.clone();
                        async move {
                            let user = req.uri().path().trim_start_matches("/push/").to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let status = match browsers.receive(&user, &body).await {
                                Ok(()) => 201,
                                Err(_) => 410,
                            };
                            let mut answer = hyper::Response::new(Full::new(Bytes::new()));
                            *answer.status_mut() =
                                hyper::StatusCode::from_u16(status).unwrap_or_default();
                            Ok::<_, Infallible>(answer)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
            }
        });
        Ok(browsers)
    }

    /// Where acknowledgements go.
    pub fn set_gateway(&self, url: &str) {
        *self.gateway.lock().unwrap_or_else(|p| p.into_inner()) = url.to_string();
    }

    /// A new browser for `user`; its subscription, as `PushSubscription.toJSON()` gives it.
    pub fn subscribe(&self, user: &str) -> Value {
        let browser = Browser {
            key: p256::SecretKey::random(&mut rand::rngs::OsRng),
            auth: rand::random(),
            inbox: Vec::new(),
        };
        let subscription = json!({
            "endpoint": format!("{}/push/{user}", self.url),
            "keys": {
                "p256dh": b64(browser.key.public_key().to_encoded_point(false).as_bytes()),
                "auth": b64(&browser.auth),
            },
        });
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_string(), browser);
        subscription
    }

    /// What `user`'s browser received, oldest first.
    pub fn inbox(&self, user: &str) -> Vec<Push> {
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .map(|b| b.inbox.clone())
            .unwrap_or_default()
    }

    /// A push arrives: decrypt, keep, acknowledge.
    async fn receive(&self, user: &str, body: &[u8]) -> Result<(), String> {
        let envelope: Value = {
            let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            let browser = users.get(user).ok_or("no such subscription")?;
            serde_json::from_slice(&decrypt(browser, body)?).map_err(|e| e.to_string())?
        };
        let push = Push {
            ack: envelope["ack"].as_str().unwrap_or_default().to_string(),
            payload: envelope["payload"].clone(),
            at: now_ms(),
        };
        if let Some(browser) = self
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(user)
        {
            browser.inbox.push(push.clone());
        }
        let gateway = self
            .gateway
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let ack = json!({"ack": push.ack});
        tokio::spawn(async move {
            let _ = Http::new()
                .call(
                    ::http::Method::POST,
                    &format!("{gateway}/v1/device-acks"),
                    None,
                    Some(&ack),
                )
                .await;
        });
        Ok(())
    }
}

/// The browser's side of aes128gcm (RFC 8291).
fn decrypt(browser: &Browser, body: &[u8]) -> Result<Vec<u8>, String> {
    pushgate_webpush::ece::decrypt(body, &browser.key, &browser.auth).map_err(|e| e.to_string())
}
