//! Dynamic provider plugins end to end: the suite builds the example plugins (Rust cdylibs
//! with cargo into their own target dir, the C plugin with the system cc), starts the real
//! gateway with them in its config and delivers through each; faulty and wrong-ABI
//! libraries give the documented outcomes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use support::app_server::AppServer;
use support::eventually;
use support::gateway::{config, GatewayProcess};
use support::plugins::{root, rust_plugin};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "plugin-receipt-secret-0123";

/// Builds the C plugin (with `defines`) into `dir` with the system cc.
fn c_plugin(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let out = dir.join(format!("lib{name}.so"));
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-I"])
        .arg(root().join("plugins/abi"))
        .args(defines)
        .arg("-o")
        .arg(&out)
        .arg(root().join("plugins/examples/c-file-provider/file_provider.c"))
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed for {name}");
    out
}

/// A file that is no library at all.
fn text_file(dir: &Path) -> PathBuf {
    let path = dir.join("libtext.so");
    std::fs::write(&path, "this is not a shared library\n").expect("write");
    path
}

fn plugin_provider(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nkind = \"plugin\"\npath = \"{}\"\n{extra}\n",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_to_bob_through_a_rust_plugin_and_a_c_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let devices = AppServer::start().await;
    let device_url = devices.url.replace("/pushgate", "/devices/{cid}");
    let outbox = dir.path().join("c-outbox.txt");
    let providers = format!(
        "{}{}",
        plugin_provider(
            "hook",
            &rust_plugin("webhook_provider"),
            &format!("options = {{ url = \"{device_url}\", secret = \"{SECRET}\" }}"),
        ),
        plugin_provider(
            "cfile",
            &c_plugin(dir.path(), "file_provider", &[]),
            &format!(
                "options = {{ outbox = \"{}\", token = \"c-token\" }}",
                outbox.display()
            ),
        )
    );
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", &providers));
    let api = gw.api();
    assert_eq!(
        api.bind("bob", "hook", "bob-phone").await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.bind("carol", "cfile", "carol-phone").await.status,
        StatusCode::OK
    );

    // Through the Rust webhook plugin: the device endpoint gets a signed POST…
    let r = api
        .send(&json!({"to": {"alias": "bob"}, "from": "alice", "payload": {"text": "hi bob"}}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.json["message_id"].as_str().expect("id").to_string();
    let post = eventually(WAIT, "the device endpoint to get the delivery", || async {
        devices.received().into_iter().next()
    })
    .await;
    assert_eq!(post.json["payload"], json!({"text": "hi bob"}));
    assert_eq!(post.json["cid"], "bob-phone");
    let reference = post.headers["x-pushgate-delivery"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(reference, format!("{id}-0"));
    let signature = post.headers["x-pushgate-signature"]
        .to_str()
        .expect("ascii");
    assert_eq!(
        pushgate::webhook::signature(SECRET.as_bytes(), &post.body),
        signature
    );
    // …and its signed receipt completes the delivery; a forged one is refused.
    let forged = pushgate_plugin_webhook_provider::receipt_line(
        "not-the-secret-at-all",
        &reference,
        "bob-phone",
        "delivered",
    );
    assert_eq!(
        api.post_text("/v1/callbacks/hook/receipts", &forged)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let receipt = pushgate_plugin_webhook_provider::receipt_line(
        SECRET,
        &reference,
        "bob-phone",
        "delivered",
    );
    let reply = api.post_text("/v1/callbacks/hook/receipts", &receipt).await;
    // The device may answer before the gateway has recorded the send: then the receipt is
    // kept ("early") and applied when the send is recorded.
    let taken =
        reply.json["applied"].as_u64().unwrap_or(0) + reply.json["early"].as_u64().unwrap_or(0);
    assert_eq!(taken, 1, "{}", reply.text);
    eventually(WAIT, "the delivery to be delivered by its receipt", || {
        let (api, id) = (api.clone(), id.clone());
        async move { api.all_deliveries_are(&id, "delivered").await.then_some(()) }
    })
    .await;

    // Through the C plugin: a line in its outbox file, then its plain-text receipt.
    let r = api
        .send(&json!({"to": {"alias": "carol"}, "payload": "hi carol"}))
        .await;
    let id = r.json["message_id"].as_str().expect("id").to_string();
    let line = eventually(WAIT, "the C plugin's outbox line", || async {
        std::fs::read_to_string(&outbox)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
    })
    .await;
    let mut fields = line.splitn(3, '\t');
    let (reference, cid, delivery) = (
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
    );
    assert_eq!(cid, "carol-phone");
    assert!(delivery.contains("\"hi carol\""), "{delivery}");
    eventually(WAIT, "sent through the C plugin", || {
        let (api, id) = (api.clone(), id.clone());
        async move { (api.states(&id).await == ["sent"]).then_some(()) }
    })
    .await;
    assert_eq!(
        api.post_text(
            "/v1/callbacks/cfile/receipts",
            &format!("wrong {reference} {cid}\n")
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let reply = api
        .post_text(
            "/v1/callbacks/cfile/receipts",
            &format!("c-token {reference} {cid}\n"),
        )
        .await;
    assert_eq!(reply.json["applied"], 1, "{}", reply.text);
    assert_eq!(api.states(&id).await, ["delivered"]);

    let metrics = api.get("/metrics").await.text;
    assert!(
        metrics.contains(
            "pushgate_plugin_loads_total{plugin=\"webhook\",version=\"0.1.0\",result=\"loaded\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "pushgate_plugin_loads_total{plugin=\"c-file\",version=\"1.0.0\",result=\"loaded\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_are_contained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = rust_plugin("faulty");
    let mut providers = String::new();
    for mode in ["panic", "bad_json", "unknown_status", "huge", "slow"] {
        providers += &plugin_provider(
            mode.replace('_', "-").as_str(),
            &faulty,
            &format!("timeout_ms = 300\noptions = {{ mode = \"{mode}\", sleep_ms = 2000 }}"),
        );
    }
    let extra = format!(
        "{providers}\n[delivery]\nretry_base_ms = 50\nretry_max_ms = 100\nmax_attempts = 2\n"
    );
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", &extra));
    let api = gw.api();
    let send = |provider: &'static str| {
        let api = api.clone();
        async move {
            let r = api
                .send(&json!({"to": {"device": {"provider": provider, "cid": "c1"}}, "payload": 1}))
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
            r.json["message_id"].as_str().expect("id").to_string()
        }
    };
    let outcome = |id: String| {
        let api = api.clone();
        async move {
            eventually(WAIT, "a final state", || {
                let (api, id) = (api.clone(), id.clone());
                async move {
                    let m = api.message(&id).await.json;
                    let d = m["deliveries"][0].clone();
                    matches!(d["state"].as_str(), Some("failed" | "sent" | "delivered"))
                        .then_some(d)
                }
            })
            .await
        }
    };
    let panic = outcome(send("panic").await).await;
    assert_eq!(
        (panic["state"].as_str(), panic["error"]["code"].as_str()),
        (Some("failed"), Some("plugin_panic"))
    );
    assert_eq!(
        panic["attempts"], 2,
        "a panic is retried as the status says, up to max_attempts"
    );
    let bad_json = outcome(send("bad-json").await).await;
    assert_eq!(
        bad_json["state"], "sent",
        "status OK stands even when the JSON is broken"
    );
    let unknown = outcome(send("unknown-status").await).await;
    assert_eq!(unknown["error"]["code"], "plugin_unknown_status");
    let huge = outcome(send("huge").await).await;
    assert_eq!(huge["state"], "sent");
    let slow = outcome(send("slow").await).await;
    assert_eq!(slow["error"]["code"], "plugin_timeout");
    assert_eq!(
        api.get("/healthz").await.status,
        StatusCode::OK,
        "the gateway keeps serving"
    );
    let metrics = api.get("/metrics").await.text;
    for kind in [
        "panic",
        "bad_json",
        "unknown_status",
        "huge_result",
        "timeout",
    ] {
        assert!(
            metrics.contains(&format!(
                "pushgate_plugin_faults_total{{plugin=\"faulty\",kind=\"{kind}\"}}"
            )),
            "{kind}: {metrics}"
        );
    }
}

#[test]
fn bad_libraries_are_refused_before_serving_with_file_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(PathBuf, &str, &str)> = vec![
        (
            c_plugin(dir.path(), "wrong_abi", &["-DWRONG_ABI"]),
            "",
            "ABI version 999",
        ),
        (
            c_plugin(dir.path(), "small_vtable", &["-DSMALL_VTABLE"]),
            "",
            "smaller than",
        ),
        (
            c_plugin(dir.path(), "no_entry", &["-DNO_ENTRY"]),
            "",
            "missing symbol pushgate_plugin_entry",
        ),
        (c_plugin(dir.path(), "no_options", &[]), "", "create failed"),
        (
            rust_plugin("faulty"),
            "options = { mode = \"create_error\" }",
            "refusing to start",
        ),
        (dir.path().join("missing.so"), "", "no such file"),
        (text_file(dir.path()), "", "not an ELF shared object"),
    ];
    for (path, extra, reason) in cases {
        let providers = plugin_provider("p", &path, extra);
        let cfg = config(dir.path(), None, "", &providers);
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, cfg).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_pushgate"))
            .args(["serve", "--config"])
            .arg(&file)
            .output()
            .expect("run pushgate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A file that is no shared object is a config error (2), found before any load.
        let config_error = reason == "no such file" || reason.starts_with("not an ELF");
        let expected = if config_error { 2 } else { 1 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{}: {stderr}",
            path.display()
        );
        assert!(
            stderr.contains(&path.display().to_string()),
            "names the file: {stderr}"
        );
        assert!(stderr.contains(reason), "says {reason:?}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening"),
            "never served"
        );
    }
}
