//! The wall clock, as the protocol counts time.

use poc_proto::Timestamp;

use crate::Error;

/// Seconds since the Unix epoch, now.
pub fn try_now() -> Result<Timestamp, Error> {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| Error::Clock)?;
    Ok(Timestamp(since_epoch.as_secs()))
}

/// [`try_now`], panicking if the clock reads before 1970.
pub fn now() -> Timestamp {
    try_now().unwrap_or_else(|e| panic!("{e}"))
}
