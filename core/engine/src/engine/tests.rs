//! Engine unit tests: the engine over the in-memory store and a provider that counts its
//! sends; no workers run, each step is driven by hand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{AppSettings, Engine, EngineSettings, NewMessage, ReceiptReport};
use crate::model::{
    DeliveryId, DeliveryRecord, DeliveryState, DeviceRef, Receipt, ReceiptStatus, Target,
};
use crate::provider::{OutboundDelivery, Provider, ProviderError, ProviderLimits, Sent};
use crate::store::Store;

/// A provider that counts its sends and answers each with the next scripted outcome (a
/// success once the script is used up).
struct Counting {
    sends: AtomicUsize,
    receipt_timeout: Option<Duration>,
    script: std::sync::Mutex<std::collections::VecDeque<ProviderError>>,
    /// Devices acknowledge themselves (the provider's own reference still differs).
    device_acks: bool,
    /// The provider's rate cap (`ProviderLimits::qps`).
    qps: Option<u32>,
}

#[async_trait]
impl Provider for Counting {
    fn name(&self) -> &str {
        "p"
    }
    async fn send(&self, delivery: &OutboundDelivery) -> Result<Sent, ProviderError> {
        self.sends.fetch_add(1, Ordering::SeqCst);
        let scripted = self
            .script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        if let Some(error) = scripted {
            return Err(error);
        }
        Ok(Sent {
            provider_ref: format!("ref-{}", delivery.idempotency_key),
        })
    }
    fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            receipt_timeout: self.receipt_timeout,
            qps: self.qps,
            ..ProviderLimits::default()
        }
    }
    fn device_acks(&self) -> bool {
        self.device_acks
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct Fixture {
    engine: Arc<Engine>,
    provider: Arc<Counting>,
}

fn fixture(receipt_timeout: Option<Duration>) -> Fixture {
    fixture_with(receipt_timeout, Vec::new(), EngineSettings::default())
}

fn fixture_with(
    receipt_timeout: Option<Duration>,
    script: Vec<ProviderError>,
    settings: EngineSettings,
) -> Fixture {
    fixture_of(
        Counting {
            sends: AtomicUsize::new(0),
            receipt_timeout,
            script: std::sync::Mutex::new(script.into()),
            device_acks: false,
            qps: None,
        },
        settings,
    )
}

fn fixture_of(provider: Counting, settings: EngineSettings) -> Fixture {
    fixture_on(
        Arc::new(pushgate_store_kv::memory_store()),
        provider,
        settings,
    )
}

/// An engine on `store` with one app and `provider`.
fn fixture_on(store: Arc<dyn Store>, provider: Counting, settings: EngineSettings) -> Fixture {
    let provider = Arc::new(provider);
    let app = AppSettings {
        id: "app".into(),
        default_provider: "p".into(),
        max_devices_per_alias: 10,
        webhooks: false,
        max_backlog: 0,
    };
    let engine = Engine::new(
        store,
        vec![provider.clone() as Arc<dyn Provider>],
        vec![app],
        settings,
        None,
    );
    Fixture { engine, provider }
}

impl Fixture {
    /// The delivery record as stored.
    async fn delivery(&self, id: DeliveryId) -> DeliveryRecord {
        self.engine
            .store()
            .delivery(id)
            .await
            .expect("read")
            .expect("delivery")
    }

    /// Applies the device's `delivered` receipt for `id`.
    async fn receipt(&self, id: DeliveryId) -> ReceiptReport {
        self.receipt_from(id, "c1").await
    }

    /// Applies a `delivered` receipt for `id` that names device `cid`.
    async fn receipt_from(&self, id: DeliveryId, cid: &str) -> ReceiptReport {
        let receipt = Receipt {
            provider_ref: format!("ref-{id}"),
            cid: cid.into(),
            status: ReceiptStatus::Delivered,
            at: None,
        };
        self.engine
            .apply_receipts("p", vec![receipt])
            .await
            .expect("receipt")
    }
}

/// Accepts a message to device `c1`; returns its delivery and the outbox time it is due at.
async fn accept_one(f: &Fixture) -> (DeliveryId, u64) {
    accept_with_ttl(f, None).await
}

async fn accept_with_ttl(f: &Fixture, ttl: Option<Duration>) -> (DeliveryId, u64) {
    let to = Target::Device(DeviceRef {
        provider: "p".into(),
        cid: "c1".into(),
    });
    let accepted = f
        .engine
        .accept(
            "app",
            NewMessage {
                to,
                payload: serde_json::json!({"text": "hi"}),
                from: None,
                request_id: None,
                ttl,
                notify_sender: false,
                provider: None,
                urgency: None,
                collapse_key: None,
                notification: None,
                device_data: None,
            },
        )
        .await
        .expect("accept");
    let id = DeliveryId {
        message: accepted.message_id,
        index: 0,
    };
    let due = f
        .engine
        .store()
        .delivery(id)
        .await
        .expect("read")
        .and_then(|d| d.next_attempt_at)
        .expect("scheduled");
    (id, due)
}

#[tokio::test]
async fn an_outbox_entry_a_finished_send_took_is_not_sent_again() {
    let f = fixture(None);
    let (id, due) = accept_one(&f).await;
    assert_eq!(f.engine.deliver(due, id).await.expect("send"), Some(true));
    // A scan that read the entry before that send removed it hands it over again.
    assert_eq!(f.engine.deliver(due, id).await.expect("stale"), None);
    assert_eq!(f.provider.sends.load(Ordering::SeqCst), 1);
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Sent);
    assert_eq!(
        d.next_attempt_at, None,
        "no receipt timeout: nothing scheduled"
    );
}

