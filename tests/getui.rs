//! Strategy 1 through `kind = "getui"`: the real gateway binary against the Getui emulator
//! over real HTTP, receipts included.

mod support;

use std::time::Duration;

use http::StatusCode;
use pushgate_getui::emulator::{Emulator, EmulatorConfig, Faults};
use serde_json::json;
use support::app_server::AppServer;
use support::client::Api;
use support::eventually;
use support::gateway::{config, GatewayProcess};

const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    emu: Emulator,
    gw: GatewayProcess,
    api: Api,
    _dir: tempfile::TempDir,
}

async fn setup(getui_extra: &str, app: Option<&AppServer>) -> Setup {
    let emu = Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        EmulatorConfig::default(),
    )
    .await
    .expect("emulator");
    let c = emu.config();
    let dir = tempfile::tempdir().expect("tempdir");
    let getui = format!(
        "[[providers]]\nname = \"getui\"\nkind = \"getui\"\nbase_url = \"{}\"\napp_id = \"{}\"\napp_key = \"{}\"\nmaster_secret = \"{}\"\ntimeout_ms = 500\n{getui_extra}\n\n[delivery]\nretry_base_ms = 100\nretry_max_ms = 300\nmax_attempts = 30\n",
        emu.url(),
        c.app_id,
        c.app_key,
        c.master_secret
    );
    let gw = GatewayProcess::start(
        dir.path(),
        &config(dir.path(), app.map(|a| a.url.as_str()), "", &getui),
    );
    emu.set_receipt_url(Some(format!("{}/v1/callbacks/getui/receipts", gw.url)));
    let api = gw.api();
    Setup {
        emu,
        gw,
        api,
        _dir: dir,
    }
}

async fn wait_state(api: &Api, id: &str, state: &str) {
    eventually(WAIT, &format!("message {id} to reach {state}"), || {
        let api = api.clone();
        let id = id.to_string();
        let state = state.to_string();
        async move { api.all_deliveries_are(&id, &state).await.then_some(()) }
    })
    .await;
}

