//! An arbitrary sequence of commands, links, records with segments, socket reports and time
//! steps applied to one data plane, with its invariants checked after every step (above all:
//! every segment handed in is delivered or released exactly once, and its references add up).
//! See `ipc_proto::fuzzing::data_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The clock's origin: the machine only ever sees durations added to it.
    let _ = ipc_proto::fuzzing::data_ops(data, std::time::Instant::now());
});
