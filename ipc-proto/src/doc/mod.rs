//! Shared documents: a JSON value per name, replicated on every node that opens it, patched
//! with MongoDB update operators ([`Update`]), hosted by the hub.
//!
//! Two sans-IO machines speak the protocol over each spoke's link to the hub:
//! [`DocHost`] (one per hub, every document of the group) is the source of truth, and
//! [`DocReplica`] (one per node, every document that node opened) keeps the host's confirmed
//! state plus the node's own patches that the host has not answered yet. Their messages are
//! [`DocMsg`]s, encoded by [`encode_doc`](crate::wire::encode_doc) and carried inside
//! topology frames; a link is FIFO and reliable while it lives, and dies with the hub.
//!
//! # Documents and versions
//! A document is a name, a JSON value and a **version**: 0 when created, one more per accepted
//! patch. The host also keeps, per origin node, which of its patches the value includes (the
//! *marks*: the origin's last accepted `origin_seq`, and which of the [`HOLE_WINDOW`] before
//! it were not accepted), and a bounded *log* of the paths the most recent versions wrote.
//! Value, version, marks and log are a function of the accepted patches in version order, so
//! a replica that applied the same versions holds the host's state (marks only differ when
//! they are full and host and replica evict different origins, see below).
//!
//! Opening a document that does not exist creates it from the opener's default value. Opening
//! one that exists gives the opener the host's state, whatever its default: a default never
//! overwrites anything.
//!
//! # Patches
//! [`DocReplica::patch`] parses and validates the whole update, applies it to the local value
//! at once (optimistically), and sends it with an `origin_seq` (1, 2, 3... per document), the
//! version it was made against (`base`) and a wall-clock timestamp, which `$currentDate` uses
//! so that every replica computes the same value. The host takes patches one at a time, each
//! origin's in order:
//!
//! 1. A patch its marks show as accepted is a resend: it is answered with [`DocMsg::Ack`] and
//!    not applied again. One they show as not accepted (a later one of the same origin was)
//!    is answered with [`RejectReason::Earlier`].
//! 2. **Conflicts.** It is rejected if a patch accepted after `base` by **another** origin
//!    wrote the same path, a parent or a child of one of its paths ([`Path::overlaps`]).
//!    Patches on disjoint paths never conflict, and an origin's patches never conflict with
//!    each other (each was made on top of the previous ones). If `base` is older than the log
//!    window, the host cannot tell, and rejects it as [`RejectReason::Stale`].
//! 3. It is applied, all or nothing; a type error, or a result above
//!    [`DocLimits::max_value`] or [`MAX_DEPTH`], rejects it and changes nothing.
//! 4. Accepted, it becomes the next version and is broadcast ([`DocMsg::Patched`]) to every
//!    link that has the document open or is a witness (below), its origin's included. The
//!    origin's acknowledgement ([`DocMsg::Ack`], reported as [`DocEvt::Accepted`]) waits for
//!    a witness to hold it.
//!
//! # Witnesses: what an acknowledgement means
//! Every member is a **witness** unless configured otherwise ([`ReplicaConfig::witness`];
//! an observer never is): on each hub link it says so ([`DocMsg::Witness`]), the host sends
//! it the state of every document of the group and every broadcast, opened or not, and the
//! witness confirms the version it holds after each batch it received ([`DocMsg::Have`]). A
//! document it has not opened is kept *passive*: as encoded JSON text plus the patches since,
//! folded in once they take half its size (about its size as JSON, where a parsed value takes
//! several times that), within [`DocLimits::max_docs`] and [`DocLimits::max_witness_bytes`]
//! (past them it keeps no copy and says so: [`DocEvt::NotWitnessed`]); opening it later
//! starts from that copy.
//!
//! The host answers a patch once a witness other than the host's own node
//! ([`HostConfig::node`]) and other than the patch's origin holds its version, and at once
//! when no such witness has the document. [`DocEvt::Accepted`] carries how many held it
//! (`witnesses`). So:
//!
//! - **With `witnesses` ≥ 1, the patch survives the death of any one process**: the host's
//!   (a witness is a survivor, and the new host adopts the newest state among the survivors),
//!   the origin's (a one-shot writer may exit the moment it has its answer), or a witness's
//!   (the host still has it). It is lost only if the host and every witness that held it die
//!   before the new host gathers (or are unreachable for the whole grace), or if two hubs run
//!   at once.
//! - **With `witnesses` = 0** (a group of the host's node and the writer alone, or whose
//!   witnesses are full), the patch is in the host's history only, and the writer's while it
//!   lives: it is lost if the host dies before another member holds it, and the new host
//!   serves an older version (see [`HostEvt::NewerStateIgnored`]).
//!
//! The price is one hop: the witness's receipt travels to the host before the answer goes
//! out (`ipc-pubsub bench doc` measures both).
//!
//! A rejection ([`DocMsg::Rejected`]) goes to the origin only, with the host's version and
//! what conflicted (path, version, origin) or what failed (operator and path). The link being
//! FIFO, the origin has already applied every broadcast up to that version: it drops the
//! patch, recomputes its local value (confirmed value plus the patches still pending) and
//! reports the rejection. A replica that finds a broadcast skipping a version, or failing to
//! apply, asks for the host's state ([`DocMsg::Resync`]) instead of diverging.
//!
//! # Failover
//! When the hub dies its links die with it; replicas keep their confirmed state and their
//! pending patches. The new hub's host starts **gathering**: on [`ReplicaInput::HubUp`] every
//! replica opens its documents again, sending its confirmed state (version, value, marks,
//! log). The host adopts, per document, the state with the highest version (all are prefixes
//! of one history, so that is the most complete) and answers nobody until the reconnection
//! grace is over ([`HostInput::Settled`], or [`HostConfig::gather_timeout`]). Then it sends
//! its state to every opener ([`DocMsg::State`]). Each replica replaces its confirmed state,
//! answers those of its pending patches that the adopted marks show as accepted (or not), and
//! sends the others again, in order, with their original `origin_seq`. A replica sends a
//! document's patches only after the host's state for it arrived on the current link, so the
//! host never holds patches while gathering, and a patch is never applied twice: one that no
//! survivor had seen accepted is applied now, once, so an `$inc` is neither lost nor doubled.
//!
//! # What is guaranteed, and what is not
//! - Every replica converges to the host's value, and the host's value is the accepted
//!   patches applied in version order.
//! - Every patch a replica issues gets exactly one answer ([`DocEvt::Accepted`] or
//!   [`DocEvt::Rejected`]), across any number of hub failovers, as long as the replica lives
//!   and keeps the document open (a patch pending at [`DocReplica::close`], or when the host
//!   refuses the opening, gets none), and an answer never lies: accepted means in the host's
//!   history, rejected means not applied.
//! - A patch acknowledged with a witness survives any one death (see above). An origin keeps
//!   each of its patches until the acknowledgement, also after it saw the broadcast, and sends
//!   it again to a new host, which applies it if its state lacks it, or acknowledges it once a
//!   witness holds its state if not.
//! - **Not guaranteed:** a patch acknowledged with no witness, or one whose every holder
//!   died, is lost if the host dies; so is an accepted patch if two hubs run at once. The new
//!   host then serves an older version. A replica that comes back with a newer state is given
//!   the host's (the host reports [`HostEvt::NewerStateIgnored`]), and its pending patches
//!   made against the lost versions are checked against everything since the host's version.
//! - Marks remember at most [`DocLimits::max_origins`] origins per document. An origin evicted
//!   from them (a node declared gone first, oldest first; else the least recently active) that
//!   then sends again a patch accepted before the eviction would have it applied twice. Nodes
//!   come and go with random ids, so pruning is needed, but a node expelled for a stall comes
//!   back with the same id and resends: that is why a gone node is only evicted once the marks
//!   are full, not when it goes.
//!
//! # Bounds
//! Every length from a peer is checked against [`DocLimits`] before anything is allocated for
//! it: message size ([`DocLimits::max_chunk`]; larger values and states travel in several
//! messages, reassembled up to [`DocLimits::max_body`]), names, documents per group and per
//! node, value size and depth, pending patches per document, marks, log. A patch larger than
//! one message is refused locally ([`DocError::TooLarge`]).
//!
//! # Wiring
//! [`Member`](crate::Member) does all of this (see its module docs); a driver of a member
//! only calls [`Member::open_doc`](crate::Member::open_doc),
//! [`Member::patch_doc`](crate::Member::patch_doc) and reads
//! [`MemberEvt::Doc`](crate::MemberEvt::Doc). Without a member:
//!
//! - **Hub.** Start a [`DocHost`] with the hub ([`HostConfig::node`]: the hub's own node). Feed each document message from a spoke's
//!   link as [`HostInput::Bytes`] with the link and the spoke's node (its patches' origin),
//!   [`HostInput::PeerDown`] when the link goes, [`HostInput::NodeGone`] when the hub declares
//!   a node gone, and [`HostInput::Settled`] when the reconnection grace ends (at once for a
//!   hub with no inherited history). Call [`DocHost::handle_timeout`] at
//!   [`DocHost::poll_timeout`]. [`HostOutput::Send`] goes to that link,
//!   [`HostOutput::Disconnect`] closes it.
//! - **Node.** One [`DocReplica`] per node, across hub changes (a witness, by default). [`ReplicaInput::HubUp`] once
//!   the spoke is synced with a hub, [`ReplicaInput::HubDown`] when its link goes, each
//!   document message from the hub as [`ReplicaInput::Bytes`]. [`ReplicaOutput::Send`] goes to
//!   the hub, [`ReplicaOutput::Disconnect`] closes the hub link.
//! - Host and replicas use the same [`DocLimits`]; `max_chunk` must leave room for the
//!   topology frame around a message.
//!
//! ```
//! use std::time::Instant;
//! use ipc_proto::doc::{
//!     DocHost, DocReplica, HostConfig, HostInput, HostOutput, ReplicaConfig, ReplicaInput,
//!     ReplicaOutput,
//! };
//! use ipc_proto::wire::encode_doc;
//! use ipc_proto::{NodeId, PeerId};
//! use serde_json::json;
//!
//! let now = Instant::now();
//! let node = NodeId::new(7).expect("non-zero");
//! let mut host = DocHost::new(HostConfig::default(), now);
//! host.handle(now, HostInput::Settled)?; // a new group: nothing to gather
//! let mut replica = DocReplica::new(ReplicaConfig::new(node), now);
//! replica.handle(now, ReplicaInput::HubUp)?; // the spoke is synced with the hub
//! replica.open(now, "config", json!({"retries": 3}))?;
//! replica.patch(now, "config", &json!({"$inc": {"retries": 1}}), 1_780_000_000_000)?;
//! // What a driver does over the hub link, until both sides are quiet.
//! loop {
//!     let mut moved = false;
//!     while let Some(out) = replica.poll_output() {
//!         if let ReplicaOutput::Send(msg) = out {
//!             let data = encode_doc(&msg);
//!             host.handle(now, HostInput::Bytes { peer: PeerId(1), node, data: &data })?;
//!             moved = true;
//!         }
//!     }
//!     while let Some(out) = host.poll_output() {
//!         if let HostOutput::Send { msg, .. } = out {
//!             replica.handle(now, ReplicaInput::Bytes(&encode_doc(&msg)))?;
//!             moved = true;
//!         }
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! assert_eq!(replica.value("config"), Some(&json!({"retries": 4})));
//! assert_eq!(host.version("config"), Some(1));
//! # Ok::<(), ipc_proto::doc::DocError>(())
//! ```

