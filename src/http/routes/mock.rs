//! Simulated devices of mock providers (for tests and demos; only mock providers answer):
//! `GET /v1/mock/{provider}/devices/{cid}/inbox` (what a device received) and
//! `POST /v1/mock/{provider}/devices/{cid}/upstream` `{"payload": "..."}` (the device sends
//! an upstream message, through the same signed callback path as a real provider's).

use std::sync::Arc;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::Request;
use pushgate_mock::MockProvider;
use serde::Deserialize;

use crate::http::request::{parse_json, read_body};
use crate::http::response::{json, ApiError, HttpResponse};
use crate::http::ApiState;

fn mock<'a>(state: &'a Arc<ApiState>, provider: &str) -> Result<&'a MockProvider, ApiError> {
    state
        .engine
        .provider(provider)
        .ok()
        .and_then(|p| p.as_any().downcast_ref::<MockProvider>())
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_provider",
                format!("no mock provider named {provider:?}"),
            )
        })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "mock_state_unavailable",
        e.to_string(),
    )
}

/// `GET /v1/mock/{provider}/devices/{cid}/inbox`
pub fn inbox(state: &Arc<ApiState>, provider: &str, cid: &str) -> Result<HttpResponse, ApiError> {
    let messages = mock(state, provider)?.inbox(cid).map_err(unavailable)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"provider": provider, "cid": cid, "messages": messages}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamBody {
    payload: String,
}

/// `POST /v1/mock/{provider}/devices/{cid}/upstream`
pub async fn upstream(
    state: &Arc<ApiState>,
    provider: &str,
    cid: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let mock = mock(state, provider)?;
    pushgate_engine::validate::cid(cid).map_err(|e| ApiError::bad_request("invalid_cid", e.0))?;
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.max_body).await?;
    let upstream: UpstreamBody = parse_json(&body)?;
    let report = mock
        .send_upstream(cid, &upstream.payload)
        .await
        .map_err(unavailable)?;
    Ok(json(StatusCode::OK, &report))
}
