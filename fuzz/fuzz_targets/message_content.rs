//! `Message::decode` on arbitrary bytes: never panics, and whatever decodes
//! re-encodes and decodes to the same message. Mirrored by `message_content`
//! in crates/poc-proto/tests/fuzz_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poc_proto::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        let bytes = message.encode().expect("a decoded message re-encodes");
        let again = Message::decode(&bytes).expect("a re-encoded message decodes");
        assert_eq!(again, message);
    }
});
