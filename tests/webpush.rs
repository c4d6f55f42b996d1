//! Web Push end to end: the real gateway sends to a push service on 127.0.0.1 (in this test)
//! that checks the VAPID token against the gateway's public key, decrypts each message with
//! the subscription's private key (RFC 8291 as a browser does), and answers 201 — or 410 for
//! an expired subscription, 429 with Retry-After once for a busy one.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use p256::ecdsa::signature::Verifier;
use serde_json::json;
use support::app_server::AppServer;
use support::eventually;
use support::gateway::{config, GatewayProcess};
use support::webpush::{b64, push_service, unb64, Browser, PushService as Service};

const WAIT: Duration = Duration::from_secs(20);

/// A VAPID key written to `dir/vapid.pem`, and the `[[providers]]` table of a Web Push
/// provider using it (`extra` adds keys).
fn webpush_provider(
    dir: &std::path::Path,
    extra: &str,
) -> (pushgate_webpush::vapid::VapidKey, String) {
    let key = pushgate_webpush::vapid::VapidKey::generate();
    let pem = dir.join("vapid.pem");
    std::fs::write(&pem, key.to_pem().expect("pem")).expect("write");
    let provider = format!(
        "[[providers]]\nname = \"webpush\"\nkind = \"webpush\"\nvapid_private_key_file = \"{}\"\nsubject = \"mailto:ops@example.com\"\n{extra}\n",
        pem.display()
    );
    (key, provider)
}

