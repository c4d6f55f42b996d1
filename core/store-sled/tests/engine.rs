//! The engine's send path against the sled store in a temp dir and a provider that counts
//! its sends (no workers run; each step is driven by hand).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use pushgate_engine::engine::{AppSettings, Engine, EngineSettings, NewMessage, ReceiptReport};
use pushgate_engine::model::{
    DeliveryId, DeliveryRecord, DeliveryState, DeviceRef, Receipt, ReceiptStatus, Target,
};
use pushgate_engine::provider::{OutboundDelivery, Provider, ProviderError, ProviderLimits, Sent};
use pushgate_engine::store::Store;
use pushgate_store_sled::{SledOptions, SledStore};

/// A provider that accepts every send and counts them.
struct Counting {
    sends: AtomicUsize,
    receipt_timeout: Option<Duration>,
}

#[async_trait]
impl Provider for Counting {
    fn name(&self) -> &str {
        "p"
    }
    async fn send(&self, delivery: &OutboundDelivery) -> Result<Sent, ProviderError> {
        self.sends.fetch_add(1, Ordering::SeqCst);
        Ok(Sent {
            provider_ref: format!("ref-{}", delivery.idempotency_key),
        })
    }
    fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            receipt_timeout: self.receipt_timeout,
            ..ProviderLimits::default()
        }
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct Fixture {
    engine: Arc<Engine>,
    provider: Arc<Counting>,
    _dir: tempfile::TempDir,
}

fn fixture(receipt_timeout: Option<Duration>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&SledOptions::new(dir.path())).expect("store"));
    let provider = Arc::new(Counting {
        sends: AtomicUsize::new(0),
        receipt_timeout,
    });
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
        EngineSettings::default(),
        None,
    );
    Fixture {
        engine,
        provider,
        _dir: dir,
    }
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
        let receipt = Receipt {
            provider_ref: format!("ref-{id}"),
            cid: "c1".into(),
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
                ttl: None,
                notify_sender: false,
                provider: None,
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
        .any(|t| t.reason.as_deref() == Some(pushgate_engine::model::RECEIPT_TIMEOUT)));
    // The receipt settles it and takes the next timeout out of the outbox.
    let report = f.receipt(id).await;
    assert_eq!(report.applied, 1);
    let d = f.delivery(id).await;
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(f.engine.store().next_due("p").await.expect("next"), None);
}

#[tokio::test]
async fn a_receipt_before_the_send_is_recorded_settles_it_in_the_same_write() {
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
