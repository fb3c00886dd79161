//! Knowing that a peer's process is dead instead of waiting for it: pidfds (Linux 5.3+).
//!
//! A pidfd refers to one process, not to a pid number, and becomes readable the moment that
//! process exits, however it died (SIGKILL included). [`PidFd::open_peer`] opens one for the
//! process at the other end of a connected Unix socket, so a driver can register it next to the
//! socket and report the peer's death as soon as the kernel knows it.
//!
//! # Opening without pid reuse
//! `SO_PEERCRED` reports a pid *number*, which the kernel may hand to a new process once the
//! peer has exited; a pidfd opened from a reused number would watch a stranger, and the
//! stranger's death (or life) would be mistaken for the peer's. [`PidFd::open_peer`] therefore:
//! 1. reads the peer's pid with `SO_PEERCRED`; pid 0 means the peer is not visible in our pid
//!    namespace: [`Unavailable::PidNotVisible`];
//! 2. asks for `SO_PEERPIDFD` (Linux 6.5+), a pidfd taken from the socket's own reference to
//!    the peer's process: no number is looked up, so reuse cannot intervene;
//! 3. only where that fails (older kernels), calls `pidfd_open(pid, 0)` and checks the result:
//!    `ESRCH` means no process has that pid any more, so the peer has exited; a pidfd that is
//!    readable at once means the process with that pid has exited, which the peer has too
//!    (whether it was the peer, or a stranger that could only have the number after the peer
//!    exited); otherwise the socket's other end must still be open (no `POLLHUP`/`POLLRDHUP`)
//!    *after* the open: the peer then held it after we opened, so it was alive and the number
//!    was still its own. If the other end is already closed, the pidfd cannot be tied to the
//!    peer: [`Unavailable::Unverifiable`]. (Re-reading `SO_PEERCRED` would prove nothing: the
//!    kernel fixes it at `connect` and never changes it.) The one case this cannot see: the
//!    peer passed its end of the socket to another process (or forked), exited, and its pid was
//!    reused, all before step 3. Kernels with `SO_PEERPIDFD` have no such case.
//! 4. polls the pidfd with a zero timeout: readable means the peer has already exited
//!    ([`PeerProcess::AlreadyExited`]), so no pidfd of a dead process is handed out.
//!
//! Everything else makes the pidfd [`Unavailable`], with the reason; the driver then falls back
//! to what it does without one (the protocol's grace period).
//!
//! # Registering
//! A [`PidFd`] is an fd ([`AsFd`], [`AsRawFd`]): register it for readability
//! ([`Interest::READABLE`](crate::poll::Interest::READABLE) in a
//! [`Poller`](crate::poll::Poller), or a calloop `Generic` source). Readable means the process
//! has exited. It never becomes unreadable again, and epoll is level-triggered, so a driver
//! reports the death once, then deregisters the pidfd (before dropping it) and drops it.
//!
//! # Switching pidfds off
//! Set the environment variable [`NO_PIDFD_ENV`] (`IPC_PUBSUB_NO_PIDFD`) to `1` (any value but
//! empty or `0`) in a process, and every [`PidFd::open_peer`] there returns
//! [`Unavailable::Disabled`]: the process behaves as on a kernel without pidfds. It is read
//! once, at the first open. `ipc-pubsub bench topology` uses it to measure what the grace
//! period costs.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};

use crate::retry_eintr;

/// The environment variable that switches pidfds off for a process: `IPC_PUBSUB_NO_PIDFD=1`.
///
/// Any value other than empty or `0` switches them off. See the [module docs](self).
pub const NO_PIDFD_ENV: &str = "IPC_PUBSUB_NO_PIDFD";

/// Whether [`NO_PIDFD_ENV`] switches pidfds off in this process; read once, then fixed.
pub fn pidfds_disabled() -> bool {
    static DISABLED: OnceLock<bool> = OnceLock::new();
    *DISABLED.get_or_init(|| disabled_by(std::env::var_os(NO_PIDFD_ENV).as_deref()))
}

/// Whether a value of [`NO_PIDFD_ENV`] switches pidfds off.
fn disabled_by(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// A process, as an fd that becomes readable when the process exits (a pidfd; close-on-exec).
///
/// Made by [`PidFd::open_peer`]. See the [module docs](self) for registering it.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: u32,
}

