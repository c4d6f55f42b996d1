//! The APNs `Provider`: each delivery is one `POST /3/device/{token}` stream on the shared
//! HTTP/2 connection; `ExpiredProviderToken` renews the token once and sends again.

use std::any::Any;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use pushgate_api::model::Notification;
use pushgate_api::provider::{
    DeviceError, OutboundDelivery, PayloadError, Provider, ProviderError, ProviderLimits, Sent,
};
use serde_json::Value;

use crate::client::{self, H2Client};
use crate::config::ApnsSettings;
use crate::error::{classify, reason, ApnsError};
use crate::token::{ProviderKey, TokenCache};
use crate::wire::{self, Outgoing, MAX_PAYLOAD_BYTES};

/// What the device-ack envelope adds to a payload, at most.
const ACK_ENVELOPE: usize = 128;
/// Largest error answer read.
const MAX_ANSWER: usize = 16 * 1024;

/// APNs as a pushgate provider.
pub struct ApnsProvider {
    name: String,
    settings: ApnsSettings,
    origin: String,
    client: H2Client,
    tokens: TokenCache,
}

enum Answer {
    Sent(String),
    ExpiredToken(String),
    Failed(ProviderError),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ApnsProvider {
    /// Builds the provider, reading its key (and extra CA).
    pub fn new(name: &str, settings: ApnsSettings) -> Result<Self, ApnsError> {
        settings.validate()?;
        let key = ProviderKey::read(&settings.private_key_file)?;
        let client = client::build(&settings.ca_file)?;
        tracing::info!(provider = %name, topic = %settings.topic, base_url = %settings.base_url, "APNs provider ready");
        Ok(ApnsProvider {
            name: name.to_string(),
            origin: settings.base_url.trim_end_matches('/').to_string(),
            tokens: TokenCache::new(key, &settings.team_id, &settings.key_id),
            client,
            settings,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms)
    }

    async fn call(
        &self,
        delivery: &OutboundDelivery,
        out: &Outgoing,
        body: &Bytes,
        apns_id: &str,
    ) -> Answer {
        let token = self.tokens.get();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/3/device/{}", self.origin, delivery.cid))
            .header(header::AUTHORIZATION, format!("bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("apns-topic", &self.settings.topic)
            .header("apns-push-type", out.push_type)
            .header("apns-priority", out.priority)
            .header(
                "apns-expiration",
                wire::expiration(now_secs(), delivery.ttl).to_string(),
            )
            .header("apns-id", apns_id);
        if let Some(key) = &delivery.collapse_key {
            request = request.header("apns-collapse-id", key.as_str());
        }
        let request = match request.body(Full::new(body.clone())) {
            Ok(r) => r,
            Err(e) => {
                return Answer::Failed(ProviderError::permanent("apns_request", e.to_string()))
            }
        };
        let response = match tokio::time::timeout(self.timeout(), self.client.request(request))
            .await
        {
            Err(_) => {
                return Answer::Failed(ProviderError::transient("timeout", "APNs did not answer"))
            }
            Ok(Err(e)) => {
                return Answer::Failed(ProviderError::transient("unreachable", e.to_string()))
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
        if status == 200 {
            let id = response
                .headers()
                .get("apns-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(apns_id)
                .to_string();
            return Answer::Sent(id);
        }
        let retry_after = pushgate_api::http_client::retry_after(response.headers());
        let body = tokio::time::timeout(
            self.timeout(),
            http_body_util::Limited::new(response.into_body(), MAX_ANSWER).collect(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
        if status == 403 && reason(status, &body) == "ExpiredProviderToken" {
            return Answer::ExpiredToken(token);
        }
        Answer::Failed(classify(status, retry_after, &body))
    }
}

#[async_trait]
impl Provider for ApnsProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, delivery: &OutboundDelivery) -> Result<Sent, ProviderError> {
        let out = wire::outgoing(
            &delivery.payload,
            delivery.notification.as_deref(),
            delivery.urgency,
            &delivery.idempotency_key,
            self.settings.device_acks,
        )
        .map_err(|e| ProviderError::permanent("payload_refused", e))?;
        let body = Bytes::from(out.body.to_string());
        let apns_id = wire::apns_id(&delivery.idempotency_key);
        let mut renewed = false;
        loop {
            match self.call(delivery, &out, &body, &apns_id).await {
                Answer::Sent(id) => return Ok(Sent { provider_ref: id }),
                Answer::Failed(e) => return Err(e),
                Answer::ExpiredToken(token) if !renewed => {
                    tracing::info!(provider = %self.name, "APNs called the provider token expired; making a new one");
                    self.tokens.expired(&token);
                    renewed = true;
                }
                Answer::ExpiredToken(_) => {
                    return Err(ProviderError::transient(
                        "ExpiredProviderToken",
                        "APNs refused a fresh provider token (is the clock right?)",
                    ))
                }
            }
        }
    }

    fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            concurrency: self.settings.concurrency,
            qps: self.settings.qps,
            send_timeout: self.timeout() * 2 + Duration::from_secs(1),
            receipt_timeout: (self.settings.device_acks && self.settings.receipt_timeout_ms > 0)
                .then(|| Duration::from_millis(self.settings.receipt_timeout_ms)),
        }
    }

    fn device_acks(&self) -> bool {
        self.settings.device_acks
    }

    /// A device token: 64 to 200 hex digits.
    fn check_cid(&self, cid: &str) -> Result<(), DeviceError> {
        wire::check_device_token(cid).map_err(DeviceError::Cid)
    }

    /// The payload must fit APNs' 4,096 bytes with `aps` and pushgate's keys.
    fn check_payload(&self, payload: &Value) -> Result<(), PayloadError> {
        self.check_size(payload, None)
    }

    /// The alert counts against the same 4,096 bytes.
    fn check_notification(
        &self,
        payload: &Value,
        notification: &Notification,
    ) -> Result<(), PayloadError> {
        self.check_size(payload, Some(notification))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl ApnsProvider {
    fn check_size(
        &self,
        payload: &Value,
        notification: Option<&Notification>,
    ) -> Result<(), PayloadError> {
        let wrapped = if self.settings.device_acks {
            serde_json::json!({"payload": payload, "ack": ""})
        } else {
            payload.clone()
        };
        let out = wire::outgoing(
            &wrapped,
            notification,
            None,
            &"0".repeat(32),
            self.settings.device_acks,
        )
        .map_err(PayloadError::Refused)?;
        let len = out.body.to_string().len()
            + if self.settings.device_acks {
                ACK_ENVELOPE
            } else {
                0
            };
        if len > MAX_PAYLOAD_BYTES {
            return Err(PayloadError::TooLarge(format!(
                "the payload is {len} bytes as an APNs notification; APNs carries at most {MAX_PAYLOAD_BYTES}"
            )));
        }
        Ok(())
    }
}