mod host;
mod path;
mod replica;
mod state;
mod update;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::NodeId;

pub use host::{DocHost, HostConfig, HostEvt, HostInput, HostOutput};
pub use path::{MAX_PATH_BYTES, MAX_SEGMENTS, Path, PathError};
pub use replica::{DocEvt, DocReplica, ReplicaConfig, ReplicaInput, ReplicaOutput};
pub use update::{ApplyContext, MAX_PADDING, Operator, Update, UpdateError, ValueKind};

pub(crate) use state::{DocState, Log, LogEntry, Mark, Marks};

#[doc(no_inline)]
pub use crate::wire::DocMsg;

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
    /// Largest encoded [`DocMsg`], in bytes. Default 60 KiB, so that a message and its
    /// topology frame fit the hub link's 64 KiB frames. At least 4 KiB.
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

    /// The largest body (a value with its marks and log) of an [`DocMsg::Open`] or
    /// [`DocMsg::State`], reassembled from its chunks.
    pub fn max_body(&self) -> usize {
        self.max_value + self.max_origins * 48 + self.max_log_bytes + 64
    }

    /// The largest encoded [`DocMsg::Patch`]: room is left for the broadcast's extra fields.
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

/// A patch issued by this node: returned by [`DocReplica::patch`], named again by
/// [`DocEvt::Accepted`] and [`DocEvt::Rejected`]. Unique per [`DocReplica`].
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

/// Why a command to a [`DocReplica`] was refused; nothing changed.
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

/// Where a document's local value changed ([`DocEvt::Changed`]).
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
}

/// One observer of a path of a document, as drivers keep them: it remembers the value at its
/// path and, after each [`DocEvt::Changed`], says whether that value changed, so that an
/// observer fires when its path or anything under it changes, and only then.
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
