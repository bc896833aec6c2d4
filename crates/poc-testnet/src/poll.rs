//! Waiting for real processes: poll until the answer is there.

use std::time::{Duration, Instant};

/// Polls `check` every 100 ms until it returns `Some`; panics naming `what`
/// after 30 s (generous: tests share a busy machine).
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
