//! What can go wrong while setting up or running a test network.

use std::path::PathBuf;
use std::process::ExitStatus;

/// A test network could not be set up, or a node misbehaved.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The system clock reads before 1970.
    #[error("the system clock is before 1970")]
    Clock,
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A workspace binary has not been built.
    #[error(
        "no `{name}` binary at {}: build it first, into the same target directory \
         (`cargo build --workspace --bins`; add `--release` for a release executable)",
        path.display()
    )]
    MissingBinary {
        /// The binary's name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A PoC id or State code is malformed.
    #[error("{0}")]
    BadName(String),
    /// A key file could not be written.
    #[error(transparent)]
    KeyFile(#[from] poc_keyfile::KeyFileError),
    /// A certificate or the directory could not be signed.
    #[error("cannot sign {what}: {reason}")]
    Signing {
        /// What was being signed.
        what: String,
        /// Why not.
        reason: String,
    },
    /// `pocd` exited.
    #[error("pocd exited ({status}); log:\n{log}")]
    DaemonExited {
        /// Its exit status.
        status: ExitStatus,
        /// Its log so far.
        log: String,
    },
    /// `pocd`'s control socket did not answer in time.
    #[error("pocd did not become ready; log:\n{log}")]
    DaemonNotReady {
        /// Its log so far.
        log: String,
    },
    /// `pocd`'s control socket cannot be reached.
    #[error("cannot reach pocd's control socket: {source}; pocd log:\n{log}")]
    Control {
        /// Why not.
        source: poc_control::ClientError,
        /// Its log so far.
        log: String,
    },
}

impl Error {
    /// An I/O error, saying what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// The message, not the structure: a test's `unwrap()` then prints the
/// reason (and a daemon's log) as written.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
