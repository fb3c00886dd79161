//! A replica's configuration, inputs, outputs and events.

use super::super::types::{DocLimits, PatchId, Refusal, RejectReason, Scope};
use super::super::update::Update;
use crate::ids::NodeId;
use crate::wire::DocMsg;

/// How a [`DocReplica`](crate::doc::DocReplica) behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This node: the origin of its patches.
    pub node: NodeId,
    /// Bounds (brought into range by [`DocLimits::validated`]); the host's should be the same.
    pub limits: DocLimits,
    /// Whether this node is a **witness**: it keeps a copy of every document of the group,
    /// opened or not, within [`DocLimits::max_docs`] and [`DocLimits::max_witness_bytes`],
    /// and confirms to the host what it holds, so that a patch acknowledged to its writer
    /// survives the death of any one process (see the [module docs](super::super)). Default yes;
    /// a node that will not outlive its work (a one-shot writer) should say no.
    pub witness: bool,
}

impl ReplicaConfig {
    /// The defaults for `node`.
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            limits: DocLimits::default(),
            witness: true,
        }
    }

    /// Sets [`limits`](Self::limits).
    pub fn limits(&mut self, limits: DocLimits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// Sets [`witness`](Self::witness).
    pub fn witness(&mut self, witness: bool) -> &mut Self {
        self.witness = witness;
        self
    }
}

/// An input to a [`DocReplica`](crate::doc::DocReplica); its commands are methods
/// ([`DocReplica::open`](crate::doc::DocReplica::open),
/// [`DocReplica::patch`](crate::doc::DocReplica::patch),
/// [`DocReplica::close`](crate::doc::DocReplica::close)).
#[derive(Debug)]
pub enum ReplicaInput<'a> {
    /// The node's link to a hub is up and synced: the replica opens every document again,
    /// with its confirmed state, and sends its unanswered patches once the host answers.
    HubUp,
    /// The link to the hub is gone: the replica keeps its documents and patches for the next
    /// hub.
    HubDown,
    /// A message from the host.
    Msg(DocMsg),
    /// A message from the host, still encoded: the replica decodes it with its limits, and an
    /// undecodable message is a protocol violation.
    Bytes(&'a [u8]),
}

/// What a [`DocReplica`](crate::doc::DocReplica) asks of its driver; drain with
/// [`DocReplica::poll_output`](crate::doc::DocReplica::poll_output).
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum ReplicaOutput {
    /// Send `msg` to the hub (encode it with [`encode_doc`](crate::wire::encode_doc)).
    Send(DocMsg),
    /// The hub broke the document protocol: close the link to it. The replica behaves as if
    /// [`ReplicaInput::HubDown`] had come, and opens its documents again on the next
    /// [`ReplicaInput::HubUp`].
    Disconnect,
    /// Something to report.
    Evt(DocEvt),
}

impl ReplicaOutput {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Send(_) => "Send",
            Self::Disconnect => "Disconnect",
            Self::Evt(e) => e.name(),
        }
    }
}

/// What a [`DocReplica`](crate::doc::DocReplica) reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocEvt {
    /// The host answered [`DocReplica::open`](crate::doc::DocReplica::open) with its state; the
    /// document is live (edge, once per `open`). A [`Changed`](Self::Changed) follows if the host's
    /// value is not the default.
    Opened {
        /// The document.
        name: String,
        /// The host's version.
        version: u64,
    },
    /// The local value (what [`DocReplica::value`](crate::doc::DocReplica::value) returns) changed
    /// (edge, once per change): a local patch, a patch of another node, a rejection rolling back a
    /// local patch, a state from the host. Observers of a path fire if the scope may affect it and
    /// the value under it differs ([`differs_at`](super::super::differs_at)).
    Changed {
        /// The document.
        name: String,
        /// The confirmed version the local value builds on.
        version: u64,
        /// Where it changed.
        scope: Scope,
    },
    /// The host accepted a patch, this node's or another's, as `version`; the confirmed value
    /// ([`DocReplica::confirmed`](crate::doc::DocReplica::confirmed)) is now that version (edge,
    /// once per version received; a state from the host skips the versions it covers).
    Patched {
        /// The document.
        name: String,
        /// The version it made.
        version: u64,
        /// Its origin.
        origin: NodeId,
        /// When it was made, in milliseconds since the Unix epoch: what `$currentDate`
        /// wrote, so that the update applied to the previous version gives this one.
        wall_ms: u64,
        /// The update.
        update: Update,
    },
    /// The host accepted this node's patch `id` (edge, exactly once per patch, or
    /// [`Rejected`](Self::Rejected)). `version` is the version that applied it, or, when a
    /// state from a new host showed it applied, that state's version.
    ///
    /// The host answers once a witness holds the patch, or at once when the group has no
    /// witness for it: `witnesses` says which. At least 1, the patch survives the death of
    /// any one process, the host's and this node's included; 0, it is lost if the host dies
    /// before another member opens the document (see the [module docs](super::super)).
    Accepted {
        /// The document.
        name: String,
        /// The patch.
        id: PatchId,
        /// See above.
        version: u64,
        /// How many members other than the host and this node held it when the host answered.
        witnesses: u32,
    },
    /// The host rejected this node's patch `id`: the local value no longer includes it (edge,
    /// exactly once per patch, or [`Accepted`](Self::Accepted)).
    Rejected {
        /// The document.
        name: String,
        /// The patch.
        id: PatchId,
        /// Why.
        reason: RejectReason,
    },
    /// The host's state replaced the confirmed value: after a new hub settled, or after a
    /// resync this replica asked for (edge).
    Resynced {
        /// The document.
        name: String,
        /// The host's version.
        version: u64,
    },
    /// The host refused to open the document; it is closed, and its patches are dropped
    /// without an answer of their own (edge).
    Refused {
        /// The document.
        name: String,
        /// Why.
        reason: Refusal,
    },
    /// The host's state is older than the one this replica held: versions after `to` up to
    /// `from` were lost (the host and every member that held them died, or two hubs ran at
    /// once), and the document goes on from `to`, counting again from there. Reported before
    /// the [`Resynced`](Self::Resynced) that replaces the value (edge).
    VersionsLost {
        /// The document.
        name: String,
        /// The version this replica held.
        from: u64,
        /// The host's version.
        to: u64,
    },
    /// This witness keeps no copy of `name`: it would exceed [`DocLimits::max_docs`] or
    /// [`DocLimits::max_witness_bytes`] (edge, once per document and hub).
    NotWitnessed {
        /// The document.
        name: String,
        /// The documents this node holds as a witness.
        docs: usize,
        /// Their values' size, as compact JSON.
        bytes: usize,
    },
    /// The hub broke the document protocol; [`ReplicaOutput::Disconnect`] follows (edge).
    HubMisbehaved {
        /// What it did.
        reason: String,
    },
}

impl DocEvt {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "Opened",
            Self::Changed { .. } => "Changed",
            Self::Patched { .. } => "Patched",
            Self::Accepted { .. } => "Accepted",
            Self::Rejected { .. } => "Rejected",
            Self::Resynced { .. } => "Resynced",
            Self::Refused { .. } => "Refused",
            Self::NotWitnessed { .. } => "NotWitnessed",
            Self::VersionsLost { .. } => "VersionsLost",
            Self::HubMisbehaved { .. } => "HubMisbehaved",
        }
    }
}