async fn send(api: &Api, body: serde_json::Value) -> String {
    let r = api.send(&body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.json["message_id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_to_bob_through_getui_is_delivered_by_its_receipt() {
    let app = AppServer::start().await;
    let s = setup("", Some(&app)).await;
    s.api.bind("alice", "getui", "cid-alice").await;
    assert_eq!(
        s.api.bind("bob", "getui", "cid-bob").await.status,
        StatusCode::OK
    );
    let id = send(&s.api, json!({"to": {"alias": "bob"}, "from": "alice", "payload": {"text": "hi bob"}, "notify_sender": true})).await;
    wait_state(&s.api, &id, "delivered").await;
    let inbox = s.emu.inbox("cid-bob");
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        inbox[0].transmission.as_deref(),
        Some("{\"text\":\"hi bob\"}")
    );
    assert_eq!(
        inbox[0].request_id,
        format!("{id}-0"),
        "request_id derives from the delivery id"
    );
    eventually(WAIT, "the receipt push to alice's Getui device", || async {
        (!s.emu.inbox("cid-alice").is_empty()).then_some(())
    })
    .await;
    let receipt: serde_json::Value = serde_json::from_str(
        s.emu.inbox("cid-alice")[0]
            .transmission
            .as_deref()
            .unwrap_or(""),
    )
    .expect("json");
    assert_eq!(
        receipt,
        json!({"type": "receipt", "message_id": id, "state": "delivered"})
    );
    eventually(WAIT, "message.delivered webhook", || async {
        (!app.accepted_events("message.delivered").is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_foreign_receipts_are_rejected() {
    let s = setup("", None).await;
    s.emu.set_faults(Faults {
        drop_receipt_rate: 1.0,
        ..Faults::default()
    });
    s.api.bind("bob", "getui", "cid-bob").await;
    let id = send(&s.api, json!({"to": {"alias": "bob"}, "payload": "x"})).await;
    wait_state(&s.api, &id, "sent").await;
    let taskid = s.emu.inbox("cid-bob")[0].taskid.clone();
    let c = s.emu.config();
    let forged = pushgate_getui::callbacks::receipt_line(
        &c.app_id,
        "wrong-secret",
        "cid-bob",
        &taskid,
        "m1",
        1,
    );
    let foreign = pushgate_getui::callbacks::receipt_line(
        "other-app",
        &c.master_secret,
        "cid-bob",
        &taskid,
        "m1",
        1,
    );
    for body in [forged, foreign, "{\"not\": \"a receipt\"}".to_string()] {
        let r = s.api.post_text("/v1/callbacks/getui/receipts", &body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    assert_eq!(s.api.states(&id).await, ["sent"], "nothing changed");
    let metrics = s.api.get("/metrics").await.text;
    assert!(
        metrics
            .contains("pushgate_callbacks_rejected_total{provider=\"getui\",kind=\"receipt\"} 3"),
        "{metrics}"
    );
    let genuine = pushgate_getui::callbacks::receipt_line(
        &c.app_id,
        &c.master_secret,
        "cid-bob",
        &taskid,
        "m1",
        1,
    );
    let r = s
        .api
        .post_text("/v1/callbacks/getui/receipts", &genuine)
        .await;
    assert_eq!(r.json["applied"], 1, "{}", r.text);
    assert_eq!(s.api.states(&id).await, ["delivered"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_5xx_and_timeouts_are_survived() {
    let s = setup("", None).await;
    s.api.bind("bob", "getui", "cid-bob").await;
    let first = send(&s.api, json!({"to": {"alias": "bob"}, "payload": 1})).await;
    wait_state(&s.api, &first, "delivered").await;

    s.emu.expire_tokens();
    let second = send(&s.api, json!({"to": {"alias": "bob"}, "payload": 2})).await;
    wait_state(&s.api, &second, "delivered").await;
    let auths = s
        .emu
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/auth"))
        .count();
    assert_eq!(auths, 2, "one refresh after the expiry");

    s.emu.set_faults(Faults {
        error_rate: 0.4,
        slow_rate: 0.2,
        slow_ms: 800,
        ..Faults::default()
    });
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(send(&s.api, json!({"to": {"alias": "bob"}, "payload": {"n": i}})).await);
    }
    for id in &ids {
        wait_state(&s.api, id, "delivered").await;
    }
    // Slow answers were processed after the gateway gave up: the retry was deduplicated.
    assert_eq!(
        s.emu.inbox("cid-bob").len(),
        12,
        "each message reached the device once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_getui_error_fails_with_its_code() {
    let app = AppServer::start().await;
    let s = setup("", Some(&app)).await;
    let id = send(
        &s.api,
        json!({"to": {"device": {"provider": "getui", "cid": "unknown-device"}}, "payload": 1}),
    )
    .await;
    wait_state(&s.api, &id, "failed").await;
    let d = &s.api.message(&id).await.json["deliveries"][0];
    assert_eq!(d["error"]["code"], "20001");
    assert!(d["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("target user is invalid"));
    assert_eq!(d["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_are_delegated_and_device_bound_aliases_resolve() {
    let s = setup(
        "delegate_aliases = true\nremote_aliases = true\nremote_alias_cache_ms = 100",
        None,
    )
    .await;
    // Bound through pushgate: mirrored to Getui.
    s.api.bind("alice", "getui", "cid-alice").await;
    eventually(WAIT, "the bind mirrored to Getui", || async {
        (s.emu.alias_cids("alice") == ["cid-alice"]).then_some(())
    })
    .await;
    assert_eq!(
        s.api
            .delete("/v1/apps/demo/aliases/alice/devices/getui/cid-alice")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    eventually(WAIT, "the unbind mirrored to Getui", || async {
        s.emu.alias_cids("alice").is_empty().then_some(())
    })
    .await;

    // Bound on the device (in Getui's SDK): pushgate never saw it, Getui resolves it.
    let c = s.emu.config();
    let client = pushgate_getui::GetuiClient::new(
        serde_json::from_value(json!({"base_url": s.emu.url(), "app_id": c.app_id, "app_key": c.app_key, "master_secret": c.master_secret}))
            .expect("settings"),
        pushgate_getui_test_client(),
    );
    client
        .bind_alias("cid-carol", "carol")
        .await
        .expect("device-side bind");
    let id = send(
        &s.api,
        json!({"to": {"alias": "carol"}, "payload": "hi carol", "provider": "getui"}),
    )
    .await;
    wait_state(&s.api, &id, "delivered").await;
    assert_eq!(
        s.api.message(&id).await.json["deliveries"][0]["cid"],
        "cid-carol"
    );
    let r = s
        .api
        .send(&json!({"to": {"alias": "nobody"}, "payload": 1, "provider": "getui"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "unknown_alias");
    drop(s.gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_lines_from_getui_reach_the_app_server_and_the_reply_reaches_bob() {
    let app = AppServer::start().await;
    app.respond_with(|event| {
        let text = event["data"]["payload"].as_str().unwrap_or("").to_string();
        json!({"messages": [{"to": {"alias": "bob"}, "payload": {"text": text}}]})
    });
    let s = setup("", Some(&app)).await;
    s.emu
        .set_upstream_url(Some(format!("{}/v1/callbacks/getui/upstream", s.gw.url)));
    s.api.bind("alice", "getui", "cid-alice").await;
    s.api.bind("bob", "getui", "cid-bob").await;
    assert_eq!(s.emu.send_upstream("cid-alice", "hi bob").await, Ok(200));
    let event = eventually(WAIT, "upstream.received", || async {
        app.accepted_events("upstream.received").into_iter().next()
    })
    .await;
    assert_eq!(event.json["data"]["from"], "alice");
    assert_eq!(event.json["data"]["provider"], "getui");
    eventually(WAIT, "bob's Getui device to get the reply", || async {
        (!s.emu.inbox("cid-bob").is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        s.emu.inbox("cid-bob")[0].transmission.as_deref(),
        Some("{\"text\":\"hi bob\"}")
    );
    // A forged upstream line is refused.
    let forged = pushgate_getui::callbacks::upstream_line(
        &s.emu.config().app_id,
        "guess",
        "cid-alice",
        "m9",
        "x",
        1,
    );
    assert_eq!(
        s.api
            .post_text("/v1/callbacks/getui/upstream", &forged)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

fn pushgate_getui_test_client() -> pushgate_engine::http_client::HttpClient {
    pushgate_engine::http_client::build(2)
}

/// With Getui down, alias mirrors wait in the store: across a gateway restart, retried with
/// backoff, a newer bind of the same device superseding the older one; once Getui answers,
/// it ends with the binding pushgate has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_mirrors_survive_an_outage_and_a_restart() {
    let s = setup("delegate_aliases = true", None).await;
    s.emu.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    s.api.bind("alice", "getui", "cid-1").await;
    // The same device moves to bob: only that bind is still to be mirrored.
    s.api.bind("bob", "getui", "cid-1").await;
    s.api.bind("carol", "getui", "cid-2").await;
    eventually(WAIT, "mirror failures counted", || async {
        let failed = s
            .api
            .metric("pushgate_alias_mirror_failures_total{provider=\"getui\",retry=\"transient\"}")
            .await;
        (failed >= 2.0).then_some(())
    })
    .await;
    let mut gw = s.gw;
    let dir = s._dir;
    assert_eq!(gw.stop(), Some(0));
    s.emu.set_faults(Faults::default());
    let cfg = std::fs::read_to_string(&gw.config_path).expect("config");
    let gw = GatewayProcess::start(dir.path(), &cfg);
    eventually(
        WAIT,
        "the pending mirrors sent after the restart",
        || async {
            (s.emu.alias_cids("bob") == ["cid-1"] && s.emu.alias_cids("carol") == ["cid-2"])
                .then_some(())
        },
    )
    .await;
    assert!(s.emu.alias_cids("alice").is_empty(), "superseded by bob");
    let binds = s
        .emu
        .requests()
        .iter()
        .filter(|r| {
            r.method == "POST" && r.path.ends_with("/user/alias") && r.body.contains("alice")
        })
        .count();
    println!("alias mirrors: {binds} attempts for the superseded bind (all during the outage)");
    drop(gw);
}