#[tokio::test]
async fn a_sent_delivery_without_its_receipt_is_sent_again_then_settles() {
    let f = fixture(Some(Duration::from_millis(50)));
    let (id, due) = accept_one(&f).await;
    f.engine.deliver(due, id).await.expect("send");
    let d = f.delivery(id).await;
    let retry_at = d.next_attempt_at.expect("receipt timeout scheduled");
    assert!(retry_at >= d.updated_at + 50);
    // Due: sent again, same idempotency key, recorded as a receipt timeout.
    assert_eq!(
        f.engine.deliver(retry_at, id).await.expect("resend"),
        Some(true)
    );
    assert_eq!(f.provider.sends.load(Ordering::SeqCst), 2);
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Sent);
    assert_eq!(d.attempts, 2);
    assert!(d
        .history
        .iter()
        .any(|t| t.reason.as_deref() == Some(crate::model::RECEIPT_TIMEOUT)));
    // The receipt settles it and takes the next timeout out of the outbox.
    let report = f.receipt(id).await;
    assert_eq!(report.applied, 1);
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(f.engine.store().next_due("p").await.expect("next"), None);
}

#[tokio::test]
async fn a_receipt_before_the_send_is_recorded_settles_it_once_recorded() {
    let f = fixture(Some(Duration::from_secs(60)));
    let (id, due) = accept_one(&f).await;
    let report = f.receipt(id).await;
    assert_eq!(report.early, 1, "kept until the send is recorded");
    f.engine.deliver(due, id).await.expect("send");
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.next_attempt_at, None, "no receipt timeout left behind");
    assert_eq!(
        f.engine
            .store()
            .early_receipt("p", &format!("ref-{id}"))
            .await
            .expect("read"),
        None
    );
}

/// A provider whose devices acknowledge themselves (references are delivery ids), with a
/// one-minute receipt timeout.
fn device_ack_fixture() -> Fixture {
    fixture_of(
        Counting {
            sends: AtomicUsize::new(0),
            receipt_timeout: Some(Duration::from_secs(60)),
            script: Default::default(),
            device_acks: true,
            qps: None,
        },
        EngineSettings::default(),
    )
}

