//! Strategy 2 end to end: a device's upstream message reaches the app server (signed,
//! ordered per sender, durable), and the server's reply is delivered like any message.

mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};
use support::app_server::AppServer;
use support::client::Api;
use support::eventually;
use support::gateway::{config, GatewayProcess, MOCK_SECRET, WEBHOOK_SECRET};

const WAIT: Duration = Duration::from_secs(20);

async fn upstream(api: &Api, cid: &str, payload: &str) -> serde_json::Value {
    let r = api
        .post(
            &format!("/v1/mock/mock/devices/{cid}/upstream"),
            &json!({"payload": payload}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json
}

/// The reply a chat server gives: deliver `{"to": …, "text": …}` payloads to that alias.
fn chat_server_reply(event: &Value) -> Value {
    if event["type"] != "upstream.received" {
        return json!({});
    }
    let Ok(inner) = serde_json::from_str::<Value>(event["data"]["payload"].as_str().unwrap_or(""))
    else {
        return json!({});
    };
    json!({"messages": [{"to": {"alias": inner["to"]}, "payload": {"text": inner["text"]}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alices_upstream_reaches_the_app_server_and_its_reply_reaches_bob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    app.respond_with(chat_server_reply);
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), Some(&app.url), "", ""));
    let api = gw.api();
    api.bind("alice", "mock", "alice-phone").await;
    api.bind("bob", "mock", "bob-phone").await;
    let report = upstream(&api, "alice-phone", r#"{"to": "bob", "text": "hi bob"}"#).await;
    assert_eq!(report["accepted"], 1);

    let event = eventually(WAIT, "upstream.received", || async {
        app.accepted_events("upstream.received").into_iter().next()
    })
    .await;
    let signature = event.headers["x-pushgate-signature"]
        .to_str()
        .expect("ascii");
    assert_eq!(
        pushgate::webhook::signature(WEBHOOK_SECRET.as_bytes(), &event.body),
        signature
    );
    assert_eq!(event.json["data"]["from"], "alice");
    assert_eq!(event.json["data"]["unbound"], false);
    assert_eq!(event.json["data"]["cid"], "alice-phone");

    let inbox = eventually(WAIT, "bob's device to get the reply", || async {
        let inbox = api.inbox("mock", "bob-phone").await;
        (!inbox.is_empty()).then_some(inbox)
    })
    .await;
    assert_eq!(inbox[0]["payload"], json!({"text": "hi bob"}));
    assert_eq!(
        inbox[0]["from"], "alice",
        "the reply is sent from the upstream sender"
    );
    let id = inbox[0]["message_id"].as_str().expect("id").to_string();
    eventually(WAIT, "the reply's delivery to be delivered", || {
        let (api, id) = (api.clone(), id.clone());
        async move { (api.states(&id).await == ["delivered"]).then_some(()) }
    })
    .await;
    // One upstream event, one reply message accepted, one copy on bob's device.
    assert_eq!(
        api.metric("pushgate_upstream_replies_total{result=\"accepted\"}")
            .await,
        1.0
    );
    assert_eq!(
        api.metric("pushgate_deliveries_total{provider=\"mock\",outcome=\"sent\"}")
            .await,
        1.0
    );
    assert_eq!(
        api.inbox("mock", "bob-phone").await.len(),
        1,
        "the reply is delivered once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_the_app_server_in_order_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    app.answer(503);
    let extra = "[webhooks]\nretry_base_ms = 100\nretry_max_ms = 300\nmax_attempts = 1000";
    let cfg = config(dir.path(), Some(&app.url), "", extra);
    let mut gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    api.bind("alice", "mock", "alice-phone").await;
    for i in 0..5 {
        upstream(&api, "alice-phone", &format!("m{i}")).await;
    }
    eventually(WAIT, "refused attempts", || async {
        (app.received().len() >= 2).then_some(())
    })
    .await;
    assert_eq!(gw.stop(), Some(0));

    let gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    for i in 5..8 {
        upstream(&api, "alice-phone", &format!("m{i}")).await;
    }
    app.answer(200);
    let events = eventually(WAIT, "all eight events", || async {
        let e = app.accepted_events("upstream.received");
        (e.len() >= 8).then_some(e)
    })
    .await;
    let payloads: Vec<String> = events
        .iter()
        .map(|e| e.json["data"]["payload"].as_str().unwrap_or("").to_string())
        .collect();
    let expected: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    assert_eq!(
        payloads, expected,
        "in the order the device sent them, none lost or repeated"
    );
    // While the server was down, only the head of alice's queue was tried.
    let refused: Vec<String> = app
        .received()
        .iter()
        .filter(|r| r.answered != 200)
        .filter_map(|r| r.json["data"]["payload"].as_str().map(str::to_string))
        .collect();
    assert!(
        !refused.is_empty() && refused.iter().all(|p| p == "m0"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_relay_needs_no_app_server_reply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    let cfg = config(dir.path(), Some(&app.url), "", "").replace(
        "default_provider = \"mock\"\n",
        "default_provider = \"mock\"\nupstream_relay = true\n",
    );
    let gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    api.bind("alice", "mock", "alice-phone").await;
    api.bind("bob", "mock", "bob-phone").await;
    let report = upstream(
        &api,
        "alice-phone",
        r#"{"to": "bob", "body": {"text": "relayed"}}"#,
    )
    .await;
    assert_eq!(report["relayed"], 1);
    let inbox = eventually(WAIT, "the relayed message", || async {
        let inbox = api.inbox("mock", "bob-phone").await;
        (!inbox.is_empty()).then_some(inbox)
    })
    .await;
    assert_eq!(inbox[0]["payload"], json!({"text": "relayed"}));
    assert_eq!(inbox[0]["from"], "alice");
    // The app server still hears about it.
    eventually(WAIT, "the event", || async {
        (!app.accepted_events("upstream.received").is_empty()).then_some(())
    })
    .await;
    // Not an envelope, or to an unknown alias: nothing relayed, still forwarded.
    assert_eq!(
        upstream(&api, "alice-phone", "plain text").await["relayed"],
        0
    );
    assert_eq!(
        upstream(&api, "alice-phone", r#"{"to": "nobody", "body": 1}"#).await["relayed"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_forged_duplicate_and_malformed_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    app.respond_with(|_| json!({"messages": "not a list"}));
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), Some(&app.url), "", ""));
    let api = gw.api();
    // A device bound to no alias: forwarded with the cid only, marked unbound.
    upstream(&api, "stranger", "hello?").await;
    let event = eventually(WAIT, "the unbound event", || async {
        app.accepted_events("upstream.received").into_iter().next()
    })
    .await;
    assert_eq!(event.json["data"]["unbound"], true);
    assert_eq!(event.json["data"]["from"], Value::Null);
    assert_eq!(event.json["data"]["cid"], "stranger");

    // The same line twice is one message; a forged line is refused.
    let line = pushgate_mock::sign_upstream(MOCK_SECRET.as_bytes(), "c9", "fixed-msgid", "once", 1);
    let first = api.post_text("/v1/callbacks/mock/upstream", &line).await;
    assert_eq!(first.json["accepted"], 1, "{}", first.text);
    let again = api.post_text("/v1/callbacks/mock/upstream", &line).await;
    assert_eq!(again.json["duplicates"], 1);
    let forged = pushgate_mock::sign_upstream(b"guess", "c9", "m2", "forged", 1);
    let r = api.post_text("/v1/callbacks/mock/upstream", &forged).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "upstream_rejected");
    assert_eq!(
        api.post_text("/v1/callbacks/nope/upstream", &line)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The malformed reply was not retried: two events (stranger, once), each sent once.
    eventually(WAIT, "both events answered", || {
        let api = api.clone();
        async move {
            (api.metric("pushgate_upstream_replies_total{result=\"malformed\"}")
                .await
                >= 2.0)
                .then_some(())
        }
    })
    .await;
    let payloads: Vec<String> = app
        .received()
        .iter()
        .filter_map(|r| r.json["data"]["payload"].as_str().map(str::to_string))
        .collect();
    assert_eq!(payloads, ["hello?", "once"]);
    let metrics = api.get("/metrics").await.text;
    assert!(
        metrics.contains("pushgate_upstream_replies_total{result=\"malformed\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dedupe_records_are_dropped_after_the_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    let cfg = config(
        dir.path(),
        Some(&app.url),
        "",
        "[delivery]\nretention_seconds = 1\n",
    );
    let gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    let line = pushgate_mock::sign_upstream(MOCK_SECRET.as_bytes(), "c9", "kept-msgid", "hi", 1);
    let first = api.post_text("/v1/callbacks/mock/upstream", &line).await;
    assert_eq!(first.json["accepted"], 1, "{}", first.text);
    let again = api.post_text("/v1/callbacks/mock/upstream", &line).await;
    assert_eq!(
        again.json["duplicates"], 1,
        "deduplicated within the retention"
    );
    // After the retention the dedupe record is removed (not kept forever), so the same
    // msgid counts as new again.
    let accepted_again = eventually(WAIT, "the dedupe record to go", || async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = api.post_text("/v1/callbacks/mock/upstream", &line).await;
        (r.json["accepted"] == 1).then_some(r)
    })
    .await;
    assert_eq!(accepted_again.json["duplicates"], 0);
}
