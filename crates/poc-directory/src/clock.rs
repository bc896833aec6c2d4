//! The service's clock: the system clock, shifted by an offset that tests
//! can move, so six-month and 48-hour timelines run in seconds.
//!
//! If the environment variable `POCNET_CLOCK_OFFSET_FILE` names a file, every
//! reading adds the whole number of seconds that file holds (e.g. `172800`
//! for two days ahead; a missing or unreadable file counts as 0). pocd reads
//! the same variable, so a test moves the service and every node together.
//! Nothing in production sets it; the service logs a warning when it is set.

use std::sync::OnceLock;

use poc_proto::Timestamp;

/// The name of the environment variable.
pub const OFFSET_FILE_ENV: &str = "POCNET_CLOCK_OFFSET_FILE";

fn offset_file() -> Option<&'static std::path::Path> {
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os(OFFSET_FILE_ENV).map(std::path::PathBuf::from))
        .as_deref()
}

/// Whether a test clock offset is in force.
pub fn is_shifted() -> bool {
    offset_file().is_some()
}

/// The offset in seconds now in force (0 without the variable).
pub fn offset() -> i64 {
    offset_file()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(0)
}

/// The current time, in whole seconds since the Unix epoch, shifted by
/// [`offset`].
pub fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Timestamp(secs.saturating_add_signed(offset()))
}
