//! What host and replicas keep per document: the value at a version, which patches of each
//! origin it includes ([`Marks`]), and which paths recent versions touched ([`Log`]).
//!
//! Host and replicas advance a [`DocState`] with the same function, [`DocState::advance`], one
//! accepted patch at a time, so the state at a version is the same everywhere: that is what
//! lets a new host adopt any replica's state.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use super::path::Path;
use super::types::{DocLimits, HOLE_WINDOW, RejectReason, check_value};
use super::update::{ApplyContext, Update};
use crate::ids::NodeId;

/// What a host's records say about one patch of an origin.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Above every accepted patch of the origin: not seen, or rejected without a trace.
    New,
    /// Accepted: it is in the value.
    Accepted,
    /// Below an accepted patch and not accepted itself: a host rejected it.
    Rejected,
    /// Too far below the origin's last accepted patch to tell.
    Unknown,
}

/// Which patches of one origin a document includes: the last accepted `origin_seq`, and which
/// of the [`HOLE_WINDOW`] before it were not accepted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The highest accepted `origin_seq` (never 0).
    pub(crate) seq: u64,
    /// Bit `i` set: `seq - 1 - i` was not accepted (rejected, or never sent).
    pub(crate) holes: u128,
    /// The version that accepted `seq`: the most recently active origins are kept longest.
    pub(crate) version: u64,
}

/// The lowest `k` bits set.
fn low_mask(k: u64) -> u128 {
    if k >= HOLE_WINDOW {
        u128::MAX
    } else {
        (1u128 << k) - 1
    }
}

impl Mark {
    /// The first accepted patch of an origin: every earlier `origin_seq` is a hole.
    fn first(seq: u64, version: u64) -> Self {
        Self {
            seq,
            holes: low_mask(seq.saturating_sub(1)),
            version,
        }
    }

    /// Records `seq` (above [`Mark::seq`]) as accepted at `version`; the ones skipped since
    /// the last accepted are holes.
    fn accept(&mut self, seq: u64, version: u64) {
        debug_assert!(seq > self.seq, "callers check seen() first");
        let d = seq - self.seq;
        let shifted = if d >= HOLE_WINDOW { 0 } else { self.holes << d };
        // Bits 0..d-1 stand for seq-1 ..= old seq + 1 (holes); bit d-1 is the old seq
        // (accepted), so only d-1 bits are set.
        self.holes = shifted | low_mask(d - 1);
        self.seq = seq;
        self.version = version;
    }

    /// What became of `seq`.
    pub(crate) fn seen(&self, seq: u64) -> Seen {
        if seq > self.seq {
            return Seen::New;
        }
        let d = self.seq - seq;
        if d == 0 {
            Seen::Accepted
        } else if d > HOLE_WINDOW {
            Seen::Unknown
        } else if self.holes >> (d - 1) & 1 == 1 {
            Seen::Rejected
        } else {
            Seen::Accepted
        }
    }
}

/// Per origin node, which of its patches a document includes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    pub(crate) by_origin: BTreeMap<NodeId, Mark>,
}

impl Marks {
    /// What became of `origin`'s patch `seq`.
    pub(crate) fn seen(&self, origin: NodeId, seq: u64) -> Seen {
        self.by_origin
            .get(&origin)
            .map_or(Seen::New, |m| m.seen(seq))
    }

    /// The last accepted `origin_seq` of `origin` (0: none).
    pub(crate) fn last(&self, origin: NodeId) -> u64 {
        self.by_origin.get(&origin).map_or(0, |m| m.seq)
    }

    /// Records `origin`'s `seq` as accepted at `version`. A new origin beyond `max` evicts one:
    /// the node declared gone longest ago (`gone`: node -> when, in any increasing unit), else
    /// the origin whose last patch is oldest.
    fn accept(
        &mut self,
        origin: NodeId,
        seq: u64,
        version: u64,
        max: usize,
        gone: &BTreeMap<NodeId, u64>,
    ) {
        if let Some(m) = self.by_origin.get_mut(&origin) {
            m.accept(seq, version);
            return;
        }
        while self.by_origin.len() >= max.max(1) {
            let victim = self
                .by_origin
                .keys()
                .filter_map(|n| gone.get(n).map(|at| (*at, *n)))
                .min()
                .map(|(_, n)| n)
                .or_else(|| {
                    self.by_origin
                        .iter()
                        .min_by_key(|(n, m)| (m.version, **n))
                        .map(|(n, _)| *n)
                });
            let Some(victim) = victim else { break };
            tracing::debug!(%victim, "origin mark evicted");
            self.by_origin.remove(&victim);
        }
        self.by_origin.insert(origin, Mark::first(seq, version));
    }
}

