//! `SOCK_SEQPACKET` Unix sockets: listen, connect, accept, and record I/O with `SCM_RIGHTS`.
//!
//! All sockets are created non-blocking and close-on-exec. See the [crate docs](crate) for
//! the record-size limits, flow control, and how zero-length records are told apart from end
//! of stream.
//!
//! # Connecting
//! A non-blocking `connect` on a Unix `SOCK_SEQPACKET` socket never returns `EINPROGRESS`: it
//! either completes at once (the connection is queued on the listener and usable for sending
//! before the listener calls `accept`), or fails with `EAGAIN` when the listener's backlog is
//! full (Linux admits backlog + 1 pending connections). [`connect`] passes the latter through
//! as `ErrorKind::WouldBlock` and drops the socket: retry later with a new [`connect`]. A
//! connection still pending when the listener closes sees `ECONNRESET`, then end of stream.

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
    sockopt,
};

use crate::{Credentials, retry_eintr};

/// Most fds the kernel accepts in one message (`SCM_MAX_FD`).
pub const SCM_MAX_FD: usize = 253;

/// Backlog passed to `listen`: connections the kernel queues before [`accept`] picks them up.
pub const LISTEN_BACKLOG: i32 = 128;

/// Bytes of `SO_SNDBUF` a single record cannot use (measured: largest record = `SO_SNDBUF` − 32).
const RECORD_OVERHEAD: usize = 32;

const FD_BYTES: usize = mem::size_of::<RawFd>();

/// Bytes of control buffer for [`SCM_MAX_FD`] fds: `CMSG_SPACE`. (`rustix::cmsg_space!` adds
/// room to align an unaligned buffer; [`CmsgBuf`] is aligned, so it needs none.)
const CMSG_CAP: usize = rustix::cmsg_aligned_space!(ScmRights(SCM_MAX_FD));

/// `CMSG_LEN(0)`: the control message header, aligned (`CMSG_SPACE(0)` is the same number).
const CMSG_HEADER: usize = rustix::cmsg_aligned_space!(ScmRights(0));

/// A control-message buffer on the stack, aligned for `cmsghdr` (8 bytes on 64-bit Linux,
/// 4 on 32-bit), so that `rustix` uses all of it rather than skipping to an aligned start.
#[repr(C, align(8))]
struct CmsgBuf([MaybeUninit<u8>; CMSG_CAP]);

impl CmsgBuf {
    fn new() -> Self {
        Self([MaybeUninit::uninit(); CMSG_CAP])
    }
}

/// Outcome of [`send_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Sent {
    /// The whole record (bytes and fds) is queued at the peer.
    Complete,
    /// The send buffer is full; nothing was sent. Retry when the socket is writable.
    WouldBlock,
}

/// Outcome of [`recv_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Recv {
    /// One record arrived.
    Data {
        /// Bytes written to the start of `buf`.
        len: usize,
        /// The record's full length as sent; larger than `len` exactly when `truncated`.
        record_len: usize,
        /// The record was longer than `buf`; the kernel discarded the rest (`MSG_TRUNC`).
        /// Nothing of it leaks into the next record.
        truncated: bool,
        /// Fds appended to the caller's vector, in the order they were sent.
        fds: usize,
        /// The kernel dropped (closed) some of the record's fds (`MSG_CTRUNC`): more were sent
        /// than `max_fds`, or this process hit its fd limit (`RLIMIT_NOFILE`).
        fds_truncated: bool,
    },
    /// The peer has gone and every record it sent has been read. Close the socket.
    Closed,
    /// No record is queued. Retry when the socket is readable.
    WouldBlock,
}

fn new_socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Binds a listening `SOCK_SEQPACKET` socket to `addr` (backlog [`LISTEN_BACKLOG`]).
///
/// Fails with `ErrorKind::AddrInUse` while another socket holds the name. Abstract names are
/// released when the last fd of the listening socket is closed; a path stays until it is
/// removed (see [`rendezvous`](crate::rendezvous) for who removes group sockets).
pub fn listen(addr: &SocketAddrUnix) -> io::Result<OwnedFd> {
    let fd = new_socket()?;
    rustix::net::bind(&fd, addr)?;
    rustix::net::listen(&fd, LISTEN_BACKLOG)?;
    Ok(fd)
}

