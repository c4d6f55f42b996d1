//! The adapter against the emulator over real HTTP: the token request and the send match what
//! the Admin SDK sends (`shared/specs/fcm-v1.md`), the token is cached and refreshed once on a
//! 401, FCM's error codes become the right retry decisions, and a forged key is refused.

use std::sync::Arc;
use std::time::Duration;

use pushgate_api::model::{DeliveryId, MessageId, Urgency};
use pushgate_api::provider::{OutboundDelivery, Provider, Retry};
use pushgate_fcm::emulator::{generate_service_account, Emulator, EmulatorConfig, Faults};
use pushgate_fcm::{FcmProvider, FcmSettings};
use serde_json::{json, Value};

struct Setup {
    emu: Emulator,
    _dir: tempfile::TempDir,
    account_file: std::path::PathBuf,
}

async fn setup(config: EmulatorConfig) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let account = generate_service_account("demo-proj").expect("service account");
    let emu = Emulator::start("127.0.0.1:0".parse().expect("addr"), account, config)
        .await
        .expect("emulator");
    let account_file = dir.path().join("service-account.json");
    emu.write_service_account(&account_file).expect("write");
    Setup {
        emu,
        _dir: dir,
        account_file,
    }
}

fn provider(s: &Setup) -> FcmProvider {
    let mut settings = FcmSettings::new(s.account_file.clone());
    settings.base_url = s.emu.url().to_string();
    settings.timeout_ms = 2000;
    FcmProvider::new("fcm", settings).expect("provider")
}

fn delivery(token: &str, payload: Value) -> OutboundDelivery {
    let id = DeliveryId {
        message: MessageId::generate(),
        index: 0,
    };
    OutboundDelivery {
        delivery_id: id,
        message_id: id.message,
        app: "demo".into(),
        cid: token.into(),
        from: Some("alice".into()),
        payload: Arc::new(payload),
        ttl: Duration::from_secs(3600),
        attempt: 1,
        device_data: None,
        urgency: Some(Urgency::High),
        collapse_key: None,
        notification: None,
        idempotency_key: id.to_string(),
    }
}

#[tokio::test]
async fn a_send_matches_the_admin_sdk_and_reaches_the_device() {
    let s = setup(EmulatorConfig::default()).await;
    let fcm = provider(&s);
    let d = delivery("fcm-registration-token-1", json!({"text": "hi", "n": 1}));
    let sent = fcm.send(&d).await.expect("sent");
    assert!(sent
        .provider_ref
        .starts_with("projects/demo-proj/messages/"));
    let inbox = s.emu.inbox("fcm-registration-token-1");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].data["text"], "hi");
    assert_eq!(inbox[0].data["n"], "1");
    assert_eq!(inbox[0].data["pushgate_request_id"], d.idempotency_key);
    assert_eq!(
        inbox[0].android,
        json!({"priority": "high", "ttl": "3600s"})
    );

    let requests = s.emu.requests();
    let token = &requests[0];
    assert_eq!(token.path, "/token");
    assert_eq!(
        token.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    // As the Admin SDK sends it (shared/specs/fcm-v1.md).
    assert!(
        token.body.starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
        ),
        "{}",
        token.body
    );
    let send = &requests[1];
    assert_eq!(send.path, "/v1/projects/demo-proj/messages:send");
    assert!(send.headers["authorization"].starts_with("Bearer ya29."));
    assert_eq!(send.headers["content-type"], "application/json");
    assert_eq!(send.headers["x-goog-api-format-version"], "2");
    let body: Value = serde_json::from_str(&send.body).expect("json");
    assert_eq!(body["message"]["token"], "fcm-registration-token-1");

    // The token is cached: nine more sends, no new token.
    for _ in 0..9 {
        fcm.send(&delivery("fcm-registration-token-1", json!("again")))
            .await
            .expect("sent");
    }
    assert_eq!(s.emu.tokens_issued(), 1);
    assert_eq!(
        s.emu.inbox("fcm-registration-token-1")[1].data["payload"],
        "again"
    );
}

