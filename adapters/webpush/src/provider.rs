//! The Web Push `Provider`: each delivery is encrypted for its subscription (RFC 8291) and
//! POSTed to the subscription's endpoint with a VAPID token (RFC 8292), cached per push
//! service until shortly before it expires.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use pushgate_api::http_client::HttpClient;
use pushgate_api::model::Notification;
use pushgate_api::provider::{
    DeviceError, OutboundDelivery, PayloadError, Provider, ProviderError, ProviderLimits, Sent,
};
use serde_json::{json, Value};

use crate::config::WebPushSettings;
use crate::ece::{self, Subscription};
use crate::endpoint;
use crate::error::{classify, WebPushError};
use crate::vapid::VapidKey;

/// How long a VAPID token is made valid for.
const TOKEN_VALIDITY: Duration = Duration::from_secs(12 * 3600);
/// A cached token is replaced this long before it expires.
const TOKEN_RENEWAL: Duration = Duration::from_secs(3600);
/// What the device-ack envelope adds to a payload, at most (`{"payload":,"ack":""}` and a
/// token of a 29-character delivery id and a 32-character MAC, with room to spare).
const ACK_ENVELOPE: usize = 128;
/// Longest TTL sent (RFC 8030 leaves it to the service; 4 weeks is what services keep).
const MAX_TTL_SECS: u64 = 28 * 24 * 3600;

/// Web Push as a pushgate provider.
pub struct WebPushProvider {
    name: String,
    settings: WebPushSettings,
    key: VapidKey,
    client: HttpClient,
    /// Per push-service origin: the token and when it expires (epoch seconds).
    tokens: Mutex<HashMap<String, (String, u64)>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A subscription as kept with a binding: `{"endpoint", "keys": {"p256dh", "auth"}}`.
struct Stored {
    endpoint: String,
    p256dh: String,
    auth: String,
}

fn stored(data: &Value) -> Result<Stored, String> {
    let text = |v: &Value, what: &str| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{what} must be a string"))
    };
    Ok(Stored {
        endpoint: text(&data["endpoint"], "endpoint")?,
        p256dh: text(&data["keys"]["p256dh"], "keys.p256dh")?,
        auth: text(&data["keys"]["auth"], "keys.auth")?,
    })
}

