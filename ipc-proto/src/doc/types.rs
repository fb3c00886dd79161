//! What the document machines and their wire codec share: bounds ([`DocLimits`]), patch ids,
//! refusals and rejections, errors, scopes, and checks on values.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::path::{MAX_PATH_BYTES, Path, PathError};
use super::update::UpdateError;
use crate::ids::NodeId;

/// How many `origin_seq`s below an origin's last accepted one the marks remember (accepted or
/// not); a replica never has more unanswered patches than this per document.
pub const HOLE_WINDOW: u64 = 128;

/// The deepest nesting of arrays and objects a document may have.
///
/// Below serde_json's parsing limit (128), so every document can travel as JSON text; checked
/// after every patch, since `$rename` and `$set` could otherwise nest values deeper and deeper.
pub const MAX_DEPTH: usize = 100;

/// Bounds on documents and on what peers may send. Host and replicas of a group use the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocLimits {
    /// Largest encoded [`DocMsg`](super::DocMsg), in bytes. Default 60 KiB, so that a message and
    /// its topology frame fit the hub link's 64 KiB frames. At least 4 KiB.
    pub max_chunk: usize,
    /// Longest document name, in bytes. Default 255.
    pub max_name: usize,
    /// Largest document value, as compact JSON text. Default 1 MiB.
    pub max_value: usize,
    /// Most documents: per group for the host, per node for a replica. Default 1,024.
    pub max_docs: usize,
    /// Most origins a document's marks remember. Default 1,024.
    pub max_origins: usize,
    /// Most unanswered patches per document on a replica. Default and maximum
    /// [`HOLE_WINDOW`].
    pub max_pending: usize,
    /// Most versions the conflict log describes. Default 256.
    pub log_window: usize,
    /// Most bytes the conflict log's paths may take. Default 64 KiB.
    pub max_log_bytes: usize,
    /// Most bytes of documents a witness holds without having opened them (their values'
    /// compact JSON when their states arrived; patches since may grow each up to
    /// `max_value`). Default 64 MiB.
    pub max_witness_bytes: usize,
}

impl Default for DocLimits {
    fn default() -> Self {
        Self {
            max_chunk: 60 * 1024,
            max_name: 255,
            max_value: 1 << 20,
            max_docs: 1024,
            max_origins: 1024,
            max_pending: HOLE_WINDOW as usize,
            log_window: 256,
            max_log_bytes: 64 * 1024,
            max_witness_bytes: 64 << 20,
        }
    }
}

impl DocLimits {
    /// The smallest [`max_chunk`](Self::max_chunk): room for a name, a path and the headers.
    pub const MIN_CHUNK: usize = 4096;

    /// These limits with every field brought into its valid range: `max_chunk` at least
    /// [`MIN_CHUNK`](Self::MIN_CHUNK) plus the name, `max_pending` at most [`HOLE_WINDOW`],
    /// the rest at least 1. The machines use their config's limits through this.
    pub fn validated(&self) -> Self {
        let max_name = self.max_name.clamp(1, 4096);
        Self {
            max_chunk: self
                .max_chunk
                .max(Self::MIN_CHUNK + max_name + MAX_PATH_BYTES),
            max_name,
            max_value: self.max_value.clamp(16, 32 << 20),
            max_docs: self.max_docs.max(1),
            max_origins: self.max_origins.clamp(1, 1 << 16),
            max_pending: self.max_pending.clamp(1, HOLE_WINDOW as usize),
            log_window: self.log_window.max(1),
            max_log_bytes: self.max_log_bytes.clamp(1024, 16 << 20),
            max_witness_bytes: self.max_witness_bytes,
        }
    }

    /// The largest body (a value with its marks and log) of an
    /// [`DocMsg::Open`](super::DocMsg::Open) or [`DocMsg::State`](super::DocMsg::State),
    /// reassembled from its chunks.
    pub fn max_body(&self) -> usize {
        self.max_value + self.max_origins * 48 + self.max_log_bytes + 64
    }

    /// The largest encoded [`DocMsg::Patch`](super::DocMsg::Patch): room is left for the
    /// broadcast's extra fields.
    pub fn max_patch(&self) -> usize {
        self.max_chunk - 32
    }

    /// Checks a document name.
    pub(crate) fn check_name(&self, name: &str) -> Result<(), String> {
        if name.is_empty() {
            Err("empty document name".into())
        } else if name.len() > self.max_name {
            Err(format!(
                "document name of {} bytes exceeds the maximum of {}",
                name.len(),
                self.max_name
            ))
        } else {
            Ok(())
        }
    }
}

