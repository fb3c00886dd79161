//! What a process holds that a node could leak, read from `/proc`: its fds by kind and its
//! memfd mappings (the data links' rings, pool and fresh segments).
//!
//! Pipes are left out of the fds: a node makes none, and a test's own plumbing to its
//! children (their stdin, stdout and stderr) is all the pipes a test process has; their
//! reader threads close them a little after a child dies.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// The fds (by kind) and memfd mappings (by name) of a process, at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Held {
    /// Open fds by kind: `socket`, `eventfd`, `pidfd`, `eventpoll`, `memfd`, `file`...
    pub fds: BTreeMap<String, usize>,
    /// Mappings of memfds by name: `ipc-pubsub-ring`, `ipc-pubsub-pool`, `ipc-pubsub-fresh`.
    pub maps: BTreeMap<String, usize>,
}

impl Held {
    /// What process `pid` holds now (`None`: this process).
    pub fn of(pid: Option<u32>) -> Self {
        let proc = match pid {
            Some(pid) => format!("/proc/{pid}"),
            None => "/proc/self".to_string(),
        };
        let mut fds = BTreeMap::new();
        let dir =
            std::fs::read_dir(format!("{proc}/fd")).unwrap_or_else(|e| panic!("{proc}/fd: {e}"));
        for entry in dir.flatten() {
            // An fd closed between listing and reading is not held any more.
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let kind = fd_kind(&target.to_string_lossy());
            if kind != "pipe" {
                *fds.entry(kind).or_insert(0) += 1;
            }
        }
        let mut maps = BTreeMap::new();
        let text = std::fs::read_to_string(format!("{proc}/maps"))
            .unwrap_or_else(|e| panic!("{proc}/maps: {e}"));
        for line in text.lines() {
            if let Some((_, name)) = line.split_once("/memfd:") {
                let name = name.trim_end_matches(" (deleted)").to_string();
                *maps.entry(name).or_insert(0) += 1;
            }
        }
        Self { fds, maps }
    }

    /// This process.
    pub fn now() -> Self {
        Self::of(None)
    }

    /// Mappings of rings.
    pub fn rings(&self) -> usize {
        self.maps.get("ipc-pubsub-ring").copied().unwrap_or(0)
    }

    /// Mappings of payload segments (pool and fresh).
    pub fn segments(&self) -> usize {
        self.maps
            .iter()
            .filter(|(name, _)| name.as_str() != "ipc-pubsub-ring")
            .map(|(_, n)| n)
            .sum()
    }

    /// All fds counted.
    pub fn fd_count(&self) -> usize {
        self.fds.values().sum()
    }

    /// Waits until process `pid` (`None`: this one) holds exactly `baseline`, polling; panics
    /// at the deadline with what differs.
    pub fn wait_for(pid: Option<u32>, baseline: &Self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Self::of(pid);
            if now == *baseline {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not back to the baseline within {timeout:?}: {}",
                Diff(baseline, &now)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The kind of an fd, from its `/proc/<pid>/fd` link.
fn fd_kind(target: &str) -> String {
    if let Some(inner) = target
        .strip_prefix("anon_inode:")
        .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
    {
        return inner.to_string();
    }
    if target.starts_with("/memfd:") {
        return "memfd".into();
    }
    match target.split_once(":[") {
        // socket:[123], pipe:[456]
        Some((kind, _)) if !kind.contains('/') => kind.to_string(),
        _ => "file".into(),
    }
}

/// What differs between a baseline and now, for a failure message.
struct Diff<'a>(&'a Held, &'a Held);

impl fmt::Display for Diff<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (before, now) = (self.0, self.1);
        for (what, a, b) in [
            ("fds", &before.fds, &now.fds),
            ("memfd mappings", &before.maps, &now.maps),
        ] {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (x, y) = (
                    a.get(k).copied().unwrap_or(0),
                    b.get(k).copied().unwrap_or(0),
                );
                if x != y {
                    write!(f, "{what} {k}: {x} before, {y} now; ")?;
                }
            }
        }
        write!(f, "(before {before:?}, now {now:?})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_fds() {
        assert_eq!(fd_kind("socket:[12345]"), "socket");
        assert_eq!(fd_kind("pipe:[12345]"), "pipe");
        assert_eq!(fd_kind("anon_inode:[eventfd]"), "eventfd");
        assert_eq!(fd_kind("anon_inode:[pidfd]"), "pidfd");
        assert_eq!(fd_kind("anon_inode:[eventpoll]"), "eventpoll");
        assert_eq!(fd_kind("/memfd:ipc-pubsub-ring (deleted)"), "memfd");
        assert_eq!(fd_kind("/dev/null"), "file");
        assert_eq!(fd_kind("/tmp/a:[b]"), "file");
    }
}
