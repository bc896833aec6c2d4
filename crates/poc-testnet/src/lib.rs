//! Real pocnet nodes on loopback, for tests and benchmarks (never shipped).
//!
//! What every harness that starts real `pocd` processes needs, in one place:
//!
//! - [`keys`]: deterministic key seeds, the directory manager's key, each
//!   State's root key;
//! - [`clock`]: the wall clock as a protocol [`Timestamp`](poc_proto::Timestamp);
//! - [`ports`]: free loopback ports;
//! - [`binaries`]: the workspace binaries built beside the running executable;
//! - [`poc`]: a PoC's keys, certificate and node directory (key files 0600);
//! - [`directory`]: the manager key file and a signed first directory snapshot;
//! - [`config`]: a node's `pocd.toml`;
//! - [`daemon`]: a running `pocd`, reached through its control socket;
//! - [`poll`]: waiting for something to happen.
//!
//! Errors: a helper that can fail returns [`Error`] (the load tool reports
//! it); where tests call one directly there is also a panicking form without
//! the `try_` prefix. [`Error`]'s `Debug` is its message, so a test's
//! `unwrap()` prints what went wrong (with the daemon's log where there is
//! one).
#![forbid(unsafe_code)]
// Test support: the panicking forms are for tests, where a panic with a
// clear message is the failure report.
#![allow(clippy::panic)]

pub mod binaries;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod directory;
mod error;
pub mod keys;
pub mod poc;
pub mod poll;
pub mod ports;

pub use binaries::{built_binary, try_built_binary};
pub use clock::{now, try_now};
pub use config::PocdConfig;
pub use daemon::Daemon;
pub use directory::{write_directory, write_manager_public_key};
pub use error::Error;
pub use keys::{manager_key, seed, state_of, state_root, try_state_of};
pub use poc::{NodeDir, PocSetup};
pub use poll::{eventually, eventually_within};
pub use ports::{free_tcp_port, free_udp_port, try_free_tcp_port, try_free_udp_port};
