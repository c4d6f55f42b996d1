//! The IM example: two users chat through pushgate with both strategies.
//!
//! ```sh
//! cargo run --example im_chat                      # mock provider, everything in-process
//! cargo run --example im_chat -- --provider getui  # over Getui's REST v2 (local emulator)
//! cargo run --example im_chat -- --provider webpush  # Web Push; browsers decrypt and ack
//! cargo run --example im_chat -- --provider fcm    # FCM HTTP v1 (local emulator); phones ack
//! cargo run --example im_chat -- --provider apns   # APNs over HTTP/2 + TLS (local emulator); phones ack
//! cargo run --example im_chat -- --interactive     # type `alice> hi`, `bob> hi`, `alice>> hi`
//! cargo run --example im_chat -- --gateway http://127.0.0.1:8080 --api-key KEY \
//!     --webhook-secret SECRET --listen 127.0.0.1:3000   # against a running gateway
//! ```
//!
//! It starts a chat message server (`app_server.rs`) that uses only pushgate's public HTTP
//! API and verifies webhook signatures, binds alice and bob to devices, and runs a
//! conversation, printing each hop's time: accepted, sent to the provider, received by the
//! device, receipt back, sender notified.

mod app_server;
mod browsers;
mod http;

use std::io::BufRead;
use std::time::Duration;

use ::http::Method;
use app_server::AppServer;
use http::Http;
use pushgate_engine::clock::now_ms;
use serde_json::{json, Value};

const HOP_TIMEOUT: Duration = Duration::from_secs(15);

