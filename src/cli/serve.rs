//! The gateway's own commands: `serve`, `check-config`, `vapid-keys`.

use std::io::Write;
use std::path::PathBuf;

use crate::config::Config;
use crate::gateway::{default_api_key, Gateway};
use crate::telemetry;

/// `pushgate check-config FILE`: validates a config without starting.
pub fn check_config(path: &std::path::Path) -> i32 {
    match Config::load(path) {
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
    }
}

/// `pushgate vapid-keys`: prints (or writes) a new key pair.
pub fn vapid_keys(pem_file: Option<&std::path::Path>) -> i32 {
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

pub async fn serve(
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
