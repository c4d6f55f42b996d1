//! Logging (tracing to stderr) and the Prometheus recorder.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pushgate_engine::metrics::DESCRIPTIONS;

/// Histogram buckets for every `_seconds` metric: 0.5 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for collectors.
    Json,
}

/// Logs text lines to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    init_logging_with("info");
}

/// Logs text lines to stderr; `RUST_LOG` filters (default `default_filter`).
pub fn init_logging_with(default_filter: &str) {
    init_logs(LogFormat::Text, default_filter);
}

/// Logs to stderr in `format`; `RUST_LOG` (when set) overrides the `level` filter.
pub fn init_logs(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Installs the global Prometheus recorder (once per process) and keeps it tidy.
pub fn install_metrics() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        return None;
    }
    for (name, help) in DESCRIPTIONS {
        if name.ends_with("_total") {
            metrics::describe_counter!(*name, *help);
        } else if name.ends_with("_seconds") {
            metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
        } else {
            metrics::describe_gauge!(*name, *help);
        }
    }
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Some(handle)
}
