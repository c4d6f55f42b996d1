//! The command line: `check-config` and the embedded default of `serve`.

mod support;

use std::process::Command;

use http::StatusCode;
use serde_json::json;
use support::client::Api;
use support::gateway::{config, GatewayProcess};

fn pushgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(args)
        .output()
        .expect("run pushgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_good_files_and_names_the_key_and_line_of_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, config(dir.path(), None, "", "")).expect("write");
    let (code, stdout, _) = pushgate(&["check-config", good.to_str().expect("path")]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok (1 app(s), 1 provider(s))"), "{stdout}");

    let bad = dir.path().join("bad.toml");
    let text = config(dir.path(), None, "receipt_delai_ms = 3", "");
    let line = text
        .lines()
        .position(|l| l.starts_with("receipt_delai_ms"))
        .expect("line")
        + 1;
    std::fs::write(&bad, text).expect("write");
    let (code, _, stderr) = pushgate(&["check-config", bad.to_str().expect("path")]);
    assert_eq!(code, 2);
    assert!(stderr.contains(&format!("bad.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("receipt_delai_ms"), "{stderr}");

    let (code, _, stderr) = pushgate(&["check-config", "/nonexistent/pushgate.toml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read"), "{stderr}");

    // A plugin path that names no shared library: the file, the reason, the config line.
    let text_so = dir.path().join("libnotes.so");
    std::fs::write(&text_so, "just some notes\n").expect("write");
    for (path, reason) in [
        (dir.path().join("absent.so"), "no such file"),
        (text_so.clone(), "not an ELF shared object"),
        (dir.path().to_path_buf(), "is a directory"),
    ] {
        let plugin = format!(
            "[[providers]]\nname = \"p\"\nkind = \"plugin\"\npath = \"{}\"\n",
            path.display()
        );
        let text = config(dir.path(), None, "", &plugin);
        let line = text
            .lines()
            .position(|l| l.starts_with("path = "))
            .expect("line")
            + 1;
        let file = dir.path().join("plugin.toml");
        std::fs::write(&file, text).expect("write");
        let (code, stdout, stderr) = pushgate(&["check-config", file.to_str().expect("path")]);
        assert_eq!(code, 2, "{}: {stdout}{stderr}", path.display());
        assert!(stderr.contains(&format!("plugin.toml:{line}:")), "{stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        assert!(stderr.contains(reason), "says {reason:?}: {stderr}");
    }

    let (code, _, stderr) = pushgate(&["serve", "--frobnicate"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--frobnicate"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_config_runs_the_embedded_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("path").to_string();
    let args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_arg];
    let mut gw = GatewayProcess::spawn(&args, data.join("none.toml"));
    let key_line = gw
        .stdout_lines
        .iter()
        .find(|l| l.starts_with("demo API key: "))
        .cloned()
        .expect("the key is printed");
    let key = key_line
        .trim_start_matches("demo API key: ")
        .split_whitespace()
        .next()
        .expect("key")
        .to_string();
    let saved = std::fs::read_to_string(data.join("demo-api-key")).expect("saved key");
    assert_eq!(saved.trim(), key);

    let api = Api::new(&gw.url, Some(&key));
    assert_eq!(api.bind("alice", "mock", "a1").await.status, StatusCode::OK);
    assert_eq!(api.bind("bob", "mock", "b1").await.status, StatusCode::OK);
    let r = api
        .send(&json!({"to": {"alias": "bob"}, "from": "alice", "payload": {"text": "hi"}}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(api.get("/readyz").await.status, StatusCode::OK);
    assert_eq!(gw.stop(), Some(0));

    // The same key is used again after a restart.
    let gw = GatewayProcess::spawn(&args, data.join("none.toml"));
    assert!(gw
        .stdout_lines
        .iter()
        .any(|l| l.contains(&key) && l.contains("read from")));
    let api = Api::new(&gw.url, Some(&key));
    assert_eq!(
        api.get("/v1/apps/demo/aliases/bob").await.status,
        StatusCode::OK
    );
}

/// `[log] format = "json"`: every stderr line is a JSON object; a line about a delivery names
/// its message; no payload reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_name_the_message() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        None,
        "",
        "[log]\nformat = \"json\"\nlevel = \"info\"\n",
    );
    let path = dir.path().join("pushgate.toml");
    std::fs::write(&path, cfg).expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let stdout = child.stdout.take().expect("stdout");
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("pushgate listening on ").map(str::to_string))
        .expect("listening");
    let api = Api::new(&url, Some(support::gateway::API_KEY));
    let sent = api
        .send(&json!({"to": {"device": {"provider": "mock", "cid": "unknown-1"}}, "payload": {"text": "secret-payload-text"}}))
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    let id = sent.json["message_id"].as_str().expect("id").to_string();
    support::eventually(std::time::Duration::from_secs(15), "the failure", || {
        let (api, id) = (api.clone(), id.clone());
        async move { api.all_deliveries_are(&id, "failed").await.then_some(()) }
    })
    .await;
    let _ = child.kill();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    let _ = child.wait();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["fields"].is_object()));
    let failed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "delivery failed")
        .unwrap_or_else(|| panic!("no delivery line in {stderr}"));
    assert!(
        failed["fields"]["delivery"]
            .as_str()
            .is_some_and(|d| d.starts_with(&id)),
        "{failed}"
    );
    assert!(
        !stderr.contains("secret-payload-text"),
        "payloads stay out of logs"
    );
}

#[test]
fn the_deploy_example_config_is_valid() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/deploy/pushgate.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(["check-config", file])
        .env("PUSHGATE_CHAT_API_KEY", "k".repeat(24))
        .env("PUSHGATE_CHAT_WEBHOOK_SECRET", "s".repeat(24))
        .env("GETUI_APP_ID", "app-id")
        .env("GETUI_APP_KEY", "app-key")
        .env("GETUI_MASTER_SECRET", "master-secret")
        .output()
        .expect("run pushgate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (1 app(s), 1 provider(s))"), "{stdout}");
}

