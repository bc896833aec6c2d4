//! The one place that turns protocol values into bytes and back.
//!
//! Every encoding in pocnet goes through [`encode`] and [`decode`], so the
//! underlying serializer (bincode 2, fixed-width little-endian integers) can be
//! swapped for a hand-written one without changing a byte on the wire; the
//! golden vectors under `proto/vectors/` pin the format.
//!
//! Decoding is strict: the input size is checked before parsing, lengths are
//! bounded by the input, trailing bytes are rejected, and every decoded value is
//! validated against the per-field and per-collection limits of [`limits`].

use serde::{Serialize, de::DeserializeOwned};

use crate::error::DecodeError;
use crate::validate::{Validate, Validator};

/// Size limits of the wire format (SPEC.md section "Limits").
pub mod limits {
    /// Largest envelope accepted, outer header included (4 MiB).
    pub const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;
    /// Largest short string: names, identifiers, addresses, media types.
    pub const MAX_SHORT_TEXT_BYTES: usize = 256;
    /// Largest free-text field (each of original and English translation).
    pub const MAX_FREE_TEXT_BYTES: usize = 64 * 1024;
    /// Largest single attachment.
    pub const MAX_ATTACHMENT_BYTES: usize = 3 * 1024 * 1024;
    /// Most attachments on one message.
    pub const MAX_ATTACHMENTS: usize = 16;
    /// Most indicators on one inquiry or follow-up.
    pub const MAX_INDICATORS: usize = 4096;
    /// Most affected sectors on one inquiry.
    pub const MAX_SECTORS: usize = 32;
    /// Most endpoints in one certificate.
    pub const MAX_ENDPOINTS: usize = 8;
    /// Largest encoded certificate.
    pub const MAX_CERTIFICATE_BYTES: usize = 8 * 1024;
    /// Largest hash digest carried as an indicator (SHA-512).
    pub const MAX_DIGEST_BYTES: usize = 64;
    /// Largest signed directory snapshot (room for ~100,000 PoCs).
    pub const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;
    /// Most PoC entries in one directory snapshot.
    pub const MAX_DIRECTORY_ENTRIES: usize = 100_000;
    /// Most enrolled States in one directory snapshot.
    pub const MAX_DIRECTORY_STATES: usize = 1_000;
    /// Most signed prekeys published per PoC.
    pub const MAX_PUBLISHED_PREKEYS: usize = 8;
}

// bincode's own limit bounds what a length prefix may make it allocate
// before the bytes are read (at most the limit per decode, in lazily zeroed
// pages); the explicit size check in `decode` bounds the input itself.
type Config<const LIMIT: usize> = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<LIMIT>,
>;

const fn config<const LIMIT: usize>() -> Config<LIMIT> {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<LIMIT>()
}

const CONFIG: Config<{ limits::MAX_ENVELOPE_BYTES }> = config();

/// Encodes `value` after checking it against the limits a receiver enforces,
/// so we never emit bytes a conforming peer would refuse.
pub(crate) fn encode<T: Serialize + Validate>(value: &T) -> Result<Vec<u8>, DecodeError> {
    let mut validator = Validator::new();
    value.validate(&mut validator);
    validator.finish()?;
    bincode::serde::encode_to_vec(value, CONFIG).map_err(|e| DecodeError::Malformed {
        what: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}

/// Decodes exactly one `T` from `bytes`, which must not exceed `max_len`
/// (itself at most [`limits::MAX_ENVELOPE_BYTES`]).
pub(crate) fn decode<T: DeserializeOwned + Validate>(
    bytes: &[u8],
    max_len: usize,
) -> Result<T, DecodeError> {
    decode_with::<T, { limits::MAX_ENVELOPE_BYTES }>(bytes, max_len.min(limits::MAX_ENVELOPE_BYTES))
}

/// Encodes a directory snapshot body, which may exceed the envelope limit.
pub(crate) fn encode_large<T: Serialize + Validate>(value: &T) -> Result<Vec<u8>, DecodeError> {
    let mut validator = Validator::new();
    value.validate(&mut validator);
    validator.finish()?;
    bincode::serde::encode_to_vec(value, config::<{ limits::MAX_SNAPSHOT_BYTES }>()).map_err(|e| {
        DecodeError::Malformed {
            what: std::any::type_name::<T>(),
            reason: e.to_string(),
        }
    })
}

/// Decodes a directory snapshot, bounded by [`limits::MAX_SNAPSHOT_BYTES`].
pub(crate) fn decode_large<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with::<T, { limits::MAX_SNAPSHOT_BYTES }>(bytes, limits::MAX_SNAPSHOT_BYTES)
}

fn decode_with<T: DeserializeOwned + Validate, const LIMIT: usize>(
    bytes: &[u8],
    max_len: usize,
) -> Result<T, DecodeError> {
    let what = short_type_name::<T>();
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            max: max_len,
        });
    }
    let (value, read): (T, usize) = bincode::serde::decode_from_slice(bytes, config::<LIMIT>())
        .map_err(|e| match e {
            bincode::error::DecodeError::UnexpectedEnd { .. } => DecodeError::Truncated { what },
            bincode::error::DecodeError::LimitExceeded => DecodeError::TooLarge {
                what,
                len: bytes.len(),
                max: max_len,
            },
            other => DecodeError::Malformed {
                what,
                reason: other.to_string(),
            },
        })?;
    if read != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            what,
            extra: bytes.len() - read,
        });
    }
    let mut validator = Validator::new();
    value.validate(&mut validator);
    validator.finish()?;
    Ok(value)
}

