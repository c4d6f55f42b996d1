//! `POST /_matrix/push/v1/notify`: the Matrix push gateway API. No API key (homeservers send
//! none): only configured `app_id`s are taken, the body limit applies, and `[matrix]
//! per_source_rps` can pace each source. Each device becomes a delivery, committed before
//! anything is sent; the answer waits up to `response_wait_ms` for the first sends, to name
//! the pushkeys the provider reported gone in `rejected`.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::Request;
use pushgate_api::NewMessage;
use pushgate_engine::clock::now_ms;
use pushgate_engine::metrics as m;
use pushgate_engine::model::{DeliveryId, DeliveryRecord, DeliveryState, DeviceRef, Target};
use pushgate_engine::EngineError;
use serde_json::{json, Value};

use crate::config::matrix::MatrixApp;
use crate::http::request::read_body;
use crate::http::response::{json, ApiError, HttpResponse};
use crate::http::{ApiState, PeerAddr};
use crate::matrix::{self, NotifyBody};

/// How often a waiting notify looks at its delivery though no signal came (a send made by
/// another node of a cluster signals nothing here).
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How long a pushkey the provider called gone is rejected at once (a later bind of the
/// device forgets it sooner).
const REMEMBER_GONE: Duration = Duration::from_secs(24 * 3600);

/// One device's accepted delivery that the answer waits for.
struct Pending {
    delivery: DeliveryId,
    pushkey: String,
    app_id: String,
}

fn count(app_id: &str, result: &'static str) {
    metrics::counter!(m::MATRIX_NOTIFICATIONS_TOTAL, "app_id" => app_id.to_string(), "result" => result)
        .increment(1);
}

fn app_for<'a>(apps: &'a [MatrixApp], app_id: &str) -> Option<&'a MatrixApp> {
    // An exact entry wins over a glob.
    apps.iter().find(|a| a.app_id == app_id).or_else(|| {
        apps.iter()
            .find(|a| a.app_id.contains('*') && a.matches(app_id))
    })
}

/// The cid (and device data) a pusher's deliveries use on a provider of `kind`; `None` (the
/// pushkey is rejected) when the pusher cannot be a device there.
fn device_of(
    kind: &str,
    entry: &MatrixApp,
    device: &matrix::Device,
) -> Option<(String, Option<Value>)> {
    match kind {
        // A Web Push pusher's subscription travels in each notify.
        "webpush" => {
            let found = device.web_push_subscription();
            if found.is_none() {
                tracing::info!(app_id = %entry.app_id, "Web Push pusher without data.endpoint and data.auth; rejected");
            }
            found.map(|(cid, subscription)| (cid, Some(subscription)))
        }
        "apns" => {
            let token =
                matrix::apns::device_token(&device.pushkey, entry.convert_device_token_to_hex);
            if token.is_none() {
                tracing::info!(app_id = %entry.app_id, "APNs pushkey is not base64 (convert_device_token_to_hex); rejected");
            }
            token.map(|t| (t, None))
        }
        _ => Some((device.pushkey.clone(), None)),
    }
}

