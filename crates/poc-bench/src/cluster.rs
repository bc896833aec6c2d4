//! Two real pocd processes on loopback: EST.cert and FRA.cert, both
//! technical, with keys, certificates and a signed directory made with the
//! library (as the ceremony tools would), each with its own SQLite store in
//! a temporary directory. Same approach as `crates/pocd/tests/common`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use poc_control::{Client, Request, StatusView};
use poc_proto::certificate::{CertificateBody, Endpoint, PocCertificate, Prekey, PrekeyId};
use poc_proto::directory::{
    DirectoryEntry, SignedSnapshot, SnapshotBody, SnapshotDigest, StateEnrolment,
};
use poc_proto::keys::{IdentityKeyPair, ManagerKeyPair, PrekeySecret, StateRootKeyPair};
use poc_proto::testkit::DeterministicRandom;
use poc_proto::{Issuer, PocId, Role, Seconds, StateCode, Timestamp};

/// The sending PoC.
pub(crate) const SENDER: &str = "EST.cert";
/// The receiving PoC.
pub(crate) const RECIPIENT: &str = "FRA.cert";

/// Seconds since the Unix epoch.
fn now() -> anyhow::Result<Timestamp> {
    Ok(Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_secs(),
    ))
}

/// A free loopback UDP port (chosen by the kernel).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")
        .context("cannot bind a loopback UDP socket")?
        .local_addr()?
        .port())
}

/// One PoC's files.
#[derive(Debug)]
pub(crate) struct PocFiles {
    /// Its directory (config, keys, log, `data/`).
    pub(crate) dir: PathBuf,
}

impl PocFiles {
    fn config(&self) -> PathBuf {
        self.dir.join("pocd.toml")
    }
    /// The daemon's data directory (SQLite store, control socket).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn socket(&self) -> PathBuf {
        self.data_dir().join("pocd.sock")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("pocd.log")
    }
}

/// The temporary directory with both PoCs' files.
#[derive(Debug)]
pub(crate) struct Setup {
    /// Removed on drop unless kept.
    root: Option<tempfile::TempDir>,
    kept: Option<PathBuf>,
    /// The sender's files.
    pub(crate) sender: PocFiles,
    /// The recipient's files.
    pub(crate) recipient: PocFiles,
}

