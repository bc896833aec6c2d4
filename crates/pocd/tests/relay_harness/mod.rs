//! Real `poc-relay` processes next to a [`Cluster`] of real pocd processes.
//!
//! The relay binary is the one built next to `pocd` (build both:
//! `cargo build -p poc-relay --bins` before `cargo test -p pocd --test relay`;
//! `cargo test --workspace` builds every binary first).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use poc_proto::keys::IdentityKeyPair;

use poc_testnet::{built_binary, free_tcp_port, free_udp_port, seed};

use crate::common::Cluster;

/// A relay's files: config, key, data directory and log, all under `dir`.
pub struct RelaySetup {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    pub identity: IdentityKeyPair,
}

impl RelaySetup {
    /// A relay serving `cluster`'s directory; `limits` is extra TOML for
    /// its `[limits]` section.
    pub fn new(cluster: &Cluster, name: &str, limits: &str) -> RelaySetup {
        let dir = cluster.root.path().join(format!("relay-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let seed = seed(&format!("relay {name}"));
        poc_keyfile::write_secret(
            &dir.join("relay.key"),
            poc_keyfile::KeyKind::Identity,
            Some("relay"),
            &seed,
        )
        .unwrap();
        let port = free_udp_port();
        let metrics_port = free_tcp_port();
        let root = cluster.root.path().display();
        std::fs::write(
            dir.join("poc-relay.toml"),
            format!(
                "[relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nidentity_key = \"relay.key\"\n\
                 metrics_listen = \"127.0.0.1:{metrics_port}\"\n\n\
                 [directory]\nsnapshot = \"{root}/directory.snapshot\"\nmanager_key = \"{root}/manager.pub\"\n\n\
                 [limits]\nexpiry_sweep_seconds = 1\n{limits}\n"
            ),
        )
        .unwrap();
        RelaySetup {
            name: name.to_owned(),
            dir,
            port,
            metrics_port,
            identity: IdentityKeyPair::from_secret_bytes(&seed),
        }
    }

    /// The `[[relay]]` entry a node's configuration needs for this relay.
    pub fn node_config(&self) -> String {
        format!(
            "\n[[relay]]\nname = \"{}\"\naddress = \"127.0.0.1:{}\"\npublic_key = \"{}\"\n",
            self.name,
            self.port,
            hex::encode(self.identity.public().to_bytes())
        )
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("relay.log")
    }

    /// The relay's store: its segment log (the default storage).
    pub fn store(&self) -> PathBuf {
        self.dir.join("data/relay-log")
    }

    /// Starts the relay and waits until its metrics endpoint answers.
    pub fn start(&self) -> RelayProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new(built_binary("poc-relay"))
            .arg("--config")
            .arg(self.dir.join("poc-relay.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            // The relay's own debug logs are on: they too must stay blind.
            .env("POC_RELAY_LOG", "poc_relay=debug,info")
            .spawn()
            .unwrap();
        let process = RelayProcess { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.try_metrics().is_none() {
            assert!(
                Instant::now() < deadline,
                "poc-relay did not start; log:\n{}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }

    fn try_metrics(&self) -> Option<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.starts_with("HTTP/1.1 200").then_some(text)
    }

    /// One unlabelled metric's value (a labelled one with `name{labels}`).
    pub fn metric(&self, name: &str) -> u64 {
        let text = self.try_metrics().expect("metrics endpoint answers");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }
}

/// A running relay; killed (SIGKILL) when dropped.
pub struct RelayProcess {
    pub child: Child,
}

impl RelayProcess {
    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds `relays`, in order, to the configuration of the node of `poc`.
pub fn use_relays(cluster: &Cluster, poc: &str, relays: &[&RelaySetup]) {
    let path = cluster.poc(poc).node.config();
    let mut config = std::fs::read_to_string(&path).unwrap();
    for relay in relays {
        config.push_str(&relay.node_config());
    }
    std::fs::write(path, config).unwrap();
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .collect()
}
