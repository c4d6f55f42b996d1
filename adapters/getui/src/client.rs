//! Getui REST v2 calls: token management (refresh before expiry, once on 10001, one
//! refresh at a time), the 301 host switch, and the push and alias endpoints.

use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use pushgate_api::clock::now_ms;
use pushgate_api::provider::ProviderError;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::GetuiSettings;
use crate::error::{classify, TOKEN_INVALID, WRONG_DOMAIN};
use crate::sign::auth_sign;
use crate::wire::{
    AliasList, AliasPair, AuthData, AuthRequest, BatchRequest, Envelope, PushRequest, PushResult,
};
use pushgate_api::http_client::HttpClient;

/// Longest answer read from Getui.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Refresh a token this long before it expires (or at half its lifetime if shorter).
const TOKEN_MARGIN_MS: u64 = 3600 * 1000;

#[derive(Clone, Debug)]
struct Token {
    value: String,
    /// When to stop using it (expiry minus the margin).
    refresh_at: u64,
}

/// A client for one Getui app.
pub struct GetuiClient {
    http: HttpClient,
    settings: GetuiSettings,
    /// The current origin; 301 answers switch it.
    base: RwLock<String>,
    token: RwLock<Option<Token>>,
    /// Held while a token is being fetched, so concurrent callers share one refresh.
    refreshing: Mutex<()>,
}

fn transport(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::transient("network", format!("getui request failed: {e}"))
}

impl GetuiClient {
    pub fn new(settings: GetuiSettings, http: HttpClient) -> Self {
        GetuiClient {
            base: RwLock::new(settings.base_url.trim_end_matches('/').to_string()),
            http,
            settings,
            token: RwLock::new(None),
            refreshing: Mutex::new(()),
        }
    }

