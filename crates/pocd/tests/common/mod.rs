//! A cluster of real pocd processes on loopback for end-to-end tests.
//!
//! Keys, certificates and the signed directory are made with the library
//! (as the ceremony tools would); the daemons are the built `pocd` binary;
//! tests talk to them through their control sockets, exactly as `poc` does.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use poc_control::{Client, Request};
use poc_proto::certificate::{CertificateBody, Endpoint, PocCertificate, Prekey, PrekeyId};
use poc_proto::directory::{
    DirectoryEntry, SignedSnapshot, SnapshotBody, SnapshotDigest, StateEnrolment,
};
use poc_proto::keys::{IdentityKeyPair, ManagerKeyPair, PrekeySecret, StateRootKeyPair};
use poc_proto::{Issuer, PocId, Role, Seconds, StateCode, Timestamp};

pub fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

/// A free loopback UDP port.
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct PocSetup {
    pub id: PocId,
    pub role: Role,
    pub port: u16,
    pub dir: PathBuf,
    pub identity: [u8; 32],
    pub certificate: PocCertificate,
}

impl PocSetup {
    pub fn config(&self) -> PathBuf {
        self.dir.join("pocd.toml")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("data/pocd.sock")
    }
    pub fn database(&self) -> PathBuf {
        self.dir.join("data/pocd.sqlite")
    }
}

pub struct Cluster {
    pub root: tempfile::TempDir,
    pub pocs: BTreeMap<String, PocSetup>,
    pub roots: BTreeMap<StateCode, poc_proto::keys::StateRootPublicKey>,
}

/// The deterministic key seed for `label` (the manager key is `seed("manager")`).
pub fn seed(label: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, label.as_bytes());
    d.as_ref().try_into().unwrap()
}

/// What a test node needs before it is certified: its port, identity seed,
/// directory (with its key files written) and certificate body.
pub struct NewPoc {
    pub port: u16,
    pub identity: [u8; 32],
    pub dir: PathBuf,
    pub body: CertificateBody,
}

/// Keys derived from `id`, a free port, key files under `root/id`, and a
/// certificate body valid 30 days with a direct endpoint on that port.
pub fn new_poc(root: &std::path::Path, id: &str, issuer: Issuer, role: Role) -> NewPoc {
    let identity = seed(&format!("identity {id}"));
    let prekey_seed = seed(&format!("prekey {id}"));
    let port = free_port();
    let now = now();
    let body = CertificateBody {
        poc_id: PocId::new(id).unwrap(),
        issuer,
        role,
        identity_key: IdentityKeyPair::from_secret_bytes(&identity).public(),
        prekey: Prekey {
            id: PrekeyId(u64::from(port)),
            public: PrekeySecret::from_secret_bytes(&prekey_seed).public(),
            valid_from: now.minus(Seconds::DAY),
            valid_until: now.plus(Seconds::days(30)),
        },
        valid_from: now.minus(Seconds::DAY),
        valid_until: now.plus(Seconds::days(30)),
        endpoints: vec![Endpoint::Direct {
            address: format!("127.0.0.1:{port}"),
        }],
    };
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    poc_keyfile::write_secret(
        &dir.join("identity.key"),
        poc_keyfile::KeyKind::Identity,
        Some(id),
        &identity,
    )
    .unwrap();
    poc_keyfile::write_secret(
        &dir.join("prekey.key"),
        poc_keyfile::KeyKind::Prekey,
        Some(id),
        &prekey_seed,
    )
    .unwrap();
    NewPoc {
        port,
        identity,
        dir,
        body,
    }
}