struct Options {
    provider: String,
    gateway: Option<String>,
    api_key: Option<String>,
    webhook_secret: Option<String>,
    listen: Option<String>,
    emulator: Option<String>,
    interactive: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        provider: "mock".into(),
        gateway: None,
        api_key: None,
        webhook_secret: None,
        listen: None,
        emulator: None,
        interactive: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--provider" => o.provider = value()?,
            "--gateway" => o.gateway = Some(value()?),
            "--api-key" => o.api_key = Some(value()?),
            "--webhook-secret" => o.webhook_secret = Some(value()?),
            "--listen" => o.listen = Some(value()?),
            "--emulator" => o.emulator = Some(value()?),
            "--interactive" => o.interactive = true,
            "-h" | "--help" => {
                println!("usage: im_chat [--provider mock|getui|webpush|fcm|apns] [--interactive] [--gateway URL --api-key KEY --webhook-secret S --listen ADDR [--emulator URL]]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if !matches!(
        o.provider.as_str(),
        "mock" | "getui" | "webpush" | "fcm" | "apns"
    ) {
        return Err("--provider is mock, getui, webpush, fcm or apns".into());
    }
    if matches!(o.provider.as_str(), "fcm" | "apns") && o.gateway.is_some() {
        return Err(format!(
            "--provider {} runs its emulator in-process: no --gateway",
            o.provider
        ));
    }
    if o.provider == "webpush" && o.gateway.is_some() {
        return Err("--provider webpush runs its browsers in-process: no --gateway".into());
    }
    if o.gateway.is_some() && (o.api_key.is_none() || o.webhook_secret.is_none()) {
        return Err(
            "--gateway needs --api-key and --webhook-secret (the app's webhook_secret)".into(),
        );
    }
    Ok(o)
}

/// Where the simulated devices live and how to reach them.
enum Devices {
    Mock {
        gateway: String,
    },
    Getui {
        emulator: String,
    },
    /// Phones behind the FCM emulator in this process; they acknowledge each message.
    Fcm {
        emulator: String,
    },
    /// iPhones behind the APNs emulator in this process; they acknowledge each notification.
    Apns {
        emulator: std::sync::Arc<pushgate_apns::emulator::Emulator>,
    },
    /// Browsers in this process behind their push service; they acknowledge each push.
    WebPush {
        browsers: std::sync::Arc<browsers::Browsers>,
    },
}

/// One message as a device received it.
struct Received {
    message_id: String,
    payload: Value,
    at: u64,
}

impl Devices {
    /// The cid a device named `name` is bound with (APNs device tokens are hex).
    fn cid(&self, name: &str) -> String {
        match self {
            Devices::Apns { .. } => {
                use sha2::Digest;
                sha2::Sha256::digest(name.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            }
            _ => name.to_string(),
        }
    }

    async fn inbox(&self, http: &Http, name: &str) -> Vec<Received> {
        let cid = self.cid(name);
        let cid = cid.as_str();
        if let Devices::Apns { emulator } = self {
            return emulator
                .inbox(cid)
                .into_iter()
                .map(|n| Received {
                    message_id: n.payload[pushgate_apns::wire::REQUEST_ID_KEY]
                        .as_str()
                        .and_then(|r| r.rsplit_once('-'))
                        .map(|(id, _)| id.to_string())
                        .unwrap_or_default(),
                    // With device acks the app payload travels as `payload`.
                    payload: n.payload["payload"].clone(),
                    at: n.received_at_ms,
                })
                .collect();
        }
        if let Devices::WebPush { browsers } = self {
            return browsers
                .inbox(cid)
                .into_iter()
                .map(|p| Received {
                    // The ack token is "<message id>-<device index>.<mac>".
                    message_id: p
                        .ack
                        .split('.')
                        .next()
                        .and_then(|d| d.rsplit_once('-'))
                        .map(|(id, _)| id.to_string())
                        .unwrap_or_default(),
                    payload: p.payload,
                    at: p.at,
                })
                .collect();
        }
        let url = match self {
            Devices::Mock { gateway } => format!("{gateway}/v1/mock/mock/devices/{cid}/inbox"),
            Devices::Getui { emulator } => format!("{emulator}/_emulator/devices/{cid}/inbox"),
            Devices::Fcm { emulator } => format!("{emulator}/_emulator/devices/{cid}"),
            Devices::WebPush { .. } | Devices::Apns { .. } => return Vec::new(),
        };
        let Ok((200, body)) = http.call(Method::GET, &url, None, None).await else {
            return Vec::new();
        };
        body["messages"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|m| Received {
                        // The provider request id is "<message id>-<device index>".
                        message_id: m["request_id"]
                            .as_str()
                            .or(m["data"][pushgate_fcm::wire::REQUEST_ID_KEY].as_str())
                            .and_then(|r| r.rsplit_once('-'))
                            .map(|(id, _)| id.to_string())
                            .unwrap_or_default(),
                        payload: match self {
                            Devices::Mock { .. }
                            | Devices::WebPush { .. }
                            | Devices::Apns { .. } => m["payload"].clone(),
                            Devices::Getui { .. } => m["transmission"]
                                .as_str()
                                .and_then(|t| serde_json::from_str(t).ok())
                                .unwrap_or(Value::Null),
                            // With device acks the data's `payload` is the app payload's JSON.
                            Devices::Fcm { .. } => m["data"]["payload"]
                                .as_str()
                                .and_then(|t| serde_json::from_str(t).ok())
                                .unwrap_or(Value::Null),
                        },
                        at: m["received_at"]
                            .as_u64()
                            .or(m["received_at_ms"].as_u64())
                            .unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn send_upstream(&self, http: &Http, cid: &str, payload: &str) -> Result<(), String> {
        let (url, body) = match self {
            Devices::Mock { gateway } => (
                format!("{gateway}/v1/mock/mock/devices/{cid}/upstream"),
                json!({"payload": payload}),
            ),
            Devices::Getui { emulator } => (
                format!("{emulator}/_emulator/devices/{cid}/upstream"),
                json!({"payload": payload}),
            ),
            Devices::WebPush { .. } => {
                return Err("Web Push devices send no upstream messages".into())
            }
            Devices::Fcm { .. } | Devices::Apns { .. } => {
                return Err("FCM and APNs devices send no upstream messages".into())
            }
        };
        match http.call(Method::POST, &url, None, Some(&body)).await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("upstream send answered {status}: {body}")),
        }
    }
}

struct Chat {
    http: Http,
    gateway: String,
    key: String,
    provider: String,
    devices: Devices,
    app: AppServer,
    sent: usize,
    delivered: usize,
    notified: usize,
}

fn device_of(user: &str) -> String {
    format!("{user}-phone")
}

/// Polls `check` until it answers, for at most `HOP_TIMEOUT`.
async fn wait_for<T, F, Fut>(mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + HOP_TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hop(t0: u64, at: Option<u64>, what: &str) {
    match at {
        Some(at) => println!("    {:>+6} ms  {what}", at as i64 - t0 as i64),
        None => println!(
            "      ---     {what}: did not happen within {}s",
            HOP_TIMEOUT.as_secs()
        ),
    }
}

impl Chat {
    async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        self.http
            .call(
                method,
                &format!("{}{path}", self.gateway),
                Some(&self.key),
                body,
            )
            .await
    }

    async fn bind(&self, user: &str) -> Result<(), String> {
        let mut body =
            json!({"provider": self.provider, "cid": self.devices.cid(&device_of(user))});
        if let Devices::WebPush { browsers } = &self.devices {
            body["data"] = browsers.subscribe(&device_of(user));
        }
        match self
            .api(
                Method::POST,
                &format!("/v1/apps/demo/aliases/{user}/devices"),
                Some(&body),
            )
            .await?
        {
            (200, _) => Ok(()),
            (s, b) => Err(format!("binding {user} answered {s}: {b}")),
        }
    }

    /// The state history of a message's first delivery: state → time.
    async fn history(&self, id: &str) -> Vec<(String, u64)> {
        let Ok((200, body)) = self
            .api(Method::GET, &format!("/v1/apps/demo/messages/{id}"), None)
            .await
        else {
            return Vec::new();
        };
        body["deliveries"][0]["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|t| {
                        Some((
                            t["state"].as_str()?.to_string(),
                            parse_rfc3339(t["at"].as_str()?)?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Follows a message through every hop and prints its timeline.
    async fn follow(&mut self, t0: u64, id: &str, from: &str, to: &str, text: &str) {
        self.sent += 1;
        let history = wait_for(|| async {
            let h = self.history(id).await;
            h.iter().any(|(s, _)| s == "delivered").then_some(h)
        })
        .await
        .unwrap_or_default();
        let at = |state: &str| history.iter().find(|(s, _)| s == state).map(|(_, t)| *t);
        hop(
            t0,
            at("queued"),
            &format!("accepted by pushgate (message {id})"),
        );
        hop(
            t0,
            at("sent"),
            &format!("sent to provider {}", self.provider),
        );
        let received = wait_for(|| async {
            self.devices
                .inbox(&self.http, &device_of(to))
                .await
                .into_iter()
                .find(|m| m.message_id == id)
                .map(|m| m.at)
        })
        .await;
        hop(
            t0,
            received,
            &format!("received by {to}'s device {}", device_of(to)),
        );
        hop(
            t0,
            at("delivered"),
            "receipt back from the device: delivered",
        );
        let told = wait_for(|| async { self.app.delivered_at(id) }).await;
        hop(
            t0,
            told,
            "app server told (signed message.delivered webhook)",
        );
        let notified = wait_for(|| async {
            self.devices
                .inbox(&self.http, &device_of(from))
                .await
                .into_iter()
                .find(|m| m.payload["type"] == "receipt" && m.payload["message_id"] == id)
                .map(|m| m.at)
        })
        .await;
        hop(
            t0,
            notified,
            &format!("{from} notified ✓✓ (receipt push on {})", device_of(from)),
        );
        let marks = match (at("sent").is_some(), at("delivered").is_some()) {
            (_, true) => "✓ sent ✓✓ delivered",
            (true, false) => "✓ sent",
            _ => "not sent",
        };
        println!("  {to}'s screen: [{from}] {text}        {from}'s screen: {marks}");
        self.delivered += usize::from(at("delivered").is_some());
        self.notified += usize::from(notified.is_some());
    }

    /// Strategy 1: the app server sends `text` from `from` to `to` by alias push.
    async fn alias_push(&mut self, from: &str, to: &str, text: &str) -> Result<(), String> {
        println!("\n[strategy 1: alias push] {from} → {to}: {text:?}");
        let t0 = now_ms();
        let body = json!({"to": {"alias": to}, "from": from, "payload": {"text": text}, "notify_sender": true});
        let (status, answer) = self
            .api(Method::POST, "/v1/apps/demo/messages", Some(&body))
            .await?;
        if status != 202 {
            return Err(format!("send answered {status}: {answer}"));
        }
        let id = answer["message_id"].as_str().unwrap_or("").to_string();
        self.follow(t0, &id, from, to, text).await;
        Ok(())
    }

    /// Strategy 2: `from`'s device sends upstream; the app server replies with the message.
    async fn upstream(&mut self, from: &str, to: &str, text: &str) -> Result<(), String> {
        println!(
            "\n[strategy 2: SendMessage upstream] {from}'s device → app server → {to}: {text:?}"
        );
        let t0 = now_ms();
        let payload = json!({"to": to, "text": text}).to_string();
        self.devices
            .send_upstream(&self.http, &device_of(from), &payload)
            .await?;
        let got = wait_for(|| async { self.app.upstream_at(&payload) }).await;
        hop(
            t0,
            got,
            "app server got upstream.received and answered with the message",
        );
        let id = wait_for(|| async {
            self.devices
                .inbox(&self.http, &device_of(to))
                .await
                .into_iter()
                .find(|m| m.payload["text"] == text)
                .map(|m| m.message_id)
        })
        .await;
        match id {
            Some(id) => self.follow(t0, &id, from, to, text).await,
            None => {
                self.sent += 1;
                println!("      ---     the reply never reached {to}");
            }
        }
        Ok(())
    }

    fn summary(&self) -> bool {
        let forged = self.app.seen.lock().map(|s| s.forged).unwrap_or(0);
        println!(
            "\nsummary: {} messages, {} delivered, {} senders notified, {forged} forged webhooks refused",
            self.sent, self.delivered, self.notified
        );
        let ok = self.sent > 0 && self.delivered == self.sent && self.notified == self.sent;
        if ok {
            println!("RESULT: all messages delivered, all senders notified");
        } else {
            println!("RESULT: FAILED");
        }
        ok
    }
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    // 2026-11-29T02:25:37.433Z
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, ms) = time.split_once('.')?;
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000 + ms.parse::<i64>().ok()?) as u64)
}

/// The emulators running in this process, kept until the chat ends.
struct Emulators {
    _getui: Option<pushgate_getui::emulator::Emulator>,
    _fcm: Option<pushgate_fcm::emulator::Emulator>,
}

/// The APNs emulator and the provider table for it (key and CA files in `dir`).
async fn start_apns(
    dir: &std::path::Path,
) -> Result<(std::sync::Arc<pushgate_apns::emulator::Emulator>, String), String> {
    use pushgate_apns::emulator as apns;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let key = pushgate_apns::ProviderKey::generate();
    let key_file = dir.join("AuthKey_EMUKEY0001.p8");
    std::fs::write(&key_file, key.to_pem()?).map_err(|e| e.to_string())?;
    let tls = apns::generate_tls(dir)?;
    let config = apns::EmulatorConfig::default();
    let emulator = apns::Emulator::start(
        "127.0.0.1:0".parse().map_err(|_| "addr")?,
        key.verifying_key(),
        &tls,
        config.clone(),
    )
    .await
    .map_err(|e| format!("apns emulator: {e}"))?;
    let table = format!(
        "[[providers]]\nname = \"apns\"\nkind = \"apns\"\nteam_id = \"{}\"\nkey_id = \"{}\"\nprivate_key_file = \"{}\"\ntopic = \"{}\"\nbase_url = \"{}\"\nca_file = \"{}\"\ndevice_acks = true\n",
        config.team_id,
        config.key_id,
        key_file.display(),
        config.topic,
        emulator.url(),
        tls.ca_cert.display()
    );
    Ok((std::sync::Arc::new(emulator), table))
}

/// Runs the gateway (and the provider's emulator) in this process.
async fn start_local(
    provider: &str,
    app: &AppServer,
    secret: &str,
) -> Result<(pushgate::Gateway, Devices, Emulators, std::path::PathBuf), String> {
    let emulator = if provider == "getui" {
        let e = pushgate_getui::emulator::Emulator::start(
            "127.0.0.1:0".parse().map_err(|_| "addr")?,
            Default::default(),
        )
        .await
        .map_err(|e| format!("getui emulator: {e}"))?;
        Some(e)
    } else {
        None
    };
    let getui = match &emulator {
        Some(e) => {
            let c = e.config();
            format!(
                "[[providers]]\nname = \"getui\"\nkind = \"getui\"\nbase_url = \"{}\"\napp_id = \"{}\"\napp_key = \"{}\"\nmaster_secret = \"{}\"\n",
                e.url(),
                c.app_id,
                c.app_key,
                c.master_secret
            )
        }
        None => String::new(),
    };
    let data_dir = std::env::temp_dir().join(format!("pushgate-im-chat-{}", std::process::id()));
    let browsers = if provider == "webpush" {
        Some(browsers::Browsers::start().await?)
    } else {
        None
    };
    let fcm_emulator = if provider == "fcm" {
        std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
        let account = pushgate_fcm::emulator::generate_service_account("im-chat")?;
        let e = pushgate_fcm::emulator::Emulator::start(
            "127.0.0.1:0".parse().map_err(|_| "addr")?,
            account,
            Default::default(),
        )
        .await
        .map_err(|e| format!("fcm emulator: {e}"))?;
        e.write_service_account(&data_dir.join("fcm-service-account.json"))
            .map_err(|e| e.to_string())?;
        Some(e)
    } else {
        None
    };
    let fcm = match &fcm_emulator {
        Some(e) => format!(
            "[[providers]]\nname = \"fcm\"\nkind = \"fcm\"\nservice_account_file = \"{}\"\nbase_url = \"{}\"\ndevice_acks = true\n",
            data_dir.join("fcm-service-account.json").display(),
            e.url()
        ),
        None => String::new(),
    };
    let apns = if provider == "apns" {
        Some(start_apns(&data_dir).await?)
    } else {
        None
    };
    let apns_table = apns.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
    let webpush = match &browsers {
        Some(_) => {
            std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
            let pem = data_dir.join("vapid.pem");
            let key = pushgate_webpush::vapid::VapidKey::generate();
            std::fs::write(&pem, key.to_pem().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            format!(
                "[[providers]]\nname = \"webpush\"\nkind = \"webpush\"\nvapid_private_key_file = \"{}\"\nsubject = \"mailto:im-chat@example.com\"\nallowed_endpoints = [\"127.0.0.1:*\"]\ndevice_acks = true\n",
                pem.display()
            )
        }
        None => String::new(),
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[[apps]]\nid = \"demo\"\napi_keys = [\"im-chat-demo-key-0123456789\"]\nwebhook_url = \"{}\"\nwebhook_secret = \"{secret}\"\ndefault_provider = \"{provider}\"\n\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\nreceipt_delay_ms = 5\n\n{getui}{webpush}{fcm}{apns_table}",
        data_dir.display(),
        app.url
    );
    let config = pushgate::Config::parse("im_chat", &text, &|_| None).map_err(|e| e.to_string())?;
    let gateway = pushgate::Gateway::start(&config, None)
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("http://{}", gateway.local_addr());
    if let Some(b) = &browsers {
        b.set_gateway(&url);
    }
    let devices = match &emulator {
        _ if browsers.is_some() => Devices::WebPush {
            browsers: browsers.clone().ok_or("browsers")?,
        },
        _ if apns.is_some() => {
            let e = apns
                .as_ref()
                .map(|(e, _)| e.clone())
                .ok_or("apns emulator")?;
            e.set_device_ack_url(Some(format!("{url}/v1/device-acks")));
            Devices::Apns { emulator: e }
        }
        _ if fcm_emulator.is_some() => {
            let e = fcm_emulator.as_ref().ok_or("fcm emulator")?;
            e.set_device_ack_url(Some(format!("{url}/v1/device-acks")));
            Devices::Fcm {
                emulator: e.url().to_string(),
            }
        }
        Some(e) => {
            e.set_receipt_url(Some(format!("{url}/v1/callbacks/getui/receipts")));
            e.set_upstream_url(Some(format!("{url}/v1/callbacks/getui/upstream")));
            Devices::Getui {
                emulator: e.url().to_string(),
            }
        }
        None => Devices::Mock { gateway: url },
    };
    let emulators = Emulators {
        _getui: emulator,
        _fcm: fcm_emulator,
    };
    Ok((gateway, devices, emulators, data_dir))
}

async fn interactive(chat: &mut Chat) -> Result<(), String> {
    println!(
        "\ntype `alice> text` or `bob> text` (alias push), `alice>> text` (upstream), or `quit`"
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let line = line.trim();
        if line == "quit" || line == "exit" {
            break;
        }
        let parsed = ["alice", "bob"].iter().find_map(|user| {
            let rest = line.strip_prefix(user)?;
            let other = if *user == "alice" { "bob" } else { "alice" };
            if let Some(text) = rest.strip_prefix(">>") {
                Some((*user, other, true, text.trim().to_string()))
            } else {
                rest.strip_prefix('>')
                    .map(|text| (*user, other, false, text.trim().to_string()))
            }
        });
        match parsed {
            Some((from, to, true, text)) => chat.upstream(from, to, &text).await?,
            Some((from, to, false, text)) => chat.alias_push(from, to, &text).await?,
            None => println!("?? write `alice> text`, `bob> text` or `alice>> text`"),
        }
    }
    Ok(())
}

async fn run(o: Options) -> Result<bool, String> {
    let secret = o
        .webhook_secret
        .clone()
        .unwrap_or_else(|| format!("im-chat-secret-{:016x}", rand::random::<u64>()));
    let listen = o.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into());
    let app = AppServer::start(&listen, secret.clone()).await?;
    let mut local = None;
    let (gateway, key, devices) = match &o.gateway {
        Some(url) => {
            let devices = match (&o.provider[..], &o.emulator) {
                ("getui", Some(e)) => Devices::Getui {
                    emulator: e.clone(),
                },
                ("getui", None) => {
                    return Err("--provider getui with --gateway needs --emulator URL".into())
                }
                _ => Devices::Mock {
                    gateway: url.clone(),
                },
            };
            println!(
                "app server listening on {} (the gateway's webhook_url must point here)",
                app.url
            );
            (url.clone(), o.api_key.clone().unwrap_or_default(), devices)
        }
        None => {
            let (gw, devices, emulator, dir) = start_local(&o.provider, &app, &secret).await?;
            let url = format!("http://{}", gw.local_addr());
            println!(
                "pushgate started in-process at {url} (provider {}), app server at {}",
                o.provider, app.url
            );
            local = Some((gw, emulator, dir));
            (url, "im-chat-demo-key-0123456789".to_string(), devices)
        }
    };
    let mut chat = Chat {
        http: Http::new(),
        gateway,
        key,
        provider: o.provider.clone(),
        devices,
        app,
        sent: 0,
        delivered: 0,
        notified: 0,
    };
    chat.bind("alice").await?;
    chat.bind("bob").await?;
    println!(
        "bound alice → {}/{}, bob → {}/{}",
        o.provider,
        device_of("alice"),
        o.provider,
        device_of("bob")
    );
    if o.interactive {
        interactive(&mut chat).await?;
    } else {
        chat.alias_push("alice", "bob", "Hi Bob! Lunch at noon?")
            .await?;
        chat.alias_push("bob", "alice", "Sure, see you there.")
            .await?;
        if matches!(o.provider.as_str(), "webpush" | "fcm" | "apns") {
            println!("\n[strategy 2: SendMessage upstream] skipped: {} devices send no upstream messages", o.provider);
        } else {
            chat.upstream("alice", "bob", "Sent from my phone, upstream.")
                .await?;
        }
    }
    let ok = chat.summary();
    if let Some((gw, _emulator, dir)) = local {
        gw.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(ok)
}

#[tokio::main]
async fn main() {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    pushgate::telemetry::init_logging_with("warn");
    match run(options).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
