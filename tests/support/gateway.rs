//! The real `pushgate` binary, started as a child process on an ephemeral port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::Api;

pub const API_KEY: &str = "test-api-key-0123456789";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123";
pub const MOCK_SECRET: &str = "mock-receipt-secret";

/// A config for app `demo` on provider `mock`; `extra_mock` adds mock keys, `webhook`
/// sets the app's webhook URL, `extra` is appended (e.g. a `[delivery]` table). In a `pg_`
/// test binary the store is a PostgreSQL database of `data_dir`'s own.
pub fn config(data_dir: &Path, webhook: Option<&str>, extra_mock: &str, extra: &str) -> String {
    let store = if super::postgres::enabled() {
        super::postgres::store_table(&super::postgres::database_for(data_dir), "gw-test")
    } else {
        String::new()
    };
    config_with_store(data_dir, webhook, extra_mock, extra, &store)
}

/// [`config`] with the `[store]` table given (empty: sled in `data_dir`).
pub fn config_with_store(
    data_dir: &Path,
    webhook: Option<&str>,
    extra_mock: &str,
    extra: &str,
    store: &str,
) -> String {
    let webhook = webhook
        .map(|url| format!("webhook_url = \"{url}\"\nwebhook_secret = \"{WEBHOOK_SECRET}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[server]
listen = "127.0.0.1:0"
data_dir = "{data}"
max_body_bytes = 4096
shutdown_grace_ms = 5000

[[apps]]
id = "demo"
api_keys = ["{API_KEY}"]
default_provider = "mock"
{webhook}
[[providers]]
name = "mock"
kind = "mock"
secret = "{MOCK_SECRET}"
receipt_delay_ms = 5
{extra_mock}

{extra}
{store}
"#,
        data = data_dir.display()
    )
}

/// A running gateway process.
pub struct GatewayProcess {
    child: Option<Child>,
    pub url: String,
    pub config_path: PathBuf,
    pub stdout_lines: Vec<String>,
}

impl GatewayProcess {
    /// Writes `config` to `dir/pushgate.toml` and starts `pushgate serve` on it.
    pub fn start(dir: &Path, config: &str) -> GatewayProcess {
        let config_path = dir.join("pushgate.toml");
        std::fs::write(&config_path, config).expect("write config");
        let path = config_path.to_str().expect("utf-8 path").to_string();
        Self::spawn(&["serve", "--config", &path], config_path)
    }

    /// Like [`GatewayProcess::start`], but no file the gateway writes may grow past
    /// `max_file_bytes` (RLIMIT_FSIZE: writes beyond fail with EFBIG, as on a full disk).
    pub fn start_with_file_limit(dir: &Path, config: &str, max_file_bytes: u64) -> GatewayProcess {
        let config_path = dir.join("pushgate.toml");
        std::fs::write(&config_path, config).expect("write config");
        let path = config_path.to_str().expect("utf-8 path").to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushgate"));
        command.args(["serve", "--config", &path]);
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal).
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: max_file_bytes,
                    rlim_max: max_file_bytes,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // A write past the limit fails with EFBIG instead of killing the process.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        Self::spawn_command(command, config_path)
    }

    /// Starts `pushgate` with `args`, waiting for its "listening on" line.
    pub fn spawn(args: &[&str], config_path: PathBuf) -> GatewayProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushgate"));
        command.args(args);
        Self::spawn_command(command, config_path)
    }

    /// [`GatewayProcess::spawn`] with `cwd` as the working directory.
    pub fn spawn_in(cwd: &Path, args: &[&str], config_path: PathBuf) -> GatewayProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushgate"));
        command.args(args).current_dir(cwd);
        Self::spawn_command(command, config_path)
    }

    fn spawn_command(mut command: Command, config_path: PathBuf) -> GatewayProcess {
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pushgate");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let url = line
                        .strip_prefix("pushgate listening on ")
                        .map(str::to_string);
                    lines.push(line);
                    if let Some(url) = url {
                        return GatewayProcess {
                            child: Some(child),
                            url,
                            config_path,
                            stdout_lines: lines,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!("pushgate did not start (exit {status:?}); stdout: {lines:?}");
                }
            }
        }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url, Some(API_KEY))
    }

    /// Graceful stop (SIGTERM); returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("pushgate did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit code if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Abrupt stop (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
