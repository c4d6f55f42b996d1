//! The adapter against the emulator over real HTTP/2 and TLS: the headers and payload APNs
//! wants, one connection for many concurrent streams, a new one after GOAWAY, the provider
//! token reused and renewed on `ExpiredProviderToken`, APNs' reasons as retry decisions, and
//! a token signed by another key refused.

use std::sync::Arc;
use std::time::Duration;

use pushgate_api::model::{DeliveryId, MessageId};
use pushgate_api::provider::{OutboundDelivery, Provider, Retry};
use pushgate_apns::emulator::{generate_tls, Emulator, EmulatorConfig, Faults};
use pushgate_apns::{ApnsProvider, ApnsSettings, ProviderKey};
use serde_json::{json, Value};

struct Setup {
    emu: Emulator,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = ProviderKey::generate();
    std::fs::write(dir.path().join("AuthKey.p8"), key.to_pem().expect("pem")).expect("write");
    let tls = generate_tls(dir.path()).expect("tls");
    let emu = Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        key.verifying_key(),
        &tls,
        EmulatorConfig::default(),
    )
    .await
    .expect("emulator");
    Setup { emu, dir }
}

fn provider(s: &Setup, key_file: &str) -> ApnsProvider {
    let c = s.emu.config();
    let mut settings =
        ApnsSettings::new(&c.team_id, &c.key_id, s.dir.path().join(key_file), &c.topic);
    settings.base_url = s.emu.url().to_string();
    settings.ca_file = s.dir.path().join("apns-emu-ca.pem");
    settings.timeout_ms = 3000;
    ApnsProvider::new("apns", settings).expect("provider")
}

fn token(n: usize) -> String {
    format!("{n:04x}{}", "ab".repeat(30))
}

fn delivery(device: &str, payload: Value) -> OutboundDelivery {
    let id = DeliveryId {
        message: MessageId::generate(),
        index: 0,
    };
    OutboundDelivery {
        delivery_id: id,
        message_id: id.message,
        app: "demo".into(),
        cid: device.into(),
        from: Some("alice".into()),
        payload: Arc::new(payload),
        ttl: Duration::from_secs(3600),
        attempt: 1,
        device_data: None,
        urgency: None,
        collapse_key: Some("room-1".into()),
        notification: None,
        idempotency_key: id.to_string(),
    }
}

#[tokio::test]
async fn a_send_has_the_headers_and_payload_apns_wants() {
    let s = setup().await;
    let apns = provider(&s, "AuthKey.p8");
    let d = delivery(&token(1), json!({"text": "hi"}));
    let sent = apns.send(&d).await.expect("sent");
    let inbox = s.emu.inbox(&token(1));
    assert_eq!(inbox.len(), 1);
    let n = &inbox[0];
    assert_eq!(sent.provider_ref, n.apns_id);
    assert_eq!(n.apns_id, pushgate_apns::wire::apns_id(&d.idempotency_key));
    assert_eq!(n.push_type, "background");
    assert_eq!(n.priority, "5");
    assert_eq!(n.collapse_id.as_deref(), Some("room-1"));
    let now = pushgate_api::clock::now_ms() / 1000;
    let expiration = n.expiration.expect("expiration");
    assert!(
        (now + 3590..=now + 3610).contains(&expiration),
        "{expiration}"
    );
    assert_eq!(
        n.payload,
        json!({"aps": {"content-available": 1}, "text": "hi", "pushgate_request_id": d.idempotency_key})
    );
}

#[tokio::test]
async fn many_concurrent_sends_share_one_connection_and_one_token() {
    let s = setup().await;
    let apns = Arc::new(provider(&s, "AuthKey.p8"));
    let sends: Vec<_> = (0..50)
        .map(|i| {
            let apns = apns.clone();
            tokio::spawn(async move { apns.send(&delivery(&token(i), json!({"i": i}))).await })
        })
        .collect();
    for send in sends {
        send.await.expect("join").expect("sent");
    }
    assert_eq!(s.emu.streams(), 50);
    assert_eq!(
        s.emu.connections(),
        1,
        "one HTTP/2 connection, many streams"
    );
    assert_eq!(s.emu.provider_tokens_seen(), 1, "the token is reused");
}

