//! `PocCertificate::from_bytes`, then `unverified_body`, on arbitrary bytes:
//! never panics. Mirrored by `certificate` in
//! crates/poc-proto/tests/fuzz_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poc_proto::certificate::PocCertificate;

fuzz_target!(|data: &[u8]| {
    if let Ok(certificate) = PocCertificate::from_bytes(data) {
        let _ = certificate.unverified_body();
    }
});
