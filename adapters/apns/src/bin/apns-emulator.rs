//! `apns-emulator`: a local APNs (HTTP/2 over TLS, provider tokens, device inboxes).

use std::net::SocketAddr;
use std::path::PathBuf;

use pushgate_apns::emulator::{generate_tls, Emulator, EmulatorConfig, TlsFiles};
use pushgate_apns::ProviderKey;

const USAGE: &str = "\
USAGE:
    apns-emulator --dir DIR [--listen ADDR] [--team-id ID] [--key-id ID] [--topic BUNDLE]
                  [--device-ack-url URL] [--error-rate R] [--error-status 429|500|503]
                  [--retry-after-s N] [--slow-rate R] [--slow-ms N] [--goaway-after N]

DIR holds the emulator's files, made on the first start (openssl must be installed):
AuthKey_<key id>.p8 (pushgate's private_key_file) and apns-emu-ca.pem (pushgate's ca_file),
with the server's certificate for 127.0.0.1. Defaults: --listen 127.0.0.1:18083,
--team-id EMUTEAM001, --key-id EMUKEY0001, --topic com.example.chat. Device tokens are hex;
ones starting dead are gone (410), beef belong to another app (400 DeviceTokenNotForTopic).
";

struct Args {
    listen: SocketAddr,
    dir: PathBuf,
    config: EmulatorConfig,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut listen: SocketAddr = "127.0.0.1:18083".parse().map_err(|_| "default listen")?;
    let mut dir = None;
    let mut c = EmulatorConfig::default();
    let mut it = args.iter();
    let num = |v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{v:?} is not a number"))
    };
    let rate = |v: &str| match v.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{v:?} is not a rate between 0 and 1")),
    };
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        match flag.as_str() {
            "--listen" => {
                listen = value
                    .parse()
                    .map_err(|_| format!("--listen: {value:?} is not an address"))?
            }
            "--dir" => dir = Some(PathBuf::from(value)),
            "--team-id" => c.team_id = value.to_string(),
            "--key-id" => c.key_id = value.to_string(),
            "--topic" => c.topic = value.to_string(),
            "--device-ack-url" => c.device_ack_url = Some(value.to_string()),
            "--error-rate" => c.faults.error_rate = rate(value)?,
            "--error-status" => {
                let s = num(value)?;
                if !matches!(s, 429 | 500 | 503) {
                    return Err("--error-status must be 429, 500 or 503".into());
                }
                c.faults.error_status = Some(s as u16);
            }
            "--retry-after-s" => c.faults.retry_after_s = Some(num(value)?),
            "--slow-rate" => c.faults.slow_rate = rate(value)?,
            "--slow-ms" => c.faults.slow_ms = num(value)?,
            "--goaway-after" => c.faults.goaway_after_streams = Some(num(value)?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let dir = dir.ok_or("--dir is required")?;
    Ok(Args {
        listen,
        dir,
        config: c,
    })
}

/// The key and TLS files in `dir`, made if missing.
fn files(dir: &std::path::Path, key_id: &str) -> Result<(ProviderKey, PathBuf, TlsFiles), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key_file = dir.join(format!("AuthKey_{key_id}.p8"));
    let key = if key_file.exists() {
        ProviderKey::read(&key_file).map_err(|e| e.to_string())?
    } else {
        let key = ProviderKey::generate();
        std::fs::write(&key_file, key.to_pem()?).map_err(|e| e.to_string())?;
        key
    };
    let tls = TlsFiles {
        ca_cert: dir.join("apns-emu-ca.pem"),
        server_cert: dir.join("apns-emu-server.pem"),
        server_key: dir.join("apns-emu-server.key"),
    };
    let tls = if tls.server_cert.exists() && tls.server_key.exists() && tls.ca_cert.exists() {
        tls
    } else {
        generate_tls(dir)?
    };
    Ok((key, key_file, tls))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return;
    }
    let args = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let (key, key_file, tls) = match files(&args.dir, &args.config.key_id) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let config = args.config.clone();
    let emulator = match Emulator::start(args.listen, key.verifying_key(), &tls, args.config).await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "apns emulator listening on {} (team_id {}, key_id {}, topic {}; private_key_file {}, ca_file {})",
        emulator.url(),
        config.team_id,
        config.key_id,
        config.topic,
        key_file.display(),
        tls.ca_cert.display()
    );
    let _ = tokio::signal::ctrl_c().await;
}
