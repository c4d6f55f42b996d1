//! The mock provider: a `Provider` whose "devices" live in this process.

use std::any::Any;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use pushgate_api::clock::now_ms;
use pushgate_api::provider::{
    CallbackError, CallbackRequest, DeviceError, OutboundDelivery, ParsedReceipts, ParsedUpstream,
    Provider, ProviderContext, ProviderError, ProviderLimits, Sent,
};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::callbacks;
use crate::config::MockSettings;
use crate::devices::{InboxEntry, Inboxes};
use crate::error::MockError;

/// Largest device data a simulated device takes (JSON bytes).
const MAX_DEVICE_DATA: usize = 1024;
/// Receipts waiting to be sent, at most.
const RECEIPT_QUEUE: usize = 65_536;
/// Most receipt lines in one simulated callback.
const MAX_LINES_PER_CALLBACK: usize = 500;
/// Tries of one receipt callback the gateway fails (about a minute with the backoff).
const RECEIPT_CALLBACK_TRIES: u32 = 32;

struct PendingReceipt {
    due: Instant,
    reference: String,
    line: String,
}

/// Simulated provider and devices. See [`MockSettings`] for the knobs.
pub struct MockProvider {
    name: String,
    settings: MockSettings,
    secret: Vec<u8>,
    inboxes: std::sync::Arc<Inboxes>,
    /// Bounded: devices that acknowledge slower than sends arrive slow the sends down.
    receipts: mpsc::Sender<PendingReceipt>,
    pump: Mutex<Option<mpsc::Receiver<PendingReceipt>>>,
    context: OnceLock<ProviderContext>,
    upstream_seq: std::sync::atomic::AtomicU64,
}

