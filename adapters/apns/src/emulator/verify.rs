//! What the emulator checks, as APNs does: the provider token (ES256 signature, `kid`, `iss`,
//! at most an hour old) and a notification's headers and payload.

use http::{HeaderMap, StatusCode};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use pushgate_api::clock::now_ms;
use serde_json::Value;

use super::{DeviceNotification, EmulatorConfig};
use crate::unb64;
use crate::wire::{is_uuid, MAX_PAYLOAD_BYTES};

/// Checks a provider token; the error is APNs' reason.
pub fn provider_token(
    token: &str,
    config: &EmulatorConfig,
    key: &VerifyingKey,
    now: u64,
) -> Result<(), &'static str> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("InvalidProviderToken");
    };
    let json = |part: &str| -> Option<Value> { serde_json::from_slice(&unb64(part)?).ok() };
    let (Some(header_json), Some(claims_json)) = (json(header), json(claims)) else {
        return Err("InvalidProviderToken");
    };
    if header_json["alg"] != "ES256" || header_json["kid"] != config.key_id.as_str() {
        return Err("InvalidProviderToken");
    }
    if claims_json["iss"] != config.team_id.as_str() {
        return Err("InvalidProviderToken");
    }
    let signature = unb64(signature)
        .and_then(|s| Signature::from_slice(&s).ok())
        .ok_or("InvalidProviderToken")?;
    key.verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "InvalidProviderToken")?;
    let iat = claims_json["iat"].as_u64().ok_or("InvalidProviderToken")?;
    if iat > now + 60 {
        return Err("InvalidProviderToken");
    }
    if now.saturating_sub(iat) > 3600 {
        return Err("ExpiredProviderToken");
    }
    Ok(())
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Checks a notification's headers and JSON payload; the error is the status and reason.
pub fn notification(
    headers: &HeaderMap,
    body: &[u8],
    config: &EmulatorConfig,
) -> Result<DeviceNotification, (StatusCode, &'static str)> {
    let bad = |reason| (StatusCode::BAD_REQUEST, reason);
    match header(headers, "apns-topic") {
        None => return Err(bad("MissingTopic")),
        Some(t) if t != config.topic => return Err(bad("TopicDisallowed")),
        Some(_) => {}
    }
    let push_type = header(headers, "apns-push-type").ok_or(bad("InvalidPushType"))?;
    if !matches!(
        push_type.as_str(),
        "alert" | "background" | "voip" | "liveactivity"
    ) {
        return Err(bad("InvalidPushType"));
    }
    let priority = header(headers, "apns-priority").unwrap_or_else(|| "10".into());
    if !matches!(priority.as_str(), "1" | "5" | "10") {
        return Err(bad("BadPriority"));
    }
    if push_type == "background" && priority != "5" {
        // Apple: background notifications must have priority 5.
        return Err(bad("BadPriority"));
    }
    let expiration = match header(headers, "apns-expiration") {
        Some(e) => Some(e.parse::<u64>().map_err(|_| bad("BadExpirationDate"))?),
        None => None,
    };
    if let Some(id) = header(headers, "apns-id") {
        if !is_uuid(&id) {
            return Err(bad("BadMessageId"));
        }
    }
    let collapse_id = header(headers, "apns-collapse-id");
    if collapse_id.as_ref().is_some_and(|c| c.len() > 64) {
        return Err(bad("BadCollapseId"));
    }
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"));
    }
    if body.is_empty() {
        return Err(bad("PayloadEmpty"));
    }
    let payload: Value = serde_json::from_slice(body).map_err(|_| bad("BadPayload"))?;
    let Some(aps) = payload["aps"].as_object() else {
        return Err(bad("BadPayload"));
    };
    if push_type == "background"
        && (aps.get("content-available") != Some(&Value::from(1)) || aps.contains_key("alert"))
    {
        // A background notification wakes the app and shows nothing.
        return Err(bad("BadPayload"));
    }
    if push_type == "alert"
        && !["alert", "badge", "sound"]
            .iter()
            .any(|k| aps.contains_key(*k))
    {
        return Err(bad("BadPayload"));
    }
    Ok(DeviceNotification {
        apns_id: String::new(),
        push_type,
        priority,
        expiration,
        collapse_id,
        payload,
        received_at_ms: now_ms(),
    })
}
