//! The Getui `Provider`: transmission pushes by cid (batched when several wait), alias
//! delegation, remote alias resolution with a short cache, receipt verification.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pushgate_api::model::Notification;
use pushgate_api::provider::{
    CallbackError, CallbackRefusal, CallbackRequest, OutboundDelivery, ParsedReceipts,
    ParsedUpstream, PayloadError, Provider, ProviderError, ProviderLimits, Sent,
};
use tokio::sync::{mpsc, oneshot};

use crate::callbacks;
use crate::client::GetuiClient;
use crate::config::GetuiSettings;
use crate::error::GetuiError;
use crate::wire::{Audience, PushMessage, PushRequest, PushResult, Settings};

/// Getui's limit on a transmission payload.
pub const MAX_TRANSMISSION_CHARS: usize = 3072;
/// Getui's longest offline TTL: 3 days.
const MAX_TTL_MS: u128 = 3 * 24 * 3600 * 1000;
/// The per-cid status of a push to a device inactive for 90 days: not sent.
const IGNORED: &str = "successed_ignore";

struct Job {
    push: PushRequest,
    cid: String,
    reply: oneshot::Sender<Result<Sent, ProviderError>>,
}

type AliasCache = Mutex<HashMap<(String, String), (Instant, Vec<String>)>>;

/// A Getui app as a pushgate provider.
pub struct GetuiProvider {
    name: String,
    settings: GetuiSettings,
    client: Arc<GetuiClient>,
    jobs: Option<mpsc::UnboundedSender<Job>>,
    alias_cache: AliasCache,
}

impl GetuiProvider {
    /// Builds the provider; with batching on, starts its batcher (needs a Tokio runtime).
    pub fn new(name: &str, settings: GetuiSettings) -> Result<Self, GetuiError> {
        settings.validate()?;
        let client = Arc::new(GetuiClient::new(
            settings.clone(),
            pushgate_api::http_client::build(settings.concurrency),
        ));
        let jobs = (settings.max_batch > 1).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_batcher(client.clone(), rx, settings.max_batch));
            tx
        });
        Ok(GetuiProvider {
            name: name.to_string(),
            settings,
            client,
            jobs,
            alias_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The REST client (for tests and tools).
    pub fn client(&self) -> &GetuiClient {
        &self.client
    }

    fn forget_alias(&self, app: &str, alias: &str) {
        self.alias_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(app.to_string(), alias.to_string()));
    }
}

