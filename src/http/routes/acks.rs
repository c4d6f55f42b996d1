//! `POST /v1/device-acks`: a device acknowledges a delivery with the token it received
//! (`{"payload", "ack"}`). No API key: the token is the credential; the route is rate-limited.

use std::sync::Arc;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::Request;
use pushgate_engine::engine::AckOutcome;
use pushgate_engine::metrics as m;
use serde::Deserialize;
use serde_json::json;

use crate::http::request::{parse_json, read_body};
use crate::http::response::{json, ApiError, HttpResponse};
use crate::http::ApiState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    ack: String,
}

/// `POST /v1/device-acks {"ack": "<token>"}` → 200 `{"result": "applied" | "duplicate"}`.
pub async fn post(
    state: &Arc<ApiState>,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    if !state.device_acks.take() {
        metrics::counter!(m::DEVICE_ACKS_TOTAL, "result" => "limited").increment(1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many acknowledgements; try again",
        );
        e.retry_after = Some(1);
        return Err(e);
    }
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.max_body).await?;
    let b: AckBody = parse_json(&body)?;
    let result = match state.engine.apply_device_ack(&b.ack).await? {
        AckOutcome::Applied => "applied",
        AckOutcome::Duplicate => "duplicate",
    };
    Ok(json(StatusCode::OK, &json!({"result": result})))
}
