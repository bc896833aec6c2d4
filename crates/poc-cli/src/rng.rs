//! The operating system's random number generator, as poc-proto wants it.

use poc_proto::keys::RandomSource;
use ring::rand::SecureRandom;

/// `ring`'s `SystemRandom` (the OS CSPRNG). Aborts the process if the OS
/// cannot give random bytes: no key or id may be made without them.
pub(crate) struct OsRandom(ring::rand::SystemRandom);

impl OsRandom {
    /// The OS generator.
    pub(crate) fn new() -> Self {
        OsRandom(ring::rand::SystemRandom::new())
    }

    /// A random u64.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }
}

impl RandomSource for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        if self.0.fill(dest).is_err() {
            eprintln!(
                "poc: fatal: the operating system's random number generator failed; \
                 no key or message id can be made safely without it. Nothing was written. \
                 Check the system (getrandom, /dev/urandom) and try again."
            );
            std::process::abort();
        }
    }
}

/// The current time, in whole seconds since the Unix epoch.
pub(crate) fn now() -> poc_proto::Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    poc_proto::Timestamp(secs)
}
