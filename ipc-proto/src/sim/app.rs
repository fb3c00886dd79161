//! What the simulated applications are and hold, apart from the group that runs them: node
//! indices, the group's uid and each node's process credentials and data address, and what a
//! node's applications publish, take and read (the leaf that `group` and `data` both use).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::data::{Inbox, Incoming, Sequenced};
use crate::{Credentials, NodeId};

/// The uid of every simulated process (the group's access policy allows it).
pub(crate) const UID: u32 = 1000;

/// A node's index in the simulation (stable: crashed nodes keep theirs).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct NodeIx(pub usize);

/// A message as a simulated application receives it: whose, and its number.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SimMessage {
    /// The publishing node.
    pub publisher: NodeId,
    /// The publisher's sequence number for the topic.
    pub seq: u64,
}

impl Sequenced for SimMessage {
    fn publisher(&self) -> NodeId {
        self.publisher
    }

    fn seq(&self) -> u64 {
        self.seq
    }
}

/// What one node's applications publish and take.
#[derive(Debug, Default)]
pub(crate) struct NodeData {
    /// Topics announced and advertised, with the messages published on each.
    pub(crate) published: BTreeMap<String, u64>,
    /// Topics taken, each with its queue.
    pub(crate) inboxes: BTreeMap<String, Inbox<SimMessage>>,
    /// What the applications read from the queues, in order: (topic, message or loss).
    pub(crate) received: Vec<(Arc<str>, Incoming<SimMessage>)>,
    /// Deliveries for a topic no application takes (dropped, as a driver would).
    pub(crate) untaken: u64,
}

/// The data address of node `ix`.
pub(crate) fn data_addr(ix: NodeIx) -> String {
    format!("@sim/{}", ix.0)
}

/// The process of node `ix` (its kernel credentials).
pub(crate) fn cred(ix: NodeIx) -> Credentials {
    Credentials {
        pid: 10_000 + ix.0 as u32,
        uid: UID,
        gid: UID,
    }
}

/// Pids and confirmed deaths of a simulation.
#[derive(Debug, Default)]
pub(crate) struct Deaths {
    /// Pids other than a node's own ([`cred`]): 0 for a node in another pid namespace (its
    /// peers cannot watch it), or the pid of a dead node reused.
    pub(crate) pids: BTreeMap<NodeIx, u32>,
    /// Every confirmed death a hub acted on ([`HubEvt::NodeExited`](crate::HubEvt::NodeExited)),
    /// with when and by which hub's node.
    pub(crate) reported: Vec<(Instant, NodeIx, NodeId)>,
}
