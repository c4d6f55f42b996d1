//! The command line: `pushgate serve [--config FILE] [--listen ADDR] [--data-dir DIR]`,
//! `pushgate check-config FILE`, `pushgate vapid-keys [--pem FILE]`.

use std::io::Write;
use std::path::PathBuf;

use crate::config::Config;
use crate::gateway::{default_api_key, Gateway};
use crate::telemetry;

/// Usage text.
pub const USAGE: &str = "\
pushgate — a push gateway for instant messaging on push providers

USAGE:
    pushgate serve [--config FILE] [--listen ADDR] [--data-dir DIR]
    pushgate check-config FILE
    pushgate vapid-keys [--pem FILE]
    pushgate --version

serve          runs the gateway; with no --config, the embedded default: one app `demo` on
               the mock provider, data in ./pushgate-data, its API key printed at start
check-config   validates a config file (with ${VAR} expansion) without starting
vapid-keys     makes a Web Push (VAPID) key pair: the private key as PEM (to stdout, or to
               FILE with --pem, mode 0600) and the public key pages subscribe with
--listen       overrides server.listen (e.g. 127.0.0.1:0 for a free port)
--data-dir     overrides server.data_dir

Logs go to stderr (RUST_LOG=debug for more). SIGINT/SIGTERM shut down gracefully.
";

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve {
        config: Option<PathBuf>,
        listen: Option<String>,
        data_dir: Option<PathBuf>,
    },
    CheckConfig(PathBuf),
    /// A new VAPID key pair; the PEM goes to the file if one is given.
    VapidKeys(Option<PathBuf>),
    Help,
    Version,
}

/// Parses arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter();
    let Some(first) = it.next() else {
        return Ok(Command::Help);
    };
    match first.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "-V" | "--version" => Ok(Command::Version),
        "vapid-keys" => match (it.next().map(String::as_str), it.next(), it.next()) {
            (None, _, _) => Ok(Command::VapidKeys(None)),
            (Some("--pem"), Some(file), None) => Ok(Command::VapidKeys(Some(PathBuf::from(file)))),
            _ => Err("vapid-keys takes only --pem FILE".into()),
        },
        "check-config" => match (it.next(), it.next()) {
            (Some(file), None) => Ok(Command::CheckConfig(PathBuf::from(file))),
            _ => Err("check-config takes exactly one FILE".into()),
        },
        "serve" => {
            let (mut config, mut listen, mut data_dir) = (None, None, None);
            while let Some(flag) = it.next() {
                let mut value = || {
                    it.next()
                        .cloned()
                        .ok_or_else(|| format!("{flag} needs a value"))
                };
                match flag.as_str() {
                    "--config" | "-c" => config = Some(PathBuf::from(value()?)),
                    "--listen" => listen = Some(value()?),
                    "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
                    other => return Err(format!("unknown option {other:?} for serve")),
                }
            }
            Ok(Command::Serve {
                config,
                listen,
                data_dir,
            })
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Runs the CLI; returns the process exit code.
pub async fn run(args: Vec<String>) -> i32 {
    let command = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return 2;
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            0
        }
        Command::Version => {
            println!("pushgate {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::CheckConfig(path) => match Config::load(&path) {
            Ok(config) => {
                println!(
                    "{}: ok ({} app(s), {} provider(s))",
                    path.display(),
                    config.apps.len(),
                    config.providers.len()
                );
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Command::VapidKeys(pem_file) => vapid_keys(pem_file.as_deref()),
        Command::Serve {
            config,
            listen,
            data_dir,
        } => serve(config, listen, data_dir).await,
    }
}

/// `pushgate vapid-keys`: prints (or writes) a new key pair.
fn vapid_keys(pem_file: Option<&std::path::Path>) -> i32 {
    let key = pushgate_webpush::vapid::VapidKey::generate();
    let pem = match key.to_pem() {
        Ok(pem) => pem,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match pem_file {
        Some(path) => {
            if path.exists() {
                eprintln!(
                    "error: {} exists; not overwritten (subscriptions made with its key would stop working)",
                    path.display()
                );
                return 1;
            }
            if let Err(e) = crate::gateway::write_private(path, pem.trim_end()) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return 1;
            }
            println!("private key written to {} (mode 0600)", path.display());
        }
        None => print!("{pem}"),
    }
    println!("public key (applicationServerKey): {}", key.public_base64());
    0
}

async fn serve(
    config_path: Option<PathBuf>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
) -> i32 {
    let mut config = match &config_path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
        None => {
            let dir = data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("./pushgate-data"));
            match default_api_key(&dir) {
                Ok((key, path, created)) => {
                    let note = if created {
                        "generated and saved in"
                    } else {
                        "read from"
                    };
                    println!("embedded default config: app `demo`, provider `mock`");
                    println!("demo API key: {key} ({note} {})", path.display());
                    Config::embedded(dir, key)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return 1;
                }
            }
        }
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
        if let Err(e) = config.listen_addr() {
            eprintln!("error: --listen: {e}");
            return 2;
        }
    }
    if let Some(dir) = data_dir {
        config.server.data_dir = dir;
    }
    telemetry::init_logs(config.log.format, &config.log.level);
    let metrics = telemetry::install_metrics();
    let gateway = match Gateway::start(&config, metrics).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    println!("pushgate listening on http://{}", gateway.local_addr());
    let _ = std::io::stdout().flush();
    tracing::info!(addr = %gateway.local_addr(), config = %config.source, data_dir = %config.server.data_dir.display(), "pushgate started");
    let code = tokio::select! {
        _ = wait_for_signal() => {
            tracing::info!("shutting down");
            0
        }
        reason = gateway.store_failure() => {
            // Fail-stop: reads may show changes that never became durable, so the gateway
            // stops rather than serve them; a restart replays the journal.
            tracing::error!(%reason, "the store failed; stopping (restart to recover)");
            eprintln!("error: the store failed ({reason}); stopping, restart to recover");
            STORE_FAILED_EXIT
        }
    };
    gateway.shutdown().await;
    tracing::info!("stopped");
    code
}

/// Exit status after the store failed (disk full, I/O error): restarting recovers.
pub const STORE_FAILED_EXIT: i32 = 3;

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse(&args(&[])), Ok(Command::Help));
        assert_eq!(
            parse(&args(&[
                "serve",
                "--config",
                "a.toml",
                "--listen",
                "127.0.0.1:0"
            ])),
            Ok(Command::Serve {
                config: Some("a.toml".into()),
                listen: Some("127.0.0.1:0".into()),
                data_dir: None
            })
        );
        assert_eq!(
            parse(&args(&["check-config", "x"])),
            Ok(Command::CheckConfig("x".into()))
        );
        assert!(parse(&args(&["check-config"])).is_err());
        assert_eq!(parse(&args(&["vapid-keys"])), Ok(Command::VapidKeys(None)));
        assert_eq!(
            parse(&args(&["vapid-keys", "--pem", "k.pem"])),
            Ok(Command::VapidKeys(Some("k.pem".into())))
        );
        assert!(parse(&args(&["vapid-keys", "--out"])).is_err());
        assert!(parse(&args(&["serve", "--bogus"])).is_err());
        assert!(parse(&args(&["serve", "--config"])).is_err());
        assert!(parse(&args(&["launch"])).is_err());
    }
}
