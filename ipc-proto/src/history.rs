//! The sequenced topology history and its merge rules.
//!
//! # Model
//! A history holds, for every node, its latest node record (JOIN or LEAVE) and, while the node
//! is joined, the latest record of each of its topic roles (ANNOUNCE or RETRACT, SUBSCRIBE or
//! UNSUBSCRIBE). A newer record for the same slot replaces the older one, so a node that
//! subscribes and unsubscribes a million times holds one record. Removal records (LEAVE,
//! RETRACT, UNSUBSCRIBE) are *tombstones*: they stay so that a node which missed the removal
//! learns of it when histories are merged, but only the newest
//! [`DEFAULT_TOMBSTONES`] (configurable) are kept; a LEAVE takes all the node's topic records
//! with it. A topic record counts only if it is newer than its node's JOIN: a node that rejoins,
//! or whose name or address changes, starts a new stay and announces its topics again. The history therefore never holds more than the live state plus the tombstone cap.
//!
//! A [`Horizon`] says, per epoch, up to which position the history has seen every record. A
//! record that is absent although the horizon covers it was pruned: something newer replaced
//! it. That is what lets a hub tell a stale record from one it never heard of.
//!
//! # Rules (what [`History::integrate`] decides for a record a spoke sends)
//! - same seq and uid as a record present: [`Verdict::Duplicate`];
//! - same seq, another uid: [`Verdict::Conflict`] (two hubs minted the same position; the hub's
//!   record wins and the sender is resynced);
//! - absent but covered by the horizon: [`Verdict::Conflict`] (the hub pruned it: it knows
//!   better);
//! - otherwise newer than anything the hub saw for that slot: [`Verdict::Accepted`], or older
//!   than what the hub holds for the slot: [`Verdict::Superseded`].
//!
//! [`merge`] is the same join as a pure function of two histories, with conflicts broken by
//! uid so that it is commutative, associative and idempotent.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::{Epoch, NodeId, Seq};
use crate::topology::{Change, NodeInfo, NodeView, OwnTopics, Record, Role, Slot, View};

/// How many tombstones a history keeps by default.
pub const DEFAULT_TOMBSTONES: usize = 256;

/// How many epochs a [`Horizon`] tracks one by one before folding the oldest into its floor.
pub const HORIZON_EPOCHS: usize = 64;

/// Up to which position, per epoch, a history has seen every record.
///
/// Epochs below `floor` count as wholly seen. Bounded: at most [`HORIZON_EPOCHS`] epochs are
/// tracked; older ones fold into the floor, which can only make a hub reject more stale
/// records, never accept one it pruned.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Horizon {
    floor: Epoch,
    tails: BTreeMap<Epoch, u32>,
}

impl Horizon {
    /// Whether every record up to `seq`, in `seq`'s epoch, has been seen.
    pub fn covers(&self, seq: Seq) -> bool {
        seq.epoch() < self.floor
            || self
                .tails
                .get(&seq.epoch())
                .is_some_and(|&c| c >= seq.counter())
    }

    /// Records that everything up to `seq` in its epoch has been seen.
    pub fn observe(&mut self, seq: Seq) {
        if seq.epoch() < self.floor {
            return;
        }
        let tail = self.tails.entry(seq.epoch()).or_insert(0);
        *tail = (*tail).max(seq.counter());
        self.trim();
    }

    /// Adds what `other` has seen.
    pub fn merge(&mut self, other: &Self) {
        self.floor = self.floor.max(other.floor);
        for (&epoch, &tail) in &other.tails {
            if epoch >= self.floor {
                let t = self.tails.entry(epoch).or_insert(0);
                *t = (*t).max(tail);
            }
        }
        self.trim();
    }

    /// The highest epoch seen (the default epoch when nothing was).
    pub fn max_epoch(&self) -> Epoch {
        self.tails
            .keys()
            .next_back()
            .copied()
            .unwrap_or_default()
            .max(self.floor)
    }

