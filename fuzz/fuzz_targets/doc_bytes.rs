//! Arbitrary bytes as shared-document messages never panic the document host or a replica;
//! a message that decodes round-trips. See `ipc_proto::fuzzing::doc_bytes`.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods)] // the fuzz target's clock origin
    let now = *ORIGIN.get_or_init(Instant::now);
    ipc_proto::fuzzing::doc_bytes(data, now);
});
