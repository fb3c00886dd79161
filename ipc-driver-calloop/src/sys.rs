//! The few system calls this driver needs, through `rustix` (calloop's own system layer).
//!
//! Everything is safe `rustix` except mapping memory: [`Mapping`] and [`MappingMut`] hold the
//! crate's only `unsafe` blocks, each with its reason.
//!
//! Sockets are `SOCK_SEQPACKET`, non-blocking and close-on-exec, like the std driver's, so
//! nodes of both drivers meet in one group; where they meet (listen, connect, the hub's lock)
//! is `ipc_os::rendezvous`, shared with the std driver. Records are never empty
//! (every frame has a length header), so a zero-length read without fds is the end of the
//! stream.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Instant;

use ipc_proto::Credentials;
use ipc_proto::data::Seals;
use rustix::event::epoll;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags,
};
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

/// Most fds one received record may carry; one is the protocol's maximum, a second tells a
/// violation from a truncation.
pub(crate) const MAX_FDS: usize = 2;

/// The `tmpfs` magic number `fstatfs` reports for a memfd.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Accepts one pending connection with its peer's credentials; `None` when none is pending.
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<Option<(OwnedFd, Credentials)>> {
    loop {
        match rustix::net::accept_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
            Ok(fd) => {
                let cred = peer_credentials(fd.as_fd())?;
                return Ok(Some((fd, cred)));
            }
            Err(Errno::INTR | Errno::CONNABORTED) => {}
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) use ipc_os::rendezvous::peer_credentials;

/// Sets `SO_SNDBUF` (a data link's bytes in flight).
pub(crate) fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_send_buffer_size(
        fd, bytes,
    )?)
}

/// Whether a record went out.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(crate) enum Sent {
    Complete,
    /// The socket is full: nothing was sent.
    WouldBlock,
}

/// Sends one record, with `fds` passed as `SCM_RIGHTS`.
pub(crate) fn send_record(
    fd: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<Sent> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many fds for one record",
        ));
    }
    let iov = [io::IoSlice::new(bytes)];
    loop {
        match rustix::net::sendmsg(
            fd,
            &iov,
            &mut control,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Ok(n) if n == bytes.len() => return Ok(Sent::Complete),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "sent {n} of {} bytes: not a SOCK_SEQPACKET socket",
                    bytes.len()
                )));
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(Sent::WouldBlock),
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a read found.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(crate) enum Recv {
    /// One record: its first `len` bytes are in the buffer.
    Data {
        len: usize,
        /// It was longer than the buffer (the rest is discarded).
        truncated: bool,
        /// It carried more fds than asked for (the kernel closed the rest).
        fds_truncated: bool,
    },
    /// The peer has gone and everything it sent has been read.
    Closed,
    /// Nothing to read now.
    WouldBlock,
}

/// Receives one record into `buf`, its fds (at most `max_fds`) into `fds`.
pub(crate) fn recv_record(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    max_fds: usize,
) -> io::Result<Recv> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let room = if max_fds == 0 {
        0
    } else {
        rustix::cmsg_space!(ScmRights(max_fds.min(MAX_FDS)))
    };
    let mut reset_seen = false;
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space[..room]);
        let mut iov = [io::IoSliceMut::new(buf)];
        let flags = RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
        match rustix::net::recvmsg(fd, &mut iov, &mut control, flags) {
            Ok(msg) => {
                let before = fds.len();
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = m {
                        fds.extend(received);
                    }
                }
                let fds_truncated = msg.flags.contains(ReturnFlags::CTRUNC);
                if msg.bytes == 0 && fds.len() == before && !fds_truncated {
                    return Ok(Recv::Closed);
                }
                return Ok(Recv::Data {
                    len: msg.bytes.min(buf.len()),
                    truncated: msg.flags.contains(ReturnFlags::TRUNC) || msg.bytes > buf.len(),
                    fds_truncated,
                });
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(Recv::WouldBlock),
            // The peer closed with our records unread; its own records may still be queued
            // behind the error (a goodbye, say): keep reading them.
            Err(Errno::CONNRESET) if !reset_seen => reset_seen = true,
            Err(e) => return Err(e.into()),
        }
    }
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

