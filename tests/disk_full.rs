//! Fail-stop on a storage failure: when a write to disk fails (here every file is capped with
//! RLIMIT_FSIZE, as on a full disk), the gateway refuses further commits, stops with exit
//! status 3, and a restart on the same data dir resumes from what was durable: every message
//! that got a 202 is still there and reaches its device. (A receipt the provider sent while
//! the store was failing is lost, as Getui drops a receipt after 3 tries: such a delivery
//! stays `sent` until its TTL. The test counts them.)

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use support::gateway::{config, GatewayProcess};

const ALIASES: usize = 5;
/// Small enough that a few seconds of load fill it, big enough for the gateway to start.
const FILE_LIMIT: u64 = 2 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_gateway_and_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), None, "", "");
    let mut gw = GatewayProcess::start_with_file_limit(dir.path(), &cfg, FILE_LIMIT);
    let api = gw.api();
    for i in 0..ALIASES {
        api.bind(&format!("user{i}"), "mock", &format!("cid-{i}"))
            .await;
    }
    let accepted: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::<u16>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..4 {
        let (api, accepted, refused, stop) =
            (api.clone(), accepted.clone(), refused.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Padding fills the disk sooner.
                let body = json!({"to": {"alias": format!("user{}", (s + n) % ALIASES)},
                                  "payload": {"s": s, "n": n, "pad": "x".repeat(2000)}});
                match tokio::time::timeout(Duration::from_secs(2), api.try_send(&body)).await {
                    Ok(Some((202, id))) => accepted.lock().expect("lock").push(id),
                    Ok(Some((status, _))) => refused.lock().expect("lock").push(status),
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    let code = tokio::task::spawn_blocking(move || {
        let code = gw.wait_exit(Duration::from_secs(60));
        (code, gw)
    })
    .await
    .expect("join");
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.expect("sender");
    }
    let (code, _gw) = code;
    assert_eq!(
        code,
        Some(3),
        "the gateway stops with status 3 once it cannot write"
    );
    let refused = refused.lock().expect("lock").clone();
    assert!(
        refused.iter().all(|s| *s == 503),
        "refusals are 503s: {refused:?}"
    );

    // Restart with no limit: everything that got a 202 is there and is delivered.
    let gw = GatewayProcess::start(dir.path(), &cfg);
    let api = gw.api();
    let ids = accepted.lock().expect("lock").clone();
    assert!(
        ids.len() > 100,
        "load ran before the disk filled: {} accepted",
        ids.len()
    );
    // Poll every message until all are at least handed to the provider, then give receipts
    // a few more seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut all_sent_at = None;
    let (lost, receipt_lost) = loop {
        let (mut lost, mut sent_only) = (Vec::new(), 0);
        for id in &ids {
            let states = api.states(id).await;
            if states.is_empty() || states.iter().any(|s| s != "delivered" && s != "sent") {
                lost.push(format!("{id}: {states:?}"));
            } else if states.iter().any(|s| s == "sent") {
                sent_only += 1;
            }
        }
        let now = tokio::time::Instant::now();
        if lost.is_empty() {
            let since = *all_sent_at.get_or_insert(now);
            if sent_only == 0 || now - since > Duration::from_secs(5) {
                break (lost, sent_only);
            }
        }
        if now > deadline {
            break (lost, sent_only);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "disk full: {} accepted before the gateway stopped, {} answered 503, {} lost, {} sent whose receipt was dropped while the store failed",
        ids.len(),
        refused.len(),
        lost.len(),
        receipt_lost
    );
    assert!(
        lost.is_empty(),
        "accepted but never sent after the restart: {lost:?}"
    );
    assert!(
        receipt_lost * 10 < ids.len(),
        "only the receipts of the last moments are lost: {receipt_lost} of {}",
        ids.len()
    );
}