/// Connects a new `SOCK_SEQPACKET` socket to `addr`.
///
/// Fails with `ErrorKind::ConnectionRefused` when nothing listens on `addr` (`NotFound` for a
/// path that does not exist), and with `ErrorKind::WouldBlock` when the listener's backlog is
/// full (see the [module docs](self)).
pub fn connect(addr: &SocketAddrUnix) -> io::Result<OwnedFd> {
    let fd = new_socket()?;
    // A non-blocking AF_UNIX connect does not sleep, so EINTR is not expected; were it to
    // happen the socket would still be unconnected and a retry is correct.
    retry_eintr(|| rustix::net::connect(&fd, addr))?;
    Ok(fd)
}

/// Accepts one pending connection, with the connecting process's [`Credentials`].
///
/// Returns `Ok(None)` when no connection is pending. The new socket is non-blocking and
/// close-on-exec. `ECONNABORTED` is retried. `EMFILE`/`ENFILE` are returned as errors while
/// the connection stays queued, so a level-triggered listener stays readable: back off.
pub fn accept(listener: impl AsFd) -> io::Result<Option<(OwnedFd, Credentials)>> {
    let listener = listener.as_fd();
    loop {
        match rustix::net::accept_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
            Ok(fd) => {
                let creds = peer_credentials(&fd)?;
                return Ok(Some((fd, creds)));
            }
            Err(Errno::INTR | Errno::CONNABORTED) => {}
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The peer's [`Credentials`] (`SO_PEERCRED`) of a connected socket.
///
/// A pid that is not visible in this pid namespace is reported as 0.
pub fn peer_credentials(fd: impl AsFd) -> io::Result<Credentials> {
    let (pid, uid, gid) = crate::ucred::peer_ucred(fd.as_fd())?;
    Ok(Credentials {
        pid: u32::try_from(pid).unwrap_or(0),
        uid,
        gid,
    })
}

/// Sends `bytes` and `fds` as one record: one `sendmsg`, with `SCM_RIGHTS` when `fds` is
/// non-empty, `MSG_NOSIGNAL | MSG_DONTWAIT`, retrying `EINTR`.
///
/// Returns [`Sent::WouldBlock`] when the send buffer is full. Fails before any syscall with
/// `ErrorKind::InvalidInput` when `bytes` is empty (records are never empty, see the
/// [crate docs](crate)) or when there are more than [`SCM_MAX_FD`] fds. Other errors:
/// `BrokenPipe` when the peer is gone, `EMSGSIZE` (check `raw_os_error()`) when the record is
/// larger than [`max_record_len`], `ETOOMANYREFS` when this user has too many fds in flight.
/// No allocation.
pub fn send_record(fd: impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<Sent> {
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to send an empty record: a peer could not tell it from end of stream",
        ));
    }
    if fds.len() > SCM_MAX_FD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} fds in one record, the kernel accepts at most {SCM_MAX_FD}",
                fds.len()
            ),
        ));
    }
    let mut cmsg_buf = CmsgBuf::new();
    let mut control = SendAncillaryBuffer::new(&mut cmsg_buf.0);
    if !fds.is_empty() {
        let pushed = control.push(SendAncillaryMessage::ScmRights(fds));
        debug_assert!(pushed, "CMSG_CAP has room for SCM_MAX_FD fds");
    }
    let iov = [io::IoSlice::new(bytes)];
    let fd = fd.as_fd();
    loop {
        match rustix::net::sendmsg(
            fd,
            &iov,
            &mut control,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Ok(sent) if sent == bytes.len() => return Ok(Sent::Complete),
            // SEQPACKET sends records whole; a short count means a stream socket.
            Ok(sent) => {
                return Err(io::Error::other(format!(
                    "sent {sent} of {} bytes: not a SOCK_SEQPACKET socket",
                    bytes.len()
                )));
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(Sent::WouldBlock),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one record into `buf`, appending up to `max_fds` passed fds to `fds`.
///
/// One `recvmsg` with `MSG_CMSG_CLOEXEC | MSG_DONTWAIT | MSG_TRUNC`, retrying `EINTR`. Every
/// received fd becomes an [`OwnedFd`] in `fds` before anything else happens, so none leaks.
/// A record longer than `buf` reports `truncated` (the kernel discards the rest); more fds
/// than `max_fds` (clamped to [`SCM_MAX_FD`]) reports `fds_truncated` (the kernel closes the
/// rest). See the [crate docs](crate) for how a zero-length record is told apart from
/// [`Recv::Closed`], and why a one-shot `ECONNRESET` is swallowed.
///
/// No allocation once `fds` has capacity for `max_fds` more entries (reserved here).
pub fn recv_record(
    fd: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    max_fds: usize,
) -> io::Result<Recv> {
    let fd = fd.as_fd();
    let max_fds = max_fds.min(SCM_MAX_FD);
    fds.reserve(max_fds);
    let mut cmsg_buf = CmsgBuf::new();
    // CMSG_LEN, not CMSG_SPACE: the kernel installs (controllen - sizeof(cmsghdr)) / 4 fds,
    // so CMSG_SPACE would admit one fd more than asked for when max_fds is odd.
    let room = if max_fds == 0 {
        0
    } else {
        CMSG_HEADER + max_fds * FD_BYTES
    };
    let mut reset_seen = false;
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut cmsg_buf.0[..room]);
        let mut iov = [io::IoSliceMut::new(buf)];
        let flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT | RecvFlags::TRUNC;
        let msg = match rustix::net::recvmsg(fd, &mut iov, &mut control, flags) {
            Ok(msg) => msg,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Recv::WouldBlock),
            Err(Errno::CONNRESET) if !reset_seen => {
                // One-shot: the peer closed with our records unread. Its own records are
                // still queued behind the error; keep reading them.
                reset_seen = true;
                tracing::trace!("peer closed with unread records; draining its records");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let before = fds.len();
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = m {
                fds.extend(received);
            }
        }
        let received = fds.len() - before;
        let record_len = msg.bytes;
        let truncated = msg.flags.contains(ReturnFlags::TRUNC);
        let fds_truncated = msg.flags.contains(ReturnFlags::CTRUNC);
        if record_len == 0 && received == 0 && !fds_truncated && peer_gone_and_drained(fd)? {
            return Ok(Recv::Closed);
        }
        return Ok(Recv::Data {
            len: record_len.min(buf.len()),
            record_len,
            truncated,
            fds: received,
            fds_truncated,
        });
    }
}

/// After a 0-byte, fd-less `recvmsg`: is the peer gone with no bytes left queued?
///
/// Shutdown is irreversible and a departed peer can queue nothing new, so "connected" means
/// the 0 bytes were an empty record, and "gone but bytes queued" means the same.
fn peer_gone_and_drained(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = [PollFd::new(&fd, PollFlags::RDHUP)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    retry_eintr(|| rustix::event::poll(&mut pfd, Some(&zero)))?;
    if !pfd[0]
        .revents()
        .intersects(PollFlags::RDHUP | PollFlags::HUP)
    {
        return Ok(false);
    }
    let queued = rustix::io::ioctl_fionread(fd)?;
    Ok(queued == 0)
}

/// Sets `SO_SNDBUF` and returns the effective size the kernel reports.
///
/// Linux doubles the request (for its bookkeeping) and caps it at `net.core.wmem_max`
/// (4 MiB here, so at most 8 MiB effective). On `AF_UNIX` this bounds both the largest
/// record and the bytes in flight towards the peer; see [`max_record_len`].
pub fn set_send_buffer(fd: impl AsFd, bytes: usize) -> io::Result<usize> {
    sockopt::set_socket_send_buffer_size(fd.as_fd(), bytes)?;
    send_buffer(fd)
}

/// Sets `SO_RCVBUF` and returns the effective size the kernel reports.
///
/// Measured: on connected `AF_UNIX` sockets this limits nothing (flow control is charged to
/// the sender's `SO_SNDBUF`); it exists for completeness and symmetry.
pub fn set_recv_buffer(fd: impl AsFd, bytes: usize) -> io::Result<usize> {
    sockopt::set_socket_recv_buffer_size(fd.as_fd(), bytes)?;
    recv_buffer(fd)
}

/// The effective `SO_SNDBUF`.
pub fn send_buffer(fd: impl AsFd) -> io::Result<usize> {
    Ok(sockopt::socket_send_buffer_size(fd.as_fd())?)
}

/// The effective `SO_RCVBUF`.
pub fn recv_buffer(fd: impl AsFd) -> io::Result<usize> {
    Ok(sockopt::socket_recv_buffer_size(fd.as_fd())?)
}

/// Largest record [`send_record`] can send on `fd`: `SO_SNDBUF` − 32 bytes.
///
/// 212 960 bytes with default buffers. Independently of `SO_SNDBUF`, the kernel's skb
/// allocation caps a record at about 4 MiB + 68 KiB (4 263 616 bytes measured on 6.18).
pub fn max_record_len(fd: impl AsFd) -> io::Result<usize> {
    Ok(send_buffer(fd)?.saturating_sub(RECORD_OVERHEAD))
}

/// A connected pair of non-blocking, close-on-exec `SOCK_SEQPACKET` sockets, for tests.
pub fn socketpair_seqpacket() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::AbstractAddr;
    use crate::current_credentials;
    use crate::testutil::{exclusive, open_fds, shared, unique_group};
    use rustix::fs::OFlags;
    use rustix::io::FdFlags;

    fn test_addr(name: &str) -> SocketAddrUnix {
        AbstractAddr::new(name.as_bytes())
            .expect("short name")
            .as_unix_addr()
            .clone()
    }

    /// Sends `bytes` with `fds` in one `sendmsg` and no checks, the way a foreign peer could.
    fn send_raw(fd: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
        let mut space = CmsgBuf::new();
        let mut control = SendAncillaryBuffer::new(&mut space.0);
        if !fds.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        }
        let iov = [io::IoSlice::new(bytes)];
        rustix::net::sendmsg(fd, &iov, &mut control, SendFlags::empty()).expect("sendmsg");
    }

    fn data(len: usize) -> Recv {
        Recv::Data {
            len,
            record_len: len,
            truncated: false,
            fds: 0,
            fds_truncated: false,
        }
    }

    fn recv(fd: &OwnedFd, buf: &mut [u8]) -> Recv {
        let mut fds = Vec::new();
        let r = recv_record(fd, buf, &mut fds, 0).expect("recv_record");
        assert!(fds.is_empty());
        r
    }

    fn send(fd: &OwnedFd, bytes: &[u8]) {
        assert_eq!(
            send_record(fd, bytes, &[]).expect("send_record"),
            Sent::Complete
        );
    }

    /// Sends a zero-length record the way a foreign peer could (we refuse to).
    fn send_empty(fd: &OwnedFd) {
        let n = rustix::net::send(fd, &[], SendFlags::DONTWAIT).expect("send empty record");
        assert_eq!(n, 0);
    }

    #[test]
    fn listen_connect_accept_with_credentials() {
        let _g = shared();
        let addr = test_addr(&unique_group("rt"));
        let listener = listen(&addr).expect("listen");
        assert!(
            accept(&listener).expect("accept").is_none(),
            "nothing pending yet"
        );

        let client = connect(&addr).expect("connect");
        // Usable before accept: the connection is already established.
        send(&client, b"hello");
        let (server, creds) = accept(&listener)
            .expect("accept")
            .expect("pending connection");
        assert_eq!(creds, current_credentials());
        assert_eq!(
            peer_credentials(&client).expect("peer creds"),
            current_credentials()
        );
        assert!(accept(&listener).expect("accept").is_none());

        let mut buf = [0u8; 16];
        assert_eq!(recv(&server, &mut buf), data(5));
        assert_eq!(&buf[..5], b"hello");
        send(&server, b"back");
        assert_eq!(recv(&client, &mut buf), data(4));
        assert_eq!(&buf[..4], b"back");

        for fd in [&listener, &client, &server] {
            let flags = rustix::io::fcntl_getfd(fd).expect("F_GETFD");
            assert!(flags.contains(FdFlags::CLOEXEC));
            let fl = rustix::fs::fcntl_getfl(fd).expect("F_GETFL");
            assert!(fl.contains(OFlags::NONBLOCK));
        }
    }

    #[test]
    fn unknown_peer_pid_reads_as_zero() {
        let _g = shared();
        // An unconnected socket has no peer: the kernel reports pid 0, as it does for a peer
        // outside this pid namespace.
        let fd = new_socket().expect("socket");
        assert_eq!(peer_credentials(&fd).expect("SO_PEERCRED").pid, 0);
    }

    #[test]
    fn name_in_use_refused_and_released() {
        let _g = shared();
        let name = AbstractAddr::new(unique_group("name").as_bytes()).expect("addr");
        let addr = name.as_unix_addr().clone();
        let refused = connect(&addr).expect_err("nobody listens");
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);

        let first = listen(&addr).expect("first listen");
        let taken = listen(&addr).expect_err("name is taken");
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
        // A padded name is a different socket (documented in addr).
        let mut padded = name.name().to_vec();
        padded.push(0);
        let padded = AbstractAddr::new(&padded).expect("short name");
        let _other = listen(padded.as_unix_addr()).expect("padded name is distinct");

        drop(first);
        let refused = connect(&addr).expect_err("listener gone");
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        let _again = listen(&addr).expect("name released when the listener fd closed");
    }

    #[test]
    fn connect_with_full_backlog_would_block() {
        let _g = shared();
        let addr = test_addr(&unique_group("backlog"));
        let listener = listen(&addr).expect("listen");
        let mut pending = Vec::new();
        let err = loop {
            match connect(&addr) {
                Ok(fd) => pending.push(fd),
                Err(e) => break e,
            }
            assert!(pending.len() <= 1000, "backlog never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(pending.len(), LISTEN_BACKLOG as usize + 1);
        // Accepting one makes room again.
        let _accepted = accept(&listener).expect("accept").expect("pending");
        let _late = connect(&addr).expect("room after accept");

        // Pending connections see a reset, then end of stream, when the listener closes.
        drop(listener);
        let mut buf = [0u8; 4];
        assert_eq!(recv(&pending[1], &mut buf), Recv::Closed);
    }

    #[test]
    fn record_boundaries_and_truncation() {
        let _g = shared();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        let mut buf = [0u8; 10];
        assert_eq!(recv(&b, &mut buf), Recv::WouldBlock);

        send(&a, b"a");
        send(&a, b"bc");
        let long: Vec<u8> = (0..100).collect();
        send(&a, &long);
        send(&a, b"def");

        assert_eq!(recv(&b, &mut buf), data(1));
        assert_eq!(&buf[..1], b"a");
        assert_eq!(recv(&b, &mut buf), data(2));
        assert_eq!(&buf[..2], b"bc");
        assert_eq!(
            recv(&b, &mut buf),
            Recv::Data {
                len: 10,
                record_len: 100,
                truncated: true,
                fds: 0,
                fds_truncated: false
            }
        );
        assert_eq!(&buf[..], &long[..10]);
        assert_eq!(
            recv(&b, &mut buf),
            data(3),
            "the rest of the long record is gone"
        );
        assert_eq!(&buf[..3], b"def");
        assert_eq!(recv(&b, &mut buf), Recv::WouldBlock);
    }

    #[test]
    fn empty_buffer_sees_lengths_only() {
        let _g = shared();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        send(&a, b"xyz");
        let r = recv(&b, &mut []);
        assert_eq!(
            r,
            Recv::Data {
                len: 0,
                record_len: 3,
                truncated: true,
                fds: 0,
                fds_truncated: false
            }
        );
    }

    #[test]
    fn send_rejects_empty_and_too_many_fds() {
        let _g = shared();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        let err = send_record(&a, &[], &[]).expect_err("empty record");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let many = vec![a.as_fd(); SCM_MAX_FD + 1];
        let err = send_record(&a, b"x", &many).expect_err("too many fds");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let mut buf = [0u8; 4];
        assert_eq!(recv(&b, &mut buf), Recv::WouldBlock, "nothing was sent");

        // Exactly SCM_MAX_FD is fine.
        let max = vec![a.as_fd(); SCM_MAX_FD];
        assert_eq!(send_record(&a, b"x", &max).expect("send"), Sent::Complete);
        let mut fds = Vec::new();
        let r = recv_record(&b, &mut buf, &mut fds, SCM_MAX_FD).expect("recv");
        assert_eq!(
            r,
            Recv::Data {
                len: 1,
                record_len: 1,
                truncated: false,
                fds: SCM_MAX_FD,
                fds_truncated: false
            }
        );
        assert_eq!(fds.len(), SCM_MAX_FD);
    }

    #[test]
    fn passed_fds_work_and_are_cloexec() {
        let _g = shared();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        let (pipe_r, pipe_w) = std::io::pipe().expect("pipe");
        let (other_a, other_b) = socketpair_seqpacket().expect("socketpair");
        assert_eq!(
            send_record(&a, b"fds", &[pipe_w.as_fd(), other_a.as_fd()]).expect("send"),
            Sent::Complete
        );
        drop(pipe_w);
        drop(other_a);

        let mut buf = [0u8; 8];
        let mut fds = Vec::new();
        let r = recv_record(&b, &mut buf, &mut fds, 4).expect("recv");
        assert_eq!(
            r,
            Recv::Data {
                len: 3,
                record_len: 3,
                truncated: false,
                fds: 2,
                fds_truncated: false
            }
        );
        for fd in &fds {
            let flags = rustix::io::fcntl_getfd(fd).expect("F_GETFD");
            assert!(flags.contains(FdFlags::CLOEXEC));
        }
        let mut fds = fds.into_iter();
        let got_w = fds.next().expect("pipe writer");
        let got_sock = fds.next().expect("socket");
        rustix::io::write(&got_w, b"via pipe").expect("write to received pipe");
        let mut out = [0u8; 8];
        assert_eq!(rustix::io::read(&pipe_r, &mut out).expect("read pipe"), 8);
        assert_eq!(&out, b"via pipe");
        send(&got_sock, b"via sock");
        assert_eq!(recv(&other_b, &mut out), data(8));
        assert_eq!(&out, b"via sock");
    }

    #[test]
    fn too_few_fd_slots_truncate_without_leaks() {
        let _g = exclusive();
        let before = open_fds();
        {
            let (a, b) = socketpair_seqpacket().expect("socketpair");
            let sent: Vec<OwnedFd> = (0..5).map(|_| rustix::io::dup(&a).expect("dup")).collect();
            let borrowed: Vec<BorrowedFd<'_>> = sent.iter().map(AsFd::as_fd).collect();
            let mut buf = [0u8; 4];
            for max_fds in [2, 1, 0] {
                assert_eq!(
                    send_record(&a, b"five", &borrowed).expect("send"),
                    Sent::Complete
                );
                let mut fds = Vec::new();
                let r = recv_record(&b, &mut buf, &mut fds, max_fds).expect("recv");
                assert_eq!(
                    r,
                    Recv::Data {
                        len: 4,
                        record_len: 4,
                        truncated: false,
                        fds: max_fds,
                        fds_truncated: true
                    }
                );
                assert_eq!(fds.len(), max_fds);
            }
            // Truncated bytes and fds together.
            assert_eq!(
                send_record(&a, b"five", &borrowed).expect("send"),
                Sent::Complete
            );
            let mut fds = Vec::new();
            let r = recv_record(&b, &mut buf[..2], &mut fds, 3).expect("recv");
            assert_eq!(
                r,
                Recv::Data {
                    len: 2,
                    record_len: 4,
                    truncated: true,
                    fds: 3,
                    fds_truncated: true
                }
            );
            // Unread records with fds are cleaned up by the kernel when the socket closes.
            assert_eq!(
                send_record(&a, b"left", &borrowed).expect("send"),
                Sent::Complete
            );
        }
        assert_eq!(open_fds(), before, "no fd leaked");
    }

    #[test]
    fn empty_record_while_peer_alive_is_data() {
        let _g = shared();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        let mut buf = [0u8; 4];
        send_empty(&a);
        assert_eq!(recv(&b, &mut buf), data(0));
        assert_eq!(recv(&b, &mut buf), Recv::WouldBlock);

        // Empty record, then a real one, then the peer leaves: nothing is lost.
        send_empty(&a);
        send(&a, b"x");
        drop(a);
        assert_eq!(recv(&b, &mut buf), data(0));
        assert_eq!(recv(&b, &mut buf), data(1));
        assert_eq!(recv(&b, &mut buf), Recv::Closed);
        assert_eq!(recv(&b, &mut buf), Recv::Closed, "end of stream is sticky");
    }

    #[test]
    fn trailing_empty_record_of_departed_peer_reads_as_closed() {
        let _g = shared();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        send(&a, b"last");
        send_empty(&a);
        drop(a);
        let mut buf = [0u8; 8];
        assert_eq!(recv(&b, &mut buf), data(4));
        // Documented loss: indistinguishable from end of stream.
        assert_eq!(recv(&b, &mut buf), Recv::Closed);
    }

    #[test]
    fn fd_only_empty_record_is_data() {
        let _g = shared();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        // A foreign peer may attach fds to an empty record; the fds prove it is a record.
        send_raw(&a, &[], &[a.as_fd()]);
        drop(a);
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        let r = recv_record(&b, &mut buf, &mut fds, 1).expect("recv");
        assert_eq!(
            r,
            Recv::Data {
                len: 0,
                record_len: 0,
                truncated: false,
                fds: 1,
                fds_truncated: false
            }
        );
        drop(fds);
        // ...and without room for the fd, MSG_CTRUNC still proves it.
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        send_raw(&a, &[], &[a.as_fd()]);
        drop(a);
        let r = recv(&b, &mut buf);
        assert_eq!(
            r,
            Recv::Data {
                len: 0,
                record_len: 0,
                truncated: false,
                fds: 0,
                fds_truncated: true
            }
        );
        assert_eq!(recv(&b, &mut buf), Recv::Closed);
    }

    #[test]
    fn reset_is_swallowed_and_last_records_arrive() {
        let _g = shared();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        send(&b, b"never read by a");
        send(&a, b"bye");
        drop(a);
        let mut buf = [0u8; 8];
        assert_eq!(recv(&b, &mut buf), data(3));
        assert_eq!(&buf[..3], b"bye");
        assert_eq!(recv(&b, &mut buf), Recv::Closed);
        let err = send_record(&b, b"x", &[]).expect_err("peer gone");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn send_would_block_when_full_and_size_limits() {
        let _g = shared();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        let mut queued = 0usize;
        while send_record(&a, &[7u8; 64], &[]).expect("send") == Sent::Complete {
            queued += 1;
            assert!(queued < 100_000, "send buffer never filled");
        }
        assert!(queued > 10, "only {queued} records fit");
        let mut buf = [0u8; 64];
        assert_eq!(recv(&b, &mut buf), data(64));
        assert_eq!(
            send_record(&a, &[7u8; 64], &[]).expect("send"),
            Sent::Complete
        );

        let (a, b) = socketpair_seqpacket().expect("socketpair");
        let max = max_record_len(&a).expect("max record");
        let big = vec![1u8; max + 1];
        assert_eq!(
            send_record(&a, &big[..max], &[]).expect("send max"),
            Sent::Complete
        );
        let err = send_record(&a, &big, &[]).expect_err("one byte too many");
        assert_eq!(err.raw_os_error(), Some(Errno::MSGSIZE.raw_os_error()));
        let mut buf = vec![0u8; max + 1];
        assert_eq!(recv(&b, &mut buf), data(max));

        let requested = 64 * 1024;
        let effective = set_send_buffer(&a, requested).expect("set SO_SNDBUF");
        assert!(effective >= requested);
        assert_eq!(
            max_record_len(&a).expect("max"),
            effective - RECORD_OVERHEAD
        );
        let effective = set_recv_buffer(&a, requested).expect("set SO_RCVBUF");
        assert!(effective >= requested);
        assert_eq!(recv_buffer(&a).expect("SO_RCVBUF"), effective);
    }
}
