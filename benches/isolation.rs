//! Provider isolation, measured: how fast a healthy provider delivers while another provider
//! times out on every send, against the same run with both healthy. Prints the throughput
//! ratio (goal: at least 0.9 of healthy); asserts nothing about time.
//!
//! `cargo bench --bench isolation` (the gateway binary of the bench profile, on 127.0.0.1).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::client::Api;
use support::gateway::{config, GatewayProcess};

const ROUNDS: usize = 5;
const THROUGH_B: usize = 1000;

fn isolation_config(dir: &std::path::Path, a_down: bool) -> String {
    let a = if a_down {
        "send_latency_ms = 60000\nsend_timeout_ms = 200"
    } else {
        "send_latency_ms = 1"
    };
    let extra = format!(
        "[[providers]]\nname = \"provider-a\"\nkind = \"mock\"\n{a}\n\n[delivery]\ncircuit_failures = 5\ncircuit_open_ms = 1000\nretry_base_ms = 100\nretry_max_ms = 200\n"
    );
    config(dir, None, "", &extra)
}

/// Sends `n` messages to `alias`; returns how long until all were delivered.
async fn deliver_batch(api: &Api, alias: &str, n: usize) -> Duration {
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let r = api
            .send(&json!({"to": {"alias": alias}, "payload": {"n": i}}))
            .await;
        ids.push(
            r.json["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    for id in &ids {
        while !api.all_deliveries_are(id, "delivered").await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    started.elapsed()
}

async fn run(a_down: bool) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = GatewayProcess::start(dir.path(), &isolation_config(dir.path(), a_down));
    let api = gw.api();
    api.bind("alice", "provider-a", "a-1").await;
    api.bind("bob", "mock", "b-1").await;
    for i in 0..50 {
        api.send(&json!({"to": {"alias": "alice"}, "payload": {"n": i}}))
            .await;
    }
    deliver_batch(&api, "bob", THROUGH_B).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let healthy = run(false).await;
        let beside_failing = run(true).await;
        let ratio = healthy.as_secs_f64() / beside_failing.as_secs_f64();
        println!(
            "round {round}: {THROUGH_B} deliveries through B in {healthy:?} with A healthy, {beside_failing:?} with A timing out: throughput ratio {ratio:.2}"
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "isolation: B's throughput beside a failing A is {:.2} of healthy (median of {ROUNDS}; min {:.2}, max {:.2}; goal >= 0.9)",
        ratios[ROUNDS / 2],
        ratios[0],
        ratios[ROUNDS - 1]
    );
}