impl Setup {
    /// Creates keys, certificates, configurations and the signed directory.
    pub(crate) fn create() -> anyhow::Result<Setup> {
        let root = tempfile::Builder::new()
            .prefix("poc-bench.")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let manager =
            ManagerKeyPair::from_secret_bytes(&DeterministicRandom::bytes32("poc-bench manager"));
        poc_keyfile::write_public(
            &root.path().join("manager.pub"),
            poc_keyfile::KeyKind::Manager,
            None,
            &manager.public().to_bytes(),
        )?;
        let now = now()?;
        let mut states = Vec::new();
        let mut entries = Vec::new();
        let mut files = Vec::new();
        for id in [SENDER, RECIPIENT] {
            let poc = PocId::new(id).map_err(|e| anyhow!("{id}: {e}"))?;
            let state_text = id.split('.').next().unwrap_or(id);
            let state = StateCode::new(state_text).map_err(|e| anyhow!("{id}: {e}"))?;
            let root_key = StateRootKeyPair::from_secret_bytes(&DeterministicRandom::bytes32(
                &format!("poc-bench root {state}"),
            ));
            let identity = DeterministicRandom::bytes32(&format!("poc-bench identity {id}"));
            let prekey_seed = DeterministicRandom::bytes32(&format!("poc-bench prekey {id}"));
            let prekey_secret = PrekeySecret::from_secret_bytes(&prekey_seed);
            let port = free_port()?;
            let body = CertificateBody {
                poc_id: poc,
                issuer: Issuer::State(state),
                role: Role::Technical,
                identity_key: IdentityKeyPair::from_secret_bytes(&identity).public(),
                prekey: Prekey {
                    id: PrekeyId(1),
                    public: prekey_secret.public(),
                    valid_from: now.minus(Seconds::DAY),
                    valid_until: now.plus(Seconds::days(30)),
                },
                valid_from: now.minus(Seconds::DAY),
                valid_until: now.plus(Seconds::days(30)),
                endpoints: vec![Endpoint::Direct {
                    address: format!("127.0.0.1:{port}"),
                }],
            };
            let certificate = PocCertificate::issue_by_state(&body, &root_key)
                .map_err(|e| anyhow!("cannot certify {id}: {e}"))?;
            let dir = root.path().join(id);
            std::fs::create_dir_all(&dir)?;
            poc_keyfile::write_secret(
                &dir.join("identity.key"),
                poc_keyfile::KeyKind::Identity,
                Some(id),
                &identity,
            )?;
            poc_keyfile::write_secret(
                &dir.join("prekey.key"),
                poc_keyfile::KeyKind::Prekey,
                Some(id),
                &prekey_seed,
            )?;
            // pocd's defaults for [delivery] (retries after 2 s, then backing
            // off): a benchmark must not tune the daemon.
            std::fs::write(
                dir.join("pocd.toml"),
                format!(
                    "[node]\npoc_id = \"{id}\"\ndata_dir = \"data\"\nidentity_key = \"identity.key\"\n\
                     prekey_key = \"prekey.key\"\nlisten = \"127.0.0.1:{port}\"\n\n\
                     [directory]\nsnapshot = \"../directory.snapshot\"\nmanager_key = \"../manager.pub\"\n"
                ),
            )?;
            states.push(StateEnrolment {
                state,
                root_key: root_key.public(),
            });
            entries.push(DirectoryEntry {
                certificate,
                prekeys: vec![],
                revoked: false,
                details: None,
            });
            files.push(PocFiles { dir });
        }
        let body = SnapshotBody {
            sequence: 1,
            previous: SnapshotDigest([0; 32]),
            issued_at: now,
            states,
            entries,
        };
        let snapshot = SignedSnapshot::sign(&body, &manager)
            .map_err(|e| anyhow!("cannot sign the directory: {e}"))?;
        std::fs::write(root.path().join("directory.snapshot"), snapshot.to_bytes())?;
        let mut files = files.into_iter();
        let (Some(sender), Some(recipient)) = (files.next(), files.next()) else {
            bail!("internal: two PoCs expected");
        };
        // pocd creates these itself (0700); made here already so the fsync
        // baseline can write into the sender's data directory first.
        for poc in [&sender, &recipient] {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(poc.data_dir())?;
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

/// The `pocd` binary next to this executable.
pub(crate) fn pocd_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    let pocd = exe.with_file_name("pocd");
    if !pocd.is_file() {
        bail!(
            "no pocd binary at {}: build it with `cargo build --release -p pocd -p poc-bench`",
            pocd.display()
        );
    }
    Ok(pocd)
}

/// A running pocd, killed on drop.
#[derive(Debug)]
pub(crate) struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    /// PID, for profiling.
    pub(crate) pid: u32,
}

impl Daemon {
    /// Starts `pocd` for `poc` and waits until its control socket answers.
    pub(crate) fn start(pocd: &Path, poc: &PocFiles) -> anyhow::Result<Daemon> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(poc.log())
            .with_context(|| format!("cannot open {}", poc.log().display()))?;
        let child = Command::new(pocd)
            .arg("--config")
            .arg(poc.config())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .env("POCD_LOG", "info")
            .spawn()
            .with_context(|| format!("cannot start {}", pocd.display()))?;
        let mut daemon = Daemon {
            pid: child.id(),
            child,
            socket: poc.socket(),
            log: poc.log(),
        };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("pocd exited at start ({status}); log:\n{}", self.log_text());
            }
            if let Ok(mut client) = Client::connect(&self.socket)
                && client.call::<StatusView>(&Request::Status).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("pocd did not become ready; log:\n{}", self.log_text())
    }

    /// A new control connection.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.socket).with_context(|| format!("pocd log:\n{}", self.log_text()))
    }

    /// The control socket.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Fails if the process has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("pocd exited ({status}); log:\n{}", self.log_text());
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
