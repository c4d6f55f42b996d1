//! Runs the IM example (`examples/im_chat`) non-interactively against each provider and
//! checks its summary line. `cargo test` builds the example before running tests.

use std::path::PathBuf;
use std::process::Command;

fn example() -> PathBuf {
    // target/<profile>/deps/im_example-<hash> → target/<profile>/examples/im_chat
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = profile_dir.join("examples").join("im_chat");
    assert!(
        path.exists(),
        "the im_chat example is built by cargo test: {}",
        path.display()
    );
    path
}

fn run(provider: &str) -> String {
    let out = Command::new(example())
        .args(["--provider", provider])
        .output()
        .expect("run im_chat");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "im_chat --provider {provider} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_chat_runs_over_the_mock_provider() {
    let out = run("mock");
    assert!(
        out.contains(
            "summary: 3 messages, 3 delivered, 3 senders notified, 0 forged webhooks refused"
        ),
        "{out}"
    );
    assert!(
        out.contains("RESULT: all messages delivered, all senders notified"),
        "{out}"
    );
    assert!(out.contains("[strategy 2: SendMessage upstream]"), "{out}");
}

#[test]
fn the_chat_runs_over_getui() {
    let out = run("getui");
    assert!(out.contains("sent to provider getui"), "{out}");
    assert!(
        out.contains("RESULT: all messages delivered, all senders notified"),
        "{out}"
    );
}

/// Runs the chat over `provider`, whose devices acknowledge themselves (no upstream), and
/// checks both messages were delivered with their senders notified.
fn chat_with_device_acks(provider: &str) {
    let out = run(provider);
    assert!(
        out.contains(&format!("sent to provider {provider}")),
        "{out}"
    );
    assert!(out.contains("received by bob's device bob-phone"), "{out}");
    assert!(
        out.contains(
            "summary: 2 messages, 2 delivered, 2 senders notified, 0 forged webhooks refused"
        ),
        "{out}"
    );
    assert!(out.contains("alice notified ✓✓"), "{out}");
}

#[test]
fn the_chat_runs_over_web_push_with_device_acks() {
    chat_with_device_acks("webpush");
}

#[test]
fn the_chat_runs_over_fcm_with_device_acks() {
    chat_with_device_acks("fcm");
}

#[test]
fn the_chat_runs_over_apns_with_device_acks() {
    chat_with_device_acks("apns");
}
