//! Signed webhook events to app servers over HTTP(S): the gateway's [`EventTransport`].
//!
//! Body: `{"id","type","app","created_at","data"}`. Headers: `X-Pushgate-Event-Id` and
//! `X-Pushgate-Signature: sha256=<hex HMAC-SHA256 of the raw body with the app's secret>`.
//! An app with `webhook_batch_max` above 1 gets up to that many events as one JSON array,
//! signed as a whole, with `X-Pushgate-Event-Count`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use pushgate_engine::clock::rfc3339;
use pushgate_engine::events::{EventFailure, EventTransport};
use pushgate_engine::model::EventRecord;
use sha2::Sha256;

use crate::config::AppConfig;
use pushgate_engine::http_client::{self, HttpClient};

/// Largest app server answer read (the rest is ignored).
const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Checks a webhook URL: absolute http(s) with a host.
pub fn check_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("{url:?} is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(uri)
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON body of an event.
pub fn event_body(event: &EventRecord) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": event.id,
        "type": event.kind.as_str(),
        "app": event.app,
        "created_at": rfc3339(event.created_at),
        "data": event.data,
    }))
    .unwrap_or_default()
}

struct Target {
    url: Uri,
    secret: Vec<u8>,
}

/// Posts events to each app's `webhook_url`.
pub struct WebhookSender {
    client: HttpClient,
    targets: HashMap<String, Target>,
    timeout: Duration,
}

impl WebhookSender {
    /// A sender for the apps that have a webhook, keeping up to `concurrency` connections
    /// per app server alive (as many as events in flight, so a burst never reconnects).
    pub fn new(apps: &[AppConfig], timeout: Duration, concurrency: usize) -> Result<Self, String> {
        let mut targets = HashMap::new();
        for app in apps {
            if let (Some(url), Some(secret)) = (&app.webhook_url, &app.webhook_secret) {
                targets.insert(
                    app.id.clone(),
                    Target {
                        url: check_url(url)?,
                        secret: secret.as_bytes().to_vec(),
                    },
                );
            }
        }
        Ok(WebhookSender {
            client: http_client::build(concurrency),
            targets,
            timeout,
        })
    }
}

fn failure(message: String) -> EventFailure {
    EventFailure {
        message,
        retry_after: None,
        permanent: false,
    }
}

impl WebhookSender {
    fn target(&self, app: &str) -> Result<&Target, EventFailure> {
        self.targets.get(app).ok_or_else(|| EventFailure {
            message: format!("app {app:?} has no webhook_url"),
            retry_after: None,
            permanent: true,
        })
    }

    /// POSTs a signed `body` with `headers`; the answer's body on a 2xx.
    async fn post(
        &self,
        target: &Target,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
    ) -> Result<Vec<u8>, EventFailure> {
        let mut request = Request::post(target.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("pushgate/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-pushgate-signature", signature(&target.secret, &body));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| failure(format!("cannot build the request: {e}")))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| failure(format!("no answer within {} ms", self.timeout.as_millis())))?
            .map_err(|e| failure(format!("request failed: {e}")))?;
        let status = response.status();
        let wait = pushgate_engine::http_client::retry_after(response.headers());
        // Read (bounded; also so the connection can be reused). An app server may answer
        // upstream events with messages to deliver.
        let reply = match tokio::time::timeout(
            self.timeout,
            Limited::new(response.into_body(), MAX_REPLY_BYTES).collect(),
        )
        .await
        {
            Ok(Ok(body)) => body.to_bytes().to_vec(),
            _ if status.is_success() => {
                return Err(failure(format!(
                    "app server answered {status} but its body was unreadable or over {MAX_REPLY_BYTES} bytes"
                )))
            }
            _ => Vec::new(),
        };
        if status.is_success() {
            return Ok(reply);
        }
        Err(EventFailure {
            message: format!("app server answered {status}"),
            retry_after: if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                wait
            } else {
                None
            },
            permanent: false,
        })
    }
}

#[async_trait]
impl EventTransport for WebhookSender {
    async fn deliver(&self, event: &EventRecord) -> Result<Vec<u8>, EventFailure> {
        let target = self.target(&event.app)?;
        let headers = [("x-pushgate-event-id", event.id.to_string())];
        self.post(target, event_body(event), &headers).await
    }

    /// One POST of a JSON array of event bodies (each with its own `id`), signed as a whole.
    async fn deliver_batch(&self, events: &[EventRecord]) -> Result<(), EventFailure> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let target = self.target(&first.app)?;
        let mut body = Vec::with_capacity(events.len() * 300);
        body.push(b'[');
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&event_body(event));
        }
        body.push(b']');
        let headers = [("x-pushgate-event-count", events.len().to_string())];
        self.post(target, body, &headers).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:3000/pushgate").is_ok());
        assert!(check_url("https://example.com/hook").is_ok());
        assert!(check_url("ftp://example.com/").is_err());
        assert!(check_url("/relative").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
