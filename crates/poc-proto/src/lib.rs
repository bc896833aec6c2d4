//! # poc-proto: the pocnet protocol
//!
//! Messages of the standard procedures of the UN Global Intergovernmental
//! Points of Contact Directory on ICT security (appendix to Annex A of
//! A/78/265), in signed, end-to-end encrypted envelopes, with the sans-IO state
//! machines that track incident threads and ping campaigns.
//!
//! This crate does no I/O, reads no clock and no global RNG: time is passed in
//! as a [`Timestamp`] and randomness through [`keys::RandomSource`], so every
//! behaviour is deterministic under test. The byte-level format is specified
//! in `proto/SPEC.md` and pinned by the vectors in `proto/vectors/`.
//!
//! ```text
//! Message ──encode──▶ content ──Ed25519──▶ (content, signature)
//!        ──X25519+HKDF-SHA256+ChaCha20-Poly1305──▶ envelope (outer header + body)
//! ```
//!
//! Start with [`envelope::Sender::seal`] and [`envelope::Recipient::open`].
#![forbid(unsafe_code)]

mod codec;
mod iso3166;
mod validate;

pub mod campaign;
pub mod certificate;
pub mod directory;
pub mod envelope;
pub mod error;
pub mod identity;
pub mod keys;
pub mod message;
pub mod policy;
pub mod template;
pub mod thread;
pub mod time;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use codec::limits;
pub use error::{CertificateError, DecodeError, KeyError, OpenError, RejectCode, SealError};
pub use identity::{Issuer, PocId, Role, StateCode};
pub use message::{Body, Header, Message, MessageId, MessageKind, ThreadId};
pub use time::{Seconds, Timestamp};