/// `POST /_matrix/push/v1/notify` → 200 `{"rejected": [pushkeys]}`.
pub async fn notify(
    state: &Arc<ApiState>,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    if let (Some(limit), Some(peer)) = (
        &state.matrix.limit,
        request.extensions().get::<PeerAddr>().copied(),
    ) {
        if !limit.take(peer.0.ip()) {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many notifications from this source; try again",
            );
            e.retry_after = Some(1);
            return Err(e);
        }
    }
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body, state.max_body).await?;
    let raw: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body is not JSON: {e}")))?;
    let notify = NotifyBody::parse(&raw).map_err(|e| {
        ApiError::bad_request("invalid_notification", format!("not a notification: {e}"))
    })?;
    let n = &notify.notification;
    let ttl = Duration::from_secs(state.matrix.config.ttl_seconds);
    let mut rejected: Vec<String> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    for device in &n.devices {
        let Some(entry) = app_for(&state.matrix.apps, &device.app_id) else {
            tracing::info!(app_id = %device.app_id, "notify for an app_id not in [[matrix_apps]]; pushkey rejected");
            count("unknown", "unknown_app");
            rejected.push(device.pushkey.clone());
            continue;
        };
        let kind = state
            .matrix
            .provider_kinds
            .get(&entry.provider)
            .copied()
            .unwrap_or("");
        let Some((cid, device_data)) = device_of(kind, entry, device) else {
            count(&entry.app_id, "rejected");
            rejected.push(device.pushkey.clone());
            continue;
        };
        let device_ref = DeviceRef {
            provider: entry.provider.clone(),
            cid,
        };
        // A rejection learnt after an earlier notify's answer: the homeserver hears it now.
        if let Some(at) = state.engine.gone_since(&device_ref).await? {
            if now_ms().saturating_sub(at) < REMEMBER_GONE.as_millis() as u64 {
                count(&entry.app_id, "rejected");
                rejected.push(device.pushkey.clone());
                continue;
            }
        }
        let Some(mut payload) = matrix::payload_for(kind, n, device) else {
            count(&entry.app_id, "skipped");
            continue;
        };
        loop {
            let message = NewMessage {
                to: Target::Device(device_ref.clone()),
                payload: payload.clone(),
                from: None,
                request_id: Some(matrix::request_id(n, device, &raw)),
                ttl: Some(ttl),
                notify_sender: false,
                provider: None,
                urgency: matrix::urgency(n),
                collapse_key: matrix::collapse_key(n, device),
                notification: None,
                device_data: device_data.clone(),
            };
            match state.engine.accept(&entry.app, message).await {
                Ok(accepted) => {
                    count(&entry.app_id, "accepted");
                    pending.push(Pending {
                        // A device target: one delivery, the first.
                        delivery: DeliveryId {
                            message: accepted.message_id,
                            index: 0,
                        },
                        pushkey: device.pushkey.clone(),
                        app_id: entry.app_id.clone(),
                    });
                    break;
                }
                Err(EngineError::Invalid {
                    code: "payload_too_large",
                    ..
                }) => match matrix::shorten(&payload) {
                    Some(shorter) => payload = shorter,
                    None => {
                        count(&entry.app_id, "refused");
                        break;
                    }
                },
                Err(EngineError::Invalid {
                    code: "invalid_device_data",
                    message,
                }) if message.contains("endpoint") => {
                    // As Sygnal: an endpoint outside allowed_endpoints is dropped, not
                    // rejected, so a config mistake does not delete users' pushers.
                    tracing::warn!(app_id = %entry.app_id, reason = %message, "Web Push endpoint refused; notification dropped");
                    count(&entry.app_id, "endpoint_refused");
                    break;
                }
                Err(EngineError::Invalid {
                    code: "invalid_cid" | "invalid_device_data",
                    message,
                }) => {
                    tracing::info!(app_id = %entry.app_id, reason = %message, "pushkey not valid for the provider; rejected");
                    count(&entry.app_id, "rejected");
                    rejected.push(device.pushkey.clone());
                    break;
                }
                Err(EngineError::IdempotencyConflict(_)) => {
                    // This event already went to this pusher (its data changed since): taken.
                    count(&entry.app_id, "duplicate");
                    break;
                }
                Err(EngineError::Invalid { code, message }) => {
                    // Not the pushkey's fault: never make the homeserver delete the pusher.
                    tracing::warn!(app_id = %entry.app_id, code, reason = %message, "notification refused");
                    count(&entry.app_id, "refused");
                    break;
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
    rejected.extend(wait_for_rejections(state, pending).await);
    Ok(json(StatusCode::OK, &json!({ "rejected": rejected })))
}

/// Waits up to `response_wait_ms` for each delivery's first attempt; the pushkeys whose
/// provider called the device gone.
async fn wait_for_rejections(state: &Arc<ApiState>, pending: Vec<Pending>) -> Vec<String> {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(state.matrix.config.response_wait_ms);
    let mut rejected = Vec::new();
    // One after the other: each looks at the store first, so an attempt made while an
    // earlier one was waited for is seen at once.
    for p in pending {
        let Some(delivery) = first_attempt(state, p.delivery, deadline).await else {
            continue;
        };
        if delivery.state == DeliveryState::Failed
            && delivery.error.as_ref().is_some_and(|e| e.unregistered)
        {
            count(&p.app_id, "rejected");
            rejected.push(p.pushkey);
        }
    }
    rejected
}

/// The delivery once its first send step ran, or `None` at the deadline. Woken by this
/// node's dispatcher; looks at the store every [`LOOK_EVERY`] as well (another node of a
/// cluster may send it).
async fn first_attempt(
    state: &Arc<ApiState>,
    id: DeliveryId,
    deadline: tokio::time::Instant,
) -> Option<DeliveryRecord> {
    loop {
        let signal = state.engine.attempt_signals().subscribe(id);
        match state.engine.store().delivery(id).await {
            Ok(Some(d)) if attempted(&d) => return Some(d),
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(delivery = %id, error = %e, "looking at a notify's delivery failed")
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        signal.wait(left.min(LOOK_EVERY)).await;
    }
}

/// Whether a delivery's first send step ran (or it ended without one).
fn attempted(d: &DeliveryRecord) -> bool {
    d.attempts > 0
        || matches!(
            d.state,
            DeliveryState::Sent
                | DeliveryState::Delivered
                | DeliveryState::Failed
                | DeliveryState::Expired
        )
}