#[tokio::test]
async fn a_device_ack_before_the_send_is_recorded_settles_it_whatever_the_provider_calls_it() {
    let f = device_ack_fixture();
    let (id, due) = accept_one(&f).await;
    // The device acks before the provider's answer is recorded (FCM's devices can).
    let token = f.engine.settings.acks.token(id);
    assert_eq!(
        f.engine.apply_device_ack(&token).await.expect("ack"),
        super::AckOutcome::Applied,
        "kept, and answered as taken"
    );
    f.engine.deliver(due, id).await.expect("send");
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Delivered, "{d:?}");
    assert_eq!(d.provider_ref.as_deref(), Some(id.to_string().as_str()));
    // An ack after the send settles as well, and a repeat is a duplicate.
    let (late, due) = accept_one(&f).await;
    f.engine.deliver(due, late).await.expect("send");
    let token = f.engine.settings.acks.token(late);
    assert_eq!(
        f.engine.apply_device_ack(&token).await.expect("ack"),
        super::AckOutcome::Applied
    );
    assert_eq!(f.delivery(late).await.state, DeliveryState::Delivered);
    assert_eq!(
        f.engine.apply_device_ack(&token).await.expect("again"),
        super::AckOutcome::Duplicate
    );
}

/// Receipts naming deliveries by their id (the mock, device-ack providers): no reference
/// index, yet early, late, forged and repeated receipts come out as with one.
#[tokio::test]
async fn receipts_by_delivery_id_need_no_reference_index() {
    let f = device_ack_fixture();
    let by_id = |id: DeliveryId, cid: &str| Receipt {
        provider_ref: id.to_string(),
        cid: cid.into(),
        status: ReceiptStatus::Delivered,
        at: None,
    };
    let (early, due) = accept_one(&f).await;
    let report = f
        .engine
        .apply_receipts("p", vec![by_id(early, "c1")])
        .await
        .expect("receipt");
    assert_eq!(report.early, 1, "kept until the send is recorded");
    f.engine.deliver(due, early).await.expect("send");
    assert_eq!(f.delivery(early).await.state, DeliveryState::Delivered);

    let (late, due) = accept_one(&f).await;
    f.engine.deliver(due, late).await.expect("send");
    let store = f.engine.store();
    let reference = late.to_string();
    assert_eq!(
        store
            .delivery_by_reference("p", &reference)
            .await
            .expect("read"),
        None,
        "no index entry for a reference that is the delivery id"
    );
    let forged = f
        .engine
        .apply_receipts("p", vec![by_id(late, "another-device")])
        .await
        .expect("forged");
    assert_eq!(
        forged.rejected, 1,
        "a receipt naming another device is refused"
    );
    let applied = f
        .engine
        .apply_receipts("p", vec![by_id(late, "c1"), by_id(late, "c1")])
        .await
        .expect("receipts");
    assert_eq!((applied.applied, applied.duplicates), (1, 1));
    assert_eq!(f.delivery(late).await.state, DeliveryState::Delivered);
    assert_eq!(
        store.early_receipt("p", &reference).await.expect("read"),
        None,
        "nothing kept"
    );
}

/// New work wakes the provider's dispatcher; work due after its longest sleep (a receipt
/// timeout a minute ahead) does not: the dispatcher finds it on a later look.
#[tokio::test]
async fn only_work_due_before_the_idle_wait_wakes_the_dispatcher() {
    let f = fixture(Some(Duration::from_secs(60)));
    let waker = f.engine.provider_waker("p").expect("waker");
    let woken = |w: Arc<tokio::sync::Notify>| async move {
        tokio::time::timeout(Duration::from_millis(50), w.notified())
            .await
            .is_ok()
    };
    let (id, due) = accept_one(&f).await;
    assert!(woken(waker.clone()).await, "a new delivery wakes it");
    f.engine.deliver(due, id).await.expect("send");
    assert_eq!(f.delivery(id).await.state, DeliveryState::Sent);
    assert!(
        !woken(waker.clone()).await,
        "its receipt timeout a minute ahead does not"
    );
}