#[tokio::test]
async fn concurrent_sends_share_one_token_fetch_and_a_401_refreshes_once() {
    let s = setup(EmulatorConfig::default()).await;
    let fcm = Arc::new(provider(&s));
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let fcm = fcm.clone();
            tokio::spawn(async move {
                fcm.send(&delivery(&format!("tok-{i}"), json!({"i": i})))
                    .await
            })
        })
        .collect();
    for send in sends {
        send.await.expect("join").expect("sent");
    }
    assert_eq!(s.emu.tokens_issued(), 1, "one fetch served every send");

    s.emu.revoke_tokens();
    fcm.send(&delivery("tok-0", json!({"after": "revoke"})))
        .await
        .expect("sent after a refresh");
    assert_eq!(s.emu.tokens_issued(), 2);
}

#[tokio::test]
async fn fcm_errors_become_retry_decisions() {
    let s = setup(EmulatorConfig::default()).await;
    let fcm = provider(&s);

    let gone = fcm
        .send(&delivery("unregistered-1", json!({})))
        .await
        .expect_err("gone");
    assert!(gone.unregistered, "{gone:?}");
    assert_eq!(gone.code, "UNREGISTERED");

    let invalid = fcm
        .send(&delivery("invalid-token", json!({})))
        .await
        .expect_err("invalid");
    assert!(
        invalid.unregistered,
        "a bad registration token unbinds: {invalid:?}"
    );

    s.emu.unregister("tok-late");
    assert!(
        fcm.send(&delivery("tok-late", json!({})))
            .await
            .expect_err("gone")
            .unregistered
    );

    s.emu.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(429),
        retry_after_s: Some(7),
        ..Faults::default()
    });
    let quota = fcm
        .send(&delivery("tok", json!({})))
        .await
        .expect_err("quota");
    assert_eq!(quota.code, "QUOTA_EXCEEDED");
    assert_eq!(
        quota.retry,
        Retry::Transient {
            after: Some(Duration::from_secs(7))
        }
    );
    for status in [500, 503] {
        s.emu.set_faults(Faults {
            error_rate: 1.0,
            error_status: Some(status),
            ..Faults::default()
        });
        let e = fcm
            .send(&delivery("tok", json!({})))
            .await
            .expect_err("5xx");
        assert!(e.is_transient() && !e.unregistered, "{e:?}");
    }
    s.emu.set_faults(Faults::default());
    assert!(fcm.send(&delivery("tok", json!({}))).await.is_ok());
}

#[tokio::test]
async fn payloads_are_checked_at_accept_time() {
    let s = setup(EmulatorConfig::default()).await;
    let fcm = provider(&s);
    assert!(fcm
        .check_payload(&json!({"text": "x".repeat(3900)}))
        .is_ok());
    let e = fcm
        .check_payload(&json!({"text": "x".repeat(4096)}))
        .expect_err("too big");
    assert_eq!(e.code(), "payload_too_large");
    assert!(e.to_string().contains("4,096"), "{e}");
    for reserved in [
        "from",
        "google.sent_time",
        "gcm.notification.title",
        "message_type",
    ] {
        assert!(
            fcm.check_payload(&json!({reserved: "x"})).is_err(),
            "{reserved}"
        );
    }
    assert!(
        fcm.check_cid(&"a".repeat(163)).is_ok(),
        "FCM tokens are long"
    );
    assert!(fcm.check_cid("bad token").is_err());
}

#[tokio::test]
async fn an_assertion_signed_by_another_key_gets_no_token() {
    let s = setup(EmulatorConfig::default()).await;
    // The same account with another private key.
    let other = generate_service_account("demo-proj").expect("other key");
    let mut forged: Value =
        serde_json::from_str(&std::fs::read_to_string(&s.account_file).expect("read"))
            .expect("json");
    forged["private_key"] = json!(other.private_key);
    std::fs::write(&s.account_file, forged.to_string()).expect("write");
    let fcm = provider(&s);
    let e = fcm
        .send(&delivery("tok", json!({})))
        .await
        .expect_err("no token");
    assert_eq!(e.code, "fcm_auth");
    assert!(e.is_transient(), "credentials can be fixed: {e:?}");
    assert!(e.message.contains("Invalid JWT Signature"), "{}", e.message);
    assert!(s.emu.inbox("tok").is_empty());
}
