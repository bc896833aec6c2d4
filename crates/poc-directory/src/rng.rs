//! The operating system's random number generator and clock.

use poc_proto::keys::RandomSource;
use ring::rand::SecureRandom;

/// `ring`'s `SystemRandom` (the OS CSPRNG). Aborts the process if the OS
/// cannot give random bytes: no key may be made without them.
#[derive(Debug)]
pub struct OsRandom(ring::rand::SystemRandom);

impl OsRandom {
    /// The OS generator.
    pub fn new() -> Self {
        OsRandom(ring::rand::SystemRandom::new())
    }
}

impl Default for OsRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl RandomSource for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        if self.0.fill(dest).is_err() {
            eprintln!(
                "poc-directory: fatal: the operating system's random number generator failed; \
                 no key can be made safely without it. Nothing was written. \
                 Check the system (getrandom, /dev/urandom) and try again."
            );
            std::process::abort();
        }
    }
}

/// The current time, in whole seconds since the Unix epoch (see
/// [`crate::clock`] for the test offset).
pub fn now() -> poc_proto::Timestamp {
    crate::clock::now()
}