// ---- memfd segments ----

/// A new memfd of `len` bytes, sealable, close-on-exec, never executable.
pub(crate) fn memfd(name: &str, len: usize) -> io::Result<OwnedFd> {
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = match rustix::fs::memfd_create(name, flags | MemfdFlags::NOEXEC_SEAL) {
        Ok(fd) => fd,
        // Kernels before 6.3 do not know NOEXEC_SEAL.
        Err(Errno::INVAL) => rustix::fs::memfd_create(name, flags)?,
        Err(e) => return Err(e.into()),
    };
    retry(|| Ok(rustix::fs::ftruncate(&fd, len as u64)?))?;
    Ok(fd)
}

/// Seals a fresh segment for good: no write, no resize, no more seals.
pub(crate) fn seal_fresh(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
    Ok(rustix::fs::fcntl_add_seals(fd, seals)?)
}

/// Seals a pool segment: no resize, no new writable mapping (ours stays), no more seals.
pub(crate) fn seal_pooled(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL;
    Ok(rustix::fs::fcntl_add_seals(fd, seals)?)
}

/// A received fd, checked to be a memfd that cannot shrink: its size and seals, for the
/// data plane to judge.
pub(crate) fn inspect(fd: BorrowedFd<'_>) -> io::Result<(u64, Seals)> {
    let not_memfd = || io::Error::new(io::ErrorKind::InvalidData, "not a memfd");
    let fs = rustix::fs::fstatfs(fd)?;
    #[allow(clippy::useless_conversion)] // `f_type` is narrower on some targets
    if i64::from(fs.f_type) != TMPFS_MAGIC {
        return Err(not_memfd());
    }
    // Seals before size: once SHRINK is seen, the size read below is a lower bound forever.
    let have = match rustix::fs::fcntl_get_seals(fd) {
        Ok(s) => s,
        Err(Errno::INVAL) => return Err(not_memfd()),
        Err(e) => return Err(e.into()),
    };
    if !have.contains(SealFlags::SHRINK) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a memfd that can shrink",
        ));
    }
    let stat = rustix::fs::fstat(fd)?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(not_memfd());
    }
    let seals = Seals {
        shrink: true,
        grow: have.contains(SealFlags::GROW),
        write: have.contains(SealFlags::WRITE),
        future_write: have.contains(SealFlags::FUTURE_WRITE),
    };
    Ok((u64::try_from(stat.st_size).unwrap_or(0), seals))
}

/// A read-only shared mapping of a whole segment.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the pointer is never handed out
// mutably, so sharing or moving it between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only gives `&[u8]`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, which [`inspect`] found to be a memfd of at least
    /// `len` bytes that cannot shrink (so no access can fault with `SIGBUS`).
    pub(crate) fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Ok(Self {
                ptr: NonNull::dangling(),
                len,
            });
        }
        // SAFETY: a new mapping at an address the kernel picks: no existing memory is
        // affected; the result is checked before use and unmapped only in `drop`.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self { ptr, len })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is mapped readable for the life of `self` (or `len` is 0 and
        // `ptr` dangling but aligned, which an empty slice allows). The segment cannot shrink,
        // so the pages stay backed. A pool segment's publisher may still write them (by
        // protocol it does not while we hold the range); the bytes are then unspecified but
        // never a memory-safety issue for `u8`, which every bit pattern inhabits.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: exactly the range `map` mapped; no slice of it outlives `self`.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// A writable shared mapping of a segment this node created.
