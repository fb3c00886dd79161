//! The topology model: who is in the group and who publishes and subscribes what.
//!
//! A [`Record`] is one sequenced [`Change`]. A [`View`] is what the records add up to, and
//! [`View::diff`] is the exact list of [`Event`]s that turns one view into another: the events
//! a node fires are always such a difference, so replaying them onto the old view gives the new
//! one, with no ghost and nothing missing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, Seq, Term, Uid};

/// What the group knows about a node.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's random id.
    pub id: NodeId,
    /// A human-readable name; not unique.
    pub name: String,
    /// Where the node receives payloads (an address its driver understands).
    pub data_addr: String,
    /// The process id, from the kernel's peer credentials as the hub read them when it
    /// accepted the node (0 where unknown).
    pub pid: u32,
    /// The user id, from the kernel's peer credentials as the hub read them when it accepted
    /// the node ([`NodeInfo::UNKNOWN_UID`] where unknown). Data links are checked against it.
    pub uid: u32,
}

impl NodeInfo {
    /// The `uid` of a node whose hub had no credentials for it (`(uid_t)-1`, never a user).
    pub const UNKNOWN_UID: u32 = u32::MAX;
}

/// The two ways a node relates to a topic.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum Role {
    /// The node publishes the topic (it announced it).
    Publisher,
    /// The node subscribes to the topic.
    Subscriber,
}

/// One change of the topology; with a [`Seq`] and a [`Uid`] it is a history [`Record`].
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Change {
    /// A node joined, or its name or address changed.
    Join(NodeInfo),
    /// A node left: with it go all its topics.
    Leave(NodeId),
    /// A node publishes `topic`, whose payloads have type `mime`.
    Announce {
        /// The publisher.
        node: NodeId,
        /// The topic name.
        topic: String,
        /// The payload type, e.g. `application/json`.
        mime: String,
    },
    /// A node no longer publishes `topic`.
    Retract {
        /// The former publisher.
        node: NodeId,
        /// The topic name.
        topic: String,
    },
    /// A node subscribes to `topic`.
    Subscribe {
        /// The subscriber.
        node: NodeId,
        /// The topic name.
        topic: String,
    },
    /// A node no longer subscribes to `topic`.
    Unsubscribe {
        /// The former subscriber.
        node: NodeId,
        /// The topic name.
        topic: String,
    },
}

impl Change {
    /// The node the change is about.
    pub fn node(&self) -> NodeId {
        match self {
            Self::Join(info) => info.id,
            Self::Leave(node)
            | Self::Announce { node, .. }
            | Self::Retract { node, .. }
            | Self::Subscribe { node, .. }
            | Self::Unsubscribe { node, .. } => *node,
        }
    }

    /// Which piece of state the change sets: the node itself, or one of its topic roles.
    pub(crate) fn slot(&self) -> Slot<'_> {
        match self {
            Self::Join(_) | Self::Leave(_) => Slot::Node,
            Self::Announce { topic, .. } | Self::Retract { topic, .. } => {
                Slot::Topic(Role::Publisher, topic)
            }
            Self::Subscribe { topic, .. } | Self::Unsubscribe { topic, .. } => {
                Slot::Topic(Role::Subscriber, topic)
            }
        }
    }

    /// Whether the change removes state (a LEAVE, RETRACT or UNSUBSCRIBE).
    pub fn is_removal(&self) -> bool {
        matches!(
            self,
            Self::Leave(_) | Self::Retract { .. } | Self::Unsubscribe { .. }
        )
    }

    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Join(_) => "Join",
            Self::Leave(_) => "Leave",
            Self::Announce { .. } => "Announce",
            Self::Retract { .. } => "Retract",
            Self::Subscribe { .. } => "Subscribe",
            Self::Unsubscribe { .. } => "Unsubscribe",
        }
    }
}

/// The piece of a node's state a [`Change`] sets.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(crate) enum Slot<'a> {
    Node,
    Topic(Role, &'a str),
}

/// A change the hub has sequenced: the unit of the group's history.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Record {
    /// Position in the history, minted by the hub.
    pub seq: Seq,
    /// Random tag, minted by the hub; the same seq with another uid is a conflict.
    pub uid: Uid,
    /// What changed.
    pub change: Change,
}