#[test]
fn vapid_keys_prints_a_key_pair_that_reads_back() {
    let (code, stdout, stderr) = pushgate(&["vapid-keys"]);
    assert_eq!(code, 0, "{stderr}");
    let public = stdout
        .lines()
        .find_map(|l| l.strip_prefix("public key (applicationServerKey): "))
        .expect("public key line")
        .to_string();
    let pem_end = stdout.find("-----END PRIVATE KEY-----").expect("pem") + 25;
    let key = pushgate_webpush::vapid::VapidKey::from_pem(&stdout[..pem_end]).expect("pem reads");
    assert_eq!(key.public_base64(), public);
    assert_eq!(public.len(), 87, "65 bytes, base64url");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vapid.pem");
    let path = file.to_str().expect("path");
    let (code, stdout, _) = pushgate(&["vapid-keys", "--pem", path]);
    assert_eq!(code, 0);
    assert!(!stdout.contains("BEGIN"), "the key went to the file");
    let written = std::fs::read_to_string(&file).expect("written");
    let key = pushgate_webpush::vapid::VapidKey::from_pem(&written).expect("reads");
    assert!(stdout.contains(&key.public_base64()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (code, _, stderr) = pushgate(&["vapid-keys", "--pem", path]);
    assert_eq!(code, 1, "an existing key is never overwritten");
    assert!(stderr.contains("not overwritten"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).expect("same"), written);
}

/// Runs a client command of the CLI in `cwd` against `url` (no key given: the embedded
/// default's key file in `cwd` is used).
fn client(cwd: &std::path::Path, url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(args)
        .env("PUSHGATE_URL", url)
        .env_remove("PUSHGATE_API_KEY")
        .current_dir(cwd)
        .output()
        .expect("run pushgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_binds_sends_waits_shows_and_tails_against_a_running_gateway() {
    use std::io::{BufRead, BufReader};
    // The embedded default, run in `cwd` so that its key file is ./pushgate-data/demo-api-key.
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let mut gw = GatewayProcess::spawn_in(
        cwd,
        &["serve", "--listen", "127.0.0.1:0"],
        cwd.join("none.toml"),
    );
    let url = gw.url.clone();

    let (code, out, err) = client(
        cwd,
        &url,
        &[
            "alias",
            "bind",
            "bob",
            "--provider",
            "mock",
            "--cid",
            "bob-phone",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("bound mock:bob-phone to bob"), "{out}");
    let (code, out, _) = client(cwd, &url, &["alias", "show", "bob"]);
    assert_eq!(code, 0);
    assert!(out.contains("mock:bob-phone"), "{out}");

    // The event stream, followed by `events tail` while we send.
    let mut tail = Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(["events", "tail", "--app", "demo", "--url", &url])
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tail");
    let tail_out = tail.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(tail_out).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let (code, out, err) = client(
        cwd,
        &url,
        &[
            "send",
            "--to",
            "bob",
            "--payload",
            r#"{"text":"hi"}"#,
            "--from",
            "alice",
            "--request-id",
            "cli-1",
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("mock:bob-phone  delivered"), "{out}");
    for step in ["queued", "sent", "delivered"] {
        assert!(
            out.lines()
                .any(|l| l.trim_end().ends_with(step) || l.contains(&format!("  {step}"))),
            "{step} in {out}"
        );
    }
    let id = out
        .split_whitespace()
        .nth(1)
        .expect("accepted <id>")
        .trim_end_matches(';')
        .to_string();
    let line = lines_rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the tail prints the event");
    assert!(
        line.contains("message.delivered") && line.contains(&id),
        "{line}"
    );
    let _ = tail.kill();
    let _ = tail.wait();

    let (code, out, _) = client(cwd, &url, &["message", "show", &id]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("message {id}  from alice  to alias bob")),
        "{out}"
    );
    let (code, out, _) = client(cwd, &url, &["message", "show", &id, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["deliveries"][0]["state"], "delivered");
    // The same request id again: accepted once.
    let (code, out, _) = client(
        cwd,
        &url,
        &[
            "send",
            "--to",
            "bob",
            "--payload",
            r#"{"text":"hi"}"#,
            "--from",
            "alice",
            "--request-id",
            "cli-1",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already accepted"), "{out}");

    // Errors: the API's code and message, non-zero exit.
    let (code, _, err) = client(
        cwd,
        &url,
        &["message", "show", "01JZZZZZZZZZZZZZZZZZZZZZZZ"],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: message_not_found (404)") || err.contains("(404)"),
        "{err}"
    );
    let (code, _, err) = client(
        cwd,
        &url,
        &["alias", "show", "bob", "--api-key", "wrong-key-0123456789"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("invalid_api_key (401)"), "{err}");
    let (code, _, err) = client(cwd, "http://127.0.0.1:9", &["alias", "show", "bob"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the gateway"), "{err}");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = client(elsewhere.path(), &url, &["alias", "show", "bob"]);
    assert_eq!(code, 2);
    assert!(err.contains("no API key"), "{err}");
    let (code, out, _) = pushgate(&["send", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--wait"), "{out}");
    let (code, out, _) = pushgate(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(out.contains("pushgate"), "{out}");
    assert_eq!(gw.stop(), Some(0));
}
