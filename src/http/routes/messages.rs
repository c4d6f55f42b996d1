//! Message routes: send (202 once durable) and status.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::Request;
use pushgate_core::clock::rfc3339;
use pushgate_core::engine::NewMessage;
use pushgate_core::model::Target;
use serde::Deserialize;
use serde_json::json;

use crate::http::request::{parse_json, read_body};
use crate::http::response::{json, ApiError, HttpResponse};
use crate::http::ApiState;

/// The body of `POST /v1/apps/{app}/messages` (also what an app server's reply lists).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    pub to: Target,
    pub payload: serde_json::Value,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
    #[serde(default)]
    pub notify_sender: Option<bool>,
    #[serde(default)]
    pub provider: Option<String>,
}

impl SendBody {
    /// The engine's form; refuses a negative or zero TTL.
    pub fn into_message(self) -> Result<NewMessage, ApiError> {
        let ttl = match self.ttl_seconds {
            None => None,
            Some(s) if s > 0 => Some(Duration::from_secs(s as u64)),
            Some(s) => {
                return Err(ApiError::bad_request(
                    "invalid_ttl",
                    format!("ttl_seconds must be a positive number of seconds, got {s}"),
                ))
            }
        };
        Ok(NewMessage {
            to: self.to,
            payload: self.payload,
            from: self.from,
            request_id: self.request_id,
            ttl,
            notify_sender: self.notify_sender.unwrap_or(false),
            provider: self.provider,
        })
    }
}

/// `POST /v1/apps/{app}/messages`
pub async fn send(
    state: &Arc<ApiState>,
    app: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.max_body).await?;
    let message = parse_json::<SendBody>(&body)?.into_message()?;
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
                "history": d.history.iter().map(|t| json!({"state": t.state, "at": rfc3339(t.at)})).collect::<Vec<_>>(),
            });
            if let (Some(err), Some(obj)) = (&d.error, v.as_object_mut()) {
                obj.insert("error".into(), json!({"code": err.code, "message": err.message}));
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