/// One accepted patch, as the conflict check needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub(crate) version: u64,
    pub(crate) origin: NodeId,
    pub(crate) paths: Vec<Path>,
}

impl LogEntry {
    /// An upper bound of the entry's encoded size, counted against
    /// [`DocLimits::max_log_bytes`].
    pub(crate) fn cost(&self) -> usize {
        32 + self
            .paths
            .iter()
            .map(|p| p.to_string().len() + 9)
            .sum::<usize>()
    }
}

/// The paths touched by the most recent accepted versions, `(floor, floor + len]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Log {
    /// The newest version the log no longer describes.
    pub(crate) floor: u64,
    pub(crate) entries: VecDeque<LogEntry>,
    cost: usize,
}

impl Log {
    /// An empty log at `version`.
    pub(crate) fn empty(version: u64) -> Self {
        Self {
            floor: version,
            entries: VecDeque::new(),
            cost: 0,
        }
    }

    /// A log of `entries`, which must be consecutive versions ending at `version`; `None`
    /// otherwise.
    pub(crate) fn from_entries(version: u64, entries: Vec<LogEntry>) -> Option<Self> {
        let floor = version.checked_sub(entries.len() as u64)?;
        let consecutive = entries
            .iter()
            .zip(floor + 1..)
            .all(|(e, expected)| e.version == expected);
        if !consecutive {
            return None;
        }
        let cost = entries.iter().map(LogEntry::cost).sum();
        Some(Self {
            floor,
            entries: entries.into(),
            cost,
        })
    }

    /// The total [`LogEntry::cost`].
    pub(crate) fn cost(&self) -> usize {
        self.cost
    }

    /// Appends the next version's entry and forgets the oldest beyond the limits.
    fn push(&mut self, entry: LogEntry, limits: &DocLimits) {
        self.cost += entry.cost();
        self.entries.push_back(entry);
        while self.entries.len() > limits.log_window || self.cost > limits.max_log_bytes {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.cost -= old.cost();
            self.floor = old.version;
        }
    }

    /// Whether a patch of `origin` writing `update`'s paths, made against `base`, may be
    /// applied after every logged version (the newest being `version`).
    pub(crate) fn check(
        &self,
        version: u64,
        base: u64,
        origin: NodeId,
        update: &Update,
    ) -> Result<(), RejectReason> {
        if base > version || base < self.floor {
            return Err(RejectReason::Stale {
                base,
                oldest: self.floor,
            });
        }
        let since = self.entries.iter().skip_while(|e| e.version <= base);
        for e in since.filter(|e| e.origin != origin) {
            if let Some(path) = e.paths.iter().find(|p| update.touches(p)) {
                return Err(RejectReason::Conflict {
                    path: path.clone(),
                    version: e.version,
                    origin: e.origin,
                });
            }
        }
        Ok(())
    }
}

/// A document at a version, as the host holds it and as a replica last confirmed it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DocState {
    pub(crate) version: u64,
    pub(crate) value: Value,
    pub(crate) marks: Marks,
    pub(crate) log: Log,
}

impl DocState {
    /// A document created from `value`, at version 0.
    pub(crate) fn created(value: Value) -> Self {
        Self {
            version: 0,
            value,
            marks: Marks::default(),
            log: Log::empty(0),
        }
    }

