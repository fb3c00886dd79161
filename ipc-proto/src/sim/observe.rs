//! What a [`Sim`] shows: its hubs and members, the truth every view should reach, why it has
//! not converged, and each node's state for failure messages.

use std::collections::BTreeSet;
use std::time::Instant;

use super::app::{NodeIx, UID};
use super::group::Sim;
use crate::{NodeId, NodeInfo, OwnTopics, Summary, View};

impl Sim {
    /// The nodes running a hub.
    pub fn hubs(&self) -> impl Iterator<Item = NodeIx> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.alive && n.member.is_hub())
            .map(|(i, _)| NodeIx(i))
    }

    /// The nodes that are members: alive, not leaving.
    pub fn members(&self) -> impl Iterator<Item = NodeIx> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_member())
            .map(|(i, _)| NodeIx(i))
    }

    /// What every member's view should say: each member with its own topics.
    pub fn truth(&self) -> Summary {
        let mut s = Summary::default();
        for ix in self.members() {
            let n = &self.nodes[ix.0];
            let info = NodeInfo {
                id: n.id(),
                name: n.name.clone(),
                data_addr: format!("@sim/{}", ix.0),
                pid: self.cred_of(ix).pid,
                uid: UID,
            };
            s.nodes
                .insert(n.id(), (info, n.member.spoke().own_topics().clone()));
        }
        s
    }

    /// Why the group has not converged, or `None` if it has: no protocol data is in flight, one
    /// hub holds the address, every member is running, synced with it, and sees exactly the
    /// truth.
    pub fn divergence(&self) -> Option<String> {
        if let Some(v) = self.violations.first() {
            return Some(format!("an invariant broke: {v}"));
        }
        if self.data_in_flight > 0 {
            return Some(format!(
                "{} deliveries of data in flight",
                self.data_in_flight
            ));
        }
        let hubs: Vec<_> = self.hubs().collect();
        let [hub] = hubs[..] else {
            return Some(format!("{} hubs", hubs.len()));
        };
        if self.bind != Some(hub) {
            return Some("the running hub does not hold the address".into());
        }
        let hub_node = &self.nodes[hub.0];
        let want_hub = (
            hub_node.id(),
            hub_node
                .member
                .hub_machine()
                .expect("hubs() have hubs")
                .term(),
        );
        let truth = self.truth();
        for ix in self.members() {
            let n = &self.nodes[ix.0];
            if n.frozen {
                return Some(format!("{} is frozen", n.name));
            }
            if n.member.hub() != Some(want_hub) {
                return Some(format!(
                    "{} follows {:?}, not {:?}",
                    n.name,
                    n.member.hub(),
                    want_hub
                ));
            }
            if n.member.view().summary() != truth {
                return Some(format!("{} sees another group than the truth", n.name));
            }
        }
        None
    }

    /// Whether the group has converged (see [`divergence`](Self::divergence)).
    pub fn converged(&self) -> bool {
        self.divergence().is_none()
    }

    /// Replays a node's events onto an empty view.
    pub fn replay(&self, ix: NodeIx) -> View {
        let mut v = View::default();
        for (_, e) in &self.nodes[ix.0].events {
            v.apply(e);
        }
        v
    }

    /// Whether `ix` was running without interruption from `from` to `to`.
    pub(crate) fn continuous(&self, ix: NodeIx, from: Instant, to: Instant) -> bool {
        let n = &self.nodes[ix.0];
        n.started <= from
            && n.ended.is_none_or(|e| e > to)
            && n.frozen_spans.iter().all(|&(a, b)| b < from || a > to)
            && !self
                .expelled
                .iter()
                .any(|&(t, id)| id == n.id() && t >= from && t <= to)
    }

    /// The node's own topics as its application had set them at `t`, and when it last changed
    /// them.
    pub(crate) fn own_at(&self, ix: NodeIx, t: Instant) -> (Instant, &OwnTopics) {
        let log = &self.nodes[ix.0].own_log;
        let (at, own) = log.iter().rev().find(|(at, _)| *at <= t).unwrap_or(&log[0]);
        (*at, own)
    }

    /// The node with this id.
    pub fn ix_of(&self, id: NodeId) -> Option<NodeIx> {
        self.nodes.iter().position(|n| n.id() == id).map(NodeIx)
    }

    /// Every node's state, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            s.push_str(&format!(
                "  [{i}] {} {} alive={} frozen={} leaving={} hub={} state={:?} follows={:?}\n",
                n.name,
                n.id(),
                n.alive,
                n.frozen,
                n.leaving,
                n.member.hub_machine().map_or(0, |h| h.term().0),
                n.member.spoke().state(),
                n.member.hub(),
            ));
        }
        s
    }

    /// The records of a node's history, for comparing histories.
    pub fn history_of(&self, ix: NodeIx) -> BTreeSet<(crate::Seq, u64)> {
        self.nodes[ix.0]
            .member
            .spoke()
            .history()
            .records()
            .map(|r| (r.seq, r.uid.get()))
            .collect()
    }
}
