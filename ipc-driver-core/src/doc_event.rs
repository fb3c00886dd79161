//! What the application sees of its documents, in both drivers: events ([`DocEvent`]),
//! acknowledgements ([`Committed`]), patch errors ([`PatchError`]), snapshots
//! ([`DocSnapshot`]) and observer ids ([`ObserverId`]).

use std::time::Duration;

use ipc_proto::NodeId;
use ipc_proto::doc::{DocError, DocEvt, PatchId, Refusal, RejectReason, Scope, Update};

/// The host's acknowledgement of a patch: the version that applied it, and how many
/// witnesses held it when the host answered.
///
/// The host answers once a **witness** (a member other than the host's and this node that
/// keeps a copy of the group's documents, see the builders' `witness`)
/// holds the patch, or at once when the group has no witness for it. With `witnesses` at
/// least 1, the patch survives the death of any one process, the hub's and this one's
/// included, even if this process exits right away. With 0 (a group of the hub and this
/// node alone, say), it is lost if the hub dies before another member holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Committed {
    /// The version that applied the patch (or, after a hub change, the new host's version
    /// that includes it).
    pub version: u64,
    /// How many members other than the host and this node held it.
    pub witnesses: u32,
}

/// Something about a shared document ([`NodeEvent::Doc`](crate::NodeEvent::Doc)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocEvent {
    /// The host answered the opening: the document is live at `version` (once per opening).
    Opened {
        /// The document.
        doc: String,
        /// The host's version.
        version: u64,
    },
    /// The host accepted a patch, this node's or another's, as `version` (once per version
    /// received; a state from the host skips the versions it covers, see
    /// [`Resynced`](Self::Resynced)). Applying `update` (with `wall_ms` for `$currentDate`)
    /// to version `version - 1` gives this version.
    Patched {
        /// The document.
        doc: String,
        /// The version it made.
        version: u64,
        /// Its origin.
        origin: NodeId,
        /// When it was made, in milliseconds since the Unix epoch.
        wall_ms: u64,
        /// The update.
        update: Update,
    },
    /// The host accepted this node's patch `ticket` as `version`, and a witness holds it
    /// (see [`Committed`]).
    Accepted {
        /// The document.
        doc: String,
        /// The patch (what the patch call returned).
        ticket: PatchId,
        /// The version that applied it (or, after a hub change, the new host's version that
        /// includes it).
        version: u64,
        /// How many members other than the host and this node held it when the host
        /// answered ([`Committed::witnesses`]).
        witnesses: u32,
    },
    /// The host rejected this node's patch `ticket`; the local value no longer includes it.
    Rejected {
        /// The document.
        doc: String,
        /// The patch (what the patch call returned).
        ticket: PatchId,
        /// Why.
        reason: RejectReason,
    },
    /// The host's state replaced the document's value: after a hub change (a new host
    /// settled), or after this node asked for it. The versions it skips have no
    /// [`Patched`](Self::Patched).
    Resynced {
        /// The document.
        doc: String,
        /// The host's version.
        version: u64,
    },
    /// The host's state is older than the one this node held: versions after `to` up to
    /// `from` were lost with a hub (nobody that held them survived it), and the document
    /// goes on from `to`, counting again from there. A [`Resynced`](Self::Resynced) follows.
    VersionsLost {
        /// The document.
        doc: String,
        /// The version this node held.
        from: u64,
        /// The host's version.
        to: u64,
    },
    /// The host refused to open the document; it is closed (its patches fail).
    Refused {
        /// The document.
        doc: String,
        /// Why.
        reason: Refusal,
    },
    /// The local value changed, somewhere `scope` says: a local patch, another node's, a
    /// rejection rolling back a local patch, a state from the host. The std driver reports it
    /// at most once per document per wakeup of its I/O thread, once `Doc::snapshot` shows the
    /// change; the calloop driver once per change.
    Changed {
        /// The document.
        doc: String,
        /// The host's version the value builds on (`None` until the host answered).
        version: Option<u64>,
        /// Where it changed.
        scope: Scope,
    },
}

