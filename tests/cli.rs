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
