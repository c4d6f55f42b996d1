//! Provider callbacks: `POST /v1/callbacks/{provider}/receipts` and `…/upstream`. The
//! provider's adapter parses and verifies the body; a body in which every item is refused
//! gets 403.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::Request;
use pushgate_engine::provider::{CallbackRefusal, CallbackRequest, ReceiptSink, UpstreamSink};
use pushgate_engine::{EngineError, ErrorClass};

use crate::http::request::read_body;
use crate::http::response::{json, ApiError, HttpResponse};
use crate::http::ApiState;
use pushgate_engine::metrics as m;

/// Reads a callback for a configured provider.
async fn callback_request(
    state: &Arc<ApiState>,
    provider: &str,
    request: Request<Incoming>,
) -> Result<CallbackRequest, ApiError> {
    if state.engine.provider(provider).is_err() {
        return Err(ApiError::not_found(
            "unknown_provider",
            format!("no provider named {provider:?}"),
        ));
    }
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.max_callback).await?;
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
    Ok(CallbackRequest {
        headers,
        body: body.to_vec(),
    })
}

/// The answer to a callback the engine could not take. One that could not be stored is
/// refused the way `provider` retries (a 503, or no answer at all), so it comes again.
fn refused(state: &Arc<ApiState>, provider: &str, kind: &'static str, e: EngineError) -> ApiError {
    let unavailable = e.class() == ErrorClass::Unavailable;
    let mut error = ApiError::from(e);
    if unavailable {
        let refusal = state
            .engine
            .provider(provider)
            .map(|p| p.callback_refusal())
            .unwrap_or(CallbackRefusal::ServiceUnavailable);
        error.unanswered = refusal == CallbackRefusal::CloseConnection;
        metrics::counter!(m::CALLBACKS_UNSTORED_TOTAL, "provider" => provider.to_string(), "kind" => kind)
            .increment(1);
        tracing::warn!(
            provider,
            kind,
            unanswered = error.unanswered,
            "callback not stored; refused so the provider sends it again"
        );
    }
    error
}

fn all_refused(what: &str, refused: usize) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        if what == "receipt" {
            "receipts_rejected"
        } else {
            "upstream_rejected"
        },
        format!("all {refused} {what} item(s) failed verification or were refused"),
    )
}

/// `POST /v1/callbacks/{provider}/receipts`
pub async fn receipts(
    state: &Arc<ApiState>,
    provider: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let request = callback_request(state, provider, request).await?;
    let report = state
        .engine
        .receipts_callback(provider, request)
        .await
        .map_err(|e| refused(state, provider, "receipt", e))?;
    if report.applied + report.duplicates + report.early == 0 && report.rejected > 0 {
        return Err(all_refused("receipt", report.rejected));
    }
    Ok(json(StatusCode::OK, &report))
}

/// `POST /v1/callbacks/{provider}/upstream`
pub async fn upstream(
    state: &Arc<ApiState>,
    provider: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let request = callback_request(state, provider, request).await?;
    let report = state
        .engine
        .upstream_callback(provider, request)
        .await
        .map_err(|e| refused(state, provider, "upstream", e))?;
    if report.accepted + report.duplicates == 0 && report.rejected > 0 {
        return Err(all_refused("upstream", report.rejected));
    }
    Ok(json(StatusCode::OK, &report))
}
