//! What a node tells its application, in both drivers: [`NodeEvent`], the kinds of event an
//! application may ask for ([`EventKinds`]) and the hub a node follows ([`HubInfo`]).

use std::fmt;
use std::ops::BitOr;
use std::sync::Arc;

use ipc_proto::data::Loss;
use ipc_proto::{CloseReason, Event, Keepalive, Member, NodeId, Term};

use crate::doc_event::{DocEvent, ObserverId};
use crate::error::DriverError;
use crate::message::Message;

/// The hub a node follows: the node that runs it, and its term.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct HubInfo {
    /// The node running the hub.
    pub node: NodeId,
    /// The hub's term (it grows with every hub change).
    pub term: Term,
    /// The hub's heartbeat interval and keepalive limit, as its `Welcome` told them.
    pub keepalive: Keepalive,
}

impl HubInfo {
    /// The hub `member` is synced with, if any.
    pub fn of(member: &Member) -> Option<Self> {
        let (node, term) = member.hub()?;
        // Synced: the spoke holds the hub's Welcome, figures included.
        let keepalive = member.spoke().hub_keepalive().unwrap_or_default();
        Some(Self {
            node,
            term,
            keepalive,
        })
    }
}

impl fmt::Display for HubInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (term {})", self.node, self.term)
    }
}

/// Something a node reports to its application: the same enum in both drivers, so that one
/// `match` serves either.
///
/// Topology events come from the group's history ([`Event`]): each is a transition of the
/// node's view of the group, and replaying them gives that view. The `Hub*` events and
/// [`Synced`](Self::Synced) report the node's link to the group; `Doc*` its shared
/// documents. A few variants come from one driver only, and say so.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A change of the group.
    Topology(Event),
    /// The node holds the hub's history: after joining, and after every hub change.
    Synced {
        /// The node hosting the hub.
        hub: NodeId,
        /// The hub's term.
        term: Term,
    },
    /// This node won the hub address and now runs the group's hub.
    BecameHub,
    /// The link to the hub went down; the node is finding (or becoming) the next hub.
    HubLost,
    /// The hub has been silent for longer than the keepalive timeout (its process may be
    /// stopped). The node stays connected; [`NodeEvent::HubResponsive`] follows if it resumes,
    /// a new hub if it dies.
    HubUnresponsive,
    /// The hub spoke again after [`NodeEvent::HubUnresponsive`].
    HubResponsive,
    /// The hub closed the link, and why.
    HubClosed(CloseReason),
    /// Observers only: no hub answered (no group of that name exists right now). An observer
    /// never becomes the hub; it tries again after a backoff.
    HubAbsent,
    /// Something about a shared document this node has open: opened, changed (where:
    /// [`DocEvent::Changed`]'s scope), patched by any node, this node's patch accepted or
    /// rejected, replaced by a new host's state (a host change).
    Doc(DocEvent),
    /// The value at an observed document path changed (calloop driver: `Node::observe_doc`;
    /// the std driver calls the observer's closure instead); it comes right after the
    /// [`DocEvent::Changed`] that changed it.
    DocObserved {
        /// The document.
        doc: String,
        /// The observer.
        observer: ObserverId,
        /// The value at its path now (`None`: absent).
        value: Option<serde_json::Value>,
    },
    /// A message on a topic this node has a subscription to (calloop driver; the std driver
    /// hands messages to its `Subscription`s).
    Message(Message),
    /// Messages of a publisher on a subscribed topic that will not come (dropped at the
    /// publisher, lost with a replaced link or this node's expulsion), in their place: after
    /// that publisher's earlier messages, before its next (calloop driver; the std driver
    /// queues them in its `Subscription`s, see `Subscription::recv_incoming`).
    Lost(Loss),
    /// Messages this node held back for full `Block` subscribers of `topic` have all gone out
    /// (sent, or dropped for those still full after their timeout): publishing on it will not
    /// fail with [`DriverError::Full`] now (calloop driver).
    Room {
        /// The topic.
        topic: String,
    },
    /// A command sent through a handle to the node's loop failed (calloop driver).
    Failed {
        /// Which command (`"Announce"`, `"Publish"`...).
        command: &'static str,
        /// Why.
        error: Arc<DriverError>,
    },
    /// This receiver fell behind and the oldest events were dropped: `missed` of them (std
    /// driver). The current state is always available from the node's view.
    Lagged {
        /// How many were dropped.
        missed: u64,
    },
    /// The node has left the group (calloop driver: the source removes itself from the loop
    /// after this event; a std receiver simply ends).
    Left,
}

impl NodeEvent {
    /// Which kind of event this is, for [`EventKinds`]; `None` for those every receiver gets
    /// ([`Failed`](Self::Failed), [`Lagged`](Self::Lagged), [`Left`](Self::Left)).
    pub fn kind(&self) -> Option<EventKinds> {
        match self {
            Self::Topology(_)
            | Self::Synced { .. }
            | Self::BecameHub
            | Self::HubLost
            | Self::HubUnresponsive
            | Self::HubResponsive
            | Self::HubClosed(_)
            | Self::HubAbsent => Some(EventKinds::GROUP),
            Self::Doc(_) | Self::DocObserved { .. } => Some(EventKinds::DOCS),
            Self::Message(_) | Self::Lost(_) | Self::Room { .. } => Some(EventKinds::MESSAGES),
            Self::Failed { .. } | Self::Lagged { .. } | Self::Left => None,
        }
    }

    /// Whether a receiver of `kinds` gets this event.
    pub fn is(&self, kinds: EventKinds) -> bool {
        self.kind().is_none_or(|k| kinds.contains(k))
    }
}

/// A set of kinds of [`NodeEvent`], to receive only some: `EventKinds::GROUP` alone keeps a
/// busy document's patches from drowning the group's changes. Combine with `|`.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct EventKinds(u8);

impl EventKinds {
    /// The group: topology changes ([`NodeEvent::Topology`]) and the link to the hub
    /// ([`NodeEvent::Synced`], `BecameHub`, the `Hub*` events).
    pub const GROUP: Self = Self(1);
    /// Shared documents: [`NodeEvent::Doc`] and [`NodeEvent::DocObserved`].
    pub const DOCS: Self = Self(2);
    /// Messages: [`NodeEvent::Message`] and [`NodeEvent::Room`].
    pub const MESSAGES: Self = Self(4);
    /// Every kind.
    pub const ALL: Self = Self(7);

    /// Whether every kind of `other` is in this set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for EventKinds {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_filter_events_and_always_pass_the_receivers_own() {
        let lost = NodeEvent::HubLost;
        assert!(lost.is(EventKinds::GROUP));
        assert!(!lost.is(EventKinds::DOCS | EventKinds::MESSAGES));
        assert!(lost.is(EventKinds::ALL));
        let lagged = NodeEvent::Lagged { missed: 1 };
        assert!(lagged.is(EventKinds::DOCS));
        assert!(EventKinds::ALL.contains(EventKinds::GROUP | EventKinds::DOCS));
        assert!(!EventKinds::GROUP.contains(EventKinds::ALL));
    }
}
