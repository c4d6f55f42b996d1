//! The emulator's network side: TLS with ALPN `h2`, HTTP/2 connections (closed with GOAWAY
//! after some streams if asked), `POST /3/device/{token}`, and its devices' acks.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pushgate_api::clock::now_ms;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use super::verify;
use super::{lock, DeviceNotification, Shared, TlsFiles};

type Answer = Response<Full<Bytes>>;

/// The TLS side: the server certificate, ALPN `h2` only.
pub(crate) fn acceptor(tls: &TlsFiles) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.server_cert)
        .map_err(|e| format!("{}: {e}", tls.server_cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", tls.server_cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.server_key)
        .map_err(|e| format!("{}: {e}", tls.server_key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub(crate) async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                tracing::warn!("a client connected without ALPN h2; closed");
                return;
            }
            shared.connections.fetch_add(1, Ordering::SeqCst);
            connection(tls, shared).await;
        });
    }
}

/// One HTTP/2 connection; GOAWAY once `goaway_after_streams` streams have come.
async fn connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    shared: Arc<Shared>,
) {
    let streams = Arc::new(AtomicU64::new(0));
    let goaway = Arc::new(Notify::new());
    let service = {
        let (shared, streams, goaway) = (shared.clone(), streams.clone(), goaway.clone());
        service_fn(move |req| {
            let (shared, streams, goaway) = (shared.clone(), streams.clone(), goaway.clone());
            async move {
                let n = streams.fetch_add(1, Ordering::SeqCst) + 1;
                if shared
                    .config()
                    .faults
                    .goaway_after_streams
                    .is_some_and(|limit| n >= limit)
                {
                    goaway.notify_one();
                }
                Ok::<_, Infallible>(handle(&shared, req).await)
            }
        })
    };
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = goaway.notified() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

fn answer(status: StatusCode, apns_id: &str, body: Option<Value>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(
        body.map(|b| b.to_string()).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(apns_id) {
        r.headers_mut().insert("apns-id", v);
    }
    r
}

fn refuse(status: StatusCode, apns_id: &str, reason: &str) -> Answer {
    let mut body = json!({"reason": reason});
    if status == StatusCode::GONE {
        body["timestamp"] = json!(now_ms());
    }
    answer(status, apns_id, Some(body))
}

fn text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn handle(shared: &Arc<Shared>, request: Request<Incoming>) -> Answer {
    shared.streams.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let apns_id = text(&parts.headers, "apns-id")
        .unwrap_or_else(|| super::super::wire::apns_id(&format!("{:x}", rand::random::<u128>())));
    let body = match Limited::new(body, 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, &apns_id, "PayloadTooLarge"),
    };
    let config = shared.config();
    let faults = &config.faults;
    if faults.slow_ms > 0 && rand::random::<f64>() < faults.slow_rate {
        tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
    }
    if parts.method != Method::POST {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, &apns_id, "MethodNotAllowed");
    }
    let Some(token) = parts.uri.path().strip_prefix("/3/device/") else {
        return refuse(StatusCode::NOT_FOUND, &apns_id, "BadPath");
    };
    let token = token.to_string();
    // The provider token, as APNs checks it.
    let bearer = text(&parts.headers, "authorization")
        .and_then(|a| a.strip_prefix("bearer ").map(str::to_string));
    let Some(bearer) = bearer else {
        return refuse(StatusCode::FORBIDDEN, &apns_id, "MissingProviderToken");
    };
    if let Err(reason) = verify::provider_token(&bearer, &config, &shared.key, now_ms() / 1000) {
        return refuse(StatusCode::FORBIDDEN, &apns_id, reason);
    }
    if lock(&shared.expired_tokens).contains(&bearer) {
        return refuse(StatusCode::FORBIDDEN, &apns_id, "ExpiredProviderToken");
    }
    lock(&shared.tokens_seen).insert(bearer);
    if rand::random::<f64>() < faults.error_rate {
        let status = faults.error_status.unwrap_or(503);
        let reason = match status {
            429 => "TooManyRequests",
            500 => "InternalServerError",
            _ => "ServiceUnavailable",
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut r = refuse(status, &apns_id, reason);
        if let Some(after) = faults.retry_after_s {
            r.headers_mut().insert(header::RETRY_AFTER, after.into());
        }
        return r;
    }
    let notification = match verify::notification(&parts.headers, &body, &config) {
        Ok(n) => n,
        Err((status, reason)) => return refuse(status, &apns_id, reason),
    };
    if !token.chars().all(|c| c.is_ascii_hexdigit()) || !(64..=200).contains(&token.len()) {
        return refuse(StatusCode::BAD_REQUEST, &apns_id, "BadDeviceToken");
    }
    if token.starts_with(&config.foreign_token_prefix) {
        return refuse(StatusCode::BAD_REQUEST, &apns_id, "DeviceTokenNotForTopic");
    }
    if token.starts_with(&config.unregistered_token_prefix) {
        return refuse(StatusCode::GONE, &apns_id, "Unregistered");
    }
    if let Some(ack) = notification.payload["ack"].as_str() {
        let _ = shared.acks.send(ack.to_string());
    }
    shared.deliver(
        &token,
        DeviceNotification {
            apns_id: apns_id.clone(),
            ..notification
        },
    );
    answer(StatusCode::OK, &apns_id, None)
}
