//! FRA.cert of the testkit world opens arbitrary bytes at `testkit::NOW`:
//! never panics. Mirrored by `open_envelope` in
//! crates/poc-proto/tests/fuzz_corpus.rs.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use poc_proto::envelope::MemoryReplayCache;
use poc_proto::testkit::{NOW, World};

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(World::new)
}

fuzz_target!(|data: &[u8]| {
    let recipient = world().recipient("FRA.cert");
    let _ = recipient.open(data, &mut MemoryReplayCache::default(), NOW);
});