/// A topology event, as the application sees it.
///
/// All are edge-triggered: each reports one transition of the node's [`View`], emitted when
/// the spoke applies a record from the hub or a whole new history after a hub change. A node
/// sees events about itself too (its own join, its own topics), but never its own leave while
/// it is in the group.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Event {
    /// A node arrived, or its name or address changed.
    NodeJoined {
        /// Everything known about it.
        info: NodeInfo,
        /// The JOIN record's position.
        seq: Seq,
    },
    /// A node left (gracefully, by crash, or expelled by the keepalive); its topics went with it.
    NodeLeft {
        /// The node that left.
        node: NodeId,
        /// What was known about it as it left (its name, pid...): it is no longer in the
        /// view.
        info: NodeInfo,
    },
    /// A node started publishing a topic, or changed its type.
    TopicAnnounced {
        /// The publisher.
        node: NodeId,
        /// The topic.
        topic: String,
        /// The payload type.
        mime: String,
        /// The ANNOUNCE record's position.
        seq: Seq,
    },
    /// A node stopped publishing a topic.
    TopicRetracted {
        /// The former publisher.
        node: NodeId,
        /// The topic.
        topic: String,
    },
    /// A node subscribed to a topic.
    Subscribed {
        /// The subscriber.
        node: NodeId,
        /// The topic.
        topic: String,
        /// The SUBSCRIBE record's position.
        seq: Seq,
    },
    /// A node unsubscribed from a topic.
    Unsubscribed {
        /// The former subscriber.
        node: NodeId,
        /// The topic.
        topic: String,
    },
    /// A new hub took over (or this node reached its first hub).
    HubChanged {
        /// The node hosting the hub.
        node: NodeId,
        /// The hub's term.
        term: Term,
    },
}

impl Event {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NodeJoined { .. } => "NodeJoined",
            Self::NodeLeft { .. } => "NodeLeft",
            Self::TopicAnnounced { .. } => "TopicAnnounced",
            Self::TopicRetracted { .. } => "TopicRetracted",
            Self::Subscribed { .. } => "Subscribed",
            Self::Unsubscribed { .. } => "Unsubscribed",
            Self::HubChanged { .. } => "HubChanged",
        }
    }
}

/// One node as a [`View`] shows it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeView {
    /// Everything known about the node.
    pub info: NodeInfo,
    /// Position of its JOIN record.
    pub joined: Seq,
    /// The topics it publishes: name to (type, ANNOUNCE position).
    pub publishes: BTreeMap<String, (String, Seq)>,
    /// The topics it subscribes to: name to SUBSCRIBE position.
    pub subscribes: BTreeMap<String, Seq>,
}

impl NodeView {
    fn new(info: NodeInfo, joined: Seq) -> Self {
        Self {
            info,
            joined,
            publishes: BTreeMap::new(),
            subscribes: BTreeMap::new(),
        }
    }
}

/// The group as one node sees it: who is there, who publishes and subscribes what, and which
/// hub it follows.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct View {
    hub: Option<(NodeId, Term)>,
    nodes: BTreeMap<NodeId, NodeView>,
}

impl View {
    /// The hub this view follows, with its term.
    pub fn hub(&self) -> Option<(NodeId, Term)> {
        self.hub
    }

    /// Every node, by id.
    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeView> {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> Option<&NodeView> {
        self.nodes.get(&id)
    }

    /// Whether the node is in the group.
    pub fn contains(&self, id: NodeId) -> bool {
        self.nodes.contains_key(&id)
    }

    /// The nodes subscribed to `topic`.
    pub fn subscribers_of<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a NodeView> + 'a {
        self.nodes
            .values()
            .filter(move |n| n.subscribes.contains_key(topic))
    }

