//! A directory service and pocd nodes as real processes on loopback.
//!
//! The manager's side is driven through the `poc-directory` binary (enrol,
//! submit, serve, campaign); the States' side (root keys, certificates,
//! signed entry details) is made with the library, as `poc state` would.
//! Every process shares one test clock file (`POCNET_CLOCK_OFFSET_FILE`), so
//! a test moves the service and the nodes forward together.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use poc_control::{Client, Request};
use poc_proto::certificate::{CertificateBody, Endpoint, PocCertificate, Prekey, PrekeyId};
use poc_proto::directory::{EntryDetails, EntrySubmission, SignedEntryDetails};
use poc_proto::keys::{IdentityKeyPair, ManagerKeyPair, PrekeySecret, StateRootKeyPair};
use poc_proto::message::Language;
use poc_proto::{Issuer, PocId, Role, Seconds, StateCode, Timestamp};

pub fn seed(label: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, label.as_bytes());
    d.as_ref().try_into().unwrap()
}

pub fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

pub fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A built binary next to `poc-directory` (the same `cargo build` made it).
pub fn bin(name: &str) -> PathBuf {
    let own = PathBuf::from(env!("CARGO_BIN_EXE_poc-directory"));
    let path = own.parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

pub struct PocSetup {
    pub id: PocId,
    pub state: StateCode,
    pub role: Role,
    pub port: u16,
    pub dir: PathBuf,
    pub certificate: PocCertificate,
    pub languages: Vec<Language>,
}

pub struct Net {
    pub root: tempfile::TempDir,
    pub clock: PathBuf,
    pub manager: ManagerKeyPair,
    pub service_config: PathBuf,
    pub directory_port: u16,
    pub public_port: u16,
    pub pocs: BTreeMap<String, PocSetup>,
    pub service: Option<Child>,
    pub nodes: BTreeMap<String, Child>,
    /// A relay process, if one was started.
    pub relay: Option<Child>,
    /// Extra TOML appended to every node's pocd.toml (e.g. `[[relay]]`).
    pub node_extra: String,
}

pub fn state_root(state: &str) -> StateRootKeyPair {
    StateRootKeyPair::from_secret_bytes(&seed(&format!("root {state}")))
}

impl Net {
    /// A service configuration and, for each `(poc id, role, languages)`,
    /// keys, a certificate (valid one year) and a node configuration.
    pub fn new(pocs: &[(&str, Role, &[Language])]) -> Net {
        let root = tempfile::tempdir().unwrap();
        let clock = root.path().join("clock-offset");
        std::fs::write(&clock, "0").unwrap();
        let manager = ManagerKeyPair::from_secret_bytes(&seed("manager"));
        poc_keyfile::write_secret(
            &root.path().join("manager.key"),
            poc_keyfile::KeyKind::Manager,
            Some("directory-manager"),
            &manager.to_secret_bytes(),
        )
        .unwrap();
        poc_keyfile::write_public(
            &root.path().join("manager.pub"),
            poc_keyfile::KeyKind::Manager,
            Some("directory-manager"),
            &manager.public().to_bytes(),
        )
        .unwrap();
        let directory_port = free_udp();
        let node_port = free_udp();
        let public_port = free_tcp();
        let service_config = root.path().join("poc-directory.toml");
        std::fs::write(
            &service_config,
            format!(
                "[service]\ndata_dir = \"service\"\nmanager_key = \"manager.key\"\n\
                 listen_directory = \"127.0.0.1:{directory_port}\"\nlisten_node = \"127.0.0.1:{node_port}\"\n\
                 listen_public = \"127.0.0.1:{public_port}\"\npoll_ms = 200\n\n\
                 [campaigns]\ninterval_days = 182\nreply_window_hours = 48\nreminder_lead_hours = 12\n\
                 retry_seconds = 1\nunreachable_after_attempts = 1\n"
            ),
        )
        .unwrap();
        let t = now();
        let mut setups = BTreeMap::new();
        for (id, role, languages) in pocs {
            let poc = PocId::new(*id).unwrap();
            let state = StateCode::new(&id[..3]).unwrap();
            let identity = seed(&format!("identity {id}"));
            let prekey_seed = seed(&format!("prekey {id}"));
            let prekey = PrekeySecret::from_secret_bytes(&prekey_seed);
            let port = free_udp();
            let body = CertificateBody {
                poc_id: poc.clone(),
                issuer: Issuer::State(state),
                role: *role,
                identity_key: IdentityKeyPair::from_secret_bytes(&identity).public(),
                prekey: Prekey {
                    id: PrekeyId(u64::from(port)),
                    public: prekey.public(),
                    valid_from: t.minus(Seconds::DAY),
                    valid_until: t.plus(Seconds::days(365)),
                },
                valid_from: t.minus(Seconds::DAY),
                valid_until: t.plus(Seconds::days(365)),
                endpoints: vec![Endpoint::Direct {
                    address: format!("127.0.0.1:{port}"),
                }],
            };
            let certificate =
                PocCertificate::issue_by_state(&body, &state_root(state.as_str())).unwrap();
            let dir = root.path().join(id);
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
            setups.insert(
                id.to_string(),
                PocSetup {
                    id: poc,
                    state,
                    role: *role,
                    port,
                    dir,
                    certificate,
                    languages: languages.to_vec(),
                },
            );
        }
        for state in setups
            .values()
            .map(|p| p.state)
            .collect::<std::collections::BTreeSet<_>>()
        {
            let root_key = state_root(state.as_str());
            poc_keyfile::write_public(
                &root.path().join(format!("{state}-root.pub")),
                poc_keyfile::KeyKind::StateRoot,
                Some(state.as_str()),
                &root_key.public().to_bytes(),
            )
            .unwrap();
        }
        Net {
            root,
            clock,
            manager,
            service_config,
            directory_port,
            public_port,
            pocs: setups,
            service: None,
            nodes: BTreeMap::new(),
            relay: None,
            node_extra: String::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn poc(&self, id: &str) -> &PocSetup {
        &self.pocs[id]
    }

    /// Moves every process's clock to `offset` seconds ahead.
    pub fn set_clock(&self, offset: u64) {
        std::fs::write(&self.clock, offset.to_string()).unwrap();
    }

    /// Runs `poc-directory ARGS` (with the test clock).
    pub fn directory_cli(&self, args: &[&str]) -> Output {
        Command::new(bin("poc-directory"))
            .args(args)
            .env("POCNET_CLOCK_OFFSET_FILE", &self.clock)
            .output()
            .unwrap()
    }

    /// `poc-directory ARGS --config ...`, asserting success.
    pub fn manager(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        let config = self.service_config.display().to_string();
        all.extend(["--config", &config]);
        let out = self.directory_cli(&all);
        assert!(
            out.status.success(),
            "poc-directory {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn enrol(&self, state: &str) {
        let key = self.path().join(format!("{state}-root.pub"));
        self.manager(&[
            "enrol",
            "--state",
            state,
            "--root-key",
            key.to_str().unwrap(),
        ]);
    }

    /// The details a State signs for `id`.
    pub fn details(&self, id: &str, revision: u64, revoked: bool) -> EntryDetails {
        let poc = self.poc(id);
        EntryDetails {
            poc_id: poc.id.clone(),
            revision,
            entity: format!(
                "{} {}",
                poc.state,
                if poc.role == Role::Technical {
                    "national CERT"
                } else {
                    "ministry of foreign affairs"
                }
            ),
            person_name: Some(format!("Officer of {id}")),
            person_title: Some("Duty officer".into()),
            phone: Some(format!("+000 {}", poc.port)),
            email: Some(format!("{}@example.invalid", id.to_lowercase())),
            working_languages: poc.languages.clone(),
            language: *poc.languages.first().unwrap_or(&Language::English),
            english: None,
            revoked,
        }
    }

    /// Writes a submission for `id` signed by `signer` and returns its path.
    pub fn submission(
        &self,
        id: &str,
        details: &EntryDetails,
        certificate: &PocCertificate,
        signer: &StateRootKeyPair,
        name: &str,
    ) -> PathBuf {
        let submission = EntrySubmission {
            certificate: certificate.clone(),
            details: SignedEntryDetails::sign(details, signer).unwrap(),
        };
        let path = self.path().join(format!("{id}.{name}.entry"));
        std::fs::write(&path, submission.to_bytes().unwrap()).unwrap();
        path
    }

    /// The State submits `id` (revision `revision`) through the manager.
    pub fn submit(&self, id: &str, revision: u64, revoked: bool) {
        let poc = self.poc(id);
        let path = self.submission(
            id,
            &self.details(id, revision, revoked),
            &poc.certificate,
            &state_root(poc.state.as_str()),
            &format!("r{revision}"),
        );
        self.manager(&["submit", path.to_str().unwrap()]);
    }

    /// Enrols every State and submits every PoC, then exports the newest
    /// snapshot as every node's first link.
    pub fn publish_all(&self) {
        let states: std::collections::BTreeSet<String> =
            self.pocs.values().map(|p| p.state.to_string()).collect();
        for state in &states {
            self.enrol(state);
        }
        let ids: Vec<String> = self.pocs.keys().cloned().collect();
        for id in &ids {
            self.submit(id, 1, false);
        }
        let out = self.path().join("directory.snapshot");
        self.manager(&["export", "--out", out.to_str().unwrap()]);
    }

    /// Starts a `poc-relay` serving the exported directory (call after
    /// [`Net::publish_all`]); returns the `[[relay]]` TOML entry naming it,
    /// for the service's and the nodes' configurations.
    pub fn start_relay(&mut self) -> String {
        let dir = self.path().join("relay");
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(bin("poc-relay"))
            .arg("--keygen")
            .arg(dir.join("relay.key"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let port = free_udp();
        let metrics = free_tcp();
        let root = self.path().display();
        std::fs::write(
            dir.join("poc-relay.toml"),
            format!(
                "[relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nidentity_key = \"relay.key\"\n\
                 metrics_listen = \"127.0.0.1:{metrics}\"\n\n\
                 [directory]\nsnapshot = \"{root}/directory.snapshot\"\nmanager_key = \"{root}/manager.pub\"\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("relay.log")).unwrap();
        let child = Command::new(bin("poc-relay"))
            .arg("--config")
            .arg(dir.join("poc-relay.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.relay = Some(child);
        eventually("the relay", || {
            std::net::TcpStream::connect(("127.0.0.1", metrics))
                .ok()
                .map(|_| ())
        });
        format!(
            "\n[[relay]]\nname = \"relay-un\"\naddress = \"127.0.0.1:{port}\"\npublic_key = \"{key}\"\n"
        )
    }

    pub fn start_service(&mut self) {
        let log = std::fs::File::create(self.path().join("service.log")).unwrap();
        let child = Command::new(bin("poc-directory"))
            .args(["serve", "--config", self.service_config.to_str().unwrap()])
            .env("POCNET_CLOCK_OFFSET_FILE", &self.clock)
            .env("POC_DIRECTORY_LOG", "info,poc_directory=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.service = Some(child);
        let addr = format!("127.0.0.1:{}", self.public_port);
        eventually("the directory service", || {
            std::net::TcpStream::connect(&addr).ok().map(|_| ())
        });
    }

    /// `poc-directory campaign report --json` (Null until there is one).
    pub fn campaign_report(&self) -> serde_json::Value {
        let config = self.service_config.display().to_string();
        let out = self.directory_cli(&["campaign", "report", "--json", "--config", &config]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Starts a relay and pins it for the service's ping identity and for
    /// every node started afterwards.
    pub fn share_a_relay(&mut self) {
        let relay = self.start_relay();
        let mut config = std::fs::read_to_string(&self.service_config).unwrap();
        config.push_str(&relay);
        std::fs::write(&self.service_config, config).unwrap();
        self.node_extra = relay;
    }

    pub fn stop_service(&mut self) {
        if let Some(mut child) = self.service.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes `id`'s pocd.toml.
    pub fn node_config(&self, id: &str, auto_reply: bool) -> PathBuf {
        let poc = self.poc(id);
        let path = poc.dir.join("pocd.toml");
        std::fs::write(
            &path,
            format!(
                "[node]\npoc_id = \"{id}\"\ndata_dir = \"data\"\nidentity_key = \"identity.key\"\nprekey_key = \"prekey.key\"\nlisten = \"127.0.0.1:{}\"\n\n\
                 [directory]\nsnapshot = \"../directory.snapshot\"\nmanager_key = \"../manager.pub\"\nservice = \"127.0.0.1:{}\"\nsync_interval_seconds = 3600\n\n\
                 [delivery]\nretry_initial_seconds = 1\nretry_max_seconds = 2\n\n[pings]\nauto_reply = {auto_reply}\n{}",
                poc.port, self.directory_port, self.node_extra
            ),
        )
        .unwrap();
        path
    }

    pub fn start_node(&mut self, id: &str, auto_reply: bool) {
        let config = self.node_config(id, auto_reply);
        let poc = self.poc(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(poc.dir.join("pocd.log"))
            .unwrap();
        let child = Command::new(bin("pocd"))
            .arg("--config")
            .arg(&config)
            .env("POCNET_CLOCK_OFFSET_FILE", &self.clock)
            .env("POCD_LOG", "info,pocd=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes.insert(id.to_string(), child);
        let socket = self.socket(id);
        eventually(&format!("pocd {id}"), || {
            Client::connect(&socket)
                .ok()?
                .call::<serde_json::Value>(&Request::Status)
                .ok()
        });
    }

    pub fn socket(&self, id: &str) -> PathBuf {
        self.poc(id).dir.join("data/pocd.sock")
    }

    pub fn call<T: serde::de::DeserializeOwned>(&self, id: &str, request: &Request) -> T {
        Client::connect(&self.socket(id))
            .unwrap()
            .call(request)
            .unwrap_or_else(|e| panic!("{id}: {request:?} failed: {e}"))
    }

    pub fn try_call<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        request: &Request,
    ) -> Result<T, poc_control::ClientError> {
        Client::connect(&self.socket(id)).unwrap().call(request)
    }

    /// Runs `poc ARGS` against `id`'s node.
    pub fn poc_cli(&self, id: &str, args: &[&str]) -> Output {
        Command::new(bin("poc"))
            .args(args)
            .env("POC_SOCKET", self.socket(id))
            .output()
            .unwrap()
    }

    /// The service's database (for what a compromised manager could do).
    pub fn service_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path().join("service/directory.sqlite")).unwrap()
    }

    pub fn stop_node(&mut self, id: &str) {
        if let Some(mut child) = self.nodes.remove(id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in self
            .nodes
            .values_mut()
            .chain(self.service.as_mut())
            .chain(self.relay.as_mut())
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.path().join("service.log")).unwrap_or_default();
            eprintln!("----- service log -----\n{log}");
            for (id, poc) in &self.pocs {
                let log = std::fs::read_to_string(poc.dir.join("pocd.log")).unwrap_or_default();
                eprintln!("----- pocd log of {id} -----\n{log}");
            }
        }
    }
}

/// The line of `id` in a campaign report (Null if absent).
pub fn report_target(report: &serde_json::Value, id: &str) -> serde_json::Value {
    report["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["poc_id"] == id).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// Polls `check` until it returns Some, for at most 30 s.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