/// A patch issued by this node: returned by [`DocReplica::patch`](super::DocReplica::patch),
/// named again by [`DocEvt::Accepted`](super::DocEvt::Accepted) and
/// [`DocEvt::Rejected`](super::DocEvt::Rejected). Unique per
/// [`DocReplica`](super::DocReplica).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PatchId(pub u64);

impl fmt::Display for PatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "patch#{}", self.0)
    }
}

/// Why the host rejected a patch; nothing of it was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// Another origin's patch, accepted after the one this patch was made against, wrote an
    /// overlapping path.
    #[error("conflicts with `{path}`, written by {origin} at version {version}")]
    Conflict {
        /// What the accepted patch wrote.
        path: Path,
        /// Its version.
        version: u64,
        /// Its origin.
        origin: NodeId,
    },
    /// The patch was made against a version the host cannot check it against: older than its
    /// conflict log, or not in its history (lost in a failover).
    #[error("made against version {base}, which the host can no longer check (oldest {oldest})")]
    Stale {
        /// The version the patch was made against.
        base: u64,
        /// The oldest version the host can check against.
        oldest: u64,
    },
    /// The update failed on the host's value (a type error, say).
    #[error("{0}")]
    Failed(UpdateError),
    /// The result would be larger than [`DocLimits::max_value`].
    #[error("the document would take {len} bytes, above the maximum of {max}")]
    TooLarge {
        /// The result's size, as compact JSON.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The result would nest deeper than [`MAX_DEPTH`].
    #[error("the document would nest deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A patch sent again after a hub failover, which the host's records show a previous host
    /// rejected (that answer was lost with it).
    #[error("rejected by a previous host")]
    Earlier,
    /// A patch sent again that is too old for the host's records to tell whether it was
    /// applied; it was not applied now.
    #[error("too old for the host to tell whether it was applied")]
    Unknown,
}

/// Why the host refused to open a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The group holds the most documents allowed.
    #[error("the group holds the most documents allowed ({max})")]
    TooManyDocs {
        /// The limit.
        max: usize,
    },
}

/// Why a command to a [`DocReplica`](super::DocReplica) was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// The document is not open on this node.
    #[error("document `{name}` is not open")]
    NotOpen {
        /// The document.
        name: String,
    },
    /// The document is already open on this node.
    #[error("document `{name}` is already open")]
    AlreadyOpen {
        /// The document.
        name: String,
    },
    /// The name is empty or too long.
    #[error("invalid document name: {reason}")]
    InvalidName {
        /// What is wrong with it.
        reason: String,
    },
    /// The update is invalid, or does not apply to the local value; the error names the
    /// operator and the path.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// A value, a result or a patch is larger than the limits allow.
    #[error("{what} of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value or a result nests deeper than [`MAX_DEPTH`] (or an update spec deeper than
    /// JSON text can carry).
    #[error("{what} nests deeper than {max} levels")]
    TooDeep {
        /// What.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The document already has [`DocLimits::max_pending`] patches waiting for the host.
    #[error("{max} patches of `{name}` are already waiting for the host")]
    PendingFull {
        /// The document.
        name: String,
        /// The limit.
        max: usize,
    },
    /// The node has the most documents open that it may.
    #[error("a node may open at most {max} documents")]
    TooManyDocs {
        /// The limit.
        max: usize,
    },
    /// An observer watches the group without joining it: it has no documents.
    #[error("an observer cannot open or patch documents")]
    Observer,
    /// The node has left (or is leaving) the group.
    #[error("the node has left the group")]
    Left,
}

/// Where a document's local value changed ([`DocEvt::Changed`](super::DocEvt::Changed)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Anywhere: the value was replaced (a state from the host).
    Root,
    /// Under these paths only (each path's value, or something below it, differs).
    Paths(Vec<Path>),
}

impl Scope {
    /// Whether something at or under `path` may have changed: `path` overlaps a changed path.
    ///
    /// A changed parent of `path` does not mean that `path`'s own value changed; compare the
    /// values with [`differs_at`] to be sure.
    pub fn may_affect(&self, path: &Path) -> bool {
        match self {
            Self::Root => true,
            Self::Paths(paths) => paths.iter().any(|p| p.overlaps(path)),
        }
    }

