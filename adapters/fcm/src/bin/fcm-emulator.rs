//! `fcm-emulator`: a local FCM HTTP v1 (token endpoint, messages:send, device inboxes).

use std::net::SocketAddr;
use std::path::PathBuf;

use pushgate_fcm::emulator::{generate_service_account, Emulator, EmulatorConfig};
use pushgate_fcm::ServiceAccount;

const USAGE: &str = "\
USAGE:
    fcm-emulator --service-account FILE [--listen ADDR] [--device-ack-url URL]
                 [--token-ttl-s N] [--error-rate R] [--error-status 429|500|503]
                 [--retry-after-s N] [--slow-rate R] [--slow-ms N]

--service-account FILE: the key file whose signatures the token endpoint checks; if FILE
does not exist, a new account (project pushgate-emu, key made by openssl) is written there.
Either way FILE is rewritten with token_uri = this emulator's /token, so pushgate can use it
as its service_account_file. Defaults: --listen 127.0.0.1:18082.
Admin: GET /_emulator/devices/{token} (inbox), POST /_emulator/devices/{token}/unregister,
POST /_emulator/faults {error_rate, error_status, retry_after_s, slow_rate, slow_ms},
POST /_emulator/revoke-tokens, GET /_emulator/requests.
";

struct Args {
    listen: SocketAddr,
    account: PathBuf,
    config: EmulatorConfig,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut listen: SocketAddr = "127.0.0.1:18082".parse().map_err(|_| "default listen")?;
    let mut account = None;
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
            "--service-account" => account = Some(PathBuf::from(value)),
            "--device-ack-url" => c.device_ack_url = Some(value.to_string()),
            "--token-ttl-s" => c.token_ttl_s = num(value)?,
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
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let account = account.ok_or("--service-account is required")?;
    Ok(Args {
        listen,
        account,
        config: c,
    })
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
    let account = if args.account.exists() {
        ServiceAccount::read(&args.account).map_err(|e| e.to_string())
    } else {
        generate_service_account("pushgate-emu")
    };
    let account = match account {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let project = account.project_id.clone();
    let emulator = match Emulator::start(args.listen, account, args.config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = emulator.write_service_account(&args.account) {
        eprintln!("error: {}: {e}", args.account.display());
        std::process::exit(1);
    }
    println!(
        "fcm emulator listening on {} (project {project}; service account {})",
        emulator.url(),
        args.account.display()
    );
    let _ = tokio::signal::ctrl_c().await;
}