    fn trim(&mut self) {
        self.tails.retain(|&e, _| e >= self.floor);
        while self.tails.len() > HORIZON_EPOCHS {
            let (&oldest, _) = self.tails.iter().next().expect("len > HORIZON_EPOCHS > 0");
            self.floor = oldest.successor();
            self.tails.remove(&oldest);
        }
    }
}

/// What a hub decided about a record a spoke sent (see the module docs).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// New knowledge: the record is now part of the history.
    Accepted,
    /// The history holds this very record.
    Duplicate,
    /// The history holds something newer for the record's slot.
    Superseded,
    /// The record contradicts the history; the sender must be resynced.
    Conflict,
}

/// Where a record sits: the node record, or one of the node's topic roles.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum SlotKey {
    Node,
    Topic(Role, String),
}

impl SlotKey {
    fn of(change: &Change) -> Self {
        match change.slot() {
            Slot::Node => Self::Node,
            Slot::Topic(role, topic) => Self::Topic(role, topic.to_owned()),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct NodeEntry {
    /// The latest JOIN or LEAVE.
    node: Record,
    /// Latest record per topic role, each newer than `node`, which is a JOIN; empty otherwise.
    topics: BTreeMap<(Role, String), Record>,
}

impl NodeEntry {
    fn new(node: Record) -> Self {
        Self {
            node,
            topics: BTreeMap::new(),
        }
    }
}

/// A node's sequenced history (see the module docs).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct History {
    entries: BTreeMap<NodeId, NodeEntry>,
    /// Every record's slot, by position: snapshots go out in this order.
    order: BTreeMap<Seq, (NodeId, SlotKey)>,
    /// Positions of the tombstones present, oldest first.
    tombstones: BTreeSet<Seq>,
    horizon: Horizon,
    max_tombstones: usize,
}

impl Default for History {
    fn default() -> Self {
        Self::new(DEFAULT_TOMBSTONES)
    }
}

impl History {
    /// An empty history that keeps at most `max_tombstones` removal records.
    pub fn new(max_tombstones: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            tombstones: BTreeSet::new(),
            horizon: Horizon::default(),
            max_tombstones,
        }
    }

    /// How many records the history holds.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the history holds no record.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// How many of the records are tombstones.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// What the history has seen.
    pub fn horizon(&self) -> &Horizon {
        &self.horizon
    }

    /// The highest position held or seen.
    pub fn tail(&self) -> Option<Seq> {
        self.order.keys().next_back().copied()
    }

    /// The record at `seq`.
    pub fn get(&self, seq: Seq) -> Option<&Record> {
        let (node, slot) = self.order.get(&seq)?;
        self.slot(*node, slot)
    }

    /// Every record, in position order.
    pub fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.order.iter().map(|(_, (node, slot))| {
            self.slot(*node, slot)
                .expect("order indexes only records that are present")
        })
    }

    /// The nodes currently joined.
    pub fn live_nodes(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.entries.values().filter_map(|e| match &e.node.change {
            Change::Join(info) => Some(info),
            _ => None,
        })
    }

    /// Whether `node` is currently joined.
    pub fn is_joined(&self, node: NodeId) -> bool {
        self.entries
            .get(&node)
            .is_some_and(|e| matches!(e.node.change, Change::Join(_)))
    }

    /// The topics `node` currently holds.
    pub fn own_topics(&self, node: NodeId) -> OwnTopics {
        let mut own = OwnTopics::default();
        if let Some(e) = self.entries.get(&node) {
            for r in e.topics.values() {
                match &r.change {
                    Change::Announce { topic, mime, .. } => {
                        own.publishes.insert(topic.clone(), mime.clone());
                    }
                    Change::Subscribe { topic, .. } => {
                        own.subscribes.insert(topic.clone());
                    }
                    _ => {}
                }
            }
        }
        own
    }

