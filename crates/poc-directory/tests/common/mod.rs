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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use poc_control::{Client, Request};
use poc_proto::certificate::PocCertificate;
use poc_proto::directory::{EntryDetails, EntrySubmission, SignedEntryDetails};
use poc_proto::keys::{ManagerKeyPair, StateRootKeyPair};
use poc_proto::message::Language;
use poc_proto::{Issuer, Role, Seconds};
use poc_testnet::{
    Daemon, PocSetup, PocdConfig, built_binary, eventually, free_tcp_port, free_udp_port,
    manager_key, state_of, state_root,
};

pub struct Net {
    pub root: tempfile::TempDir,
    pub clock: PathBuf,
    pub manager: ManagerKeyPair,
    pub service_config: PathBuf,
    pub directory_port: u16,
    pub public_port: u16,
    pub pocs: BTreeMap<String, PocSetup>,
    /// Each PoC's working languages, for its entry's details.
    pub languages: BTreeMap<String, Vec<Language>>,
    pub service: Option<Child>,
    pub nodes: BTreeMap<String, Daemon>,
    /// A relay process, if one was started.
    pub relay: Option<Child>,
    /// Extra TOML appended to every node's pocd.toml (e.g. `[[relay]]`).
    pub node_extra: String,
}

impl Net {
    /// A service configuration and, for each `(poc id, role, languages)`,
    /// keys, a certificate (valid one year) and a node configuration.
    pub fn new(pocs: &[(&str, Role, &[Language])]) -> Net {
        let root = tempfile::tempdir().unwrap();
        let clock = root.path().join("clock-offset");
        std::fs::write(&clock, "0").unwrap();
        let manager = manager_key();
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
        let directory_port = free_udp_port();
        let node_port = free_udp_port();
        let public_port = free_tcp_port();
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
        let mut setups = BTreeMap::new();
        let mut all_languages = BTreeMap::new();
        for (id, role, languages) in pocs {
            let setup = PocSetup::create(
                root.path(),
                id,
                Issuer::State(state_of(id)),
                *role,
                Seconds::days(365),
            )
            .unwrap();
            setups.insert(id.to_string(), setup);
            all_languages.insert(id.to_string(), languages.to_vec());
        }
        for state in pocs
            .iter()
            .map(|(id, _, _)| state_of(id))
            .collect::<BTreeSet<_>>()
        {
            poc_keyfile::write_public(
                &root.path().join(format!("{state}-root.pub")),
                poc_keyfile::KeyKind::StateRoot,
                Some(state.as_str()),
                &state_root(state).public().to_bytes(),
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
            languages: all_languages,
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
        Command::new(built_binary("poc-directory"))
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
        let languages = &self.languages[id];
        EntryDetails {
            poc_id: poc.id.clone(),
            revision,
            entity: format!(
                "{} {}",
                state_of(id),
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
            working_languages: languages.clone(),
            language: *languages.first().unwrap_or(&Language::English),
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
            &state_root(state_of(id)),
            &format!("r{revision}"),
        );
        self.manager(&["submit", path.to_str().unwrap()]);
    }

    /// Enrols every State and submits every PoC, then exports the newest
    /// snapshot as every node's first link.
    pub fn publish_all(&self) {
        let states: BTreeSet<String> = self
            .pocs
            .keys()
            .map(|id| state_of(id).to_string())
            .collect();
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
        let out = Command::new(built_binary("poc-relay"))
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
        let port = free_udp_port();
        let metrics = free_tcp_port();
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
        let child = Command::new(built_binary("poc-relay"))
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
        let child = Command::new(built_binary("poc-directory"))
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

    /// Writes `id`'s pocd.toml: syncing from the service, answering
    /// pings itself or not, with whatever `node_extra` adds.
    pub fn node_config(&self, id: &str, auto_reply: bool) -> PathBuf {
        let poc = self.poc(id);
        let config = PocdConfig {
            directory_extra: format!(
                "service = \"127.0.0.1:{}\"\nsync_interval_seconds = 3600\n",
                self.directory_port
            ),
            fast_retries: true,
            tail: format!("\n[pings]\nauto_reply = {auto_reply}\n{}", self.node_extra),
            ..PocdConfig::new(id, poc.port)
        };
        config.write(&poc.node).unwrap();
        poc.node.config()
    }

    pub fn start_node(&mut self, id: &str, auto_reply: bool) {
        self.node_config(id, auto_reply);
        let clock = self.clock.display().to_string();
        let daemon = Daemon::start(
            &built_binary("pocd"),
            &self.poc(id).node,
            &[
                ("POCNET_CLOCK_OFFSET_FILE", clock.as_str()),
                ("POCD_LOG", "info,pocd=debug"),
            ],
        );
        self.nodes.insert(id.to_string(), daemon);
    }

    pub fn socket(&self, id: &str) -> PathBuf {
        self.poc(id).node.socket()
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
        Command::new(built_binary("poc"))
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
        if let Some(daemon) = self.nodes.remove(id) {
            daemon.kill9();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The nodes are killed when their Daemons drop.
        for child in self.service.as_mut().into_iter().chain(self.relay.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.path().join("service.log")).unwrap_or_default();
            eprintln!("----- service log -----\n{log}");
            for (id, poc) in &self.pocs {
                let log = std::fs::read_to_string(poc.node.log()).unwrap_or_default();
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
