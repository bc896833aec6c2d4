//! `pocd`: the pocnet node daemon a State runs for one of its PoCs.
//!
//! `pocd --config pocd.toml [--log-format json]`
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

mod clock;
mod config;
mod control;
mod db;
mod directory_sync;
mod directory_view;
mod follow;
mod node;
mod pings;
mod rejections;
mod relay_client;
mod threads;

/// The pocnet node daemon.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (see deploy/ for examples).
    #[arg(long, short)]
    config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("POCD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let config = config::Config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: config::Config) -> anyhow::Result<()> {
    if let Some(offset) = clock::test_offset() {
        tracing::warn!(
            offset,
            "TEST CLOCK: POCNET_CLOCK_OFFSET_FILE is set; time is shifted"
        );
    }
    let node = node::Node::start(config).await?;
    directory_sync::restore(&node).await?;
    let sync = tokio::spawn(directory_sync::run_periodic(node.clone()));
    let inbound = tokio::spawn(node.clone().run_inbound());
    let outbox = tokio::spawn(node.clone().run_outbox());
    let control = tokio::spawn(control::serve(node.clone()));
    let deadlines = tokio::spawn(control::watch_deadlines(node.clone()));
    let relays = relay_client::spawn_fetchers(&node);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = terminate.recv() => tracing::info!("terminated; shutting down"),
        result = control => {
            if let Ok(Err(e)) = result {
                return Err(e.context("control socket failed"));
            }
        }
    }
    for fetcher in relays {
        fetcher.abort();
    }
    inbound.abort();
    sync.abort();
    deadlines.abort();
    outbox.abort();
    node.endpoint.close();
    // Let the close frames reach the peers, so they stop using their
    // connections now (and fall back to relays) instead of at their idle
    // timeout; bounded, since a vanished peer never answers.
    let _ = tokio::time::timeout(Duration::from_secs(1), node.endpoint.wait_idle()).await;
    let _ = std::fs::remove_file(node.config.control_socket());
    Ok(())
}
