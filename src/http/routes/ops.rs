//! Health, readiness and the Prometheus scrape.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::StatusCode;

use crate::http::response::{json, text, HttpResponse};
use crate::http::ApiState;

/// The API's OpenAPI 3.1 document (`docs/openapi.json`, built in).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// `GET /openapi.json`.
pub fn openapi() -> HttpResponse {
    text(StatusCode::OK, "application/json", OPENAPI.to_string())
}

pub fn healthz() -> HttpResponse {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// 200 once the store is open and the workers run; 503 while starting or shutting down.
pub fn readyz(state: &Arc<ApiState>) -> HttpResponse {
    if let Some(reason) = state.engine.store().failure() {
        // Restarting replays the journal; until then nothing new can be made durable.
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "store_failed", "reason": reason}),
        );
    }
    if let Some(reason) = state.engine.store().unavailable() {
        // A shared database that is down: requests answer 503 until it is back.
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "store_unavailable", "reason": reason}),
        );
    }
    if state.ready.load(Ordering::SeqCst) {
        json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "not_ready"}),
        )
    }
}

pub fn metrics(state: &Arc<ApiState>) -> HttpResponse {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        body,
    )
}
