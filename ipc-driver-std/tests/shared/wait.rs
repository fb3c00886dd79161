//! Waiting on a condition with a deadline, for tests (included with `#[path]`): a test polls
//! what it waits for rather than sleeping a fixed time.

// Each test binary that includes this module uses some of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Waits until `count()` is `n`, looking every few milliseconds; panics after `within`,
/// saying `what` was counted, how many there were and how many were expected.
pub(crate) fn wait_count(n: usize, within: Duration, what: &str, count: impl Fn() -> usize) {
    let deadline = Instant::now() + within;
    loop {
        let now = count();
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} {what} after {within:?}, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