/// The transmission text: a JSON string payload as is, anything else as JSON text.
pub fn transmission(payload: &serde_json::Value) -> String {
    match payload {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Getui's limits on a notification (`GTNotification`).
pub const MAX_NOTIFICATION_TITLE: usize = 50;
pub const MAX_NOTIFICATION_BODY: usize = 256;

/// The vendor channels' offline path for a message with a notification: Android vendors
/// (Huawei, Xiaomi, OPPO, vivo…) show `android.ups.notification` when the app is not running,
/// iOS shows the APNs alert; the pass-through text still goes to the app as the `ios` payload.
pub fn push_channel(notification: &Notification, text: &str) -> serde_json::Value {
    serde_json::json!({
        "android": {"ups": {"notification": {
            "title": notification.title,
            "body": notification.body,
            "click_type": "startapp",
        }}},
        "ios": {
            "type": "notify",
            "aps": {"alert": {"title": notification.title, "body": notification.body}, "content-available": 0},
            "auto_badge": "+1",
            "payload": text,
        },
    })
}

/// The PushDTO for one delivery; `strategy` is the provider's `settings.strategy`.
pub fn push_request(
    delivery: &OutboundDelivery,
    strategy: &BTreeMap<String, i64>,
) -> Result<PushRequest, ProviderError> {
    let text = transmission(&delivery.payload);
    let chars = text.chars().count();
    if chars > MAX_TRANSMISSION_CHARS {
        return Err(ProviderError::permanent(
            "payload_too_large",
            format!("the payload is {chars} characters; Getui transmissions take at most {MAX_TRANSMISSION_CHARS}"),
        ));
    }
    let ttl = delivery.ttl.as_millis().clamp(1, MAX_TTL_MS) as i64;
    Ok(PushRequest {
        request_id: delivery.idempotency_key.clone(),
        push_message: PushMessage {
            transmission: Some(text),
            ..PushMessage::default()
        },
        settings: Some(Settings {
            ttl: Some(ttl),
            strategy: (!strategy.is_empty()).then(|| strategy.clone()),
        }),
        push_channel: delivery
            .notification
            .as_deref()
            .map(|n| push_channel(n, &transmission(&delivery.payload))),
        audience: Audience {
            cid: Some(vec![delivery.cid.clone()]),
            alias: None,
        },
    })
}

/// The outcome for `cid` in a push answer, if the answer names it.
fn status_of(result: &PushResult, cid: &str) -> Option<Result<Sent, ProviderError>> {
    let (taskid, status) = result
        .iter()
        .find_map(|(taskid, statuses)| Some((taskid, statuses.get(cid)?)))?;
    Some(if status == IGNORED {
        Err(ProviderError::permanent(
            IGNORED,
            "device inactive for 90 days; Getui did not send",
        ))
    } else {
        Ok(Sent {
            provider_ref: taskid.clone(),
        })
    })
}

/// The outcome for `cid` in the answer to a push of that delivery alone. Getui drops a push
/// that repeats a request_id (a retry after a crash, a timeout or a receipt timeout) and
/// answers it with the first push's task id and no per-cid status: that delivery was sent,
/// under that task id, so its receipts still map back.
fn single_outcome(result: &PushResult, cid: &str) -> Result<Sent, ProviderError> {
    if let Some(outcome) = status_of(result, cid) {
        return outcome;
    }
    match result.iter().next() {
        Some((taskid, statuses)) if result.len() == 1 && statuses.is_empty() => Ok(Sent {
            provider_ref: taskid.clone(),
        }),
        _ => Err(ProviderError::transient(
            "missing_result",
            "getui's answer has no status for this cid",
        )),
    }
}

/// Gathers the sends waiting at the same moment into batch pushes (never two for the same
/// cid in one batch, so each answer maps back unambiguously).
async fn run_batcher(client: Arc<GetuiClient>, mut rx: mpsc::UnboundedReceiver<Job>, max: usize) {
    let mut carry: Vec<Job> = Vec::new();
    loop {
        if carry.is_empty() {
            match rx.recv().await {
                Some(job) => carry.push(job),
                None => return,
            }
        }
        while carry.len() < max * 2 {
            match rx.try_recv() {
                Ok(job) => carry.push(job),
                Err(_) => break,
            }
        }
        let mut batch = Vec::new();
        let mut cids = HashSet::new();
        let mut rest = Vec::new();
        for job in carry.drain(..) {
            if batch.len() < max && cids.insert(job.cid.clone()) {
                batch.push(job);
            } else {
                rest.push(job);
            }
        }
        carry = rest;
        tokio::spawn(push_jobs(client.clone(), batch));
    }
}

/// Pushes each job alone (`/push/single/cid`).
async fn push_each(client: &GetuiClient, jobs: Vec<Job>) {
    for job in jobs {
        let result = client
            .push_single(&job.push)
            .await
            .and_then(|r| single_outcome(&r, &job.cid));
        let _ = job.reply.send(result);
    }
}

async fn push_jobs(client: Arc<GetuiClient>, jobs: Vec<Job>) {
    if jobs.len() == 1 {
        return push_each(&client, jobs).await;
    }
    let pushes = jobs.iter().map(|j| j.push.clone()).collect();
    match client.push_batch(pushes).await {
        Ok(result) => {
            // A repeated request_id has no per-cid status in a batch answer, so it cannot be
            // told from the others: push those alone (Getui drops them again and names the
            // task of each).
            let mut unmatched = Vec::new();
            for job in jobs {
                match status_of(&result, &job.cid) {
                    Some(outcome) => {
                        let _ = job.reply.send(outcome);
                    }
                    None => unmatched.push(job),
                }
            }
            push_each(&client, unmatched).await;
        }
        Err(e) if !e.is_transient() => {
            // A parameter error fails the whole batch: send each alone so only the bad one fails.
            push_each(&client, jobs).await;
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

#[async_trait]
impl Provider for GetuiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, delivery: &OutboundDelivery) -> Result<Sent, ProviderError> {
        let push = push_request(delivery, &self.settings.strategy)?;
        let Some(jobs) = &self.jobs else {
            let result = self.client.push_single(&push).await?;
            return single_outcome(&result, &delivery.cid);
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            push,
            cid: delivery.cid.clone(),
            reply,
        };
        if jobs.send(job).is_err() {
            return Err(ProviderError::transient(
                "stopped",
                "the getui batcher stopped",
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ProviderError::transient(
                "stopped",
                "the getui batcher dropped the send",
            ))
        })
    }

    fn check_payload(&self, payload: &serde_json::Value) -> Result<(), PayloadError> {
        let chars = transmission(payload).chars().count();
        if chars > MAX_TRANSMISSION_CHARS {
            return Err(PayloadError::TooLarge(format!(
                "the payload is {chars} characters; Getui transmissions take at most {MAX_TRANSMISSION_CHARS}"
            )));
        }
        Ok(())
    }

    /// The vendor channels need a title and a body, within Getui's lengths.
    fn check_notification(
        &self,
        _payload: &serde_json::Value,
        notification: &Notification,
    ) -> Result<(), PayloadError> {
        let (t, b) = (
            notification.title.chars().count(),
            notification.body.chars().count(),
        );
        if t == 0 || b == 0 {
            return Err(PayloadError::Refused(
                "Getui's vendor channels need both notification.title and notification.body".into(),
            ));
        }
        if t > MAX_NOTIFICATION_TITLE || b > MAX_NOTIFICATION_BODY {
            return Err(PayloadError::TooLarge(format!(
                "Getui notifications take a title of at most {MAX_NOTIFICATION_TITLE} and a body of at most {MAX_NOTIFICATION_BODY} characters, got {t} and {b}"
            )));
        }
        Ok(())
    }

    fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            concurrency: self.settings.concurrency,
            qps: self.settings.qps,
            // Two calls at most (a token refresh, then the push), plus slack.
            send_timeout: Duration::from_millis(self.settings.timeout_ms * 2 + 1000),
            receipt_timeout: (self.settings.receipt_timeout_ms > 0)
                .then(|| Duration::from_millis(self.settings.receipt_timeout_ms)),
        }
    }

    /// Getui takes any HTTP answer to a receipt callback as received and tries again (3
    /// times) only when none comes: a receipt that cannot be stored gets no answer.
    fn callback_refusal(&self) -> CallbackRefusal {
        CallbackRefusal::CloseConnection
    }

    fn parse_receipts(&self, request: &CallbackRequest) -> Result<ParsedReceipts, CallbackError> {
        Ok(callbacks::parse_receipts(
            &self.settings.app_id,
            &self.settings.master_secret,
            &request.body,
        ))
    }

    fn parse_upstream(&self, request: &CallbackRequest) -> Result<ParsedUpstream, CallbackError> {
        Ok(callbacks::parse_upstream(
            &self.settings.app_id,
            &self.settings.master_secret,
            &request.body,
        ))
    }

    async fn resolve_alias(&self, app: &str, alias: &str) -> Result<Vec<String>, ProviderError> {
        if !self.settings.remote_aliases {
            return Ok(Vec::new());
        }
        let key = (app.to_string(), alias.to_string());
        let ttl = Duration::from_millis(self.settings.remote_alias_cache_ms);
        if let Some((at, cids)) = self
            .alias_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if at.elapsed() < ttl {
                return Ok(cids.clone());
            }
        }
        let cids = self.client.cids_of_alias(alias).await?;
        self.alias_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now(), cids.clone()));
        Ok(cids)
    }

    fn mirrors_aliases(&self) -> bool {
        self.settings.delegate_aliases
    }

    async fn alias_bound(&self, app: &str, alias: &str, cid: &str) -> Result<(), ProviderError> {
        self.forget_alias(app, alias);
        if self.settings.delegate_aliases {
            self.client.bind_alias(cid, alias).await?;
        }
        Ok(())
    }

    async fn alias_unbound(&self, app: &str, alias: &str, cid: &str) -> Result<(), ProviderError> {
        self.forget_alias(app, alias);
        if self.settings.delegate_aliases {
            self.client.unbind_alias(cid, alias).await?;
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_api::model::{DeliveryId, MessageId};

    fn delivery(payload: serde_json::Value) -> OutboundDelivery {
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 0,
        };
        OutboundDelivery {
            delivery_id: id,
            message_id: id.message,
            app: "demo".into(),
            cid: "cid-1".into(),
            from: None,
            payload: Arc::new(payload),
            ttl: Duration::from_secs(3600),
            attempt: 1,
            device_data: None,
            urgency: None,
            collapse_key: None,
            notification: None,
            idempotency_key: id.to_string(),
        }
    }

    #[test]
    fn push_requests_match_the_official_client_shape() {
        let d = delivery(serde_json::json!({"k": "v", "text": "hello alice"}));
        let push = push_request(&d, &BTreeMap::new()).expect("push");
        let json = serde_json::to_value(&push).expect("json");
        assert_eq!(
            json["push_message"]["transmission"],
            "{\"k\":\"v\",\"text\":\"hello alice\"}"
        );
        assert_eq!(json["settings"]["ttl"], 3_600_000);
        assert_eq!(json["audience"], serde_json::json!({"cid": ["cid-1"]}));
        let len = json["request_id"].as_str().map(str::len).unwrap_or(0);
        assert!((10..=32).contains(&len), "request_id has {len} characters");
        let keys: Vec<&String> = json.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn oversized_payloads_fail_permanently() {
        let none = BTreeMap::new();
        let e = push_request(&delivery(serde_json::json!("x".repeat(3073))), &none)
            .expect_err("too big");
        assert_eq!(e.code, "payload_too_large");
        assert!(!e.is_transient());
        assert!(push_request(&delivery(serde_json::json!("x".repeat(3072))), &none).is_ok());
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let mut result = PushResult::new();
        result.insert(
            "t1".into(),
            [("c1".to_string(), "successed_online".to_string())].into(),
        );
        result.insert(
            "t2".into(),
            [("c2".to_string(), "successed_ignore".to_string())].into(),
        );
        assert_eq!(
            single_outcome(&result, "c1").map(|s| s.provider_ref),
            Ok("t1".into())
        );
        assert!(!single_outcome(&result, "c2")
            .expect_err("ignored")
            .is_transient());
        assert!(single_outcome(&result, "c3")
            .expect_err("missing")
            .is_transient());
    }

    #[test]
    fn a_dropped_repeat_is_sent_under_the_first_task() {
        let mut repeat = PushResult::new();
        repeat.insert("RASS_first".into(), Default::default());
        assert_eq!(
            single_outcome(&repeat, "c1").map(|s| s.provider_ref),
            Ok("RASS_first".into())
        );
        assert_eq!(status_of(&repeat, "c1"), None, "unmatched in a batch");
        repeat.insert("RASS_other".into(), Default::default());
        assert!(single_outcome(&repeat, "c1").is_err(), "ambiguous");
    }
}
