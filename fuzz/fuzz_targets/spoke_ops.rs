//! An arbitrary sequence of commands, driver reports, hub bytes and frames, and time steps
//! applied to one spoke, with its invariants checked after every step (above all: its events
//! replayed give its view). See `ipc_proto::fuzzing::spoke_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ipc_proto::fuzzing::spoke_ops(data, std::time::Instant::now());
});
