//! Arbitrary ring geometry, header lies, peer writes and operations on both ends of a data
//! link's ring and its socket: never a panic, only values or `RingError`s, and what was sent
//! handed on in the order sent while the region is untouched. See
//! `ipc_proto::fuzzing::ring_link`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipc_proto::fuzzing::ring_link(data));
