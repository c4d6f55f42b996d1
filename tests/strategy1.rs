//! Strategy 1 end to end: alias push, receipts, webhooks, sender notification,
//! idempotency, restart recovery and TTL expiry, against the real gateway binary.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use support::app_server::AppServer;
use support::eventually;
use support::gateway::{config, GatewayProcess, WEBHOOK_SECRET};

const WAIT: Duration = Duration::from_secs(15);

fn verify_signature(body: &[u8], header: &str) -> bool {
    pushgate::webhook::signature(WEBHOOK_SECRET.as_bytes(), body) == header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_to_bob_is_delivered_and_both_sides_are_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), Some(&app.url), "", ""));
    let api = gw.api();
    assert_eq!(
        api.bind("alice", "mock", "alice-phone").await.status,
        StatusCode::OK
    );
    let bob = api.bind("bob", "mock", "bob-phone").await;
    assert_eq!(bob.status, StatusCode::OK);
    assert_eq!(bob.json["devices"][0]["cid"], "bob-phone");

    let sent = api
        .send(&json!({"to": {"alias": "bob"}, "from": "alice", "payload": {"text": "hi bob"}, "notify_sender": true}))
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    assert_eq!(sent.json["deliveries"], 1);
    let id = sent.json["message_id"]
        .as_str()
        .expect("message id")
        .to_string();

    eventually(WAIT, "bob's delivery to reach delivered", || {
        let api = api.clone();
        let id = id.clone();
        async move { (api.states(&id).await == ["delivered"]).then_some(()) }
    })
    .await;
    let status = api.message(&id).await.json;
    assert_eq!(status["from"], "alice");
    assert_eq!(status["to"], json!({"alias": "bob"}));
    let history: Vec<&str> = status["deliveries"][0]["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert_eq!(history, ["queued", "sending", "sent", "delivered"]);

    let inbox = api.inbox("mock", "bob-phone").await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["payload"], json!({"text": "hi bob"}));
    assert_eq!(inbox[0]["from"], "alice");

    // The app server hears about it, signed.
    let events = eventually(WAIT, "message.delivered webhook", || {
        let app = app.clone();
        async move {
            let e = app.accepted_events("message.delivered");
            (!e.is_empty()).then_some(e)
        }
    })
    .await;
    assert_eq!(
        events.len(),
        1,
        "only the app message emits events, not the receipt push"
    );
    let event = &events[0];
    let signature = event.headers["x-pushgate-signature"]
        .to_str()
        .expect("ascii");
    assert!(
        verify_signature(&event.body, signature),
        "webhook signature must verify"
    );
    assert!(!verify_signature(b"tampered", signature));
    assert_eq!(
        event.headers["x-pushgate-event-id"].to_str().ok(),
        event.json["id"].as_str()
    );
    assert_eq!(event.json["app"], "demo");
    assert_eq!(event.json["data"]["message_id"], id.as_str());
    assert_eq!(event.json["data"]["delivery"]["cid"], "bob-phone");

    // And alice's device gets the receipt push.
    let receipts = eventually(WAIT, "receipt push to alice", || {
        let api = api.clone();
        async move {
            let inbox = api.inbox("mock", "alice-phone").await;
            (!inbox.is_empty()).then_some(inbox)
        }
    })
    .await;
    assert_eq!(
        receipts[0]["payload"],
        json!({"type": "receipt", "message_id": id, "state": "delivered"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_id_sends_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", ""));
    let api = gw.api();
    api.bind("bob", "mock", "bob-phone").await;
    let body = json!({"to": {"alias": "bob"}, "payload": {"n": 1}, "request_id": "order-42"});
    let first = api.send(&body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = api.send(&body).await;
    assert_eq!(second.status, StatusCode::OK, "a replay answers 200");
    assert_eq!(first.json["message_id"], second.json["message_id"]);
    let conflict = api
        .send(&json!({"to": {"alias": "bob"}, "payload": {"n": 2}, "request_id": "order-42"}))
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.code(), "idempotency_conflict");

    let id = first.json["message_id"].as_str().expect("id").to_string();
    eventually(WAIT, "delivery", || {
        let api = api.clone();
        let id = id.clone();
        async move { (api.states(&id).await == ["delivered"]).then_some(()) }
    })
    .await;
    // A third replay after delivery still returns the same message and creates nothing:
    // one message accepted, one send, one copy on the device.
    let third = api.send(&body).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(third.json["message_id"], first.json["message_id"]);
    assert_eq!(
        api.metric("pushgate_messages_accepted_total{app=\"demo\"}")
            .await,
        1.0
    );
    assert_eq!(
        api.metric("pushgate_deliveries_total{provider=\"mock\",outcome=\"sent\"}")
            .await,
        1.0
    );
    assert_eq!(api.inbox("mock", "bob-phone").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_flight_resumes_every_delivery_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("mock-state");
    // Every delivery fails its first two attempts, so a stop finds them retrying.
    let mock = format!(
        "fail_first_attempts = 2\nstate_dir = \"{}\"",
        state.display()
    );
    let delivery = "[delivery]\nretry_base_ms = 400\nretry_max_ms = 800\ncircuit_failures = 0";
    let cfg = config(dir.path(), None, &mock, delivery);
    let mut gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    for (alias, cid) in [
        ("bob", "bob-phone"),
        ("bob", "bob-tablet"),
        ("carol", "carol-phone"),
    ] {
        assert_eq!(api.bind(alias, "mock", cid).await.status, StatusCode::OK);
    }
    let mut ids = Vec::new();
    for i in 0..20 {
        let to = if i % 2 == 0 { "bob" } else { "carol" };
        let r = api
            .send(&json!({"to": {"alias": to}, "payload": {"seq": i}}))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.json["message_id"].as_str().expect("id").to_string());
    }
    let pending: usize = {
        let mut n = 0;
        for id in &ids {
            n += api
                .states(id)
                .await
                .iter()
                .filter(|s| *s != "delivered")
                .count();
        }
        n
    };
    assert!(
        pending > 0,
        "the stop must find deliveries still in flight or retrying"
    );
    assert_eq!(gw.stop(), Some(0), "graceful stop exits 0");

    let gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    for id in &ids {
        eventually(WAIT, "every delivery to finish after the restart", || {
            let api = api.clone();
            let id = id.clone();
            async move { api.all_deliveries_are(&id, "delivered").await.then_some(()) }
        })
        .await;
    }
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for cid in ["bob-phone", "bob-tablet", "carol-phone"] {
        for entry in api.inbox("mock", cid).await {
            *seen
                .entry((
                    cid.to_string(),
                    entry["message_id"].as_str().unwrap_or("").to_string(),
                ))
                .or_default() += 1;
        }
    }
    assert_eq!(
        seen.len(),
        30,
        "10 messages to bob's 2 devices and 10 to carol's 1"
    );
    assert!(
        seen.values().all(|n| *n == 1),
        "no device got a message twice: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_shorter_than_the_outage_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    let cfg = config(
        dir.path(),
        Some(&app.url),
        "fail_first_attempts = 1000",
        "[delivery]\nretry_base_ms = 200\nretry_max_ms = 300",
    );
    let gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    api.bind("bob", "mock", "bob-phone").await;
    let r = api
        .send(&json!({"to": {"alias": "bob"}, "payload": "x", "ttl_seconds": 1}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.json["message_id"].as_str().expect("id").to_string();
    eventually(WAIT, "the delivery to expire", || {
        let api = api.clone();
        let id = id.clone();
        async move { (api.states(&id).await == ["expired"]).then_some(()) }
    })
    .await;
    let status = api.message(&id).await.json;
    assert_eq!(status["deliveries"][0]["error"]["code"], "mock_outage");
    assert!(status["deliveries"][0]["attempts"].as_u64().unwrap_or(0) >= 1);
    let events = eventually(WAIT, "message.expired webhook", || {
        let app = app.clone();
        async move {
            let e = app.accepted_events("message.expired");
            (!e.is_empty()).then_some(e)
        }
    })
    .await;
    assert_eq!(events[0].json["data"]["message_id"], id.as_str());
    assert!(api.inbox("mock", "bob-phone").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_fail_at_once_and_webhooks_retry_until_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    app.answer(503);
    let cfg = config(
        dir.path(),
        Some(&app.url),
        "",
        "[webhooks]\nretry_base_ms = 100\nretry_max_ms = 200",
    );
    let gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    // The mock treats cids starting with "unknown" as unknown devices.
    let r = api
        .send(&json!({"to": {"device": {"provider": "mock", "cid": "unknown-1"}}, "payload": 1}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.json["message_id"].as_str().expect("id").to_string();
    eventually(WAIT, "the delivery to fail", || {
        let api = api.clone();
        let id = id.clone();
        async move { (api.states(&id).await == ["failed"]).then_some(()) }
    })
    .await;
    let status = api.message(&id).await.json;
    assert_eq!(
        status["deliveries"][0]["attempts"], 1,
        "a permanent failure is not retried"
    );
    assert_eq!(status["deliveries"][0]["error"]["code"], "unknown_cid");

    // The app server is down: the event is retried, then accepted once it is up.
    eventually(WAIT, "a few refused webhook attempts", || {
        let app = app.clone();
        async move { (app.received().len() >= 2).then_some(()) }
    })
    .await;
    app.answer(200);
    let events = eventually(WAIT, "message.failed accepted", || {
        let app = app.clone();
        async move {
            let e = app.accepted_events("message.failed");
            (!e.is_empty()).then_some(e)
        }
    })
    .await;
    let all = app.received();
    let ids: Vec<&str> = all.iter().filter_map(|r| r.json["id"].as_str()).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "every retry carries the same event id"
    );
    assert_eq!(
        events[0].json["data"]["delivery"]["error"]["code"],
        "unknown_cid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_messages_are_purged_after_their_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), None, "", "[delivery]\nretention_seconds = 1\n");
    let gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    api.bind("bob", "mock", "bob-phone").await;
    let body =
        json!({"to": {"alias": "bob"}, "payload": 1, "ttl_seconds": 1, "request_id": "purge-me-1"});
    let first = api.send(&body).await;
    let id = first.json["message_id"].as_str().expect("id").to_string();
    eventually(WAIT, "delivery", || {
        let (api, id) = (api.clone(), id.clone());
        async move { (api.states(&id).await == ["delivered"]).then_some(()) }
    })
    .await;
    // TTL (1 s) + retention (1 s): then the message and its idempotency key are gone.
    eventually(WAIT, "the purge", || {
        let (api, id) = (api.clone(), id.clone());
        async move { (api.message(&id).await.status == StatusCode::NOT_FOUND).then_some(()) }
    })
    .await;
    let again = api.send(&body).await;
    assert_eq!(
        again.status,
        StatusCode::ACCEPTED,
        "the request_id is free again"
    );
    assert_ne!(again.json["message_id"], first.json["message_id"]);
    assert_eq!(
        api.get("/v1/apps/demo/aliases/bob").await.status,
        StatusCode::OK,
        "aliases stay"
    );
}

/// At-least-once to the device: receipts the device never sends (a fifth of them) are
/// made up for by the receipt timeout, which sends the delivery again with the same
/// idempotency key; the device (which drops repeats) acknowledges, and every message ends
/// `delivered`, each on the device once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_receipts_end_delivered_through_the_receipt_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = "receipt_loss_rate = 0.2\nreceipt_timeout_ms = 300";
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, mock, ""));
    let api = gw.api();
    api.bind("bob", "mock", "bob-phone").await;
    let mut ids = Vec::new();
    for n in 0..50 {
        let r = api
            .send(&json!({"to": {"alias": "bob"}, "payload": {"n": n}}))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        ids.push(r.json["message_id"].as_str().expect("id").to_string());
    }
    let mut resent = 0;
    for id in &ids {
        eventually(WAIT, "every message to end delivered", || {
            let (api, id) = (api.clone(), id.clone());
            async move { api.all_deliveries_are(&id, "delivered").await.then_some(()) }
        })
        .await;
        let message = api.message(id).await.json;
        let history = &message["deliveries"][0]["history"];
        let timeouts = history
            .as_array()
            .map(|h| {
                h.iter()
                    .filter(|t| t["reason"] == "receipt_timeout")
                    .count()
            })
            .unwrap_or(0);
        if timeouts > 0 {
            resent += 1;
            assert_eq!(
                message["deliveries"][0]["attempts"].as_u64(),
                Some(1 + timeouts as u64),
                "each timeout is one more attempt: {history}"
            );
        }
    }
    // 50 receipts, each lost with probability 0.2: none lost has probability 1.4e-5.
    assert!(resent > 0, "some deliveries needed the receipt timeout");
    let counted = api
        .metric("pushgate_receipt_timeouts_total{provider=\"mock\"}")
        .await;
    assert!(counted >= resent as f64, "{counted} timeouts counted");
    let inbox = api.inbox("mock", "bob-phone").await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in &inbox {
        *copies
            .entry(m["message_id"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    assert_eq!(copies.len(), 50, "every message reached the device");
    assert!(copies.values().all(|n| *n == 1), "once each: {copies:?}");
    println!("receipt timeout: 50 messages, {resent} delivered only after a resend, {counted} timeouts counted");
}

/// Devices may be bound with provider data (a Web Push subscription is one): the provider
/// checks it, the binding keeps it, `GET` shows it, sends carry it, and binding the same cid
/// again with new data replaces it. A provider that takes no data refuses it with a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_data_is_checked_kept_shown_and_carried_by_sends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let getui = "[[providers]]\nname = \"getui\"\nkind = \"getui\"\nbase_url = \"http://127.0.0.1:9\"\napp_id = \"a\"\napp_key = \"k\"\nmaster_secret = \"s\"\n";
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", getui));
    let api = gw.api();
    let bind = |data: serde_json::Value| {
        let api = api.clone();
        async move {
            api.post(
                "/v1/apps/demo/aliases/bob/devices",
                &json!({"provider": "mock", "cid": "bob-laptop", "data": data}),
            )
            .await
        }
    };
    let first = bind(json!({"endpoint": "https://push.example/1"})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(
        first.json["devices"][0]["data"],
        json!({"endpoint": "https://push.example/1"})
    );
    let id = api
        .send(&json!({"to": {"alias": "bob"}, "payload": {"n": 1}}))
        .await
        .json["message_id"]
        .as_str()
        .expect("id")
        .to_string();
    eventually(WAIT, "the send", || {
        let (api, id) = (api.clone(), id.clone());
        async move { api.all_deliveries_are(&id, "delivered").await.then_some(()) }
    })
    .await;
    let inbox = api.inbox("mock", "bob-laptop").await;
    assert_eq!(
        inbox[0]["device_data"],
        json!({"endpoint": "https://push.example/1"}),
        "the send carried the device's data"
    );
    // Bound again with new data: replaced, still one device.
    let again = bind(json!({"endpoint": "https://push.example/2"})).await;
    assert_eq!(again.json["devices"].as_array().map(Vec::len), Some(1));
    let shown = api.get("/v1/apps/demo/aliases/bob").await;
    assert_eq!(
        shown.json["devices"][0]["data"],
        json!({"endpoint": "https://push.example/2"})
    );
    // A direct device target carries its binding's data too.
    let direct = api
        .send(&json!({"to": {"device": {"provider": "mock", "cid": "bob-laptop"}}, "payload": 2}))
        .await;
    let direct = direct.json["message_id"].as_str().expect("id").to_string();
    eventually(WAIT, "the direct send", || {
        let (api, id) = (api.clone(), direct.clone());
        async move { api.all_deliveries_are(&id, "delivered").await.then_some(()) }
    })
    .await;
    let inbox = api.inbox("mock", "bob-laptop").await;
    assert_eq!(
        inbox[1]["device_data"],
        json!({"endpoint": "https://push.example/2"})
    );
    // Refused: data that is not an object, and data for a provider that takes none.
    let bad = bind(json!("just a string")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "invalid_device_data");
    let refused = api
        .post(
            "/v1/apps/demo/aliases/carol/devices",
            &json!({"provider": "getui", "cid": "cid-carol", "data": {"x": 1}}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.code(), "invalid_device_data");
    assert!(refused.text.contains("getui"), "{}", refused.text);
    assert_eq!(
        api.get("/v1/apps/demo/aliases/carol").await.status,
        StatusCode::NOT_FOUND,
        "nothing was bound"
    );
}
