//! Each provider's test peer for the conformance suite: its emulator, and how to make it
//! refuse, fail and forget devices.

use std::path::Path;
use std::sync::Mutex;

use pushgate_apns::emulator as apns_emu;
use pushgate_fcm::emulator as fcm_emu;
use pushgate_getui::emulator as getui_emu;

use crate::suite::{Device, Peer};
use crate::support::client::Api;

/// `kind = "mock"`: the simulated provider inside the gateway, reached through its inbox
/// route. It cannot be switched at run time: every delivery's first attempt fails.
pub struct MockPeer {
    gateway: Mutex<Option<String>>,
}

impl Peer for MockPeer {
    const NAME: &'static str = "sim";

    async fn start(_dir: &Path) -> Self {
        MockPeer {
            gateway: Mutex::new(None),
        }
    }

    fn provider_table(&self) -> String {
        "[[providers]]\nname = \"sim\"\nkind = \"mock\"\nreceipt_delay_ms = 5\nfail_first_attempts = 1\n"
            .into()
    }

    fn connect(&self, gateway: &str) {
        *self.gateway.lock().expect("lock") = Some(gateway.to_string());
    }

    fn device(&self, n: usize) -> Device {
        Device::cid(&format!("phone-{n}"))
    }

    fn refused_device(&self) -> (Device, &'static str) {
        (Device::cid("unknown-1"), "unknown_cid")
    }

    fn gone_device(&self) -> Option<Device> {
        Some(Device::cid("gone-1"))
    }

    fn fail_transiently(&self, _on: bool) {}

    async fn received(&self, device: &Device) -> Vec<String> {
        let gateway = self
            .gateway
            .lock()
            .expect("lock")
            .clone()
            .expect("connected");
        Api::new(&gateway, Some(crate::support::gateway::API_KEY))
            .inbox(Self::NAME, &device.cid)
            .await
            .iter()
            .filter_map(|m| m["request_id"].as_str().map(str::to_string))
            .collect()
    }

    async fn shown(&self, device: &Device) -> Option<(String, String)> {
        let gateway = self.gateway.lock().expect("lock").clone()?;
        let inbox = Api::new(&gateway, Some(crate::support::gateway::API_KEY))
            .inbox(Self::NAME, &device.cid)
            .await;
        let n = &inbox.last()?["notification"];
        Some((n["title"].as_str()?.into(), n["body"].as_str()?.into()))
    }
}

/// `kind = "getui"`: the Getui emulator, its devices sending signed receipts.
pub struct GetuiPeer {
    emu: getui_emu::Emulator,
}

impl Peer for GetuiPeer {
    const NAME: &'static str = "getui";

    async fn start(_dir: &Path) -> Self {
        let emu = getui_emu::Emulator::start(
            "127.0.0.1:0".parse().expect("addr"),
            getui_emu::EmulatorConfig::default(),
        )
        .await
        .expect("getui emulator");
        GetuiPeer { emu }
    }

    fn provider_table(&self) -> String {
        let c = self.emu.config();
        format!(
            "[[providers]]\nname = \"getui\"\nkind = \"getui\"\nbase_url = \"{}\"\napp_id = \"{}\"\napp_key = \"{}\"\nmaster_secret = \"{}\"\ntimeout_ms = 2000\nstrategy = {{ default = 1, hw = 4, xm = 4 }}\n",
            self.emu.url(),
            c.app_id,
            c.app_key,
            c.master_secret
        )
    }

    fn connect(&self, gateway: &str) {
        self.emu
            .set_receipt_url(Some(format!("{gateway}/v1/callbacks/getui/receipts")));
    }

    fn device(&self, n: usize) -> Device {
        Device::cid(&format!("cid-{n:04}"))
    }

    /// Getui's 20001 "target user is invalid".
    fn refused_device(&self) -> (Device, &'static str) {
        (Device::cid("unknown-cid-1"), "20001")
    }

    /// Getui answers no "device gone": its invalid cids are refusals.
    fn gone_device(&self) -> Option<Device> {
        None
    }

    fn fail_transiently(&self, on: bool) {
        self.emu.set_faults(getui_emu::Faults {
            error_rate: if on { 1.0 } else { 0.0 },
            ..getui_emu::Faults::default()
        });
    }

    async fn received(&self, device: &Device) -> Vec<String> {
        self.emu
            .inbox(&device.cid)
            .into_iter()
            .map(|m| m.request_id)
            .collect()
    }

