//! The client commands: the HTTP API of a running gateway, with answers printed for people
//! (or as JSON with `--json`). An error answer prints its code and message and exits 1.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use pushgate_api::http_client::{self, HttpClient};
use serde_json::{json, Value};

use super::{SendArgs, Target};

/// Where the embedded default keeps its API key.
const DEFAULT_KEY_FILE: &str = "./pushgate-data/demo-api-key";
/// How often `send --wait` looks at the message.
const WAIT_POLL: Duration = Duration::from_millis(200);
/// How long `events tail` waits before reconnecting.
const RECONNECT: Duration = Duration::from_secs(2);

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{code} ({status}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the gateway at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("no API key: pass --api-key or set PUSHGATE_API_KEY (the embedded default keeps its key in {DEFAULT_KEY_FILE})")]
    NoApiKey,
    #[error("{0}")]
    Usage(String),
    #[error("the gateway's answer is not JSON: {0}")]
    BadAnswer(#[source] serde_json::Error),
    #[error("{0}")]
    NotDelivered(String),
}

/// The exit code of a command's result (its error printed).
pub fn exit(result: Result<(), CliError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                CliError::Usage(_) | CliError::NoApiKey => 2,
                _ => 1,
            }
        }
    }
}

/// A client of one gateway and app.
pub struct Client {
    target: Target,
    http: HttpClient,
}

impl Client {
    pub fn new(target: &Target) -> Client {
        Client {
            target: target.clone(),
            http: http_client::build(2),
        }
    }

    fn key(&self) -> Result<String, CliError> {
        if let Some(key) = &self.target.api_key {
            return Ok(key.clone());
        }
        std::fs::read_to_string(Path::new(DEFAULT_KEY_FILE))
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .ok_or(CliError::NoApiKey)
    }

    fn app_path(&self, rest: &str) -> String {
        format!("/v1/apps/{}{rest}", segment(&self.target.app))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Request<Full<Bytes>>, CliError> {
        let url = format!("{}{path}", self.target.url.trim_end_matches('/'));
        let mut request = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.key()?));
        let bytes = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        request
            .body(Full::new(bytes))
            .map_err(|e| CliError::Usage(format!("bad --url {url:?}: {e}")))
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> CliError {
        CliError::Unreachable {
            url: self.target.url.clone(),
            reason: reason.to_string(),
        }
    }

