//! pushgate's load generator and benchmark.
//!
//! ```sh
//! cargo build --release && cargo run --release --example loadgen -- --max --seconds 10
//! cargo run --release --example loadgen -- --rate 10000 --seconds 10 --baseline --json out.json
//! ```
//!
//! It starts the release gateway as a child process (mock provider with receipts, durability
//! on, a webhook to this process so every `message.delivered` is timed), binds N aliases,
//! then sends `POST /messages` over keep-alive connections at a fixed rate (latency measured
//! from each request's intended start: no coordinated omission) or as fast as possible, for
//! a bounded count or time. It reports accept latency percentiles, accept → delivered latency,
//! throughput accepted and delivered, errors and the gateway's RSS. `--baseline` runs the same
//! client against a trivial hyper server that answers 202 without work, in the same run, and
//! reports pushgate's throughput as a ratio of it.

mod client;
mod report;
mod servers;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use report::{Figures, Report};

pub struct Options {
    pub aliases: usize,
    pub connections: usize,
    /// Messages per second in total; `None`: as fast as possible.
    pub rate: Option<f64>,
    pub seconds: f64,
    pub count: Option<usize>,
    pub baseline: bool,
    pub json: Option<PathBuf>,
    pub gateway_bin: Option<PathBuf>,
    pub drain_seconds: u64,
    /// PostgreSQL URL: the gateways run on it instead of sled.
    pub store_url: Option<String>,
    /// Gateway processes on the one database (connections spread over them).
    pub nodes: usize,
    /// Send Matrix notifies (`/_matrix/push/v1/notify`, one device each) instead of messages.
    pub matrix: bool,
    /// TOML appended to the gateway's config (`--config-extra '[event_stream]…'`).
    pub config_extra: String,
    /// Keys added to the config's `[server]` table (`--server-extra 'commit_window_ms = 1'`).
    pub server_extra: String,
    /// The app's `webhook_batch_max` (`--webhook-batch N`; 1: one event per POST).
    pub webhook_batch: usize,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        aliases: 1000,
        connections: 32,
        rate: None,
        seconds: 10.0,
        count: None,
        baseline: false,
        json: None,
        gateway_bin: None,
        drain_seconds: 60,
        store_url: None,
        nodes: 1,
        matrix: false,
        config_extra: String::new(),
        server_extra: String::new(),
        webhook_batch: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{v:?} is not a number"))
        };
        match flag.as_str() {
            "--aliases" => o.aliases = num(value()?)? as usize,
            "--connections" => o.connections = (num(value()?)? as usize).max(1),
            "--rate" => o.rate = Some(num(value()?)?),
            "--max" => o.rate = None,
            "--seconds" => o.seconds = num(value()?)?,
            "--count" => o.count = Some(num(value()?)? as usize),
            "--baseline" => o.baseline = true,
            "--json" => o.json = Some(PathBuf::from(value()?)),
            "--gateway-bin" => o.gateway_bin = Some(PathBuf::from(value()?)),
            "--drain-seconds" => o.drain_seconds = num(value()?)? as u64,
            "--store-url" => o.store_url = Some(value()?),
            "--nodes" => o.nodes = (num(value()?)? as usize).max(1),
            "--matrix" => o.matrix = true,
            "--webhook-batch" => o.webhook_batch = (num(value()?)? as usize).max(1),
            "--config-extra" => o.config_extra = value()?.replace("\\n", "\n"),
            "--server-extra" => o.server_extra = value()?.replace("\\n", "\n"),
            "-h" | "--help" => {
                println!("usage: loadgen [--aliases N] [--connections C] [--rate R | --max] [--seconds S] [--count N] [--baseline] [--json FILE] [--gateway-bin PATH] [--store-url postgres://… [--nodes N]] [--matrix] [--config-extra TOML] [--server-extra TOML] [--webhook-batch N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.nodes > 1 && o.store_url.is_none() {
        return Err("--nodes needs --store-url (several nodes share a PostgreSQL database)".into());
    }
    Ok(o)
}

/// The release gateway binary next to this example (target/release/pushgate).
fn gateway_bin(o: &Options) -> Result<PathBuf, String> {
    if let Some(p) = &o.gateway_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("pushgate"))
        .ok_or("cannot locate target dir")?;
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` first",
            bin.display()
        ));
    }
    Ok(bin)
}

struct Gateway {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const KEY: &str = "loadgen-api-key-0123456789";

/// Starts gateway `node`: on sled in its own directory, or on the database `store_url`.
fn start_gateway(
    bin: &PathBuf,
    webhook: &str,
    store_url: Option<&str>,
    node: usize,
    (server_extra, extra): (&str, &str),
    webhook_batch: usize,
) -> Result<Gateway, String> {
    let dir = std::env::temp_dir().join(format!("pushgate-loadgen-{}-{node}", std::process::id()));
    let store = store_url
        .map(|url| {
            format!("\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nnode_id = \"loadgen-{node}\"\n")
        })
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nmax_body_bytes = 65536\n{server_extra}\n\n[[apps]]\nid = \"demo\"\napi_keys = [\"{KEY}\"]\nwebhook_url = \"{webhook}\"\nwebhook_secret = \"loadgen-webhook-secret-01\"\ndefault_provider = \"mock\"\nwebhook_batch_max = {webhook_batch}\n\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\nreceipt_delay_ms = 5\nconcurrency = 512\n\n[webhooks]\nconcurrency = 64\n\n[[matrix_apps]]\napp_id = \"com.example.loadgen\"\napp = \"demo\"\nprovider = \"mock\"\n{store}\n{extra}\n",
        dir.join("data").display()
    );
    let path = dir.join("pushgate.toml");
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reader = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let url = loop {
        match reader.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("pushgate listening on ") {
                    break url.to_string();
                }
            }
            _ => return Err("the gateway did not start".into()),
        }
    };
    std::thread::spawn(move || for _ in reader {});
    Ok(Gateway { child, url, dir })
}

/// VmRSS and VmHWM of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time of every `postgres` process on this machine (the database of `--store-url`).
fn database_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

/// CPU time (user + system) a process has used so far, in seconds; `pid` 0 is this process.
fn cpu_seconds(pid: u32) -> f64 {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at "state"; utime and
    // stime are fields 14 and 15, counted in USER_HZ ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let ticks: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    ticks.iter().sum::<u64>() as f64 / 100.0
}

async fn run(o: Options) -> Result<(), String> {
    let bin = gateway_bin(&o)?;
    let accepted_at: client::Accepted = Arc::new(Mutex::new(HashMap::new()));
    let receiver = servers::DeliveryReceiver::start().await?;
    let gateways = (0..o.nodes)
        .map(|node| {
            start_gateway(
                &bin,
                &receiver.url,
                o.store_url.as_deref(),
                node,
                (&o.server_extra, &o.config_extra),
                o.webhook_batch,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pids: Vec<u32> = gateways.iter().map(|g| g.child.id()).collect();
    let pid = pids[0];
    let urls = gateways
        .iter()
        .map(|g| g.url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    println!("gateways {urls} (pids {pids:?}) from {}", bin.display());
    let started = Instant::now();
    client::bind_aliases(&urls, KEY, o.aliases, o.connections).await?;
    println!(
        "bound {} aliases in {:.2}s",
        o.aliases,
        started.elapsed().as_secs_f64()
    );
    let (rss_before, _) = rss_kib(pid);
    let gateways_cpu = || pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let cpu_before = (gateways_cpu(), cpu_seconds(0), Instant::now());
    let database_before = database_cpu_seconds();

    let run = client::drive(&urls, Some(KEY), &o, Some(accepted_at.clone())).await?;
    let load_end = Instant::now();
    // Wait for the deliveries (timed by their message.delivered webhooks) to drain.
    let deadline = load_end + Duration::from_secs(o.drain_seconds);
    while receiver.count() < run.accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rss_after, rss_peak) = rss_kib(pid);
    let cpu = report::CpuUse {
        gateway_s: gateways_cpu() - cpu_before.0,
        loadgen_s: cpu_seconds(0) - cpu_before.1,
        wall_s: cpu_before.2.elapsed().as_secs_f64(),
    };
    let delivered = {
        let accepted = accepted_at.lock().map_err(|_| "poisoned")?;
        receiver.latencies(&accepted)
    };
    let last_delivery = receiver.last().unwrap_or(load_end);
    // A notify answers no message id: its deliveries are counted, not timed.
    let timed = (!o.matrix).then_some((&delivered, last_delivery));
    if o.matrix {
        println!(
            "matrix: {} of {} notified devices delivered (message.delivered webhooks) by {:.2}s after the load",
            receiver.count(),
            run.accepted,
            last_delivery.saturating_duration_since(load_end).as_secs_f64()
        );
    }
    let mut figures = Figures::new(
        "pushgate",
        &run,
        timed,
        Some((rss_before, rss_after, rss_peak)),
    );
    if o.store_url.is_some() {
        let database_s = database_cpu_seconds() - database_before;
        println!(
            "database CPU: {database_s:.2} s, {:.0} µs per accepted message ({} node(s))",
            database_s * 1e6 / run.accepted.max(1) as f64,
            o.nodes
        );
    }
    figures.cpu = Some(cpu);
    println!(
        "webhooks: {} POSTs for {} delivered messages (webhook_batch_max = {})",
        receiver.posts(),
        receiver.count(),
        o.webhook_batch
    );
    drop(gateways);

    let baseline = if o.baseline {
        let server = servers::Baseline::start().await?;
        let run = client::drive(&server.url, None, &o, None).await?;
        Some(Figures::new(
            "baseline (hyper 202, no work)",
            &run,
            None,
            None,
        ))
    } else {
        None
    };
    let report = Report {
        options: report::OptionsView::from(&o),
        pushgate: figures,
        baseline,
    };
    report.print();
    if let Some(path) = &o.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&report.json()).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(options).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
