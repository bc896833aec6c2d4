//! Waiting for real processes: poll until the answer is there.

use std::time::{Duration, Instant};

/// Polls `check` every 100 ms until it returns `Some`; panics naming `what`
/// after 30 s (generous: tests share a busy machine).
pub fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    eventually_within(Duration::from_secs(30), what, check)
}

/// [`eventually`] with a longer wait, for a step that itself waits out a
/// timeout of the system under test (say the transport's 30 s for a request
/// to a peer that died): the test must outwait it, not race it.
pub fn eventually_within<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
