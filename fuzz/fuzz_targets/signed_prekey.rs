//! `SignedPrekey::from_bytes` on arbitrary bytes: never panics.
//! Mirrored by `signed_prekey` in crates/poc-proto/tests/fuzz_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poc_proto::certificate::SignedPrekey;

fuzz_target!(|data: &[u8]| {
    let _ = SignedPrekey::from_bytes(data);
});