    /// The nodes publishing `topic`.
    pub fn publishers_of<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a NodeView> + 'a {
        self.nodes
            .values()
            .filter(move |n| n.publishes.contains_key(topic))
    }

    pub(crate) fn set_hub(&mut self, hub: Option<(NodeId, Term)>) {
        self.hub = hub;
    }

    pub(crate) fn insert_node(&mut self, node: NodeView) {
        self.nodes.insert(node.info.id, node);
    }

    pub(crate) fn remove_node(&mut self, id: NodeId) -> Option<NodeView> {
        self.nodes.remove(&id)
    }

    /// The topology without record positions: what the events describe and the truth is made
    /// of. Two nodes that replayed different but equivalent histories have equal summaries.
    pub fn summary(&self) -> Summary {
        Summary {
            nodes: self
                .nodes
                .values()
                .map(|n| {
                    let publishes = n
                        .publishes
                        .iter()
                        .map(|(t, (m, _))| (t.clone(), m.clone()))
                        .collect();
                    let subscribes = n.subscribes.keys().cloned().collect();
                    (
                        n.info.id,
                        (
                            n.info.clone(),
                            OwnTopics {
                                publishes,
                                subscribes,
                            },
                        ),
                    )
                })
                .collect(),
        }
    }

    /// Applies one event, as an application that mirrors the topology from events would.
    ///
    /// Returns whether the view changed. An event that changes nothing (a join of a known node
    /// with the same info, a topic event for an unknown node) is ignored; the events a spoke
    /// emits always change its view.
    pub fn apply(&mut self, event: &Event) -> bool {
        match event {
            Event::NodeJoined { info, seq } => match self.nodes.get_mut(&info.id) {
                Some(n) if n.info == *info => false,
                Some(n) => {
                    n.info = info.clone();
                    n.joined = *seq;
                    true
                }
                None => {
                    self.insert_node(NodeView::new(info.clone(), *seq));
                    true
                }
            },
            Event::NodeLeft { node, .. } => self.nodes.remove(node).is_some(),
            Event::TopicAnnounced {
                node,
                topic,
                mime,
                seq,
            } => {
                let Some(n) = self.nodes.get_mut(node) else {
                    return false;
                };
                let old = n.publishes.insert(topic.clone(), (mime.clone(), *seq));
                old.is_none_or(|(m, _)| m != *mime)
            }
            Event::TopicRetracted { node, topic } => self
                .nodes
                .get_mut(node)
                .is_some_and(|n| n.publishes.remove(topic).is_some()),
            Event::Subscribed { node, topic, seq } => self
                .nodes
                .get_mut(node)
                .is_some_and(|n| n.subscribes.insert(topic.clone(), *seq).is_none()),
            Event::Unsubscribed { node, topic } => self
                .nodes
                .get_mut(node)
                .is_some_and(|n| n.subscribes.remove(topic).is_some()),
            Event::HubChanged { node, term } => {
                let changed = self.hub != Some((*node, *term));
                self.hub = Some((*node, *term));
                changed
            }
        }
    }

    /// The events that turn `old` into `new`, in an order that replays correctly.
    ///
    /// Order: leaves first, then for each node in id order its join (if new or changed) followed
    /// by its topic changes (retractions and unsubscriptions before announcements and
    /// subscriptions). A node's own topics are never reported before its join. The hub is not
    /// part of the difference: [`Event::HubChanged`] is emitted by the spoke when it reaches a
    /// new hub.
    pub fn diff(old: &Self, new: &Self) -> Vec<Event> {
        let mut events = Vec::new();
        for (id, n) in &old.nodes {
            if !new.nodes.contains_key(id) {
                events.push(Event::NodeLeft {
                    node: *id,
                    info: n.info.clone(),
                });
            }
        }
        for (id, n) in &new.nodes {
            diff_node(old.nodes.get(id), Some(n), &mut events);
        }
        events
    }
}

/// The events that turn one node's old state into its new one (`None`: absent).
pub(crate) fn diff_node(old: Option<&NodeView>, new: Option<&NodeView>, out: &mut Vec<Event>) {
    let empty_pubs = BTreeMap::new();
    let empty_subs = BTreeMap::new();
    let Some(new) = new else {
        if let Some(old) = old {
            out.push(Event::NodeLeft {
                node: old.info.id,
                info: old.info.clone(),
            });
        }
        return;
    };
    let node = new.info.id;
    if old.is_none_or(|o| o.info != new.info) {
        out.push(Event::NodeJoined {
            info: new.info.clone(),
            seq: new.joined,
        });
    }
    let (old_pubs, old_subs) = old.map_or((&empty_pubs, &empty_subs), |o| {
        (&o.publishes, &o.subscribes)
    });
    for topic in old_pubs.keys() {
        if !new.publishes.contains_key(topic) {
            out.push(Event::TopicRetracted {
                node,
                topic: topic.clone(),
            });
        }
    }
    for topic in old_subs.keys() {
        if !new.subscribes.contains_key(topic) {
            out.push(Event::Unsubscribed {
                node,
                topic: topic.clone(),
            });
        }
    }
    for (topic, (mime, seq)) in &new.publishes {
        if old_pubs.get(topic).is_none_or(|(m, _)| m != mime) {
            out.push(Event::TopicAnnounced {
                node,
                topic: topic.clone(),
                mime: mime.clone(),
                seq: *seq,
            });
        }
    }
    for (topic, seq) in &new.subscribes {
        if !old_subs.contains_key(topic) {
            out.push(Event::Subscribed {
                node,
                topic: topic.clone(),
                seq: *seq,
            });
        }
    }
}

/// A topology without record positions (see [`View::summary`]).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Summary {
    /// Each node's info and its topics.
    pub nodes: BTreeMap<NodeId, (NodeInfo, OwnTopics)>,
}

