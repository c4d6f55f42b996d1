//! `getui-emulator`: a local Getui REST v2 for trying pushgate without Getui credentials.

use std::net::SocketAddr;

use pushgate_getui::emulator::{Emulator, EmulatorConfig};

const USAGE: &str = "\
getui-emulator — a local Getui (个推) REST v2 API

USAGE:
    getui-emulator [--listen ADDR] [--app-id ID] [--app-key KEY] [--master-secret SECRET]
                   [--receipt-url URL] [--upstream-url URL] [--token-ttl-ms N]
                   [--receipt-delay-ms N] [--error-rate R] [--slow-rate R] [--slow-ms N]
                   [--late-rate R] [--late-ms N] [--drop-receipt-rate R]

Defaults: --listen 127.0.0.1:18081, app emu-app-id / emu-app-key / emu-master-secret.
Admin routes: GET /_emulator/devices/{cid}/inbox, POST /_emulator/devices/{cid}/upstream
{\"payload\": \"...\"}, POST /_emulator/faults, POST /_emulator/expire-tokens,
POST /_emulator/config {\"receipt_url\", \"upstream_url\"}, GET /_emulator/requests.
";

fn parse(args: &[String]) -> Result<(SocketAddr, EmulatorConfig), String> {
    let mut listen: SocketAddr = "127.0.0.1:18081".parse().map_err(|_| "bad default")?;
    let mut c = EmulatorConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        let rate = |v: &str| match v.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(format!("{flag}: {v:?} is not a rate between 0 and 1")),
        };
        match flag.as_str() {
            "--listen" => {
                listen = value
                    .parse()
                    .map_err(|_| format!("--listen: {value:?} is not an address"))?
            }
            "--app-id" => c.app_id = value.clone(),
            "--app-key" => c.app_key = value.clone(),
            "--master-secret" => c.master_secret = value.clone(),
            "--receipt-url" => c.receipt_url = Some(value.clone()),
            "--upstream-url" => c.upstream_url = Some(value.clone()),
            "--token-ttl-ms" => c.token_ttl_ms = num(value)?,
            "--receipt-delay-ms" => c.receipt_delay_ms = num(value)?,
            "--error-rate" => c.faults.error_rate = rate(value)?,
            "--slow-rate" => c.faults.slow_rate = rate(value)?,
            "--slow-ms" => c.faults.slow_ms = num(value)?,
            "--late-rate" => c.faults.late_rate = rate(value)?,
            "--late-ms" => c.faults.late_ms = num(value)?,
            "--drop-receipt-rate" => c.faults.drop_receipt_rate = rate(value)?,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok((listen, c))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return;
    }
    let (listen, config) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let app_id = config.app_id.clone();
    let emulator = match Emulator::start(listen, config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "getui emulator listening on {} (app_id {app_id})",
        emulator.url()
    );
    let _ = tokio::signal::ctrl_c().await;
}