/// Encodes a `(bytes, signature)` pair exactly as bincode encodes a struct of
/// a byte string and a 64-byte array: `u64 LE length || bytes || signature`.
///
/// Written out by hand because it cannot fail, which lets the signed wrapper
/// types offer an infallible `to_bytes`; a test pins it to the serde encoding.
pub(crate) fn encode_signed(bytes: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + bytes.len() + 64);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(signature);
    out
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Hex text for human-readable formats (the JSON of the local control API),
/// raw bytes for binary ones (the wire): one value, two faces, and the wire
/// bytes are exactly those `serde_bytes` and a plain array would give.
pub(crate) mod hex_text {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn encode(bytes: &[u8]) -> String {
        // A digit at a time into one allocation: attachments of the control
        // API pass through here, kilobytes per message.
        fn digit(nibble: u8) -> char {
            char::from(if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            })
        }
        let mut text = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            text.push(digit(byte >> 4));
            text.push(digit(byte & 0x0f));
        }
        text
    }

    /// Each byte's value as a hex digit, or `NOT_HEX`.
    const NOT_HEX: u8 = 0xff;
    // Built at compile time, where an index out of bounds fails the build.
    #[allow(clippy::indexing_slicing)]
    const DIGITS: [u8; 256] = {
        let mut table = [NOT_HEX; 256];
        let mut c = 0;
        while c < 256 {
            table[c] = match c as u8 {
                b'0'..=b'9' => c as u8 - b'0',
                b'a'..=b'f' => c as u8 - b'a' + 10,
                b'A'..=b'F' => c as u8 - b'A' + 10,
                _ => NOT_HEX,
            };
            c += 1;
        }
        table
    };

    /// Lower- or upper-case digits, a table look-up a digit into one buffer:
    /// a profile of the daemon's control API found decoders that go through
    /// iterators (`Option`/`Result` collected a byte at a time) or check a
    /// digit at a time at 2-3 % of its CPU, for 4 KiB attachments.
    pub(crate) fn decode<E: Error>(text: &str) -> Result<Vec<u8>, E> {
        if !text.len().is_multiple_of(2) {
            return Err(E::custom("hex text has an odd number of digits"));
        }
        let digit = |c: u8| DIGITS.get(usize::from(c)).copied().unwrap_or(NOT_HEX);
        let mut bytes = Vec::with_capacity(text.len() / 2);
        let mut seen = 0u8;
        for pair in text.as_bytes().chunks_exact(2) {
            if let [high, low] = pair {
                let (high, low) = (digit(*high), digit(*low));
                seen |= high | low;
                bytes.push((high << 4) | (low & 0x0f));
            }
        }
        // One check at the end: any non-digit set the high bits.
        if seen & 0xf0 != 0 {
            return Err(E::custom("not hex text"));
        }
        Ok(bytes)
    }

    /// Decodes a string as it comes, borrowed or not, with no copy of the
    /// text first.
    struct HexVisitor;

    impl serde::de::Visitor<'_> for HexVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("hex text")
        }

        fn visit_str<E: Error>(self, text: &str) -> Result<Vec<u8>, E> {
            decode(text)
        }
    }

    fn deserialize_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_str(HexVisitor)
    }

    /// A byte string: `serde_bytes` on the wire, hex in JSON.
    pub(crate) mod bytes {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                s.serialize_str(&encode(bytes))
            } else {
                serde_bytes::serialize(bytes, s)
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            if d.is_human_readable() {
                deserialize_hex(d)
            } else {
                serde_bytes::deserialize(d)
            }
        }
    }

    /// A fixed array of up to 32 bytes: N raw bytes on the wire, hex in JSON.
    pub(crate) mod array {
        use super::*;
        use serde::Serialize;

        pub(crate) fn serialize<S: Serializer, const N: usize>(
            bytes: &[u8; N],
            s: S,
        ) -> Result<S::Ok, S::Error>
        where
            [u8; N]: Serialize,
        {
            if s.is_human_readable() {
                s.serialize_str(&encode(bytes))
            } else {
                bytes.serialize(s)
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
            d: D,
        ) -> Result<[u8; N], D::Error>
        where
            [u8; N]: Deserialize<'de>,
        {
            if d.is_human_readable() {
                deserialize_hex(d)?
                    .try_into()
                    .map_err(|_| D::Error::custom(format!("expected {N} bytes of hex")))
            } else {
                <[u8; N]>::deserialize(d)
            }
        }
    }
}