/// A delivery whose claim a dead node held is sent soon after the claim's lease runs out,
/// though it sits behind the dispatcher's scan cursor and a paced backlog fills every scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_claim_is_sent_soon_after_its_lease_though_a_backlog_fills_every_scan() {
    let f = fixture_of(
        Counting {
            sends: AtomicUsize::new(0),
            receipt_timeout: None,
            script: Default::default(),
            device_acks: false,
            qps: Some(50),
        },
        EngineSettings::default(),
    );
    let (first, _) = accept_one(&f).await;
    let now = crate::clock::now_ms();
    let dead_node = crate::store::Lease {
        owner: Arc::from("dead-node"),
        until: now + 300,
    };
    let claimed = f
        .engine
        .store()
        .claim_due("p", 0, now, 1, &dead_node)
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        vec![first]
    );
    const BACKLOG: usize = 150; // three seconds at 50 a second
    for _ in 0..BACKLOG {
        accept_one(&f).await;
    }
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(crate::dispatcher::run_provider(
        f.engine.clone(),
        f.provider.clone() as Arc<dyn Provider>,
        shutdown,
    ));
    let sends_before_first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let sends = f.provider.sends.load(Ordering::SeqCst);
            if f.delivery(first).await.state != DeliveryState::Queued {
                return sends;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first delivery is sent");
    let _ = stop.send(true);
    let _ = dispatcher.await;
    // Its lease ends after ~15 sends; a scan from the start comes within a second (~50 more).
    assert!(
        sends_before_first < 100,
        "sent after {sends_before_first} of the backlog's {BACKLOG}: the dispatcher's scans \
         did not come back to it"
    );
}

fn settings(max_attempts: u32) -> EngineSettings {
    let mut settings = EngineSettings::default();
    settings.retry.base = Duration::from_millis(100);
    settings.retry.max_delay = Duration::from_millis(400);
    settings.retry.max_attempts = max_attempts;
    settings
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_until_the_attempts_run_out() {
    let outage = || ProviderError::transient("down", "provider down");
    let f = fixture_with(None, vec![outage(), outage(), outage()], settings(3));
    let (id, mut due) = accept_one(&f).await;
    let mut delays = Vec::new();
    for attempt in 1..=2 {
        assert_eq!(f.engine.deliver(due, id).await.expect("send"), Some(false));
        let d = f.delivery(id).await;
        assert_eq!(d.state, DeliveryState::RetryWait, "attempt {attempt}");
        assert_eq!(d.attempts, attempt);
        assert_eq!(d.error.as_ref().map(|e| e.code.as_str()), Some("down"));
        let next = d.next_attempt_at.expect("rescheduled");
        delays.push(next.saturating_sub(d.updated_at));
        due = next;
    }
    // Base 100 ms doubling, "equal jitter": between half the step and the whole of it.
    assert!((50..=100).contains(&delays[0]), "{delays:?}");
    assert!((100..=200).contains(&delays[1]), "{delays:?}");
    // The third failure is the last attempt: failed with the provider's code.
    f.engine.deliver(due, id).await.expect("send");
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.attempts, 3);
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(f.engine.store().next_due("p").await.expect("next"), None);
    assert_eq!(f.engine.store().outbox_depth("p").await.expect("depth"), 0);
}

#[tokio::test]
async fn a_retry_hint_is_honoured_and_a_permanent_error_fails_at_once() {
    let hinted =
        ProviderError::transient("slow_down", "rate limited").retry_after(Duration::from_secs(30));
    let refused = ProviderError::permanent("unknown_cid", "no such device");
    let f = fixture_with(None, vec![hinted, refused], settings(5));
    let (id, due) = accept_one(&f).await;
    f.engine.deliver(due, id).await.expect("send");
    let d = f.delivery(id).await;
    let next = d.next_attempt_at.expect("rescheduled");
    assert!(next >= d.updated_at + 30_000, "no sooner than Retry-After");
    f.engine.deliver(next, id).await.expect("send");
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.error.map(|e| e.code), Some("unknown_cid".to_string()));
}

