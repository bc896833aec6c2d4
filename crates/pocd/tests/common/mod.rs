//! A cluster of real pocd processes on loopback for end-to-end tests.
//!
//! Keys, certificates and the signed directory are made with the library
//! (as the ceremony tools would, through `poc-testnet`); the daemons are the
//! built `pocd` binary; tests talk to them through their control sockets,
//! exactly as `poc` does.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;

use poc_proto::keys::{IdentityKeyPair, StateRootPublicKey};
use poc_proto::{Issuer, PocId, Role, Seconds, StateCode};
use poc_testnet::{Daemon, PocSetup, PocdConfig, seed, state_of, state_root};

pub struct Cluster {
    pub root: tempfile::TempDir,
    pub pocs: BTreeMap<String, PocSetup>,
    pub roots: BTreeMap<StateCode, StateRootPublicKey>,
}

/// The configuration of every node of a cluster: fast retries, so tests of
/// redelivery finish in seconds.
pub fn node_config(id: &str, port: u16) -> PocdConfig {
    PocdConfig {
        fast_retries: true,
        ..PocdConfig::new(id, port)
    }
}

impl Cluster {
    /// Sets up keys, certificates, configs and a signed directory for
    /// `listed` PoCs, plus `unlisted` ones that have keys and configs but are
    /// not in the directory.
    pub fn new(listed: &[(&str, Role)], unlisted: &[(&str, Role)]) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        poc_testnet::write_manager_public_key(root.path()).unwrap();
        let mut roots = BTreeMap::new();
        let mut pocs = BTreeMap::new();
        for (id, role) in listed.iter().chain(unlisted) {
            let state = state_of(id);
            roots.insert(state, state_root(state).public());
            let poc = PocSetup::create(
                root.path(),
                id,
                Issuer::State(state),
                *role,
                Seconds::days(30),
            )
            .unwrap();
            node_config(id, poc.port).write(&poc.node).unwrap();
            pocs.insert(id.to_string(), poc);
        }
        let cluster = Cluster { root, pocs, roots };
        let ids: Vec<&str> = listed.iter().map(|(id, _)| *id).collect();
        cluster.write_directory(&ids);
        cluster
    }

    /// Signs (with the manager key) and writes the directory snapshot every
    /// node reads at start: every State root, and the PoCs `listed`.
    pub fn write_directory(&self, listed: &[&str]) {
        poc_testnet::write_directory(
            self.root.path(),
            self.roots.keys().copied(),
            listed.iter().map(|id| &self.poc(id).certificate),
        )
        .unwrap();
    }

    /// A PoC's certificate, verified against its State's root.
    pub fn verified(&self, id: &str) -> poc_proto::certificate::VerifiedCertificate {
        let cert = &self.poc(id).certificate;
        cert.verify_by_state(&self.roots[&state_of(id)]).unwrap()
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
        self.try_raw_client(id, to).await.unwrap()
    }

    /// A raw QUIC client speaking as `id`, or why `to` refused it.
    pub async fn try_raw_client(
        &self,
        id: &str,
        to: &str,
    ) -> Result<poc_transport::Connection, poc_transport::TransportError> {
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
            .await;
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
        let mut all = vec![("POCD_LOG", "debug")];
        all.extend_from_slice(env);
        Daemon::start(pocd(), &self.poc(id).node, &all)
    }
}

/// The `pocd` binary under test.
pub fn pocd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pocd"))
}

impl Drop for Cluster {
    /// A failing test shows every daemon's log.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (id, poc) in &self.pocs {
                let log = std::fs::read_to_string(poc.node.log()).unwrap_or_default();
                eprintln!("----- pocd log of {id} -----\n{log}");
            }
        }
    }
}
