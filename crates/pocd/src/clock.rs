//! The node's clock: the system clock, shifted by an offset that tests can
//! move, so the directory's six-month and 48-hour timelines run in seconds.
//!
//! If the environment variable `POCNET_CLOCK_OFFSET_FILE` names a file,
//! every reading adds the whole number of seconds that file holds (a missing
//! or unreadable file counts as 0). The directory service (`poc-directory
//! serve`) reads the same variable, so a test moves the service and every
//! node together. Nothing in production sets it; pocd logs a warning at
//! start when it is set.

use std::sync::OnceLock;

use poc_proto::Timestamp;

fn offset_file() -> Option<&'static std::path::Path> {
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os("POCNET_CLOCK_OFFSET_FILE").map(std::path::PathBuf::from))
        .as_deref()
}

/// The offset in force, if the variable is set.
pub(crate) fn test_offset() -> Option<i64> {
    offset_file().map(|path| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or(0)
    })
}

/// Seconds since the Unix epoch, shifted by the test offset if one is set.
pub(crate) fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Timestamp(secs.saturating_add_signed(test_offset().unwrap_or(0)))
}
