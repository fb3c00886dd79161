//! Where a group meets on this host: its directory, the hub's lock and the sockets in it.
//!
//! The layout and the rules are [`ipc_proto::names`]'s, so that every driver agrees; this
//! module does the system calls: creating and checking the directories, `flock(2)` on the
//! hub's lock, binding, connecting, and removing the socket files this process made.
//!
//! A private group ([`GroupDir::private`]) lives in this user's runtime directory, which
//! other users cannot enter; a group opened to other users ([`GroupDir::shared`]) lives in a
//! directory the application names, whose permissions decide who reaches it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipc_proto::names::{self, DirProblem, DirStat, GroupError, GroupPaths};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::SocketAddrUnix;

use crate::socket;
pub use crate::socket::{LISTEN_BACKLOG, peer_credentials};

/// Why a group's directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RendezvousError {
    /// The group name, or the socket paths it makes, are not usable.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A directory that would hold a private group is not safe to use; it is left as it is.
    #[error("refusing to use {path}: {problem}")]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: DirProblem,
    },
    /// A directory could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A group's directory, created and checked: the place of its lock and sockets.
#[derive(Clone, Debug)]
pub struct GroupDir {
    paths: GroupPaths,
    /// Opened to other users: files are made accessible to everyone, the directory's
    /// permissions decide.
    shared: bool,
}

impl GroupDir {
    /// The directory of `group` for a node: in `base` when the application named one (a group
    /// opened to other users, see [`shared`](Self::shared)), else this user's private one (see
    /// [`private`](Self::private)). `private` says whether only this user may join: a group
    /// that lets others in without naming a directory they can reach is logged as a warning.
    pub fn open(group: &str, base: Option<&Path>, private: bool) -> Result<Self, RendezvousError> {
        match base {
            Some(base) => Self::shared(base, group),
            None => {
                if !private {
                    tracing::warn!(
                        group,
                        "the group allows other users, but its sockets are in this user's \
                         private directory, which they cannot enter: name a directory they can \
                         reach (NodeBuilder::dir, --dir)"
                    );
                }
                Self::private(group)
            }
        }
    }