    /// One API call: the JSON answer of a 2xx, else the API's error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), CliError> {
        let response = self
            .http
            .request(self.request(method, path, body)?)
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(e))?
            .to_bytes();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(CliError::BadAnswer)?
        };
        if !status.is_success() {
            return Err(api_error(status, &value));
        }
        Ok((status, value))
    }

    fn print(&self, value: &Value, human: impl FnOnce(&Value)) {
        if self.target.json {
            println!("{value:#}");
        } else {
            human(value);
        }
    }

    /// `alias bind`.
    pub async fn bind(&self, alias: &str, provider: &str, cid: &str) -> Result<(), CliError> {
        let path = self.app_path(&format!("/aliases/{}/devices", segment(alias)));
        let (_, answer) = self
            .call(
                Method::POST,
                &path,
                Some(&json!({"provider": provider, "cid": cid})),
            )
            .await?;
        self.print(&answer, |a| {
            println!("bound {provider}:{cid} to {alias}");
            print_devices(a);
        });
        Ok(())
    }

    /// `alias unbind`: one device, or every device of the alias.
    pub async fn unbind(
        &self,
        alias: &str,
        device: Option<(String, String)>,
    ) -> Result<(), CliError> {
        let path = match &device {
            Some((provider, cid)) => self.app_path(&format!(
                "/aliases/{}/devices/{}/{}",
                segment(alias),
                segment(provider),
                segment(cid)
            )),
            None => self.app_path(&format!("/aliases/{}", segment(alias))),
        };
        self.call(Method::DELETE, &path, None).await?;
        match device {
            Some((provider, cid)) => println!("unbound {provider}:{cid} from {alias}"),
            None => println!("unbound every device of {alias}"),
        }
        Ok(())
    }

    /// `alias show`.
    pub async fn show_alias(&self, alias: &str) -> Result<(), CliError> {
        let path = self.app_path(&format!("/aliases/{}", segment(alias)));
        let (_, answer) = self.call(Method::GET, &path, None).await?;
        self.print(&answer, |a| {
            println!("{alias}:");
            print_devices(a);
        });
        Ok(())
    }

    /// `send`, and with `--wait` the message followed to its end.
    pub async fn send(&self, args: &SendArgs) -> Result<(), CliError> {
        let to = match (&args.to, &args.device) {
            (Some(alias), None) => json!({"alias": alias}),
            (None, Some(device)) => {
                let (provider, cid) = device.split_once(':').ok_or_else(|| {
                    CliError::Usage(format!("--device {device:?} is not PROVIDER:CID"))
                })?;
                json!({"device": {"provider": provider, "cid": cid}})
            }
            _ => {
                return Err(CliError::Usage(
                    "give --to ALIAS or --device PROVIDER:CID".into(),
                ))
            }
        };
        let payload =
            serde_json::from_str::<Value>(&args.payload).unwrap_or_else(|_| json!(args.payload));
        let mut body = json!({"to": to, "payload": payload});
        if let Some(from) = &args.from {
            body["from"] = json!(from);
        }
        if let Some(id) = &args.request_id {
            body["request_id"] = json!(id);
        }
        let (status, answer) = self
            .call(Method::POST, &self.app_path("/messages"), Some(&body))
            .await?;
        let id = answer["message_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !args.wait {
            self.print(&answer, |a| {
                let again = if status == StatusCode::OK {
                    " (already accepted with this request id)"
                } else {
                    ""
                };
                println!(
                    "accepted {id}: {} deliver{}{again}",
                    a["deliveries"],
                    if a["deliveries"] == 1 { "y" } else { "ies" }
                );
            });
            return Ok(());
        }
        if !self.target.json {
            println!("accepted {id}; waiting for its deliveries…");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
        loop {
            let message = self.message(&id).await?;
            if all_ended(&message) {
                self.print(&message, print_timeline);
                let states = states(&message);
                if states.iter().all(|s| s == "delivered") {
                    return Ok(());
                }
                return Err(CliError::NotDelivered(format!(
                    "not every delivery was delivered: {}",
                    states.join(", ")
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                self.print(&message, print_timeline);
                return Err(CliError::NotDelivered(format!(
                    "deliveries still under way after {} s: {}",
                    args.timeout,
                    states(&message).join(", ")
                )));
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    async fn message(&self, id: &str) -> Result<Value, CliError> {
        let path = self.app_path(&format!("/messages/{}", segment(id)));
        Ok(self.call(Method::GET, &path, None).await?.1)
    }

    /// `message show`.
    pub async fn show_message(&self, id: &str) -> Result<(), CliError> {
        let message = self.message(id).await?;
        self.print(&message, print_timeline);
        Ok(())
    }

    /// `events tail`: follows the event stream, reconnecting after the last id seen.
    pub async fn tail(&self, after: Option<String>) -> Result<(), CliError> {
        let mut last = after;
        loop {
            match self.follow(&mut last).await {
                // A refusal (bad key, unknown app, stream off) will not change: stop.
                Err(e @ CliError::Api { .. }) => return Err(e),
                Err(e) => eprintln!("event stream: {e}; reconnecting"),
                Ok(()) => eprintln!("event stream ended; reconnecting"),
            }
            tokio::time::sleep(RECONNECT).await;
        }
    }

    async fn follow(&self, last: &mut Option<String>) -> Result<(), CliError> {
        let mut request = self.request(Method::GET, &self.app_path("/events"), None)?;
        request.headers_mut().insert(
            "accept",
            http::HeaderValue::from_static("text/event-stream"),
        );
        if let Some(id) = last.as_deref() {
            let value = http::HeaderValue::from_str(id)
                .map_err(|_| CliError::Usage(format!("bad event id {id:?}")))?;
            request.headers_mut().insert("last-event-id", value);
        }
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(|e| self.unreachable(e))?;
            let value = serde_json::from_slice(&bytes.to_bytes()).unwrap_or(Value::Null);
            return Err(api_error(status, &value));
        }
        let mut buffer = String::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.unreachable(e))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if let Some((id, data)) = sse_event(&block) {
                    self.print_event(&data);
                    *last = Some(id);
                }
            }
        }
        Ok(())
    }

    fn print_event(&self, event: &Value) {
        if self.target.json {
            println!("{event}");
            return;
        }
        let data = &event["data"];
        let subject = match event["type"].as_str().unwrap_or("") {
            "device.unregistered" => format!(
                "{}:{} of {}",
                text(&data["provider"]),
                text(&data["cid"]),
                text(&data["alias"])
            ),
            "upstream.received" => format!("from {}", text(&data["from"])),
            _ => {
                let d = &data["delivery"];
                let error = d["error"]["code"]
                    .as_str()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                format!(
                    "message {} to {}:{}{error}",
                    text(&data["message_id"]),
                    text(&d["provider"]),
                    text(&d["cid"])
                )
            }
        };
        println!(
            "{}  {:<20} {subject}",
            text(&event["created_at"]),
            text(&event["type"])
        );
    }
}

/// The API error of a non-2xx answer.
fn api_error(status: StatusCode, value: &Value) -> CliError {
    CliError::Api {
        status: status.as_u16(),
        code: value["error"]["code"]
            .as_str()
            .unwrap_or("http_error")
            .to_string(),
        message: value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string()),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `text` as one URL path segment.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_devices(alias: &Value) {
    match alias["devices"].as_array() {
        Some(devices) if !devices.is_empty() => {
            for d in devices {
                println!(
                    "  {}:{}  bound {}",
                    text(&d["provider"]),
                    text(&d["cid"]),
                    text(&d["bound_at"])
                );
            }
        }
        _ => println!("  (no devices)"),
    }
}

fn states(message: &Value) -> Vec<String> {
    message["deliveries"]
        .as_array()
        .map(|ds| ds.iter().map(|d| text(&d["state"])).collect())
        .unwrap_or_default()
}

fn all_ended(message: &Value) -> bool {
    states(message)
        .iter()
        .all(|s| matches!(s.as_str(), "delivered" | "failed" | "expired"))
}

/// A message and each delivery's timeline, for people.
fn print_timeline(message: &Value) {
    println!(
        "message {}  from {}  to {}",
        text(&message["message_id"]),
        text(&message["from"]),
        match &message["to"] {
            Value::Object(to) if to.contains_key("alias") =>
                format!("alias {}", text(&to["alias"])),
            Value::Object(to) if to.contains_key("device") => format!(
                "device {}:{}",
                text(&to["device"]["provider"]),
                text(&to["device"]["cid"])
            ),
            other => text(other),
        }
    );
    println!(
        "  created {}  expires {}",
        text(&message["created_at"]),
        text(&message["expires_at"])
    );
    for d in message["deliveries"].as_array().into_iter().flatten() {
        let attempts = d["attempts"].as_u64().unwrap_or(0);
        println!(
            "  {}:{}  {}  ({attempts} attempt{})",
            text(&d["provider"]),
            text(&d["cid"]),
            text(&d["state"]),
            if attempts == 1 { "" } else { "s" }
        );
        for step in d["history"].as_array().into_iter().flatten() {
            let reason = step["reason"]
                .as_str()
                .map(|r| format!("  {r}"))
                .unwrap_or_default();
            println!(
                "    {}  {}{reason}",
                text(&step["at"]),
                text(&step["state"])
            );
        }
        if let Some(code) = d["error"]["code"].as_str() {
            println!("    error {code}: {}", text(&d["error"]["message"]));
        }
    }
}

/// The id and JSON data of one SSE block (`None` for comments and blocks without data).
fn sse_event(block: &str) -> Option<(String, Value)> {
    let (mut id, mut data) = (None, String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    Some((id?, serde_json::from_str(&data).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded_and_events_parsed() {
        assert_eq!(segment("bob"), "bob");
        assert_eq!(segment("用户 a/b"), "%E7%94%A8%E6%88%B7%20a%2Fb");
        let (id, data) =
            sse_event("id: 01X\nevent: message.delivered\ndata: {\"a\":1}\n\n").expect("event");
        assert_eq!((id.as_str(), data), ("01X", json!({"a": 1})));
        assert!(sse_event(": keep-alive\n\n").is_none());
        let e = api_error(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": "unknown_alias", "message": "no alias"}}),
        );
        assert_eq!(e.to_string(), "unknown_alias (404): no alias");
    }
}
