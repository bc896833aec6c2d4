//! Connections counted per peer identity key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use poc_proto::keys::IdentityPublicKey;

/// How many connections each peer identity holds, counted by the
/// [`KeySlot`]s [`KeySlots::take`] hands out. Clones share the count.
#[derive(Debug, Clone, Default)]
pub struct KeySlots(Arc<Mutex<HashMap<IdentityPublicKey, usize>>>);

impl KeySlots {
    /// A slot for `key`, unless it already holds `limit`.
    pub fn take(&self, key: IdentityPublicKey, limit: usize) -> Option<KeySlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = map.entry(key).or_insert(0);
        if *held >= limit {
            return None;
        }
        *held += 1;
        Some(KeySlot {
            slots: self.clone(),
            key,
        })
    }
}

/// One connection counted against its peer's limit; uncounted when
/// dropped, however the connection ends.
#[derive(Debug)]
pub struct KeySlot {
    slots: KeySlots,
    key: IdentityPublicKey,
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        let mut map = self.slots.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = map.get_mut(&self.key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poc_proto::keys::IdentityKeyPair;

    #[test]
    fn slots_are_counted_per_key_and_given_back_when_dropped() {
        let slots = KeySlots::default();
        let a = IdentityKeyPair::from_secret_bytes(&[1; 32]).public();
        let b = IdentityKeyPair::from_secret_bytes(&[2; 32]).public();
        let first = slots.take(a, 2);
        let second = slots.take(a, 2);
        assert!(first.is_some() && second.is_some());
        assert!(slots.take(a, 2).is_none(), "a third for the same key");
        assert!(slots.take(b, 2).is_some(), "another key has its own count");
        drop(first);
        assert!(slots.take(a, 2).is_some(), "a dropped slot is given back");
    }
}
