//! Where a group meets: the directory of its sockets and the names in it, which every driver
//! must agree on.
//!
//! A group's sockets are files in one directory, the **group directory**:
//!
//! | file | what |
//! |---|---|
//! | `hub.lock` | whoever holds an exclusive `flock(2)` on it runs the group's hub ([`GroupPaths::hub_lock`]) |
//! | `hub` | the hub's listening socket ([`GroupPaths::hub_socket`]) |
//! | `<token as 16 lowercase hex digits>.data` | a node's own socket for data links ([`GroupPaths::data_socket`]); nodes publish its file name in their topology record ([`data_addr`]) |
//!
//! # Claiming the hub
//! A node that wants to run the hub takes the lock without waiting (`LOCK_EX | LOCK_NB`). The
//! winner removes whatever `hub` file is left (a crashed hub's socket: nothing listens on it)
//! and binds a new one; the loser connects instead. The kernel drops the lock when its holder
//! dies, however it dies, so nothing a crash leaves behind ever blocks a group, and the next
//! winner can remove the stale socket without racing anybody. Wayland compositors claim
//! `wayland-0` with `wayland-0.lock` the same way.
//!
//! The lock file may be removed, with the directory, by the node that leaves last (below):
//! so a claimer that got the lock checks that the file it locked is still the one named
//! `hub.lock` (the same device and inode by `fstat` of its descriptor and `lstat` of the
//! name); if not, it lets it go and claims again, making the directory and the lock file
//! anew where they are missing. Without that check, a claimer that opened the old file
//! before it was removed would hold a lock nobody else can see, beside the next claimer's.
//!
//! # Leaving last
//! Nothing else removes a group's directory, so a node that leaves, once its own sockets
//! are gone, removes it if it holds nothing but `hub.lock`: it takes the lock without
//! waiting (not while a hub runs or starts), removes the stale data sockets a new hub would,
//! looks again, then removes `hub.lock` and the directory while holding the lock, and lets
//! it go last. A node joining meanwhile keeps the directory with its own socket (`rmdir`
//! fails, which is fine), or makes the directory again if it is gone before its socket is
//! bound; and claims as above. A group whose last node was killed keeps its directory until
//! a node of that name joins and leaves again, 30 s or more after the kill (the sockets a killed
//! node left are removed once that old). (`ipc_os::rendezvous::GroupDir::remove_if_unused`.)
//!
//! # Which directory
//! - A **private** group (only this user may join; the default) lives in this user's runtime
//!   directory: `$XDG_RUNTIME_DIR/ipc-pubsub/<group>` (where the variable is unset,
//!   `/run/user/<uid>` if that is this user's private directory), else
//!   `/tmp/ipc-pubsub-<uid>/<group>` ([`private_base`]). Every directory of that path that
//!   ipc-pubsub creates has mode 0700, and a driver checks the base it did not create
//!   ([`check_private_dir`]): a directory of another owner, a group- or world-accessible one,
//!   or a symlink is refused, never used. Other users cannot even connect to these sockets.
//! - A group **opened** to other users lives in a directory the application names
//!   (`<dir>/<group>`): the group directory and its files are made accessible to everyone
//!   (0777, 0666), so the named directory's own permissions decide who can reach the group,
//!   and the access policy ([`AccessPolicy`](crate::AccessPolicy)) decides whom its members
//!   accept.
//!
//! Socket paths must fit `sun_path`: [`GroupPaths::new`] refuses a group whose longest path
//! exceeds [`MAX_PATH_LEN`] bytes.

use std::path::{Path, PathBuf};

/// Longest socket path: `sun_path` is 108 bytes, with room for the terminating NUL.
pub const MAX_PATH_LEN: usize = 107;

