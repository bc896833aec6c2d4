//! The relay's decisions, without I/O: who may connect, which deposits to
//! take, how fast one sender may deposit. Time is an argument.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use poc_proto::certificate::MailboxId;
use poc_proto::directory::VerifiedDirectory;
use poc_proto::envelope::OuterHeader;
use poc_proto::keys::IdentityPublicKey;
use poc_proto::{PocId, Seconds, Timestamp};

use crate::store::NewEnvelope;
use crate::wire::Refusal;

/// What the relay knows of the directory: the identity keys allowed to
/// connect and the mailboxes it holds mail for.
#[derive(Debug, Clone, Default)]
pub struct RelayDirectory {
    sequence: u64,
    keys: HashMap<[u8; 32], PocId>,
    mailboxes: HashSet<MailboxId>,
}

impl RelayDirectory {
    /// The active (not revoked, currently valid) PoCs of a verified
    /// directory.
    pub fn from_verified(directory: &VerifiedDirectory, now: Timestamp) -> RelayDirectory {
        let mut view = RelayDirectory {
            sequence: directory.sequence(),
            ..RelayDirectory::default()
        };
        for entry in directory.entries().values() {
            if entry.revoked || entry.certificate.check_valid_at(now).is_err() {
                continue;
            }
            let key = entry.certificate.body().identity_key;
            view.keys
                .insert(key.to_bytes(), entry.certificate.poc_id().clone());
            view.mailboxes.insert(MailboxId::for_identity(&key));
        }
        view
    }

    /// A view listing exactly these PoCs (tests and tools).
    pub fn from_keys(
        sequence: u64,
        pocs: impl IntoIterator<Item = (PocId, IdentityPublicKey)>,
    ) -> Self {
        let mut view = RelayDirectory {
            sequence,
            ..RelayDirectory::default()
        };
        for (poc, key) in pocs {
            view.keys.insert(key.to_bytes(), poc);
            view.mailboxes.insert(MailboxId::for_identity(&key));
        }
        view
    }

    /// The directory's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The PoC holding `key`, if it may connect.
    pub fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<&PocId> {
        self.keys.get(&key.to_bytes())
    }

    /// Whether the relay takes mail for `mailbox`.
    pub fn knows_mailbox(&self, mailbox: &MailboxId) -> bool {
        self.mailboxes.contains(mailbox)
    }

    /// Number of PoCs listed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no PoC is listed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The relay's limits on deposits and fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// Largest envelope accepted, bytes (at most the protocol's own maximum).
    pub max_envelope_bytes: usize,
    /// Per-mailbox envelope count quota.
    pub mailbox_max_envelopes: u64,
    /// Per-mailbox byte quota.
    pub mailbox_max_bytes: u64,
    /// Sustained deposits per second from one sender.
    pub deposits_per_second: u32,
    /// Deposits one sender may make in a burst.
    pub deposit_burst: u32,
    /// Sustained fetches and acknowledgements per second from one client.
    /// Past it they are paced, not refused (a client may run up to
    /// `read_burst` of them ahead), so a node draining its mailbox only
    /// gets larger pages, while a client fetching in a loop cannot keep
    /// the store, which every deposit waits for, busy reading for it.
    pub reads_per_second: u32,
    /// Fetches and acknowledgements one client may make in a burst, and
    /// how many more it may have waiting for their turn before the next
    /// is refused.
    pub read_burst: u32,
    /// Most envelopes in one fetched page.
    pub max_page_items: u16,
    /// Bytes of one page (the first envelope is always included).
    pub max_page_bytes: usize,
    /// Longest a Fetch on an empty mailbox is held open.
    pub max_wait: Duration,
    /// Longest the relay keeps an envelope, whatever its own expiry says.
    pub max_retention: Seconds,
    /// Requests one connection may have in flight (QUIC streams): bounds
    /// what one client can make the relay buffer and queue at once.
    pub max_streams_per_connection: u32,
    /// Connections one client (one PoC identity key) may hold open at once:
    /// a directory member cannot take the relay's memory or its connection
    /// slots from the others. A node needs one per relay.
    pub max_connections_per_client: usize,
}

