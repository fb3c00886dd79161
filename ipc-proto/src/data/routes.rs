//! [`Routes`]: who subscribes to what and where, and who every node is, from the topology.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{Credentials, NodeId};
use crate::topology::{NodeInfo, View};

use super::topic::{Names, Topic};

/// Who subscribes to what, and where: the part of a topology the data plane needs.
///
/// It also says who every node is, as the hub saw it (the uid and pid of the process that
/// joined), and which topics each node announced: a data link is checked against it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Routes {
    pub(super) subscribers: BTreeMap<Topic, BTreeSet<NodeId>>,
    pub(super) addrs: BTreeMap<NodeId, String>,
    pub(super) nodes: BTreeMap<NodeId, Ident>,
}

/// A node as the hub saw it: its process, and the topics it announced.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(super) struct Ident {
    pub(super) uid: u32,
    pub(super) pid: u32,
    pub(super) publishes: BTreeSet<String>,
}

impl Ident {
    /// Why a link with `cred` is not this node's process, if it is not: the uid must match,
    /// and the pid too where both are known.
    pub(super) fn mismatch(&self, cred: Option<&Credentials>) -> Option<String> {
        let (uid, pid) = cred.map_or((NodeInfo::UNKNOWN_UID, 0), |c| (c.uid, c.pid));
        if uid != self.uid || (pid != 0 && self.pid != 0 && pid != self.pid) {
            Some(format!(
                "uid {uid} pid {pid}, where the hub saw uid {} pid {}",
                self.uid, self.pid
            ))
        } else {
            None
        }
    }
}

impl Routes {
    /// The routes a view describes.
    pub fn from_view(view: &View) -> Self {
        let mut r = Self::default();
        for n in view.nodes().values() {
            r.nodes.insert(
                n.info.id,
                Ident {
                    uid: n.info.uid,
                    pid: n.info.pid,
                    publishes: n.publishes.keys().cloned().collect(),
                },
            );
            if n.subscribes.is_empty() {
                continue;
            }
            r.addrs.insert(n.info.id, n.info.data_addr.clone());
            for topic in n.subscribes.keys() {
                r.subscribers
                    .entry(Topic::from(topic.as_str()))
                    .or_default()
                    .insert(n.info.id);
            }
        }
        r
    }

    /// The nodes subscribed to `topic`.
    pub fn subscribers(&self, topic: &str) -> impl Iterator<Item = NodeId> + '_ {
        self.subscribers_of(topic)
    }

    /// The nodes subscribed to `topic`, found by its name or, quicker, by the [`Topic`] the
    /// map keys by.
    pub(super) fn subscribers_of<Q>(&self, topic: &Q) -> impl Iterator<Item = NodeId> + '_
    where
        Topic: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.subscribers.get(topic).into_iter().flatten().copied()
    }

    /// These routes keyed by `names`' topics (see [`Names`]).
    pub(super) fn interned(mut self, names: &mut Names) -> Self {
        self.subscribers = std::mem::take(&mut self.subscribers)
            .into_iter()
            .map(|(topic, nodes)| (names.get(&topic), nodes))
            .collect();
        self
    }

    /// Whether the view shows `node` publishing `topic` (its ANNOUNCE is in).
    pub fn announces(&self, node: NodeId, topic: &str) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|n| n.publishes.contains(topic))
    }
}
