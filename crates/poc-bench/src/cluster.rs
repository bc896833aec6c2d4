//! Two real pocd processes on loopback: EST.cert and FRA.cert, both
//! technical, with keys, certificates and a signed directory made with the
//! library (as the ceremony tools would), each with its own SQLite store in
//! a temporary directory. Built with `poc-testnet`, as the pocd tests'
//! cluster is; a setup or start failure is reported as an error.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use poc_proto::{Issuer, Role, Seconds};
pub(crate) use poc_testnet::Daemon;
use poc_testnet::{NodeDir, PocSetup, PocdConfig, try_state_of};

/// The sending PoC.
pub(crate) const SENDER: &str = "EST.cert";
/// The receiving PoC.
pub(crate) const RECIPIENT: &str = "FRA.cert";

/// pocd's log level in a benchmark run (debug logging would cost time).
const POCD_LOG: &str = "info";

/// The temporary directory with both PoCs' files.
#[derive(Debug)]
pub(crate) struct Setup {
    /// Removed on drop unless kept.
    root: Option<tempfile::TempDir>,
    kept: Option<PathBuf>,
    /// The sender's node directory.
    pub(crate) sender: NodeDir,
    /// The recipient's node directory.
    pub(crate) recipient: NodeDir,
}

impl Setup {
    /// Creates keys, certificates, configurations and the signed directory.
    pub(crate) fn create() -> anyhow::Result<Setup> {
        let root = tempfile::Builder::new()
            .prefix("poc-bench.")
            .tempdir()
            .context("cannot create a temporary directory")?;
        poc_testnet::write_manager_public_key(root.path())?;
        let mut states = Vec::new();
        let mut pocs = Vec::new();
        for id in [SENDER, RECIPIENT] {
            let state = try_state_of(id)?;
            let poc = PocSetup::create(
                root.path(),
                id,
                Issuer::State(state),
                Role::Technical,
                Seconds::days(30),
            )?;
            // pocd's defaults for [delivery] (retries after 2 s, then backing
            // off): a benchmark must not tune the daemon.
            PocdConfig::new(id, poc.port).write(&poc.node)?;
            states.push(state);
            pocs.push(poc);
        }
        poc_testnet::write_directory(root.path(), states, pocs.iter().map(|poc| &poc.certificate))?;
        let mut nodes = pocs.into_iter().map(|poc| poc.node);
        let (Some(sender), Some(recipient)) = (nodes.next(), nodes.next()) else {
            bail!("internal: two PoCs expected");
        };
        // pocd creates these itself (0700); made here already so the fsync
        // baseline can write into the sender's data directory first.
        for node in [&sender, &recipient] {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(node.data())?;
        }
        Ok(Setup {
            root: Some(root),
            kept: None,
            sender,
            recipient,
        })
    }

    /// The temporary directory.
    pub(crate) fn path(&self) -> &Path {
        match (&self.root, &self.kept) {
            (Some(root), _) => root.path(),
            (None, Some(kept)) => kept,
            (None, None) => Path::new("."),
        }
    }

    /// Keeps the directory after the run; returns its path.
    pub(crate) fn keep(&mut self) -> PathBuf {
        if let Some(root) = self.root.take() {
            self.kept = Some(root.keep());
        }
        self.path().to_path_buf()
    }
}

/// Starts `pocd` (the binary at `pocd`) on `node` and waits until its
/// control socket answers.
pub(crate) fn start(pocd: &Path, node: &NodeDir) -> anyhow::Result<Daemon> {
    Ok(Daemon::try_start(pocd, node, &[("POCD_LOG", POCD_LOG)])?)
}
