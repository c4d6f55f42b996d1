//! Crash safety harness: the gateway runs under steady load and is killed with SIGKILL at
//! random moments, several times, then restarted on the same data dir. Every message that
//! got a 202 must end `delivered` (mock provider, no loss configured); devices must not get
//! a message more often than at-least-once allows (the count is reported).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use support::gateway::{config, GatewayProcess};

const ALIASES: usize = 10;
const KILLS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("mock-devices");
    let mock = format!("send_latency_ms = 2\nstate_dir = \"{}\"", state.display());
    let cfg = config(
        dir.path(),
        None,
        &mock,
        "[delivery]\nretry_base_ms = 100\nretry_max_ms = 200\ncircuit_failures = 0\n",
    );
    let accepted: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut failed_requests = 0usize;
    for run in 0..=KILLS {
        let mut gw = GatewayProcess::start(dir.path(), &cfg);
        let api = gw.api();
        if run == 0 {
            for i in 0..ALIASES {
                api.bind(&format!("user{i}"), "mock", &format!("cid-{i}"))
                    .await;
            }
        }
        if run == KILLS {
            break;
        }
        // Steady load from 4 senders until the kill.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut senders = Vec::new();
        for s in 0..4 {
            let (api, accepted, stop) = (api.clone(), accepted.clone(), stop.clone());
            senders.push(tokio::spawn(async move {
                let mut failures = 0;
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let body = json!({"to": {"alias": format!("user{}", (s + n) % ALIASES)}, "payload": {"run": run, "s": s, "n": n}});
                    match tokio::time::timeout(Duration::from_secs(2), api.try_send(&body)).await {
                        Ok(Some((202, id))) => accepted.lock().expect("lock").push(id),
                        _ => failures += 1,
                    }
                }
                failures
            }));
        }
        let wait = rand::thread_rng().gen_range(300..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        gw.kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in senders {
            failed_requests += s.await.expect("sender");
        }
    }
    // The last start (above, run == KILLS) is still running: everything must finish.
    let gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    let ids = accepted.lock().expect("lock").clone();
    let mut lost = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let reply = api.message(id).await;
            let states: Vec<String> = reply.json["deliveries"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .map(|x| x["state"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            if !states.is_empty() && states.iter().all(|s| s == "delivered") {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                lost.push(format!("{id}: {}", reply.text));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut copies: HashMap<(String, String), usize> = HashMap::new();
    for i in 0..ALIASES {
        let cid = format!("cid-{i}");
        for m in api.inbox("mock", &cid).await {
            *copies
                .entry((
                    cid.clone(),
                    m["message_id"].as_str().unwrap_or("").to_string(),
                ))
                .or_default() += 1;
        }
    }
    let duplicates: usize = copies.values().map(|n| n - 1).sum();
    let missing_from_devices = ids
        .iter()
        .filter(|id| !copies.keys().any(|(_, m)| m == *id))
        .count();
    println!(
        "crash harness: {} runs, {KILLS} SIGKILLs, {} messages accepted (202), {} lost, {} duplicate device deliveries, {} requests cut off by the kills (no 202, not counted)",
        KILLS + 1,
        ids.len(),
        lost.len() + missing_from_devices,
        duplicates,
        failed_requests
    );
    assert!(!ids.is_empty(), "the load produced accepted messages");
    assert!(lost.is_empty(), "accepted but never delivered: {lost:?}");
    assert_eq!(
        missing_from_devices, 0,
        "every accepted message reached its device"
    );
}
