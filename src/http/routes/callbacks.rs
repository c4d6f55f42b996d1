//! Provider callbacks: `POST /v1/callbacks/{provider}/receipts`. The provider's adapter
//! parses and verifies the body; a body in which every item is refused gets 403.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::Request;
use pushgate_core::provider::{CallbackRequest, ReceiptSink};

use crate::http::request::read_body;
use crate::http::response::{json, ApiError, HttpResponse};
use crate::http::ApiState;

/// `POST /v1/callbacks/{provider}/receipts`
pub async fn receipts(
    state: &Arc<ApiState>,
    provider: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    if state.engine.provider(provider).is_err() {
        return Err(ApiError::not_found(
            "unknown_provider",
            format!("no provider named {provider:?}"),
        ));
    }
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.max_body).await?;
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
    let report = state
        .engine
        .receipts_callback(
            provider,
            CallbackRequest {
                headers,
                body: body.to_vec(),
            },
        )
        .await?;
    let accepted = report.applied + report.duplicates + report.early;
    if accepted == 0 && report.rejected > 0 {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "receipts_rejected",
            format!("all {} receipt(s) failed verification", report.rejected),
        ));
    }
    Ok(json(StatusCode::OK, &report))
}
