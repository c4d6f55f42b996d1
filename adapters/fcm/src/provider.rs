//! The FCM `Provider`: each delivery is one `messages:send` call with the cached access
//! token; a 401 refreshes the token once and sends again.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use pushgate_api::http_client::HttpClient;
use pushgate_api::provider::{
    DeviceError, OutboundDelivery, PayloadError, Provider, ProviderError, ProviderLimits, Sent,
};
use serde_json::Value;

use crate::config::FcmSettings;
use crate::error::{classify, FcmError};
use crate::service_account::ServiceAccount;
use crate::token::TokenSource;
use crate::wire::{self, MAX_DATA_BYTES, REQUEST_ID_KEY};

/// What the device-ack envelope adds to the data, at most (`payload` and `ack` keys, a
/// 29-character delivery id and a 32-character MAC, with room to spare).
const ACK_ENVELOPE: usize = 128;
/// Longest registration token taken (FCM's are about 160 characters).
const MAX_TOKEN_CHARS: usize = 4096;
/// Largest error answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// FCM HTTP v1 as a pushgate provider.
pub struct FcmProvider {
    name: String,
    settings: FcmSettings,
    send_url: String,
    client: HttpClient,
    tokens: TokenSource,
}

/// What one `messages:send` call gave.
enum Answer {
    Sent(String),
    Unauthorized(String),
    Failed(ProviderError),
}

impl FcmProvider {
    /// Builds the provider, reading its service account.
    pub fn new(name: &str, settings: FcmSettings) -> Result<Self, FcmError> {
        settings.validate()?;
        let account = ServiceAccount::read(&settings.service_account_file)?;
        let signer = account.signer()?;
        let client = pushgate_api::http_client::build(settings.concurrency);
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            settings.base_url.trim_end_matches('/'),
            account.project_id
        );
        tracing::info!(provider = %name, project = %account.project_id, "FCM provider ready");
        Ok(FcmProvider {
            name: name.to_string(),
            tokens: TokenSource::new(
                account,
                signer,
                client.clone(),
                Duration::from_millis(settings.timeout_ms),
            ),
            send_url,
            client,
            settings,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms)
    }

    async fn call(&self, body: &Bytes) -> Answer {
        let token = match self.tokens.get().await {
            Ok(t) => t,
            Err(e) => return Answer::Failed(e),
        };
        let request = match Request::builder()
            .method(Method::POST)
            .uri(&self.send_url)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-goog-api-format-version", "2")
            .header(
                "x-firebase-client",
                concat!("pushgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body.clone()))
        {
            Ok(r) => r,
            Err(e) => {
                return Answer::Failed(ProviderError::permanent("fcm_request", e.to_string()))
            }
        };
        let response = match tokio::time::timeout(self.timeout(), self.client.request(request))
            .await
        {
            Err(_) => {
                return Answer::Failed(ProviderError::transient("timeout", "FCM did not answer"))
            }
            Ok(Err(e)) => {
                return Answer::Failed(ProviderError::transient("unreachable", e.to_string()))
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
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
        if status == 200 {
            let name = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_string));
            return match name {
                Some(name) => Answer::Sent(name),
                None => Answer::Failed(ProviderError::transient(
                    "fcm_answer",
                    "FCM answered 200 without a message name",
                )),
            };
        }
        let error = classify(status, retry_after, &body);
        if status == 401 && error.code != "THIRD_PARTY_AUTH_ERROR" {
            return Answer::Unauthorized(token);
        }
        Answer::Failed(error)
    }
}

#[async_trait]
impl Provider for FcmProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, delivery: &OutboundDelivery) -> Result<Sent, ProviderError> {
        let mut data = wire::data_of(&delivery.payload)
            .map_err(|e| ProviderError::permanent("payload_refused", e))?;
        data.insert(REQUEST_ID_KEY.into(), delivery.idempotency_key.clone());
        let body = wire::send_body(
            &delivery.cid,
            data,
            delivery.notification.as_deref(),
            delivery.ttl,
            delivery.urgency,
            delivery.collapse_key.as_deref(),
        );
        let body = Bytes::from(body.to_string());
        let mut refreshed = false;
        loop {
            match self.call(&body).await {
                Answer::Sent(name) => return Ok(Sent { provider_ref: name }),
                Answer::Failed(e) => return Err(e),
                Answer::Unauthorized(token) if !refreshed => {
                    tracing::info!(provider = %self.name, "FCM refused the access token; fetching a new one");
                    self.tokens.invalidate(&token).await;
                    refreshed = true;
                }
                Answer::Unauthorized(_) => {
                    return Err(ProviderError::transient(
                        "UNAUTHENTICATED",
                        "FCM refused a freshly fetched access token",
                    ))
                }
            }
        }
    }

    fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            concurrency: self.settings.concurrency,
            qps: self.settings.qps,
            // A send may wait for a token fetch first.
            send_timeout: self.timeout() * 2 + Duration::from_secs(1),
            receipt_timeout: (self.settings.device_acks && self.settings.receipt_timeout_ms > 0)
                .then(|| Duration::from_millis(self.settings.receipt_timeout_ms)),
        }
    }

    fn device_acks(&self) -> bool {
        self.settings.device_acks
    }

    /// A registration token: 1–4096 ASCII letters, digits and `_ - : .`.
    fn check_cid(&self, cid: &str) -> Result<(), DeviceError> {
        if cid.is_empty() || cid.len() > MAX_TOKEN_CHARS {
            return Err(DeviceError::Cid(format!(
                "an FCM registration token is 1 to {MAX_TOKEN_CHARS} characters, got {}",
                cid.len()
            )));
        }
        if let Some(c) = cid
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.')))
        {
            return Err(DeviceError::Cid(format!(
                "an FCM registration token has ASCII letters, digits and _ - : . only, not {c:?}"
            )));
        }
        Ok(())
    }

    /// The data must fit FCM's 4,096 bytes with pushgate's keys, and use no reserved key
    /// (with device acks the payload travels as the JSON text of one entry).
    fn check_payload(&self, payload: &Value) -> Result<(), PayloadError> {
        // The request id key and a 29-character delivery id.
        let mut room = MAX_DATA_BYTES - REQUEST_ID_KEY.len() - 32;
        let len = if self.settings.device_acks {
            room -= ACK_ENVELOPE;
            match payload {
                Value::String(s) => s.len(),
                other => other.to_string().len(),
            }
        } else {
            wire::data_bytes(&wire::data_of(payload).map_err(PayloadError::Refused)?)
        };
        if len > room {
            return Err(PayloadError::TooLarge(format!(
                "the payload is {len} bytes as FCM data; FCM carries at most {room} here (4,096 with pushgate's keys)"
            )));
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
