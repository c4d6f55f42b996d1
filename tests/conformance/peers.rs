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
