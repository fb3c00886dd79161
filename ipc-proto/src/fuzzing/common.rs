//! What every fuzz target shares: the folded node and link ids, topic names, the clock ops
//! and the checks that hold for every machine.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;

use crate::history::{DEFAULT_TOMBSTONES, History};
use crate::ids::{NodeId, PeerId};
use crate::machine::Output;
use crate::wire::{Deframer, Limits};

pub(super) const HEADER: usize = 4;

/// Node ids in frames an op sends are folded into `1..=NODES`, so that the frames of one input
/// talk about the same few nodes.
pub(super) const NODES: u64 = 8;

/// Link ids an op names are folded into `0..PEERS`.
pub(super) const PEERS: u8 = 8;

/// The node hosting the hub of [`hub_ops`](super::hub_ops), and the node of the spoke of
/// [`spoke_ops`](super::spoke_ops): inside the folded range, so frames talk about it too.
pub const LOCAL_NODE: NodeId = NodeId::new(1).expect("1 is non-zero");

/// The uid the hub of [`hub_ops`](super::hub_ops) admits (unless its setup opens it to anyone).
pub const ALLOWED_UID: u32 = 1000;

/// Topic names (and type strings) that [`Topic::Known`](super::Topic::Known) picks from: a few
/// valid ones, so that commands collide, and two invalid ones.
pub const TOPICS: [&str; 6] = ["a", "b", "c", "video/raw", "", LONG_NAME];

const LONG_NAME: &str = concat!(
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
);

pub(super) fn fold(id: NodeId) -> NodeId {
    NodeId::new(1 + (id.get() - 1) % NODES).expect("1 + x is non-zero")
}

pub(super) fn peer(p: u8) -> PeerId {
    PeerId(u64::from(p % PEERS))
}

/// Splits `bytes` in two at `split` (modulo its length plus one; 0 means whole).
pub(super) fn split_at(bytes: &[u8], split: u8) -> (&[u8], &[u8]) {
    bytes.split_at(usize::from(split) % (bytes.len() + 1))
}

// ---- time ----

/// A step of the clock, then `handle_timeout`.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Move the clock this many milliseconds forward (a bounded step).
    Advance(u16),
    /// Move the clock to the machine's `poll_timeout`, if it has one.
    Fire,
    /// Call `handle_timeout` this many milliseconds before the clock: an early or stale call.
    Early(u16),
}

/// The clock of one run: an origin from the caller plus what the ticks added.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    pub(super) now: Instant,
}

impl Clock {
    /// Where `tick` leaves the clock, and the instant to call `handle_timeout` with.
    pub(super) fn tick(&mut self, tick: &Tick, deadline: Option<Instant>) -> Instant {
        match tick {
            Tick::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(*ms));
                self.now
            }
            Tick::Fire => {
                self.now = deadline.map_or(self.now, |d| d.max(self.now));
                self.now
            }
            Tick::Early(ms) => self
                .now
                .checked_sub(Duration::from_millis(u64::from(*ms)))
                .unwrap_or(self.now),
        }
    }
}

// ---- common checks ----

/// Checks that `bytes` (one transmit) is whole, valid frames under `limits`, and not more than
/// one record of a `SOCK_SEQPACKET` link may carry.
/// Checks a topology machine's link output against the links the harness knows open: a
/// transmit only on an open link and within `max_frame`, a disconnect only of an open link
/// (which closes it). Returns the event of an `Output::Evt`.
pub(super) fn link_output<E>(
    open: &mut BTreeSet<PeerId>,
    limits: &Limits,
    out: Output<E>,
) -> Option<E> {
    match out {
        Output::Transmit(t) => {
            assert!(
                open.contains(&t.peer),
                "transmit to {} after its link closed",
                t.peer
            );
            check_transmit(&t.bytes, limits);
            None
        }
        Output::Disconnect(p) => {
            assert!(open.remove(&p), "Disconnect({p}) of a link not open");
            None
        }
        Output::Evt(e) => Some(e),
    }
}

fn check_transmit(bytes: &[u8], limits: &Limits) {
    assert!(
        bytes.len() <= limits.max_frame + HEADER,
        "a transmit of {} bytes exceeds max_frame",
        bytes.len()
    );
    let mut d = Deframer::new(limits.clone());
    d.push(bytes);
    let mut frames = 0;
    while let Some(r) = d.next_frame() {
        if let Err(e) = r {
            panic!("a transmit does not decode: {e} (frame {frames}, {bytes:02x?})");
        }
        frames += 1;
    }
    assert!(frames > 0, "an empty transmit");
    assert_eq!(d.buffered(), 0, "a transmit ends inside a frame");
}

/// Checks a history's observable guarantees.
pub(super) fn check_history(h: &History, max_tombstones: usize) {
    let view = h.view();
    let live: usize = view
        .nodes()
        .values()
        .map(|n| 1 + n.publishes.len() + n.subscribes.len())
        .sum();
    assert!(
        h.tombstones() <= max_tombstones,
        "{} tombstones, cap {max_tombstones}",
        h.tombstones()
    );
    assert!(
        h.len() <= live + max_tombstones,
        "{} records for a live state of {live} and a cap of {max_tombstones}",
        h.len()
    );
    let mut count = 0;
    let mut prev = None;
    for r in h.records() {
        assert_ne!(r.uid.get(), 0, "a record with uid 0");
        assert!(
            prev.is_none_or(|p| p < r.seq),
            "records out of order: {prev:?} then {:?}",
            r.seq
        );
        prev = Some(r.seq);
        count += 1;
    }
    assert_eq!(count, h.len(), "records() yields len() records");
}

/// After `handle_timeout`, nothing is due any more: the next deadline is later than the latest
/// instant the machine has seen, or a driver sleeping until it would spin.
pub(super) fn check_deadline(deadline: Option<Instant>, now: Instant) {
    if let Some(at) = deadline {
        assert!(
            at > now,
            "a deadline {:?} in the past after handle_timeout",
            now - at
        );
    }
}

pub(super) fn tombstone_cap(setting: Option<u8>) -> usize {
    setting.map_or(DEFAULT_TOMBSTONES, |n| usize::from(n % 8))
}

/// The first id of the pool segments [`data_ops`](super::data_ops) publishes. Fresh segments it
/// publishes are numbered from [`FRESH_BASE`], the segments it hands in with records from
/// [`RECEIVED_BASE`]: an id says whose segment it is.
pub(super) const POOL_BASE: u64 = 1;
/// See [`POOL_BASE`].
pub(super) const FRESH_BASE: u64 = 1 << 32;
/// See [`POOL_BASE`].
pub(super) const RECEIVED_BASE: u64 = 1 << 48;