    fn base(&self) -> String {
        self.base.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}{}", self.base(), self.settings.app_id, path)
    }

    /// Switches to the first host of a 301 answer. Returns false if it names none.
    fn switch_host(&self, data: &Value) -> bool {
        let host = data["host_list"][0]["domain_list"][0]
            .as_str()
            .map(str::trim);
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            return false;
        };
        let origin = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_string()
        } else {
            format!("https://{}", host.trim_end_matches('/'))
        };
        tracing::warn!(origin = %origin, "getui answered 301; switching host");
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = origin;
        true
    }

    /// One HTTP exchange: returns the HTTP status and the parsed envelope.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Envelope), ProviderError> {
        let mut request = Request::builder()
            .method(method)
            .uri(self.url(path))
            .header(http::header::CONTENT_TYPE, "application/json;charset=utf-8")
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = token {
            request = request.header("token", token);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| {
                ProviderError::permanent("bad_request", format!("cannot build the request: {e}"))
            })?;
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let response = tokio::time::timeout(timeout, self.http.request(request))
            .await
            .map_err(|_| {
                ProviderError::transient(
                    "timeout",
                    format!("getui did not answer within {} ms", timeout.as_millis()),
                )
            })?
            .map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = tokio::time::timeout(
            timeout,
            Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect(),
        )
        .await
        .map_err(|_| ProviderError::transient("timeout", "getui's answer did not arrive in time"))?
        .map_err(transport)?
        .to_bytes();
        match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(envelope) => Ok((status, envelope)),
            Err(_) => Err(classify(
                -1,
                &format!("HTTP {status} with a body that is not Getui's JSON"),
                status,
            )),
        }
    }

    /// A valid token, fetching one if needed (one fetch at a time).
    async fn token(&self) -> Result<String, ProviderError> {
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let _guard = self.refreshing.lock().await;
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let token = self.authenticate().await?;
        let value = token.value.clone();
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = Some(token);
        Ok(value)
    }

    fn cached_token(&self) -> Option<String> {
        let guard = self.token.read().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|t| t.refresh_at > now_ms())
            .map(|t| t.value.clone())
    }

    /// Forgets `stale` (unless another caller already replaced it).
    fn invalidate(&self, stale: &str) {
        let mut guard = self.token.write().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|t| t.value == stale) {
            *guard = None;
        }
    }

    async fn authenticate(&self) -> Result<Token, ProviderError> {
        for _ in 0..2 {
            let timestamp = now_ms().to_string();
            let body = AuthRequest {
                sign: auth_sign(
                    &self.settings.app_key,
                    &timestamp,
                    &self.settings.master_secret,
                ),
                timestamp,
                appkey: self.settings.app_key.clone(),
            };
            let body = serde_json::to_vec(&body).unwrap_or_default();
            let (status, envelope) = self
                .exchange(Method::POST, "/auth", None, Some(body))
                .await?;
            match envelope.code {
                0 => {
                    let data: AuthData = serde_json::from_value(envelope.data).map_err(|e| {
                        ProviderError::transient(
                            "bad_answer",
                            format!("getui auth answer has no token: {e}"),
                        )
                    })?;
                    let now = now_ms();
                    let expires = data
                        .expire_time
                        .parse::<u64>()
                        .unwrap_or(now + 24 * 3600 * 1000);
                    let lifetime = expires.saturating_sub(now);
                    let margin = TOKEN_MARGIN_MS.min(lifetime / 2);
                    tracing::debug!(lifetime_ms = lifetime, "getui token refreshed");
                    return Ok(Token {
                        value: data.token,
                        refresh_at: expires.saturating_sub(margin),
                    });
                }
                WRONG_DOMAIN if self.switch_host(&envelope.data) => continue,
                code => {
                    // Never log the sign or the key: only Getui's code and message.
                    let mut e = classify(code, &envelope.msg, status);
                    e.message = format!("getui auth failed: {}", e.message);
                    return Err(e);
                }
            }
        }
        Err(ProviderError::transient("301", "getui kept redirecting"))
    }

    /// Calls `path` with the token; refreshes once on 10001 and follows one 301.
    pub async fn call<T: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&T>,
    ) -> Result<Value, ProviderError> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let (mut refreshed, mut switched) = (false, false);
        loop {
            let token = self.token().await?;
            let (status, envelope) = self
                .exchange(method.clone(), path, Some(&token), body.clone())
                .await?;
            match envelope.code {
                0 => return Ok(envelope.data),
                TOKEN_INVALID if !refreshed => {
                    refreshed = true;
                    self.invalidate(&token);
                }
                WRONG_DOMAIN if !switched && self.switch_host(&envelope.data) => switched = true,
                code => return Err(classify(code, &envelope.msg, status)),
            }
        }
    }

    /// `POST /push/single/cid`.
    pub async fn push_single(&self, push: &PushRequest) -> Result<PushResult, ProviderError> {
        let data = self
            .call(Method::POST, "/push/single/cid", Some(push))
            .await?;
        parse_push_result(data)
    }

    /// `POST /push/single/batch/cid` (synchronous: one result per message).
    pub async fn push_batch(&self, pushes: Vec<PushRequest>) -> Result<PushResult, ProviderError> {
        let body = BatchRequest {
            is_async: false,
            msg_list: pushes,
        };
        let data = self
            .call(Method::POST, "/push/single/batch/cid", Some(&body))
            .await?;
        parse_push_result(data)
    }

    /// `POST /user/alias`: binds `cid` to `alias`.
    pub async fn bind_alias(&self, cid: &str, alias: &str) -> Result<(), ProviderError> {
        let body = alias_list(cid, alias);
        self.call(Method::POST, "/user/alias", Some(&body))
            .await
            .map(|_| ())
    }

    /// `DELETE /user/alias` with a body: unbinds `cid` from `alias`.
    pub async fn unbind_alias(&self, cid: &str, alias: &str) -> Result<(), ProviderError> {
        let body = alias_list(cid, alias);
        self.call(Method::DELETE, "/user/alias", Some(&body))
            .await
            .map(|_| ())
    }

    /// `GET /user/cid/alias/{alias}`: the cids Getui has for an alias.
    pub async fn cids_of_alias(&self, alias: &str) -> Result<Vec<String>, ProviderError> {
        let path = format!(
            "/user/cid/alias/{}",
            utf8_percent_encode(alias, NON_ALPHANUMERIC)
        );
        let data = self.call::<()>(Method::GET, &path, None).await?;
        Ok(data["cid"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn alias_list(cid: &str, alias: &str) -> AliasList {
    AliasList {
        data_list: vec![AliasPair {
            cid: cid.to_string(),
            alias: alias.to_string(),
        }],
    }
}

fn parse_push_result(data: Value) -> Result<PushResult, ProviderError> {
    serde_json::from_value(data).map_err(|e| {
        ProviderError::transient(
            "bad_answer",
            format!("getui push answer is not {{taskid: {{cid: status}}}}: {e}"),
        )
    })
}
