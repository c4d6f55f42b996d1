//! The database goes away under a running gateway and comes back: requests answer
//! `503 storage_unavailable` meanwhile, `/readyz` says why, nothing panics, and what was
//! accepted before is delivered after. (Its own test binary: it stops the shared server.)

mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use support::eventually;
use support::gateway::{config, GatewayProcess};

const WAIT: Duration = Duration::from_secs(30);

fn server(what: &str) {
    let var = format!("PUSHGATE_TEST_PG_{what}");
    let command = std::env::var(&var)
        .unwrap_or_else(|_| panic!("{var} is not set: run scripts/test.sh, which sets it"));
    let status = std::process::Command::new("sh")
        .args(["-c", &command])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run pg_ctl");
    assert!(status.success(), "{command}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_answers_503_meanwhile_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", ""));
    let api = gw.api();
    assert_eq!(
        api.bind("bob", "mock", "bob-phone").await.status,
        StatusCode::OK
    );
    let before = api
        .send(&json!({"to": {"alias": "bob"}, "payload": "before"}))
        .await;
    assert_eq!(before.status, StatusCode::ACCEPTED, "{}", before.text);
    let before = before.json["message_id"].as_str().expect("id").to_string();

    server("STOP");
    let refused = api
        .send(&json!({"to": {"alias": "bob"}, "payload": "during"}))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );
    assert_eq!(refused.code(), "storage_unavailable");
    let ready = eventually(WAIT, "/readyz to report the database", || {
        let api = api.clone();
        async move {
            let r = api.get("/readyz").await;
            (r.status == StatusCode::SERVICE_UNAVAILABLE && r.json["status"] == "store_unavailable")
                .then_some(r)
        }
    })
    .await;
    assert!(ready.json["reason"]
        .as_str()
        .is_some_and(|r| r.contains("PostgreSQL")));
    assert_eq!(
        api.get("/healthz").await.status,
        StatusCode::OK,
        "the process lives on"
    );

    server("START");
    eventually(WAIT, "/readyz to recover", || {
        let api = api.clone();
        async move { (api.get("/readyz").await.status == StatusCode::OK).then_some(()) }
    })
    .await;
    let after = eventually(WAIT, "a send to be accepted again", || {
        let api = api.clone();
        async move {
            let r = api
                .send(&json!({"to": {"alias": "bob"}, "payload": "after"}))
                .await;
            (r.status == StatusCode::ACCEPTED).then_some(r)
        }
    })
    .await;
    let after = after.json["message_id"].as_str().expect("id").to_string();
    for id in [&before, &after] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while api.states(id).await != ["delivered"] {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{id} not delivered within {WAIT:?}: {}",
                    api.message(id).await.text
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let inbox = api.inbox("mock", "bob-phone").await;
    let payloads: Vec<&str> = inbox.iter().filter_map(|m| m["payload"].as_str()).collect();
    assert_eq!(payloads, ["before", "after"]);
}
