//! The OS layer both ipc-pubsub drivers share.
//!
//! `ipc-proto` decides everything and touches nothing; its drivers move bytes, fds and time.
//! What they do with the system lives here, once, through `rustix`. This crate makes no
//! protocol decisions: it wraps exactly the kernel facilities the drivers need, plus what
//! tests and benchmarks use to poke at sockets.
//!
//! | module | what |
//! |---|---|
//! | [`rendezvous`] | where a group meets: its directory (private 0700, or one the application opens), the hub's `flock`, its listening sockets, connecting to them |
//! | [`addr`] | abstract-namespace socket names, for throwaway sockets in tests and tools |
//! | [`socket`] | `SOCK_SEQPACKET` listen/connect/accept, one `sendmsg`/`recvmsg` per record, `SCM_RIGHTS` |
//! | [`poll`] | level-triggered epoll with [`poll::Token`]s and an eventfd [`poll::Waker`] |
//! | [`timer`] | a monotonic `timerfd`, for a driver whose loop waits on an fd rather than a timeout |
//! | [`memfd`] | sealed memfd segments: create, seal, verify on receipt, map read-only or read-write |
//! | [`shared`] | shared regions both sides write (the data rings): a sealed memfd mapped as words ([`shared::SharedWord`]) |
//! | [`pidfd`] | a pidfd for a socket's peer process, checked against pid reuse: readable once it has exited |
//! | here | [`Credentials`] (`SO_PEERCRED`) and [`current_credentials`] |
//!
//! # Conventions
//! - **Every fd is non-blocking and close-on-exec** from birth (`SOCK_NONBLOCK|SOCK_CLOEXEC`,
//!   `EFD_NONBLOCK|EFD_CLOEXEC`, `EPOLL_CLOEXEC`, `TFD_NONBLOCK|TFD_CLOEXEC`, `MFD_CLOEXEC`,
//!   `MSG_CMSG_CLOEXEC`). Record I/O additionally passes `MSG_DONTWAIT`, so it never blocks
//!   even on a blocking fd.
//! - **`EINTR` is retried** everywhere; no function returns `ErrorKind::Interrupted`.
//! - **"Would block" is a value, not an error**: [`socket::accept`] returns `None`,
//!   [`socket::send_record`] returns [`socket::Sent::WouldBlock`], [`socket::recv_record`]
//!   returns [`socket::Recv::WouldBlock`], [`poll::Poller::wait`] returns 0 events. The single
//!   exception is [`socket::connect`], whose `ErrorKind::WouldBlock` means "the listener's
//!   backlog is full, try again later".
//! - Errors are `io::Error` with the OS errno preserved (`raw_os_error()`), except where the
//!   caller must tell cases apart without an errno: [`rendezvous::RendezvousError`],
//!   [`addr::AddrError`] and [`memfd::SegmentError`].
//! - Ownership: fds are [`OwnedFd`](std::os::fd::OwnedFd) the moment they exist, including fds
//!   received over `SCM_RIGHTS`, so no error path can leak one.
//! - `unsafe` is denied everywhere but in the module that maps memory (behind
//!   [`memfd::Mapping`], [`memfd::MappingMut`] and [`memfd::SharedWords`]) and in the one `getsockopt(SO_PEERCRED)`
//!   made through `libc` (behind [`socket::peer_credentials`]: `rustix` reads the pid into a
//!   type that cannot be 0, which the kernel reports for a peer outside our pid namespace),
//!   next to `getsockopt(SO_PEERPIDFD)`, which `rustix` lacks (behind
//!   [`pidfd::PidFd::open_peer`]), and in the copy of a ring's inline payload (behind
//!   [`shared::SharedWord`]: the CPU's string copy); every block says why it is sound.
//!
//! # Records (`SOCK_SEQPACKET`)
//! One [`socket::send_record`] is one `sendmsg` is one record; the kernel keeps the
//! boundaries and a record is sent whole or not at all. Measured on Linux 6.18 with default
//! buffers (`net.core.wmem_default` = 212 992):
//! - **Largest record: `SO_SNDBUF` − 32 bytes** = 212 960 bytes by default (larger sends fail
//!   with `EMSGSIZE`). Raising `SO_SNDBUF` raises it, up to about 4 MiB + 68 KiB (4 263 616
//!   bytes), where the kernel's skb allocation caps it. [`socket::max_record_len`] reports the
//!   first bound. Big records need high-order kernel allocations: keep inline records small
//!   and move bulk data through [`memfd`] segments.
//! - **Flow control is the sender's `SO_SNDBUF` only**: every queued record is charged to the
//!   sender (about 768 bytes of overhead each), so about 278 small records (1–64 bytes, with
//!   or without an fd), 26 records of 4 KiB or 4 records of 64 KiB fit in flight before
//!   `send_record` returns `WouldBlock`. The receiver's `SO_RCVBUF` has no effect on
//!   connected `AF_UNIX` sockets.
//! - **Zero-length records vs end of stream.** `recvmsg` returns 0 both for a zero-length
//!   record and, on a non-blocking `SOCK_SEQPACKET` socket whose peer has gone, for end of
//!   stream; Linux sets no flag (no `MSG_EOR`) that tells them apart. We resolve it in two
//!   layers:
//!   1. Our side never sends empty records: [`socket::send_record`] rejects empty `bytes` with
//!      `ErrorKind::InvalidInput`. The protocol must give every record at least one byte.
//!   2. [`socket::recv_record`], on a 0-byte result that carried no fds, asks the kernel
//!      whether the peer is gone (`poll` for `POLLRDHUP|POLLHUP`, zero timeout) and whether
//!      bytes are still queued (`FIONREAD`). Shutdown is irreversible and a departed peer
//!      cannot queue anything new, so: peer still there → it was an empty record
//!      ([`socket::Recv::Data`] with `len == 0`); peer gone but bytes still queued → empty
//!      record; peer gone and nothing queued → [`socket::Recv::Closed`]. The only loss: empty
//!      records that a (foreign) peer sent just before leaving, with nothing but empty records
//!      after them, are reported as `Closed`. They carry no bytes.
//! - **`ECONNRESET`** is what Linux reports, once, when the peer closed while records *we*
//!   sent were still unread in its queue. Records the peer sent before closing are still
//!   queued behind it, so [`socket::recv_record`] swallows that one-shot error and keeps
//!   reading: the caller sees the peer's last records, then `Closed`. Sending to a departed
//!   peer fails with `ErrorKind::BrokenPipe` (never `SIGPIPE`: `MSG_NOSIGNAL`).
//!
//! # Memory
//! [`memfd::Mapping`]s never raise `SIGBUS` through truncation: [`memfd::verify`] only accepts
//! shmem files that carry `F_SEAL_SHRINK`, reads the seals *before* the size, and mapping is
//! only allowed within that size. See [`memfd`] for the details and the remaining caveats.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