impl DocEvent {
    /// The event of a replica's `evt` as the application sees it; `version_of` gives the
    /// host's version a document's local value builds on now (`None` until the host
    /// answered). `None` for replica events an application is not told of.
    pub fn from_replica(evt: DocEvt, version_of: impl FnOnce(&str) -> Option<u64>) -> Option<Self> {
        Some(match evt {
            DocEvt::Opened { name, version } => Self::Opened { doc: name, version },
            DocEvt::Changed { name, scope, .. } => Self::Changed {
                version: version_of(&name),
                doc: name,
                scope,
            },
            DocEvt::Patched {
                name,
                version,
                origin,
                wall_ms,
                update,
            } => Self::Patched {
                doc: name,
                version,
                origin,
                wall_ms,
                update,
            },
            DocEvt::Accepted {
                name,
                id,
                version,
                witnesses,
            } => Self::Accepted {
                doc: name,
                ticket: id,
                version,
                witnesses,
            },
            DocEvt::Rejected { name, id, reason } => Self::Rejected {
                doc: name,
                ticket: id,
                reason,
            },
            DocEvt::Resynced { name, version } => Self::Resynced { doc: name, version },
            DocEvt::VersionsLost { name, from, to } => Self::VersionsLost {
                doc: name,
                from,
                to,
            },
            DocEvt::Refused { name, reason } => Self::Refused { doc: name, reason },
            _ => return None,
        })
    }

    /// A short name, in snake case, for logs and JSON lines.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "opened",
            Self::Patched { .. } => "patched",
            Self::Accepted { .. } => "accepted",
            Self::Rejected { .. } => "rejected",
            Self::Resynced { .. } => "resynced",
            Self::VersionsLost { .. } => "versions_lost",
            Self::Refused { .. } => "refused",
            Self::Changed { .. } => "changed",
        }
    }

    /// The document it is about.
    pub fn doc(&self) -> &str {
        match self {
            Self::Opened { doc, .. }
            | Self::Patched { doc, .. }
            | Self::Accepted { doc, .. }
            | Self::Rejected { doc, .. }
            | Self::Resynced { doc, .. }
            | Self::VersionsLost { doc, .. }
            | Self::Refused { doc, .. }
            | Self::Changed { doc, .. } => doc,
        }
    }

    /// The version it is about, if any.
    pub fn version(&self) -> Option<u64> {
        match self {
            Self::Opened { version, .. }
            | Self::Patched { version, .. }
            | Self::Accepted { version, .. }
            | Self::Resynced { version, .. } => Some(*version),
            Self::VersionsLost { to, .. } => Some(*to),
            Self::Changed { version, .. } => *version,
            Self::Rejected { .. } | Self::Refused { .. } => None,
        }
    }
}

/// Why a patch did not make it into the document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// Refused locally, nothing sent: an invalid update (the error names the operator and the
    /// path), one that fails on the local value, too large, too many patches waiting...
    #[error(transparent)]
    Invalid(#[from] DocError),
    /// The host rejected it: a conflict with another node's patch on an overlapping path
    /// (the path, version and origin are named), or a failure on the host's value.
    #[error("rejected by the host: {0}")]
    Rejected(RejectReason),
    /// No answer will come: the document was closed or refused, or the node stopped.
    #[error("no answer: {0}")]
    Unanswered(String),
    /// Waited too long; the patch may still be accepted or rejected later.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A document as this node holds it: the host's version the value builds on (`None` until the
/// host answered) and the local value, with this node's unanswered patches applied. The std
/// driver's `Doc::snapshot` gives an `Arc` of the value, the calloop driver's `Node::doc` a
/// reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocSnapshot<V> {
    /// The host's version the value builds on; `None` until the host answered.
    pub version: Option<u64>,
    /// The local value.
    pub value: V,
}

/// An observer of a document path, to remove it (`unobserve`).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ObserverId(pub u64);
