//! The checks every provider passes, and what a provider's test peer supplies for them.

use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};

use crate::support::app_server::AppServer;
use crate::support::client::Api;
use crate::support::eventually;
use crate::support::gateway::{config, GatewayProcess};

const WAIT: Duration = Duration::from_secs(30);

/// A device as bound: its cid and its provider data, if the provider takes any.
#[derive(Clone, Debug)]
pub struct Device {
    pub cid: String,
    pub data: Option<Value>,
}

impl Device {
    pub fn cid(cid: &str) -> Device {
        Device {
            cid: cid.to_string(),
            data: None,
        }
    }
}

/// A provider's emulator or peer, as the suite drives it.
pub trait Peer: Sized {
    /// The provider's `name` in the config.
    const NAME: &'static str;

    /// Starts the peer; `dir` is the gateway's directory (key files may go there).
    async fn start(dir: &Path) -> Self;

    /// The provider's `[[providers]]` table.
    fn provider_table(&self) -> String;

    /// Called once the gateway listens at `gateway` (to point receipts or acks at it).
    fn connect(&self, gateway: &str);

    /// A device the provider delivers to.
    fn device(&self, n: usize) -> Device;

    /// A device the provider refuses permanently without calling it gone, and the code the
    /// delivery fails with.
    fn refused_device(&self) -> (Device, &'static str);

    /// A device the provider reports gone (uninstalled app, expired subscription); `None`
    /// for a provider with no such answer (the suite says so).
    fn gone_device(&self) -> Option<Device>;

    /// Makes the provider fail every send transiently (`true`) or work again (`false`); a
    /// peer that cannot be switched at run time fails each delivery's first attempt instead.
    fn fail_transiently(&self, on: bool);

    /// The idempotency keys (request ids) of what reached `device`, oldest first.
    async fn received(&self, device: &Device) -> Vec<String>;

    /// The title and body the last message to `device` would show with the app not running,
    /// read from the provider's own shape of it.
    async fn shown(&self, device: &Device) -> Option<(String, String)>;
}

async fn bind(api: &Api, alias: &str, provider: &str, device: &Device) {
    let mut body = json!({"provider": provider, "cid": device.cid});
    if let Some(data) = &device.data {
        body["data"] = data.clone();
    }
    let r = api
        .post(&format!("/v1/apps/demo/aliases/{alias}/devices"), &body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "bind {alias}: {}", r.text);
}

async fn send(api: &Api, alias: &str, provider: &str, payload: Value) -> String {
    let r = api
        .send(&json!({"to": {"alias": alias}, "payload": payload, "provider": provider}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "send to {alias}: {}",
        r.text
    );
    r.json["message_id"]
        .as_str()
        .expect("message_id")
        .to_string()
}

/// The message's single delivery once `done` holds for it.
async fn delivery_when(api: &Api, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(WAIT, what, || {
        let api = api.clone();
        let id = id.to_string();
        let done = &done;
        async move {
            let d = api.message(&id).await.json["deliveries"][0].clone();
            done(&d).then_some(d)
        }
    })
    .await
}

async fn devices_of(api: &Api, alias: &str) -> Vec<String> {
    let r = api.get(&format!("/v1/apps/demo/aliases/{alias}")).await;
    r.json["devices"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .filter_map(|d| d["cid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every check, on one gateway configured with `P`'s provider.
pub async fn run<P: Peer>() {
    let name = P::NAME;
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = P::start(dir.path()).await;
    let app = AppServer::start().await;
    let extra = format!(
        "{}\n[delivery]\nretry_base_ms = 100\nretry_max_ms = 400\nmax_attempts = 20\n",
        peer.provider_table()
    );
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), Some(&app.url), "", &extra));
    peer.connect(&gw.url);
    let api = gw.api();

    // Sent, then delivered by the provider's receipt or the device's ack; the idempotency key
    // reached the provider.
    let bob = peer.device(1);
    bind(&api, "bob", name, &bob).await;
    let id = send(&api, "bob", name, json!({"text": "hello bob"})).await;
    let d = delivery_when(&api, &id, &format!("{name}: delivered"), |d| {
        d["state"] == "delivered"
    })
    .await;
    assert_eq!(d["provider"], name);
    let key = format!("{id}-0");
    let seen = peer.received(&bob).await;
    assert!(
        seen.contains(&key),
        "{name}: the provider saw the idempotency key {key}: {seen:?}"
    );

    // A notification part travels in the provider's own shape.
    let r = api
        .send(
            &json!({"to": {"alias": "bob"}, "provider": name, "payload": {"text": "lunch?"},
            "notification": {"title": "Alice", "body": "Lunch at noon?"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{name}: {}", r.text);
    let id = r.json["message_id"].as_str().expect("id").to_string();
    delivery_when(&api, &id, &format!("{name}: notification delivered"), |d| {
        d["state"] == "delivered"
    })
    .await;
    assert_eq!(
        peer.shown(&bob).await,
        Some(("Alice".to_string(), "Lunch at noon?".to_string())),
        "{name}: the notification as the device shows it"
    );
    let r = api
        .send(
            &json!({"to": {"alias": "bob"}, "provider": name, "payload": {},
            "notification": {"title": "", "body": ""}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.text);
    assert_eq!(r.code(), "invalid_notification");

    // A permanent refusal fails the delivery with the provider's code; the device stays.
    let (refused, code) = peer.refused_device();
    bind(&api, "carol", name, &refused).await;
    let id = send(&api, "carol", name, json!({"text": "hello carol"})).await;
    let d = delivery_when(&api, &id, &format!("{name}: failed"), |d| {
        d["state"] == "failed"
    })
    .await;
    assert_eq!(d["error"]["code"], code, "{name}: {d}");
    assert_eq!(
        d["attempts"], 1,
        "{name}: a permanent error is not retried: {d}"
    );
    assert_eq!(devices_of(&api, "carol").await, vec![refused.cid.clone()]);

    // Transient failures are retried, and the delivery goes through once the provider is back.
    peer.fail_transiently(true);
    let id = send(&api, "bob", name, json!({"text": "again"})).await;
    delivery_when(&api, &id, &format!("{name}: retried"), |d| {
        d["attempts"].as_u64().is_some_and(|a| a >= 2)
    })
    .await;
    peer.fail_transiently(false);
    delivery_when(
        &api,
        &id,
        &format!("{name}: delivered after retries"),
        |d| d["state"] == "delivered",
    )
    .await;

    // A device the provider reports gone is unbound, with a device.unregistered event.
    match peer.gone_device() {
        Some(gone) => {
            bind(&api, "dave", name, &gone).await;
            let id = send(&api, "dave", name, json!({"text": "hello dave"})).await;
            delivery_when(&api, &id, &format!("{name}: failed, gone"), |d| {
                d["state"] == "failed"
            })
            .await;
            eventually(WAIT, &format!("{name}: dave's device unbound"), || {
                let api = api.clone();
                async move { devices_of(&api, "dave").await.is_empty().then_some(()) }
            })
            .await;
            let event = eventually(WAIT, "device.unregistered", || {
                let app = app.clone();
                async move {
                    app.accepted_events("device.unregistered")
                        .into_iter()
                        .next()
                }
            })
            .await;
            assert_eq!(event.json["data"]["provider"], name);
            assert_eq!(event.json["data"]["cid"], gone.cid.as_str());
            assert_eq!(event.json["data"]["alias"], "dave");
        }
        None => println!("{name}: the provider never reports a device gone; nothing to unbind"),
    }

    // The metrics carry the provider's label.
    let metrics = api.get("/metrics").await.text;
    let label = format!("provider=\"{name}\"");
    for series in [
        "pushgate_deliveries_total",
        "pushgate_provider_send_duration_seconds_count",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(series) && l.contains(&label)),
            "{series} has a series with {label}"
        );
    }
    let delivered: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("pushgate_deliveries_total")
                && l.contains(&label)
                && l.contains("outcome=\"delivered\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(delivered >= 2.0, "{name}: delivered count {delivered}");
}
