//! OS layer: moves bytes, file descriptors and credentials over Linux primitives.
//!
//! This module makes no protocol decisions. It wraps exactly the kernel facilities the std
//! driver's single I/O thread needs, plus what tests and benchmarks use to poke at sockets:
//!
//! | module | what |
//! |---|---|
//! | [`rendezvous`] | a group's directory (private 0700, or one the application opens), the hub's `flock`, its sockets |
//! | [`addr`] | abstract-namespace socket names, for throwaway sockets in tests and tools |
//! | [`socket`] | `SOCK_SEQPACKET` listen/connect/accept, one `sendmsg`/`recvmsg` per record, `SCM_RIGHTS` |
//! | [`poll`] | level-triggered epoll with [`poll::Token`]s and an eventfd [`poll::Waker`] |
//! | [`memfd`] | sealed memfd segments: create, seal, verify on receipt, map read-only or read-write |
//! | here | [`Credentials`] (`SO_PEERCRED`) and [`current_credentials`] |
//!
//! # Conventions
//! - **Every fd is non-blocking and close-on-exec** from birth (`SOCK_NONBLOCK|SOCK_CLOEXEC`,
//!   `EFD_NONBLOCK|EFD_CLOEXEC`, `EPOLL_CLOEXEC`, `MFD_CLOEXEC`, `MSG_CMSG_CLOEXEC`). Record I/O
//!   additionally passes `MSG_DONTWAIT`, so it never blocks even on a blocking fd.
//! - **`EINTR` is retried** everywhere; no function returns `ErrorKind::Interrupted`.
//! - **"Would block" is a value, not an error**: [`socket::accept`] returns `None`,
//!   [`socket::send_record`] returns [`socket::Sent::WouldBlock`], [`socket::recv_record`]
//!   returns [`socket::Recv::WouldBlock`], [`poll::Poller::wait`] returns 0 events. The single
//!   exception is [`socket::connect`], whose `ErrorKind::WouldBlock` means "the listener's
//!   backlog is full, try again later".
//! - Errors are `io::Error` with the OS errno preserved (`raw_os_error()`), except where the
//!   caller must tell cases apart without an errno: [`rendezvous::RendezvousError`],
//!   [`addr::AddrError`] and
//!   [`memfd::SegmentError`].
//! - Ownership: fds are [`OwnedFd`](std::os::fd::OwnedFd) the moment they exist, including fds
//!   received over `SCM_RIGHTS`, so no error path can leak one.
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

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod addr;
pub mod memfd;
pub mod poll;
pub use ipc_os::rendezvous;
pub mod socket;

#[cfg(test)]
mod testutil;

use nix::errno::Errno;

/// The identity of a process as the kernel reports it for a Unix socket peer (`SO_PEERCRED`).
///
/// For an accepted socket these are the connecting process's credentials at `connect()` time;
/// for a connected socket, the listener's at `listen()` time; for a socketpair, the creator's.
/// `pid` is in the reader's pid namespace and is 0 if the peer's pid is not visible there.
/// A pid can be reused after the peer exits; treat it as a label, not a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// Process id (`pid_t`).
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

impl From<nix::sys::socket::UnixCredentials> for Credentials {
    fn from(c: nix::sys::socket::UnixCredentials) -> Self {
        Self {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        }
    }
}

/// This process's own [`Credentials`], as a peer would see them through `SO_PEERCRED`.
pub fn current_credentials() -> Credentials {
    Credentials {
        pid: nix::unistd::getpid().as_raw(),
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    }
}

/// Runs `f` until it returns something other than `EINTR`.
pub(crate) fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => {}
            other => return other,
        }
    }
}