impl RelayLimits {
    /// The largest Fetch answer these limits allow: a page's bytes, plus
    /// the first envelope (always included, whatever its size), plus each
    /// item's framing.
    pub fn max_page_response_bytes(&self) -> usize {
        self.max_page_bytes
            .saturating_add(self.max_envelope_bytes)
            .saturating_add(usize::from(self.max_page_items) * 12 + 64)
    }
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_envelope_bytes: poc_proto::limits::MAX_ENVELOPE_BYTES,
            mailbox_max_envelopes: 10_000,
            mailbox_max_bytes: 256 * 1024 * 1024,
            deposits_per_second: 100,
            deposit_burst: 200,
            reads_per_second: 50,
            read_burst: 200,
            max_page_items: 256,
            max_page_bytes: 1024 * 1024,
            max_wait: Duration::from_secs(20),
            max_retention: Seconds::days(14),
            max_streams_per_connection: 16,
            max_connections_per_client: 8,
        }
    }
}

/// Checks a deposit against the directory and limits and returns what to
/// store. Reads only the outer header: version, mailbox, expiry, length.
pub fn check_deposit(
    envelope: &[u8],
    now: Timestamp,
    directory: &RelayDirectory,
    limits: &RelayLimits,
) -> Result<NewEnvelope, Refusal> {
    if envelope.len() > limits.max_envelope_bytes {
        return Err(Refusal::TooLarge);
    }
    let header = OuterHeader::parse(envelope).map_err(|e| match e {
        poc_proto::DecodeError::TooLarge { .. } => Refusal::TooLarge,
        _ => Refusal::Malformed,
    })?;
    if !directory.knows_mailbox(&header.mailbox) {
        return Err(Refusal::UnknownMailbox);
    }
    if header.expires_at < now {
        return Err(Refusal::Expired);
    }
    Ok(NewEnvelope {
        mailbox: header.mailbox,
        expires_at: header.expires_at.min(now.plus(limits.max_retention)),
        bytes: envelope.to_vec(),
    })
}

/// Token buckets, one per sender key: `rate` tokens a second up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<[u8; 32], (f64, Instant)>,
}

