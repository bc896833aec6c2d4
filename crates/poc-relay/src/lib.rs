//! # poc-relay: blind store-and-forward for pocnet
//!
//! A relay holds sealed envelopes for PoCs whose nodes are offline or not
//! reachable directly, until their own node fetches and acknowledges them,
//! or they expire. It never holds a key that opens an envelope and reads
//! only the outer header (version, recipient mailbox, expiry, length; see
//! [`poc_proto::envelope::OuterHeader`]). What its operator learns: which
//! mailbox receives how many bytes when, and which directory member
//! connected (the TLS handshake authenticates it). It stores and logs no PoC
//! id and no envelope byte outside the store.
//!
//! ## Protocol
//!
//! QUIC + TLS 1.3 through poc-transport, ALPN [`poc_transport::ALPN_RELAY`]
//! (`pocnet-relay/1`, distinct from node-to-node). Clients present their PoC
//! identity key (RFC 7250 raw public key) and are checked against the
//! relay's signed directory during the handshake: unknown clients are
//! refused there. Nodes pin the relay's own key from their configuration.
//! Requests and responses are in [`wire`].
//!
//! - **Deposit**: any directory member may deposit an envelope for a
//!   mailbox of a directory PoC; checks in [`core::check_deposit`]: size,
//!   header, known mailbox, not expired; then the per-sender rate
//!   ([`core::RateLimiter`]) and the per-mailbox quota (count and bytes,
//!   atomically with the insert). Refusals are typed ([`wire::Refusal`]).
//!   The answer comes after the envelope is durably stored.
//! - **Fetch**: a page of the client's *own* mailbox (derived from the key it
//!   authenticated with; no request names a mailbox), held open as a long
//!   poll while the mailbox is empty, answered the moment mail arrives.
//! - **Ack**: the client names the ids it has durably taken; only those of
//!   its own mailbox are deleted. Unacknowledged mail is fetched again.
//! - **Expiry**: a sweep drops envelopes past their expiry (capped by the
//!   relay's retention) and counts them; senders learn of it through their
//!   own outbox timeout.
//!
//! ## Directory
//!
//! The relay loads the manager-signed snapshot file at start and re-reads it
//! every `reload_seconds`, taking a snapshot whose signature verifies and
//! whose sequence is higher than the one it holds (so a new PoC can use the
//! relay, and a revoked one can no longer connect or receive deposits,
//! without a restart). The relay enforces no chain rule (rollback is refused,
//! a gap is accepted): it is untrusted anyway; the nodes hold the chain.
//! Connections already open are not re-checked.
//!
//! ## Storage
//!
//! Behind [`store::RelayStore`]: [`store::LogStore`] (the default: an
//! append-only log of CRC-framed records in segment files, index in
//! memory), [`store::SqliteStore`] (WAL, `secure_delete`) and
//! [`store::MemoryStore`], all run through one conformance suite. A single
//! store thread owns the backend and writes concurrent deposits together
//! (group commit); a flush thread fsyncs behind it, so one batch reaches
//! the disk while the next is written, and a deposit is answered once its
//! flush returned. The store queue is
//! bounded, so memory stays bounded under a flood.
//!
//! ## Memory under flood
//!
//! A client connection holds at most `max_streams_per_connection` (16)
//! requests in flight (QUIC stream limit),
//! each at most one envelope; the store queue is bounded; per-sender rate
//! limits refuse excess deposits before they touch the store; quotas bound
//! what is kept.
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod core;
pub mod metrics;
pub mod server;
pub mod store;
pub mod wire;
