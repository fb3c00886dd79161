//! An arbitrary sequence of links, bytes, frames, time steps and commands applied to one hub,
//! with its invariants checked after every step. See `ipc_proto::fuzzing::hub_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The clock's origin: the machines only ever see durations added to it.
    let _ = ipc_proto::fuzzing::hub_ops(data, std::time::Instant::now());
});