    /// The directory of `group` among this user's private groups (see
    /// [`names::private_base`]): created with mode 0700 where missing, and refused (never
    /// changed) when it or its base is not a directory of this user's with no access for
    /// others.
    pub fn private(group: &str) -> Result<Self, RendezvousError> {
        let uid = rustix::process::geteuid().as_raw();
        // Without XDG_RUNTIME_DIR (cron, su, a service), the login session's directory still
        // holds the session's groups.
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                let login = names::login_runtime_dir(uid);
                check_private(&login, uid).is_ok().then_some(login)
            });
        let base = names::private_base(runtime.as_deref(), uid);
        let dir = Self {
            paths: GroupPaths::new(&base, group)?,
            shared: false,
        };
        dir.make()?;
        Ok(dir)
    }

    /// The directory of `group` in `base`, a directory the application names for a group
    /// opened to other users. `base` must exist; the group's directory is created in it with
    /// mode 0777 (the umask notwithstanding), so `base`'s own permissions decide who reaches
    /// the group.
    pub fn shared(base: &Path, group: &str) -> Result<Self, RendezvousError> {
        let paths = GroupPaths::new(base, group)?;
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RendezvousError::Io { path, source }
        };
        let meta = fs::metadata(base).map_err(io_err(base))?;
        if !meta.is_dir() {
            return Err(RendezvousError::Io {
                path: base.to_owned(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let dir = Self {
            paths,
            shared: true,
        };
        dir.make()?;
        Ok(dir)
    }

    /// Creates the group's directory where it is missing, and checks a private one (and its
    /// base, which a private group creates too). Again where a node that left last removed
    /// it ([`remove_if_unused`](Self::remove_if_unused)) after this one opened it.
    fn make(&self) -> Result<(), RendezvousError> {
        let dir = self.paths.dir();
        if self.shared {
            if make_dir(dir, 0o777)? {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(|source| {
                    RendezvousError::Io {
                        path: dir.to_owned(),
                        source,
                    }
                })?;
            }
            return Ok(());
        }
        let uid = rustix::process::geteuid().as_raw();
        for d in dir.parent().into_iter().chain([dir]) {
            make_dir(d, 0o700)?;
            check_private(d, uid)?;
        }
        Ok(())
    }

    /// The paths in it.
    pub fn paths(&self) -> &GroupPaths {
        &self.paths
    }

    /// Whether the group is opened to other users.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Tries to become the group's hub: takes the hub's lock without waiting, removes a
    /// stale hub socket and listens on a new one. `None` while another process holds the
    /// lock.
    ///
    /// A node that left last may remove the lock file and the directory meanwhile
    /// ([`remove_if_unused`](Self::remove_if_unused)): a lock taken on a file that no longer
    /// has the lock's name is let go, and the claim starts over with the directory and the
    /// file made again; after [`CLAIM_ATTEMPTS`] such rounds it counts as lost (`None`).
    pub fn claim_hub(&self) -> io::Result<Option<HubSocket>> {
        let mut lock = None;
        for _ in 0..CLAIM_ATTEMPTS {
            // Read-only is enough for `flock`, and opens a shared lock file another user made.
            let file = match rustix::fs::open(
                self.paths.hub_lock(),
                OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(self.file_mode()),
            ) {
                Ok(file) => file,
                Err(Errno::NOENT) => {
                    self.make().map_err(io::Error::other)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if self.shared {
                // Best effort: the lock file is someone else's if they made it.
                let _ = rustix::fs::fchmod(&file, Mode::from_raw_mode(0o666));
            }
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            if self.is_lock_file(&file)? {
                lock = Some(file);
                break;
            }
        }
        let Some(lock) = lock else {
            return Ok(None);
        };
        // The lock is ours: whatever `hub` file exists was left by a hub that died (or planted
        // by someone without the lock); nothing legitimate listens on it.
        let path = self.paths.hub_socket();
        remove_if_exists(&path)?;
        let listener = self.listen(&path)?;
        // The one moment a process has both the right and a reason to tidy up: the data
        // sockets of nodes killed without a chance to remove them.
        let _ = self.sweep(STALE_AFTER);
        Ok(Some(HubSocket {
            listener,
            _lock: lock,
            path,
        }))
    }

    /// Whether `file`, locked, is the file the lock's name holds now: not one a node that
    /// left last unlinked after this process opened it.
    fn is_lock_file(&self, file: &OwnedFd) -> io::Result<bool> {
        let held = rustix::fs::fstat(file)?;
        match rustix::fs::lstat(self.paths.hub_lock()) {
            Ok(now) => Ok(now.st_dev == held.st_dev && now.st_ino == held.st_ino),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the group's directory if nothing but the hub's lock file is left in it (or
    /// nothing at all: an observer that found no group), so that groups with generated
    /// names do not pile up in the runtime directory. A node
    /// calls it as it leaves, after its own sockets are gone: the one that leaves last takes
    /// the directory with it. Takes the hub's lock first (`false` at once if a hub runs or
    /// is starting), removes the data sockets of killed nodes as a new hub would
    /// ([`sweep`](Self::sweep)), looks again, and removes the lock file, then the
    /// directory, while it holds the lock. A node that joins meanwhile either finds its own
    /// socket keeping the directory (`rmdir` fails: `false`), or makes the directory and
    /// the lock file again ([`claim_hub`](Self::claim_hub) checks that the file it locked
    /// still has the lock's name; [`listen_data`](Self::listen_data) makes a missing
    /// directory again). Whether the directory was removed.
    pub fn remove_if_unused(&self) -> io::Result<bool> {
        if !self.only_lock_left()? {
            return Ok(false);
        }
        let lock = match rustix::fs::open(
            self.paths.hub_lock(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(lock) => lock,
            // No hub ever ran here (an observer that found no group): an empty directory.
            Err(Errno::NOENT) => return self.remove_dir(),
            Err(e) => return Err(e.into()),
        };
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        if !self.is_lock_file(&lock)? {
            return Ok(false);
        }
        let _ = self.sweep(STALE_AFTER);
        if !self.only_lock_left()? {
            return Ok(false);
        }
        fs::remove_file(self.paths.hub_lock())?;
        // A joining node's socket that came in meanwhile keeps the directory: it makes a new
        // lock file to claim.
        self.remove_dir()
        // `lock` closes here, after the directory went: a claimer holding the old file
        // finds its name gone.
    }

    /// Removes the group's directory and everything in it, whoever left it there: for a
    /// group whose name nobody else knows and whose members are all gone (the nodes a tool or
    /// a test started itself, killed with SIGKILL: their sockets are too young for
    /// [`remove_if_unused`](Self::remove_if_unused)'s sweep). `Ok` once it is gone, also if
    /// it was already.
    pub fn remove_all(&self) -> io::Result<()> {
        match fs::remove_dir_all(self.paths.dir()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the group's directory if it is empty: whether it did.
    fn remove_dir(&self) -> io::Result<bool> {
        match fs::remove_dir(self.paths.dir()) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::NotFound
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the group's directory holds nothing but the hub's lock file, if that.
    fn only_lock_left(&self) -> io::Result<bool> {
        let Some(entries) = self.entries()? else {
            return Ok(false);
        };
        for entry in entries {
            if entry?.file_name() != OsStr::new(names::HUB_LOCK) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What the group's directory holds; `None` if the node that left last removed it.
    fn entries(&self) -> io::Result<Option<fs::ReadDir>> {
        match fs::read_dir(self.paths.dir()) {
            Ok(entries) => Ok(Some(entries)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether some process holds the hub's lock: it runs the group's hub, or is starting to.
    /// `false` means no group of this name is running (a stale socket file may remain from a
    /// hub that died). Probes with a shared lock taken and dropped at once, and never creates
    /// the lock file; a concurrent [`claim_hub`](Self::claim_hub) may lose to the probe, which
    /// a claimer treats like any lost claim (it tries again after a backoff).
    pub fn hub_claimed(&self) -> io::Result<bool> {
        let lock = match rustix::fs::open(
            self.paths.hub_lock(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(lock) => lock,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockShared) {
            // Released when `lock` closes, here.
            Ok(()) => Ok(false),
            Err(Errno::WOULDBLOCK) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// How many data sockets of the group are bound now (per `/proc/net/unix`) besides
    /// `except` (a data address as published, this node's own): members that are alive even
    /// while no hub runs, in the moment between a hub's death and a survivor's claim.
    pub fn live_members(&self, except: Option<&str>) -> io::Result<usize> {
        let bound = bound_socket_paths()?;
        let mut live = 0;
        // None: removed by the node that left last, nobody is in.
        let Some(entries) = self.entries()? else {
            return Ok(0);
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if self.paths.resolve_data_addr(&name).is_some()
                && except != Some(name.as_str())
                && bound.contains(&entry.path())
            {
                live += 1;
            }
        }
        Ok(live)
    }

    /// Listens on this node's data socket, of token `token`. Makes the group's directory
    /// again if the node that left last removed it since this one was opened (see
    /// [`remove_if_unused`](Self::remove_if_unused)).
    pub fn listen_data(&self, token: u64) -> io::Result<DataSocket> {
        let path = self.paths.data_socket(token);
        let listener = match self.listen(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.make().map_err(io::Error::other)?;
                self.listen(&path)?
            }
            listener => listener?,
        };
        Ok(DataSocket {
            listener,
            addr: names::data_addr(token),
            path,
        })
    }

    /// Connects to the group's hub socket (`NotFound` or `ConnectionRefused` when no hub
    /// listens).
    pub fn connect_hub(&self) -> io::Result<OwnedFd> {
        connect(&self.paths.hub_socket())
    }

    /// Connects to the data socket a node published as `addr`; refuses an address that is not
    /// a data socket of this group (see [`GroupPaths::resolve_data_addr`]).
    pub fn connect_data(&self, addr: &str) -> io::Result<OwnedFd> {
        let path = self.paths.resolve_data_addr(addr).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr:?} is not a data address"),
            )
        })?;
        connect(&path)
    }

    /// Removes data sockets that nobody has bound for at least `min_age`: files a process
    /// killed with `kill -9` left behind. A socket counts as bound while `/proc/net/unix`
    /// lists its path; one younger than `min_age` is left alone, whatever its state, so a
    /// node between `bind` and its first listing is never touched. Returns how many were
    /// removed.
    pub fn sweep(&self, min_age: Duration) -> io::Result<usize> {
        let bound = bound_socket_paths()?;
        let now = SystemTime::now();
        let mut removed = 0;
        let Some(entries) = self.entries()? else {
            return Ok(0);
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let is_data = entry
                .file_name()
                .to_str()
                .is_some_and(|n| self.paths.resolve_data_addr(n).is_some());
            let Ok(meta) = entry.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= min_age);
            let stale = is_data && meta.file_type().is_socket() && old && !bound.contains(&path);
            if stale && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn file_mode(&self) -> u32 {
        if self.shared { 0o666 } else { 0o600 }
    }

    fn listen(&self, path: &Path) -> io::Result<OwnedFd> {
        let listener = listen(path)?;
        // Connecting needs write access to the socket file; in a private group the
        // directory already keeps everyone else out.
        fs::set_permissions(path, fs::Permissions::from_mode(self.file_mode()))?;
        Ok(listener)
    }
}

/// The group's hub socket while this process holds the hub's lock. Dropping it removes the
/// socket file, closes the listener and releases the lock, in that order.
#[derive(Debug)]
pub struct HubSocket {
    listener: OwnedFd,
    /// Holds the `flock`; the kernel drops it when this fd closes or the process dies.
    _lock: OwnedFd,
    path: PathBuf,
}

impl AsFd for HubSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl Drop for HubSocket {
    fn drop(&mut self) {
        // Still holding the lock, so the file is ours to remove.
        let _ = fs::remove_file(&self.path);
    }
}

/// A node's listening data socket. Dropping it removes the socket file and closes it.
#[derive(Debug)]
pub struct DataSocket {
    listener: OwnedFd,
    addr: String,
    path: PathBuf,
}

impl DataSocket {
    /// The address to publish: the socket's file name in the group directory.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsFd for DataSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl AsRawFd for DataSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.as_raw_fd()
    }
}

impl Drop for DataSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// How old an unbound data socket must be before a new hub removes it.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// How many times [`GroupDir::claim_hub`] starts over after locking a lock file that a node
/// leaving last removed meanwhile, before it counts the claim as lost (a claimer tries again
/// after a backoff).
pub const CLAIM_ATTEMPTS: usize = 4;

/// The paths of every Unix socket bound in this network namespace (`/proc/net/unix`: the
/// path is everything after the seventh column).
fn bound_socket_paths() -> io::Result<HashSet<PathBuf>> {
    let table = fs::read("/proc/net/unix")?;
    let mut paths = HashSet::new();
    for line in table.split(|&b| b == b'\n').skip(1) {
        let mut rest = line;
        for _ in 0..7 {
            let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
            rest = &rest[start..];
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            rest = &rest[end..];
        }
        if let Some(path) = rest.strip_prefix(b" ")
            && path.first() == Some(&b'/')
        {
            paths.insert(PathBuf::from(OsStr::from_bytes(path)));
        }
    }
    Ok(paths)
}

/// Binds a listening `SOCK_SEQPACKET` socket at `path` (backlog [`LISTEN_BACKLOG`]); see
/// [`socket::listen`].
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    socket::listen(&SocketAddrUnix::new(path)?)
}

/// Connects a new `SOCK_SEQPACKET` socket to `path`. A Unix connect never blocks: it
/// completes at once, or fails with `NotFound` / `ConnectionRefused` when nothing listens
/// there, or with `WouldBlock` when the listener's backlog is full (see [`socket::connect`]).
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    socket::connect(&SocketAddrUnix::new(path)?)
}

/// Checks with `lstat` that `dir` may hold `uid`'s private groups (see
/// [`names::check_private_dir`]).
fn check_private(dir: &Path, uid: u32) -> Result<(), RendezvousError> {
    let meta = fs::symlink_metadata(dir).map_err(|source| RendezvousError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let stat = DirStat {
        is_dir: meta.file_type().is_dir(),
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
    };
    names::check_private_dir(stat, uid).map_err(|problem| RendezvousError::Unsafe {
        path: dir.to_owned(),
        problem,
    })
}

/// Creates `dir` with `mode` (umask applies) unless it exists; whether it was created.
fn make_dir(dir: &Path, mode: u32) -> Result<bool, RendezvousError> {
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(RendezvousError::Io {
            path: dir.to_owned(),
            source,
        }),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Credentials;
    use crate::testutil::shared;
    use rustix::net::SocketFlags;

    /// A private group's directory for one test, removed when dropped (a test that fails
    /// or kills nothing still leaves none behind).
    struct TestDir(GroupDir);

    impl std::ops::Deref for TestDir {
        type Target = GroupDir;

        fn deref(&self) -> &GroupDir {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = self.0.remove_all();
        }
    }

    /// [`TestDir`] of a fresh group named after `tag`.
    fn test_dir(tag: &str) -> TestDir {
        TestDir(GroupDir::private(&unique_group(tag)).expect("dir"))
    }

    fn unique_group(tag: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("os-{tag}-{}-{n}", std::process::id())
    }

    fn accept(listener: &impl AsFd) -> Credentials {
        let fd = rustix::net::accept_with(listener.as_fd(), SocketFlags::CLOEXEC).expect("pending");
        peer_credentials(fd.as_fd()).expect("credentials")
    }

    fn me() -> Credentials {
        Credentials {
            pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }

    #[test]
    fn one_hub_at_a_time_and_the_lock_outlives_nothing() {
        // Opens fds: not while another test counts them.
        let _g = shared();
        let dir = test_dir("claim");
        let meta = fs::symlink_metadata(dir.paths().dir()).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert!(!dir.hub_claimed().expect("probe"), "no lock file yet");
        let hub = dir.claim_hub().expect("claim").expect("first claim wins");
        assert!(dir.hub_claimed().expect("probe"), "held by the hub");
        assert!(dir.claim_hub().expect("claim").is_none(), "lock held");
        let client = dir.connect_hub().expect("connect");
        assert_eq!(accept(&hub), me());
        drop(client);
        drop(hub);
        assert!(!dir.paths().hub_socket().exists(), "socket file removed");
        assert_eq!(
            dir.connect_hub().expect_err("no hub").kind(),
            io::ErrorKind::NotFound
        );
        assert!(!dir.hub_claimed().expect("probe"), "released with the hub");
        let _again = dir
            .claim_hub()
            .expect("claim")
            .expect("lock released (the probe's too)");
    }

    #[test]
    fn a_stale_socket_is_replaced_by_the_lock_holder() {
        // Opens fds: not while another test counts them.
        let _g = shared();
        let dir = test_dir("stale");
        // A crashed hub's socket: bound, then its process gone (the file stays).
        let stale = listen(&dir.paths().hub_socket()).expect("listen");
        drop(stale);
        assert_eq!(
            dir.connect_hub().expect_err("stale").kind(),
            io::ErrorKind::ConnectionRefused
        );
        let _hub = dir.claim_hub().expect("claim").expect("the lock is free");
        dir.connect_hub().expect("the new hub listens");
    }

    #[test]
    fn a_sweep_removes_only_old_unbound_data_sockets() {
        // Opens fds: not while another test counts them.
        let _g = shared();
        let dir = test_dir("sweep");
        let live = dir.listen_data(1).expect("live");
        // A node killed without removing its socket: the file stays, nothing is bound.
        let dead = dir.paths().data_socket(2);
        drop(listen(&dead).expect("listen"));
        let young = dir.paths().data_socket(3);
        drop(listen(&young).expect("listen"));
        let not_data = dir.paths().dir().join("notes");
        fs::write(&not_data, b"x").expect("write");
        let old = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
        };
        for p in [live.path(), dead.as_path(), not_data.as_path()] {
            rustix::fs::utimensat(rustix::fs::CWD, p, &old, rustix::fs::AtFlags::empty())
                .expect("age the file");
        }
        assert_eq!(dir.sweep(Duration::from_secs(30)).expect("sweep"), 1);
        assert!(!dead.exists(), "the dead node's socket is gone");
        assert!(live.path().exists(), "a bound socket stays, however old");
        assert!(young.exists(), "a young one stays, bound or not");
        assert!(not_data.exists(), "only data sockets are swept");
        dir.connect_data(live.addr())
            .expect("the live one still answers");
    }

    #[test]
    fn the_last_to_leave_removes_the_directory_and_a_joiner_makes_it_again() {
        // Opens fds: not while another test counts them.
        let _g = shared();
        let dir = test_dir("tidy");
        let path = dir.paths().dir().to_owned();
        assert!(
            dir.remove_if_unused().expect("tidy"),
            "empty: no hub ever ran"
        );
        assert!(!path.exists());
        let hub = dir.claim_hub().expect("claim").expect("first claim wins");
        let data = dir.listen_data(1).expect("listen");
        assert!(!dir.remove_if_unused().expect("tidy"), "a hub runs");
        drop(hub);
        assert!(
            !dir.remove_if_unused().expect("tidy"),
            "a member's socket is in"
        );
        assert!(path.exists());
        let probe = rustix::fs::open(
            dir.paths().hub_lock(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("a claimer opens the lock file, as the last one leaves");
        drop(data);
        assert!(
            dir.remove_if_unused().expect("tidy"),
            "only the lock was left"
        );
        assert!(!path.exists(), "the directory is gone");
        assert!(
            !dir.remove_if_unused().expect("tidy"),
            "nothing left to remove"
        );
        // The claimer that opened the old lock file locks it: a file with no name.
        rustix::fs::flock(&probe, FlockOperation::NonBlockingLockExclusive).expect("lock");
        assert!(
            !dir.is_lock_file(&probe).expect("stat"),
            "not the lock's file"
        );
        assert_eq!(dir.live_members(None).expect("members"), 0);
        assert_eq!(dir.sweep(Duration::ZERO).expect("sweep"), 0);
        // A node that opened the group before the directory went makes it again.
        let data = dir.listen_data(2).expect("listen again");
        let meta = fs::symlink_metadata(&path).expect("made again");
        assert_eq!(meta.mode() & 0o777, 0o700, "as private as before");
        let hub = dir
            .claim_hub()
            .expect("claim")
            .expect("a new lock file, free");
        assert!(
            dir.claim_hub().expect("claim").is_none(),
            "held by the new hub"
        );
        assert!(dir.hub_claimed().expect("probe"));
        dir.connect_hub().expect("the new hub listens");
        drop((hub, data, probe));
        assert!(dir.remove_if_unused().expect("tidy"));
        // The claim makes the directory and the lock file again if it must.
        let hub = dir.claim_hub().expect("claim").expect("made again, free");
        drop(hub);
        assert!(dir.remove_if_unused().expect("tidy"));
    }

    #[test]
    fn remove_all_takes_what_killed_members_left() {
        // Opens fds: not while another test counts them.
        let _g = shared();
        let dir = test_dir("remove-all");
        let path = dir.paths().dir().to_owned();
        let hub = dir.claim_hub().expect("claim").expect("first claim wins");
        let data = dir.listen_data(1).expect("listen");
        // What a member killed with SIGKILL leaves: its socket files, too young to sweep.
        drop((hub, data));
        fs::write(path.join("stray"), b"").expect("a file");
        assert!(!dir.remove_if_unused().expect("tidy"), "sockets are in");
        dir.remove_all().expect("removed");
        assert!(!path.exists(), "the directory is gone");
        dir.remove_all().expect("gone already: fine");
    }

    #[test]
    fn data_sockets_resolve_only_inside_the_group() {
        // Opens fds: not while another test counts them.
        let _g = shared();
        let dir = test_dir("data");
        let data = dir.listen_data(0xabc).expect("listen");
        assert_eq!(data.addr(), "0000000000000abc.data");
        dir.connect_data(data.addr()).expect("connect");
        let err = dir.connect_data("../x.data").expect_err("outside");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let path = data.path().to_owned();
        drop(data);
        assert!(!path.exists());
    }

    #[test]
    fn an_unsafe_private_base_is_refused_not_changed() {
        // Opens fds: not while another test counts them.
        let _g = shared();
        let group = unique_group("mode");
        let dir = GroupDir::private(&group).expect("dir");
        fs::set_permissions(dir.paths().dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = GroupDir::private(&group).expect_err("world-readable");
        assert!(
            matches!(
                &err,
                RendezvousError::Unsafe {
                    problem: DirProblem::Mode { mode: 0o755 },
                    ..
                }
            ),
            "{err}"
        );
        let meta = fs::symlink_metadata(dir.paths().dir()).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o755, "left as it was");
        fs::remove_dir(dir.paths().dir()).expect("clean up");
    }

    #[test]
    fn shared_groups_are_open_to_the_directory() {
        // Opens fds: not while another test counts them.
        let _g = shared();
        let base = std::env::temp_dir().join(unique_group("shared-base"));
        fs::create_dir(&base).expect("base");
        let dir = GroupDir::shared(&base, "g").expect("dir");
        let mode = |p: &Path| fs::symlink_metadata(p).expect("stat").mode() & 0o777;
        assert_eq!(mode(dir.paths().dir()), 0o777);
        let hub = dir.claim_hub().expect("claim").expect("won");
        assert_eq!(mode(&dir.paths().hub_socket()), 0o666);
        assert_eq!(mode(&dir.paths().hub_lock()), 0o666);
        drop(hub);
        // The last one out takes the group's directory, not the application's; a node that
        // opened the group before makes it again, as open as before.
        assert!(dir.remove_if_unused().expect("tidy"));
        assert!(!dir.paths().dir().exists());
        assert!(base.exists(), "the application's directory stays");
        let data = dir.listen_data(1).expect("listen again");
        assert_eq!(mode(dir.paths().dir()), 0o777, "made again, open");
        drop(data);
        fs::remove_dir_all(&base).expect("clean up");
    }
}
