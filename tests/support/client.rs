//! A small JSON HTTP client for talking to the gateway.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A response: status, headers and body (parsed as JSON when it is JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// The `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Api {
    base: String,
    key: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    pub fn new(base: &str, key: Option<&str>) -> Self {
        Api {
            base: base.trim_end_matches('/').to_string(),
            key: key.map(str::to_string),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn with_key(&self, key: Option<&str>) -> Self {
        Api {
            key: key.map(str::to_string),
            ..self.clone()
        }
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        self.try_raw(method, path, headers, body)
            .await
            .expect("gateway answers")
    }

    /// Like [`Api::raw`], but a connection closed without an answer is an `Err`.
    pub async fn try_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(Full::new(Bytes::from(body))).expect("request");
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            text,
            json,
        })
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.raw(Method::GET, path, &[], Vec::new()).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.raw(Method::DELETE, path, &[], Vec::new()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.raw(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn post_text(&self, path: &str, body: &str) -> Reply {
        self.raw(
            Method::POST,
            path,
            &[("content-type", "text/plain")],
            body.as_bytes().to_vec(),
        )
        .await
    }

    /// Binds `cid` on `provider` to `alias` of app `demo`.
    pub async fn bind(&self, alias: &str, provider: &str, cid: &str) -> Reply {
        self.post(
            &format!("/v1/apps/demo/aliases/{alias}/devices"),
            &serde_json::json!({"provider": provider, "cid": cid}),
        )
        .await
    }

    /// Sends a message without panicking on a dead gateway: `(status, message_id)`.
    pub async fn try_send(&self, body: &Value) -> Option<(u16, String)> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/v1/apps/demo/messages", self.base));
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .ok()?;
        let response = self.client.request(request).await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        let json: Value = serde_json::from_slice(&bytes).ok()?;
        Some((
            status,
            json["message_id"].as_str().unwrap_or("").to_string(),
        ))
    }

    pub async fn send(&self, body: &Value) -> Reply {
        self.post("/v1/apps/demo/messages", body).await
    }

    pub async fn message(&self, id: &str) -> Reply {
        self.get(&format!("/v1/apps/demo/messages/{id}")).await
    }

    /// The states of a message's deliveries.
    pub async fn states(&self, id: &str) -> Vec<String> {
        let reply = self.message(id).await;
        reply.json["deliveries"]
            .as_array()
            .map(|ds| {
                ds.iter()
                    .map(|d| d["state"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the message has deliveries and every one of them is in `state` (false for a
    /// message with none, so a wait on it cannot pass on an empty list).
    pub async fn all_deliveries_are(&self, id: &str, state: &str) -> bool {
        let states = self.states(id).await;
        !states.is_empty() && states.iter().all(|s| s == state)
    }

    /// A counter or gauge from `/metrics` (the sample whose name and labels are `series`
    /// exactly), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        self.get("/metrics")
            .await
            .text
            .lines()
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok())?
            })
            .unwrap_or(0.0)
    }

    /// A mock device's inbox.
    pub async fn inbox(&self, provider: &str, cid: &str) -> Vec<Value> {
        let reply = self
            .get(&format!("/v1/mock/{provider}/devices/{cid}/inbox"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "inbox: {}", reply.text);
        reply.json["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
