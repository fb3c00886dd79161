//! Arbitrary bytes as a data-link record never panic `decode_data`; an arbitrary data frame
//! (with a payload) round-trips. See `ipc_proto::fuzzing::data_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipc_proto::fuzzing::data_decode(data));
