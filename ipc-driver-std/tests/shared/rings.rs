//! The data links' ring mappings of this process, read from procfs (included with `#[path]`):
//! so that a test waits for a link's ring to be set up, or gone, instead of sleeping.

// Each test binary that includes this module uses some of it.
#![allow(dead_code)]

use std::time::Duration;

/// Mappings of ring regions in this process (both ends of a link, when both are here).
pub(crate) fn ring_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("procfs")
        .lines()
        .filter(|l| l.contains("/memfd:ipc-pubsub-ring"))
        .count()
}

/// Waits until this process maps exactly `n` rings; panics with `what` after `within`.
/// (The including test binary also includes `shared/wait.rs` as `wait`.)
pub(crate) fn wait_rings(n: usize, within: Duration, what: &str) {
    crate::wait::wait_count(n, within, &format!("ring mappings ({what})"), ring_mappings);
}
