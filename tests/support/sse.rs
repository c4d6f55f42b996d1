//! A Server-Sent Events reader for the event stream: events parsed as they arrive.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::mpsc;

/// One event of the stream.
#[derive(Clone, Debug)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// What the reader saw: events, comments (keep-alives), the end.
#[derive(Debug)]
pub enum Seen {
    Event(SseEvent),
    Comment(String),
    End,
}

/// An open event stream.
pub struct EventStream {
    pub status: StatusCode,
    pub content_type: String,
    pub error: Value,
    rx: mpsc::UnboundedReceiver<Seen>,
}

impl EventStream {
    /// Opens `GET {base}/v1/apps/{app}/events` with `key` and, if given, `Last-Event-ID`.
    pub async fn open(base: &str, app: &str, key: &str, last_event_id: Option<&str>) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut request = Request::get(format!("{base}/v1/apps/{app}/events"))
            .header("authorization", format!("Bearer {key}"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = client
            .request(request.body(Empty::new()).expect("request"))
            .await
            .expect("the gateway answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut body = response.into_body();
        if status != StatusCode::OK {
            let bytes = body.collect().await.expect("body").to_bytes();
            return EventStream {
                status,
                content_type,
                error: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                rx,
            };
        }
        tokio::spawn(async move {
            let mut buffer = String::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buffer.push_str(&String::from_utf8_lossy(&data));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    if let Some(seen) = parse(&block) {
                        let _ = tx.send(seen);
                    }
                }
            }
            let _ = tx.send(Seen::End);
        });
        EventStream {
            status,
            content_type,
            error: Value::Null,
            rx,
        }
    }

    /// The next thing seen within `limit` (`None`: nothing came).
    pub async fn next(&mut self, limit: Duration) -> Option<Seen> {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event within `limit`, skipping comments (`None`: none came, or the end).
    pub async fn next_event(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Seen::Event(e) => return Some(e),
                Seen::Comment(_) => {}
                Seen::End => return None,
            }
        }
    }

    /// `n` events within `limit` (fewer if they did not come).
    pub async fn events(&mut self, n: usize, limit: Duration) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(e) => got.push(e),
                None => break,
            }
        }
        got
    }
}

fn parse(block: &str) -> Option<Seen> {
    let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            return Some(Seen::Comment(comment.trim().to_string()));
        }
        match line.split_once(':') {
            Some(("id", v)) => id = v.trim().to_string(),
            Some(("event", v)) => event = v.trim().to_string(),
            Some(("data", v)) => data.push_str(v.trim_start()),
            _ => {}
        }
    }
    if id.is_empty() && data.is_empty() {
        return None;
    }
    Some(Seen::Event(SseEvent {
        id,
        event,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    }))
}
