//! Every kind of bad input gets the documented 4xx with a clear error, and changes nothing.

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use support::gateway::{config, GatewayProcess, API_KEY, MOCK_SECRET};

/// Method, path, API key, body, expected status, expected error code.
type Case<'a> = (
    Method,
    String,
    Option<&'a str>,
    Vec<u8>,
    StatusCode,
    &'a str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = GatewayProcess::start(
        dir.path(),
        &config(
            dir.path(),
            None,
            "",
            "[[providers]]\nname = \"other\"\nkind = \"mock\"",
        ),
    );
    let api = gw.api();
    for i in 0..10 {
        assert_eq!(
            api.bind("bob", "mock", &format!("bob-{i}")).await.status,
            StatusCode::OK
        );
    }
    let before = api.get("/v1/apps/demo/aliases/bob").await.json;

    let long_alias = "a".repeat(40);
    let long_cid = "c".repeat(65);
    let huge = "x".repeat(5000);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": "bob", "payload": 1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}, "payload": 1, "ttl_seconds": "soon"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        // serde alone builds structs from arrays of their fields: refused.
        (
            Method::POST,
            "/v1/apps/demo/aliases/bob/devices".into(),
            Some(API_KEY),
            br#"["mock", "bob-phone"]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}, "payload": 1, "notification": ["Alice", "hi"]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}, "payload": 1, "surprise": true}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}, "payload": 1, "ttl_seconds": -5}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_ttl",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}, "payload": 1, "ttl_seconds": 0}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_ttl",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}, "payload": 1, "ttl_seconds": 99999999}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_ttl",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            format!(r#"{{"to": {{"alias": "{long_alias}"}}, "payload": 1}}"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_alias",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "nobody"}, "payload": 1}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "unknown_alias",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"device": {"provider": "nope", "cid": "c1"}}, "payload": 1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "unknown_provider",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}, "payload": 1, "provider": "nope"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "unknown_provider",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}, "payload": 1, "from": ""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_from",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            format!(r#"{{"to": {{"alias": "bob"}}, "payload": "{huge}"}}"#).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            None,
            br#"{"to": {"alias": "bob"}, "payload": 1}"#.to_vec(),
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
        ),
        (
            Method::POST,
            "/v1/apps/demo/messages".into(),
            Some("wrong-key-0123456789"),
            br#"{"to": {"alias": "bob"}, "payload": 1}"#.to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
        ),
        (
            Method::POST,
            "/v1/apps/nope/messages".into(),
            Some(API_KEY),
            br#"{"to": {"alias": "bob"}, "payload": 1}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "unknown_app",
        ),
        (
            Method::POST,
            "/v1/apps/demo/aliases/bob/devices".into(),
            Some(API_KEY),
            br#"{"provider": "mock", "cid": "bob-10"}"#.to_vec(),
            StatusCode::CONFLICT,
            "alias_full",
        ),
        (
            Method::POST,
            format!("/v1/apps/demo/aliases/{long_alias}/devices"),
            Some(API_KEY),
            br#"{"provider": "mock", "cid": "c1"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_alias",
        ),
        (
            Method::POST,
            "/v1/apps/demo/aliases/a%20b/devices".into(),
            Some(API_KEY),
            br#"{"provider": "mock", "cid": "c1"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_alias",
        ),
        (
            Method::POST,
            "/v1/apps/demo/aliases/dave/devices".into(),
            Some(API_KEY),
            br#"{"provider": "mock", "cid": ""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_cid",
        ),
        (
            Method::POST,
            "/v1/apps/demo/aliases/dave/devices".into(),
            Some(API_KEY),
            format!(r#"{{"provider": "mock", "cid": "{long_cid}"}}"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_cid",
        ),
        (
            Method::POST,
            "/v1/apps/demo/aliases/dave/devices".into(),
            Some(API_KEY),
            br#"{"provider": "nope", "cid": "c1"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "unknown_provider",
        ),
        (
            Method::POST,
            "/v1/apps/demo/aliases/dave/devices".into(),
            Some(API_KEY),
            br#"{"provider": "mock", "cid": 7}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::GET,
            "/v1/apps/demo/aliases/nobody".into(),
            Some(API_KEY),
            vec![],
            StatusCode::NOT_FOUND,
            "unknown_alias",
        ),
        (
            Method::DELETE,
            "/v1/apps/demo/aliases/nobody".into(),
            Some(API_KEY),
            vec![],
            StatusCode::NOT_FOUND,
            "unknown_alias",
        ),
        (
            Method::DELETE,
            "/v1/apps/demo/aliases/bob/devices/mock/not-bound".into(),
            Some(API_KEY),
            vec![],
            StatusCode::NOT_FOUND,
            "unknown_device",
        ),
        (
            Method::GET,
            "/v1/apps/demo/devices/mock/not-bound".into(),
            Some(API_KEY),
            vec![],
            StatusCode::NOT_FOUND,
            "unknown_device",
        ),
        (
            Method::GET,
            "/v1/apps/demo/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            Some(API_KEY),
            vec![],
            StatusCode::NOT_FOUND,
            "unknown_message",
        ),
        (
            Method::GET,
            "/v1/apps/demo/messages/not-an-id".into(),
            Some(API_KEY),
            vec![],
            StatusCode::NOT_FOUND,
            "unknown_message",
        ),
        (
            Method::PUT,
            "/v1/apps/demo/messages".into(),
            Some(API_KEY),
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/v1/nothing/here".into(),
            None,
            vec![],
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::POST,
            "/v1/callbacks/nope/receipts".into(),
            None,
            b"x".to_vec(),
            StatusCode::NOT_FOUND,
            "unknown_provider",
        ),
        (
            Method::POST,
            "/v1/callbacks/mock/receipts".into(),
            None,
            b"garbage\n".to_vec(),
            StatusCode::FORBIDDEN,
            "receipts_rejected",
        ),
    ];
    for (method, path, key, body, status, code) in cases {
        let reply = api
            .with_key(key)
            .raw(
                method.clone(),
                &path,
                &[("content-type", "application/json")],
                body,
            )
            .await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
        assert_eq!(reply.code(), code, "{method} {path}: {}", reply.text);
        let message = reply.json["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.len() > 10,
            "{method} {path}: the message explains: {message:?}"
        );
    }
    assert_eq!(
        api.get("/v1/apps/demo/aliases/bob").await.json,
        before,
        "nothing stored changed"
    );
    assert_eq!(
        api.get("/v1/apps/demo/aliases/dave").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/healthz").await.status,
        StatusCode::OK,
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_receipts_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Receipts never come by themselves: only the test sends them.
    let gw = GatewayProcess::start(
        dir.path(),
        &config(dir.path(), None, "receipt_loss_rate = 1.0", ""),
    );
    let api = gw.api();
    api.bind("bob", "mock", "bob-phone").await;
    let r = api
        .send(&json!({"to": {"alias": "bob"}, "payload": 1}))
        .await;
    let id = r.json["message_id"].as_str().expect("id").to_string();
    support::eventually(std::time::Duration::from_secs(10), "sent", || {
        let api = api.clone();
        let id = id.clone();
        async move { (api.states(&id).await == ["sent"]).then_some(()) }
    })
    .await;
    let reference = format!("{id}-0");
    let ts = "1700000000000".parse().expect("ts");
    let forged = pushgate_mock::sign_line(b"not-the-secret", &reference, "bob-phone", ts);
    let reply = api.post_text("/v1/callbacks/mock/receipts", &forged).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    let wrong_device =
        pushgate_mock::sign_line(MOCK_SECRET.as_bytes(), &reference, "eve-phone", ts);
    let reply = api
        .post_text("/v1/callbacks/mock/receipts", &wrong_device)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "a receipt for another device: {}",
        reply.text
    );
    assert_eq!(
        api.states(&id).await,
        ["sent"],
        "forged receipts change nothing"
    );

    let genuine = pushgate_mock::sign_line(MOCK_SECRET.as_bytes(), &reference, "bob-phone", ts);
    let reply = api.post_text("/v1/callbacks/mock/receipts", &genuine).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json["applied"], 1);
    assert_eq!(api.states(&id).await, ["delivered"]);
    let again = api.post_text("/v1/callbacks/mock/receipts", &genuine).await;
    assert_eq!(
        again.json["duplicates"], 1,
        "a repeated receipt is a duplicate"
    );
}
