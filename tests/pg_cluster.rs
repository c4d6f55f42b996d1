//! Three gateway processes on one PostgreSQL database, the Getui emulator as the provider
//! they share: load through all three, a node SIGKILLed mid-load and restarted, receipts
//! posted to another node than the sender, request ids and binds racing across nodes,
//! upstream order and TTL expiry across nodes.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use pushgate_getui::emulator::{Emulator, EmulatorConfig, Faults};
use serde_json::json;
use support::app_server::AppServer;
use support::client::Api;
use support::eventually;
use support::gateway::{config_with_store, GatewayProcess};
use support::postgres;

const WAIT: Duration = Duration::from_secs(60);

/// Node `i`'s config: the mock and the Getui emulator as providers, the shared database.
fn node_config(
    dir: &Path,
    db: &str,
    i: usize,
    app: &AppServer,
    emu: Option<&Emulator>,
    extra_mock: &str,
) -> String {
    let getui = emu
        .map(|emu| {
            let c = emu.config();
            format!(
                "[[providers]]\nname = \"getui\"\nkind = \"getui\"\nbase_url = \"{}\"\napp_id = \"{}\"\napp_key = \"{}\"\nmaster_secret = \"{}\"\ntimeout_ms = 2000\n",
                emu.url(),
                c.app_id,
                c.app_key,
                c.master_secret
            )
        })
        .unwrap_or_default();
    let extra = format!(
        "{getui}\n[delivery]\nretry_base_ms = 100\nretry_max_ms = 300\nmax_attempts = 50\n\n[webhooks]\nretry_base_ms = 100\nretry_max_ms = 300\nmax_attempts = 1000\n"
    );
    config_with_store(
        dir,
        Some(&app.url),
        extra_mock,
        &extra,
        &postgres::store_table(db, &format!("node-{i}")),
    )
}

struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    configs: Vec<String>,
    nodes: Vec<GatewayProcess>,
}

impl Cluster {
    fn start(app: &AppServer, emu: Option<&Emulator>, extra_mock: &str) -> Cluster {
        let db = postgres::database(&format!(
            "cluster_{}",
            std::process::id() ^ rand::random::<u32>()
        ));
        let dirs: Vec<tempfile::TempDir> = (0..3)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let configs: Vec<String> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| node_config(d.path(), &db, i, app, emu, extra_mock))
            .collect();
        // All three start at the same moment (their migrations race).
        let nodes = std::thread::scope(|scope| {
            let handles: Vec<_> = dirs
                .iter()
                .zip(&configs)
                .map(|(d, c)| scope.spawn(move || GatewayProcess::start(d.path(), c)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("start"))
                .collect()
        });
        Cluster {
            dirs,
            configs,
            nodes,
        }
    }

    fn api(&self, i: usize) -> Api {
        self.nodes[i].api()
    }

    fn restart(&mut self, i: usize) {
        self.nodes[i] = GatewayProcess::start(self.dirs[i].path(), &self.configs[i]);
    }
}