/// What [`PidFd::open_peer`] found out about a socket's peer process.
#[derive(Debug)]
#[must_use]
pub enum PeerProcess {
    /// The peer process is alive; the pidfd becomes readable when it exits.
    Watch(PidFd),
    /// The peer process has already exited: its death is certain now.
    AlreadyExited,
    /// No pidfd, and no certainty either way: fall back to waiting (the grace period).
    Unavailable(Unavailable),
}

impl PeerProcess {
    /// The pidfd, if there is one to watch.
    pub fn into_pidfd(self) -> Option<PidFd> {
        match self {
            Self::Watch(p) => Some(p),
            Self::AlreadyExited | Self::Unavailable(_) => None,
        }
    }
}

/// Why [`PidFd::open_peer`] has no pidfd for a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// Switched off by [`NO_PIDFD_ENV`].
    #[error("pidfds are switched off ({NO_PIDFD_ENV})")]
    Disabled,
    /// `SO_PEERCRED` reports pid 0: the peer is in a pid namespace we cannot see into (or the
    /// socket has no peer).
    #[error("the peer's pid is not visible in this pid namespace")]
    PidNotVisible,
    /// `ENOSYS`: the kernel has no `pidfd_open` (before Linux 5.3), or a seccomp filter
    /// pretends so.
    #[error("this kernel has no pidfd_open")]
    Unsupported,
    /// `EPERM` or `EACCES`: a seccomp filter or security module refused.
    #[error("pidfd_open is not permitted here")]
    NotPermitted,
    /// Only on kernels without `SO_PEERPIDFD`: the peer's end of the socket was already
    /// closed, so the process found under its pid cannot be told from a successor with the
    /// same pid.
    #[error("the peer's end of the socket is closed: its pid cannot be verified")]
    Unverifiable,
    /// Any other error, with its errno (`EMFILE`, say).
    #[error("pidfd_open failed: os error {errno}")]
    Failed {
        /// The errno.
        errno: i32,
    },
}

/// How [`open_peer`] gets its pidfd: the production order, or the fallback alone (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `SO_PEERPIDFD`, else `pidfd_open` with verification.
    PeerPidfd,
    /// `pidfd_open` with verification only, as on kernels before 6.5.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "tests take the fallback on any kernel")
    )]
    PidOpen,
}

impl PidFd {
    /// A pidfd for the process at the other end of the connected Unix socket `socket`, checked
    /// against pid reuse, or why there is none; see the [module docs](self). Never blocks.
    pub fn open_peer(socket: impl AsFd) -> PeerProcess {
        open_peer(socket.as_fd(), pidfds_disabled(), Via::PeerPidfd)
    }

    /// The process's pid, in this process's pid namespace.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has exited (the pidfd is readable); never blocks.
    pub fn has_exited(&self) -> io::Result<bool> {
        Ok(is_ready(self.fd.as_fd(), PollFlags::IN)?)
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<PidFd> for OwnedFd {
    fn from(p: PidFd) -> Self {
        p.fd
    }
}

/// Whether `fd` reports any of `flags` (or `POLLHUP`/`POLLERR`) right now.
fn is_ready(fd: BorrowedFd<'_>, flags: PollFlags) -> rustix::io::Result<bool> {
    let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let n = retry_eintr(|| rustix::event::poll(&mut fds, Some(&zero)))?;
    Ok(n > 0 && !fds[0].revents().is_empty())
}

fn errno_of(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw_os_error)
}

fn open_peer(socket: BorrowedFd<'_>, disabled: bool, via: Via) -> PeerProcess {
    if disabled {
        return PeerProcess::Unavailable(Unavailable::Disabled);
    }
    let pid = match crate::ucred::peer_ucred(socket) {
        Ok((pid, _, _)) => pid,
        Err(e) => return failed(&e),
    };
    let Some(raw) = u32::try_from(pid).ok().filter(|&p| p != 0) else {
        return PeerProcess::Unavailable(Unavailable::PidNotVisible);
    };
    if via == Via::PeerPidfd {
        // Any failure (ENOPROTOOPT before 6.5, EINVAL/ESRCH for a reaped peer before 6.15)
        // leaves the decision to the checked fallback.
        if let Ok(fd) = crate::ucred::peer_pidfd(socket) {
            return checked(PidFd { fd, pid: raw });
        }
    }
    let Some(p) = Pid::from_raw(pid) else {
        return PeerProcess::Unavailable(Unavailable::PidNotVisible);
    };
    match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => {
            let pidfd = PidFd { fd, pid: raw };
            match pidfd.has_exited() {
                // The process with that pid has exited: the peer too (see the module docs).
                Ok(true) => return PeerProcess::AlreadyExited,
                Ok(false) => {}
                Err(e) => return failed(&e),
            }
            let hup = PollFlags::RDHUP | PollFlags::HUP;
            match is_ready(socket, hup) {
                // The peer's end was open after the open: the pid was still the peer's.
                Ok(false) => PeerProcess::Watch(pidfd),
                Ok(true) => PeerProcess::Unavailable(Unavailable::Unverifiable),
                Err(e) => failed(&e.into()),
            }
        }
        // No process has the peer's pid any more: the peer has exited.
        Err(Errno::SRCH) => PeerProcess::AlreadyExited,
        Err(e) => failed(&e.into()),
    }
}

