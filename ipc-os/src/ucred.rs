//! `SO_PEERCRED` through `libc`: the one system call of this crate not made through `rustix`.
//!
//! `rustix::net::sockopt::socket_peercred` returns the pid as a `Pid`, which cannot be 0, but
//! the kernel reports pid 0 for a peer whose process is not visible in the reader's pid
//! namespace (a peer in a sibling container, say): reading that into a `Pid` would be
//! undefined behaviour. So the `ucred` is read here, as plain integers.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The raw `struct ucred` of a connected Unix socket: `(pid, uid, gid)`; pid may be 0.
pub(crate) fn peer_ucred(fd: BorrowedFd<'_>) -> io::Result<(i32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len =
        libc::socklen_t::try_from(size_of::<libc::ucred>()).expect("struct ucred is 12 bytes");
    // SAFETY: `cred` is a live, writable `struct ucred` and `len` holds its size, so the
    // kernel writes at most `len` bytes into it; every bit pattern is a valid `ucred` (three
    // integers). `fd` is borrowed, hence open, for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid, cred.uid, cred.gid))
}