/// Checks `Authorization: vapid t=<jwt>, k=<key>` for `origin` against `public`.
fn check_vapid(headers: &http::HeaderMap, origin: &str, public: &str) {
    let value = headers["authorization"].to_str().expect("ascii");
    let rest = value.strip_prefix("vapid t=").expect("vapid scheme");
    let (token, k) = rest.split_once(", k=").expect("t and k");
    assert_eq!(k, public, "the gateway's key");
    let parts: Vec<&str> = token.split('.').collect();
    let claims: serde_json::Value = serde_json::from_slice(&unb64(parts[1])).expect("claims");
    assert_eq!(claims["aud"], origin);
    assert_eq!(claims["sub"], "mailto:ops@example.com");
    let verifier = p256::ecdsa::VerifyingKey::from_sec1_bytes(&unb64(k)).expect("key");
    let signature = p256::ecdsa::Signature::from_slice(&unb64(parts[2])).expect("sig");
    verifier
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("signed by the gateway's key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_browser_encrypted_and_expired_subscriptions_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Arc::new(Service::default());
    let base = push_service(service.clone()).await;
    let origin = base.clone();
    let (key, provider) = webpush_provider(dir.path(), "allowed_endpoints = [\"127.0.0.1:*\"]\n\n[delivery]\nretry_base_ms = 100\nretry_max_ms = 200");
    let app = AppServer::start().await;
    let gw = GatewayProcess::start(
        dir.path(),
        &config(dir.path(), Some(&app.url), "", &provider),
    );
    let api = gw.api();
    let laptop = Browser::new();
    let subscription = |path: &str, b: &Browser| json!({"endpoint": format!("{base}/{path}"), "keys": {"p256dh": b.p256dh(), "auth": b64(&b.auth)}, "expirationTime": null});
    let bound = api
        .post(
            "/v1/apps/demo/aliases/bob/devices",
            &json!({"provider": "webpush", "cid": "bob-laptop", "data": subscription("sub/1", &laptop)}),
        )
        .await;
    assert_eq!(bound.status, StatusCode::OK, "{}", bound.text);
    assert_eq!(
        bound.json["devices"][0]["data"]["keys"]["auth"],
        "<redacted>"
    );
    assert_eq!(
        bound.json["devices"][0]["data"]["endpoint"],
        format!("{base}/sub/1")
    );

    let sent = api
        .send(&json!({"to": {"alias": "bob"}, "payload": {"text": "hi bob"}, "provider": "webpush", "ttl_seconds": 600, "urgency": "high", "collapse_key": "chat-42"}))
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    let id = sent.json["message_id"].as_str().expect("id").to_string();
    eventually(WAIT, "the push to be sent", || {
        let (api, id) = (api.clone(), id.clone());
        async move { api.all_deliveries_are(&id, "sent").await.then_some(()) }
    })
    .await;
    let (headers, body) = service.received.lock().expect("lock")["/sub/1"][0].clone();
    assert_eq!(headers["content-encoding"], "aes128gcm");
    assert_eq!(headers["content-type"], "application/octet-stream");
    let ttl: u64 = headers["ttl"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert!((590..=600).contains(&ttl), "TTL from the message: {ttl}");
    assert_eq!(headers["urgency"], "high");
    assert_eq!(headers["topic"], "chat-42");
    check_vapid(&headers, &origin, &key.public_base64());
    let plain = laptop.decrypt(&body);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&plain).expect("json"),
        json!({"text": "hi bob"})
    );

    // Refused when sent: a payload over one record's 3993 bytes, a collapse key Topic cannot be.
    let big = api
        .send(&json!({"to": {"alias": "bob"}, "payload": "x".repeat(3994)}))
        .await;
    assert_eq!(big.status, StatusCode::BAD_REQUEST, "{}", big.text);
    assert_eq!(big.code(), "payload_too_large");
    let fits = api
        .send(&json!({"to": {"alias": "bob"}, "payload": "x".repeat(3993)}))
        .await;
    assert_eq!(fits.status, StatusCode::ACCEPTED, "{}", fits.text);
    let key = api
        .send(&json!({"to": {"alias": "bob"}, "payload": 1, "collapse_key": "has space"}))
        .await;
    assert_eq!(key.code(), "invalid_collapse_key");

    // A busy service (429, Retry-After) is retried; an expired subscription fails for good.
    let phone = Browser::new();
    api.post(
        "/v1/apps/demo/aliases/carol/devices",
        &json!({"provider": "webpush", "cid": "carol-phone", "data": subscription("busy/1", &phone)}),
    )
    .await;
    api.post(
        "/v1/apps/demo/aliases/dave/devices",
        &json!({"provider": "webpush", "cid": "dave-old", "data": subscription("expired/1", &phone)}),
    )
    .await;
    *service.busy_once.lock().expect("lock") = true;
    let busy = api
        .send(&json!({"to": {"alias": "carol"}, "payload": "hello"}))
        .await;
    let busy = busy.json["message_id"].as_str().expect("id").to_string();
    let gone = api
        .send(&json!({"to": {"alias": "dave"}, "payload": "hello"}))
        .await;
    let gone = gone.json["message_id"].as_str().expect("id").to_string();
    eventually(WAIT, "the busy push to go through", || {
        let (api, id) = (api.clone(), busy.clone());
        async move { api.all_deliveries_are(&id, "sent").await.then_some(()) }
    })
    .await;
    let busy_delivery = api.message(&busy).await.json["deliveries"][0].clone();
    assert_eq!(busy_delivery["attempts"], 2, "{busy_delivery}");
    assert_eq!(
        phone.decrypt(&service.received.lock().expect("lock")["/busy/1"][0].1),
        b"hello"
    );
    eventually(WAIT, "the expired subscription to fail", || {
        let (api, id) = (api.clone(), gone.clone());
        async move { api.all_deliveries_are(&id, "failed").await.then_some(()) }
    })
    .await;
    assert_eq!(
        api.message(&gone).await.json["deliveries"][0]["error"]["code"],
        "unsubscribed"
    );
    // The expired subscription's device is unbound, and the app server told.
    let event = eventually(WAIT, "device.unregistered", || {
        let app = app.clone();
        async move {
            app.accepted_events("device.unregistered")
                .into_iter()
                .next()
        }
    })
    .await;
    assert_eq!(
        event.json["data"],
        json!({"provider": "webpush", "cid": "dave-old", "alias": "dave", "reason": "unsubscribed"})
    );
    let dave = api.get("/v1/apps/demo/aliases/dave").await;
    assert_eq!(dave.status, StatusCode::NOT_FOUND);
    let again = api
        .send(&json!({"to": {"alias": "dave"}, "payload": "hello"}))
        .await;
    assert_eq!(
        again.code(),
        "unknown_alias",
        "an alias left with no device"
    );
    assert_eq!(
        api.metric("pushgate_devices_unregistered_total{provider=\"webpush\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_that_point_inside_or_carry_bad_keys_are_refused_at_bind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_key, provider) = webpush_provider(dir.path(), "");
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", &provider));
    let api = gw.api();
    let b = Browser::new();
    let keys = json!({"p256dh": b.p256dh(), "auth": b64(&b.auth)});
    for (endpoint, keys, why) in [
        ("http://push.example.com/1", keys.clone(), "https"),
        ("https://127.0.0.1/1", keys.clone(), "not public"),
        ("https://169.254.169.254/latest", keys.clone(), "not public"),
        ("https://[::1]/1", keys.clone(), "not public"),
        (
            "https://push.example.com/1",
            json!({"p256dh": "AAAA", "auth": b64(&b.auth)}),
            "p256dh",
        ),
        (
            "https://push.example.com/1",
            json!({"p256dh": b.p256dh(), "auth": "AAAA"}),
            "auth",
        ),
    ] {
        let r = api
            .post(
                "/v1/apps/demo/aliases/bob/devices",
                &json!({"provider": "webpush", "cid": "c1", "data": {"endpoint": endpoint, "keys": keys}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{endpoint}: {}", r.text);
        assert_eq!(r.code(), "invalid_device_data");
        assert!(r.text.contains(why), "{endpoint}: says {why:?}: {}", r.text);
    }
    let missing = api
        .post(
            "/v1/apps/demo/aliases/bob/devices",
            &json!({"provider": "webpush", "cid": "c1"}),
        )
        .await;
    assert_eq!(
        missing.code(),
        "invalid_device_data",
        "a webpush device needs its subscription"
    );
}

/// With `device_acks = true` the browser gets `{"payload", "ack"}`; posting the token makes
/// the delivery `delivered` (webhook included), a repeat changes nothing, a forgery is 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_acks_make_web_push_deliveries_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Arc::new(Service::default());
    let base = push_service(service.clone()).await;
    let (_key, provider) = webpush_provider(
        dir.path(),
        "allowed_endpoints = [\"127.0.0.1:*\"]\ndevice_acks = true",
    );
    let app = AppServer::start().await;
    let gw = GatewayProcess::start(
        dir.path(),
        &config(dir.path(), Some(&app.url), "", &provider),
    );
    let api = gw.api();
    let browser = Browser::new();
    api.post(
        "/v1/apps/demo/aliases/bob/devices",
        &json!({"provider": "webpush", "cid": "bob-laptop", "data": {"endpoint": format!("{base}/sub/9"), "keys": {"p256dh": browser.p256dh(), "auth": b64(&browser.auth)}}}),
    )
    .await;
    let sent = api
        .send(
            &json!({"to": {"alias": "bob"}, "payload": {"text": "ack me"}, "provider": "webpush"}),
        )
        .await;
    let id = sent.json["message_id"].as_str().expect("id").to_string();
    eventually(WAIT, "the push", || {
        let (api, id) = (api.clone(), id.clone());
        async move { api.all_deliveries_are(&id, "sent").await.then_some(()) }
    })
    .await;
    let body = service.received.lock().expect("lock")["/sub/9"][0]
        .1
        .clone();
    let envelope: serde_json::Value =
        serde_json::from_slice(&browser.decrypt(&body)).expect("json");
    assert_eq!(envelope["payload"], json!({"text": "ack me"}));
    let token = envelope["ack"].as_str().expect("token").to_string();

    let anonymous = api.with_key(None);
    let forged = anonymous
        .post(
            "/v1/device-acks",
            &json!({"ack": format!("{id}-0.00000000000000000000000000000000")}),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    assert_eq!(forged.code(), "forged_ack");
    assert!(
        api.all_deliveries_are(&id, "sent").await,
        "a forgery changes nothing"
    );
    let ack = anonymous
        .post("/v1/device-acks", &json!({"ack": token}))
        .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.text);
    assert_eq!(ack.json["result"], "applied");
    assert!(api.all_deliveries_are(&id, "delivered").await);
    let again = anonymous
        .post("/v1/device-acks", &json!({"ack": token}))
        .await;
    assert_eq!(again.json["result"], "duplicate");
    let event = eventually(WAIT, "message.delivered", || {
        let app = app.clone();
        async move { app.accepted_events("message.delivered").into_iter().next() }
    })
    .await;
    assert_eq!(event.json["data"]["message_id"], id.as_str());
    assert_eq!(
        api.metric("pushgate_device_acks_total{result=\"forged\"}")
            .await,
        1.0
    );

    // A notification joins the envelope, for the service worker to show.
    let sent = api
        .send(
            &json!({"to": {"alias": "bob"}, "payload": {"text": "see it"}, "provider": "webpush",
            "notification": {"title": "Alice", "body": "see it"}}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    let body = eventually(WAIT, "the second push", || {
        let service = service.clone();
        async move {
            service.received.lock().expect("lock")["/sub/9"]
                .get(1)
                .map(|r| r.1.clone())
        }
    })
    .await;
    let envelope: serde_json::Value =
        serde_json::from_slice(&browser.decrypt(&body)).expect("json");
    assert_eq!(envelope["payload"], json!({"text": "see it"}));
    assert_eq!(
        envelope["notification"],
        json!({"title": "Alice", "body": "see it"})
    );
    assert!(envelope["ack"].is_string());
}

/// web-push-testing (npm), a Web Push service written by others, run on 127.0.0.1 for this
/// test; `scripts/test.sh` installs it (`npm ci` in `tests/peers`).
struct WebPushTesting {
    child: std::process::Child,
    url: String,
}

impl WebPushTesting {
    fn start() -> Self {
        use std::io::BufRead;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
        assert!(
            dir.join("node_modules/web-push-testing").exists(),
            "web-push-testing is not installed: run scripts/test.sh (it runs `npm ci` in tests/peers)"
        );
        let mut child = std::process::Command::new("node")
            .arg(dir.join("web-push-testing.js"))
            .arg("0")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node runs (scripts/test.sh installs what the tests need)");
        let stdout = child.stdout.take().expect("stdout");
        let url = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
            .expect("web-push-testing started");
        WebPushTesting { child, url }
    }
}

impl Drop for WebPushTesting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_push_testing_receives_decrypts_and_expires() {
    let peer = WebPushTesting::start();
    let service = support::client::Api::new(&peer.url, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, provider) = webpush_provider(dir.path(), "allowed_endpoints = [\"127.0.0.1:*\"]");
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", &provider));
    let api = gw.api();
    let subscribe = |application_server_key: String| {
        let service = service.clone();
        async move {
            let r = service
                .post(
                    "/subscribe",
                    &json!({"applicationServerKey": application_server_key}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.json["data"].clone()
        }
    };
    let deliver = |alias: &'static str, sub: serde_json::Value| {
        let api = api.clone();
        async move {
            let bound = api
                .post(
                    &format!("/v1/apps/demo/aliases/{alias}/devices"),
                    &json!({"provider": "webpush", "cid": format!("{alias}-browser"), "data": {"endpoint": sub["endpoint"], "keys": sub["keys"]}}),
                )
                .await;
            assert_eq!(bound.status, StatusCode::OK, "{}", bound.text);
            let sent = api
                .send(&json!({"to": {"alias": alias}, "payload": {"text": format!("hi {alias}")}}))
                .await;
            assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
            sent.json["message_id"].as_str().expect("id").to_string()
        }
    };
    let wait_for = |id: String, state: &'static str| {
        let api = api.clone();
        eventually(WAIT, state, move || {
            let (api, id) = (api.clone(), id.clone());
            async move { api.all_deliveries_are(&id, state).await.then_some(()) }
        })
    };

    // Subscribed with the gateway's key: the service checks the VAPID token and decrypts.
    let sub = subscribe(key.public_base64()).await;
    let id = deliver("bob", sub.clone()).await;
    wait_for(id, "sent").await;
    let got = service
        .post(
            "/get-notifications",
            &json!({"clientHash": sub["clientHash"]}),
        )
        .await;
    assert_eq!(
        got.json["data"]["messages"],
        json!([r#"{"text":"hi bob"}"#]),
        "{}",
        got.text
    );

    // Expired at the service: 410, the delivery fails and the device is unbound.
    let expire = service
        .post(
            &format!(
                "/expire-subscription/{}",
                sub["clientHash"].as_str().expect("hash")
            ),
            &json!({}),
        )
        .await;
    assert_eq!(expire.status, StatusCode::OK);
    let id = api
        .send(&json!({"to": {"alias": "bob"}, "payload": "again"}))
        .await
        .json["message_id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_for(id.clone(), "failed").await;
    assert_eq!(
        api.message(&id).await.json["deliveries"][0]["error"]["code"],
        "unsubscribed"
    );
    eventually(WAIT, "bob's device unbound", || {
        let api = api.clone();
        async move {
            (api.get("/v1/apps/demo/aliases/bob").await.status == StatusCode::NOT_FOUND)
                .then_some(())
        }
    })
    .await;

    // Subscribed with another server's key: the service refuses the gateway's token.
    let other = pushgate_webpush::vapid::VapidKey::generate();
    let stranger = subscribe(other.public_base64()).await;
    let id = deliver("carol", stranger.clone()).await;
    wait_for(id.clone(), "failed").await;
    let refused = service
        .post(
            "/get-notifications",
            &json!({"clientHash": stranger["clientHash"]}),
        )
        .await;
    assert_eq!(
        refused.json["data"]["messages"],
        json!([]),
        "nothing accepted"
    );
}
