//! `GET /v1/apps/{app}/events` end to end: live events with the webhook's ids, keep-alives,
//! resumption after `Last-Event-ID`, bad input, and a reader too slow for its buffer cut off
//! and resuming without losing an event.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use support::app_server::AppServer;
use support::eventually;
use support::gateway::{config, GatewayProcess, API_KEY};
use support::sse::{EventStream, Seen};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_live_and_resume_after_the_last_event_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = AppServer::start().await;
    let extra = "[event_stream]\nkeepalive_seconds = 1\n";
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), Some(&app.url), "", extra));
    let api = gw.api();
    assert_eq!(
        api.bind("bob", "mock", "bob-phone").await.status,
        StatusCode::OK
    );

    let mut stream = EventStream::open(&gw.url, "demo", API_KEY, None).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.content_type, "text/event-stream");
    let sent = api
        .send(&json!({"to": {"alias": "bob"}, "payload": {"text": "hi"}}))
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    let id = sent.json["message_id"].as_str().expect("id").to_string();
    let first = stream.next_event(WAIT).await.expect("the delivered event");
    assert_eq!(first.event, "message.delivered");
    assert_eq!(first.data["id"], first.id.as_str());
    assert_eq!(first.data["data"]["message_id"], id.as_str());
    assert_eq!(first.data["data"]["delivery"]["cid"], "bob-phone");
    // The webhook still gets it, with the same event id.
    let hooks = eventually(WAIT, "the webhook", || {
        let got = app.accepted_events("message.delivered");
        async move { (!got.is_empty()).then_some(got) }
    })
    .await;
    assert_eq!(hooks[0].json["id"], first.id.as_str());
    // Idle: keep-alive comments.
    match stream.next(Duration::from_secs(3)).await {
        Some(Seen::Comment(c)) => assert_eq!(c, "keep-alive"),
        other => panic!("expected a keep-alive, got {other:?}"),
    }
    drop(stream);

    // Three more while nobody listens; a reconnect after the first id gets exactly them.
    let mut ids = Vec::new();
    for n in 0..3 {
        let r = api
            .send(&json!({"to": {"alias": "bob"}, "payload": {"n": n}}))
            .await;
        ids.push(r.json["message_id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        eventually(WAIT, "delivered", || {
            let api = api.clone();
            let id = id.clone();
            async move { (api.states(&id).await == ["delivered"]).then_some(()) }
        })
        .await;
    }
    let mut resumed = EventStream::open(&gw.url, "demo", API_KEY, Some(&first.id)).await;
    let got = resumed.events(3, WAIT).await;
    let got_messages: Vec<&str> = got
        .iter()
        .map(|e| e.data["data"]["message_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        got_messages,
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(got.windows(2).all(|w| w[0].id < w[1].id), "in id order");
    assert!(got.iter().all(|e| e.id != first.id), "not the one before");
    assert!(resumed
        .next_event(Duration::from_millis(500))
        .await
        .is_none());

    // Bad input.
    let bad = EventStream::open(&gw.url, "demo", API_KEY, Some("not-an-id")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error["error"]["code"], "invalid_last_event_id");
    let unauthorised = EventStream::open(&gw.url, "demo", "wrong-key-0123456789", None).await;
    assert_eq!(unauthorised.status, StatusCode::UNAUTHORIZED);
    let metrics = api.get("/metrics").await.text;
    assert!(
        metrics.contains("pushgate_event_stream_readers"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_cut_off_and_resumes_without_losing_an_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = "[event_stream]\nbuffer = 16\nkeepalive_seconds = 1\n";
    let gw = GatewayProcess::start(dir.path(), &config(dir.path(), None, "", extra));
    let api = gw.api();
    for n in 0..10 {
        let r = api.bind("bob", "mock", &format!("bob-phone-{n}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // A reader that asks and then stops reading, with a small receive buffer.
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    set_receive_buffer(&slow, 4096);
    write!(
        slow,
        "GET /v1/apps/demo/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n"
    )
    .expect("request");
    let mut head = [0u8; 64];
    let n = slow.read(&mut head).expect("answer");
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    let t0 = std::time::Instant::now();
    // Events until the gateway cuts the reader off (each message: 10 deliveries).
    let mut messages = 0;
    let cut_off = loop {
        let mut sends = tokio::task::JoinSet::new();
        for n in 0..50 {
            let api = api.clone();
            let body = json!({"to": {"alias": "bob"}, "payload": {"n": n, "pad": "x".repeat(200)}});
            sends.spawn(async move { api.send(&body).await });
        }
        while let Some(r) = sends.join_next().await {
            let r = r.expect("send task");
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
            messages += 1;
        }
        let metrics = api.get("/metrics").await.text;
        if metrics.contains("pushgate_event_stream_cutoffs_total{app=\"demo\"} 1") {
            break true;
        }
        if messages >= 3000 {
            break false;
        }
    };
    assert!(cut_off, "no cut-off after {messages} messages");
    eprintln!("cut off after {messages} messages, {:?}", t0.elapsed());
    // What the slow reader got before the cut-off (read at full speed now): its stream ends
    // (the final chunk).
    set_receive_buffer(&slow, 4 << 20);
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut text = Vec::new();
    let mut buf = [0u8; 65536];
    while !text.ends_with(b"0\r\n\r\n") {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the cut-off stream did not end: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let seen: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert!(!seen.is_empty(), "some events before the cut-off");
    eprintln!("slow reader read {} events, {:?}", seen.len(), t0.elapsed());
    // Resuming after the last one it got brings every other event (reconnecting, as an SSE
    // client does, when a burst outruns this small buffer again).
    let total = messages * 10;
    let mut all: Vec<String> = seen.iter().map(|s| s.to_string()).collect();
    let mut reconnects = 0;
    while all.len() < total && reconnects < 50 {
        let last = all.last().cloned().expect("an id");
        let mut resumed = EventStream::open(&gw.url, "demo", API_KEY, Some(&last)).await;
        let rest = resumed
            .events(total - all.len(), Duration::from_secs(20))
            .await;
        eprintln!("resumed: {} events, {:?}", rest.len(), t0.elapsed());
        all.extend(rest.into_iter().map(|e| e.id));
        reconnects += 1;
    }
    assert_eq!(
        all.len(),
        total,
        "{} before the cut-off, {reconnects} reconnects",
        seen.len()
    );
    let unique: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), total, "no event twice");
}

fn set_receive_buffer(stream: &std::net::TcpStream, size: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt");
}
