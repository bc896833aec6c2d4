//! The service's subcommands: `serve`, `enrol`, `submit`, `campaign`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use poc_directory::clock;
use poc_directory::service::{self, ServiceConfig, pings, report};
use poc_keyfile::KeyKind;
use poc_proto::StateCode;
use poc_proto::keys::StateRootPublicKey;

/// `poc-directory campaign ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum CampaignCommand {
    /// Ask the running service to start a ping campaign now.
    Start {
        /// The service configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Report on a campaign (the newest by default).
    Report {
        /// The service configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The campaign id (hex).
        #[arg(long, value_name = "ID")]
        campaign: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `poc-directory serve`.
pub(crate) fn serve(config: &Path) -> anyhow::Result<String> {
    let config = ServiceConfig::load(config)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("POC_DIRECTORY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            r = service::serve(config) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(String::new())
}

/// `poc-directory enrol`.
pub(crate) fn enrol(
    config: &Path,
    state: StateCode,
    root_key: &Path,
    replace: bool,
) -> anyhow::Result<String> {
    let config = ServiceConfig::load(config)?;
    let file = poc_keyfile::read_public(root_key, KeyKind::StateRoot)?;
    if let Some(label) = file.label.as_deref().map(str::trim)
        && !label.is_empty()
        && label != state.as_str()
    {
        bail!(
            "{} is labelled {label}, not {state}: pair each State with its own state-root.pub",
            root_key.display()
        );
    }
    let key = StateRootPublicKey::from_bytes(file.public)
        .map_err(|e| anyhow!("{}: not a usable root key: {e}", root_key.display()))?;
    let (mut db, side) = service::open(&config)?;
    let sequence = db.enrol(
        state,
        key,
        replace,
        &side.manager,
        &side.certificate,
        clock::now(),
    )?;
    Ok(format!(
        "{state} enrolled with root key {}.\nDirectory snapshot {sequence} published.\n",
        hex::encode(key.to_bytes())
    ))
}

/// `poc-directory submit`.
pub(crate) fn submit(config: &Path, files: &[PathBuf]) -> anyhow::Result<String> {
    let config = ServiceConfig::load(config)?;
    let (mut db, side) = service::open(&config)?;
    let mut contents = Vec::new();
    for file in files {
        contents
            .push(std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?);
    }
    let batch: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
    let (ids, sequence) = db
        .submit_batch(&batch, &side.manager, &side.certificate, clock::now())
        .map_err(|e| {
            let named = match files {
                [one] => one.display().to_string(),
                _ => "the batch".to_owned(),
            };
            anyhow!("{named}: {e}. Nothing was published.")
        })?;
    let mut text = String::new();
    for id in &ids {
        let _ = writeln!(text, "{id}: accepted.");
    }
    let _ = writeln!(text, "Directory snapshot {sequence} published.");
    Ok(text)
}

/// `poc-directory export`: a snapshot's bytes and sequence.
pub(crate) fn export(config: &Path, sequence: Option<u64>) -> anyhow::Result<(Vec<u8>, u64)> {
    let config = ServiceConfig::load(config)?;
    let (db, _) = service::open(&config)?;
    let snapshot = match sequence {
        Some(n) => db.snapshot(n)?,
        None => db.latest()?,
    }
    .ok_or_else(|| anyhow!("no such snapshot"))?;
    Ok((snapshot.bytes, snapshot.sequence))
}

/// `poc-directory campaign ...`.
pub(crate) fn campaign(command: CampaignCommand) -> anyhow::Result<String> {
    match command {
        CampaignCommand::Start { config } => {
            let config = ServiceConfig::load(&config)?;
            let db = service::db::ServiceDb::open(&config.database())?;
            let id = pings::request_campaign(db.conn_pub(), clock::now())?;
            Ok(format!(
                "Campaign request {id} recorded; the running service starts the campaign within a second.\nFollow it with `poc-directory campaign report`.\n"
            ))
        }
        CampaignCommand::Report {
            config,
            campaign,
            json,
        } => {
            let config = ServiceConfig::load(&config)?;
            let db = service::db::ServiceDb::open(&config.database())?;
            let id = match campaign {
                Some(id) => id,
                None => pings::latest_campaign(db.conn_pub())?
                    .map(|(id, _)| id)
                    .ok_or_else(|| {
                        anyhow!(
                            "no campaign has run yet; start one with `poc-directory campaign start`"
                        )
                    })?,
            };
            let campaign = pings::load_campaign(db.conn_pub(), &id)?
                .ok_or_else(|| anyhow!("no campaign {id}"))?;
            let delivered = pings::delivered_times(db.conn_pub(), &id)?;
            let view = report::view(&campaign.report(clock::now()), &delivered);
            if json {
                Ok(format!("{}\n", serde_json::to_string_pretty(&view)?))
            } else {
                Ok(report::text(&view))
            }
        }
    }
}
