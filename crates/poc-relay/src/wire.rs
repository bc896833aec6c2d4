//! The relay protocol's frames: one request frame and one response frame per
//! QUIC bidirectional stream (the framing itself is poc-transport's).
//!
//! # Layout (normative; integers big-endian)
//!
//! | request | bytes |
//! |---|---|
//! | Deposit | `0x01 \|\| envelope` |
//! | Fetch | `0x02 \|\| u16 max_items \|\| u32 wait_ms` |
//! | Ack | `0x03 \|\| u16 count \|\| count × u64 id` |
//!
//! | response | bytes |
//! |---|---|
//! | Stored (to Deposit) | `0x00` |
//! | Page (to Fetch) | `0x00 \|\| u16 count \|\| count × (u64 id \|\| u32 len \|\| len bytes) \|\| u8 more` |
//! | Acked (to Ack) | `0x00 \|\| u64 deleted` |
//! | Refused (to any) | `0x01 \|\| u16 code` (see [`Refusal`]) |
//!
//! A Fetch with an empty mailbox is held by the relay for up to `wait_ms`
//! (capped by the relay) and answered as soon as an envelope arrives: this
//! long poll is how a connected node gets its mail without delay.
//! Fetch and Ack always act on the mailbox of the authenticated client's
//! identity key; no request names a mailbox, so none can reach another's.

use std::time::Duration;

/// Request opcode: deposit an envelope.
const OP_DEPOSIT: u8 = 0x01;
/// Request opcode: fetch a page of the own mailbox.
const OP_FETCH: u8 = 0x02;
/// Request opcode: acknowledge (delete) fetched envelopes.
const OP_ACK: u8 = 0x03;
/// Response status: success.
const STATUS_OK: u8 = 0x00;
/// Response status: refused, a [`Refusal`] code follows.
const STATUS_REFUSED: u8 = 0x01;

/// Most envelope ids one Ack may carry.
pub const MAX_ACK_IDS: usize = 1024;

/// The largest Fetch answer a node reads. A relay's limits must keep its
/// pages within it ([`crate::core::RelayLimits::max_page_response_bytes`]),
/// or its clients could never take a page and their mailboxes would jam.
pub const MAX_PAGE_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Why the relay refused a request. The codes are stable wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The request or the envelope's outer header does not parse.
    #[error("malformed request or envelope header")]
    Malformed,
    /// The envelope is larger than the relay accepts.
    #[error("envelope larger than the relay accepts")]
    TooLarge,
    /// The recipient mailbox belongs to no PoC in the relay's directory.
    #[error("no PoC in the relay's directory has this mailbox")]
    UnknownMailbox,
    /// The envelope's expiry time has already passed.
    #[error("envelope already expired")]
    Expired,
    /// The recipient's mailbox holds as many envelopes as its quota allows.
    #[error("recipient mailbox full (envelope count quota)")]
    MailboxFull,
    /// The recipient's mailbox holds as many bytes as its quota allows.
    #[error("recipient mailbox full (byte quota)")]
    MailboxBytesFull,
    /// This client deposits faster than the relay's per-sender rate, or
    /// has more fetches and acknowledgements waiting than its burst.
    #[error("rate limit exceeded; retry later")]
    RateLimited,
    /// The relay is overloaded right now; retry later.
    #[error("relay busy; retry later")]
    Busy,
    /// The relay failed internally (storage); retry later.
    #[error("relay internal error; retry later")]
    Internal,
}

impl Refusal {
    /// The wire code.
    pub fn code(self) -> u16 {
        match self {
            Refusal::Malformed => 1,
            Refusal::TooLarge => 2,
            Refusal::UnknownMailbox => 3,
            Refusal::Expired => 4,
            Refusal::MailboxFull => 5,
            Refusal::MailboxBytesFull => 6,
            Refusal::RateLimited => 7,
            Refusal::Busy => 8,
            Refusal::Internal => 9,
        }
    }

    /// The refusal with wire code `code`, if known.
    pub fn from_code(code: u16) -> Option<Refusal> {
        Some(match code {
            1 => Refusal::Malformed,
            2 => Refusal::TooLarge,
            3 => Refusal::UnknownMailbox,
            4 => Refusal::Expired,
            5 => Refusal::MailboxFull,
            6 => Refusal::MailboxBytesFull,
            7 => Refusal::RateLimited,
            8 => Refusal::Busy,
            9 => Refusal::Internal,
            _ => return None,
        })
    }

    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::UnknownMailbox => "unknown_mailbox",
            Refusal::Expired => "expired",
            Refusal::MailboxFull => "mailbox_full",
            Refusal::MailboxBytesFull => "mailbox_bytes_full",
            Refusal::RateLimited => "rate_limited",
            Refusal::Busy => "busy",
            Refusal::Internal => "internal",
        }
    }

    /// Every refusal, for metrics.
    pub const ALL: [Refusal; 9] = [
        Refusal::Malformed,
        Refusal::TooLarge,
        Refusal::UnknownMailbox,
        Refusal::Expired,
        Refusal::MailboxFull,
        Refusal::MailboxBytesFull,
        Refusal::RateLimited,
        Refusal::Busy,
        Refusal::Internal,
    ];

    /// Whether the same request may succeed later at this relay.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Refusal::MailboxFull
                | Refusal::MailboxBytesFull
                | Refusal::RateLimited
                | Refusal::Busy
                | Refusal::Internal
        )
    }
}