/// A node's own state, as it introduces itself to a hub: it is the authority on it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct OwnTopics {
    /// Topics this node publishes, with their types.
    pub publishes: BTreeMap<String, String>,
    /// Topics this node subscribes to.
    pub subscribes: BTreeSet<String>,
}

impl OwnTopics {
    /// How many topic roles the node holds.
    pub fn len(&self) -> usize {
        self.publishes.len() + self.subscribes.len()
    }

    /// Whether the node holds no topic.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::Epoch;

    pub(crate) fn info(id: u64, name: &str) -> NodeInfo {
        NodeInfo {
            id: NodeId::new(id).expect("test ids are non-zero"),
            name: name.into(),
            data_addr: format!("@data/{id}"),
            pid: id as u32,
            uid: 1000,
        }
    }

    fn view(nodes: Vec<NodeView>) -> View {
        let mut v = View::default();
        for n in nodes {
            v.insert_node(n);
        }
        v
    }

    fn nv(id: u64, pubs: &[(&str, &str)], subs: &[&str]) -> NodeView {
        let mut n = NodeView::new(info(id, "n"), Seq::new(Epoch::new(1, 0), id as u32));
        for (t, m) in pubs {
            n.publishes
                .insert((*t).into(), ((*m).into(), Seq::new(Epoch::new(1, 0), 100)));
        }
        for t in subs {
            n.subscribes
                .insert((*t).into(), Seq::new(Epoch::new(1, 0), 200));
        }
        n
    }

    #[test]
    fn a_leave_carries_the_node_as_it_was() {
        let old = view(vec![nv(1, &[], &[]), nv(2, &[("a", "x")], &[])]);
        let new = view(vec![nv(1, &[], &[])]);
        let gone = old.node(NodeId::new(2).expect("non-zero")).expect("in old");
        let events = View::diff(&old, &new);
        assert_eq!(
            events,
            [Event::NodeLeft {
                node: gone.info.id,
                info: gone.info.clone(),
            }]
        );
    }

    #[test]
    fn diff_replays_old_into_new() {
        let old = view(vec![
            nv(1, &[("a", "x")], &["b"]),
            nv(2, &[], &[]),
            nv(3, &[], &["c"]),
        ]);
        let new = view(vec![
            nv(1, &[("a", "y"), ("d", "z")], &[]),
            nv(3, &[], &["c"]),
            nv(4, &[], &["a"]),
        ]);
        let events = View::diff(&old, &new);
        let mut replayed = old.clone();
        for e in &events {
            assert!(
                replayed.apply(e),
                "every diff event changes the view: {e:?}"
            );
        }
        assert_eq!(replayed.summary(), new.summary());
        assert_eq!(
            events.iter().map(Event::name).collect::<Vec<_>>(),
            [
                "NodeLeft",
                "Unsubscribed",
                "TopicAnnounced",
                "TopicAnnounced",
                "NodeJoined",
                "Subscribed"
            ]
        );
    }

    #[test]
    fn diff_of_equal_views_is_empty() {
        let v = view(vec![nv(1, &[("a", "x")], &["b"])]);
        assert!(View::diff(&v, &v).is_empty());
    }

    #[test]
    fn join_fires_again_only_when_info_changes_and_stores_the_change() {
        // The C++ original fired onJoin for a changed name but never stored it (seeds 1.13.9).
        let mut v = View::default();
        let mut i = info(5, "old");
        assert!(v.apply(&Event::NodeJoined {
            info: i.clone(),
            seq: Seq::new(Epoch::new(1, 0), 1)
        }));
        assert!(!v.apply(&Event::NodeJoined {
            info: i.clone(),
            seq: Seq::new(Epoch::new(1, 0), 2)
        }));
        i.name = "new".into();
        assert!(v.apply(&Event::NodeJoined {
            info: i.clone(),
            seq: Seq::new(Epoch::new(1, 0), 3)
        }));
        assert!(!v.apply(&Event::NodeJoined {
            info: i.clone(),
            seq: Seq::new(Epoch::new(1, 0), 4)
        }));
        assert_eq!(v.node(i.id).map(|n| n.info.name.as_str()), Some("new"));
    }

    #[test]
    fn topic_events_for_unknown_nodes_change_nothing() {
        let mut v = View::default();
        let node = NodeId::new(9).expect("non-zero");
        assert!(!v.apply(&Event::Subscribed {
            node,
            topic: "t".into(),
            seq: Seq::new(Epoch::new(1, 0), 1)
        }));
        assert_eq!(v, View::default());
    }
}
