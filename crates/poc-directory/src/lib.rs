//! # poc-directory: the directory manager's side of pocnet
//!
//! The directory manager (UNODA, Annex A para 7(b)) enrols each State's root
//! key once, lists the PoCs each State certified, and signs chained
//! directory snapshots. The manager's signature alone never vouches for a
//! PoC: every certificate must verify under the root key enrolled for its
//! State, and [`snapshot::build`] refuses any that does not.
//!
//! This crate holds the logic as a library so the network service (snapshot
//! publication, ping campaigns) can be added next to the `poc-directory`
//! command-line tool without moving code:
//!
//! - [`manager`]: the manager key pair;
//! - [`snapshot`]: building and signing a snapshot from enrolments and certificates;
//! - [`inspect`]: verifying a snapshot and listing what it says;
//! - [`service`]: the network service (`poc-directory serve`): enrolment,
//!   State-signed entries, the snapshot chain over QUIC, the public
//!   overview, and the six-monthly ping campaigns;
//! - [`clock`]: the injectable clock tests use to run six months in seconds.
#![forbid(unsafe_code)]

pub mod clock;
pub mod inspect;
pub mod manager;
pub mod rng;
pub mod service;
pub mod snapshot;
