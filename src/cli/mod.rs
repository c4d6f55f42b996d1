//! The command line (clap): the gateway's own commands (`serve`, `check-config`,
//! `vapid-keys`, `completions`) and client commands against a running gateway (`alias`,
//! `send`, `message`, `events`).

mod client;
mod serve;

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

pub use serve::STORE_FAILED_EXIT;

/// pushgate — a push gateway for instant messaging on push providers.
#[derive(Debug, Parser)]
#[command(name = "pushgate", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the gateway; with no --config, the embedded default: one app `demo` on the mock
    /// provider, data in ./pushgate-data, its API key printed at start. Logs go to stderr
    /// (RUST_LOG=debug for more); SIGINT/SIGTERM shut down gracefully.
    Serve {
        /// The config file (TOML, with ${VAR} expansion).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Overrides server.listen (e.g. 127.0.0.1:0 for a free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Overrides server.data_dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Validates a config file (with ${VAR} expansion) without starting.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Makes a Web Push (VAPID) key pair: the private key as PEM (to stdout, or to FILE,
    /// mode 0600) and the public key pages subscribe with.
    VapidKeys {
        #[arg(long, value_name = "FILE")]
        pem: Option<PathBuf>,
    },
    /// Prints a shell completion script (e.g. `pushgate completions bash > /etc/bash_completion.d/pushgate`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Binds, unbinds or shows an alias's devices.
    Alias {
        #[command(subcommand)]
        action: AliasAction,
    },
    /// Sends a message to an alias or a device.
    Send(SendArgs),
    /// Shows a message and the timeline of its deliveries.
    Message {
        #[command(subcommand)]
        action: MessageAction,
    },
    /// Follows an app's event stream.
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
}

/// Where the gateway is and the app's key (client commands).
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The gateway's URL.
    #[arg(
        long,
        env = "PUSHGATE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// The app's API key (default: ./pushgate-data/demo-api-key, the embedded default's).
    #[arg(long, env = "PUSHGATE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// The app.
    #[arg(long, default_value = "demo", global = true)]
    pub app: String,
    /// Prints the API's JSON answers as they are.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
enum AliasAction {
    /// Binds a device (provider and cid) to the alias.
    Bind {
        alias: String,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        cid: String,
        #[command(flatten)]
        target: Target,
    },
    /// Unbinds one device (--provider and --cid) or, without them, every device.
    Unbind {
        alias: String,
        #[arg(long, requires = "cid")]
        provider: Option<String>,
        #[arg(long, requires = "provider")]
        cid: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Shows the alias's devices.
    Show {
        alias: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `pushgate send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The alias to send to.
    #[arg(long, conflicts_with = "device", required_unless_present = "device")]
    pub to: Option<String>,
    /// One device instead of an alias: PROVIDER:CID.
    #[arg(long, value_name = "PROVIDER:CID")]
    pub device: Option<String>,
    /// The payload (JSON; anything else is sent as a string).
    #[arg(long)]
    pub payload: String,
    /// The sender's alias (receipts go back to it).
    #[arg(long)]
    pub from: Option<String>,
    /// An idempotency key: a retry with it is accepted once.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Follows the message until every delivery ends and prints the timeline.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Subcommand)]
enum MessageAction {
    /// Shows the message and its deliveries' timelines.
    Show {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum EventsAction {
    /// Prints the app's events as they come (reconnecting and resuming when the connection
    /// drops); Ctrl-C ends it.
    Tail {
        /// Starts after this event id (default: from now).
        #[arg(long, value_name = "EVENT_ID")]
        after: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// Runs the CLI on `args` (with the program name); returns the process exit code.
pub async fn run(args: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => serve::serve(config, listen, data_dir).await,
        Command::CheckConfig { file } => serve::check_config(&file),
        Command::VapidKeys { pem } => serve::vapid_keys(pem.as_deref()),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pushgate",
                &mut std::io::stdout(),
            );
            0
        }
        Command::Alias { action } => client::exit(alias(action).await),
        Command::Send(args) => client::exit(send(&args).await),
        Command::Message {
            action: MessageAction::Show { id, target },
        } => client::exit(client::Client::new(&target).show_message(&id).await),
        Command::Events {
            action: EventsAction::Tail { after, target },
        } => client::exit(client::Client::new(&target).tail(after).await),
    }
}

async fn alias(action: AliasAction) -> Result<(), client::CliError> {
    match action {
        AliasAction::Bind {
            alias,
            provider,
            cid,
            target,
        } => {
            client::Client::new(&target)
                .bind(&alias, &provider, &cid)
                .await
        }
        AliasAction::Unbind {
            alias,
            provider,
            cid,
            target,
        } => {
            client::Client::new(&target)
                .unbind(&alias, provider.zip(cid))
                .await
        }
        AliasAction::Show { alias, target } => {
            client::Client::new(&target).show_alias(&alias).await
        }
    }
}

async fn send(args: &SendArgs) -> Result<(), client::CliError> {
    client::Client::new(&args.target).send(args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pushgate").chain(args.iter().copied()))
    }

    #[test]
    fn commands_parse_and_bad_ones_are_refused() {
        Cli::command().debug_assert();
        assert!(parse(&["serve", "--config", "a.toml", "--listen", "127.0.0.1:0"]).is_ok());
        assert!(parse(&["check-config", "x"]).is_ok());
        assert!(parse(&["check-config"]).is_err());
        assert!(parse(&["vapid-keys", "--pem", "k.pem"]).is_ok());
        assert!(parse(&["serve", "--bogus"]).is_err());
        assert!(parse(&["alias", "bind", "bob", "--provider", "mock", "--cid", "c1"]).is_ok());
        assert!(parse(&["alias", "bind", "bob", "--provider", "mock"]).is_err());
        assert!(parse(&["alias", "unbind", "bob", "--provider", "mock"]).is_err());
        assert!(parse(&["send", "--to", "bob", "--payload", "{}", "--wait"]).is_ok());
        assert!(
            parse(&["send", "--payload", "{}"]).is_err(),
            "needs --to or --device"
        );
        assert!(parse(&["send", "--to", "b", "--device", "mock:c", "--payload", "1"]).is_err());
        assert!(parse(&["message", "show", "01ABC", "--json", "--url", "http://x"]).is_ok());
        assert!(parse(&["events", "tail", "--app", "demo"]).is_ok());
        assert!(parse(&["completions", "bash"]).is_ok());
        assert!(parse(&["launch"]).is_err());
    }
}