/// Longest group name: with it, every socket path fits [`MAX_PATH_LEN`] in the private bases
/// of any uid (`/tmp/ipc-pubsub-4294967295/`, 27 bytes; `/run/user/<uid>/ipc-pubsub/` up to
/// uid 99999, 27 bytes): 107 − 27 − `"/"` − 21 bytes of data socket name = 58, rounded down.
pub const MAX_GROUP_LEN: usize = 56;

/// The hub's lock file in the group directory.
pub const HUB_LOCK: &str = "hub.lock";

/// The hub's socket in the group directory.
pub const HUB_SOCKET: &str = "hub";

/// How a data socket's file name ends.
pub const DATA_SUFFIX: &str = ".data";

/// Length of a data socket's file name: 16 hex digits and [`DATA_SUFFIX`].
const DATA_NAME_LEN: usize = 16 + DATA_SUFFIX.len();

/// The topic that carries bus channel `name`: every member publishes and subscribes to it.
pub fn bus_topic(name: &str) -> String {
    format!("bus:{name}")
}

/// Why a group name, or the paths of its sockets, were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The group name is empty.
    #[error("group name is empty")]
    Empty,
    /// The group name is longer than [`MAX_GROUP_LEN`] bytes.
    #[error("group name is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the rejected group name in bytes.
        len: usize,
        /// The maximum, [`MAX_GROUP_LEN`].
        max: usize,
    },
    /// The group name contains a NUL byte.
    #[error("group name contains a NUL byte")]
    HasNul,
    /// The group name contains `/`, which separates the parts of a path.
    #[error("group name contains '/'")]
    HasSlash,
    /// The group name is `.` or `..`.
    #[error("group name '{0}' names a directory itself")]
    Dots(String),
    /// A socket path of the group would not fit `sun_path`.
    #[error(
        "socket path {path} is {len} bytes long, the maximum is {max}: use a shorter group name or directory"
    )]
    PathTooLong {
        /// The longest socket path of the group.
        path: String,
        /// Its length in bytes.
        len: usize,
        /// The maximum, [`MAX_PATH_LEN`].
        max: usize,
    },
}

/// Checks a group name: non-empty, at most [`MAX_GROUP_LEN`] bytes, no NUL, no `/`, not `.`
/// or `..`.
pub fn validate_group(group: &str) -> Result<(), GroupError> {
    if group.is_empty() {
        return Err(GroupError::Empty);
    }
    if group.len() > MAX_GROUP_LEN {
        return Err(GroupError::TooLong {
            len: group.len(),
            max: MAX_GROUP_LEN,
        });
    }
    if group.contains('\0') {
        return Err(GroupError::HasNul);
    }
    if group.contains('/') {
        return Err(GroupError::HasSlash);
    }
    if group == "." || group == ".." {
        return Err(GroupError::Dots(group.to_owned()));
    }
    Ok(())
}

/// The directory that holds this user's private groups: `<runtime>/ipc-pubsub` when
/// `runtime_dir` is an absolute path, else `/tmp/ipc-pubsub-<uid>`.
///
/// A driver passes `$XDG_RUNTIME_DIR`, or where it is unset (a cron job, `su`, a service
/// without a login), [`login_runtime_dir`] if that exists as this user's private directory:
/// so that a process started outside the login session still finds the session's groups.
pub fn private_base(runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
    match runtime_dir {
        Some(dir) if dir.is_absolute() => dir.join("ipc-pubsub"),
        _ => PathBuf::from(format!("/tmp/ipc-pubsub-{uid}")),
    }
}

/// The runtime directory systemd-logind makes for `uid`'s sessions: `/run/user/<uid>`.
pub fn login_runtime_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{uid}"))
}

