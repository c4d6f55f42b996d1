//! `webhook_batch_max`: an app that takes batches gets its events several to a POST (a JSON
//! array signed as a whole, each event with its own id), retried as a whole when its server
//! fails, every event once in the end.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use http::StatusCode;
use serde_json::{json, Value};
use support::app_server::AppServer;
use support::eventually;
use support::gateway::{config, GatewayProcess, WEBHOOK_SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_webhooks_carry_every_event_once_in_fewer_posts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    // The app server is down at first: the events wait and go in batches once it is up.
    app.answer(503);
    let extra = "[webhooks]\nretry_base_ms = 200\nretry_max_ms = 500\n";
    let text = config(dir.path(), Some(&app.url), "", extra).replacen(
        "default_provider = \"mock\"\n",
        "default_provider = \"mock\"\nwebhook_batch_max = 50\n",
        1,
    );
    assert!(text.contains("webhook_batch_max = 50"));
    let gw = GatewayProcess::start(dir.path(), &text);
    let api = gw.api();
    for n in 0..5 {
        let r = api.bind("bob", "mock", &format!("bob-phone-{n}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..40 {
        let api = api.clone();
        sends.spawn(async move {
            api.send(&json!({"to": {"alias": "bob"}, "payload": {"n": n}}))
                .await
        });
    }
    while let Some(r) = sends.join_next().await {
        let r = r.expect("task");
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    }
    let total = 40 * 5;
    // Every delivery delivered (the events wait meanwhile), then the server comes up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !app.received().is_empty(),
        "the events were tried while the server was down"
    );
    app.answer(200);
    let accepted = eventually(Duration::from_secs(30), "every event accepted", || {
        let got: Vec<_> = app
            .received()
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect();
        let n: usize = got
            .iter()
            .map(|r| r.json.as_array().map_or(1, Vec::len))
            .sum();
        async move { (n >= total).then_some(got) }
    })
    .await;
    let mut ids = HashSet::new();
    let mut batches = 0;
    for post in &accepted {
        let expected = pushgate::webhook::signature(WEBHOOK_SECRET.as_bytes(), &post.body);
        assert_eq!(
            post.headers["x-pushgate-signature"]
                .to_str()
                .expect("header"),
            expected,
            "signed as a whole"
        );
        let events: Vec<Value> = match &post.json {
            Value::Array(events) => {
                batches += 1;
                assert!(events.len() <= 50, "{}", events.len());
                assert_eq!(
                    post.headers["x-pushgate-event-count"]
                        .to_str()
                        .expect("header"),
                    events.len().to_string()
                );
                events.clone()
            }
            single => vec![single.clone()],
        };
        for event in events {
            assert_eq!(event["type"], "message.delivered");
            assert!(
                ids.insert(event["id"].as_str().expect("id").to_string()),
                "{} twice",
                event["id"]
            );
        }
    }
    assert_eq!(ids.len(), total);
    // Retries spread the events' due times (jitter), so claims gather them unevenly: at
    // least four events a POST on average, where singles would take one each.
    assert!(
        accepted.len() <= total / 4,
        "{} posts for {total} events ({batches} batches)",
        accepted.len()
    );
    eprintln!(
        "{total} events in {} posts ({batches} batches)",
        accepted.len()
    );
}