    /// Applies an accepted patch of `origin` as the next version, or fails and changes
    /// nothing: the update does not apply, or the result breaks the limits.
    ///
    /// The host calls it after its checks; replicas call it for each broadcast. `gone` ranks
    /// origins to evict (the host's knowledge; replicas pass an empty map).
    pub(crate) fn advance(
        &mut self,
        origin: NodeId,
        seq: u64,
        wall_ms: u64,
        update: &Update,
        limits: &DocLimits,
        gone: &BTreeMap<NodeId, u64>,
    ) -> Result<(), RejectReason> {
        let ctx = ApplyContext {
            now_unix_ms: wall_ms,
        };
        let value = update
            .applied(&self.value, &ctx)
            .map_err(RejectReason::Failed)?;
        check_value(&value, limits.max_value)?;
        self.value = value;
        self.version += 1;
        self.marks
            .accept(origin, seq, self.version, limits.max_origins, gone);
        self.log.push(
            LogEntry {
                version: self.version,
                origin,
                paths: update.paths().cloned().collect(),
            },
            limits,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u64) -> NodeId {
        NodeId::new(n).expect("non-zero")
    }

    #[test]
    fn marks_tell_accepted_from_rejected_within_the_window() {
        let mut m = Mark::first(3, 1);
        assert_eq!(m.seen(1), Seen::Rejected, "1 and 2 were never accepted");
        assert_eq!(m.seen(2), Seen::Rejected);
        assert_eq!(m.seen(3), Seen::Accepted);
        assert_eq!(m.seen(4), Seen::New);
        m.accept(4, 2);
        m.accept(7, 3);
        assert_eq!(
            (1..=8).map(|s| m.seen(s)).collect::<Vec<_>>(),
            [
                Seen::Rejected,
                Seen::Rejected,
                Seen::Accepted,
                Seen::Accepted,
                Seen::Rejected,
                Seen::Rejected,
                Seen::Accepted,
                Seen::New
            ]
        );
        // A jump beyond the window forgets everything before it.
        m.accept(7 + HOLE_WINDOW + 5, 4);
        assert_eq!(m.seen(7), Seen::Unknown);
        assert_eq!(m.seen(8 + 5), Seen::Rejected);
        assert_eq!(m.seen(7 + HOLE_WINDOW + 4), Seen::Rejected);
        // Exactly the window: the old seq is the last bit.
        let mut m = Mark::first(1, 1);
        m.accept(1 + HOLE_WINDOW, 2);
        assert_eq!(m.seen(1), Seen::Accepted);
        assert_eq!(m.seen(2), Seen::Rejected);
        assert_eq!(m.seen(0), Seen::Unknown);
        let m = Mark::first(HOLE_WINDOW + 10, 1);
        assert_eq!(m.seen(10), Seen::Rejected);
        assert_eq!(m.seen(9), Seen::Unknown);
    }

    #[test]
    fn marks_evict_gone_nodes_first_then_the_least_recent() {
        let mut marks = Marks::default();
        let none = BTreeMap::new();
        marks.accept(node(1), 1, 1, 2, &none);
        marks.accept(node(2), 1, 2, 2, &none);
        marks.accept(node(1), 2, 3, 2, &none);
        // Full: node 2 is the least recent.
        marks.accept(node(3), 1, 4, 2, &none);
        assert_eq!(
            marks.by_origin.keys().copied().collect::<Vec<_>>(),
            [node(1), node(3)]
        );
        // Node 3 is gone: it goes first although node 1 is older.
        let gone = BTreeMap::from([(node(3), 0)]);
        marks.accept(node(4), 1, 5, 2, &gone);
        assert_eq!(
            marks.by_origin.keys().copied().collect::<Vec<_>>(),
            [node(1), node(4)]
        );
    }

    #[test]
    fn the_log_keeps_a_bounded_window_and_checks_conflicts_since_the_base() {
        let limits = DocLimits {
            log_window: 2,
            ..DocLimits::default()
        };
        let mut doc = DocState::created(serde_json::json!({}));
        let set =
            |p: &str| Update::parse(&serde_json::json!({"$set": {p: 1}})).expect("valid update");
        let none = BTreeMap::new();
        for (i, p) in ["a", "b.c", "d"].into_iter().enumerate() {
            doc.advance(node(1), i as u64 + 1, 0, &set(p), &limits, &none)
                .expect("applies");
        }
        assert_eq!(doc.version, 3);
        assert_eq!(doc.log.floor, 1);
        assert_eq!(doc.log.entries.len(), 2);
        // Another origin, based on version 1: b.c (version 2) conflicts with b and b.c.d.
        assert_eq!(
            doc.log.check(3, 1, node(2), &set("b")),
            Err(RejectReason::Conflict {
                path: "b.c".parse().expect("path"),
                version: 2,
                origin: node(1)
            })
        );
        assert!(doc.log.check(3, 1, node(2), &set("b.c.d")).is_err());
        assert_eq!(doc.log.check(3, 1, node(2), &set("e")), Ok(()));
        assert_eq!(doc.log.check(3, 2, node(2), &set("b")), Ok(()));
        // The same origin never conflicts with itself.
        assert_eq!(doc.log.check(3, 1, node(1), &set("b")), Ok(()));
        // Older than the window, or from the future.
        assert_eq!(
            doc.log.check(3, 0, node(2), &set("e")),
            Err(RejectReason::Stale { base: 0, oldest: 1 })
        );
        assert!(doc.log.check(3, 4, node(2), &set("e")).is_err());
        let again = Log::from_entries(3, doc.log.entries.iter().cloned().collect());
        assert_eq!(again.as_ref(), Some(&doc.log));
        assert_eq!(
            Log::from_entries(4, doc.log.entries.iter().cloned().collect()),
            None
        );
    }
}
