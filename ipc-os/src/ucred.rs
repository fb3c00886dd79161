//! `SO_PEERCRED` and `SO_PEERPIDFD` through `libc`: the system calls of this crate not made
//! through `rustix`.
//!
//! `rustix::net::sockopt::socket_peercred` returns the pid as a `Pid`, which cannot be 0, but
//! the kernel reports pid 0 for a peer whose process is not visible in the reader's pid
//! namespace (a peer in a sibling container, say): reading that into a `Pid` would be
//! undefined behaviour. So the `ucred` is read here, as plain integers. `rustix` has no
//! `SO_PEERPIDFD` at all, so that one is read here too.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Types the kernel may fill with any bytes: every bit pattern is a valid value.
///
/// # Safety
/// Implement only for plain integers and structs of them, without padding invariants.
unsafe trait AnyBits: Copy {}

// SAFETY: three integers.
unsafe impl AnyBits for libc::ucred {}
// SAFETY: an integer.
unsafe impl AnyBits for libc::c_int {}

/// `getsockopt(SOL_SOCKET, opt)` into a `T`, starting from `value`: the value and the length
/// the kernel wrote.
fn socket_option<T: AnyBits>(
    fd: BorrowedFd<'_>,
    opt: libc::c_int,
    mut value: T,
) -> io::Result<(T, usize)> {
    let mut len = libc::socklen_t::try_from(size_of::<T>()).expect("a socket option is small");
    // SAFETY: `value` is a live, writable `T` and `len` holds its size, so the kernel writes
    // at most `len` bytes into it, and any bytes make a valid `T` (`AnyBits`). `fd` is
    // borrowed, hence open, for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = usize::try_from(len).map_err(|_| io::Error::other("socket option length"))?;
    Ok((value, len))
}

/// The raw `struct ucred` of a connected Unix socket: `(pid, uid, gid)`; pid may be 0.
pub(crate) fn peer_ucred(fd: BorrowedFd<'_>) -> io::Result<(i32, u32, u32)> {
    let blank = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let (cred, _) = socket_option(fd, libc::SO_PEERCRED, blank)?;
    Ok((cred.pid, cred.uid, cred.gid))
}

/// `SO_PEERPIDFD` (Linux 6.5+): a pidfd for the very process whose credentials `SO_PEERCRED`
/// reports, taken from the socket's own reference to it, so no pid is looked up and pid reuse
/// cannot intervene. Older kernels fail with `ENOPROTOOPT`; a peer whose process is already
/// reaped fails with `EINVAL` (or `ESRCH`) on kernels before 6.15, and yields a pidfd that is
/// readable at once on later ones.
pub(crate) fn peer_pidfd(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let (raw, len) = socket_option(fd, libc::SO_PEERPIDFD, -1 as libc::c_int)?;
    if raw < 0 || len != size_of::<libc::c_int>() {
        return Err(io::Error::other("SO_PEERPIDFD returned no fd"));
    }
    // SAFETY: on success the kernel installed a new fd (close-on-exec) in our table and gave us
    // its number; nothing else owns it, so it is ours to own and close exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
