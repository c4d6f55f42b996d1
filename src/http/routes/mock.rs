//! `GET /v1/mock/{provider}/devices/{cid}/inbox`: what a simulated device received
//! (for tests and demos; only mock providers answer).

use std::sync::Arc;

use http::StatusCode;
use pushgate_mock::MockProvider;

use crate::http::response::{json, ApiError, HttpResponse};
use crate::http::ApiState;

pub fn inbox(state: &Arc<ApiState>, provider: &str, cid: &str) -> Result<HttpResponse, ApiError> {
    let mock = state
        .engine
        .provider(provider)
        .ok()
        .and_then(|p| p.as_any().downcast_ref::<MockProvider>())
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_provider",
                format!("no mock provider named {provider:?}"),
            )
        })?;
    let messages = mock.inbox(cid).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "mock_state_unavailable",
            e.to_string(),
        )
    })?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"provider": provider, "cid": cid, "messages": messages}),
    ))
}
