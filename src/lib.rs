//! pushgate: a push gateway for building instant messaging on push providers.
//!
//! This crate assembles the gateway: config loading, the HTTP API, webhooks, and the
//! wiring of core's engine with the provider adapters. The binary is `src/main.rs`.

pub mod cli;
pub mod config;
pub mod gateway;
pub mod http;
pub mod matrix;
pub mod plugin_host;
pub mod providers;
pub mod telemetry;
pub mod webhook;

pub use config::Config;
pub use gateway::Gateway;
