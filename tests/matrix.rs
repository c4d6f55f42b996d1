//! The Matrix push gateway API end to end: the real gateway takes the notify bodies Synapse
//! sent (recorded in `tests/peers/matrix-notify-samples.json`) and pushes Sygnal's payloads
//! to the mock provider's devices; unknown app ids and gone pushkeys are rejected, transient
//! failures are not, and a retried notify is delivered once.

mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};
use support::eventually;
use support::gateway::{config, GatewayProcess};

const WAIT: Duration = Duration::from_secs(20);

fn samples() -> Vec<Value> {
    let text = include_str!("peers/matrix-notify-samples.json");
    let all: Vec<Value> = serde_json::from_str(text).expect("samples");
    all.into_iter().map(|s| s["body"].clone()).collect()
}

const MATRIX: &str = "[matrix]\nresponse_wait_ms = 3000\n\n[[matrix_apps]]\napp_id = \"com.example.pushgw\"\napp = \"demo\"\nprovider = \"mock\"\n\n[[matrix_apps]]\napp_id = \"com.example.flaky.*\"\napp = \"demo\"\nprovider = \"flaky\"\n\n[[providers]]\nname = \"flaky\"\nkind = \"mock\"\nfail_first_attempts = 1\n";

/// A notify for `pushkey` of `app_id` with a message from alice.
fn notify(app_id: &str, pushkey: &str, event: &str) -> Value {
    json!({"notification": {
        "event_id": event, "room_id": "!room:localhost", "type": "m.room.message",
        "sender": "@alice:localhost", "sender_display_name": "alice", "prio": "high",
        "content": {"msgtype": "m.text", "body": "hello"}, "counts": {"unread": 1},
        "devices": [{"app_id": app_id, "pushkey": pushkey, "pushkey_ts": 1, "data": {}}]
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_notifications_reach_devices_as_sygnal_payloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", MATRIX));
    let homeserver = gw.api().with_key(None);

    // The invite and the message Synapse sent bob's pusher: no API key, answered at once.
    let bodies = samples();
    for body in &bodies[..2] {
        let r = homeserver.post("/_matrix/push/v1/notify", body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json, json!({"rejected": []}));
    }
    let inbox = eventually(WAIT, "both notifications on bob's device", || {
        let api = gw.api();
        async move {
            let inbox = api.inbox("mock", "cid-bob-1").await;
            (inbox.len() == 2).then_some(inbox)
        }
    })
    .await;
    let message = &inbox[1]["payload"];
    assert_eq!(message["type"], "m.room.message");
    assert_eq!(message["content"]["body"], "hello bob, this is alice");
    assert_eq!(message["sender_display_name"], "alice");
    assert_eq!(message["unread"], 1);
    assert_eq!(inbox[0]["payload"]["membership"], "invite");

    // Synapse retries a notify it got no answer to: the same delivery, once on the device.
    let r = homeserver.post("/_matrix/push/v1/notify", &bodies[1]).await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.api().inbox("mock", "cid-bob-1").await.len(), 2);

    // event_id_only: the ids and counts alone.
    let r = homeserver.post("/_matrix/push/v1/notify", &bodies[2]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let short = eventually(WAIT, "the event_id_only notification", || {
        let api = gw.api();
        async move { api.inbox("mock", "cid-bob-1").await.get(2).cloned() }
    })
    .await;
    assert_eq!(
        short["payload"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec![
            "event_id".to_string(),
            "room_id".to_string(),
            "unread".to_string()
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pushkeys_and_unknown_apps_are_rejected_transient_failures_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", MATRIX));
    let homeserver = gw.api().with_key(None);

    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &notify("com.example.other", "k-1", "$e1"),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": ["k-1"]}), "{}", r.text);

    // The mock calls gone-* devices uninstalled: rejected in the answer.
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &notify("com.example.pushgw", "gone-phone", "$e2"),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": ["gone-phone"]}), "{}", r.text);

    // A provider failing transiently (the glob entry's): not rejected, delivered on retry.
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &notify("com.example.flaky.ios", "flaky-phone", "$e3"),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": []}), "{}", r.text);
    eventually(WAIT, "the retried delivery", || {
        let api = gw.api();
        async move { (api.inbox("flaky", "flaky-phone").await.len() == 1).then_some(()) }
    })
    .await;

    // Bad bodies get 400, not 5xx; the body limit holds.
    let r = homeserver
        .post("/_matrix/push/v1/notify", &json!({"notification": {}}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.code(), "invalid_notification");
    let huge = notify("com.example.pushgw", "k", &"x".repeat(10_000));
    let r = homeserver.post("/_matrix/push/v1/notify", &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);

    let metrics = gw.api().get("/metrics").await.text;
    for (app_id, result) in [
        ("unknown", "unknown_app"),
        ("com.example.pushgw", "rejected"),
        ("com.example.flaky.*", "accepted"),
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("pushgate_matrix_notifications_total")
                    && l.contains(&format!("app_id=\"{app_id}\""))
                    && l.contains(&format!("result=\"{result}\""))),
            "{app_id} {result} counted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushkey_found_gone_after_the_answer_is_rejected_by_the_next_notify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = "[matrix]\nresponse_wait_ms = 200\n\n[[matrix_apps]]\napp_id = \"com.example.slow\"\napp = \"demo\"\nprovider = \"slow\"\n\n[[providers]]\nname = \"slow\"\nkind = \"mock\"\nsend_latency_ms = 700\n";
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", slow));
    let homeserver = gw.api().with_key(None);
    // The provider answers after the notify did: nothing to reject yet.
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &notify("com.example.slow", "gone-late", "$l1"),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": []}), "{}", r.text);
    // Once it called the device gone, the next notify says so at once.
    let rejected = eventually(WAIT, "the next notify to reject the pushkey", || {
        let homeserver = homeserver.clone();
        async move {
            let r = homeserver
                .post(
                    "/_matrix/push/v1/notify",
                    &notify("com.example.slow", "gone-late", "$l2"),
                )
                .await;
            (r.json["rejected"] == json!(["gone-late"])).then_some(r)
        }
    })
    .await;
    assert_eq!(rejected.status, StatusCode::OK);
    // Bound again (the app registered it anew): no longer rejected at once.
    assert_eq!(
        gw.api().bind("dana", "slow", "gone-late").await.status,
        StatusCode::OK
    );
    let started = std::time::Instant::now();
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &notify("com.example.slow", "gone-late", "$l3"),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": []}), "{}", r.text);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "it waited for the send instead of rejecting from memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_pushers_get_sygnals_data_and_gone_tokens_are_rejected() {
    use pushgate_fcm::emulator as fcm;
    let dir = tempfile::tempdir().expect("tempdir");
    let account = fcm::generate_service_account("matrix-test").expect("service account");
    let emu = fcm::Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        account,
        fcm::EmulatorConfig::default(),
    )
    .await
    .expect("fcm emulator");
    emu.write_service_account(&dir.path().join("sa.json"))
        .expect("service account file");
    let extra = format!(
        "[[matrix_apps]]\napp_id = \"com.example.android\"\napp = \"demo\"\nprovider = \"fcm\"\n\n[[providers]]\nname = \"fcm\"\nkind = \"fcm\"\nservice_account_file = \"sa.json\"\nbase_url = \"{}\"\ntimeout_ms = 2000\n",
        emu.url()
    );
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", &extra));
    let homeserver = gw.api().with_key(None);
    let token = format!("fcm-token:APA91b{}", "q".repeat(140));
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &notify("com.example.android", &token, "$f1"),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": []}), "{}", r.text);
    let got = eventually(WAIT, "the data message on the phone", || {
        let inbox = emu.inbox(&token);
        async move { inbox.first().cloned() }
    })
    .await;
    assert_eq!(got.data["content_body"], "hello");
    assert_eq!(got.data["sender"], "@alice:localhost");
    assert_eq!(got.data["prio"], "high");
    assert_eq!(got.data["unread"], "1");
    assert_eq!(got.android["priority"], "high");
    // FCM's UNREGISTERED within the wait: rejected, and Synapse would drop the pusher.
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &notify("com.example.android", "unregistered-token-9", "$f2"),
        )
        .await;
    assert_eq!(
        r.json,
        json!({"rejected": ["unregistered-token-9"]}),
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_pushers_get_sygnals_aps_and_gone_tokens_are_rejected() {
    use base64::Engine;
    use pushgate_apns::emulator as apns;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = pushgate_apns::ProviderKey::generate();
    std::fs::write(dir.path().join("AuthKey.p8"), key.to_pem().expect("pem")).expect("key");
    let tls = apns::generate_tls(dir.path()).expect("tls");
    let emu = apns::Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        key.verifying_key(),
        &tls,
        apns::EmulatorConfig::default(),
    )
    .await
    .expect("apns emulator");
    let c = emu.config();
    let extra = format!(
        "[[matrix_apps]]\napp_id = \"com.example.ios\"\napp = \"demo\"\nprovider = \"apns\"\n\n[[providers]]\nname = \"apns\"\nkind = \"apns\"\nteam_id = \"{}\"\nkey_id = \"{}\"\nprivate_key_file = \"AuthKey.p8\"\ntopic = \"{}\"\nbase_url = \"{}\"\nca_file = \"apns-emu-ca.pem\"\ntimeout_ms = 3000\n",
        c.team_id,
        c.key_id,
        c.topic,
        emu.url()
    );
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", &extra));
    let homeserver = gw.api().with_key(None);
    // Pushers register the device token base64-encoded, as Element iOS does.
    let b64 = |token: &[u8]| base64::engine::general_purpose::STANDARD.encode(token);
    let token = [0x5a_u8; 32];
    let mut body = notify("com.example.ios", &b64(&token), "$a1");
    body["notification"]["room_name"] = json!("Team");
    body["notification"]["devices"][0]["data"] =
        json!({"default_payload": {"aps": {"mutable-content": 1}, "app": "element"}});
    let r = homeserver.post("/_matrix/push/v1/notify", &body).await;
    assert_eq!(r.json, json!({"rejected": []}), "{}", r.text);
    let hex_token = hex::encode(token);
    let got = eventually(WAIT, "the alert on the iPhone", || {
        let inbox = emu.inbox(&hex_token);
        async move { inbox.first().cloned() }
    })
    .await;
    assert_eq!(
        (got.push_type.as_str(), got.priority.as_str()),
        ("alert", "10")
    );
    assert_eq!(
        got.payload["aps"],
        json!({"mutable-content": 1, "badge": 1, "alert": {
            "loc-key": "MSG_FROM_USER_IN_ROOM_WITH_CONTENT", "loc-args": ["alice", "Team", "hello"]}})
    );
    assert_eq!(got.payload["room_id"], "!room:localhost");
    assert_eq!(got.payload["event_id"], "$a1");
    assert_eq!(got.payload["app"], "element");
    // A badge update (counts only, low priority): an alert push carrying the badge alone.
    let counts = json!({"notification": {"counts": {"unread": 0, "missed_calls": 2},
        "prio": "low", "devices": [{"app_id": "com.example.ios", "pushkey": b64(&token)}]}});
    let r = homeserver.post("/_matrix/push/v1/notify", &counts).await;
    assert_eq!(r.json, json!({"rejected": []}), "{}", r.text);
    let badge = eventually(WAIT, "the badge update", || {
        let inbox = emu.inbox(&hex_token);
        async move { inbox.get(1).cloned() }
    })
    .await;
    assert_eq!(badge.payload["aps"], json!({"badge": 2}));
    assert_eq!(
        (badge.push_type.as_str(), badge.priority.as_str()),
        ("alert", "5")
    );
    // APNs' 410 Unregistered within the wait: rejected; a pushkey that is no base64 too.
    let mut gone = [0u8; 32];
    gone[..2].copy_from_slice(&[0xde, 0xad]);
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &notify("com.example.ios", &b64(&gone), "$a2"),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": [b64(&gone)]}), "{}", r.text);
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &notify("com.example.ios", "not base64!", "$a3"),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": ["not base64!"]}), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_push_pushers_take_their_subscription_from_each_notify() {
    use std::sync::Arc;
    use support::webpush::{b64, push_service, Browser, PushService};
    let dir = tempfile::tempdir().expect("tempdir");
    let key = pushgate_webpush::vapid::VapidKey::generate();
    std::fs::write(dir.path().join("vapid.pem"), key.to_pem().expect("pem")).expect("key");
    let service = Arc::new(PushService::default());
    let base = push_service(service.clone()).await;
    let browser = Browser::new();
    service
        .browsers
        .lock()
        .expect("lock")
        .insert("/sub/1".into(), browser.clone());
    let extra = "[[matrix_apps]]\napp_id = \"com.example.web\"\napp = \"demo\"\nprovider = \"webpush\"\n\n[[providers]]\nname = \"webpush\"\nkind = \"webpush\"\nvapid_private_key_file = \"vapid.pem\"\nsubject = \"mailto:ops@example.com\"\nallowed_endpoints = [\"127.0.0.1:*\"]\n";
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", extra));
    let homeserver = gw.api().with_key(None);
    let pusher = |event: &str, data: Value| {
        let mut body = notify("com.example.web", &browser.p256dh(), event);
        body["notification"]["devices"][0]["data"] = data;
        body
    };
    // As Sygnal's webpush pushkin: pushkey = p256dh, data.endpoint and data.auth.
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &pusher(
                "$w1",
                json!({"endpoint": format!("{base}/sub/1"), "auth": b64(&browser.auth)}),
            ),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": []}), "{}", r.text);
    let pushed = eventually(WAIT, "the push, decrypted by the browser", || {
        let pushes = service.decrypted("/sub/1");
        async move { pushes.first().cloned() }
    })
    .await;
    assert_eq!(pushed["content"]["body"], "hello");
    assert_eq!(pushed["room_id"], "!room:localhost");
    assert_eq!(pushed["unread"], 1);

    // An endpoint outside allowed_endpoints is dropped, not rejected (a config mistake must
    // not delete users' pushers); a pusher without data.auth is malformed: rejected.
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &pusher(
                "$w2",
                json!({"endpoint": "https://10.0.0.7/push/1", "auth": b64(&browser.auth)}),
            ),
        )
        .await;
    assert_eq!(r.json, json!({"rejected": []}), "{}", r.text);
    let r = homeserver
        .post(
            "/_matrix/push/v1/notify",
            &pusher("$w3", json!({"endpoint": format!("{base}/sub/1")})),
        )
        .await;
    assert_eq!(
        r.json,
        json!({"rejected": [browser.p256dh()]}),
        "{}",
        r.text
    );
    let metrics = gw.api().get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pushgate_matrix_notifications_total")
                && l.contains("result=\"endpoint_refused\"")),
        "the dropped endpoint is counted"
    );
}
