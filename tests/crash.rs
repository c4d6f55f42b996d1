//! Crash safety: the gateway is killed with SIGKILL and restarted on the same data dir. The
//! mock provider keeps its devices on disk (`state_dir`, no fixed `secret`: the key it signs
//! receipts with must outlive the restart), so the receipts its devices still owe survive,
//! as a real provider's do. Every message that got a 202 must end `delivered`, and reach its
//! device exactly once (the mock drops a repeated idempotency key, so the bound on copies
//! per device is one).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use support::client::Api;
use support::gateway::{GatewayProcess, API_KEY};

/// A config with the mock keeping its devices in `dir/mock-devices` and no fixed secret; its
/// devices acknowledge `receipt_delay_ms` after a send (so many receipts are owed at a kill).
fn crash_config(dir: &Path, receipt_delay_ms: u64) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
data_dir = "{data}"

[[apps]]
id = "demo"
api_keys = ["{API_KEY}"]
default_provider = "mock"

[[providers]]
name = "mock"
kind = "mock"
send_latency_ms = 1
receipt_delay_ms = {receipt_delay_ms}
state_dir = "{devices}"
# No resend on a missing receipt: a receipt lost in a crash must show here as stuck, not be
# repaired by the receipt timeout (tested on its own).
receipt_timeout_ms = 0

[delivery]
retry_base_ms = 100
retry_max_ms = 200
circuit_failures = 0
"#,
        data = dir.display(),
        devices = dir.join("mock-devices").display()
    )
}

/// What became of the accepted messages after the last restart.
struct Outcome {
    accepted: usize,
    delivered: usize,
    /// Not `delivered` within the wait: `id: answer`.
    stuck: Vec<String>,
    /// Device copies beyond the first, over all messages.
    duplicates: usize,
    /// Accepted messages no device has.
    missing: usize,
}

/// Waits (up to `wait`) until every accepted message is delivered, then reads the inboxes.
async fn outcome(api: &Api, ids: &[String], cids: &[String], wait: Duration) -> Outcome {
    let deadline = tokio::time::Instant::now() + wait;
    let mut stuck = Vec::new();
    let mut delivered = 0;
    for id in ids {
        loop {
            let reply = api.message(id).await;
            let states: Vec<&str> = reply.json["deliveries"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .map(|x| x["state"].as_str().unwrap_or(""))
                        .collect()
                })
                .unwrap_or_default();
            if !states.is_empty() && states.iter().all(|s| *s == "delivered") {
                delivered += 1;
                break;
            }
            if tokio::time::Instant::now() > deadline {
                stuck.push(format!("{id}: {}", reply.text));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut copies: HashMap<String, usize> = HashMap::new();
    for cid in cids {
        for m in api.inbox("mock", cid).await {
            let id = m["message_id"].as_str().unwrap_or("").to_string();
            *copies.entry(id).or_default() += 1;
        }
    }
    Outcome {
        accepted: ids.len(),
        delivered,
        duplicates: copies.values().map(|n| n - 1).sum(),
        missing: ids.iter().filter(|id| !copies.contains_key(*id)).count(),
        stuck,
    }
}

fn check(name: &str, o: &Outcome) {
    println!(
        "{name}: {} accepted (202), {} delivered, {} stuck, {} duplicate device copies, {} missing on devices",
        o.accepted,
        o.delivered,
        o.stuck.len(),
        o.duplicates,
        o.missing
    );
    assert!(o.accepted > 0, "the load produced accepted messages");
    assert!(
        o.stuck.is_empty(),
        "accepted but never delivered: {:?}",
        o.stuck
    );
    assert_eq!(o.missing, 0, "every accepted message reached its device");
    assert_eq!(o.duplicates, 0, "no device got a message twice");
}

/// 200 sequential messages to one alias, SIGKILL right after the last 202, restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_the_last_202_loses_no_receipt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = crash_config(dir.path(), 300);
    let mut gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    api.bind("bob", "mock", "bob-phone").await;
    let mut ids = Vec::new();
    for n in 0..200 {
        let r = api
            .send(&json!({"to": {"alias": "bob"}, "payload": {"n": n}}))
            .await;
        assert_eq!(r.status.as_u16(), 202, "{}", r.text);
        ids.push(r.json["message_id"].as_str().expect("id").to_string());
    }
    gw.kill();
    let gw = GatewayProcess::start(dir.path(), &cfg);
    let o = outcome(
        &gw.api(),
        &ids,
        &["bob-phone".to_string()],
        Duration::from_secs(30),
    )
    .await;
    check("sequential, one SIGKILL", &o);
}

const ALIASES: usize = 50;
const SENDERS: usize = 8;
const KILLS: usize = 5;

/// 8 concurrent senders to 50 aliases, SIGKILL at a random moment 5 times, restart each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_concurrent_load_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = crash_config(dir.path(), 5);
    let cids: Vec<String> = (0..ALIASES).map(|i| format!("cid-{i}")).collect();
    let accepted: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut cut_off = 0usize;
    for run in 0..KILLS {
        let mut gw = GatewayProcess::start(dir.path(), &cfg);
        let api = gw.api();
        if run == 0 {
            for (i, cid) in cids.iter().enumerate() {
                api.bind(&format!("user{i}"), "mock", cid).await;
            }
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut senders = Vec::new();
        for s in 0..SENDERS {
            let (api, accepted, stop) = (api.clone(), accepted.clone(), stop.clone());
            senders.push(tokio::spawn(async move {
                let mut failures = 0;
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let to = rand::thread_rng().gen_range(0..ALIASES);
                    let body = json!({"to": {"alias": format!("user{to}")}, "payload": {"run": run, "s": s, "n": n}});
                    match tokio::time::timeout(Duration::from_secs(2), api.try_send(&body)).await {
                        Ok(Some((202, id))) => accepted.lock().expect("lock").push(id),
                        _ => failures += 1,
                    }
                }
                failures
            }));
        }
        let wait = rand::thread_rng().gen_range(300..1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        gw.kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in senders {
            cut_off += s.await.expect("sender");
        }
    }
    let gw = GatewayProcess::start(dir.path(), &cfg);
    let ids = accepted.lock().expect("lock").clone();
    let o = outcome(&gw.api(), &ids, &cids, Duration::from_secs(60)).await;
    println!("({cut_off} requests cut off by the kills: no 202, not counted)");
    check(&format!("{SENDERS} senders, {KILLS} SIGKILLs"), &o);
}