impl Cluster {
    /// Sets up keys, certificates, configs and a signed directory for
    /// `listed` PoCs, plus `unlisted` ones that have keys and configs but are
    /// not in the directory.
    pub fn new(listed: &[(&str, Role)], unlisted: &[(&str, Role)]) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let manager = ManagerKeyPair::from_secret_bytes(&seed("manager"));
        poc_keyfile::write_public(
            &root.path().join("manager.pub"),
            poc_keyfile::KeyKind::Manager,
            None,
            &manager.public().to_bytes(),
        )
        .unwrap();
        let mut roots = BTreeMap::new();
        let mut pocs = BTreeMap::new();
        for (id, role) in listed.iter().chain(unlisted) {
            let poc = PocId::new(*id).unwrap();
            let state = StateCode::new(&id[..3]).unwrap();
            let root_key = roots.entry(state).or_insert_with(|| {
                StateRootKeyPair::from_secret_bytes(&seed(&format!("root {state}")))
            });
            let NewPoc {
                port,
                identity,
                dir,
                body,
            } = new_poc(root.path(), id, Issuer::State(state), *role);
            let certificate = PocCertificate::issue_by_state(&body, root_key).unwrap();
            std::fs::write(
                dir.join("pocd.toml"),
                format!(
                    "[node]\npoc_id = \"{id}\"\ndata_dir = \"data\"\nidentity_key = \"identity.key\"\nprekey_key = \"prekey.key\"\nlisten = \"127.0.0.1:{port}\"\n\n\
                     [directory]\nsnapshot = \"../directory.snapshot\"\nmanager_key = \"../manager.pub\"\n\n\
                     [delivery]\nretry_initial_seconds = 1\nretry_max_seconds = 2\n"
                ),
            )
            .unwrap();
            pocs.insert(
                id.to_string(),
                PocSetup {
                    id: poc,
                    role: *role,
                    port,
                    dir,
                    identity,
                    certificate,
                },
            );
        }
        let roots = roots.iter().map(|(s, r)| (*s, r.public())).collect();
        let cluster = Cluster { root, pocs, roots };
        let ids: Vec<&str> = listed.iter().map(|(id, _)| *id).collect();
        cluster.write_directory(&ids);
        cluster
    }

    /// Signs (with the manager key) and writes the directory snapshot every
    /// node reads at start: every State root, and the PoCs `listed`.
    pub fn write_directory(&self, listed: &[&str]) {
        let manager = ManagerKeyPair::from_secret_bytes(&seed("manager"));
        let body = SnapshotBody {
            sequence: 1,
            previous: SnapshotDigest([0; 32]),
            issued_at: now(),
            states: self
                .roots
                .iter()
                .map(|(state, root_key)| StateEnrolment {
                    state: *state,
                    root_key: *root_key,
                })
                .collect(),
            entries: listed
                .iter()
                .map(|id| DirectoryEntry {
                    certificate: self.poc(id).certificate.clone(),
                    prekeys: vec![],
                    revoked: false,
                    details: None,
                })
                .collect(),
        };
        let snapshot = SignedSnapshot::sign(&body, &manager).unwrap();
        std::fs::write(
            self.root.path().join("directory.snapshot"),
            snapshot.to_bytes(),
        )
        .unwrap();
    }

    /// A PoC's certificate, verified against its State's root.
    pub fn verified(&self, id: &str) -> poc_proto::certificate::VerifiedCertificate {
        let cert = &self.poc(id).certificate;
        let state = StateCode::new(&id[..3]).unwrap();
        cert.verify_by_state(&self.roots[&state]).unwrap()
    }

    /// Seals `message` as its header's sender would.
    pub fn seal(&self, message: &poc_proto::Message) -> Vec<u8> {
        let from = message.header.sender.as_str();
        let to = message.header.recipient.as_str();
        let identity = IdentityKeyPair::from_secret_bytes(&self.poc(from).identity);
        let from_cert = self.verified(from);
        let to_cert = self.verified(to);
        poc_proto::envelope::Sender::new(&from_cert, &identity)
            .unwrap()
            .seal(
                message,
                &to_cert,
                &to_cert.initial_prekey(),
                message.header.created_at.plus(Seconds::DAY),
                poc_proto::keys::EphemeralSecret::from_random_bytes(seed(&format!(
                    "{:?}",
                    message.header.message_id
                ))),
            )
            .unwrap()
            .into_bytes()
    }

    /// A raw QUIC client speaking as `id` (which runs no daemon).
    pub async fn raw_client(&self, id: &str, to: &str) -> poc_transport::Connection {
        #[derive(Debug)]
        struct Only(PocId);
        impl poc_transport::PeerAuthority for Only {
            fn poc_for_key(&self, _: &poc_proto::keys::IdentityPublicKey) -> Option<PocId> {
                Some(self.0.clone())
            }
        }
        let identity = IdentityKeyPair::from_secret_bytes(&self.poc(id).identity);
        let endpoint = poc_transport::Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &identity,
            std::sync::Arc::new(Only(PocId::new(to).unwrap())),
            poc_transport::ALPN_NODE,
            poc_transport::Limits::default(),
        )
        .unwrap();
        let to_key = IdentityKeyPair::from_secret_bytes(&self.poc(to).identity).public();
        let conn = endpoint
            .connect(
                format!("127.0.0.1:{}", self.poc(to).port).parse().unwrap(),
                to_key,
            )
            .await
            .unwrap();
        // The endpoint must outlive the connection for the whole test.
        std::mem::forget(endpoint);
        conn
    }

    pub fn poc(&self, id: &str) -> &PocSetup {
        &self.pocs[id]
    }

    pub fn start(&self, id: &str) -> Daemon {
        self.start_with_env(id, &[])
    }

    pub fn start_with_env(&self, id: &str, env: &[(&str, &str)]) -> Daemon {
        let poc = self.poc(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(poc.dir.join("pocd.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_pocd"));
        command
            .arg("--config")
            .arg(poc.config())
            .stdout(Stdio::null())
            .stderr(log)
            .env("POCD_LOG", "debug");
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let daemon = Daemon {
            child,
            socket: poc.socket(),
            log: poc.dir.join("pocd.log"),
        };
        daemon.wait_ready();
        daemon
    }
}

impl Drop for Cluster {
    /// A failing test shows every daemon's log.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (id, poc) in &self.pocs {
                let log = std::fs::read_to_string(poc.dir.join("pocd.log")).unwrap_or_default();
                eprintln!("----- pocd log of {id} -----\n{log}");
            }
        }
    }
}

pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut client) = Client::connect(&self.socket)
                && client.call::<serde_json::Value>(&Request::Status).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "pocd did not become ready; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }

    pub fn call<T: serde::de::DeserializeOwned>(&self, request: &Request) -> T {
        self.client()
            .call(request)
            .unwrap_or_else(|e| panic!("{request:?} failed: {e}"))
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit on its own (e.g. a failpoint abort).
    pub fn wait_exit(mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pocd did not exit");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns Some, for at most 30 s.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
