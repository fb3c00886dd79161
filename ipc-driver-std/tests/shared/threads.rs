//! Where a test's threads are, read from procfs (included with `#[path]`): so that a test
//! acts once a receiving thread sleeps, instead of sleeping and hoping it does; and where
//! they run (pinned to CPUs), so that two threads passing messages back and forth are on two
//! CPUs of a small machine.

// Each test binary that includes this module uses some of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

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

/// What node I/O threads did so far, and how many there are.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IoThreads {
    /// Times they went to sleep (voluntary context switches, from `status`).
    pub(crate) sleeps: u64,
    /// Times they were put on a CPU, and their time on it (from `schedstat`).
    pub(crate) runs: u64,
    pub(crate) cpu: Duration,
    pub(crate) threads: usize,
}

/// What this process's node I/O threads whose name starts with `prefix` did so far. The
/// kernel keeps 15 bytes of a thread's name, `ipc-pubsub-io:<node>`: `ipc-pubsub-io` counts
/// every node's, `ipc-pubsub-io:s` those of the nodes whose name starts with `s`.
pub(crate) fn io_threads(prefix: &str) -> IoThreads {
    let mut t = IoThreads::default();
    for task in std::fs::read_dir("/proc/self/task").expect("procfs") {
        let dir = task.expect("a task").path();
        // A thread that ended meanwhile has no files left: not an I/O thread of ours.
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.starts_with(prefix) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        t.sleeps += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .expect("voluntary_ctxt_switches in status")
            .trim()
            .parse::<u64>()
            .expect("a count");
        // "<ns on a CPU> <ns waiting for one> <times put on one>"
        let fields: Vec<u64> = schedstat
            .split_whitespace()
            .map(|f| f.parse().expect("a number"))
            .collect();
        t.cpu += Duration::from_nanos(fields[0]);
        t.runs += fields[2];
        t.threads += 1;
    }
    t
}

/// Two CPUs this process may use, if it may use two.
pub(crate) fn two_cpus() -> Option<[usize; 2]> {
    let allowed = sched_getaffinity(None).expect("sched_getaffinity");
    let mut cpus = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c));
    Some([cpus.next()?, cpus.next()?])
}

/// The calling thread pinned to one CPU ([`pin`]) until this is dropped.
pub(crate) struct Pinned(CpuSet);

/// Pins the calling thread to `cpu`: two threads that pass messages back and forth on two
/// CPUs of a small machine, rather than wherever the scheduler puts them (on one, a thread
/// polling for the other's answer only delays it).
pub(crate) fn pin(cpu: usize) -> Pinned {
    let before = sched_getaffinity(None).expect("sched_getaffinity");
    let mut one = CpuSet::new();
    one.set(cpu);
    sched_setaffinity(None, &one).expect("sched_setaffinity");
    Pinned(before)
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = sched_setaffinity(None, &self.0);
    }
}

/// Thread `tid`'s time on a CPU so far (`schedstat`'s first field).
pub(crate) fn cpu_time(tid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).expect("procfs");
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .expect("schedstat's run time");
    Duration::from_nanos(ns)
}

/// The calling thread's voluntary context switches so far: how often it slept.
pub(crate) fn sleeps() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no voluntary_ctxt_switches in {status}"))
}
