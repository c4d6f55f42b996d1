//! The adapter against the emulator over real HTTP: requests match the official client's
//! recorded samples; token refresh, 301, batching, delegation and remote aliases work.

use std::sync::Arc;
use std::time::Duration;

use pushgate_api::model::{DeliveryId, MessageId};
use pushgate_api::provider::{OutboundDelivery, Provider};
use pushgate_getui::emulator::{Emulator, EmulatorConfig, Faults};
use pushgate_getui::{GetuiProvider, GetuiSettings};
use serde_json::{json, Value};

async fn emulator() -> Emulator {
    Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        EmulatorConfig::default(),
    )
    .await
    .expect("emulator")
}

fn settings(emu: &Emulator) -> GetuiSettings {
    let c = emu.config();
    serde_json::from_value(json!({
        "base_url": emu.url(),
        "app_id": c.app_id,
        "app_key": c.app_key,
        "master_secret": c.master_secret,
        "timeout_ms": 2000,
    }))
    .expect("settings")
}

fn delivery(cid: &str, payload: Value) -> OutboundDelivery {
    let id = DeliveryId {
        message: MessageId::generate(),
        index: 0,
    };
    OutboundDelivery {
        delivery_id: id,
        message_id: id.message,
        app: "demo".into(),
        cid: cid.into(),
        from: Some("alice".into()),
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

fn body(r: &pushgate_getui::emulator::RecordedRequest) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn requests_match_the_official_client_samples() {
    let emu = emulator().await;
    let mut s = settings(&emu);
    s.delegate_aliases = true;
    s.remote_aliases = true;
    s.max_batch = 1;
    let provider = GetuiProvider::new("getui", s).expect("provider");
    provider
        .alias_bound("demo", "alice", "cid-1")
        .await
        .expect("bind");
    let sent = provider
        .send(&delivery("cid-1", json!({"k": "v", "text": "hello alice"})))
        .await
        .expect("push");
    assert!(sent.provider_ref.starts_with("RASS_"));
    assert_eq!(
        provider
            .resolve_alias("demo", "alice")
            .await
            .expect("query"),
        vec!["cid-1"]
    );

    let app_id = emu.config().app_id;
    let requests = emu.requests();
    let paths: Vec<(String, String)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("POST".into(), format!("/v2/{app_id}/auth")),
            ("POST".into(), format!("/v2/{app_id}/user/alias")),
            ("POST".into(), format!("/v2/{app_id}/push/single/cid")),
            ("GET".into(), format!("/v2/{app_id}/user/cid/alias/alice")),
        ]
    );
    // auth: {"appkey","sign","timestamp"} with the timestamp as a 13-digit string, no token.
    let auth = body(&requests[0]);
    let mut keys: Vec<&str> = auth
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["appkey", "sign", "timestamp"]);
    assert_eq!(auth["timestamp"].as_str().map(str::len), Some(13));
    assert_eq!(auth["sign"].as_str().map(str::len), Some(64));
    assert!(!requests[0].headers.contains_key("token"));
    for r in &requests {
        assert!(
            r.headers["content-type"].starts_with("application/json;charset="),
            "{r:?}"
        );
    }
    for r in &requests[1..] {
        assert!(
            r.headers["token"].starts_with("emu-token-"),
            "token header on {}",
            r.path
        );
    }
    assert_eq!(
        body(&requests[1]),
        json!({"data_list": [{"cid": "cid-1", "alias": "alice"}]})
    );
    let push = body(&requests[2]);
    assert_eq!(
        push["push_message"],
        json!({"transmission": "{\"k\":\"v\",\"text\":\"hello alice\"}"})
    );
    assert_eq!(push["audience"], json!({"cid": ["cid-1"]}));
    assert_eq!(
        push["settings"]["ttl"].as_i64().map(|t| t > 3_590_000),
        Some(true)
    );
    assert!((10..=32).contains(&push["request_id"].as_str().map(str::len).unwrap_or(0)));
    assert_eq!(requests[3].body, "");

    provider
        .alias_unbound("demo", "alice", "cid-1")
        .await
        .expect("unbind");
    let last = emu.requests().pop().expect("unbind request");
    assert_eq!(
        (last.method.as_str(), body(&last)),
        (
            "DELETE",
            json!({"data_list": [{"cid": "cid-1", "alias": "alice"}]})
        )
    );
    assert!(emu.alias_cids("alice").is_empty());
}

