//! A test app server: records every webhook it receives and answers with a status that
//! tests can change (to simulate an app server that is down).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// One webhook as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub json: Value,
    /// The status the server answered.
    pub answered: u16,
}

/// Computes the body of a 2xx answer from the event received.
pub type Responder = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

#[derive(Clone)]
pub struct AppServer {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    responder: Arc<Mutex<Option<Responder>>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl AppServer {
    pub async fn start() -> AppServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind app server");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let responder: Arc<Mutex<Option<Responder>>> = Arc::new(Mutex::new(None));
        let (r, s, f) = (received.clone(), status.clone(), responder.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (r, s, f) = (r.clone(), s.clone(), f.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (r, s, f) = (r.clone(), s.clone(), f.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let answered = s.load(Ordering::SeqCst);
                            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let reply = match (answered, f.lock().expect("lock").clone()) {
                                (200..=299, Some(f)) => f(&json).to_string(),
                                _ => "{}".to_string(),
                            };
                            r.lock().expect("lock").push(Received {
                                headers: parts.headers,
                                json,
                                body,
                                answered,
                            });
                            let mut response = Response::new(Full::new(Bytes::from(reply)));
                            *response.status_mut() =
                                http::StatusCode::from_u16(answered).unwrap_or_default();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AppServer {
            url: format!("http://{addr}/pushgate"),
            received,
            status,
            responder,
            task: Arc::new(task),
        }
    }

    /// Answer 2xx webhooks with `f(event)` as the body.
    pub fn respond_with(&self, f: impl Fn(&Value) -> Value + Send + Sync + 'static) {
        *self.responder.lock().expect("lock") = Some(Arc::new(f));
    }

    /// Answer every further webhook with `status`.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every webhook received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Webhooks answered 2xx, of the given type.
    pub fn accepted_events(&self, kind: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered) && r.json["type"] == kind)
            .collect()
    }
}