pub mod addr;
#[allow(unsafe_code)]
mod mapping;
pub mod memfd;
pub mod pidfd;
pub mod poll;
pub mod rendezvous;
pub mod shared;
pub mod socket;
pub mod timer;
#[allow(unsafe_code)]
mod ucred;
#[allow(unsafe_code)]
mod word;

#[cfg(test)]
mod testutil;

/// The CPU the calling thread runs on right now (`getcpu`, through the vDSO where the kernel
/// has one), or `None` if the kernel does not say. It may have moved by the time the caller
/// looks: for hints only, such as a ring's `writing` hint (`ipc_proto::ring::Writer`).
pub fn current_cpu() -> Option<u32> {
    u32::try_from(rustix::thread::sched_getcpu()).ok()
}

/// The identity of a process as the kernel reports it for a Unix socket peer (`SO_PEERCRED`).
///
/// For an accepted socket these are the connecting process's credentials at `connect()` time;
/// for a connected socket, the listener's at `listen()` time; for a socketpair, the creator's.
/// `pid` is in the reader's pid namespace and is 0 if the peer's pid is not visible there.
/// A pid can be reused after the peer exits; treat it as a label, not a handle.
pub use ipc_proto::Credentials;

/// This process's own [`Credentials`], as a peer would see them through `SO_PEERCRED`.
pub fn current_credentials() -> Credentials {
    Credentials {
        pid: rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs(),
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    }
}

/// An `InvalidInput` error saying `msg`.
pub(crate) fn invalid_input(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// Runs `f` until it returns something other than `EINTR`.
pub(crate) fn retry_eintr<T>(
    mut f: impl FnMut() -> rustix::io::Result<T>,
) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => {}
            other => return other,
        }
    }
}
