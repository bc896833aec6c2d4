//! `poc-relay --config poc-relay.toml`: the pocnet relay.
//!
//! `poc-relay --keygen FILE` writes a new relay identity key (0600) and
//! prints its public key in hex, for the nodes' `[[relay]]` configuration.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use poc_proto::directory::SignedSnapshot;
use poc_proto::keys::{IdentityKeyPair, ManagerPublicKey};
use poc_relay::config::{Config, Storage};
use poc_relay::core::RelayDirectory;
use poc_relay::metrics::Metrics;
use poc_relay::server::{Relay, SharedDirectory, StoreHandle, transport_limits, unix_now};
use poc_relay::store::{LogStore, MemoryStore, Quota, RelayStore, SqliteStore};

/// The pocnet relay: blind store-and-forward of sealed envelopes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file.
    #[arg(long, short, required_unless_present = "keygen")]
    config: Option<PathBuf>,
    /// Write a new relay identity key to this file and print its public key.
    #[arg(long, conflicts_with = "config")]
    keygen: Option<PathBuf>,
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("POC_RELAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some(path) = args.keygen {
        return keygen(&path);
    }
    let Some(config) = args.config else {
        bail!("give --config FILE (or --keygen FILE)");
    };
    let config = Config::load(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

fn keygen(path: &std::path::Path) -> anyhow::Result<()> {
    use ring::rand::SecureRandom;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(seed.as_mut())
        .map_err(|_| anyhow!("the operating system's random number generator failed"))?;
    poc_keyfile::write_secret(path, poc_keyfile::KeyKind::Identity, Some("relay"), &seed)?;
    let public = IdentityKeyPair::from_secret_bytes(&seed).public();
    println!("{}", hex::encode(public.to_bytes()));
    Ok(())
}

fn load_directory(config: &Config) -> anyhow::Result<RelayDirectory> {
    let manager =
        poc_keyfile::read_public(&config.directory.manager_key, poc_keyfile::KeyKind::Manager)?;
    let manager = ManagerPublicKey::from_bytes(manager.public)
        .map_err(|e| anyhow!("{}: {e}", config.directory.manager_key.display()))?;
    let snapshot_path = &config.directory.snapshot;
    let bytes = std::fs::read(snapshot_path).with_context(|| {
        format!(
            "cannot read the directory snapshot {}",
            snapshot_path.display()
        )
    })?;
    let snapshot = SignedSnapshot::from_bytes(&bytes)
        .with_context(|| format!("{} is not a directory snapshot", snapshot_path.display()))?;
    let directory = snapshot.verify(&manager).with_context(|| {
        format!(
            "directory snapshot {} does not verify",
            snapshot_path.display()
        )
    })?;
    Ok(RelayDirectory::from_verified(&directory, unix_now()))
}

/// Re-reads the snapshot every `every`; takes it if it verifies and is
/// newer (never goes back to an older sequence).
async fn reload_directory(config: Config, shared: SharedDirectory, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match load_directory(&config) {
            Ok(view) if view.sequence() > shared.current().sequence() => {
                tracing::info!(
                    sequence = view.sequence(),
                    pocs = view.len(),
                    "directory updated"
                );
                shared.replace(view);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "directory reload failed; keeping the current one")
            }
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Keys and directory first: a bad configuration leaves nothing behind.
    let key = poc_keyfile::read_secret(&config.relay.identity_key, poc_keyfile::KeyKind::Identity)?;
    let identity = IdentityKeyPair::from_secret_bytes(&key.secret);
    let directory = SharedDirectory::new(load_directory(&config)?);
    std::fs::create_dir_all(&config.relay.data_dir)
        .with_context(|| format!("cannot create {}", config.relay.data_dir.display()))?;
    std::fs::set_permissions(
        &config.relay.data_dir,
        std::fs::Permissions::from_mode(0o700),
    )
    .with_context(|| {
        format!(
            "cannot restrict {} to 0700",
            config.relay.data_dir.display()
        )
    })?;

    let limits = config.relay_limits();
    if let Some(other) = config.other_backends_data() {
        anyhow::bail!(
            "{} holds another storage backend's mail, which storage = \"{}\" would never deliver: \
             set storage to the backend that wrote it, or move it away once it is empty",
            other.display(),
            config.relay.storage.name()
        );
    }
    let store: Box<dyn RelayStore> = match config.relay.storage {
        Storage::Log => Box::new(LogStore::open(&config.log_dir()).with_context(|| {
            format!("cannot open the relay log {}", config.log_dir().display())
        })?),
        Storage::Sqlite => {
            Box::new(SqliteStore::open(&config.database_path()).with_context(|| {
                format!(
                    "cannot open the relay store {}",
                    config.database_path().display()
                )
            })?)
        }
        Storage::Memory => Box::new(MemoryStore::new()),
    };
    let quota = Quota {
        max_envelopes: limits.mailbox_max_envelopes,
        max_bytes: limits.mailbox_max_bytes,
    };
    let store = StoreHandle::start(store, quota, 1024);
    let metrics = Arc::new(Metrics::default());

    let mut transport = transport_limits(&limits);
    transport.max_connections = config.limits.max_connections;
    transport.handshakes_per_second_per_ip = config.limits.handshakes_per_second_per_ip;
    transport.handshake_burst_per_ip = config.limits.handshake_burst_per_ip;
    let endpoint = poc_transport::Endpoint::bind(
        config.relay.listen,
        &identity,
        Arc::new(directory.clone()),
        poc_transport::ALPN_RELAY,
        transport,
    )
    .with_context(|| format!("cannot listen on {}", config.relay.listen))?;

    let relay = Relay::new(
        store.clone(),
        directory.clone(),
        limits,
        Arc::clone(&metrics),
    );
    let mut tasks = vec![
        tokio::spawn(Arc::clone(&relay).serve(endpoint.clone())),
        tokio::spawn(Arc::clone(&relay).sweep_expired(Duration::from_secs(
            config.limits.expiry_sweep_seconds.max(1),
        ))),
        tokio::spawn(reload_directory(
            config.clone(),
            directory.clone(),
            Duration::from_secs(config.directory.reload_seconds.max(1)),
        )),
    ];
    if let Some(addr) = config.relay.metrics_listen {
        let listener = poc_relay::metrics::bind(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(%addr, "metrics endpoint listening");
        tasks.push(tokio::spawn(poc_relay::metrics::serve(
            listener, metrics, store,
        )));
    }
    tracing::info!(
        listen = %endpoint.local_addr()?,
        pocs = directory.current().len(),
        public_key = %hex::encode(identity.public().to_bytes()),
        "relay started"
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = terminate.recv() => tracing::info!("terminated; shutting down"),
    }
    for task in tasks {
        task.abort();
    }
    endpoint.close();
    Ok(())
}