    /// Widens this scope by `other`: where either says something changed. A driver that
    /// coalesces several [`DocEvt::Changed`](super::DocEvt::Changed) into one publication
    /// merges their scopes with it.
    ///
    /// ```
    /// use ipc_proto::doc::{Path, Scope};
    ///
    /// let p = |s: &str| Path::parse(s).unwrap();
    /// let mut scope = Scope::Paths(vec![p("a")]);
    /// scope.merge(Scope::Paths(vec![p("b"), p("a")]));
    /// assert_eq!(scope, Scope::Paths(vec![p("a"), p("b")]));
    /// scope.merge(Scope::Root);
    /// assert_eq!(scope, Scope::Root);
    /// ```
    pub fn merge(&mut self, other: Self) {
        match (&mut *self, other) {
            (Self::Root, _) => {}
            (_, Self::Root) => *self = Self::Root,
            (Self::Paths(a), Self::Paths(b)) => {
                for p in b {
                    if !a.contains(&p) {
                        a.push(p);
                    }
                }
            }
        }
    }
}

/// One observer of a path of a document, as drivers keep them: it remembers the value at its path
/// and, after each [`DocEvt::Changed`](super::DocEvt::Changed), says whether that value changed, so
/// that an observer fires when its path or anything under it changes, and only then.
///
/// ```
/// use ipc_proto::doc::{Observed, Scope};
/// use serde_json::json;
///
/// let mut o = Observed::new("motors.left", &json!({"motors": {"left": 1}}))?;
/// let after = json!({"motors": {"left": 2}, "lights": true});
/// assert_eq!(o.update(&Scope::Root, &after), Some(Some(&json!(2))));
/// assert_eq!(o.update(&Scope::Root, &after), None, "nothing new at motors.left");
/// # Ok::<(), ipc_proto::doc::PathError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// `None`: the whole document.
    path: Option<Path>,
    last: Option<Value>,
}

impl Observed {
    /// An observer of `path` (dotted, array indices included; `""` for the whole document)
    /// of a document whose value is `value` now.
    pub fn new(path: &str, value: &Value) -> Result<Self, PathError> {
        let path = if path.is_empty() {
            None
        } else {
            Some(path.parse::<Path>()?)
        };
        let last = Self::at(path.as_ref(), value).cloned();
        Ok(Self { path, last })
    }

    /// The path observed; `None` for the whole document.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_ref()
    }

    /// The value at the path as last seen (`None`: absent).
    pub fn value(&self) -> Option<&Value> {
        self.last.as_ref()
    }

    /// After a change of `scope` that left the document at `value`: the new value at the path
    /// (`Some(None)`: it is gone) if it differs from the last one seen, else `None`.
    pub fn update(&mut self, scope: &Scope, value: &Value) -> Option<Option<&Value>> {
        if self.path.as_ref().is_some_and(|p| !scope.may_affect(p)) {
            return None;
        }
        let now = Self::at(self.path.as_ref(), value);
        if now == self.last.as_ref() {
            return None;
        }
        self.last = now.cloned();
        Some(self.last.as_ref())
    }

    fn at<'v>(path: Option<&Path>, value: &'v Value) -> Option<&'v Value> {
        match path {
            None => Some(value),
            Some(p) => p.get(value),
        }
    }
}

/// Whether the value at `path` (or its absence) differs between `before` and `after`:
/// what a path observer needs to decide whether to fire. `None` means the root.
pub fn differs_at(before: &Value, after: &Value, path: Option<&Path>) -> bool {
    match path {
        None => before != after,
        Some(p) => p.get(before) != p.get(after),
    }
}

/// Whether `value` nests deeper than `max` levels of arrays and objects. Recurses at most
/// `max + 1` levels, whatever the value.
pub(crate) fn deeper_than(value: &Value, max: usize) -> bool {
    match value {
        Value::Array(items) => max == 0 || items.iter().any(|v| deeper_than(v, max - 1)),
        Value::Object(map) => max == 0 || map.values().any(|v| deeper_than(v, max - 1)),
        _ => false,
    }
}

/// The length of `value` as compact JSON text.
pub(crate) fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("a JSON value always serializes");
    count.0
}

/// Checks a document value against [`MAX_DEPTH`] and `max_value`.
pub(crate) fn check_value(value: &Value, max_value: usize) -> Result<(), RejectReason> {
    if deeper_than(value, MAX_DEPTH) {
        return Err(RejectReason::TooDeep { max: MAX_DEPTH });
    }
    let len = json_len(value);
    if len > max_value {
        return Err(RejectReason::TooLarge {
            len,
            max: max_value,
        });
    }
    Ok(())
}
