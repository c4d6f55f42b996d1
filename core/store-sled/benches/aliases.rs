//! Alias store micro benchmark: binds N aliases (one device each) in the sled store, then
//! measures alias resolution latency (random aliases) and the process RSS. Prints figures.
//!
//! `cargo bench -p pushgate-store-sled --bench aliases -- [N] [LOOKUPS]` (defaults 1,000,000 and
//! 200,000); `CACHE_MB` sets sled's cache (default 64).

use std::time::Instant;

use pushgate_engine::model::DeviceRef;
use pushgate_engine::store::{no_mirrors, Binding, IdentityStore};
use pushgate_store_sled::SledOptions;
use rand::Rng;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn pct(sorted: &[u128], p: f64) -> f64 {
    sorted[((p / 100.0) * (sorted.len() - 1) as f64) as usize] as f64 / 1000.0
}

fn main() {
    // As the gateway's own main does.
    pushgate_engine::allocator::limit_malloc_arenas();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => eprintln!("cannot start the runtime: {e}"),
    }
}

async fn run() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let lookups = args.get(1).copied().unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = SledOptions::new(dir.path());
    let cache_mb: u64 = std::env::var("CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    options.cache_capacity = cache_mb * 1024 * 1024;
    let store = pushgate_store_sled::open(&options).expect("open");
    let rss_start = rss_mib();
    let started = Instant::now();
    for i in 0..n {
        let device = DeviceRef {
            provider: "mock".into(),
            cid: format!("cid-{i:08}"),
        };
        store
            .bind_device(
                "demo",
                &format!("user{i}"),
                Binding::of(device, 10, 0),
                &no_mirrors,
            )
            .await
            .expect("bind");
        // The API flushes every bind (group commit); flush in batches here.
        if i % 1000 == 999 {
            pushgate_engine::store::DeliveryStore::commit(&store)
                .await
                .expect("flush");
        }
    }
    let bind_secs = started.elapsed().as_secs_f64();
    pushgate_engine::store::DeliveryStore::commit(&store)
        .await
        .expect("flush");
    let rss_bound = rss_mib();
    let mut rng = rand::thread_rng();
    let mut samples = Vec::with_capacity(lookups);
    for _ in 0..lookups {
        let alias = format!("user{}", rng.gen_range(0..n));
        let t = Instant::now();
        let record = store.alias("demo", &alias).await.expect("lookup");
        samples.push(t.elapsed().as_nanos());
        assert!(record.is_some());
    }
    samples.sort_unstable();
    println!(
        "aliases bound:        {n} in {bind_secs:.1} s ({:.0} binds/s, one device each)",
        n as f64 / bind_secs
    );
    println!(
        "alias resolution:     p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs over {lookups} random lookups",
        pct(&samples, 50.0),
        pct(&samples, 99.0),
        pct(&samples, 99.9),
        *samples.last().unwrap_or(&0) as f64 / 1000.0
    );
    println!(
        "RSS:                  {rss_start:.1} MiB empty, {rss_bound:.1} MiB with {n} aliases, {:.1} MiB after lookups (sled cache {cache_mb} MiB)",
        rss_mib()
    );
}
