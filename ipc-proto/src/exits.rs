//! Nodes whose processes are known to have exited: a bounded set, oldest forgotten first.
//!
//! A node id is drawn at random for each node and never comes back, so remembering a death
//! longer than needed is harmless; the bound only keeps memory finite.

use std::collections::{BTreeSet, VecDeque};

use crate::ids::NodeId;

/// How many confirmed deaths a hub or member remembers.
pub(crate) const MAX_EXITED: usize = 1024;

/// A set of nodes confirmed dead, at most [`MAX_EXITED`] of them.
#[derive(Debug, Default)]
pub(crate) struct Exited {
    set: BTreeSet<NodeId>,
    order: VecDeque<NodeId>,
}

impl Exited {
    /// Remembers `node`; `false` if it already was.
    pub(crate) fn insert(&mut self, node: NodeId) -> bool {
        if !self.set.insert(node) {
            return false;
        }
        self.order.push_back(node);
        while self.order.len() > MAX_EXITED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Forgets `node` (it spoke again: the report was about another process).
    pub(crate) fn remove(&mut self, node: NodeId) {
        if self.set.remove(&node) {
            self.order.retain(|n| *n != node);
        }
    }

    /// Whether `node` is known dead.
    pub(crate) fn contains(&self, node: NodeId) -> bool {
        self.set.contains(&node)
    }

    /// Every node known dead, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.order.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> NodeId {
        NodeId::new(i + 1).expect("non-zero")
    }

    #[test]
    fn bounded_oldest_forgotten_first() {
        let mut e = Exited::default();
        for i in 0..(MAX_EXITED as u64 + 10) {
            assert!(e.insert(id(i)));
        }
        assert!(!e.contains(id(9)));
        assert!(e.contains(id(10)));
        assert!(!e.insert(id(10)));
        e.remove(id(10));
        assert!(!e.contains(id(10)));
        assert_eq!(e.iter().count(), MAX_EXITED - 1);
    }
}