    /// Whether applying `change` would change nothing: the live state already says so.
    ///
    /// This is how a hub deduplicates novel changes against the whole group's state, not just
    /// against what one connection sent.
    pub fn is_current(&self, change: &Change) -> bool {
        let entry = self.entries.get(&change.node());
        let joined = entry.filter(|e| matches!(e.node.change, Change::Join(_)));
        match change {
            Change::Join(info) => {
                joined.is_some_and(|e| matches!(&e.node.change, Change::Join(i) if i == info))
            }
            Change::Leave(_) => joined.is_none(),
            _ => {
                let Some(e) = joined else { return false };
                let SlotKey::Topic(role, topic) = SlotKey::of(change) else {
                    unreachable!("topic changes have topic slots")
                };
                let held = e.topics.get(&(role, topic)).map(|r| &r.change);
                match change {
                    Change::Announce { mime, .. } => {
                        matches!(held, Some(Change::Announce { mime: m, .. }) if m == mime)
                    }
                    Change::Subscribe { .. } => matches!(held, Some(Change::Subscribe { .. })),
                    Change::Retract { .. } => !matches!(held, Some(Change::Announce { .. })),
                    Change::Unsubscribe { .. } => !matches!(held, Some(Change::Subscribe { .. })),
                    Change::Join(_) | Change::Leave(_) => unreachable!("handled above"),
                }
            }
        }
    }

    /// The view these records add up to.
    pub fn view(&self) -> View {
        let mut view = View::default();
        for &id in self.entries.keys() {
            if let Some(n) = self.node_view(id) {
                view.insert_node(n);
            }
        }
        view
    }

    /// One node as the view shows it, `None` if it is not joined.
    pub fn node_view(&self, id: NodeId) -> Option<NodeView> {
        let e = self.entries.get(&id)?;
        let Change::Join(info) = &e.node.change else {
            return None;
        };
        let mut n = NodeView {
            info: info.clone(),
            joined: e.node.seq,
            publishes: BTreeMap::new(),
            subscribes: BTreeMap::new(),
        };
        for r in e.topics.values() {
            match &r.change {
                Change::Announce { topic, mime, .. } => {
                    n.publishes.insert(topic.clone(), (mime.clone(), r.seq));
                }
                Change::Subscribe { topic, .. } => {
                    n.subscribes.insert(topic.clone(), r.seq);
                }
                _ => {}
            }
        }
        Some(n)
    }

    /// Decides what to do with a record a spoke sent and, if accepted, applies it.
    ///
    /// The horizon does not move: a hub raises it only once the sender's whole history is in
    /// (see [`merge_horizon`](Self::merge_horizon)).
    pub fn integrate(&mut self, record: Record) -> Verdict {
        if let Some(present) = self.get(record.seq) {
            return if present.uid == record.uid {
                Verdict::Duplicate
            } else {
                Verdict::Conflict
            };
        }
        if self.horizon.covers(record.seq) {
            return Verdict::Conflict;
        }
        if self.apply(record) {
            Verdict::Accepted
        } else {
            Verdict::Superseded
        }
    }

    /// Applies a record the hub sent: it replaces what its slot holds if it is newer.
    ///
    /// Returns whether the history changed. A topic record for a node that is not joined is
    /// ignored, as is a record older than what its slot holds, and a record at a position that
    /// another slot's record already has.
    pub fn apply(&mut self, record: Record) -> bool {
        let node = record.change.node();
        let key = SlotKey::of(&record.change);
        // A position names one record: another slot's record at the same position is a forgery
        // (or a collision of two hubs' salts) and is ignored.
        if self
            .order
            .get(&record.seq)
            .is_some_and(|(n, k)| (*n, k) != (node, &key))
        {
            return false;
        }
        match key {
            SlotKey::Node => {
                if self
                    .entries
                    .get(&node)
                    .is_some_and(|e| e.node.seq >= record.seq)
                {
                    return false;
                }
                let mut entry = NodeEntry::new(record.clone());
                if let Some(old) = self.entries.remove(&node) {
                    self.unindex(&old.node);
                    // A LEAVE takes every topic with it; a newer JOIN starts a new stay, and
                    // only topic records newer than it belong to that stay.
                    let joined = matches!(record.change, Change::Join(_));
                    for (slot, r) in old.topics {
                        if joined && r.seq > record.seq {
                            entry.topics.insert(slot, r);
                        } else {
                            self.unindex(&r);
                        }
                    }
                }
                self.index(node, SlotKey::Node, &record);
                self.entries.insert(node, entry);
            }
            SlotKey::Topic(role, topic) => {
                let Some(e) = self.entries.get(&node) else {
                    return false;
                };
                if !matches!(e.node.change, Change::Join(_)) || e.node.seq >= record.seq {
                    return false;
                }
                let slot = (role, topic);
                if let Some(held) = e.topics.get(&slot) {
                    if held.seq >= record.seq {
                        return false;
                    }
                    let held = held.clone();
                    self.unindex(&held);
                }
                self.index(node, SlotKey::Topic(slot.0, slot.1.clone()), &record);
                self.entries
                    .get_mut(&node)
                    .expect("checked above")
                    .topics
                    .insert(slot, record);
            }
        }
        self.evict_tombstones();
        true
    }