#[tokio::test]
async fn a_delivery_past_its_ttl_expires_instead_of_being_sent() {
    let f = fixture(None);
    let (id, due) = accept_with_ttl(&f, Some(Duration::from_millis(1))).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(f.engine.deliver(due, id).await.expect("send"), None);
    assert_eq!(f.provider.sends.load(Ordering::SeqCst), 0);
    assert_eq!(f.delivery(id).await.state, DeliveryState::Expired);
    // The TTL sweep finds nothing left to do; a receipt now is a duplicate.
    let report = f.receipt(id).await;
    assert_eq!(report.early + report.duplicates, 1);
}

#[tokio::test]
async fn repeated_and_mismatched_receipts_change_nothing() {
    let f = fixture(None);
    let (id, due) = accept_one(&f).await;
    f.engine.deliver(due, id).await.expect("send");
    let forged = f.receipt_from(id, "another-device").await;
    assert_eq!(
        forged.rejected, 1,
        "a receipt naming another device is refused"
    );
    assert_eq!(f.delivery(id).await.state, DeliveryState::Sent);
    assert_eq!(f.receipt(id).await.applied, 1);
    let delivered = f.delivery(id).await;
    assert_eq!(f.receipt(id).await.duplicates, 1);
    assert_eq!(f.delivery(id).await, delivered, "a repeat changes nothing");
}