/// `pidfd` if its process is alive, else `AlreadyExited`.
fn checked(pidfd: PidFd) -> PeerProcess {
    match pidfd.has_exited() {
        Ok(false) => PeerProcess::Watch(pidfd),
        Ok(true) => PeerProcess::AlreadyExited,
        Err(e) => failed(&e),
    }
}

fn failed(e: &io::Error) -> PeerProcess {
    PeerProcess::Unavailable(match errno_of(e) {
        Some(Errno::NOSYS) => Unavailable::Unsupported,
        Some(Errno::PERM | Errno::ACCESS) => Unavailable::NotPermitted,
        Some(errno) => Unavailable::Failed {
            errno: errno.raw_os_error(),
        },
        None => Unavailable::Failed { errno: 0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::AbstractAddr;
    use crate::poll::{Events, Interest, Poller, Token};
    use crate::socket::{accept, connect, listen, socketpair_seqpacket};
    use crate::testutil::{shared, unique_group};
    use std::io::Read;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// Set in the peer process of the multi-process tests: the abstract name to connect to.
    const PEER_ENV: &str = "IPC_OS_PIDFD_TEST_PEER";
    /// Generous: only a broken kernel or a stuck machine takes this long.
    const DEADLINE: Duration = Duration::from_secs(30);
    const BOTH: [Via; 2] = [Via::PeerPidfd, Via::PidOpen];

    /// Not a test: the peer process of the multi-process tests, which run this test binary
    /// again with [`PEER_ENV`] set. It connects, then blocks on stdin until it is killed (or
    /// its parent closes stdin). Without [`PEER_ENV`] it does nothing.
    #[test]
    #[ignore = "the peer process of the multi-process tests"]
    fn peer_process() {
        let Some(name) = std::env::var_os(PEER_ENV) else {
            return;
        };
        let addr = AbstractAddr::new(name.as_encoded_bytes()).expect("abstract name");
        let _socket = connect(addr.as_unix_addr()).expect("connect to the test");
        let _ = std::io::stdin().read(&mut [0u8; 1]);
    }

    /// Set in the process of [`a_peer_outside_our_pid_namespace_is_not_visible`]: the
    /// abstract name to connect to.
    const NS_ENV: &str = "IPC_OS_PIDFD_TEST_NS";

    /// Not a test: runs in a pid namespace of its own, started by
    /// [`a_peer_outside_our_pid_namespace_is_not_visible`]. It connects to the test, whose
    /// process it cannot see, and checks that no pidfd is opened for it. Without [`NS_ENV`] it
    /// does nothing.
    #[test]
    #[ignore = "the process of the pid namespace test"]
    fn in_own_pid_namespace() {
        let Some(name) = std::env::var_os(NS_ENV) else {
            return;
        };
        let addr = AbstractAddr::new(name.as_encoded_bytes()).expect("abstract name");
        let socket = connect(addr.as_unix_addr()).expect("connect to the test");
        for via in BOTH {
            assert_eq!(
                unavailable(open_peer(socket.as_fd(), false, via)),
                Unavailable::PidNotVisible
            );
        }
    }

    /// A peer process, killed and reaped however the test ends.
    struct Peer {
        child: Child,
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts a peer process and returns it with our end of its connection.
    fn spawn_peer(tag: &str) -> (Peer, OwnedFd) {
        let name = unique_group(tag);
        let addr = AbstractAddr::new(name.as_bytes()).expect("abstract name");
        let listener = listen(addr.as_unix_addr()).expect("listen");
        let peer = Peer {
            child: Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", "pidfd::tests::peer_process", "--ignored"])
                .args(["--test-threads=1", "--quiet"])
                .env(PEER_ENV, &name)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn the peer process"),
        };
        let poller = Poller::new().expect("poller");
        poller
            .add(&listener, Token(0), Interest::READABLE)
            .expect("add");
        let mut events = Events::with_capacity(1);
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some((fd, creds)) = accept(&listener).expect("accept") {
                assert_eq!(creds.pid, peer.child.id(), "the peer process connected");
                return (peer, fd);
            }
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the peer process did not connect");
            poller.wait(&mut events, Some(left)).expect("wait");
        }
    }

    fn watch(p: PeerProcess) -> PidFd {
        match p {
            PeerProcess::Watch(p) => p,
            other => panic!("expected a pidfd, got {other:?}"),
        }
    }

    fn unavailable(p: PeerProcess) -> Unavailable {
        match p {
            PeerProcess::Unavailable(u) => u,
            other => panic!("expected no pidfd, got {other:?}"),
        }
    }

    #[test]
    fn a_killed_peer_makes_its_pidfd_readable() {
        let _g = shared();
        for via in BOTH {
            let (mut peer, socket) = spawn_peer("pidfd-kill");
            let pidfd = watch(open_peer(socket.as_fd(), false, via));
            assert_eq!(pidfd.pid(), peer.child.id(), "{via:?}");
            assert!(!pidfd.has_exited().expect("poll"), "{via:?}");
            let flags = rustix::io::fcntl_getfd(&pidfd).expect("F_GETFD");
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC), "{via:?}");

            let poller = Poller::new().expect("poller");
            poller
                .add(&pidfd, Token(1), Interest::READABLE)
                .expect("add");
            let mut events = Events::with_capacity(2);
            let n = poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait");
            assert_eq!(n, 0, "{via:?}: alive, not readable");

            peer.child.kill().expect("SIGKILL");
            let n = poller.wait(&mut events, Some(DEADLINE)).expect("wait");
            assert_eq!(n, 1, "{via:?}: readable within {DEADLINE:?} of the kill");
            let ev = events.iter().next().expect("one event");
            assert!(ev.token() == Token(1) && ev.is_readable(), "{via:?}");
            assert!(pidfd.has_exited().expect("poll"), "{via:?}");
            // It stays readable (level-triggered): a driver deregisters after reporting.
            let n = poller
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait");
            assert_eq!(n, 1, "{via:?}: still readable");
            poller.delete(&pidfd).expect("delete");

            // Dead but not reaped (a zombie), then reaped: no pidfd is handed out any more.
            assert!(matches!(
                open_peer(socket.as_fd(), false, via),
                PeerProcess::AlreadyExited
            ));
            peer.child.wait().expect("reap");
            assert!(
                matches!(
                    open_peer(socket.as_fd(), false, via),
                    PeerProcess::AlreadyExited
                ),
                "{via:?}: reaped"
            );
            // The pidfd outlives the process and still says so.
            assert!(pidfd.has_exited().expect("poll"), "{via:?}");
        }
    }

    #[test]
    fn the_own_process_is_watched_and_alive() {
        let _g = shared();
        // A socketpair's peer credentials are its creator's: this process.
        let (a, _b) = socketpair_seqpacket().expect("socketpair");
        for via in BOTH {
            let pidfd = watch(open_peer(a.as_fd(), false, via));
            assert_eq!(pidfd.pid(), std::process::id());
            assert!(!pidfd.has_exited().expect("poll"));
        }
        let pidfd = watch(PidFd::open_peer(&a));
        let raw = pidfd.as_raw_fd();
        assert_eq!(OwnedFd::from(pidfd).as_raw_fd(), raw);
    }

    #[test]
    fn a_closed_peer_end_cannot_be_verified_without_so_peerpidfd() {
        let _g = shared();
        // The peer (this process) is alive but has closed its end: from its pid alone, the
        // process found could be a successor.
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        drop(b);
        assert_eq!(
            unavailable(open_peer(a.as_fd(), false, Via::PidOpen)),
            Unavailable::Unverifiable
        );
        // SO_PEERPIDFD names the process itself, on kernels that have it.
        if crate::ucred::peer_pidfd(a.as_fd()).is_ok() {
            let pidfd = watch(open_peer(a.as_fd(), false, Via::PeerPidfd));
            assert_eq!(pidfd.pid(), std::process::id());
        }
    }

    #[test]
    fn pid_zero_and_switched_off_are_unavailable() {
        let _g = shared();
        // An unconnected socket has no peer: SO_PEERCRED reads pid 0, as for a peer in a pid
        // namespace we cannot see.
        let lone = rustix::net::socket(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            None,
        )
        .expect("socket");
        for via in BOTH {
            assert_eq!(
                unavailable(open_peer(lone.as_fd(), false, via)),
                Unavailable::PidNotVisible
            );
        }
        let (a, _b) = socketpair_seqpacket().expect("socketpair");
        assert_eq!(
            unavailable(open_peer(a.as_fd(), true, Via::PeerPidfd)),
            Unavailable::Disabled
        );
        // Not a socket: the errno is kept.
        let poller = Poller::new().expect("poller");
        assert_eq!(
            unavailable(open_peer(poller.as_fd(), false, Via::PeerPidfd)),
            Unavailable::Failed {
                errno: Errno::NOTSOCK.raw_os_error()
            }
        );
    }

    #[test]
    fn a_peer_outside_our_pid_namespace_is_not_visible() {
        let _g = shared();
        // The listener is this process; the connecting process runs in a new pid namespace
        // (`unshare`, with a user namespace so that no privilege is needed), where this
        // process has no pid: its SO_PEERCRED reads pid 0.
        let name = unique_group("pidfd-ns");
        let addr = AbstractAddr::new(name.as_bytes()).expect("abstract name");
        let _listener = listen(addr.as_unix_addr()).expect("listen");
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new("unshare")
            .args(["--user", "--map-root-user", "--pid", "--fork"])
            .arg(exe)
            .args(["--exact", "pidfd::tests::in_own_pid_namespace", "--ignored"])
            .args(["--test-threads=1", "--quiet"])
            .env(NS_ENV, &name)
            .stdin(Stdio::null())
            .output();
        match out {
            // The test process panicked (101) or otherwise failed in the namespace.
            Ok(out) if out.status.code() != Some(0) && out.status.code() != Some(1) => {
                panic!(
                    "in a pid namespace of its own: {}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            Ok(out) if out.status.success() => {}
            // unshare itself failed (exit 1: not permitted here) or is not installed.
            other => eprintln!("skipped: cannot make a pid namespace here: {other:?}"),
        }
    }

    #[test]
    fn the_switch_reads_its_value() {
        assert!(!disabled_by(None));
        assert!(!disabled_by(Some(OsStr::new(""))));
        assert!(!disabled_by(Some(OsStr::new("0"))));
        assert!(disabled_by(Some(OsStr::new("1"))));
        assert!(disabled_by(Some(OsStr::new("yes"))));
    }

    #[test]
    fn errors_map_to_reasons() {
        let reason = |errno: Errno| unavailable(failed(&errno.into()));
        assert_eq!(reason(Errno::NOSYS), Unavailable::Unsupported);
        assert_eq!(reason(Errno::PERM), Unavailable::NotPermitted);
        assert_eq!(reason(Errno::ACCESS), Unavailable::NotPermitted);
        assert_eq!(
            reason(Errno::MFILE),
            Unavailable::Failed {
                errno: Errno::MFILE.raw_os_error()
            }
        );
    }
}