impl WebPushProvider {
    /// Builds the provider, reading its VAPID key.
    pub fn new(name: &str, settings: WebPushSettings) -> Result<Self, WebPushError> {
        settings.validate()?;
        let path = settings.vapid_private_key_file.display().to_string();
        let pem = std::fs::read_to_string(&settings.vapid_private_key_file).map_err(|e| {
            WebPushError::Key {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        let key = VapidKey::from_pem(&pem).map_err(|e| WebPushError::Key {
            path,
            reason: e.to_string(),
        })?;
        Ok(WebPushProvider {
            name: name.to_string(),
            client: pushgate_api::http_client::build(settings.concurrency),
            settings,
            key,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The public key pages subscribe with (`applicationServerKey`).
    pub fn public_key(&self) -> String {
        self.key.public_base64()
    }

    /// A VAPID token for `origin`, from the cache while it has over an hour left.
    fn token(&self, origin: &str) -> Result<String, ProviderError> {
        let now = now_secs();
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, expires)) = tokens.get(origin) {
            if *expires > now + TOKEN_RENEWAL.as_secs() {
                return Ok(token.clone());
            }
        }
        let expires = now + TOKEN_VALIDITY.as_secs();
        let token = self
            .key
            .token(origin, &self.settings.subject, now, expires)
            .map_err(|e| ProviderError::permanent("vapid", e.to_string()))?;
        tokens.insert(origin.to_string(), (token.clone(), expires));
        Ok(token)
    }
}

/// The push data of a message with a notification: `{"payload": …, "notification":
/// {"title", "body"}}` (with device acks `notification` joins the `{"payload", "ack"}`
/// envelope); without one, the payload alone.
fn content(payload: &Value, notification: Option<&Notification>, acks: bool) -> Value {
    match notification {
        None => payload.clone(),
        Some(n) if acks => {
            let mut envelope = payload.clone();
            if let Some(fields) = envelope.as_object_mut() {
                fields.insert("notification".into(), json!(n));
            }
            envelope
        }
        Some(n) => json!({"payload": payload, "notification": n}),
    }
}

/// What the device gets: a JSON string payload as is, anything else as its JSON text.
fn plaintext(payload: &Value) -> Vec<u8> {
    match payload {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

#[async_trait]
impl Provider for WebPushProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, delivery: &OutboundDelivery) -> Result<Sent, ProviderError> {
        let data = delivery.device_data.as_deref().ok_or_else(|| {
            ProviderError::permanent(
                "no_subscription",
                "the device was bound without a subscription",
            )
        })?;
        let sub = stored(data).map_err(|e| ProviderError::permanent("bad_subscription", e))?;
        let endpoint = endpoint::check(&sub.endpoint, &self.settings.allowed_endpoints)
            .map_err(|e| ProviderError::permanent("endpoint_refused", e))?;
        endpoint::resolve_public(&endpoint)
            .await
            .map_err(|e| ProviderError::permanent("endpoint_refused", e))?;
        let subscription = Subscription::from_base64(&sub.p256dh, &sub.auth)
            .map_err(|e| ProviderError::permanent("bad_subscription", e.to_string()))?;
        let data = content(
            &delivery.payload,
            delivery.notification.as_deref(),
            self.settings.device_acks,
        );
        let body = ece::encrypt(&plaintext(&data), &subscription)
            .map_err(|e| ProviderError::permanent("payload_too_large", e.to_string()))?;
        let token = self.token(&endpoint.origin)?;
        let ttl = delivery.ttl.as_secs().clamp(0, MAX_TTL_SECS);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&endpoint.url)
            .header("TTL", ttl.to_string());
        if let Some(urgency) = delivery.urgency {
            request = request.header("Urgency", urgency.as_str());
        }
        if let Some(topic) = &delivery.collapse_key {
            request = request.header("Topic", topic.as_str());
        }
        let request = request
            .header(header::CONTENT_ENCODING, "aes128gcm")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::AUTHORIZATION, self.key.authorization(&token))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ProviderError::permanent("endpoint_refused", e.to_string()))?;
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| ProviderError::transient("timeout", "the push service did not answer"))?
            .map_err(|e| ProviderError::transient("unreachable", e.to_string()))?;
        let status = response.status().as_u16();
        let retry_after = pushgate_api::http_client::retry_after(response.headers());
        if (200..300).contains(&status) {
            return Ok(Sent {
                provider_ref: delivery.idempotency_key.clone(),
            });
        }
        let answer = tokio::time::timeout(timeout, response.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(classify(status, retry_after, &answer))
    }

    fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            concurrency: self.settings.concurrency,
            qps: None,
            send_timeout: Duration::from_millis(self.settings.timeout_ms + 1000),
            receipt_timeout: (self.settings.device_acks && self.settings.receipt_timeout_ms > 0)
                .then(|| Duration::from_millis(self.settings.receipt_timeout_ms)),
        }
    }

    fn device_acks(&self) -> bool {
        self.settings.device_acks
    }

    /// A subscription as `PushSubscription.toJSON()` gives it: `{"endpoint", "keys":
    /// {"p256dh", "auth"}}` (`expirationTime` ignored); the endpoint must pass the SSRF
    /// guard (IP literals checked now, host names at each send) and the keys must be a P-256
    /// key and a 16-byte secret.
    fn check_device_data(
        &self,
        _cid: &str,
        data: Option<&Value>,
    ) -> Result<Option<Value>, DeviceError> {
        let data = data.ok_or_else(|| {
            DeviceError::Data(
                "a webpush device needs data: {\"endpoint\", \"keys\": {\"p256dh\", \"auth\"}}"
                    .into(),
            )
        })?;
        let sub = stored(data).map_err(DeviceError::Data)?;
        endpoint::check(&sub.endpoint, &self.settings.allowed_endpoints)
            .map_err(DeviceError::Data)?;
        Subscription::from_base64(&sub.p256dh, &sub.auth)
            .map_err(|e| DeviceError::Data(e.to_string()))?;
        Ok(Some(json!({
            "endpoint": sub.endpoint,
            "keys": {"p256dh": sub.p256dh, "auth": sub.auth},
        })))
    }

    /// One aes128gcm record of 4096 bytes carries at most 3993 bytes of message.
    fn check_payload(&self, payload: &Value) -> Result<(), PayloadError> {
        self.check_size(payload, None)
    }

    /// The notification travels in the same record.
    fn check_notification(
        &self,
        payload: &Value,
        notification: &Notification,
    ) -> Result<(), PayloadError> {
        self.check_size(payload, Some(notification))
    }

    /// The endpoint shows; the keys do not.
    fn redact_device_data(&self, data: &Value) -> Value {
        json!({
            "endpoint": data["endpoint"],
            "keys": {"p256dh": "<redacted>", "auth": "<redacted>"},
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl WebPushProvider {
    fn check_size(
        &self,
        payload: &Value,
        notification: Option<&Notification>,
    ) -> Result<(), PayloadError> {
        let wrapped = match (notification, self.settings.device_acks) {
            (Some(_), true) => json!({"payload": payload, "ack": ""}),
            _ => payload.clone(),
        };
        let len = plaintext(&content(&wrapped, notification, self.settings.device_acks)).len();
        // With device acks the payload travels in `{"payload":…,"ack":"<token>"}`.
        let room = if self.settings.device_acks {
            ece::max_plaintext() - ACK_ENVELOPE
        } else {
            ece::max_plaintext()
        };
        if len > room {
            return Err(PayloadError::TooLarge(format!(
                "the payload is {len} bytes; Web Push carries at most {room} here (4 KiB encrypted)"
            )));
        }
        Ok(())
    }
}
