//! The emulator's HTTP side: the token endpoint, `messages:send`, and the `/_emulator/…`
//! admin routes; and its devices' acks.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pushgate_api::clock::now_ms;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::verify;
use super::{lock, DeviceMessage, Faults, RecordedRequest, Shared};

type Answer = Response<Full<Bytes>>;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(status: StatusCode, body: &Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

/// FCM's error answer: a `google.rpc.Status`, with an `FcmError` detail when `fcm_code` is given.
fn fcm_error(
    status: StatusCode,
    rpc_status: &str,
    fcm_code: Option<&str>,
    message: &str,
) -> Answer {
    let details = match fcm_code {
        Some(code) => {
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}])
        }
        None => json!([]),
    };
    answer(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": rpc_status, "details": details}}),
    )
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

async fn handle(shared: &Arc<Shared>, request: Request<Incoming>) -> Answer {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, 1024 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return fcm_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "INVALID_ARGUMENT",
                None,
                "Request payload size exceeds the limit",
            )
        }
    };
    let path = parts.uri.path().to_string();
    if let Some(admin) = path.strip_prefix("/_emulator/") {
        return handle_admin(shared, &parts.method, admin, &body);
    }
    let headers: HashMap<String, String> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    shared.record(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        headers: headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let faults = shared.config().faults;
    if faults.slow_ms > 0 && rand::random::<f64>() < faults.slow_rate {
        tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
    }
    if parts.method != Method::POST {
        return fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", None, "not found");
    }
    if path == "/token" {
        return token(shared, &headers, &body);
    }
    let project = path
        .strip_prefix("/v1/projects/")
        .and_then(|r| r.strip_suffix("/messages:send"));
    match project {
        Some(project) => send(shared, project, &headers, &body, &faults),
        None => fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", None, "not found"),
    }
}

fn token(shared: &Shared, headers: &HashMap<String, String>, body: &[u8]) -> Answer {
    let refuse = |description: String| {
        answer(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_grant", "error_description": description}),
        )
    };
    if !headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return refuse("the body must be application/x-www-form-urlencoded".into());
    }
    let form = String::from_utf8_lossy(body);
    if let Err(e) = verify::token_request(&form, &shared.account, &shared.public_key, now_secs()) {
        return refuse(e);
    }
    let ttl = shared.config().token_ttl_s.max(1);
    let token = format!("ya29.emu-{:032x}", rand::random::<u128>());
    lock(&shared.tokens).insert(token.clone(), now_secs() + ttl);
    answer(
        StatusCode::OK,
        &json!({"access_token": token, "expires_in": ttl, "token_type": "Bearer"}),
    )
}

fn send(
    shared: &Shared,
    project: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
    faults: &Faults,
) -> Answer {
    let bearer = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let valid = lock(&shared.tokens)
        .get(bearer)
        .is_some_and(|expires| *expires > now_secs());
    if !valid {
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    }
    if project != shared.account.project_id {
        return fcm_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            None,
            "Permission 'cloudmessaging.messages.create' denied on resource",
        );
    }
    if !headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "the body must be application/json",
        );
    }
    if rand::random::<f64>() < faults.error_rate {
        let status = faults.error_status.unwrap_or(503);
        let (code, rpc) = match status {
            429 => ("QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED"),
            500 => ("INTERNAL", "INTERNAL"),
            _ => ("UNAVAILABLE", "UNAVAILABLE"),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut r = fcm_error(status, rpc, Some(code), "injected fault");
        if let Some(after) = faults.retry_after_s {
            r.headers_mut().insert(header::RETRY_AFTER, after.into());
        }
        return r;
    }
    let (message, token) = match verify::send_body(body) {
        Ok(m) => m,
        Err(e) => {
            return fcm_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                Some("INVALID_ARGUMENT"),
                &e,
            )
        }
    };
    let config = shared.config();
    if token.starts_with(&config.invalid_token_prefix) {
        return fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "The registration token is not a valid FCM registration token",
        );
    }
    if token.starts_with(&config.mismatched_token_prefix) {
        return fcm_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            Some("SENDER_ID_MISMATCH"),
            "SenderId mismatch",
        );
    }
    if token.starts_with(&config.unregistered_token_prefix)
        || lock(&shared.unregistered).contains(&token)
    {
        return fcm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            Some("UNREGISTERED"),
            "Requested entity was not found.",
        );
    }
    let n = {
        let mut sent = lock(&shared.sent);
        *sent += 1;
        *sent
    };
    let name = format!("projects/{project}/messages/0:{n:016x}%emu");
    let data: HashMap<String, String> = message["data"]
        .as_object()
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if let Some(ack) = data.get("ack") {
        let _ = shared.acks.send(ack.clone());
    }
    shared.deliver(
        &token,
        DeviceMessage {
            name: name.clone(),
            data,
            android: message["android"].clone(),
            notification: message.get("notification").cloned(),
            received_at_ms: now_ms(),
        },
    );
    answer(StatusCode::OK, &json!({"name": name}))
}

fn handle_admin(shared: &Shared, method: &Method, route: &str, body: &[u8]) -> Answer {
    match (method, route) {
        (&Method::POST, "faults") => match serde_json::from_slice::<Faults>(body) {
            Ok(faults) => {
                shared.update(|c| c.faults = faults);
                answer(StatusCode::OK, &json!({"ok": true}))
            }
            Err(e) => answer(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
        },
        (&Method::POST, "revoke-tokens") => {
            lock(&shared.tokens).clear();
            answer(StatusCode::OK, &json!({"ok": true}))
        }
        (&Method::GET, "requests") => {
            let all = lock(&shared.requests).clone();
            answer(StatusCode::OK, &json!(all))
        }
        (m, r) if r.starts_with("devices/") => {
            let token = percent_encoding::percent_decode_str(&r["devices/".len()..])
                .decode_utf8_lossy()
                .into_owned();
            if let Some(token) = token
                .strip_suffix("/unregister")
                .filter(|_| m == Method::POST)
            {
                lock(&shared.unregistered).insert(token.to_string());
                return answer(StatusCode::OK, &json!({"ok": true}));
            }
            let inbox = lock(&shared.inboxes)
                .get(&token)
                .cloned()
                .unwrap_or_default();
            answer(StatusCode::OK, &json!({"messages": inbox}))
        }
        _ => answer(
            StatusCode::NOT_FOUND,
            &json!({"error": "no such admin route"}),
        ),
    }
}
