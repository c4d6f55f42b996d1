//! Test support: the real gateway binary as a child process, an HTTP client, and a test
//! app server that records webhooks. Everything listens on 127.0.0.1 only.

#![allow(dead_code)]

pub mod app_server;
pub mod client;
pub mod gateway;
pub mod plugins;
pub mod postgres;
pub mod sse;
pub mod webpush;

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
