//! The emulator's HTTP side: Getui's `/v2/{appId}/…` API and the `/_emulator/…` admin routes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use pushgate_api::clock::now_ms;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::outbound::{queue_receipt, send_upstream};
use super::state::{
    check_alias, check_push, DeviceMessage, ParamError, MAX_DATA_LIST, MAX_MSG_LIST,
};
use super::{lock, Faults, RecordedRequest, Shared};
use crate::sign::{auth_sign, same_sign};
use crate::wire::{AliasList, AuthRequest, BatchRequest, Envelope, PushRequest, PushResult};

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

fn answer(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn envelope(status: StatusCode, code: i64, msg: &str, data: Value) -> Answer {
    let e = Envelope {
        code,
        msg: msg.to_string(),
        data,
    };
    answer(
        status,
        serde_json::to_vec(&e).unwrap_or_default(),
        "application/json;charset=utf-8",
    )
}

fn ok(data: Value) -> Answer {
    envelope(StatusCode::OK, 0, "success", data)
}

/// A refused API call: Getui's envelope with an error code.
struct Reject {
    status: StatusCode,
    code: i64,
    msg: String,
}

impl Reject {
    fn into_answer(self) -> Answer {
        envelope(self.status, self.code, &self.msg, Value::Null)
    }
}

fn param(e: ParamError) -> Reject {
    Reject {
        status: StatusCode::BAD_REQUEST,
        code: 20001,
        msg: e.0,
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reject> {
    serde_json::from_slice(body).map_err(|e| Reject {
        status: StatusCode::BAD_REQUEST,
        code: 1,
        msg: format!("body is not valid: {e}"),
    })
}

fn segment(raw: &str) -> String {
    percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

async fn handle(shared: &Arc<Shared>, request: Request<Incoming>) -> Answer {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, 4 * 1024 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return envelope(
                StatusCode::PAYLOAD_TOO_LARGE,
                1,
                "body too large",
                Value::Null,
            )
        }
    };
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    if let Some(admin) = path.strip_prefix("/_emulator/") {
        return handle_admin(shared, &method, admin, &body).await;
    }
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    shared.record(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        headers: headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let config = shared.config();
    let Some(rest) = path.strip_prefix("/v2/") else {
        return envelope(StatusCode::NOT_FOUND, 404, "not found", Value::Null);
    };
    let (app_id, tail) = rest
        .split_once('/')
        .map(|(a, t)| (a, format!("/{t}")))
        .unwrap_or((rest, String::new()));
    if app_id != config.app_id {
        return envelope(
            StatusCode::BAD_REQUEST,
            20001,
            "appId is invalid",
            Value::Null,
        );
    }
    if let Some(origin) = lock(&shared.redirect).take() {
        let data = json!({"host_list": [{"domain_list": [origin]}], "domain_hash": "emu"});
        return envelope(StatusCode::OK, 301, "wrong domain", data);
    }
    let faults = &config.faults;
    if rand::random::<f64>() < faults.error_rate {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            b"Internal Server Error".to_vec(),
            "text/plain",
        );
    }
    if faults.slow_ms > 0 && rand::random::<f64>() < faults.slow_rate {
        tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
    }
    if method == Method::POST && tail == "/auth" {
        return auth(shared, &body);
    }
    if method == Method::DELETE {
        if let Some(token) = tail.strip_prefix("/auth/") {
            lock(&shared.tokens).remove(token);
            return ok(Value::Null);
        }
    }
    let valid = headers
        .get("token")
        .and_then(|t| lock(&shared.tokens).get(t).copied())
        .is_some_and(|expires| expires > now_ms());
    if !valid {
        return envelope(
            StatusCode::UNAUTHORIZED,
            10001,
            "token invalid or expired",
            Value::Null,
        );
    }
    let is_push = method == Method::POST && tail.starts_with("/push/");
    let result = match (method.clone(), tail.as_str()) {
        (Method::POST, "/push/single/cid") => push_single(shared, &body, false),
        (Method::POST, "/push/single/alias") => push_single(shared, &body, true),
        (Method::POST, "/push/single/batch/cid") => push_batch(shared, &body, false),
        (Method::POST, "/push/single/batch/alias") => push_batch(shared, &body, true),
        (Method::POST, "/user/alias") => bind(shared, &body),
        (Method::DELETE, "/user/alias") => unbind(shared, &body),
        (Method::DELETE, t) if t.starts_with("/user/alias/") => {
            lock(&shared.aliases).unbind_all(&segment(&t["/user/alias/".len()..]));
            Ok(ok(Value::Null))
        }
        (Method::GET, t) if t.starts_with("/user/cid/alias/") => {
            let cids = lock(&shared.aliases).cids(&segment(&t["/user/cid/alias/".len()..]));
            Ok(ok(json!({"cid": cids})))
        }
        (Method::GET, t) if t.starts_with("/user/alias/cid/") => {
            let alias = lock(&shared.aliases).alias_of(&segment(&t["/user/alias/cid/".len()..]));
            Ok(ok(json!({"alias": alias})))
        }
        _ => Ok(envelope(
            StatusCode::NOT_FOUND,
            404,
            "not found",
            Value::Null,
        )),
    };
    if is_push && faults.late_ms > 0 && rand::random::<f64>() < faults.late_rate {
        tokio::time::sleep(Duration::from_millis(faults.late_ms)).await;
    }
    result.unwrap_or_else(Reject::into_answer)
}

fn auth(shared: &Shared, body: &[u8]) -> Answer {
    let config = shared.config();
    let request: AuthRequest = match parse(body) {
        Ok(r) => r,
        Err(e) => return e.into_answer(),
    };
    if request.appkey != config.app_key {
        return envelope(
            StatusCode::BAD_REQUEST,
            20001,
            "appkey is invalid",
            Value::Null,
        );
    }
    let expected = auth_sign(&config.app_key, &request.timestamp, &config.master_secret);
    if !same_sign(&expected, &request.sign) {
        return envelope(
            StatusCode::BAD_REQUEST,
            20001,
            "sign is invalid",
            Value::Null,
        );
    }
    let token = format!("emu-token-{:032x}", rand::random::<u128>());
    let expires = now_ms() + config.token_ttl_ms;
    lock(&shared.tokens).insert(token.clone(), expires);
    ok(json!({"expire_time": expires.to_string(), "token": token}))
}

/// Accepts one validated push: dedupes on request_id, delivers to each device.
fn deliver(shared: &Shared, push: &PushRequest, cids: Vec<String>) -> PushResult {
    let mut pushes = lock(&shared.pushes);
    if let Some(repeat) = pushes.repeat(&push.request_id) {
        return repeat;
    }
    let taskid = pushes.task_id();
    let mut statuses = BTreeMap::new();
    for cid in cids {
        let msgid = pushes.msg_id();
        lock(&shared.inboxes)
            .entry(cid.clone())
            .or_default()
            .push(DeviceMessage {
                taskid: taskid.clone(),
                msgid: msgid.clone(),
                request_id: push.request_id.clone(),
                transmission: push.push_message.transmission.clone(),
                notification: push.push_message.notification.clone(),
                push_channel: push.push_channel.clone(),
                received_at: now_ms(),
            });
        queue_receipt(shared, &cid, &taskid, &msgid);
        statuses.insert(cid, "successed_online".to_string());
    }
    let result: PushResult = [(taskid, statuses)].into();
    pushes.record(&push.request_id, result.clone());
    result
}

fn audience_cids(
    shared: &Shared,
    push: &PushRequest,
    by_alias: bool,
) -> Result<Vec<String>, ParamError> {
    if !by_alias {
        return Ok(push.audience.cid.clone().unwrap_or_default());
    }
    let alias = push
        .audience
        .alias
        .as_ref()
        .and_then(|l| l.first())
        .cloned()
        .unwrap_or_default();
    let cids = lock(&shared.aliases).cids(&alias);
    if cids.is_empty() {
        return Err(ParamError("target user is invalid".into()));
    }
    Ok(cids)
}

fn push_single(shared: &Shared, body: &[u8], by_alias: bool) -> Result<Answer, Reject> {
    let push: PushRequest = parse(body)?;
    let prefix = shared.config().unknown_cid_prefix;
    check_push(&push, by_alias, &prefix).map_err(param)?;
    let cids = audience_cids(shared, &push, by_alias).map_err(param)?;
    Ok(ok(
        serde_json::to_value(deliver(shared, &push, cids)).unwrap_or_default()
    ))
}

fn push_batch(shared: &Shared, body: &[u8], by_alias: bool) -> Result<Answer, Reject> {
    let batch: BatchRequest = parse(body)?;
    if batch.msg_list.is_empty() || batch.msg_list.len() > MAX_MSG_LIST {
        return Err(param(ParamError("msg_list size over limit".into())));
    }
    let prefix = shared.config().unknown_cid_prefix;
    let mut seen = std::collections::HashSet::new();
    let mut targets = Vec::new();
    for push in &batch.msg_list {
        check_push(push, by_alias, &prefix).map_err(param)?;
        if !seen.insert(push.request_id.clone()) {
            return Err(param(ParamError("contains duplicate request_id".into())));
        }
        targets.push(audience_cids(shared, push, by_alias).map_err(param)?);
    }
    let mut all = PushResult::new();
    for (push, cids) in batch.msg_list.iter().zip(targets) {
        all.extend(deliver(shared, push, cids));
    }
    Ok(ok(if batch.is_async {
        Value::Null
    } else {
        serde_json::to_value(all).unwrap_or_default()
    }))
}

fn alias_list(body: &[u8]) -> Result<AliasList, Reject> {
    let list: AliasList = parse(body)?;
    if list.data_list.is_empty() || list.data_list.len() > MAX_DATA_LIST {
        return Err(param(ParamError("data_list size over limit".into())));
    }
    Ok(list)
}

fn bind(shared: &Shared, body: &[u8]) -> Result<Answer, Reject> {
    let list = alias_list(body)?;
    let prefix = shared.config().unknown_cid_prefix;
    for pair in &list.data_list {
        check_alias(&pair.alias).map_err(param)?;
        if pair.cid.is_empty() || pair.cid.starts_with(&prefix) {
            return Err(param(ParamError("target user is invalid".into())));
        }
    }
    let mut book = lock(&shared.aliases);
    for pair in &list.data_list {
        book.bind(&pair.cid, &pair.alias).map_err(param)?;
    }
    Ok(ok(Value::Null))
}

fn unbind(shared: &Shared, body: &[u8]) -> Result<Answer, Reject> {
    let list = alias_list(body)?;
    let mut book = lock(&shared.aliases);
    for pair in &list.data_list {
        book.unbind(&pair.cid, &pair.alias);
    }
    Ok(ok(Value::Null))
}

async fn handle_admin(shared: &Arc<Shared>, method: &Method, path: &str, body: &[u8]) -> Answer {
    let json_answer = |status: StatusCode, v: Value| {
        answer(status, v.to_string().into_bytes(), "application/json")
    };
    let parts: Vec<&str> = path.split('/').collect();
    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["devices", cid, "inbox"]) => {
            let messages = lock(&shared.inboxes)
                .get(&segment(cid))
                .cloned()
                .unwrap_or_default();
            json_answer(StatusCode::OK, json!({"messages": messages}))
        }
        (Method::POST, ["devices", cid, "upstream"]) => {
            let payload = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["payload"].as_str().map(str::to_string));
            let Some(payload) = payload else {
                return json_answer(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "body must be {\"payload\": \"<text>\"}"}),
                );
            };
            match send_upstream(shared, &segment(cid), &payload).await {
                Ok(status) => json_answer(StatusCode::OK, json!({"callback_status": status})),
                Err(e) => json_answer(StatusCode::BAD_GATEWAY, json!({"error": e})),
            }
        }
        (Method::GET, ["aliases", alias]) => json_answer(
            StatusCode::OK,
            json!({"cid": lock(&shared.aliases).cids(&segment(alias))}),
        ),
        (Method::POST, ["faults"]) => match serde_json::from_slice::<Faults>(body) {
            Ok(f) => {
                shared.update(|c| c.faults = f);
                answer(StatusCode::NO_CONTENT, Vec::new(), "text/plain")
            }
            Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
        },
        (Method::POST, ["expire-tokens"]) => {
            lock(&shared.tokens).clear();
            answer(StatusCode::NO_CONTENT, Vec::new(), "text/plain")
        }
        (Method::POST, ["config"]) => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            shared.update(|c| {
                if let Some(url) = v.get("receipt_url") {
                    c.receipt_url = url.as_str().map(str::to_string);
                }
                if let Some(url) = v.get("upstream_url") {
                    c.upstream_url = url.as_str().map(str::to_string);
                }
            });
            answer(StatusCode::NO_CONTENT, Vec::new(), "text/plain")
        }
        (Method::GET, ["stats"]) => json_answer(
            StatusCode::OK,
            json!({"repeated_pushes": lock(&shared.pushes).repeats}),
        ),
        (Method::GET, ["requests"]) => {
            json_answer(StatusCode::OK, json!({"requests": *lock(&shared.requests)}))
        }
        _ => json_answer(
            StatusCode::NOT_FOUND,
            json!({"error": "no such emulator route"}),
        ),
    }
}
