//! Alias ↔ device routes.

use std::sync::Arc;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::Request;
use pushgate_engine::clock::rfc3339;
use pushgate_engine::model::{AliasRecord, DeviceRef};
use serde::Deserialize;
use serde_json::json;

use crate::http::request::{parse_json, read_body};
use crate::http::response::{empty, json, ApiError, HttpResponse};
use crate::http::ApiState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindBody {
    provider: String,
    cid: String,
    /// Provider data (a Web Push subscription), checked by the provider.
    #[serde(default)]
    data: Option<serde_json::Value>,
}

fn alias_json(state: &ApiState, record: &AliasRecord) -> serde_json::Value {
    json!({
        "alias": record.alias,
        "devices": record.devices.iter().map(|d| {
            let mut device = json!({
                "provider": d.provider,
                "cid": d.cid,
                "bound_at": rfc3339(d.bound_at),
            });
            if let Some(data) = &d.data {
                device["data"] = state.engine.shown_device_data(&d.provider, data);
            }
            device
        }).collect::<Vec<_>>(),
    })
}

/// `POST /v1/apps/{app}/aliases/{alias}/devices`
pub async fn bind(
    state: &Arc<ApiState>,
    app: &str,
    alias: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.max_body).await?;
    let b: BindBody = parse_json(&body)?;
    let record = state
        .engine
        .bind(
            app,
            alias,
            DeviceRef {
                provider: b.provider,
                cid: b.cid,
            },
            b.data,
        )
        .await?;
    Ok(json(StatusCode::OK, &alias_json(state, &record)))
}

/// `GET /v1/apps/{app}/aliases/{alias}`
pub async fn get(state: &Arc<ApiState>, app: &str, alias: &str) -> Result<HttpResponse, ApiError> {
    let record = state.engine.alias(app, alias).await?;
    Ok(json(StatusCode::OK, &alias_json(state, &record)))
}

/// `DELETE /v1/apps/{app}/aliases/{alias}`
pub async fn unbind_all(
    state: &Arc<ApiState>,
    app: &str,
    alias: &str,
) -> Result<HttpResponse, ApiError> {
    state.engine.unbind_alias(app, alias).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `DELETE /v1/apps/{app}/aliases/{alias}/devices/{provider}/{cid}`
pub async fn unbind_one(
    state: &Arc<ApiState>,
    app: &str,
    alias: &str,
    provider: String,
    cid: String,
) -> Result<HttpResponse, ApiError> {
    state
        .engine
        .unbind_device(app, alias, DeviceRef { provider, cid })
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /v1/apps/{app}/devices/{provider}/{cid}`
pub async fn device(
    state: &Arc<ApiState>,
    app: &str,
    provider: String,
    cid: String,
) -> Result<HttpResponse, ApiError> {
    let device = DeviceRef { provider, cid };
    let alias = state.engine.device_alias(app, &device).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"provider": device.provider, "cid": device.cid, "alias": alias}),
    ))
}