    /// What an offline Android phone shows: the vendor channels' notification.
    async fn shown(&self, device: &Device) -> Option<(String, String)> {
        let channel = self.emu.inbox(&device.cid).last()?.push_channel.clone()?;
        let n = &channel["android"]["ups"]["notification"];
        Some((n["title"].as_str()?.into(), n["body"].as_str()?.into()))
    }
}

/// `kind = "fcm"`: the FCM emulator, its devices posting their ack tokens to the gateway.
/// The service account file is named relative to the config file.
pub struct FcmPeer {
    emu: fcm_emu::Emulator,
}

impl Peer for FcmPeer {
    const NAME: &'static str = "fcm";

    async fn start(dir: &Path) -> Self {
        let account = fcm_emu::generate_service_account("conformance").expect("service account");
        let emu = fcm_emu::Emulator::start(
            "127.0.0.1:0".parse().expect("addr"),
            account,
            fcm_emu::EmulatorConfig::default(),
        )
        .await
        .expect("fcm emulator");
        emu.write_service_account(&dir.join("fcm-service-account.json"))
            .expect("service account file");
        FcmPeer { emu }
    }

    fn provider_table(&self) -> String {
        format!(
            "[[providers]]\nname = \"fcm\"\nkind = \"fcm\"\nservice_account_file = \"fcm-service-account.json\"\nbase_url = \"{}\"\ntimeout_ms = 2000\ndevice_acks = true\nreceipt_timeout_ms = 10000\n",
            self.emu.url()
        )
    }

    fn connect(&self, gateway: &str) {
        self.emu
            .set_device_ack_url(Some(format!("{gateway}/v1/device-acks")));
    }

    fn device(&self, n: usize) -> Device {
        Device::cid(&format!("fcm-token-{n}:APA91b{}", "x".repeat(140)))
    }

    fn refused_device(&self) -> (Device, &'static str) {
        (Device::cid("mismatched-sender-token"), "SENDER_ID_MISMATCH")
    }

    fn gone_device(&self) -> Option<Device> {
        Some(Device::cid("unregistered-token-1"))
    }

    fn fail_transiently(&self, on: bool) {
        self.emu.set_faults(fcm_emu::Faults {
            error_rate: if on { 1.0 } else { 0.0 },
            error_status: Some(503),
            ..fcm_emu::Faults::default()
        });
    }

    async fn received(&self, device: &Device) -> Vec<String> {
        self.emu
            .inbox(&device.cid)
            .into_iter()
            .filter_map(|m| m.data.get(pushgate_fcm::wire::REQUEST_ID_KEY).cloned())
            .collect()
    }

    async fn shown(&self, device: &Device) -> Option<(String, String)> {
        let n = self.emu.inbox(&device.cid).last()?.notification.clone()?;
        Some((n["title"].as_str()?.into(), n["body"].as_str()?.into()))
    }
}

/// `kind = "apns"`: the APNs emulator over HTTP/2 and TLS (its CA as `ca_file`), its devices
/// posting their ack tokens to the gateway. Key and CA files are named relative to the config.
pub struct ApnsPeer {
    emu: apns_emu::Emulator,
}

impl Peer for ApnsPeer {
    const NAME: &'static str = "apns";

    async fn start(dir: &Path) -> Self {
        let key = pushgate_apns::ProviderKey::generate();
        std::fs::write(dir.join("AuthKey.p8"), key.to_pem().expect("pem")).expect("key file");
        let tls = apns_emu::generate_tls(dir).expect("tls");
        let emu = apns_emu::Emulator::start(
            "127.0.0.1:0".parse().expect("addr"),
            key.verifying_key(),
            &tls,
            apns_emu::EmulatorConfig::default(),
        )
        .await
        .expect("apns emulator");
        ApnsPeer { emu }
    }

    fn provider_table(&self) -> String {
        let c = self.emu.config();
        format!(
            "[[providers]]\nname = \"apns\"\nkind = \"apns\"\nteam_id = \"{}\"\nkey_id = \"{}\"\nprivate_key_file = \"AuthKey.p8\"\ntopic = \"{}\"\nbase_url = \"{}\"\nca_file = \"apns-emu-ca.pem\"\ntimeout_ms = 3000\ndevice_acks = true\nreceipt_timeout_ms = 10000\n",
            c.team_id,
            c.key_id,
            c.topic,
            self.emu.url()
        )
    }