/// What a driver read of a directory with `lstat(2)` (never following a symlink).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DirStat {
    /// It is a directory (not a symlink, not a file).
    pub is_dir: bool,
    /// Its owner.
    pub uid: u32,
    /// Its permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Why a directory may not hold a private group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirProblem {
    /// Not a directory: a file, or a symlink (which is never followed).
    #[error("it is not a directory (a symlink is never followed)")]
    NotADirectory,
    /// Owned by another user.
    #[error("it is owned by uid {owner}, not by uid {uid}")]
    Owner {
        /// The directory's owner.
        owner: u32,
        /// The user who would use it.
        uid: u32,
    },
    /// Group or others may enter it.
    #[error("its mode is {mode:04o}: group and others must have no access (0700)")]
    Mode {
        /// Its permission bits.
        mode: u32,
    },
}

/// Checks a directory that is to hold `uid`'s private groups: a real directory, owned by
/// `uid`, with no access for group or others.
pub fn check_private_dir(stat: DirStat, uid: u32) -> Result<(), DirProblem> {
    if !stat.is_dir {
        return Err(DirProblem::NotADirectory);
    }
    if stat.uid != uid {
        return Err(DirProblem::Owner {
            owner: stat.uid,
            uid,
        });
    }
    if stat.mode & 0o077 != 0 {
        return Err(DirProblem::Mode { mode: stat.mode });
    }
    Ok(())
}

/// The file name a node publishes as its data address, for its data socket `token`.
pub fn data_addr(token: u64) -> String {
    format!("{token:016x}{DATA_SUFFIX}")
}

/// The paths of one group's sockets, all in its group directory (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupPaths {
    dir: PathBuf,
}

impl GroupPaths {
    /// The paths of `group` in `base`: its group directory is `base/group`.
    ///
    /// Fails on an invalid group name, or when the longest socket path (a data socket's)
    /// would not fit [`MAX_PATH_LEN`].
    pub fn new(base: &Path, group: &str) -> Result<Self, GroupError> {
        validate_group(group)?;
        let paths = Self {
            dir: base.join(group),
        };
        let longest = paths.data_socket(u64::MAX);
        let len = longest.as_os_str().len();
        if len > MAX_PATH_LEN {
            return Err(GroupError::PathTooLong {
                path: longest.display().to_string(),
                len,
                max: MAX_PATH_LEN,
            });
        }
        Ok(paths)
    }

    /// The group directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The hub's lock file.
    pub fn hub_lock(&self) -> PathBuf {
        self.dir.join(HUB_LOCK)
    }

    /// The hub's socket.
    pub fn hub_socket(&self) -> PathBuf {
        self.dir.join(HUB_SOCKET)
    }

    /// The data socket of token `token` (its file name is [`data_addr`]).
    pub fn data_socket(&self, token: u64) -> PathBuf {
        self.dir.join(data_addr(token))
    }