#[tokio::test]
async fn receipt_timeouts_stop_at_the_last_attempt() {
    let f = fixture_with(Some(Duration::from_millis(10)), Vec::new(), settings(2));
    let (id, due) = accept_one(&f).await;
    f.engine.deliver(due, id).await.expect("send");
    let again = f
        .delivery(id)
        .await
        .next_attempt_at
        .expect("timeout scheduled");
    f.engine.deliver(again, id).await.expect("resend");
    let d = f.delivery(id).await;
    assert_eq!((d.state, d.attempts), (DeliveryState::Sent, 2));
    assert_eq!(
        d.next_attempt_at, None,
        "no attempt left: it waits for its receipt or TTL"
    );
    assert_eq!(f.provider.sends.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_request_id_create_one_message() {
    let f = fixture(None);
    let message = || NewMessage {
        to: Target::Device(DeviceRef {
            provider: "p".into(),
            cid: "c1".into(),
        }),
        payload: serde_json::json!({"n": 1}),
        from: None,
        request_id: Some("order-42".into()),
        ttl: None,
        notify_sender: false,
        provider: None,
        urgency: None,
        collapse_key: None,
        notification: None,
        device_data: None,
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let engine = f.engine.clone();
        let msg = message();
        tasks.push(tokio::spawn(async move { engine.accept("app", msg).await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task").expect("accept"));
    }
    assert_eq!(
        answers.iter().filter(|a| a.created).count(),
        1,
        "{answers:?}"
    );
    assert!(answers
        .iter()
        .all(|a| a.message_id == answers[0].message_id));
    assert_eq!(
        f.engine.store().outbox_depth("p").await.expect("depth"),
        1,
        "one delivery queued"
    );
    let mut other = message();
    other.payload = serde_json::json!({"n": 2});
    let conflict = f.engine.accept("app", other).await.expect_err("conflict");
    assert_eq!(conflict.code(), "idempotency_conflict");
}

/// The in-memory engine, whose next write can be made to fail (a database gone mid-step).
#[derive(Default)]
struct FlakyKv {
    inner: pushgate_store_kv::memory::MemoryKv,
    fail_next_write: std::sync::atomic::AtomicBool,
    /// Written just before the next write (another path's write racing it); then the next
    /// read of an early receipt fails.
    before_next_write: std::sync::Mutex<Option<Vec<pushgate_store_kv::Write1>>>,
    fail_next_early_read: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl pushgate_store_kv::Kv for FlakyKv {
    type Bytes = Arc<[u8]>;
    type Iter<'a> = pushgate_store_kv::memory::MemoryIter<'a>;

    fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, crate::error::StoreError> {
        if key.first() == Some(&pushgate_store_kv::keys::EARLY_RECEIPT)
            && self.fail_next_early_read.swap(false, Ordering::SeqCst)
        {
            return Err(crate::error::StoreError::Backend(
                "connection lost (test)".into(),
            ));
        }
        self.inner.get(key)
    }
    fn range(&self, start: Vec<u8>, end: Option<Vec<u8>>) -> Self::Iter<'_> {
        self.inner.range(start, end)
    }
    fn write(&self, batch: Vec<pushgate_store_kv::Write1>) -> Result<(), crate::error::StoreError> {
        if self.fail_next_write.swap(false, Ordering::SeqCst) {
            return Err(crate::error::StoreError::Backend(
                "connection lost (test)".into(),
            ));
        }
        let racing = self
            .before_next_write
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(racing) = racing {
            self.inner.write(racing)?;
            self.fail_next_early_read.store(true, Ordering::SeqCst);
        }
        self.inner.write(batch)
    }
    async fn commit(&self) -> Result<(), crate::error::StoreError> {
        self.inner.commit().await
    }
}

/// An engine on a [`FlakyKv`] store, with a provider that has a 60 s receipt timeout.
fn flaky_fixture() -> (Arc<pushgate_store_kv::KvStore<FlakyKv>>, Fixture) {
    let store = Arc::new(pushgate_store_kv::KvStore::new(FlakyKv::default()).expect("store"));
    let f = fixture_on(
        store.clone(),
        Counting {
            sends: AtomicUsize::new(0),
            receipt_timeout: Some(Duration::from_secs(60)),
            script: Default::default(),
            device_acks: false,
            qps: None,
        },
        EngineSettings::default(),
    );
    (store, f)
}

#[tokio::test]
async fn a_send_whose_record_failed_is_settled_by_the_receipt_kept_meanwhile() {
    let (store, f) = flaky_fixture();
    let (id, due) = accept_one(&f).await;
    // The device's receipt came before the send was recorded: kept.
    assert_eq!(f.receipt(id).await.early, 1);
    // The provider takes the send, but recording it fails (the database went away).
    store.kv().fail_next_write.store(true, Ordering::SeqCst);
    assert!(f.engine.deliver(due, id).await.is_err());
    assert_eq!(f.provider.sends.load(Ordering::SeqCst), 1);
    // The kept receipt settles it as soon as the store answers: no resend, no receipt timeout.
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Delivered, "{d:?}");
    assert_eq!(d.next_attempt_at, None);
}

#[tokio::test]
async fn a_receipt_kept_while_the_send_was_recorded_settles_it_though_the_next_look_fails() {
    let (store, f) = flaky_fixture();
    let (id, due) = accept_one(&f).await;
    // The receipt path keeps the device's receipt while the send's record is being written
    // (after the send looked for one), and the look after the record fails (the database
    // going away): the delivery must not wait for its receipt timeout.
    let receipt = Receipt {
        provider_ref: format!("ref-{id}"),
        cid: "c1".into(),
        status: ReceiptStatus::Delivered,
        at: None,
    };
    *store.kv().before_next_write.lock().expect("lock") = Some(vec![(
        pushgate_store_kv::keys::early_receipt("p", &receipt.provider_ref),
        Some(serde_json::to_vec(&receipt).expect("json")),
    )]);
    assert!(f.engine.deliver(due, id).await.is_err(), "the look failed");
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Delivered, "{d:?}");
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(f.provider.sends.load(Ordering::SeqCst), 1);
}
