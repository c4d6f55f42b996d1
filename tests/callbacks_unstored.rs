//! A receipt or upstream callback that cannot be stored (the store has failed, as on a full
//! disk) is refused the way its provider retries, so it is sent again instead of lost:
//! Getui takes any HTTP answer as received, so it gets none (the connection is closed); the
//! mock (and by default any provider) gets `503 storage_unavailable` with `Retry-After`.
//!
//! The gateway's HTTP layer and engine run in this process over a sled store whose failure
//! is injected (the gateway binary stops on a failed store within 100 ms, too soon to post
//! to it).

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use pushgate::http::{ApiKeys, ApiState};
use pushgate_engine::engine::{AppSettings, EngineSettings};
use pushgate_engine::store::Store;
use pushgate_engine::Engine;
use pushgate_store_sled::SledOptions;
use support::client::Api;
use tokio::net::TcpListener;

const CONFIG: &str = r#"
[[apps]]
id = "demo"
api_keys = ["test-api-key-0123456789"]
default_provider = "mock"

[[providers]]
name = "mock"
kind = "mock"
secret = "mock-receipt-secret"

[[providers]]
name = "getui"
kind = "getui"
base_url = "http://127.0.0.1:9"
app_id = "emu-app-id"
app_key = "emu-app-key"
master_secret = "emu-master-secret"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_that_cannot_be_stored_are_refused_so_the_provider_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pushgate.toml");
    std::fs::write(&path, CONFIG).expect("write config");
    let config = pushgate::Config::load(&path).expect("config");
    let store = Arc::new(
        pushgate_store_sled::open(&SledOptions::new(dir.path().join("store"))).expect("open"),
    );
    let providers = config
        .providers
        .iter()
        .map(pushgate::providers::build)
        .collect::<Result<Vec<_>, _>>()
        .expect("providers");
    let apps = vec![AppSettings {
        id: "demo".into(),
        default_provider: "mock".into(),
        max_devices_per_alias: 10,
        webhooks: false,
        max_backlog: 0,
    }];
    let engine = Engine::new(
        store.clone() as Arc<dyn Store>,
        providers,
        apps,
        EngineSettings::default(),
        Some(Arc::new(pushgate_sendmessage::SendMessageRouter::new(
            pushgate_sendmessage::SendMessageSettings::default(),
        ))),
    );
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let state = Arc::new(ApiState {
        engine,
        keys: ApiKeys::new(&config.apps),
        max_body: 65536,
        max_callback: 65536,
        header_read_timeout: Duration::from_secs(5),
        metrics: None,
        ready: true.into(),
        device_acks: pushgate::http::RateLimit::new(100),
        matrix: pushgate::http::MatrixState {
            config: Default::default(),
            apps: Vec::new(),
            provider_kinds: Default::default(),
            limit: None,
        },
        event_stream: pushgate::http::EventStreamState {
            keepalive: Duration::from_secs(15),
            buffer: 64,
            poll_store: false,
            settle: Duration::from_millis(250),
            shutdown: stopped.clone(),
        },
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(pushgate::http::serve(
        listener,
        state,
        stopped,
        Duration::from_secs(1),
    ));
    let api = Api::new(&url, None);
    let getui_line = pushgate_getui::callbacks::receipt_line(
        "emu-app-id",
        "emu-master-secret",
        "cid-1",
        "RASS_task",
        "msg-1",
        1,
    );
    let mock_line = pushgate_mock::sign_line(b"mock-receipt-secret", "ref-1", "c1", 1);

    // Healthy: both are taken (kept as early receipts: no send has that reference yet).
    let ok = api
        .post_text("/v1/callbacks/getui/receipts", &getui_line)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json["early"], 1);

    store.kv().fail("injected: disk full");
    // The mock (the default contract): 503 with Retry-After.
    let refused = api
        .post_text("/v1/callbacks/mock/receipts", &mock_line)
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );
    assert_eq!(refused.code(), "storage_unavailable");
    assert_eq!(refused.headers["retry-after"], "1");
    // Getui: no answer at all, the connection is closed.
    let upstream_line = pushgate_getui::callbacks::upstream_line(
        "emu-app-id",
        "emu-master-secret",
        "cid-1",
        "up-1",
        "hello",
        1,
    );
    for (path, body) in [
        ("/v1/callbacks/getui/receipts", getui_line),
        ("/v1/callbacks/getui/upstream", upstream_line),
    ] {
        let answer = api
            .try_raw(Method::POST, path, &[], body.into_bytes())
            .await;
        assert!(
            answer.is_err(),
            "{path}: Getui must get no answer: {answer:?}"
        );
    }
    let refused = api
        .post_text(
            "/v1/callbacks/mock/upstream",
            &pushgate_mock::sign_upstream(b"mock-receipt-secret", "c1", "up-2", "hi", 1),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );
}