#[tokio::test]
async fn an_expired_provider_token_is_renewed_once_and_the_send_goes_through() {
    let s = setup().await;
    let apns = provider(&s, "AuthKey.p8");
    apns.send(&delivery(&token(1), json!({})))
        .await
        .expect("sent");
    s.emu.expire_provider_tokens();
    apns.send(&delivery(&token(2), json!({})))
        .await
        .expect("sent with a new token");
    assert_eq!(s.emu.provider_tokens_seen(), 2);
    assert_eq!(s.emu.inbox(&token(2)).len(), 1);
}

#[tokio::test]
async fn after_a_goaway_the_next_sends_open_a_new_connection() {
    let s = setup().await;
    s.emu.set_faults(Faults {
        goaway_after_streams: Some(3),
        ..Faults::default()
    });
    let apns = provider(&s, "AuthKey.p8");
    for i in 0..9 {
        apns.send(&delivery(&token(i), json!({"i": i})))
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
    }
    assert!(
        s.emu.connections() >= 3,
        "{} connections",
        s.emu.connections()
    );
    assert_eq!(s.emu.inbox(&token(8)).len(), 1);
}

#[tokio::test]
async fn apns_reasons_become_retry_decisions() {
    let s = setup().await;
    let apns = provider(&s, "AuthKey.p8");
    let gone = apns
        .send(&delivery(&format!("dead{}", "0".repeat(60)), json!({})))
        .await
        .expect_err("gone");
    assert!(gone.unregistered && gone.code == "Unregistered", "{gone:?}");
    let foreign = apns
        .send(&delivery(&format!("beef{}", "0".repeat(60)), json!({})))
        .await
        .expect_err("foreign");
    assert!(
        !foreign.unregistered && !foreign.is_transient(),
        "{foreign:?}"
    );
    assert_eq!(foreign.code, "DeviceTokenNotForTopic");
    s.emu.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(429),
        retry_after_s: Some(4),
        ..Faults::default()
    });
    let busy = apns
        .send(&delivery(&token(1), json!({})))
        .await
        .expect_err("429");
    assert_eq!(busy.code, "TooManyRequests");
    assert_eq!(
        busy.retry,
        Retry::Transient {
            after: Some(Duration::from_secs(4))
        }
    );
    for status in [500, 503] {
        s.emu.set_faults(Faults {
            error_rate: 1.0,
            error_status: Some(status),
            ..Faults::default()
        });
        assert!(apns
            .send(&delivery(&token(1), json!({})))
            .await
            .expect_err("5xx")
            .is_transient());
    }
    s.emu.set_faults(Faults::default());
    assert!(apns.send(&delivery(&token(1), json!({}))).await.is_ok());
    assert!(apns
        .check_payload(&json!({"text": "x".repeat(3900)}))
        .is_ok());
    assert_eq!(
        apns.check_payload(&json!({"text": "x".repeat(4100)}))
            .expect_err("big")
            .code(),
        "payload_too_large"
    );
    assert_eq!(
        apns.check_payload(&json!({"aps": "alert"}))
            .expect_err("aps")
            .code(),
        "invalid_payload"
    );
    // A payload's own aps is APNs' aps: a badge alone makes an alert push.
    let own = json!({"aps": {"badge": 4, "sound": "default"}, "room": "r"});
    assert!(apns.check_payload(&own).is_ok());
    assert!(apns.send(&delivery(&token(2), own)).await.is_ok());
    let got = s.emu.inbox(&token(2)).pop().expect("delivered");
    assert_eq!(got.push_type, "alert");
    assert_eq!(got.payload["aps"], json!({"badge": 4, "sound": "default"}));
    assert_eq!(got.payload["room"], "r");
    assert!(apns.check_cid("bob-phone").is_err());
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let s = setup().await;
    let other = ProviderKey::generate();
    std::fs::write(s.dir.path().join("Other.p8"), other.to_pem().expect("pem")).expect("write");
    let apns = provider(&s, "Other.p8");
    let e = apns
        .send(&delivery(&token(1), json!({})))
        .await
        .expect_err("refused");
    assert_eq!(e.code, "InvalidProviderToken");
    assert!(e.is_transient(), "a key can be fixed: {e:?}");
    assert!(s.emu.inbox(&token(1)).is_empty());
}