    /// Notes that everything up to `seq` in its epoch has been seen (a record minted in order).
    pub fn observe(&mut self, seq: Seq) {
        self.horizon.observe(seq);
    }

    /// Adds what another history has seen, once all its records are in.
    pub fn merge_horizon(&mut self, other: &Horizon) {
        self.horizon.merge(other);
    }

    /// Changes the tombstone cap, dropping the oldest tombstones beyond it.
    pub(crate) fn set_max_tombstones(&mut self, max: usize) {
        self.max_tombstones = max;
        self.evict_tombstones();
    }

    /// Replaces the horizon (a spoke adopting its hub's snapshot).
    pub(crate) fn set_horizon(&mut self, horizon: Horizon) {
        self.horizon = horizon;
    }

    fn slot(&self, node: NodeId, slot: &SlotKey) -> Option<&Record> {
        let e = self.entries.get(&node)?;
        match slot {
            SlotKey::Node => Some(&e.node),
            SlotKey::Topic(role, topic) => e.topics.get(&(*role, topic.clone())),
        }
    }

    fn index(&mut self, node: NodeId, key: SlotKey, record: &Record) {
        self.order.insert(record.seq, (node, key));
        if record.change.is_removal() {
            self.tombstones.insert(record.seq);
        }
    }

    fn unindex(&mut self, record: &Record) {
        self.order.remove(&record.seq);
        self.tombstones.remove(&record.seq);
    }

    /// Drops the oldest tombstones beyond the cap. They are covered by the horizon only if it
    /// saw them, which is why a dropped slot can come back only from a record never seen.
    fn evict_tombstones(&mut self) {
        while self.tombstones.len() > self.max_tombstones {
            let seq = self
                .tombstones
                .pop_first()
                .expect("len > max_tombstones >= 0");
            let (node, key) = self.order.remove(&seq).expect("tombstones are indexed");
            match key {
                SlotKey::Node => {
                    self.entries.remove(&node);
                }
                SlotKey::Topic(role, topic) => {
                    if let Some(e) = self.entries.get_mut(&node) {
                        e.topics.remove(&(role, topic));
                    }
                }
            }
        }
    }
}

