//! The OAuth 2.0 access token: fetched with a signed assertion, cached until shortly before it
//! expires, refreshed by one caller at a time while the others wait for its result.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use pushgate_api::http_client::HttpClient;
use pushgate_api::provider::ProviderError;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::service_account::{ServiceAccount, Signer, GRANT_TYPE};

/// A token is replaced this long before it expires (or at half its life, if shorter).
const RENEWAL: Duration = Duration::from_secs(300);
/// Form encoding as `urlencode` does it (Google's clients): unreserved characters stay.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Largest token answer read.
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Clone)]
struct Cached {
    token: String,
    renew_at: Instant,
}

/// The access token source of one provider.
pub(crate) struct TokenSource {
    account: ServiceAccount,
    signer: Signer,
    client: HttpClient,
    timeout: Duration,
    cached: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenSource {
    pub fn new(
        account: ServiceAccount,
        signer: Signer,
        client: HttpClient,
        timeout: Duration,
    ) -> Self {
        TokenSource {
            account,
            signer,
            client,
            timeout,
            cached: Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a new one (one fetch at a time).
    pub async fn get(&self) -> Result<String, ProviderError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.renew_at {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets `token` after FCM refused it (a token revoked early); a newer one stays.
    pub async fn invalidate(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, ProviderError> {
        let fail = |m: String| ProviderError::transient("fcm_auth", m);
        let assertion = self
            .signer
            .assertion(&self.account, now_secs())
            .map_err(|e| fail(e.to_string()))?;
        let form = format!(
            "grant_type={}&assertion={}",
            utf8_percent_encode(GRANT_TYPE, FORM),
            assertion
        );
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.account.token_uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| fail(format!("token_uri: {e}")))?;
        let started = Instant::now();
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| fail("the token endpoint did not answer".into()))?
            .map_err(|e| fail(format!("the token endpoint is unreachable: {e}")))?;
        let status = response.status().as_u16();
        let body = tokio::time::timeout(
            self.timeout,
            http_body_util::Limited::new(response.into_body(), MAX_ANSWER).collect(),
        )
        .await
        .map_err(|_| fail("the token answer did not arrive".into()))?
        .map_err(|e| fail(format!("the token answer failed: {e}")))?
        .to_bytes();
        if status != 200 {
            let detail: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            tracing::warn!(status, detail = %detail, "FCM access token refused");
            return Err(fail(format!(
                "the token endpoint answered {status}: {detail}"
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("the token answer is not a token: {e}")))?;
        if answer.access_token.is_empty() {
            return Err(fail("the token answer has an empty access_token".into()));
        }
        let life = Duration::from_secs(answer.expires_in.max(1));
        let early = RENEWAL.min(life / 2);
        Ok(Cached {
            token: answer.access_token,
            renew_at: started + life - early,
        })
    }
}