impl RateLimiter {
    /// A limiter allowing `rate` per second with bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `sender` at `now`; false if none is left.
    pub fn allow(&mut self, sender: &IdentityPublicKey, now: Instant) -> bool {
        let tokens = self.refilled(sender, now);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes one token for `sender` at `now`, borrowing against the refill
    /// when none is left: returns how long the caller must wait for it
    /// (zero when there was one), or `None` when `sender` already owes a
    /// whole `burst`.
    pub fn reserve(&mut self, sender: &IdentityPublicKey, now: Instant) -> Option<Duration> {
        let (rate, burst) = (self.rate, self.burst);
        let tokens = self.refilled(sender, now);
        if *tokens - 1.0 < -burst {
            return None;
        }
        *tokens -= 1.0;
        Some(Duration::from_secs_f64((-*tokens).max(0.0) / rate))
    }

    /// `sender`'s bucket, refilled up to `now`.
    fn refilled(&mut self, sender: &IdentityPublicKey, now: Instant) -> &mut f64 {
        // Only authenticated directory members reach here, so the map is
        // bounded by the directory's size; still, drop full buckets once it
        // grows large.
        if self.buckets.len() > 100_000 {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = self
            .buckets
            .entry(sender.to_bytes())
            .or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *at = now;
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poc_proto::testkit::World;

    fn world_view(world: &World) -> RelayDirectory {
        RelayDirectory::from_keys(
            1,
            world
                .pocs
                .iter()
                .filter(|(id, _)| id.as_str() != "KEN.cert")
                .map(|(id, p)| (id.clone(), p.identity.public())),
        )
    }

    #[test]
    fn reads_past_the_rate_wait_their_turn_and_past_the_burst_are_refused() {
        use poc_proto::keys::IdentityKeyPair;
        let key = IdentityKeyPair::from_secret_bytes(&[3; 32]).public();
        let other = IdentityKeyPair::from_secret_bytes(&[4; 32]).public();
        let mut limiter = RateLimiter::new(2, 2);
        let t0 = Instant::now();
        // The burst at once, then each a further half second out...
        assert_eq!(limiter.reserve(&key, t0), Some(Duration::ZERO));
        assert_eq!(limiter.reserve(&key, t0), Some(Duration::ZERO));
        assert_eq!(limiter.reserve(&key, t0), Some(Duration::from_millis(500)));
        assert_eq!(limiter.reserve(&key, t0), Some(Duration::from_secs(1)));
        // ...until a whole burst is owed.
        assert_eq!(limiter.reserve(&key, t0), None);
        // Others are not held up by it.
        assert_eq!(limiter.reserve(&other, t0), Some(Duration::ZERO));
        // The debt is paid off at the rate.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(limiter.reserve(&key, later), Some(Duration::ZERO));
    }

    #[test]
    fn deposits_are_checked_on_the_outer_header_only() {
        let world = World::new();
        let view = world_view(&world);
        let limits = RelayLimits::default();
        let message = poc_proto::testkit::inquiry_message(&world, "EST.cert", "FRA.cert", 500);
        let sealed = world.seal(&message, "relay core").unwrap();
        let bytes = sealed.as_bytes();
        let header = OuterHeader::parse(bytes).unwrap();
        let now = header.expires_at.minus(Seconds::DAY);
        let stored = check_deposit(bytes, now, &view, &limits).unwrap();
        assert_eq!(stored.mailbox, header.mailbox);
        assert_eq!(stored.bytes, bytes);

        // A tampered body is not the relay's business: still accepted.
        let mut tampered = bytes.to_vec();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(check_deposit(&tampered, now, &view, &limits).is_ok());

        assert_eq!(
            check_deposit(&bytes[..bytes.len() - 1], now, &view, &limits),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            check_deposit(bytes, header.expires_at.plus(Seconds(1)), &view, &limits),
            Err(Refusal::Expired)
        );
        let small = RelayLimits {
            max_envelope_bytes: 100,
            ..RelayLimits::default()
        };
        assert_eq!(
            check_deposit(bytes, now, &view, &small),
            Err(Refusal::TooLarge)
        );
        let to_ken = poc_proto::testkit::inquiry_message(&world, "EST.cert", "KEN.cert", 10);
        let sealed = world.seal(&to_ken, "relay core ken").unwrap();
        assert_eq!(
            check_deposit(sealed.as_bytes(), now, &view, &limits),
            Err(Refusal::UnknownMailbox)
        );
        // Retention is capped whatever the envelope claims.
        let short = RelayLimits {
            max_retention: Seconds(60),
            ..RelayLimits::default()
        };
        let stored = check_deposit(bytes, now, &view, &short).unwrap();
        assert_eq!(stored.expires_at, now.plus(Seconds(60)));
    }

    #[test]
    fn the_rate_limiter_allows_bursts_then_the_rate_per_sender() {
        let world = World::new();
        let a = world.poc("EST.cert").identity.public();
        let b = world.poc("FRA.cert").identity.public();
        let mut limiter = RateLimiter::new(10, 5);
        let t0 = Instant::now();
        assert_eq!((0..8).filter(|_| limiter.allow(&a, t0)).count(), 5);
        assert!(limiter.allow(&b, t0), "another sender is unaffected");
        assert!(!limiter.allow(&a, t0 + Duration::from_millis(50)));
        assert!(limiter.allow(&a, t0 + Duration::from_millis(160)));
    }
}
