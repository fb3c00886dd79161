//! The frames of the protocol.

use serde::{Deserialize, Serialize};

use crate::history::Horizon;
use crate::ids::{NodeId, Term};
use crate::keepalive::Keepalive;
use crate::topology::{NodeInfo, Record};

/// The protocol version this crate speaks; a hub refuses a spoke that speaks another.
///
/// 3: [`Hello`] and [`Welcome`] carry the sender's [`Keepalive`] figures.
pub const PROTOCOL_VERSION: u16 = 3;

/// One protocol message.
///
/// Spoke to hub: `Hello`, then its history in `History` chunks, its own topics in `Own`
/// chunks and `IntroEnd`; afterwards `Change`s. Hub to spoke: `Welcome`, the hub's history in
/// `Snapshot` chunks and `SnapshotEnd`; afterwards `Minted` and `Relayed` records and `Horizon`
/// updates. Both ways: `Heartbeat`, `Goodbye`, and once synced, `Doc` (shared-document
/// messages); spoke to hub, after every sync: `DocReady`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Frame {
    /// Tag 1. The first frame a spoke sends.
    Hello(Hello),
    /// Tag 2. A chunk of the spoke's history, in position order.
    History(Vec<Record>),
    /// Tag 3. A chunk of the spoke's own topics (announcements and subscriptions only).
    Own(Vec<OwnChange>),
    /// Tag 4. The spoke's introduction is complete.
    IntroEnd,
    /// Tag 5. A novel change the spoke makes to its own topics.
    Change(OwnChange),
    /// Tag 6. Nothing to say, but alive.
    Heartbeat,
    /// Tag 7. The sender closes the link, and why.
    Goodbye(CloseReason),
    /// Tag 8. The hub accepted the introduction; its snapshot follows.
    Welcome(Welcome),
    /// Tag 9. A chunk of the hub's history, in position order.
    Snapshot(Vec<Record>),
    /// Tag 10. The snapshot is complete; with it, what the hub has seen.
    SnapshotEnd(Horizon),
    /// Tag 11. Records the hub just minted, in order.
    Minted(Vec<Record>),
    /// Tag 12. Records of earlier hubs the hub accepted from another spoke's history.
    Relayed(Vec<Record>),
    /// Tag 13. What the hub has now seen, after merging a spoke's history.
    Horizon(Horizon),
    /// Tag 14, both ways once the spoke is synced: one encoded shared-document message
    /// ([`DocMsg`](crate::wire::DocMsg)), raw after the tag. Bounded by the frame's length
    /// ([`Limits::max_frame`](crate::wire::Limits::max_frame)); its contents are checked by the
    /// document machines, with their own limits.
    Doc(Vec<u8>),
    /// Tag 15, spoke to hub, once after every sync: the spoke's node has sent the opening of
    /// every document it has open (they precede this frame on the link), so that a new hub's
    /// document host knows when every inherited node's state is in.
    DocReady,
}

impl Frame {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello(_) => "Hello",
            Self::History(_) => "History",
            Self::Own(_) => "Own",
            Self::IntroEnd => "IntroEnd",
            Self::Change(_) => "Change",
            Self::Heartbeat => "Heartbeat",
            Self::Goodbye(_) => "Goodbye",
            Self::Welcome(_) => "Welcome",
            Self::Snapshot(_) => "Snapshot",
            Self::SnapshotEnd(_) => "SnapshotEnd",
            Self::Minted(_) => "Minted",
            Self::Relayed(_) => "Relayed",
            Self::Horizon(_) => "Horizon",
            Self::Doc(_) => "Doc",
            Self::DocReady => "DocReady",
        }
    }
}

/// A spoke introduces itself.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The spoke's node, or `None` for an observer that watches without joining.
    ///
    /// The hub replaces `pid` and `uid` with the kernel's peer credentials.
    pub member: Option<NodeInfo>,
    /// The highest hub term the spoke knows of.
    pub term: Term,
    /// What the spoke's history has seen; the hub merges it once the history is in.
    pub horizon: Horizon,
    /// The spoke's heartbeat interval and keepalive limit: the hub sends it heartbeats at
    /// the shorter of its own interval and the spoke's.
    pub keepalive: Keepalive,
}

/// The hub accepts a spoke.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Welcome {
    /// The node hosting the hub.
    pub hub: NodeId,
    /// The hub's term.
    pub term: Term,
    /// The hub's heartbeat interval and keepalive limit: the spoke sends it heartbeats at the
    /// shorter of its own interval and the hub's.
    pub keepalive: Keepalive,
}

/// A change a node makes to its own topics; the hub knows which node from the link.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum OwnChange {
    /// Publish `topic` with payload type `mime`.
    Announce {
        /// The topic.
        topic: String,
        /// The payload type.
        mime: String,
    },
    /// Stop publishing `topic`.
    Retract {
        /// The topic.
        topic: String,
    },
    /// Subscribe to `topic`.
    Subscribe {
        /// The topic.
        topic: String,
    },
    /// Unsubscribe from `topic`.
    Unsubscribe {
        /// The topic.
        topic: String,
    },
}

impl OwnChange {
    /// The topic the change is about.
    pub fn topic(&self) -> &str {
        match self {
            Self::Announce { topic, .. }
            | Self::Retract { topic }
            | Self::Subscribe { topic }
            | Self::Unsubscribe { topic } => topic,
        }
    }
}

/// Why a link is closed; carried by [`Frame::Goodbye`] and reported in events.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The node leaves the group.
    #[error("leaving the group")]
    Leaving,
    /// The hub's node leaves and takes the hub down with it.
    #[error("hub shutting down")]
    HubClosing,
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {theirs} (this side speaks {ours})")]
    VersionMismatch {
        /// The version the peer sent.
        theirs: u16,
        /// The version this side speaks.
        ours: u16,
    },
    /// The peer's credentials are not allowed in this group.
    #[error("uid {uid} / gid {gid} is not allowed in this group")]
    NotAllowed {
        /// The peer's uid.
        uid: u32,
        /// The peer's gid.
        gid: u32,
    },
    /// Another live link already speaks for this node id.
    #[error("node {0} is already connected")]
    DuplicateNode(NodeId),
    /// The peer was silent for longer than the keepalive timeout.
    #[error("silent for longer than the keepalive timeout")]
    Expelled,
    /// The peer broke the protocol.
    #[error("protocol violation: {0}")]
    ProtocolViolation(String),
}
