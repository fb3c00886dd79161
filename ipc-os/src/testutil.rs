//! Helpers shared by the unit tests of [`super`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Serialises fd/mapping accounting against the other tests of this crate, which run on
/// parallel threads of the same process.
static FD_ACCOUNTING: RwLock<()> = RwLock::new(());

/// Held by every test that opens fds or maps memory.
pub(crate) fn shared() -> RwLockReadGuard<'static, ()> {
    FD_ACCOUNTING.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by tests that count `/proc/self/fd` or `/proc/self/maps`: no other test runs meanwhile.
pub(crate) fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FD_ACCOUNTING
        .write()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Number of open fds of this process (the directory fd used to count is not included).
pub(crate) fn open_fds() -> usize {
    // read_dir holds one fd of its own while iterating; it shows up in the listing.
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
        - 1
}

/// Number of mappings of this process.
pub(crate) fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .lines()
        .count()
}

/// A group name no other test (or concurrent test run) uses.
pub(crate) fn unique_group(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "test-{tag}-{}-{nanos:08x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends `fd` over a socketpair and returns the received copy, as a peer would get it.
pub(crate) fn pass(fd: std::os::fd::BorrowedFd<'_>) -> std::os::fd::OwnedFd {
    use crate::socket::{Recv, Sent, recv_record, send_record, socketpair_seqpacket};
    let (a, b) = socketpair_seqpacket().expect("socketpair");
    assert_eq!(send_record(&a, b"fd", &[fd]).expect("send"), Sent::Complete);
    let mut fds = Vec::new();
    let mut buf = [0u8; 8];
    let r = recv_record(&b, &mut buf, &mut fds, 1).expect("recv");
    assert!(matches!(r, Recv::Data { fds: 1, .. }), "{r:?}");
    fds.pop().expect("one fd")
}