/// A decoded request.
#[derive(PartialEq, Eq)]
pub enum Request<'a> {
    /// Store this envelope for its recipient.
    Deposit(&'a [u8]),
    /// Hand out up to `max_items` envelopes of the own mailbox, waiting up
    /// to `wait` for one if it is empty.
    Fetch {
        /// Most envelopes in the page.
        max_items: u16,
        /// Longest wait for an envelope when the mailbox is empty.
        wait: Duration,
    },
    /// Delete these envelopes of the own mailbox: the client has them.
    Ack(Vec<u64>),
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the envelope bytes.
        match self {
            Request::Deposit(envelope) => write!(f, "Deposit({} bytes)", envelope.len()),
            Request::Fetch { max_items, wait } => write!(f, "Fetch({max_items}, {wait:?})"),
            Request::Ack(ids) => write!(f, "Ack({} ids)", ids.len()),
        }
    }
}

impl<'a> Request<'a> {
    /// Decodes a request frame.
    pub fn decode(frame: &'a [u8]) -> Result<Request<'a>, Refusal> {
        let (&op, rest) = frame.split_first().ok_or(Refusal::Malformed)?;
        match op {
            OP_DEPOSIT => Ok(Request::Deposit(rest)),
            OP_FETCH => {
                let mut r = Reader(rest);
                let max_items = r.u16()?;
                let wait = Duration::from_millis(u64::from(r.u32()?));
                r.end()?;
                Ok(Request::Fetch { max_items, wait })
            }
            OP_ACK => {
                let mut r = Reader(rest);
                let count = usize::from(r.u16()?);
                if count > MAX_ACK_IDS {
                    return Err(Refusal::Malformed);
                }
                let ids = (0..count).map(|_| r.u64()).collect::<Result<_, _>>()?;
                r.end()?;
                Ok(Request::Ack(ids))
            }
            _ => Err(Refusal::Malformed),
        }
    }

    /// Encodes the request frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Deposit(envelope) => {
                let mut out = Vec::with_capacity(1 + envelope.len());
                out.push(OP_DEPOSIT);
                out.extend_from_slice(envelope);
                out
            }
            Request::Fetch { max_items, wait } => {
                let mut out = vec![OP_FETCH];
                out.extend_from_slice(&max_items.to_be_bytes());
                let ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
                out.extend_from_slice(&ms.to_be_bytes());
                out
            }
            Request::Ack(ids) => {
                let count = ids.len().min(MAX_ACK_IDS);
                let mut out = Vec::with_capacity(3 + 8 * count);
                out.push(OP_ACK);
                out.extend_from_slice(&u16::try_from(count).unwrap_or(0).to_be_bytes());
                for id in ids.iter().take(count) {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                out
            }
        }
    }
}

/// One envelope of a fetched page.
#[derive(Clone, PartialEq, Eq)]
pub struct PageItem {
    /// The relay's id for it, to acknowledge.
    pub id: u64,
    /// The sealed envelope, as deposited.
    pub envelope: Vec<u8>,
}

impl std::fmt::Debug for PageItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageItem({}, {} bytes)", self.id, self.envelope.len())
    }
}

/// A page of the own mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Oldest first.
    pub items: Vec<PageItem>,
    /// Whether more envelopes were waiting beyond this page.
    pub more: bool,
}

/// Encodes a refusal response.
pub fn encode_refusal(refusal: Refusal) -> Vec<u8> {
    let mut out = vec![STATUS_REFUSED];
    out.extend_from_slice(&refusal.code().to_be_bytes());
    out
}

/// Encodes the response to a successful Deposit.
pub fn encode_stored() -> Vec<u8> {
    vec![STATUS_OK]
}

/// Encodes the response to a successful Ack.
pub fn encode_acked(deleted: u64) -> Vec<u8> {
    let mut out = vec![STATUS_OK];
    out.extend_from_slice(&deleted.to_be_bytes());
    out
}