#[derive(Debug)]
pub(crate) struct MappingMut {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: as for `Mapping`; mutable access goes through `&mut self` only.
unsafe impl Send for MappingMut {}
// SAFETY: `&MappingMut` gives `&[u8]` only.
unsafe impl Sync for MappingMut {}

impl MappingMut {
    /// Maps all `len` bytes of a memfd this node created (and has not sealed against writes).
    pub(crate) fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Ok(Self {
                ptr: NonNull::dangling(),
                len,
            });
        }
        // SAFETY: as in `Mapping::map`.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self { ptr, len })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: mapped readable and writable for the life of `self` (or empty); shared
        // access only, through `&self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// `len` bytes at `offset` (within the mapping; panics otherwise).
    pub(crate) fn range_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: in bounds (asserted); the memfd is this node's and cannot shrink once
        // sealed (before then nobody else has it); `&mut self` makes the slice exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }
}

impl Drop for MappingMut {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: exactly the range `map` mapped; loans hold the mapping alive (`Arc`).
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

// ---- the readiness set and the timer ----

/// The node's own `epoll` set: every socket of the node and its timer, behind one fd that
/// calloop watches. Links come and go without re-registering anything with calloop.
pub(crate) struct Epoll {
    fd: OwnedFd,
    events: Vec<epoll::Event>,
}

impl std::fmt::Debug for Epoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoll").field("fd", &self.fd).finish()
    }
}

/// Interest in a socket.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(crate) struct Interest {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            fd: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            events: Vec::with_capacity(64),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn flags(i: Interest) -> epoll::EventFlags {
        let mut f = epoll::EventFlags::empty();
        if i.read {
            f |= epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        }
        if i.write {
            f |= epoll::EventFlags::OUT;
        }
        f
    }

    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: u64, i: Interest) -> io::Result<()> {
        Ok(epoll::add(
            &self.fd,
            fd,
            epoll::EventData::new_u64(key),
            Self::flags(i),
        )?)
    }

    pub(crate) fn modify(&self, fd: BorrowedFd<'_>, key: u64, i: Interest) -> io::Result<()> {
        Ok(epoll::modify(
            &self.fd,
            fd,
            epoll::EventData::new_u64(key),
            Self::flags(i),
        )?)
    }

    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.fd, fd);
    }

    /// What is ready now, without waiting: `(key, readable or hung up, writable)`.
    pub(crate) fn ready(&mut self) -> io::Result<Vec<(u64, bool, bool)>> {
        self.events.clear();
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match epoll::wait(
            &self.fd,
            rustix::buffer::spare_capacity(&mut self.events),
            Some(&zero),
        ) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        use epoll::EventFlags as F;
        Ok(self
            .events
            .iter()
            .map(|e| {
                let f = e.flags;
                let read = f.intersects(F::IN | F::HUP | F::RDHUP | F::ERR);
                (e.data.u64(), read, f.contains(F::OUT))
            })
            .collect())
    }
}

/// A `timerfd` in the node's set: armed for the earliest deadline the node has.
#[derive(Debug)]
pub(crate) struct Timer {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl Timer {
    pub(crate) fn new() -> io::Result<Self> {
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self { fd, armed: None })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Clears the expiration count after the timer fired.
    pub(crate) fn clear(&mut self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
        self.armed = None;
    }

    /// Arms the timer for `deadline` (disarms it for `None`). The timer only ever moves
    /// earlier or to a new deadline after it fired, so most calls make no system call: firing
    /// early is harmless, since machines ignore early timeouts.
    pub(crate) fn arm(&mut self, now: Instant, deadline: Option<Instant>) -> io::Result<()> {
        let Some(deadline) = deadline else {
            return Ok(());
        };
        if self.armed.is_some_and(|a| a <= deadline) {
            return Ok(());
        }
        // A zero `it_value` disarms: fire in at least a nanosecond.
        let after = deadline
            .saturating_duration_since(now)
            .max(std::time::Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(after.subsec_nanos()),
            },
        };
        rustix::time::timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec)?;
        self.armed = Some(deadline);
        Ok(())
    }
}
