//! Message routes: send (202 once durable) and status.

use std::sync::Arc;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::Request;
use pushgate_engine::clock::rfc3339;
use pushgate_engine::engine::MessageRequest;
use serde_json::json;

use crate::http::request::{parse_json, read_body};
use crate::http::response::{json, ApiError, HttpResponse};
use crate::http::ApiState;

/// `POST /v1/apps/{app}/messages`
pub async fn send(
    state: &Arc<ApiState>,
    app: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.max_body).await?;
    let message = parse_json::<MessageRequest>(&body)?.into_message()?;
    let accepted = state.engine.accept(app, message).await?;
    let status = if accepted.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(json(
        status,
        &json!({"message_id": accepted.message_id, "deliveries": accepted.deliveries}),
    ))
}

/// `GET /v1/apps/{app}/messages/{message_id}`
pub async fn get(state: &Arc<ApiState>, app: &str, id: &str) -> Result<HttpResponse, ApiError> {
    let (message, deliveries) = state.engine.message(app, id).await?;
    let deliveries: Vec<_> = deliveries
        .iter()
        .map(|d| {
            let mut v = json!({
                "provider": d.provider,
                "cid": d.cid,
                "state": d.state,
                "attempts": d.attempts,
                "updated_at": rfc3339(d.updated_at),
                "history": d.history.iter().map(history_entry).collect::<Vec<_>>(),
            });
            if let (Some(err), Some(obj)) = (&d.error, v.as_object_mut()) {
                obj.insert(
                    "error".into(),
                    json!({"code": err.code, "message": err.message}),
                );
            }
            v
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "message_id": message.id,
            "from": message.from,
            "to": message.to,
            "created_at": rfc3339(message.created_at),
            "expires_at": rfc3339(message.expires_at),
            "deliveries": deliveries,
        }),
    ))
}

/// One entry of a delivery's `history`: `{"state", "at", "reason"?}`.
fn history_entry(t: &pushgate_engine::model::Transition) -> serde_json::Value {
    let mut entry = json!({"state": t.state, "at": rfc3339(t.at)});
    if let Some(reason) = &t.reason {
        entry["reason"] = json!(reason);
    }
    entry
}