    /// The socket path behind a data address a node published, or `None` when the address is
    /// not a data socket's file name (16 lowercase hex digits and [`DATA_SUFFIX`]): a peer's
    /// record never makes a driver connect outside the group directory.
    pub fn resolve_data_addr(&self, addr: &str) -> Option<PathBuf> {
        let hex = addr.strip_suffix(DATA_SUFFIX)?;
        let valid = addr.len() == DATA_NAME_LEN
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| self.dir.join(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_exact() {
        let paths = GroupPaths::new(Path::new("/run/user/1000/ipc-pubsub"), "cams").expect("ok");
        assert_eq!(paths.dir(), Path::new("/run/user/1000/ipc-pubsub/cams"));
        assert_eq!(
            paths.hub_lock(),
            Path::new("/run/user/1000/ipc-pubsub/cams/hub.lock")
        );
        assert_eq!(
            paths.hub_socket(),
            Path::new("/run/user/1000/ipc-pubsub/cams/hub")
        );
        assert_eq!(data_addr(0xdead_beef), "00000000deadbeef.data");
        assert_eq!(
            paths.data_socket(u64::MAX),
            Path::new("/run/user/1000/ipc-pubsub/cams/ffffffffffffffff.data")
        );
        assert_eq!(bus_topic("chat"), "bus:chat");
    }

    #[test]
    fn data_addresses_stay_in_the_group_directory() {
        let paths = GroupPaths::new(Path::new("/tmp/ipc-pubsub-0"), "g").expect("ok");
        assert_eq!(
            paths.resolve_data_addr("00000000000000ff.data"),
            Some(PathBuf::from("/tmp/ipc-pubsub-0/g/00000000000000ff.data"))
        );
        for bad in [
            "",
            "hub",
            "hub.lock",
            "../x/00000000000000ff.data",
            "/etc/00000000000000ff.data",
            "00000000000000FF.data",
            "0000000000000ff.data",
            "000000000000000ff.data",
            "@ipc-pubsub/g/data/00000000000000ff",
            "0000000000000/ff.data",
        ] {
            assert_eq!(paths.resolve_data_addr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn private_bases() {
        assert_eq!(
            private_base(Some(Path::new("/run/user/1000")), 1000),
            Path::new("/run/user/1000/ipc-pubsub")
        );
        // A relative or missing XDG_RUNTIME_DIR is ignored, as the spec says.
        assert_eq!(
            private_base(Some(Path::new("run")), 7),
            Path::new("/tmp/ipc-pubsub-7")
        );
        assert_eq!(private_base(None, 0), Path::new("/tmp/ipc-pubsub-0"));
        assert_eq!(login_runtime_dir(1000), Path::new("/run/user/1000"));
    }

    #[test]
    fn private_dir_checks() {
        let good = DirStat {
            is_dir: true,
            uid: 5,
            mode: 0o700,
        };
        assert_eq!(check_private_dir(good, 5), Ok(()));
        assert_eq!(
            check_private_dir(good, 6),
            Err(DirProblem::Owner { owner: 5, uid: 6 })
        );
        for mode in [0o710, 0o701, 0o755, 0o777, 0o1777] {
            let open = DirStat { mode, ..good };
            assert_eq!(check_private_dir(open, 5), Err(DirProblem::Mode { mode }));
        }
        let link = DirStat {
            is_dir: false,
            ..good
        };
        assert_eq!(check_private_dir(link, 5), Err(DirProblem::NotADirectory));
        assert_eq!(
            DirProblem::Mode { mode: 0o755 }.to_string(),
            "its mode is 0755: group and others must have no access (0700)"
        );
    }

    #[test]
    fn group_validation() {
        let base = Path::new("/tmp/ipc-pubsub-0");
        assert_eq!(GroupPaths::new(base, ""), Err(GroupError::Empty));
        assert_eq!(GroupPaths::new(base, "a/b"), Err(GroupError::HasSlash));
        assert_eq!(GroupPaths::new(base, "a\0b"), Err(GroupError::HasNul));
        assert_eq!(
            GroupPaths::new(base, ".."),
            Err(GroupError::Dots("..".into()))
        );
        let longest = "g".repeat(MAX_GROUP_LEN);
        for base in ["/tmp/ipc-pubsub-4294967295", "/run/user/99999/ipc-pubsub"] {
            GroupPaths::new(Path::new(base), &longest).expect("the longest group fits");
        }
        let too_long = "g".repeat(MAX_GROUP_LEN + 1);
        assert_eq!(
            validate_group(&too_long),
            Err(GroupError::TooLong {
                len: MAX_GROUP_LEN + 1,
                max: MAX_GROUP_LEN
            })
        );
        let deep = PathBuf::from(format!("/{}", "d".repeat(60)));
        let err = GroupPaths::new(&deep, &longest).expect_err("too long");
        assert!(
            matches!(err, GroupError::PathTooLong { len, max: MAX_PATH_LEN, .. } if len > MAX_PATH_LEN),
            "{err:?}"
        );
        // Unicode is fine and counted in bytes.
        let paths = GroupPaths::new(base, "über").expect("valid group");
        assert_eq!(paths.hub_socket(), Path::new("/tmp/ipc-pubsub-0/über/hub"));
    }
}
