//! Resource limits and the per-address handshake rate limiter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::error::TransportError;

/// Resource limits of an [`Endpoint`](crate::Endpoint) and its connections.
///
/// Start from [`Limits::default`] and change fields:
///
/// ```
/// let mut limits = poc_transport::Limits::default();
/// limits.stream_timeout = std::time::Duration::from_secs(10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request frame payload accepted (and sent), in bytes. Default
    /// 4 MiB + 1 KiB (a maximum-size envelope plus its header).
    pub max_frame: usize,
    /// Largest response frame payload accepted (and sent), in bytes.
    /// Default 64 KiB (responses are receipts and small answers).
    pub max_response_frame: usize,
    /// Time allowed for a connection to be established, acceptance signal
    /// included. Default 10 s.
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// Keep-alive interval on connections this endpoint opens (the client
    /// side keeps the connection up). Default 15 s; must be shorter than
    /// `idle_timeout`.
    pub keep_alive_interval: Duration,
    /// Time allowed to read one frame (or to complete one request, from
    /// opening the stream to reading the response), on top of the frame's
    /// bytes at `min_transfer_rate`. Default 30 s.
    pub stream_timeout: Duration,
    /// The slowest transfer a frame may take, bytes per second: a frame of
    /// `n` bytes has `stream_timeout + n / min_transfer_rate` to arrive (or
    /// be sent). A fixed timeout alone would cut off a large envelope on a
    /// slow link on every retry (4 MiB needs 33 s at 1 Mbit/s), while a
    /// peer trickling bytes still cannot hold a stream for longer than its
    /// frame's size allows. Default 64 KiB/s: a 4 MiB frame has 94 s.
    pub min_transfer_rate: u32,
    /// Bidirectional streams (requests in flight) a peer may have open on
    /// one connection. Default 64.
    pub max_concurrent_bidi_streams: u32,
    /// Sustained handshakes per second accepted from one remote address
    /// (IPv4 address or IPv6 /64). Excess attempts are refused before any
    /// TLS work. Default 20.
    pub handshakes_per_second_per_ip: u32,
    /// Burst of handshakes accepted from one remote address before the rate
    /// applies. Default 20.
    pub handshake_burst_per_ip: u32,
    /// Inbound connections (established or in handshake) at once, over all
    /// peers. Further attempts are refused. Default 1024.
    pub max_connections: usize,
    /// Inbound connections one peer (one identity key) may hold at once.
    /// A further one is closed right after the handshake with
    /// [`close_code::TOO_MANY_CONNECTIONS`](crate::close_code::TOO_MANY_CONNECTIONS)
    /// and the reason, so one directory member cannot take every
    /// `max_connections` slot and lock the others out. Default 8 (a node
    /// keeps one connection per peer).
    pub max_connections_per_peer: usize,
    /// Validate a client's address with a QUIC Retry (one extra round trip)
    /// before counting it against the rate limit and doing TLS work, so a
    /// spoofed source address cannot spend another peer's budget. Default
    /// true.
    pub validate_addresses: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 4 * 1024 * 1024 + 1024,
            max_response_frame: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keep_alive_interval: Duration::from_secs(15),
            stream_timeout: Duration::from_secs(30),
            min_transfer_rate: 64 * 1024,
            max_concurrent_bidi_streams: 64,
            handshakes_per_second_per_ip: 20,
            handshake_burst_per_ip: 20,
            max_connections: 1024,
            max_connections_per_peer: 8,
            validate_addresses: true,
        }
    }
}

impl Limits {
    /// Time allowed for a frame of `bytes`: `stream_timeout` plus its
    /// [`transfer_time`](Limits::transfer_time).
    pub(crate) fn allowance(&self, bytes: usize) -> Duration {
        self.stream_timeout
            .saturating_add(self.transfer_time(bytes))
    }

    /// `bytes` at `min_transfer_rate`.
    pub(crate) fn transfer_time(&self, bytes: usize) -> Duration {
        let rate = u64::from(self.min_transfer_rate.max(1));
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        // Milliseconds, so that small frames are not rounded to nothing.
        Duration::from_millis(bytes.saturating_mul(1000) / rate)
    }

    /// Checks that the limits are usable.
    pub(crate) fn check(&self) -> Result<(), TransportError> {
        let bad = |what: &str| Err(TransportError::Config(format!("invalid limits: {what}")));
        if u32::try_from(self.max_frame).is_err() || u32::try_from(self.max_response_frame).is_err()
        {
            return bad("frame limits must fit the u32 length prefix");
        }
        if self.handshake_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.stream_timeout.is_zero()
        {
            return bad("timeouts must be non-zero");
        }
        if self.min_transfer_rate == 0 {
            return bad("min_transfer_rate must be at least 1 byte per second");
        }
        if self.keep_alive_interval.is_zero() || self.keep_alive_interval >= self.idle_timeout {
            return bad("keep_alive_interval must be non-zero and shorter than idle_timeout");
        }
        if self.max_concurrent_bidi_streams == 0 {
            return bad("max_concurrent_bidi_streams must be at least 1");
        }
        if self.handshakes_per_second_per_ip == 0 || self.handshake_burst_per_ip == 0 {
            return bad("handshake rate and burst must be at least 1");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.max_connections_per_peer == 0 {
            return bad("max_connections_per_peer must be at least 1");
        }
        Ok(())
    }
}

/// Most addresses tracked at once; beyond this, idle buckets are pruned and,
/// if none is idle, new addresses are refused until some are.
const MAX_TRACKED: usize = 65_536;

/// Token bucket per remote address (IPv4 address, or IPv6 /64 prefix since
/// one host usually holds a whole /64).
#[derive(Debug)]
pub(crate) struct HandshakeRateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl HandshakeRateLimiter {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        HandshakeRateLimiter {
            rate: f64::from(per_second),
            burst: f64::from(burst),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `ip`; `false` if its budget is spent.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = bucket_key(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_TRACKED {
            self.prune(now);
            if self.buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets buckets that have refilled completely (they behave exactly
    /// like a new bucket).
    fn prune(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }
}

fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Limits::default().check().is_ok());
        let l = Limits {
            keep_alive_interval: Limits::default().idle_timeout,
            ..Limits::default()
        };
        assert!(l.check().is_err());
    }

    #[test]
    fn bucket_refills() {
        let mut rl = HandshakeRateLimiter::new(2, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let t0 = Instant::now();
        assert!(rl.allow(ip, t0));
        assert!(rl.allow(ip, t0));
        assert!(rl.allow(ip, t0));
        assert!(!rl.allow(ip, t0));
        assert!(rl.allow(ip, t0 + Duration::from_millis(500)));
        assert!(!rl.allow(ip, t0 + Duration::from_millis(500)));
        // Another address has its own budget.
        assert!(rl.allow(IpAddr::from([192, 0, 2, 2]), t0));
    }

    #[test]
    fn ipv6_shares_a_slash_64() {
        let a: IpAddr = IpAddr::from([0x2001, 0xdb8, 1, 2, 3, 4, 5, 6]);
        let b: IpAddr = IpAddr::from([0x2001, 0xdb8, 1, 2, 9, 9, 9, 9]);
        assert_eq!(bucket_key(a), bucket_key(b));
        let mapped: IpAddr = IpAddr::from([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201]);
        assert_eq!(bucket_key(mapped), IpAddr::from([192, 0, 2, 1]));
    }
}