    fn connect(&self, gateway: &str) {
        self.emu
            .set_device_ack_url(Some(format!("{gateway}/v1/device-acks")));
    }

    fn device(&self, n: usize) -> Device {
        Device::cid(&format!("{n:04x}{}", "a1".repeat(30)))
    }

    fn refused_device(&self) -> (Device, &'static str) {
        (
            Device::cid(&format!("beef{}", "0".repeat(60))),
            "DeviceTokenNotForTopic",
        )
    }

    fn gone_device(&self) -> Option<Device> {
        Some(Device::cid(&format!("dead{}", "0".repeat(60))))
    }

    fn fail_transiently(&self, on: bool) {
        self.emu.set_faults(apns_emu::Faults {
            error_rate: if on { 1.0 } else { 0.0 },
            error_status: Some(503),
            ..apns_emu::Faults::default()
        });
    }

    async fn received(&self, device: &Device) -> Vec<String> {
        self.emu
            .inbox(&device.cid)
            .into_iter()
            .filter_map(|n| {
                n.payload[pushgate_apns::wire::REQUEST_ID_KEY]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    /// An alert: `aps.alert`, pushed as `alert`.
    async fn shown(&self, device: &Device) -> Option<(String, String)> {
        let n = self.emu.inbox(&device.cid).last()?.clone();
        if n.push_type != "alert" {
            return None;
        }
        let alert = &n.payload["aps"]["alert"];
        Some((
            alert["title"].as_str()?.into(),
            alert["body"].as_str()?.into(),
        ))
    }
}

/// `kind = "webpush"`: a push service in the test whose browsers decrypt each push and post
/// its ack (device acks); the VAPID key file is named relative to the config.
pub struct WebPushPeer {
    service: std::sync::Arc<crate::support::webpush::PushService>,
    url: String,
}

impl WebPushPeer {
    fn path(device: &Device) -> String {
        device
            .data
            .as_ref()
            .and_then(|d| d["endpoint"].as_str())
            .map_or(String::new(), |e| {
                e.split_once("//")
                    .and_then(|(_, rest)| rest.split_once('/'))
                    .map(|(_, path)| format!("/{path}"))
                    .unwrap_or_default()
            })
    }

    /// A subscription at `path` whose browser decrypts and acks.
    fn subscription(&self, cid: &str, path: &str) -> Device {
        let browser = crate::support::webpush::Browser::new();
        let keys = browser.keys();
        self.service
            .browsers
            .lock()
            .expect("lock")
            .insert(path.to_string(), browser);
        Device {
            cid: cid.to_string(),
            data: Some(
                serde_json::json!({"endpoint": format!("{}{path}", self.url), "keys": keys}),
            ),
        }
    }
}

impl Peer for WebPushPeer {
    const NAME: &'static str = "webpush";

    async fn start(dir: &Path) -> Self {
        let key = pushgate_webpush::vapid::VapidKey::generate();
        std::fs::write(dir.join("vapid.pem"), key.to_pem().expect("pem")).expect("key file");
        let service = std::sync::Arc::new(crate::support::webpush::PushService::default());
        let url = crate::support::webpush::push_service(service.clone()).await;
        WebPushPeer { service, url }
    }

    fn provider_table(&self) -> String {
        "[[providers]]\nname = \"webpush\"\nkind = \"webpush\"\nvapid_private_key_file = \"vapid.pem\"\nsubject = \"mailto:ops@example.com\"\nallowed_endpoints = [\"127.0.0.1:*\"]\ntimeout_ms = 3000\ndevice_acks = true\nreceipt_timeout_ms = 10000\n"
            .into()
    }

    fn connect(&self, gateway: &str) {
        *self.service.ack_url.lock().expect("lock") = Some(format!("{gateway}/v1/device-acks"));
    }

    fn device(&self, n: usize) -> Device {
        self.subscription(&format!("browser-{n}"), &format!("/sub/{n}"))
    }

    /// The push service refuses the gateway's VAPID token.
    fn refused_device(&self) -> (Device, &'static str) {
        (
            self.subscription("browser-refused", "/forbidden/1"),
            "vapid_rejected",
        )
    }

    fn gone_device(&self) -> Option<Device> {
        Some(self.subscription("browser-gone", "/expired/1"))
    }

    fn fail_transiently(&self, on: bool) {
        self.service
            .failing
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// The delivery id in each push's ack token (`<delivery id>.<mac>`).
    async fn received(&self, device: &Device) -> Vec<String> {
        self.service
            .decrypted(&Self::path(device))
            .iter()
            .filter_map(|p| p["ack"].as_str()?.split('.').next().map(str::to_string))
            .collect()
    }

    async fn shown(&self, device: &Device) -> Option<(String, String)> {
        let pushes = self.service.decrypted(&Self::path(device));
        let n = &pushes.last()?["notification"];
        Some((n["title"].as_str()?.into(), n["body"].as_str()?.into()))
    }
}

/// `kind = "plugin"`: the webhook provider plugin, POSTing to device endpoints in the test
/// that answer and send signed receipts back. The plugin ABI has no "device gone" status.
pub struct PluginPeer {
    devices: std::sync::Arc<PluginDevices>,
    /// The device endpoints' origin.
    url: String,
}

const PLUGIN_SECRET: &str = "conformance-plugin-secret-0123";

#[derive(Default)]
struct PluginDevices {
    /// What each device endpoint got: `(X-Pushgate-Delivery, body)`.
    received: Mutex<std::collections::HashMap<String, Vec<(String, serde_json::Value)>>>,
    failing: std::sync::atomic::AtomicBool,
    gateway: Mutex<Option<String>>,
}

impl PluginDevices {
    /// A device endpoint's answer: 503 while failing, 400 for `refused…` cids, else 200 and a
    /// signed receipt to the gateway.
    fn answer(&self, cid: &str, reference: &str, body: serde_json::Value) -> u16 {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return 503;
        }
        if cid.starts_with("refused") {
            return 400;
        }
        self.received
            .lock()
            .expect("lock")
            .entry(cid.to_string())
            .or_default()
            .push((reference.to_string(), body));
        if let Some(gateway) = self.gateway.lock().expect("lock").clone() {
            let line = pushgate_plugin_webhook_provider::receipt_line(
                PLUGIN_SECRET,
                reference,
                cid,
                "delivered",
            );
            tokio::spawn(async move {
                Api::new(&gateway, None)
                    .post_text("/v1/callbacks/hook/receipts", &line)
                    .await;
            });
        }
        200
    }
}

async fn serve_plugin_devices(devices: std::sync::Arc<PluginDevices>) -> String {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let devices = devices.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let devices = devices.clone();
                        async move {
                            let cid = req.uri().path().trim_start_matches("/devices/").to_string();
                            let reference = req
                                .headers()
                                .get("x-pushgate-delivery")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let json = serde_json::from_slice(&body).unwrap_or_default();
                            let status = devices.answer(&cid, &reference, json);
                            let mut answer = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            ));
                            *answer.status_mut() =
                                hyper::StatusCode::from_u16(status).expect("status");
                            Ok::<_, std::convert::Infallible>(answer)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

impl Peer for PluginPeer {
    const NAME: &'static str = "hook";

    async fn start(_dir: &Path) -> Self {
        let devices = std::sync::Arc::new(PluginDevices::default());
        let url = serve_plugin_devices(devices.clone()).await;
        PluginPeer { devices, url }
    }

    fn provider_table(&self) -> String {
        format!(
            "[[providers]]\nname = \"hook\"\nkind = \"plugin\"\npath = \"{}\"\nreceipt_timeout_ms = 10000\noptions = {{ url = \"{}/devices/{{cid}}\", secret = \"{PLUGIN_SECRET}\" }}\n",
            crate::support::plugins::rust_plugin("webhook_provider").display(),
            self.url
        )
    }

    fn connect(&self, gateway: &str) {
        *self.devices.gateway.lock().expect("lock") = Some(gateway.to_string());
    }

    fn device(&self, n: usize) -> Device {
        Device::cid(&format!("phone-{n}"))
    }

    fn refused_device(&self) -> (Device, &'static str) {
        (Device::cid("refused-1"), "http_400")
    }

    fn gone_device(&self) -> Option<Device> {
        None
    }

    fn fail_transiently(&self, on: bool) {
        self.devices
            .failing
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    async fn received(&self, device: &Device) -> Vec<String> {
        self.devices
            .received
            .lock()
            .expect("lock")
            .get(&device.cid)
            .map(|all| all.iter().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }

    async fn shown(&self, device: &Device) -> Option<(String, String)> {
        let all = self.devices.received.lock().expect("lock");
        let n = &all.get(&device.cid)?.last()?.1["notification"];
        Some((n["title"].as_str()?.into(), n["body"].as_str()?.into()))
    }
}