/// Encodes a page; `items` are `(id, envelope)`.
pub fn encode_page<'a>(
    items: impl ExactSizeIterator<Item = (u64, &'a [u8])>,
    more: bool,
) -> Vec<u8> {
    let mut out = vec![STATUS_OK];
    let count = u16::try_from(items.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for (id, bytes) in items.take(usize::from(count)) {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out.push(u8::from(more));
    out
}

/// A response that did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unintelligible relay response")]
pub struct BadResponse;

/// What a response said: the success payload, or the refusal.
fn status(frame: &[u8]) -> Result<Result<Reader<'_>, Refusal>, BadResponse> {
    let (&status, rest) = frame.split_first().ok_or(BadResponse)?;
    match status {
        STATUS_OK => Ok(Ok(Reader(rest))),
        STATUS_REFUSED => {
            let mut r = Reader(rest);
            let code = r.u16().map_err(|_| BadResponse)?;
            r.end().map_err(|_| BadResponse)?;
            Ok(Err(Refusal::from_code(code).ok_or(BadResponse)?))
        }
        _ => Err(BadResponse),
    }
}

/// Decodes the response to a Deposit.
pub fn decode_stored(frame: &[u8]) -> Result<Result<(), Refusal>, BadResponse> {
    Ok(match status(frame)? {
        Ok(r) => {
            r.end().map_err(|_| BadResponse)?;
            Ok(())
        }
        Err(refusal) => Err(refusal),
    })
}

/// Decodes the response to an Ack: how many envelopes were deleted.
pub fn decode_acked(frame: &[u8]) -> Result<Result<u64, Refusal>, BadResponse> {
    Ok(match status(frame)? {
        Ok(mut r) => {
            let deleted = r.u64().map_err(|_| BadResponse)?;
            r.end().map_err(|_| BadResponse)?;
            Ok(deleted)
        }
        Err(refusal) => Err(refusal),
    })
}

/// Decodes the response to a Fetch.
pub fn decode_page(frame: &[u8]) -> Result<Result<Page, Refusal>, BadResponse> {
    Ok(match status(frame)? {
        Ok(mut r) => {
            let count = r.u16().map_err(|_| BadResponse)?;
            let mut items = Vec::with_capacity(usize::from(count).min(64));
            for _ in 0..count {
                let id = r.u64().map_err(|_| BadResponse)?;
                let len =
                    usize::try_from(r.u32().map_err(|_| BadResponse)?).map_err(|_| BadResponse)?;
                let envelope = r.take(len).map_err(|_| BadResponse)?.to_vec();
                items.push(PageItem { id, envelope });
            }
            let more = match r.take(1).map_err(|_| BadResponse)? {
                [0] => false,
                [1] => true,
                _ => return Err(BadResponse),
            };
            r.end().map_err(|_| BadResponse)?;
            Ok(Page { items, more })
        }
        Err(refusal) => Err(refusal),
    })
}

/// A strict cursor over a frame.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        if self.0.len() < n {
            return Err(Refusal::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Refusal> {
        self.take(N)?.try_into().map_err(|_| Refusal::Malformed)
    }
    fn u16(&mut self) -> Result<u16, Refusal> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Refusal> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Refusal> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn end(&self) -> Result<(), Refusal> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_trailing_bytes_are_refused() {
        let envelope = [7u8; 40];
        for request in [
            Request::Deposit(&envelope),
            Request::Fetch {
                max_items: 9,
                wait: Duration::from_millis(1500),
            },
            Request::Ack(vec![1, 2, u64::MAX]),
        ] {
            let frame = request.encode();
            assert_eq!(Request::decode(&frame).unwrap(), request);
            if !matches!(request, Request::Deposit(_)) {
                let mut longer = frame.clone();
                longer.push(0);
                assert_eq!(Request::decode(&longer), Err(Refusal::Malformed));
                assert_eq!(
                    Request::decode(&frame[..frame.len() - 1]),
                    Err(Refusal::Malformed)
                );
            }
        }
        assert_eq!(Request::decode(&[]), Err(Refusal::Malformed));
        assert_eq!(Request::decode(&[0x7f]), Err(Refusal::Malformed));
    }

    #[test]
    fn responses_round_trip() {
        let a = [1u8, 2, 3];
        let b = [9u8; 70];
        let page = encode_page([(5u64, &a[..]), (6, &b[..])].into_iter(), true);
        let decoded = decode_page(&page).unwrap().unwrap();
        assert_eq!(decoded.items.len(), 2);
        assert_eq!(decoded.items[1].envelope, b);
        assert!(decoded.more);
        assert_eq!(decode_acked(&encode_acked(3)).unwrap(), Ok(3));
        assert_eq!(decode_stored(&encode_stored()).unwrap(), Ok(()));
        for refusal in Refusal::ALL {
            assert_eq!(Refusal::from_code(refusal.code()), Some(refusal));
            assert_eq!(
                decode_stored(&encode_refusal(refusal)).unwrap(),
                Err(refusal)
            );
        }
        assert_eq!(decode_page(&page[..page.len() - 1]), Err(BadResponse));
        assert_eq!(decode_stored(&[2]), Err(BadResponse));
    }
}