/// Sends `body` (with a request id) to the nodes in turn from `first`, moving on while a node
/// is down or answers 503, as a client behind a load balancer retries; `(status, id)`.
async fn send_anywhere(
    apis: &Mutex<Vec<Api>>,
    first: usize,
    body: &serde_json::Value,
) -> (u16, String) {
    for attempt in 0..60 {
        let api = {
            let apis = apis.lock().expect("lock");
            apis[(first + attempt) % apis.len()].clone()
        };
        match api.try_send(body).await {
            Some((status, id)) if status == 202 || status == 200 => return (status, id),
            Some((status, _)) if status != 503 => panic!("send answered {status}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("no node accepted {body}");
}

async fn wait_delivered(api: &Api, ids: &[String]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for id in ids {
        while !api.all_deliveries_are(id, "delivered").await {
            if tokio::time::Instant::now() > deadline {
                let receipts: Vec<String> = api
                    .get("/metrics")
                    .await
                    .text
                    .lines()
                    .filter(|l| {
                        l.starts_with("pushgate_receipts_total")
                            || l.starts_with("pushgate_callbacks")
                    })
                    .map(str::to_string)
                    .collect();
                panic!(
                    "{id} not delivered within {WAIT:?}: {} (this node's receipt counts: {receipts:?})",
                    api.message(id).await.text
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Each message's copies on its device (Getui's inbox, keyed by the push request id).
fn copies(emu: &Emulator, cids: &[String]) -> HashMap<String, usize> {
    let mut by_request: HashMap<String, usize> = HashMap::new();
    for cid in cids {
        for m in emu.inbox(cid) {
            *by_request.entry(m.request_id).or_default() += 1;
        }
    }
    by_request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_work_and_a_killed_node_loses_nothing() {
    let app = AppServer::start().await;
    let emu = Emulator::start(
        "127.0.0.1:0".parse().expect("addr"),
        EmulatorConfig::default(),
    )
    .await
    .expect("emulator");
    let mut cluster = Cluster::start(&app, Some(&emu), "");

    // Every receipt goes to node 1, whichever node sent the push.
    emu.set_receipt_url(Some(format!(
        "{}/v1/callbacks/getui/receipts",
        cluster.nodes[1].url
    )));

    // Binds on all three nodes; one device raced onto three aliases ends on one.
    let cids: Vec<String> = (0..30).map(|i| format!("cid-{i:02}")).collect();
    for (i, cid) in cids.iter().enumerate() {
        let r = cluster
            .api(i % 3)
            .bind(&format!("user{i}"), "getui", cid)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let apis3: Vec<Api> = (0..3).map(|i| cluster.api(i)).collect();
    let (a, b, c) = tokio::join!(
        apis3[0].bind("r0", "getui", "roamer"),
        apis3[1].bind("r1", "getui", "roamer"),
        apis3[2].bind("r2", "getui", "roamer"),
    );
    assert!([a.status, b.status, c.status]
        .iter()
        .all(|s| *s == StatusCode::OK));
    let mut holders = Vec::new();
    for alias in ["r0", "r1", "r2"] {
        let r = cluster
            .api(0)
            .get(&format!("/v1/apps/demo/aliases/{alias}"))
            .await;
        if r.status == StatusCode::OK && r.json["devices"].as_array().is_some_and(|d| !d.is_empty())
        {
            holders.push(alias);
        }
    }
    assert_eq!(holders.len(), 1, "roamer is on one alias: {holders:?}");

    // The same request to three nodes at once: one 202, two 200, one id.
    let same =
        json!({"to": {"alias": "user0"}, "payload": {"n": "same"}, "request_id": "same-request-1"});
    let (a, b, c) = tokio::join!(
        apis3[0].try_send(&same),
        apis3[1].try_send(&same),
        apis3[2].try_send(&same),
    );
    let answers: Vec<(u16, String)> = [a, b, c].into_iter().map(|r| r.expect("answer")).collect();
    let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 202], "{answers:?}");
    assert!(answers.iter().all(|(_, id)| *id == answers[0].1));
    let mut accepted = vec![answers[0].1.clone()];

    // Load through all three, then again with node 2 killed mid-load and restarted.
    let apis = Arc::new(Mutex::new(
        (0..3).map(|i| cluster.api(i)).collect::<Vec<_>>(),
    ));
    let mut phase_one = Vec::new();
    for n in 0..90 {
        let body = json!({"to": {"alias": format!("user{}", n % 30)}, "payload": {"n": n}, "request_id": format!("one-{n}")});
        let (_, id) = send_anywhere(&apis, n, &body).await;
        phase_one.push(id);
    }
    wait_delivered(&cluster.api(1), &phase_one).await;
    assert_eq!(
        emu.repeated_pushes(),
        0,
        "with no node dying, no delivery was sent twice"
    );
    accepted.extend(phase_one);

    // Every push reaches its device at once but is answered a second late, so the node
    // killed has sends in flight that went out but whose outcome it never records.
    emu.set_faults(Faults {
        late_rate: 1.0,
        late_ms: 1000,
        ..Faults::default()
    });
    let sent = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..6)
        .map(|s| {
            let apis = apis.clone();
            let sent = sent.clone();
            tokio::spawn(async move {
                for k in 0..40 {
                    let n = s * 40 + k;
                    let body = json!({"to": {"alias": format!("user{}", n % 30)}, "payload": {"n": n}, "request_id": format!("two-{n}")});
                    let (_, id) = send_anywhere(&apis, n, &body).await;
                    sent.lock().expect("lock").push(id);
                }
            })
        })
        .collect();
    eventually(WAIT, "a third of the load", || async {
        (sent.lock().expect("lock").len() >= 80).then_some(())
    })
    .await;
    cluster.nodes[2].kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.restart(2);
    apis.lock().expect("lock")[2] = cluster.api(2);
    for s in senders {
        s.await.expect("sender");
    }
    emu.set_faults(Faults::default());
    let phase_two = sent.lock().expect("lock").clone();
    assert_eq!(phase_two.len(), 240);
    wait_delivered(&cluster.api(1), &phase_two).await;
    accepted.extend(phase_two);

    // Each accepted message reached its device once (Getui drops a repeated request id;
    // the repeats it saw are the sends the killed node's claims had in flight).
    let mut all_cids = cids.clone();
    all_cids.push("roamer".into());
    let copies = copies(&emu, &all_cids);
    let unique: HashSet<&String> = accepted.iter().collect();
    for id in &unique {
        assert_eq!(
            copies.get(&format!("{id}-0")),
            Some(&1),
            "{id} on its device once"
        );
    }
    println!(
        "three nodes: {} messages accepted and delivered; the emulator dropped {} repeated pushes",
        unique.len(),
        emu.repeated_pushes()
    );
    assert!(
        emu.repeated_pushes() > 0,
        "the killed node's sends in flight were sent again by another node once its lease passed"
    );
    // Every delivery reached the app server as a webhook, whichever node sent it.
    let delivered = eventually(WAIT, "a delivered webhook per message", || async {
        let seen: HashSet<String> = app
            .accepted_events("message.delivered")
            .iter()
            .filter_map(|e| e.json["data"]["message_id"].as_str().map(str::to_string))
            .collect();
        unique.iter().all(|id| seen.contains(*id)).then_some(seen)
    })
    .await;
    let events = app.accepted_events("message.delivered").len();
    println!(
        "webhooks: {events} message.delivered events for {} messages ({} repeated after the kill)",
        delivered.len(),
        events - delivered.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_order_and_ttl_expiry_hold_across_nodes() {
    let app = AppServer::start().await;
    app.answer(503);
    // The mock fails every send: messages wait for their TTL.
    let cluster = Cluster::start(&app, None, "fail_first_attempts = 1000000");
    cluster.api(0).bind("alice", "mock", "alice-phone").await;
    // Alice's phone reaches a different node with each message while the app server is down.
    for i in 0..9 {
        let r = cluster
            .api(i % 3)
            .post(
                "/v1/mock/mock/devices/alice-phone/upstream",
                &json!({"payload": format!("m{i}")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    eventually(WAIT, "refused attempts", || async {
        (app.received().len() >= 3).then_some(())
    })
    .await;
    app.answer(200);
    let events = eventually(WAIT, "nine upstream events", || async {
        let e = app.accepted_events("upstream.received");
        (e.len() >= 9).then_some(e)
    })
    .await;
    let payloads: Vec<String> = events
        .iter()
        .map(|e| e.json["data"]["payload"].as_str().unwrap_or("").to_string())
        .collect();
    let expected: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads, expected, "alice's order holds across nodes");
    let refused: HashSet<String> = app
        .received()
        .iter()
        .filter(|r| r.answered != 200)
        .filter_map(|r| r.json["data"]["payload"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        refused,
        HashSet::from(["m0".to_string()]),
        "only the head of the queue was tried, by any node"
    );

    // Messages whose sends keep failing expire once each, whichever node holds them.
    cluster.api(1).bind("bob", "mock", "bob-phone").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let body = json!({"to": {"alias": "bob"}, "payload": i, "ttl_seconds": 1});
        let r = cluster.api(i % 3).send(&body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        ids.push(r.json["message_id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        eventually(WAIT, &format!("{id} expired"), || {
            let api = cluster.api(2);
            let id = id.clone();
            async move { (api.states(&id).await == ["expired"]).then_some(()) }
        })
        .await;
    }
    let expired_events = |app: &AppServer| {
        let mut by_message: HashMap<String, usize> = HashMap::new();
        for e in app.accepted_events("message.expired") {
            if let Some(id) = e.json["data"]["message_id"].as_str() {
                *by_message.entry(id.to_string()).or_default() += 1;
            }
        }
        by_message
    };
    eventually(WAIT, "an expired webhook per message", || async {
        let seen = expired_events(&app);
        ids.iter().all(|id| seen.contains_key(id)).then_some(())
    })
    .await;
    // Give a second expiry (another node's sweep) time to show, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = expired_events(&app);
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "{id} expired once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_qps_is_split_among_the_live_nodes() {
    let app = AppServer::start().await;
    let cluster = Cluster::start(&app, None, "qps = 10");
    cluster.api(0).bind("bob", "mock", "bob-phone").await;
    // Every dispatcher has told the store it runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for n in 0..45 {
        let r = cluster
            .api(n % 3)
            .send(&json!({"to": {"alias": "bob"}, "payload": n}))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        ids.push(r.json["message_id"].as_str().expect("id").to_string());
    }
    wait_delivered(&cluster.api(1), &ids).await;
    let elapsed = started.elapsed();
    println!(
        "qps = 10 on three nodes: 45 sends in {:.1} s ({:.1}/s for the cluster)",
        elapsed.as_secs_f64(),
        45.0 / elapsed.as_secs_f64()
    );
    // Each node alone would send 10/s (45 in 1.5 s); split, the cluster sends 10/s. Only a
    // lower bound: a slow machine makes it slower, never faster.
    assert!(
        elapsed >= Duration::from_millis(3500),
        "45 sends at 10/s for the cluster took only {elapsed:?}"
    );
}