/// Fixed-size byte arrays encoded as raw bytes with no length prefix.
///
/// serde only implements arrays up to 32 elements; signatures are 64 bytes.
pub(crate) mod fixed_bytes {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(N)?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        struct ArrayVisitor<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
            type Value = [u8; N];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_tuple(N, ArrayVisitor::<N>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize)]
    struct Pair {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        #[serde(with = "fixed_bytes")]
        signature: [u8; 64],
    }

    impl Validate for Pair {
        fn validate(&self, _: &mut Validator) {}
    }

    #[test]
    fn hex_text_round_trips_and_names_bad_input() {
        let all: Vec<u8> = (0..=255).collect();
        let text = hex_text::encode(&all);
        assert_eq!(text.len(), 512);
        assert!(text.starts_with("000102") && text.ends_with("fdfeff"));
        let back: Result<Vec<u8>, serde_json::Error> = hex_text::decode(&text);
        assert_eq!(back.unwrap(), all);
        let upper: Result<Vec<u8>, serde_json::Error> = hex_text::decode("AbFF");
        assert_eq!(upper.unwrap(), vec![0xab, 0xff]);
        let odd: Result<Vec<u8>, serde_json::Error> = hex_text::decode("abc");
        assert!(odd.unwrap_err().to_string().contains("odd number"));
        let bad: Result<Vec<u8>, serde_json::Error> = hex_text::decode("zz");
        assert!(bad.unwrap_err().to_string().contains("not hex"));
        // Every other character is refused, in either place of a pair.
        for c in (0..=127u8).filter(|c| !c.is_ascii_hexdigit()) {
            for text in [[c, b'0'], [b'0', c]] {
                let text = String::from_utf8(text.to_vec()).unwrap();
                let decoded: Result<Vec<u8>, serde_json::Error> = hex_text::decode(&text);
                assert!(decoded.is_err(), "{text:?} decoded");
            }
        }
        // Two bytes of UTF-8, an even length of non-digits.
        let multibyte: Result<Vec<u8>, serde_json::Error> = hex_text::decode("é");
        assert!(multibyte.is_err());
    }

    #[test]
    fn hex_fields_read_borrowed_escaped_and_owned_json_strings() {
        #[derive(Debug, Clone, Deserialize, PartialEq)]
        struct Field {
            #[serde(with = "hex_text::bytes")]
            bytes: Vec<u8>,
            #[serde(with = "hex_text::array")]
            id: [u8; 2],
        }
        let want = Field {
            bytes: vec![0xab, 0x01],
            id: [0xff, 0x00],
        };
        // Borrowed from the input, and unescaped into a transient buffer.
        let plain: Field = serde_json::from_str(r#"{"bytes":"ab01","id":"ff00"}"#).unwrap();
        let escaped: Field = serde_json::from_str(r#"{"bytes":"\u0061b01","id":"FF00"}"#).unwrap();
        // Owned strings, as an internally tagged enum's buffering hands them on.
        let owned: Field =
            serde_json::from_value(serde_json::json!({"bytes": "ab01", "id": "ff00"})).unwrap();
        assert_eq!([plain, escaped, owned], [want.clone(), want.clone(), want]);
        let short = serde_json::from_str::<Field>(r#"{"bytes":"ab","id":"ff"}"#);
        assert!(short.unwrap_err().to_string().contains("expected 2 bytes"));
    }

    #[test]
    fn hand_written_signed_encoding_matches_serde() {
        let pair = Pair {
            bytes: b"abc".to_vec(),
            signature: [7; 64],
        };
        assert_eq!(encode(&pair).unwrap(), encode_signed(b"abc", &[7; 64]));
    }

    #[test]
    fn strictness() {
        let good = encode_signed(b"abc", &[7; 64]);
        let decoded: Pair = decode(&good, 1000).unwrap();
        assert_eq!(decoded.bytes, b"abc");
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<Pair>(&trailing, 1000),
            Err(DecodeError::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            decode::<Pair>(&good[..good.len() - 1], 1000),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode::<Pair>(&good, 10),
            Err(DecodeError::TooLarge { .. })
        ));
        // A length prefix far beyond the input must not allocate or panic.
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Pair>(&huge, 1000).is_err());
    }
}
