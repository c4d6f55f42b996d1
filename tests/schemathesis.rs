//! The API against its OpenAPI document: Schemathesis (pinned in scripts/test.sh, which
//! installs it into `tests/peers/schemathesis-venv`) fuzzes every operation of
//! `GET /openapi.json` on the real gateway, with a bounded number of examples
//! (`tests/peers/schemathesis.toml`): no 5xx, every status, header, content type and body as
//! documented, invalid input refused, undeclared methods answered 405 with `Allow`.

mod support;

use std::path::Path;
use std::process::Command;

use support::gateway::{config, GatewayProcess, API_KEY};

#[test]
fn every_answer_of_the_api_conforms_to_its_openapi_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = root.join("tests/peers/schemathesis-venv/bin/st");
    assert!(
        st.exists(),
        "Schemathesis is not installed: run scripts/test.sh (it makes tests/peers/schemathesis-venv)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let extra =
        "[[matrix_apps]]\napp_id = \"com.example.*\"\napp = \"demo\"\nprovider = \"mock\"\n";
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", extra));
    let output = Command::new(&st)
        .arg("--config-file")
        .arg(root.join("tests/peers/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", gw.url))
        .arg("-H")
        .arg(format!("Authorization: Bearer {API_KEY}"))
        .arg("--no-color")
        .current_dir(dir.path())
        .output()
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = text.lines().rev().take(12).collect();
    eprintln!(
        "{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