/// Joins two histories: for each slot the newest record that the other side has not pruned,
/// conflicts broken by uid. Commutative, associative and idempotent on the view it yields.
///
/// A record is dropped if the other side lacks its slot although its horizon covers the record
/// (it saw it and pruned it); a topic record is dropped if either side knows its node left
/// after it. The tombstone cap of the result is the larger of the two.
pub fn merge(a: &History, b: &History) -> History {
    let mut horizon = a.horizon.clone();
    horizon.merge(&b.horizon);
    let mut out = History::new(a.max_tombstones.max(b.max_tombstones));
    out.horizon = horizon;

    // Every slot either side holds, with the surviving candidate.
    let mut chosen: BTreeMap<(NodeId, SlotKey), Record> = BTreeMap::new();
    for (mine, other) in [(a, b), (b, a)] {
        for (seq, (node, key)) in &mine.order {
            let r = mine.slot(*node, key).expect("indexed records are present");
            let pruned_by_other = other.slot(*node, key).is_none() && other.horizon.covers(*seq);
            if pruned_by_other {
                continue;
            }
            match chosen.get(&(*node, key.clone())) {
                Some(c) if (c.seq, c.uid) >= (r.seq, r.uid) => {}
                _ => {
                    chosen.insert((*node, key.clone()), r.clone());
                }
            }
        }
    }
    // Node records first: a topic record counts only if newer than its node's JOIN.
    let (nodes, topics): (Vec<_>, Vec<_>) = chosen
        .into_iter()
        .partition(|((_, key), _)| *key == SlotKey::Node);
    for (_, r) in nodes.into_iter().chain(topics) {
        out.apply(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ids::Uid;
    use crate::topology::tests::info;

    fn rec(term: u32, counter: u32, uid: u64, change: Change) -> Record {
        Record {
            seq: seq(term, counter),
            uid: Uid::new(uid).expect("non-zero"),
            change,
        }
    }

    fn seq(term: u32, counter: u32) -> Seq {
        Seq::new(Epoch::new(term, 0), counter)
    }

    fn id(n: u64) -> NodeId {
        NodeId::new(n).expect("non-zero")
    }

    fn sub(node: u64, topic: &str) -> Change {
        Change::Subscribe {
            node: id(node),
            topic: topic.into(),
        }
    }

    fn unsub(node: u64, topic: &str) -> Change {
        Change::Unsubscribe {
            node: id(node),
            topic: topic.into(),
        }
    }

    fn ann(node: u64, topic: &str) -> Change {
        Change::Announce {
            node: id(node),
            topic: topic.into(),
            mime: "m".into(),
        }
    }

    #[test]
    fn leave_prunes_every_record_of_the_node_including_topics() {
        // C++ seeds 1.13.1: a misplaced parenthesis kept topic records of departed nodes.
        let mut h = History::default();
        h.apply(rec(1, 1, 1, Change::Join(info(7, "a"))));
        h.apply(rec(1, 2, 2, ann(7, "t")));
        h.apply(rec(1, 3, 3, sub(7, "u")));
        h.apply(rec(1, 4, 4, Change::Join(info(8, "b"))));
        assert!(h.apply(rec(1, 5, 5, Change::Leave(id(7)))));
        let left: Vec<_> = h.records().map(|r| r.change.name()).collect();
        assert_eq!(left, ["Join", "Leave"]);
        assert!(h.view().node(id(7)).is_none());
        assert!(h.own_topics(id(7)).is_empty());
    }

    #[test]
    fn a_million_subscribe_unsubscribe_cycles_keep_one_record() {
        let mut h = History::default();
        h.apply(rec(1, 1, 1, Change::Join(info(7, "a"))));
        for i in 0..500_000u32 {
            h.apply(rec(1, 2 + 2 * i, 9, sub(7, "t")));
            h.apply(rec(1, 3 + 2 * i, 9, unsub(7, "t")));
        }
        assert_eq!(h.len(), 2, "the join and the last unsubscribe");
    }

    #[test]
    fn tombstones_beyond_the_cap_are_dropped_oldest_first() {
        let mut h = History::new(2);
        for n in 1..=5u64 {
            h.apply(rec(1, n as u32, n, Change::Join(info(n, "x"))));
        }
        for n in 1..=5u64 {
            h.apply(rec(1, 10 + n as u32, n, Change::Leave(id(n))));
        }
        assert_eq!(h.tombstones(), 2);
        let seqs: Vec<_> = h.records().map(|r| r.seq).collect();
        assert_eq!(seqs, [seq(1, 14), seq(1, 15)]);
    }

    #[test]
    fn integrate_verdicts() {
        let mut h = History::default();
        let join = rec(3, 1, 11, Change::Join(info(7, "a")));
        h.apply(join.clone());
        h.observe(join.seq);
        h.apply(rec(3, 2, 12, sub(7, "t")));
        h.observe(seq(3, 2));
        h.apply(rec(3, 3, 13, unsub(7, "t")));
        h.observe(seq(3, 3));

        assert_eq!(h.integrate(join.clone()), Verdict::Duplicate);
        assert_eq!(
            h.integrate(rec(3, 1, 99, Change::Join(info(7, "z")))),
            Verdict::Conflict
        );
        // Pruned: the subscribe at 3.2 was replaced by the unsubscribe at 3.3.
        assert_eq!(h.integrate(rec(3, 2, 12, sub(7, "t"))), Verdict::Conflict);
        // Unknown epoch: new knowledge.
        assert_eq!(
            h.integrate(rec(2, 9, 5, Change::Join(info(8, "b")))),
            Verdict::Accepted
        );
        // Older than what the slot holds.
        assert_eq!(h.integrate(rec(2, 10, 6, sub(7, "t"))), Verdict::Superseded);
        // Newer than the horizon and the slot.
        assert_eq!(h.integrate(rec(3, 4, 14, sub(7, "t"))), Verdict::Accepted);
        assert!(
            h.view()
                .node(id(7))
                .is_some_and(|n| n.subscribes.contains_key("t"))
        );
    }

    #[test]
    fn topic_records_of_a_previous_stay_stay_dead() {
        let mut h = History::default();
        h.apply(rec(1, 1, 1, Change::Join(info(7, "a"))));
        h.apply(rec(1, 3, 3, Change::Leave(id(7))));
        h.apply(rec(1, 4, 4, Change::Join(info(7, "a"))));
        // Made before the leave, never seen by this history, but stale all the same.
        assert_eq!(h.integrate(rec(1, 2, 2, ann(7, "t"))), Verdict::Superseded);
        assert!(h.own_topics(id(7)).is_empty());
        assert_eq!(h.integrate(rec(1, 5, 5, ann(7, "t"))), Verdict::Accepted);
        // A newer JOIN (a new name) starts a new stay: older topics no longer count.
        assert!(h.apply(rec(1, 6, 6, Change::Join(info(7, "renamed")))));
        assert!(h.own_topics(id(7)).is_empty());
    }

    #[test]
    fn horizon_is_bounded_and_folds_into_the_floor() {
        let mut hz = Horizon::default();
        for e in 1..=(HORIZON_EPOCHS as u32 + 10) {
            hz.observe(seq(e, 5));
        }
        assert_eq!(hz.tails.len(), HORIZON_EPOCHS);
        assert!(hz.covers(seq(3, 1_000)), "folded epochs count as seen");
        assert!(!hz.covers(seq(HORIZON_EPOCHS as u32 + 10, 6)));
        assert_eq!(hz.max_epoch(), Epoch::new(HORIZON_EPOCHS as u32 + 10, 0));
    }

    #[test]
    fn is_current_deduplicates_against_live_state() {
        let mut h = History::default();
        h.apply(rec(1, 1, 1, Change::Join(info(7, "a"))));
        h.apply(rec(1, 2, 2, ann(7, "t")));
        assert!(h.is_current(&Change::Join(info(7, "a"))));
        assert!(!h.is_current(&Change::Join(info(7, "renamed"))));
        assert!(h.is_current(&ann(7, "t")));
        assert!(!h.is_current(&Change::Announce {
            node: id(7),
            topic: "t".into(),
            mime: "other".into()
        }));
        assert!(h.is_current(&Change::Retract {
            node: id(7),
            topic: "nope".into()
        }));
        assert!(!h.is_current(&sub(7, "t")));
        assert!(h.is_current(&unsub(7, "t")));
        assert!(!h.is_current(&Change::Leave(id(7))));
        assert!(h.is_current(&Change::Leave(id(8))));
    }

    // ---- laws of `merge` ----
    //
    // Histories are generated the way they arise: hubs of successive epochs mint a log of
    // records, and each history has seen a prefix of it in order (advancing its horizon) plus
    // some later records relayed out of order (not advancing it).

    #[derive(Clone, Debug)]
    struct Gen {
        log: Vec<Record>,
    }

    fn arb_log() -> impl Strategy<Value = Gen> {
        let step = (0u8..6, 1u64..5, 0u8..3);
        prop::collection::vec(step, 1..60).prop_map(|steps| {
            let mut log = Vec::new();
            let mut epoch = 1u32;
            let mut counter = 0u32;
            let mut uid = 1u64;
            for (op, node, topic) in steps {
                if op == 5 {
                    epoch += 1;
                    counter = 0;
                    continue;
                }
                counter += 1;
                uid += 1;
                let topic = format!("t{topic}");
                let change = match op {
                    0 => Change::Join(info(node, "n")),
                    1 => Change::Leave(id(node)),
                    2 => sub(node, &topic),
                    3 => unsub(node, &topic),
                    _ => ann(node, &topic),
                };
                log.push(rec(epoch, counter, uid, change));
            }
            Gen { log }
        })
    }

    /// A history that saw `prefix` records of the log in order, then some later records relayed
    /// out of order. Relays respect causality as a hub's do: a hub relays a topic record only
    /// while the node is joined in its history, so the record that opened the node's stay was
    /// relayed (or seen) before it.
    fn seen(g: &Gen, prefix: usize, relayed: &[usize], cap: usize) -> History {
        let mut h = History::new(cap);
        let prefix = prefix.min(g.log.len());
        for r in &g.log[..prefix] {
            h.apply(r.clone());
            h.observe(r.seq);
        }
        let rest = &g.log[prefix..];
        let mut picked = BTreeSet::new();
        for &i in relayed {
            if rest.is_empty() {
                break;
            }
            let i = i % rest.len();
            picked.insert(i);
            let node = rest[i].change.node();
            if let Some(j) = rest[..i]
                .iter()
                .rposition(|r| r.change.node() == node && matches!(r.change.slot(), Slot::Node))
            {
                picked.insert(j);
            }
        }
        for i in picked {
            h.apply(rest[i].clone());
        }
        h
    }

    fn arb_histories(cap: usize) -> impl Strategy<Value = (History, History, History)> {
        arb_log().prop_flat_map(move |g| {
            let n = g.log.len();
            let one = (0..=n, prop::collection::vec(0usize..64, 0..4));
            (Just(g), one.clone(), one.clone(), one).prop_map(move |(g, a, b, c)| {
                (
                    seen(&g, a.0, &a.1, cap),
                    seen(&g, b.0, &b.1, cap),
                    seen(&g, c.0, &c.1, cap),
                )
            })
        })
    }

    proptest! {
        #[test]
        fn merge_is_commutative((a, b, _) in arb_histories(10_000)) {
            prop_assert_eq!(merge(&a, &b), merge(&b, &a));
        }

        #[test]
        fn merge_is_associative((a, b, c) in arb_histories(10_000)) {
            prop_assert_eq!(merge(&merge(&a, &b), &c), merge(&a, &merge(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent((a, b, _) in arb_histories(10_000)) {
            prop_assert_eq!(merge(&a, &a), a.clone());
            let ab = merge(&a, &b);
            prop_assert_eq!(merge(&ab, &b), ab);
        }

        #[test]
        fn merge_stays_commutative_and_idempotent_with_a_small_tombstone_cap(
            (a, b, _) in arb_histories(2)
        ) {
            prop_assert_eq!(merge(&a, &b), merge(&b, &a), "commutative");
            prop_assert_eq!(merge(&a, &a), a.clone(), "idempotent");
        }

        #[test]
        fn merging_prefixes_gives_the_longer_prefix(g in arb_log(), x in 0usize..60, y in 0usize..60) {
            let a = seen(&g, x, &[], 10_000);
            let b = seen(&g, y, &[], 10_000);
            let longer = if x.min(g.log.len()) >= y.min(g.log.len()) { &a } else { &b };
            prop_assert_eq!(merge(&a, &b).view(), longer.view());
        }

        #[test]
        fn history_stays_within_live_state_plus_tombstone_cap(g in arb_log(), cap in 0usize..8) {
            let h = seen(&g, usize::MAX, &[], cap);
            let view = h.view();
            let live: usize = view.nodes().values().map(|n| 1 + n.publishes.len() + n.subscribes.len()).sum();
            prop_assert!(h.len() <= live + cap, "len {} live {} cap {}", h.len(), live, cap);
        }
    }
}