impl MockProvider {
    /// Builds the provider from its settings (opening `state_dir` if set).
    pub fn new(name: &str, settings: MockSettings) -> Result<Self, MockError> {
        settings.validate()?;
        let inboxes = match &settings.state_dir {
            Some(dir) => Inboxes::persistent(dir)?,
            None => Inboxes::memory(settings.inbox_limit),
        };
        let secret = match &settings.secret {
            Some(s) => s.as_bytes().to_vec(),
            None => inboxes
                .signing_secret()
                .map_err(|reason| MockError::State {
                    path: name.to_string(),
                    reason,
                })?,
        };
        let (receipts, rx) = mpsc::channel(RECEIPT_QUEUE);
        Ok(MockProvider {
            name: name.to_string(),
            settings,
            secret,
            inboxes: std::sync::Arc::new(inboxes),
            receipts,
            pump: Mutex::new(Some(rx)),
            context: OnceLock::new(),
            upstream_seq: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// What a simulated device received, oldest first.
    pub fn inbox(&self, cid: &str) -> Result<Vec<InboxEntry>, MockError> {
        self.inboxes.inbox(cid).map_err(|reason| MockError::State {
            path: self.name.clone(),
            reason,
        })
    }

    /// Makes simulated device `cid` send an upstream message through the gateway's upstream
    /// callback path (signed, as any provider callback).
    pub async fn send_upstream(
        &self,
        cid: &str,
        payload: &str,
    ) -> Result<pushgate_api::UpstreamReport, MockError> {
        let sink = self
            .context
            .get()
            .and_then(|c| c.upstream.upgrade())
            .ok_or_else(|| MockError::State {
                path: self.name.clone(),
                reason: "the provider is not started".into(),
            })?;
        let seq = self
            .upstream_seq
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let msgid = format!("up-{:x}-{seq}", rand::thread_rng().gen::<u64>());
        let line = callbacks::sign_upstream(&self.secret, cid, &msgid, payload, now_ms());
        let request = CallbackRequest {
            headers: Default::default(),
            body: line.into_bytes(),
        };
        sink.upstream_callback(&self.name, request)
            .await
            .map_err(|e| MockError::State {
                path: self.name.clone(),
                reason: e.to_string(),
            })
    }

    /// Decides the fate of one send from the failure knobs.
    fn roll(&self, delivery: &OutboundDelivery) -> Result<bool, ProviderError> {
        let s = &self.settings;
        if delivery.cid.starts_with(&s.unknown_cid_prefix) {
            return Err(ProviderError::permanent(
                "unknown_cid",
                "target user is invalid",
            ));
        }
        if !s.gone_cid_prefix.is_empty() && delivery.cid.starts_with(&s.gone_cid_prefix) {
            return Err(ProviderError::unregistered(
                "device_gone",
                "the app is no longer on the device",
            ));
        }
        if delivery.attempt <= s.fail_first_attempts {
            return Err(ProviderError::transient(
                "mock_outage",
                format!("simulated outage (attempt {})", delivery.attempt),
            ));
        }
        let mut rng = rand::thread_rng();
        let r: f64 = rng.gen();
        if r < s.permanent_failure_rate {
            return Err(ProviderError::permanent(
                "mock_rejected",
                "simulated permanent failure",
            ));
        }
        if r < s.permanent_failure_rate + s.transient_failure_rate {
            return Err(ProviderError::transient(
                "mock_unavailable",
                "simulated transient failure",
            ));
        }
        Ok(rng.gen::<f64>() >= s.receipt_loss_rate)
    }

    /// Sends one batch of receipt lines through the gateway's receipt path, retrying a failed
    /// call for about a minute (backoff from 100 ms to 2 s), as a provider retries callbacks
    /// the gateway could not store (its database restarting). False once the gateway is gone.
    async fn deliver_receipts(
        name: &str,
        context: &ProviderContext,
        inboxes: &Inboxes,
        references: &[String],
        body: String,
    ) -> bool {
        let Some(sink) = context.receipts.upgrade() else {
            return false;
        };
        let request = CallbackRequest {
            headers: Default::default(),
            body: body.into_bytes(),
        };
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=RECEIPT_CALLBACK_TRIES {
            match sink.receipts_callback(name, request.clone()).await {
                Ok(report) if report.rejected > 0 => {
                    // Kept for the next start: the device has not been heard.
                    tracing::warn!(provider = %name, rejected = report.rejected, "the gateway refused simulated receipts; the devices keep them");
                    break;
                }
                Ok(_) => {
                    inboxes.receipts_taken(references);
                    break;
                }
                Err(e) => {
                    tracing::warn!(provider = %name, attempt, error = %e, "simulated receipt callback failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        true
    }

    /// Feeds due receipts to the gateway in batches, through the receipts callback path;
    /// first the receipts the devices still owed when the gateway last stopped.
    async fn pump_receipts(
        name: String,
        context: ProviderContext,
        mut rx: mpsc::Receiver<PendingReceipt>,
        inboxes: std::sync::Arc<Inboxes>,
    ) {
        let owed = inboxes.pending_receipts();
        for chunk in owed.chunks(MAX_LINES_PER_CALLBACK) {
            let references: Vec<String> = chunk.iter().map(|(r, _)| r.clone()).collect();
            let body: String = chunk.iter().map(|(_, line)| line.as_str()).collect();
            if !Self::deliver_receipts(&name, &context, &inboxes, &references, body).await {
                return;
            }
        }
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
            let mut references = vec![first.reference];
            let mut body = first.line;
            let now = Instant::now();
            while references.len() < MAX_LINES_PER_CALLBACK {
                match rx.try_recv() {
                    Ok(next) if next.due <= now => {
                        body.push_str(&next.line);
                        references.push(next.reference);
                    }
                    Ok(next) => {
                        carry = Some(next);
                        break;
                    }
                    Err(_) => break,
                }
            }
            if !Self::deliver_receipts(&name, &context, &inboxes, &references, body).await {
                return;
            }
        }
    }
}

#[async_trait]
impl Provider for MockProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, delivery: &OutboundDelivery) -> Result<Sent, ProviderError> {
        if self.settings.send_latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.settings.send_latency_ms)).await;
        }
        let acknowledge = self.roll(delivery)?;
        let entry = InboxEntry {
            message_id: delivery.message_id.to_string(),
            request_id: delivery.idempotency_key.clone(),
            from: delivery.from.clone(),
            payload: (*delivery.payload).clone(),
            received_at: now_ms(),
            device_data: delivery.device_data.as_deref().cloned(),
            notification: delivery.notification.as_deref().cloned(),
        };
        let reference = delivery.idempotency_key.clone();
        let receipt = acknowledge
            .then(|| callbacks::sign_line(&self.secret, &reference, &delivery.cid, now_ms()));
        // A repeated request id is dropped (as Getui does), but the device acknowledges
        // again, so a send whose receipt was lost in a gateway crash still completes.
        self.inboxes
            .receive(&delivery.cid, entry, receipt.as_deref())
            .await
            .map_err(|e| ProviderError::transient("mock_state", e))?;
        if let Some(line) = receipt {
            let due = Instant::now() + Duration::from_millis(self.settings.receipt_delay_ms);
            let pending = PendingReceipt {
                due,
                reference: reference.clone(),
                line,
            };
            if self.receipts.send(pending).await.is_err() {
                tracing::warn!(provider = %self.name, "receipt pump stopped; receipt dropped");
            }
        }
        Ok(Sent {
            provider_ref: reference,
        })
    }

    fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            concurrency: self.settings.concurrency,
            qps: self.settings.qps,
            send_timeout: Duration::from_millis(
                self.settings
                    .send_timeout_ms
                    .unwrap_or(self.settings.send_latency_ms + 10_000),
            ),
            receipt_timeout: (self.settings.receipt_timeout_ms > 0)
                .then(|| Duration::from_millis(self.settings.receipt_timeout_ms)),
        }
    }

    fn start(&self, context: ProviderContext) {
        let rx = self.pump.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rx) = rx {
            let _ = self.context.set(context.clone());
            tokio::spawn(Self::pump_receipts(
                self.name.clone(),
                context,
                rx,
                self.inboxes.clone(),
            ));
        }
    }

    /// A simulated device may carry any JSON object of up to 1 KiB as its provider data
    /// (shown in its inbox entries, so tests see what a send carried).
    fn check_device_data(
        &self,
        _cid: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, DeviceError> {
        match data {
            None => Ok(None),
            Some(v) if !v.is_object() => Err(DeviceError::Data(
                "mock device data must be a JSON object".into(),
            )),
            Some(v) if v.to_string().len() > MAX_DEVICE_DATA => Err(DeviceError::Data(format!(
                "mock device data is at most {MAX_DEVICE_DATA} bytes of JSON"
            ))),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    fn parse_receipts(&self, request: &CallbackRequest) -> Result<ParsedReceipts, CallbackError> {
        Ok(callbacks::parse(&self.secret, &request.body))
    }

    fn parse_upstream(&self, request: &CallbackRequest) -> Result<ParsedUpstream, CallbackError> {
        Ok(callbacks::parse_upstream(&self.secret, &request.body))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
