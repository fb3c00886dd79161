//! Arbitrary bytes never panic the codec or the deframer, in any chunking; an arbitrary frame
//! round-trips. See `ipc_proto::fuzzing::decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipc_proto::fuzzing::decode(data));
