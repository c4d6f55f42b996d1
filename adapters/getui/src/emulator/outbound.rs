//! What the emulator's devices send: batched, signed receipt lines (Getui retries a
//! callback 3 times on network errors, then drops it) and upstream lines.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use pushgate_api::clock::now_ms;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Shared;
use crate::callbacks::{receipt_line, upstream_line};

/// Most lines in one receipt callback.
const MAX_LINES: usize = 200;

pub(crate) struct PendingReceipt {
    pub due: Instant,
    pub line: String,
}

async fn post(shared: &Shared, url: &str, body: String) -> Result<u16, String> {
    let request = Request::post(url)
        .header(http::header::CONTENT_TYPE, "text/plain;charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(10), shared.http.request(request))
        .await
        .map_err(|_| "callback timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

pub(crate) async fn pump_receipts(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<PendingReceipt>,
) {
    let mut carry: Option<PendingReceipt> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        tokio::time::sleep_until(first.due).await;
        let mut lines = vec![first.line];
        let now = Instant::now();
        while lines.len() < MAX_LINES {
            match rx.try_recv() {
                Ok(p) if p.due <= now => lines.push(p.line),
                Ok(p) => {
                    carry = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        let Some(url) = shared.config().receipt_url else {
            continue;
        };
        let body = lines.join("\n");
        for attempt in 1..=3 {
            match post(&shared, &url, body.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(attempt, error = %e, "emulator receipt callback failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Queues a device's receipt for a push, unless the fault knobs drop it.
pub(crate) fn queue_receipt(shared: &Shared, cid: &str, taskid: &str, msgid: &str) {
    let c = shared.config();
    if rand::random::<f64>() < c.faults.drop_receipt_rate {
        return;
    }
    let line = receipt_line(&c.app_id, &c.master_secret, cid, taskid, msgid, now_ms());
    let due = Instant::now() + Duration::from_millis(c.receipt_delay_ms);
    let _ = shared.receipts.send(PendingReceipt { due, line });
}

pub(crate) async fn send_upstream(
    shared: &Shared,
    cid: &str,
    payload: &str,
) -> Result<u16, String> {
    let c = shared.config();
    let url = c.upstream_url.ok_or("no upstream_url is configured")?;
    let msgid = shared
        .pushes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .msg_id();
    let line = upstream_line(&c.app_id, &c.master_secret, cid, &msgid, payload, now_ms());
    post(shared, &url, line).await
}
