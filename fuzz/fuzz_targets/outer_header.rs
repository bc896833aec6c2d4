//! `OuterHeader::parse` on arbitrary bytes: never panics.
//! Mirrored by `outer_header` in crates/poc-proto/tests/fuzz_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poc_proto::envelope::OuterHeader;

fuzz_target!(|data: &[u8]| {
    let _ = OuterHeader::parse(data);
});
