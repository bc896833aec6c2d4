//! Deterministic keys: the same label gives the same key in every run, so
//! a failing test can be replayed and two harnesses agree on who is who.

use poc_proto::StateCode;
use poc_proto::keys::{ManagerKeyPair, StateRootKeyPair};

use crate::Error;

/// The 32-byte key seed for `label`: SHA-256 of the label.
///
/// A PoC's identity is `seed("identity <id>")`, its prekey
/// `seed("prekey <id>")` (see [`PocSetup::create`](crate::PocSetup::create)).
pub fn seed(label: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, label.as_bytes());
    let mut out = [0; 32];
    // SHA-256 digests are 32 bytes.
    out.copy_from_slice(digest.as_ref());
    out
}

/// The directory manager's key pair (`seed("manager")`).
pub fn manager_key() -> ManagerKeyPair {
    ManagerKeyPair::from_secret_bytes(&seed("manager"))
}

/// `state`'s root key pair (`seed("root <state>")`), which certifies its PoCs.
pub fn state_root(state: StateCode) -> StateRootKeyPair {
    StateRootKeyPair::from_secret_bytes(&seed(&format!("root {state}")))
}

/// The State a PoC id names (the part before the dot: `EST` in `EST.cert`).
pub fn try_state_of(poc_id: &str) -> Result<StateCode, Error> {
    let code = poc_id.split('.').next().unwrap_or(poc_id);
    StateCode::new(code).map_err(|e| Error::BadName(format!("{poc_id}: {e}")))
}

/// [`try_state_of`], panicking on an id that names no State.
pub fn state_of(poc_id: &str) -> StateCode {
    try_state_of(poc_id).unwrap_or_else(|e| panic!("{e}"))
}
