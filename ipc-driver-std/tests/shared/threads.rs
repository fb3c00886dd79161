//! Where a test's threads are, read from procfs (included with `#[path]`): so that a test
//! acts once a receiving thread sleeps, instead of sleeping and hoping it does.

use std::time::{Duration, Instant};

/// The calling thread's id, as `/proc/self/task/<tid>` names it.
pub(crate) fn this_tid() -> String {
    let me = std::fs::read_link("/proc/thread-self").expect("procfs");
    me.file_name()
        .expect("a tid")
        .to_string_lossy()
        .into_owned()
}

/// The `epoll_wait` family's system call numbers on this architecture (empty: unknown).
pub(crate) fn epoll_waits() -> &'static [u64] {
    if cfg!(target_arch = "x86_64") {
        &[232, 281, 441]
    } else if cfg!(target_arch = "aarch64") {
        &[22, 441]
    } else {
        &[]
    }
}

/// Whether thread `tid` of this process sleeps in an `epoll_wait` call.
pub(crate) fn in_epoll_wait(tid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .is_some_and(|nr| epoll_waits().contains(&nr))
}

/// Waits until thread `tid` sleeps in an `epoll_wait` call (a receiver waiting on the rings);
/// panics with `what` after `within`. Returns at once where the system call numbers are
/// unknown.
pub(crate) fn wait_in_epoll_wait(tid: &str, within: Duration, what: &str) {
    if epoll_waits().is_empty() {
        return;
    }
    let deadline = Instant::now() + within;
    while !in_epoll_wait(tid) {
        assert!(
            Instant::now() < deadline,
            "{what}: never waited on the rings"
        );
        std::thread::yield_now();
    }
}
