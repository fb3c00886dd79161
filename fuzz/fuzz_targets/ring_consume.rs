//! Arbitrary ring geometry, header lies, peer writes and operations on both ends of a
//! shared-memory ring: never a panic, only values or `RingError`s, and a FIFO while the region
//! is untouched. See `ipc_proto::fuzzing::ring_consume`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipc_proto::fuzzing::ring_consume(data));