#[tokio::test]
async fn expired_tokens_are_refreshed_once_by_one_caller() {
    let emu = emulator().await;
    let mut s = settings(&emu);
    s.max_batch = 1;
    let provider = Arc::new(GetuiProvider::new("getui", s).expect("provider"));
    // 20 concurrent first sends share one auth.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let p = provider.clone();
        tasks.push(tokio::spawn(async move {
            p.send(&delivery(&format!("c{i}"), json!(i))).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("sent");
    }
    let auths = |emu: &Emulator| {
        emu.requests()
            .iter()
            .filter(|r| r.path.ends_with("/auth"))
            .count()
    };
    assert_eq!(auths(&emu), 1, "one refresh however many sends wait for it");

    emu.expire_tokens();
    provider
        .send(&delivery("c1", json!("after expiry")))
        .await
        .expect("refreshed and retried");
    assert_eq!(auths(&emu), 2);
    let codes: Vec<String> = emu.requests().iter().map(|r| r.path.clone()).collect();
    assert!(codes.ends_with(&[
        format!("/v2/{}/push/single/cid", emu.config().app_id),
        format!("/v2/{}/auth", emu.config().app_id),
        format!("/v2/{}/push/single/cid", emu.config().app_id),
    ]));
}

#[tokio::test]
async fn a_301_switches_to_the_named_host() {
    let first = emulator().await;
    let second = emulator().await;
    let mut s = settings(&first);
    s.max_batch = 1;
    let provider = GetuiProvider::new("getui", s).expect("provider");
    provider
        .send(&delivery("c1", json!(1)))
        .await
        .expect("first push");
    first.redirect_once(second.url());
    provider
        .send(&delivery("c1", json!(2)))
        .await
        .expect("push after 301");
    assert_eq!(
        second.inbox("c1").len(),
        1,
        "the push after the 301 went to the new host"
    );
    assert_eq!(first.inbox("c1").len(), 1);
}

#[tokio::test]
async fn concurrent_sends_go_out_as_batches_and_map_back() {
    let emu = emulator().await;
    let provider = Arc::new(GetuiProvider::new("getui", settings(&emu)).expect("provider"));
    provider
        .send(&delivery("warmup", json!(0)))
        .await
        .expect("auth first");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let p = provider.clone();
        // Two sends per cid: never in the same batch.
        tasks.push(tokio::spawn(async move {
            (
                i % 25,
                p.send(&delivery(&format!("c{}", i % 25), json!(i))).await,
            )
        }));
    }
    for t in tasks {
        let (cid, sent) = t.await.expect("join");
        let sent = sent.expect("sent");
        let inbox = emu.inbox(&format!("c{cid}"));
        assert!(
            inbox.iter().any(|m| m.taskid == sent.provider_ref),
            "taskid maps to this cid's message"
        );
    }
    let batches = emu
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/push/single/batch/cid"))
        .count();
    assert!(batches >= 1, "waiting sends were batched");
    for i in 0..25 {
        assert_eq!(emu.inbox(&format!("c{i}")).len(), 2);
    }
}

#[tokio::test]
async fn a_bad_item_in_a_batch_fails_alone_and_retries_are_deduplicated() {
    let emu = emulator().await;
    let provider = Arc::new(GetuiProvider::new("getui", settings(&emu)).expect("provider"));
    provider
        .send(&delivery("warmup", json!(0)))
        .await
        .expect("auth first");
    let mut tasks = Vec::new();
    for cid in ["good-1", "unknown-2", "good-3"] {
        let p = provider.clone();
        tasks.push(tokio::spawn(async move {
            (cid, p.send(&delivery(cid, json!(cid))).await)
        }));
    }
    for t in tasks {
        let (cid, result) = t.await.expect("join");
        if cid.starts_with("unknown") {
            let e = result.expect_err("unknown cid");
            assert_eq!(e.code, "20001");
            assert!(!e.is_transient());
        } else {
            assert!(result.is_ok(), "{cid}: {result:?}");
        }
    }
    // The same delivery sent twice (a retry) reaches the device once, with the same taskid.
    let d = delivery("dup", json!("once"));
    let a = provider.send(&d).await.expect("first");
    let b = provider.send(&d).await.expect("retry");
    assert_eq!(a, b);
    assert_eq!(emu.inbox("dup").len(), 1);
}

#[tokio::test]
async fn server_errors_and_timeouts_are_transient() {
    let emu = emulator().await;
    let mut s = settings(&emu);
    s.max_batch = 1;
    s.timeout_ms = 200;
    let provider = GetuiProvider::new("getui", s).expect("provider");
    provider
        .send(&delivery("c1", json!(1)))
        .await
        .expect("auth first");
    emu.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let e = provider
        .send(&delivery("c1", json!(2)))
        .await
        .expect_err("500");
    assert!(e.is_transient(), "{e:?}");
    emu.set_faults(Faults {
        slow_rate: 1.0,
        slow_ms: 500,
        ..Faults::default()
    });
    let e = provider
        .send(&delivery("c1", json!(3)))
        .await
        .expect_err("slow");
    assert!(e.is_transient());
    assert_eq!(e.code, "timeout");
}
