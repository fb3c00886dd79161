//! What the fuzz targets do with their input, shared by `fuzz/` and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so that a corpus file means the same thing in both.
//!
//! **Not a stable API.** Compiled only with the `arbitrary` feature, for this crate's own fuzzers
//! and tests; it changes whenever they need it to, in any release.
//!
//! Each target is a function of the raw input bytes: [`decode`], [`hub_ops`], [`spoke_ops`],
//! and for the data plane [`data_decode`] and [`data_ops`]. A violated invariant panics, which
//! is what a fuzzer reports as a crash. The op targets read their input with
//! [`Arbitrary::arbitrary_take_rest`], exactly as `libfuzzer-sys` does for a typed target, and
//! take the clock's origin as an argument: this crate reads no clock.
//!
//! Checked after every op of [`hub_ops`] and [`spoke_ops`], from outside the machine:
//! - `handle` returns `Err` only for a command, and a refused command changes nothing;
//! - after `handle_timeout`, `poll_timeout` is later than the latest instant the machine saw
//!   (nothing left due: a driver never spins);
//! - every [`Output::Transmit`] is whole frames that decode under the machine's limits, at most
//!   [`Limits::max_frame`] plus the length header;
//! - nothing is sent on a link after the machine emitted [`Output::Disconnect`] for it or saw
//!   its [`Input::PeerDown`], until the link comes up again, and the links the machine holds are
//!   exactly those it did not close;
//! - a history holds its records in strictly increasing position order, at most the live state
//!   plus the tombstone cap;
//! - a spoke: replaying every [`SpokeEvt::Topology`] event it emitted onto an empty [`View`]
//!   gives its view (no ghost, nothing missing), each event changes that replayed view, and its
//!   view is what its history adds up to.
//!
//! Checked by [`data_ops`], which plays the driver of one [`DataPlane`] (with a [`Pool`]) and
//! the peers at the ends of its links, after every op:
//! - `handle` returns `Err` only for a command, and a refused command changes nothing;
//! - after `handle_timeout`, `poll_timeout` is later than the latest instant the machine saw;
//! - every [`DataOutput::Transmit`] decodes with [`decode_data`] under the machine's limits and
//!   carries an fd exactly when its frame needs one; an attached segment is one the harness
//!   published, never a received one, and never a pool segment retired before;
//! - nothing is sent on a link after its [`DataInput::PeerDown`] or the machine's
//!   [`DataOutput::Disconnect`], until it is up again; nothing on a link being connected;
//! - what a link to a subscriber carries is what a correct subscriber accepts (Hello first,
//!   topics bound once, sequence numbers increasing, pooled ranges inside segments offered on
//!   the link, retires of offered segments only) and is what was published;
//! - every segment handed in with a record is delivered ([`DataOutput::Deliver`]) or released
//!   exactly once, never both, at once unless it is a pool segment's offer, and by the time
//!   its link goes at the latest; a pooled delivery is in a segment its link offered and still
//!   holds;
//! - a segment the harness published is released once per publication, never while a
//!   subscriber or a local delivery holds a range of it, and [`DataPlane::segment_refs`] is at
//!   least the ranges held (one per segment not released) and at most that plus one queued
//!   message per link that is not up;
//! - [`DataPlane::room`] is what the last [`DataEvt::Room`] said, `rejected` counts the
//!   [`DataEvt::PeerMisbehaved`] events, and no counter of [`DataPlane::stats`] decreases
//!   (the counters of a link go with it: not checked in an op where a link went).
//!
//! and at the end, once every link is gone and every delivery released: no reference left,
//! every published segment released, the pool idle.
//!
//! Every crash found goes into `tests/malformed_input.rs` as a test of its own (`#[ignore]`d
//! until fixed). While one is open, the harness may steer around it so that the fuzzers look
//! for others; say so here and at the detour, and drop the detour with the fix. Open, in
//! [`data_ops`]:
//! - `a_dropped_message_does_not_leave_its_retired_segment_offered`: the harness does not retire
//!   pool segments while an offer of one may still be queued on a link that is not up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::data::{
    DataCmd, DataConfig, DataEvt, DataInput, DataLimits, DataOutput, DataPlane, Delivered,
    Delivery, LOCAL, MIN_SEGMENT, OUTGOING, Payload, Pool, ReceivedSegment, Room, Routes, Seals,
    SegmentId, Terms,
};
use crate::error::DecodeError;
use crate::history::{DEFAULT_TOMBSTONES, History, Horizon};
use crate::hub::{Hub, HubCmd, HubConfig, HubSeed};
use crate::ids::{Credentials, Epoch, NodeId, PeerId, Seq};
use crate::machine::{AccessPolicy, Input, Output};
use crate::spoke::{Spoke, SpokeCmd, SpokeConfig, SpokeEvt};
use crate::topology::{Change, NodeInfo, NodeView, Record, View};
use crate::wire::{
    self, DataFrame, DataStats, Deframer, Frame, Limits, OwnChange, Policy, SlotRef, Welcome,
    decode_data, encode_data,
};

/// Length of the frame header (the `u32` length).
const HEADER: usize = 4;

/// Node ids in frames an op sends are folded into `1..=NODES`, so that the frames of one input
/// talk about the same few nodes.
const NODES: u64 = 8;

/// Link ids an op names are folded into `0..PEERS`.
const PEERS: u8 = 8;

/// The node hosting the hub of [`hub_ops`], and the node of the spoke of [`spoke_ops`]: inside
/// the folded range, so frames talk about it too.
pub const LOCAL_NODE: NodeId = NodeId::new(1).expect("1 is non-zero");

/// The uid the hub of [`hub_ops`] admits (unless its setup opens it to anyone).
pub const ALLOWED_UID: u32 = 1000;

/// Topic names (and type strings) that [`Topic::Known`] picks from: a few valid ones, so that
/// commands collide, and two invalid ones.
pub const TOPICS: [&str; 6] = ["a", "b", "c", "video/raw", "", LONG_NAME];

const LONG_NAME: &str = concat!(
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
);

// ---- decode ----

/// The `decode` target: [`decode_bytes`], then [`frame_roundtrip`] on the same bytes.
pub fn decode(data: &[u8]) {
    decode_bytes(data);
    frame_roundtrip(data);
}

/// Raw bytes never panic the codec: [`wire::decode`] of the bytes, and a [`Deframer`] fed them
/// whole, byte by byte and in chunks of other sizes, under the default limits and tiny ones.
///
/// Also: a frame that decodes re-encodes to bytes that decode to it; every chunking yields the
/// same frames and the same error; the deframer yields nothing after an error and never holds
/// more than one frame once drained. Needs nothing of `arbitrary`.
pub fn decode_bytes(data: &[u8]) {
    for limits in [Limits::default(), tiny_limits()] {
        if let Ok(frame) = wire::decode(data, &limits) {
            let again = wire::encode(&frame);
            assert_eq!(
                wire::decode(&again[HEADER..], &limits),
                Ok(frame),
                "a decoded frame re-encodes to itself"
            );
        }
        let whole = deframe(data, &limits, &mut std::iter::once(data.len().max(1)));
        let bytewise = deframe(data, &limits, &mut std::iter::repeat(1));
        assert_eq!(whole, bytewise, "byte-by-byte chunking");
        let mut cuts = data.iter().map(|&b| 1 + usize::from(b % 13)).cycle();
        let chunked = deframe(data, &limits, &mut cuts);
        assert_eq!(whole, chunked, "chunking by the input's own bytes");
    }
}

/// An arbitrary [`Frame`] round-trips: `decode(encode(frame)) == Ok(frame)` when the frame is
/// within the limits, and a field error (too long, empty topic) when it is not; a stream of it,
/// in chunks, yields it.
pub fn frame_roundtrip(data: &[u8]) {
    let Ok(frame) = Frame::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let bytes = wire::encode(&frame);
    let announced = u32::from_le_bytes(bytes[..HEADER].try_into().expect("a 4-byte header"));
    assert_eq!(
        announced as usize,
        bytes.len() - HEADER,
        "the length header"
    );
    for limits in [Limits::default(), tiny_limits()] {
        let got = wire::decode(&bytes[HEADER..], &limits);
        if !within_limits(&frame, &limits) {
            match got {
                Err(DecodeError::FieldTooLong { .. }) => {}
                Err(DecodeError::Invalid(msg)) if msg == "empty topic name" => {}
                other => panic!("{frame:?} breaks the limits but decodes as {other:?}"),
            }
            continue;
        }
        assert_eq!(got.as_ref(), Ok(&frame), "decode(encode(frame))");
        if bytes.len() - HEADER <= limits.max_frame {
            let stream = [&bytes[..], &bytes[..]].concat();
            let mut cuts = data.iter().map(|&b| 1 + usize::from(b % 7)).cycle();
            let frames = deframe(&stream, &limits, &mut cuts);
            assert_eq!(
                frames,
                [Ok(frame.clone()), Ok(frame.clone())],
                "a stream of it"
            );
        }
    }
}

/// Limits small enough that fuzzed frames hit them.
fn tiny_limits() -> Limits {
    Limits {
        max_frame: 64,
        max_name: 3,
        max_topics_per_node: 4,
        max_history: 8,
        ..Limits::default()
    }
}

/// Feeds `data` to a deframer in chunks of the sizes `cuts` gives, draining after each, and
/// checks the deframer's own guarantees on the way.
fn deframe(
    data: &[u8],
    limits: &Limits,
    cuts: &mut dyn Iterator<Item = usize>,
) -> Vec<Result<Frame, DecodeError>> {
    let mut d = Deframer::new(limits.clone());
    let mut got = Vec::new();
    let mut rest = data;
    loop {
        while let Some(r) = d.next_frame() {
            assert!(
                got.last().is_none_or(Result::is_ok),
                "a failed deframer yields nothing more"
            );
            got.push(r);
        }
        if got.last().is_some_and(Result::is_err) {
            assert_eq!(d.buffered(), 0, "a failed deframer holds nothing");
        }
        assert!(
            d.buffered() < limits.max_frame + HEADER,
            "a drained deframer holds less than one frame"
        );
        if rest.is_empty() {
            return got;
        }
        let n = cuts.next().unwrap_or(rest.len()).clamp(1, rest.len());
        d.push(&rest[..n]);
        rest = &rest[n..];
    }
}

/// Whether `frame` satisfies `limits`: an oracle written apart from the codec's own check.
fn within_limits(frame: &Frame, limits: &Limits) -> bool {
    let name = |s: &str| s.len() <= limits.max_name;
    let topic = |s: &str| !s.is_empty() && name(s);
    let own = |c: &OwnChange| match c {
        OwnChange::Announce { topic: t, mime } => topic(t) && name(mime),
        other => topic(other.topic()),
    };
    let record = |r: &Record| match &r.change {
        Change::Join(info) => name(&info.name) && name(&info.data_addr),
        Change::Leave(_) => true,
        Change::Announce { topic: t, mime, .. } => topic(t) && name(mime),
        Change::Retract { topic: t, .. }
        | Change::Subscribe { topic: t, .. }
        | Change::Unsubscribe { topic: t, .. } => topic(t),
    };
    match frame {
        Frame::Hello(h) => h
            .member
            .as_ref()
            .is_none_or(|i| name(&i.name) && name(&i.data_addr)),
        Frame::History(rs) | Frame::Snapshot(rs) | Frame::Minted(rs) | Frame::Relayed(rs) => {
            rs.iter().all(record)
        }
        Frame::Own(cs) => cs.iter().all(own),
        Frame::Change(c) => own(c),
        Frame::IntroEnd
        | Frame::Heartbeat
        | Frame::Goodbye(_)
        | Frame::Welcome(_)
        | Frame::SnapshotEnd(_)
        | Frame::Horizon(_)
        // Its contents are the document machines' to check; its size, the deframer's.
        | Frame::DocReady
        | Frame::Doc(_) => true,
    }
}

/// Makes `frame` satisfy `limits` (long strings cut, empty topics named) and folds its node ids
/// into `1..=8`, so that the frames of one input talk about the same few nodes.
pub fn sanitize(frame: &mut Frame, limits: &Limits) {
    let max = limits.max_name;
    let fit = |s: &mut String| {
        while s.len() > max {
            s.pop();
        }
    };
    let topic = |s: &mut String| {
        fit(s);
        if s.is_empty() {
            s.push('t');
        }
    };
    let own = |c: &mut OwnChange| match c {
        OwnChange::Announce { topic: t, mime } => {
            topic(t);
            fit(mime);
        }
        OwnChange::Retract { topic: t }
        | OwnChange::Subscribe { topic: t }
        | OwnChange::Unsubscribe { topic: t } => topic(t),
    };
    let record = |r: &mut Record| match &mut r.change {
        Change::Join(info) => {
            info.id = fold(info.id);
            fit(&mut info.name);
            fit(&mut info.data_addr);
        }
        Change::Leave(node) => *node = fold(*node),
        Change::Announce {
            node,
            topic: t,
            mime,
        } => {
            *node = fold(*node);
            topic(t);
            fit(mime);
        }
        Change::Retract { node, topic: t }
        | Change::Subscribe { node, topic: t }
        | Change::Unsubscribe { node, topic: t } => {
            *node = fold(*node);
            topic(t);
        }
    };
    match frame {
        Frame::Hello(h) => {
            if let Some(info) = &mut h.member {
                info.id = fold(info.id);
                fit(&mut info.name);
                fit(&mut info.data_addr);
            }
        }
        Frame::History(rs) | Frame::Snapshot(rs) | Frame::Minted(rs) | Frame::Relayed(rs) => {
            rs.iter_mut().for_each(record);
        }
        Frame::Own(cs) => cs.iter_mut().for_each(own),
        Frame::Change(c) => own(c),
        Frame::Welcome(w) => w.hub = fold(w.hub),
        Frame::Doc(d) => d.truncate(limits.max_frame.saturating_sub(1)),
        Frame::IntroEnd
        | Frame::Heartbeat
        | Frame::Goodbye(_)
        | Frame::SnapshotEnd(_)
        | Frame::Horizon(_)
        | Frame::DocReady => {}
    }
}

fn fold(id: NodeId) -> NodeId {
    NodeId::new(1 + (id.get() - 1) % NODES).expect("1 + x is non-zero")
}

fn peer(p: u8) -> PeerId {
    PeerId(u64::from(p % PEERS))
}

/// The encoded `frame`, after [`sanitize`].
fn valid_bytes(mut frame: Frame, limits: &Limits) -> Vec<u8> {
    sanitize(&mut frame, limits);
    wire::encode(&frame)
}

/// Splits `bytes` in two at `split` (modulo its length plus one; 0 means whole).
fn split_at(bytes: &[u8], split: u8) -> (&[u8], &[u8]) {
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
struct Clock {
    now: Instant,
}

impl Clock {
    /// Where `tick` leaves the clock, and the instant to call `handle_timeout` with.
    fn tick(&mut self, tick: &Tick, deadline: Option<Instant>) -> Instant {
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
fn link_output<E>(open: &mut BTreeSet<PeerId>, limits: &Limits, out: Output<E>) -> Option<E> {
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
fn check_history(h: &History, max_tombstones: usize) {
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
fn check_deadline(deadline: Option<Instant>, now: Instant) {
    if let Some(at) = deadline {
        assert!(
            at > now,
            "a deadline {:?} in the past after handle_timeout",
            now - at
        );
    }
}

fn tombstone_cap(setting: Option<u8>) -> usize {
    setting.map_or(DEFAULT_TOMBSTONES, |n| usize::from(n % 8))
}

// ---- hub_ops ----

/// The input of [`hub_ops`]: how the hub starts, then what happens to it.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HubCase {
    /// How the hub starts.
    pub setup: HubSetup,
    /// What happens to it.
    pub ops: Vec<HubOp>,
}

/// How the hub of [`hub_ops`] starts.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HubSetup {
    /// [`HubConfig::rng_seed`].
    pub rng_seed: u64,
    /// Admit anyone, credentials or not; otherwise only [`ALLOWED_UID`].
    pub anyone: bool,
    /// The tombstone cap: `None` for [`DEFAULT_TOMBSTONES`], else `n % 8`.
    pub tombstones: Option<u8>,
    /// A history to inherit, as a spoke that won the bind would hand it over; `None` for a hub
    /// with no past.
    pub inherited: Option<Inherited>,
}

/// What the spoke whose history a hub inherits was told by its previous hub.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Inherited {
    /// The previous hub's welcome (its term becomes the spoke's known term).
    pub welcome: Welcome,
    /// The previous hub's snapshot, [sanitized](sanitize).
    pub records: Vec<Record>,
    /// What the previous hub had seen.
    pub horizon: Horizon,
}

/// The kernel credentials a link comes up with.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Cred {
    /// None could be read.
    Missing,
    /// A process of [`ALLOWED_UID`].
    Allowed {
        /// Its pid.
        pid: u32,
    },
    /// Whatever the input says.
    Other(Credentials),
}

impl Cred {
    fn get(&self) -> Option<Credentials> {
        match *self {
            Self::Missing => None,
            Self::Allowed { pid } => Some(Credentials {
                pid,
                uid: ALLOWED_UID,
                gid: ALLOWED_UID,
            }),
            Self::Other(c) => Some(c),
        }
    }
}

/// One thing that happens to the hub of [`hub_ops`]. Links are named modulo 8.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum HubOp {
    /// A spoke connects.
    PeerUp {
        /// The link.
        peer: u8,
        /// Its credentials.
        cred: Cred,
    },
    /// A link goes down.
    PeerDown(u8),
    /// Raw bytes arrive on a link.
    Bytes {
        /// The link.
        peer: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A frame arrives on a link, [sanitized](sanitize) so that it decodes, in two pieces.
    Frame {
        /// The link.
        peer: u8,
        /// The frame.
        frame: Frame,
        /// Where to cut its bytes (see the code: modulo their length plus one).
        split: u8,
    },
    /// Time passes.
    Time(Tick),
    /// [`HubCmd::Close`].
    Close,
    /// A spoke-only input, which a hub ignores: `ConnectFailed` (`false`) or a `BindOutcome`.
    SpokeOnly(bool),
}

/// The `hub_ops` target: builds one [`Hub`] from the input's setup, applies its ops, drains
/// `poll_output` after each and checks the invariants (see the module docs). Returns the names
/// of the events the hub emitted, for tests that want to know how deep an input went.
pub fn hub_ops(data: &[u8], origin: Instant) -> Vec<&'static str> {
    match HubCase::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(case) => run_hub(&case, origin),
        Err(_) => Vec::new(),
    }
}

/// Runs one [`HubCase`]; see [`hub_ops`].
pub fn run_hub(case: &HubCase, origin: Instant) -> Vec<&'static str> {
    let mut config = HubConfig::default();
    config.rng_seed(case.setup.rng_seed);
    config.access(if case.setup.anyone {
        AccessPolicy::anyone()
    } else {
        AccessPolicy::same_uid(ALLOWED_UID)
    });
    config.max_tombstones = tombstone_cap(case.setup.tombstones);
    let seed = match &case.setup.inherited {
        Some(inherited) => inherit(inherited, config.max_tombstones, origin),
        None => HubSeed::empty(LOCAL_NODE),
    };
    let mut w = HubWatch {
        hub: Hub::new(config.clone(), seed, origin),
        config,
        clock: Clock { now: origin },
        open: BTreeSet::new(),
        events: Vec::new(),
    };
    w.check();
    for op in &case.ops {
        w.apply(op);
        w.check();
    }
    w.events
}

/// The seed a spoke hands its driver after following a hub that sent `inherited`.
fn inherit(inherited: &Inherited, max_tombstones: usize, now: Instant) -> HubSeed {
    let config = SpokeConfig {
        node_id: Some(LOCAL_NODE),
        max_tombstones,
        // The harness plays a hub the spoke trusts (links come up without credentials).
        access: AccessPolicy::anyone(),
        ..SpokeConfig::default()
    };
    let limits = config.limits.clone();
    let mut spoke = Spoke::new(config, now);
    let link = PeerId(0);
    let joined = spoke.handle(now, Input::Cmd(SpokeCmd::Join));
    assert_eq!(joined, Ok(()), "a new spoke joins");
    let up = spoke.handle(
        now,
        Input::PeerUp {
            peer: link,
            cred: None,
        },
    );
    assert_eq!(up, Ok(()), "a link is never an error");
    let mut bytes = valid_bytes(Frame::Welcome(inherited.welcome.clone()), &limits);
    bytes.extend(valid_bytes(
        Frame::Snapshot(inherited.records.clone()),
        &limits,
    ));
    bytes.extend(wire::encode(&Frame::SnapshotEnd(inherited.horizon.clone())));
    let fed = spoke.handle(
        now,
        Input::Bytes {
            peer: link,
            data: &bytes,
        },
    );
    assert_eq!(fed, Ok(()), "bytes are never an error");
    while spoke.poll_output().is_some() {}
    spoke.hub_seed()
}

/// One hub under test and what the checks know from outside it.
struct HubWatch {
    hub: Hub,
    config: HubConfig,
    clock: Clock,
    /// Links up and not closed by either side.
    open: BTreeSet<PeerId>,
    events: Vec<&'static str>,
}

impl HubWatch {
    fn apply(&mut self, op: &HubOp) {
        let now = self.clock.now;
        let result = match op {
            HubOp::PeerUp { peer: p, cred } => {
                if !self.hub.is_closed() {
                    self.open.insert(peer(*p));
                }
                let cred = cred.get();
                let peer = peer(*p);
                self.hub.handle(now, Input::PeerUp { peer, cred })
            }
            HubOp::PeerDown(p) => {
                self.open.remove(&peer(*p));
                self.hub.handle(now, Input::PeerDown(peer(*p)))
            }
            HubOp::Bytes { peer: p, data } => {
                let peer = peer(*p);
                self.hub.handle(now, Input::Bytes { peer, data })
            }
            HubOp::Frame {
                peer: p,
                frame,
                split,
            } => {
                let bytes = valid_bytes(frame.clone(), &self.config.limits);
                let (a, b) = split_at(&bytes, *split);
                let peer = peer(*p);
                let first = self.hub.handle(now, Input::Bytes { peer, data: a });
                assert_eq!(first, Ok(()), "bytes are never an error");
                self.drain();
                self.hub.handle(now, Input::Bytes { peer, data: b })
            }
            HubOp::Time(tick) => {
                let at = self.clock.tick(tick, self.hub.poll_timeout());
                self.hub.handle_timeout(at);
                check_deadline(self.hub.poll_timeout(), self.clock.now);
                Ok(())
            }
            HubOp::Close => {
                let was_closed = self.hub.is_closed();
                let r = self.hub.handle(now, Input::Cmd(HubCmd::Close));
                if was_closed {
                    assert_eq!(r, Err(crate::CmdError::Closed), "closing twice");
                    assert!(
                        self.hub.poll_output().is_none(),
                        "a refused command did something"
                    );
                }
                Ok(())
            }
            HubOp::SpokeOnly(false) => self.hub.handle(now, Input::ConnectFailed),
            HubOp::SpokeOnly(true) => self.hub.handle(now, Input::BindOutcome { won: true }),
        };
        assert_eq!(result, Ok(()), "{op:?} is no command: handle must not fail");
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(out) = self.hub.poll_output() {
            if let Some(e) = link_output(&mut self.open, &self.config.limits, out) {
                self.events.push(e.name());
            }
        }
    }

    fn check(&self) {
        let _ = self.hub.poll_timeout();
        let _ = self.hub.next_timer();
        assert_eq!(
            self.hub.peer_count(),
            self.open.len(),
            "the hub holds the links it did not close: {:?}",
            self.open
        );
        assert!(self.hub.members().count() <= self.hub.peer_count());
        check_history(self.hub.history(), self.config.max_tombstones);
    }
}

// ---- spoke_ops ----

/// The input of [`spoke_ops`]: how the spoke starts, then what happens to it.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct SpokeCase {
    /// How the spoke starts.
    pub setup: SpokeSetup,
    /// What happens to it.
    pub ops: Vec<SpokeOp>,
}

/// How the spoke of [`spoke_ops`] starts. Its node is [`LOCAL_NODE`].
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct SpokeSetup {
    /// [`SpokeConfig::rng_seed`].
    pub rng_seed: u64,
    /// [`SpokeConfig::observer`].
    pub observer: bool,
    /// The tombstone cap: `None` for [`DEFAULT_TOMBSTONES`], else `n % 8`.
    pub tombstones: Option<u8>,
}

/// A topic name or type string for a command.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Topic {
    /// [`TOPICS`]`[n % 6]`.
    Known(u8),
    /// Anything.
    Raw(String),
}

impl Topic {
    fn get(&self) -> String {
        match self {
            Self::Known(n) => TOPICS[usize::from(*n) % TOPICS.len()].to_owned(),
            Self::Raw(s) => s.clone(),
        }
    }
}

/// A command of the local application.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum CmdOp {
    /// [`SpokeCmd::Join`].
    Join,
    /// [`SpokeCmd::Leave`].
    Leave,
    /// [`SpokeCmd::Announce`].
    Announce {
        /// The topic.
        topic: Topic,
        /// The type string.
        mime: Topic,
    },
    /// [`SpokeCmd::Retract`].
    Retract(Topic),
    /// [`SpokeCmd::Subscribe`].
    Subscribe(Topic),
    /// [`SpokeCmd::Unsubscribe`].
    Unsubscribe(Topic),
}

impl CmdOp {
    fn get(&self) -> SpokeCmd {
        match self {
            Self::Join => SpokeCmd::Join,
            Self::Leave => SpokeCmd::Leave,
            Self::Announce { topic, mime } => SpokeCmd::Announce {
                topic: topic.get(),
                mime: mime.get(),
            },
            Self::Retract(t) => SpokeCmd::Retract { topic: t.get() },
            Self::Subscribe(t) => SpokeCmd::Subscribe { topic: t.get() },
            Self::Unsubscribe(t) => SpokeCmd::Unsubscribe { topic: t.get() },
        }
    }
}

/// One thing that happens to the spoke of [`spoke_ops`]. Links are named modulo 8; the hub
/// link is whichever the spoke holds (link 0 when it holds none).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum SpokeOp {
    /// A command.
    Cmd(CmdOp),
    /// The driver could not connect.
    ConnectFailed,
    /// The driver's bind attempt won or lost.
    BindOutcome(bool),
    /// A link comes up (ignored for a link already up: drivers never reuse a live id).
    PeerUp(u8),
    /// A link goes down.
    PeerDown(u8),
    /// The hub link goes down.
    HubDown,
    /// Raw bytes arrive on a link.
    Bytes {
        /// The link.
        peer: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Raw bytes arrive on the hub link.
    HubBytes(Vec<u8>),
    /// A frame arrives on the hub link, [sanitized](sanitize) so that it decodes, in two
    /// pieces.
    HubFrame {
        /// The frame.
        frame: Frame,
        /// Where to cut its bytes (modulo their length plus one).
        split: u8,
    },
    /// Time passes.
    Time(Tick),
}

/// The `spoke_ops` target: builds one [`Spoke`] from the input's setup, applies its ops, drains
/// `poll_output` after each and checks the invariants (see the module docs). Returns the names
/// of the events the spoke emitted.
pub fn spoke_ops(data: &[u8], origin: Instant) -> Vec<&'static str> {
    match SpokeCase::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(case) => run_spoke(&case, origin),
        Err(_) => Vec::new(),
    }
}

/// Runs one [`SpokeCase`]; see [`spoke_ops`].
pub fn run_spoke(case: &SpokeCase, origin: Instant) -> Vec<&'static str> {
    let config = SpokeConfig {
        rng_seed: case.setup.rng_seed,
        node_id: Some(LOCAL_NODE),
        name: "fuzz".into(),
        data_addr: "@fuzz/data".into(),
        observer: case.setup.observer,
        max_tombstones: tombstone_cap(case.setup.tombstones),
        // The harness plays a hub the spoke trusts (links come up without credentials).
        access: AccessPolicy::anyone(),
        ..SpokeConfig::default()
    };
    let mut w = SpokeWatch {
        spoke: Spoke::new(config.clone(), origin),
        config,
        clock: Clock { now: origin },
        open: BTreeSet::new(),
        replayed: View::default(),
        events: Vec::new(),
    };
    w.check();
    for op in &case.ops {
        w.apply(op);
        w.check();
    }
    w.events
}

/// One spoke under test and what the checks know from outside it.
struct SpokeWatch {
    spoke: Spoke,
    config: SpokeConfig,
    clock: Clock,
    /// Links up and not closed by either side.
    open: BTreeSet<PeerId>,
    /// Every topology event the spoke emitted, applied in order to an empty view.
    replayed: View,
    events: Vec<&'static str>,
}

impl SpokeWatch {
    fn hub_link(&self) -> PeerId {
        self.spoke.hub_peer().unwrap_or(PeerId(0))
    }

    fn apply(&mut self, op: &SpokeOp) {
        let now = self.clock.now;
        let result = match op {
            SpokeOp::Cmd(cmd) => return self.command(cmd.get()),
            SpokeOp::ConnectFailed => self.spoke.handle(now, Input::ConnectFailed),
            SpokeOp::BindOutcome(won) => self.spoke.handle(now, Input::BindOutcome { won: *won }),
            SpokeOp::PeerUp(p) => {
                if !self.open.insert(peer(*p)) {
                    return;
                }
                let peer = peer(*p);
                self.spoke.handle(now, Input::PeerUp { peer, cred: None })
            }
            SpokeOp::PeerDown(p) => {
                self.open.remove(&peer(*p));
                self.spoke.handle(now, Input::PeerDown(peer(*p)))
            }
            SpokeOp::HubDown => {
                let peer = self.hub_link();
                self.open.remove(&peer);
                self.spoke.handle(now, Input::PeerDown(peer))
            }
            SpokeOp::Bytes { peer: p, data } => {
                let peer = peer(*p);
                self.spoke.handle(now, Input::Bytes { peer, data })
            }
            SpokeOp::HubBytes(data) => {
                let peer = self.hub_link();
                self.spoke.handle(now, Input::Bytes { peer, data })
            }
            SpokeOp::HubFrame { frame, split } => {
                let bytes = valid_bytes(frame.clone(), &self.config.limits);
                let (a, b) = split_at(&bytes, *split);
                let peer = self.hub_link();
                let first = self.spoke.handle(now, Input::Bytes { peer, data: a });
                assert_eq!(first, Ok(()), "bytes are never an error");
                self.drain();
                // The first piece may have ended the link: the rest goes where it went.
                self.spoke.handle(now, Input::Bytes { peer, data: b })
            }
            SpokeOp::Time(tick) => {
                let at = self.clock.tick(tick, self.spoke.poll_timeout());
                self.spoke.handle_timeout(at);
                check_deadline(self.spoke.poll_timeout(), self.clock.now);
                Ok(())
            }
        };
        assert_eq!(result, Ok(()), "{op:?} is no command: handle must not fail");
        self.drain();
    }

    /// A command: `Err` is fine, but then nothing changed.
    fn command(&mut self, cmd: SpokeCmd) {
        let before = (
            self.spoke.state(),
            self.spoke.own_topics().clone(),
            self.spoke.view().clone(),
            self.spoke.poll_timeout(),
        );
        let name = cmd.name();
        if let Err(e) = self.spoke.handle(self.clock.now, Input::Cmd(cmd)) {
            let after = (
                self.spoke.state(),
                self.spoke.own_topics().clone(),
                self.spoke.view().clone(),
                self.spoke.poll_timeout(),
            );
            assert_eq!(before, after, "{name} refused ({e}) but changed the spoke");
            assert!(
                self.spoke.poll_output().is_none(),
                "{name} refused ({e}) but queued output"
            );
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(out) = self.spoke.poll_output() {
            let Some(e) = link_output(&mut self.open, &self.config.limits, out) else {
                continue;
            };
            if let SpokeEvt::Topology(event) = &e {
                assert!(
                    self.replayed.apply(event),
                    "{event:?} changes nothing in the view replayed from the events"
                );
            }
            self.events.push(e.name());
        }
    }

    fn check(&self) {
        let _ = self.spoke.poll_timeout();
        let _ = self.spoke.next_timer();
        let view = self.spoke.view();
        assert_eq!(
            self.replayed.summary(),
            view.summary(),
            "the events replayed do not add up to the view"
        );
        assert_eq!(self.replayed.hub(), view.hub(), "the hub, from the events");
        assert_eq!(
            self.spoke.history().view().summary(),
            view.summary(),
            "the view is not what the history adds up to"
        );
        assert_eq!(
            self.open,
            self.spoke.hub_peer().into_iter().collect(),
            "the spoke holds exactly the hub link it did not close"
        );
        assert!(self.spoke.own_topics().len() <= self.config.limits.max_topics_per_node);
        check_history(self.spoke.history(), self.config.max_tombstones);
    }
}

// ---- data_decode ----

/// The `data_decode` target: [`data_decode_bytes`], then [`data_frame_roundtrip`] on the same
/// bytes.
pub fn data_decode(data: &[u8]) {
    data_decode_bytes(data);
    data_frame_roundtrip(data);
}

/// Data-plane limits small enough that fuzzed frames and links hit them.
pub fn tiny_data_limits() -> DataLimits {
    DataLimits {
        max_name: 3,
        max_topics: 2,
        max_segments: 2,
        max_release: 2,
        max_record: 256,
        max_unverified: 2,
        max_unverified_bytes: 512,
    }
}

/// The bounds [`decode_data`] takes, `(max_name, max_release)`: the default limits' and
/// [`tiny_data_limits`]'.
fn data_bounds() -> [(usize, usize); 2] {
    [DataLimits::default(), tiny_data_limits()].map(|l| (l.max_name, l.max_release))
}

/// Raw bytes as one data-link record never panic [`decode_data`], under the default limits and
/// tiny ones.
///
/// Also: a record that decodes is within the limits, carries a payload only if it is an inline
/// message, and re-encodes (with that payload) to a record that decodes to the same frame and
/// payload. Needs nothing of `arbitrary`.
pub fn data_decode_bytes(data: &[u8]) {
    for (max_name, max_release) in data_bounds() {
        let Ok((frame, start)) = decode_data(data, max_name, max_release) else {
            continue;
        };
        assert!(
            (HEADER + 1..=data.len()).contains(&start),
            "{frame:?}: payload from {start} in a record of {} bytes",
            data.len()
        );
        if !matches!(frame, DataFrame::Inline(_)) {
            assert_eq!(start, data.len(), "{frame:?}: a payload after a frame");
        }
        assert_eq!(
            data_breach(&frame, max_name, max_release),
            None,
            "{frame:?} decodes but breaks the limits"
        );
        let payload = &data[start..];
        let again = encode_data(&frame, payload);
        let (back, at) = decode_data(&again, max_name, max_release)
            .unwrap_or_else(|e| panic!("{frame:?} re-encodes to a record that fails: {e}"));
        assert_eq!(back, frame, "a decoded frame re-encodes to itself");
        assert_eq!(&again[at..], payload, "and keeps its payload");
    }
}

/// An arbitrary [`DataFrame`], with the rest of the input as its payload, round-trips:
/// `decode_data(encode_data(frame, payload))` is `Ok((frame, start))` with `record[start..]`
/// the payload for [`DataFrame::Inline`] (and empty for any other frame) when the frame is
/// within the limits, and the typed error naming the field, its length and the limit when it
/// is not.
pub fn data_frame_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(frame) = DataFrame::arbitrary(&mut u) else {
        return;
    };
    let payload = u.take_rest();
    let bytes = encode_data(&frame, payload);
    let announced = u32::from_le_bytes(bytes[..HEADER].try_into().expect("a 4-byte header"));
    assert_eq!(
        announced as usize,
        bytes.len() - HEADER,
        "the length header"
    );
    let carried: &[u8] = match frame {
        DataFrame::Inline(_) => payload,
        _ => &[],
    };
    for (max_name, max_release) in data_bounds() {
        let got = decode_data(&bytes, max_name, max_release);
        if let Some((what, len, max)) = data_breach(&frame, max_name, max_release) {
            assert_eq!(
                got,
                Err(DecodeError::FieldTooLong { what, len, max }),
                "{frame:?} breaks the limits"
            );
            continue;
        }
        let (back, start) = got.unwrap_or_else(|e| panic!("{frame:?} does not decode: {e}"));
        assert_eq!(back, frame, "decode_data(encode_data(frame))");
        assert_eq!(&bytes[start..], carried, "the payload of {frame:?}");
    }
}

/// The limit `frame` breaks, as `(field, its length, the limit)`: an oracle written apart from
/// the codec's own check.
fn data_breach(
    frame: &DataFrame,
    max_name: usize,
    max_release: usize,
) -> Option<(&'static str, usize, usize)> {
    match frame {
        DataFrame::Terms { topic, .. } | DataFrame::Topic { topic, .. }
            if topic.is_empty() || topic.len() > max_name =>
        {
            Some(("topic name", topic.len(), max_name))
        }
        DataFrame::Release(refs) if refs.len() > max_release => {
            Some(("release", refs.len(), max_release))
        }
        _ => None,
    }
}

/// Makes `frame` satisfy `limits` (topic names cut or named, releases cut) and folds its ids:
/// node ids into `1..=8`, topic ids into `0..4`, segment ids into `0..8`, so that the frames of
/// one input talk about the same few things. A release's segment ids fold into `1..=8`, where
/// the pool of [`data_ops`] numbers its segments.
pub fn sanitize_data(frame: &mut DataFrame, limits: &DataLimits) {
    let topic = |s: &mut String| {
        while s.len() > limits.max_name {
            s.pop();
        }
        if s.is_empty() {
            s.push('a');
        }
    };
    match frame {
        DataFrame::Hello { publisher } => *publisher = fold(*publisher),
        DataFrame::Terms { topic: t, .. } => topic(t),
        DataFrame::Topic { id, topic: t } => {
            *id %= 4;
            topic(t);
        }
        DataFrame::Inline(header) | DataFrame::Fresh { header, .. } => header.topic %= 4,
        DataFrame::Pooled {
            header, segment, ..
        } => {
            header.topic %= 4;
            *segment %= 8;
        }
        DataFrame::Segment { id, .. } | DataFrame::Retire { id } => *id %= 8,
        DataFrame::Release(refs) => {
            refs.truncate(limits.max_release);
            for r in refs {
                r.segment = POOL_BASE + r.segment % 8;
            }
        }
        DataFrame::Goodbye | DataFrame::StatsRequest | DataFrame::Stats(_) => {}
    }
}

// ---- data_ops ----

/// The first id of the pool segments [`data_ops`] publishes. Fresh segments it publishes are
/// numbered from [`FRESH_BASE`], the segments it hands in with records from [`RECEIVED_BASE`]:
/// an id says whose segment it is.
const POOL_BASE: u64 = 1;
/// See [`POOL_BASE`].
const FRESH_BASE: u64 = 1 << 32;
/// See [`POOL_BASE`].
const RECEIVED_BASE: u64 = 1 << 48;

/// The input of [`data_ops`]: how the data plane starts, then what happens to it.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct DataCase {
    /// How the data plane starts.
    pub setup: DataSetup,
    /// What happens to it.
    pub ops: Vec<DataOp>,
}

/// How the data plane of [`data_ops`] starts. Its node is [`LOCAL_NODE`].
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct DataSetup {
    /// [`DataConfig::self_delivery`].
    pub self_delivery: bool,
    /// [`DataConfig::default_terms`]; `None` for [`Terms::UNKNOWN`].
    pub default_terms: Option<TermsOp>,
    /// [`tiny_data_limits`] instead of the default limits.
    pub tiny: bool,
    /// [`DataConfig::retry`], in milliseconds.
    pub retry_ms: u8,
    /// The bound of the harness's [`Pool`], in segments of [`MIN_SEGMENT`] bytes.
    pub pool_pages: u8,
}

/// A subscriber's terms, with a small depth (so that the policies apply within a few
/// messages).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermsOp {
    /// [`Terms::policy`].
    pub policy: Policy,
    /// [`Terms::depth`]: `n % 8`.
    pub depth: u8,
}

impl TermsOp {
    fn get(self) -> Terms {
        // The default bound: fuzzed segment sizes (any u64) reach it.
        Terms {
            policy: self.policy,
            depth: u32::from(self.depth % 8),
            max_payload: crate::data::DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// A payload to publish.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum PayloadOp {
    /// These bytes, in the frame.
    Inline(Vec<u8>),
    /// A new fresh segment holding this many bytes.
    Fresh(u16),
    /// `len` bytes of a segment from the harness's [`Pool`], at `offset` (modulo what fits); a
    /// fresh segment when the pool has no room.
    Pooled {
        /// The payload's length.
        len: u16,
        /// Where it starts.
        offset: u16,
    },
}

/// The link an op is about.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// The `n`-th (modulo their number) of the outgoing links in the state the op needs (see
    /// [`DataOp`]); an outgoing id the machine never handed out when there is none.
    Out(u8),
    /// The driver-numbered link `1 + n % 8`.
    In(u8),
    /// An outgoing id the machine never handed out.
    Stale(u8),
}

/// A record arriving on a link.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum RecordOp {
    /// Anything.
    Raw(Vec<u8>),
    /// A frame, [sanitized](sanitize_data) so that it decodes, with this payload if it is an
    /// inline message.
    Frame {
        /// The frame.
        frame: DataFrame,
        /// The payload.
        payload: Vec<u8>,
    },
}

/// A segment whose fd comes with a record, as the driver reports it.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    /// Its size.
    pub size: u64,
    /// Its seals.
    pub seals: Seals,
}

/// One thing that happens to the data plane of [`data_ops`]. Topics are [`Topic`]s; nodes are
/// `1 + n % 8`, node `n` at data address `@d<n>`.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum DataOp {
    /// [`DataCmd::Routes`]: node `n` subscribes to [`TOPICS`]`[t % 6]` for each `(n, t)`.
    Routes(Vec<(u8, u8)>),
    /// [`DataCmd::Advertise`].
    Advertise(Topic),
    /// [`DataCmd::Withdraw`].
    Withdraw(Topic),
    /// [`DataCmd::Take`].
    Take {
        /// The topic.
        topic: Topic,
        /// The terms.
        terms: TermsOp,
    },
    /// [`DataCmd::Leave`].
    Leave(Topic),
    /// [`DataCmd::Publish`].
    Publish {
        /// The topic.
        topic: Topic,
        /// The payload.
        payload: PayloadOp,
        /// Whether the wait for room ran out.
        expired: bool,
    },
    /// [`DataCmd::Release`] of pooled messages delivered from link `1 + n % 8` (`None`: this
    /// node's own), picked by index from those not released yet, plus one made up.
    Release {
        /// The link, `None` for [`LOCAL`].
        link: Option<u8>,
        /// Indices (modulo what is left) into the deliveries not released yet.
        picks: Vec<u8>,
        /// A slot given back as well, delivered or not.
        forged: Option<SlotRef>,
    },
    /// The pool forgets the segments free for this many milliseconds; each is
    /// [retired](DataCmd::Retire).
    Retire {
        /// How long a segment must have been free.
        idle_ms: u16,
    },
    /// A link comes up: an outgoing one being connected, or an incoming one not up (ignored if
    /// it is: drivers never reuse a live id), or a stale outgoing id.
    Up(Link),
    /// A link goes down (or a connection fails): an outgoing one connecting or up, any incoming
    /// one, or a stale outgoing id.
    Down(Link),
    /// A record arrives on a link (an outgoing one that is up), with up to three segments (more
    /// are cut).
    Record {
        /// The link.
        link: Link,
        /// The record.
        record: RecordOp,
        /// The segments whose fds come with it.
        segments: Vec<Seg>,
    },
    /// The subscriber at the end of the `n`-th outgoing link that is up gives back the pooled
    /// ranges it holds that `picks` picks (a valid [`DataFrame::Release`]).
    SubRelease {
        /// Which link.
        link: u8,
        /// Indices (modulo what is left) into the ranges it holds.
        picks: Vec<u8>,
    },
    /// A link's socket is full (an outgoing one that is up).
    Blocked(Link),
    /// A link's socket has room again (an outgoing one that is up).
    Writable(Link),
    /// The driver refused what a link sent (an outgoing one that is up).
    Rejected(Link),
    /// Time passes.
    Time(Tick),
}

/// The `data_ops` target: builds one [`DataPlane`] from the input's setup, applies its ops,
/// drains `poll_output` after each and checks the invariants (see the module docs); then takes
/// every link down and releases every delivery, and checks that nothing is left. Returns the
/// names of what the machine put out (frames by name), for tests that want to know how deep an
/// input went.
pub fn data_ops(data: &[u8], origin: Instant) -> Vec<&'static str> {
    match DataCase::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(case) => run_data(&case, origin),
        Err(_) => Vec::new(),
    }
}

/// Runs one [`DataCase`]; see [`data_ops`].
pub fn run_data(case: &DataCase, origin: Instant) -> Vec<&'static str> {
    let s = &case.setup;
    let mut config = DataConfig::new(LOCAL_NODE);
    // Links come up without credentials; the routes show every node that way.
    config.access = AccessPolicy::anyone();
    config.self_delivery = s.self_delivery;
    if let Some(terms) = s.default_terms {
        config.default_terms = terms.get();
    }
    if s.tiny {
        config.limits = tiny_data_limits();
    }
    config.retry = Duration::from_millis(u64::from(s.retry_ms));
    let mut w = DataWatch {
        dp: DataPlane::new(config.clone(), origin),
        config,
        clock: Clock { now: origin },
        pool: Pool::new(u64::from(s.pool_pages) * MIN_SEGMENT, POOL_BASE),
        sizes: BTreeMap::new(),
        destroyed: BTreeSet::new(),
        next_fresh: 0,
        next_received: 0,
        names: TOPICS.iter().map(|t| (*t).to_owned()).collect(),
        taken: BTreeSet::new(),
        seqs: BTreeMap::new(),
        published: BTreeMap::new(),
        live: BTreeSet::new(),
        released: Vec::new(),
        local_holds: Vec::new(),
        local_deliveries: 0,
        outs: BTreeMap::new(),
        ins: BTreeMap::new(),
        received: BTreeMap::new(),
        feeding: None,
        room: BTreeMap::new(),
        misbehaved: 0,
        counters: BTreeMap::new(),
        closed_now: false,
        events: Vec::new(),
    };
    // Every node is in the view from the start (see `routes`).
    let routed = w.command(DataCmd::Routes(routes(&[])));
    assert_eq!(routed, Ok(()), "routes are never refused");
    w.check();
    for op in &case.ops {
        w.closed_now = false;
        w.apply(op);
        w.check();
    }
    w.teardown();
    w.events
}

fn in_peer(n: u8) -> PeerId {
    PeerId(1 + u64::from(n % PEERS))
}

/// An outgoing link id the machine never hands out (it counts from 1).
fn stale_out(n: u8) -> PeerId {
    PeerId(OUTGOING | 1 << 40 | u64::from(n))
}

fn data_addr(node: NodeId) -> String {
    format!("@d{}", node.get())
}

/// Routes in which node `1 + n % 8` subscribes to [`TOPICS`]`[t % 6]` for each `(n, t)`, and
/// every node `1..=8` (this one too) announces every topic of [`TOPICS`], with unknown
/// credentials: links come up without them, and a publisher's `Hello` and `Topic` check out
/// (the checks that wait for the view are the unit tests' business).
fn routes(pairs: &[(u8, u8)]) -> Routes {
    let mut view = View::default();
    let seq = Seq::new(Epoch::new(1, 0), 1);
    for id in 1..=NODES {
        let id = NodeId::new(id).expect("1.. is non-zero");
        view.insert_node(NodeView {
            info: NodeInfo {
                id,
                name: format!("n{}", id.get()),
                data_addr: data_addr(id),
                pid: 0,
                uid: NodeInfo::UNKNOWN_UID,
            },
            joined: seq,
            publishes: TOPICS
                .iter()
                .map(|t| ((*t).to_owned(), ("mime".to_owned(), seq)))
                .collect(),
            subscribes: BTreeMap::new(),
        });
    }
    for &(n, t) in pairs {
        let id = NodeId::new(1 + u64::from(n) % NODES).expect("1 + x is non-zero");
        let mut node = view.node(id).cloned().expect("every node is in");
        let topic = TOPICS[usize::from(t) % TOPICS.len()];
        node.subscribes.insert(topic.to_owned(), seq);
        view.insert_node(node);
    }
    Routes::from_view(&view)
}

/// Removes the items `picks` picks (each index modulo what is left) from `list`.
fn pick<T>(list: &mut Vec<T>, picks: &[u8]) -> Vec<T> {
    let mut got = Vec::new();
    for &p in picks {
        if list.is_empty() {
            break;
        }
        got.push(list.remove(usize::from(p) % list.len()));
    }
    got
}

fn input_name(input: &DataInput<'_>) -> &'static str {
    match input {
        DataInput::Cmd(_) => "Cmd",
        DataInput::PeerUp { .. } => "PeerUp",
        DataInput::PeerDown(_) => "PeerDown",
        DataInput::Record { .. } => "Record",
        DataInput::Blocked(_) => "Blocked",
        DataInput::Writable(_) => "Writable",
        DataInput::Rejected { .. } => "Rejected",
    }
}

/// Where a link stands, as the harness (the machine's driver) sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    /// Asked for with [`DataOutput::Connect`], not up yet.
    Connecting,
    /// Up, socket with room.
    Up,
    /// Up, socket full.
    Blocked,
    /// Down, or closed by the machine.
    Closed,
}

/// A link to a subscriber, and what a correct subscriber at its end has been sent since it came
/// up.
#[derive(Debug)]
struct OutSession {
    node: NodeId,
    state: LinkState,
    hello: bool,
    goodbye: bool,
    /// Topic ids bound.
    topics: BTreeMap<u32, String>,
    last_seq: BTreeMap<String, u64>,
    /// Pool segments offered, by wire id, with their sizes.
    offered: BTreeMap<u64, u64>,
    /// Pooled ranges sent and not given back: (our segment, offset).
    held: BTreeSet<(SegmentId, u64)>,
    /// Pool segments whose offer may be queued for the link (published while it was not up,
    /// and not flushed or reset since): for a detour, see [`DataOp::Retire`]'s.
    maybe_queued: BTreeSet<SegmentId>,
}

impl OutSession {
    fn new(node: NodeId) -> Self {
        Self {
            node,
            state: LinkState::Closed,
            hello: false,
            goodbye: false,
            topics: BTreeMap::new(),
            last_seq: BTreeMap::new(),
            offered: BTreeMap::new(),
            held: BTreeSet::new(),
            maybe_queued: BTreeSet::new(),
        }
    }

    /// A new connection: the subscriber at its end knows nothing yet.
    fn restart(&mut self) {
        *self = Self {
            state: self.state,
            ..Self::new(self.node)
        };
    }
}

/// A link from a publisher, up.
#[derive(Debug, Default)]
struct InSession {
    /// Named by the first Hello it sent.
    publisher: Option<NodeId>,
    last_seq: BTreeMap<String, u64>,
    /// Pooled messages delivered from it and not released.
    delivered: Vec<SlotRef>,
}

/// A segment handed in with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Received {
    /// Not delivered or released yet; came on this link.
    Pending(PeerId),
    /// Delivered as a fresh payload: the driver's now.
    Delivered,
    /// Released.
    Released,
}

/// The record being fed to the machine.
#[derive(Debug)]
struct Feeding {
    peer: PeerId,
    bytes: Vec<u8>,
    segments: Vec<SegmentId>,
    decoded: Option<(DataFrame, usize)>,
}

/// Per (received?, topic, other end): messages, dropped, missed.
type Counters = BTreeMap<(bool, String, Option<NodeId>), [u64; 3]>;

fn counters(stats: &DataStats) -> Counters {
    let mut c = Counters::new();
    let lists = [(false, &stats.published), (true, &stats.received)];
    for (received, list) in lists {
        for t in list {
            let e = c
                .entry((received, t.topic.clone(), t.peer))
                .or_insert([0; 3]);
            e[0] += t.messages;
            e[1] += t.dropped;
            e[2] += t.missed;
        }
    }
    c
}

/// One data plane under test, the driver around it, and what the checks know from outside it.
struct DataWatch {
    dp: DataPlane,
    config: DataConfig,
    clock: Clock,
    /// The publisher's pool, as the driver keeps it: segments come back with
    /// [`DataOutput::Release`], idle ones are retired.
    pool: Pool,
    /// Every pool segment's size.
    sizes: BTreeMap<SegmentId, u64>,
    /// Pool segments retired: the driver destroyed them.
    destroyed: BTreeSet<SegmentId>,
    next_fresh: u64,
    next_received: u64,
    /// Every topic name an op used.
    names: BTreeSet<String>,
    /// Topics taken.
    taken: BTreeSet<String>,
    /// Messages published per topic: the machine's sequence numbers.
    seqs: BTreeMap<String, u64>,
    /// Every message published, by topic and sequence number.
    published: BTreeMap<(String, u64), Payload>,
    /// This node's segments published and not released by the machine.
    live: BTreeSet<SegmentId>,
    /// Those released during the current drain.
    released: Vec<SegmentId>,
    /// Pooled messages delivered locally and not released: (segment, offset).
    local_holds: Vec<(SegmentId, u64)>,
    /// Local deliveries during the current op.
    local_deliveries: usize,
    outs: BTreeMap<PeerId, OutSession>,
    ins: BTreeMap<PeerId, InSession>,
    received: BTreeMap<SegmentId, Received>,
    feeding: Option<Feeding>,
    /// Each topic's room, from the events.
    room: BTreeMap<String, Room>,
    /// `PeerMisbehaved` events.
    misbehaved: u64,
    counters: Counters,
    /// Whether a link went down or was closed during the current op.
    closed_now: bool,
    events: Vec<&'static str>,
}

impl DataWatch {
    fn apply(&mut self, op: &DataOp) {
        match op {
            DataOp::Routes(pairs) => {
                let _ = self.command(DataCmd::Routes(routes(pairs)));
            }
            DataOp::Advertise(t) => {
                self.names.insert(t.get());
                let _ = self.command(DataCmd::Advertise { topic: t.get() });
            }
            DataOp::Withdraw(t) => {
                let _ = self.command(DataCmd::Withdraw { topic: t.get() });
            }
            DataOp::Take { topic, terms } => {
                let topic = topic.get();
                let terms = terms.get();
                let cmd = DataCmd::Take {
                    topic: topic.clone(),
                    terms,
                };
                if self.command(cmd).is_ok() {
                    self.taken.insert(topic);
                }
            }
            DataOp::Leave(t) => {
                self.taken.remove(&t.get());
                let _ = self.command(DataCmd::Leave { topic: t.get() });
            }
            DataOp::Publish {
                topic,
                payload,
                expired,
            } => self.publish(topic.get(), payload, *expired),
            DataOp::Release {
                link,
                picks,
                forged,
            } => self.release(*link, picks, *forged),
            DataOp::Retire { idle_ms } => {
                let idle = Duration::from_millis(u64::from(*idle_ms));
                // Detour (open bug, see
                // `a_dropped_message_does_not_leave_its_retired_segment_offered`): an offer of a
                // pool segment stays queued when the message that needed it is dropped, and
                // goes out after the segment is retired. Nothing is retired while an offer of
                // it may be queued.
                let queued: BTreeSet<SegmentId> = self
                    .outs
                    .values()
                    .flat_map(|s| s.maybe_queued.iter().copied())
                    .collect();
                let mut trial = self.pool.clone();
                if trial
                    .trim(self.clock.now, idle)
                    .iter()
                    .any(|s| queued.contains(s))
                {
                    return;
                }
                for segment in self.pool.trim(self.clock.now, idle) {
                    assert!(
                        !self.live.contains(&segment),
                        "the pool trimmed a busy segment"
                    );
                    self.destroyed.insert(segment);
                    let retired = self.command(DataCmd::Retire { segment });
                    assert_eq!(retired, Ok(()), "retiring a segment is never refused");
                }
            }
            DataOp::Up(link) => self.up(*link),
            DataOp::Down(link) => {
                let peer = match *link {
                    Link::Out(n) => self
                        .nth_out(n, |s| s != LinkState::Closed)
                        .unwrap_or_else(|| stale_out(n)),
                    Link::In(n) => in_peer(n),
                    Link::Stale(n) => stale_out(n),
                };
                self.down(peer);
            }
            DataOp::Record {
                link,
                record,
                segments,
            } => {
                let peer = self.resolve(*link);
                let bytes = match record {
                    RecordOp::Raw(bytes) => bytes.clone(),
                    RecordOp::Frame { frame, payload } => {
                        let mut frame = frame.clone();
                        sanitize_data(&mut frame, &self.config.limits);
                        encode_data(&frame, payload)
                    }
                };
                self.feed_record(peer, bytes, segments);
            }
            DataOp::SubRelease { link, picks } => {
                let up = |s| matches!(s, LinkState::Up | LinkState::Blocked);
                let Some(peer) = self.nth_out(*link, up) else {
                    return;
                };
                let mut held: Vec<_> = self.outs[&peer].held.iter().copied().collect();
                let mut refs: Vec<SlotRef> = pick(&mut held, picks)
                    .into_iter()
                    .map(|(segment, offset)| SlotRef {
                        segment: segment.0,
                        offset,
                    })
                    .collect();
                refs.truncate(self.config.limits.max_release);
                let bytes = encode_data(&DataFrame::Release(refs), &[]);
                self.feed_record(peer, bytes, &[]);
            }
            DataOp::Blocked(link) => {
                let peer = self.resolve(*link);
                if let Some(s) = self.outs.get_mut(&peer)
                    && s.state == LinkState::Up
                {
                    s.state = LinkState::Blocked;
                }
                self.input(DataInput::Blocked(peer));
            }
            DataOp::Writable(link) => {
                let peer = self.resolve(*link);
                if let Some(s) = self.outs.get_mut(&peer)
                    && s.state == LinkState::Blocked
                {
                    s.state = LinkState::Up;
                    s.maybe_queued.clear();
                }
                self.input(DataInput::Writable(peer));
            }
            DataOp::Rejected(link) => {
                let peer = self.resolve(*link);
                let reason = "not a usable memfd".to_owned();
                self.input(DataInput::Rejected { peer, reason });
            }
            DataOp::Time(tick) => {
                let at = self.clock.tick(tick, self.dp.poll_timeout());
                self.dp.handle_timeout(at);
                self.drain();
                check_deadline(self.dp.poll_timeout(), self.clock.now);
            }
        }
    }

    /// The `n`-th (modulo) outgoing link whose state `keep` accepts.
    fn nth_out(&self, n: u8, keep: impl Fn(LinkState) -> bool) -> Option<PeerId> {
        let links: Vec<PeerId> = self
            .outs
            .iter()
            .filter(|(_, s)| keep(s.state))
            .map(|(p, _)| *p)
            .collect();
        (!links.is_empty()).then(|| links[usize::from(n) % links.len()])
    }

    /// The link a record, `Blocked`, `Writable` or `Rejected` is about.
    fn resolve(&self, link: Link) -> PeerId {
        match link {
            Link::Out(n) => self
                .nth_out(n, |s| matches!(s, LinkState::Up | LinkState::Blocked))
                .unwrap_or_else(|| stale_out(n)),
            Link::In(n) => in_peer(n),
            Link::Stale(n) => stale_out(n),
        }
    }

    /// A command: `Err` is fine, but then nothing changed.
    fn command(&mut self, cmd: DataCmd) -> Result<(), crate::CmdError> {
        let before = self.snapshot();
        let name = format!("{cmd:?}");
        let result = self.dp.handle(self.clock.now, DataInput::Cmd(cmd));
        if let Err(e) = &result {
            assert!(
                self.dp.poll_output().is_none(),
                "{name} refused ({e}) but queued output"
            );
            assert_eq!(
                before,
                self.snapshot(),
                "{name} refused ({e}) but changed the machine"
            );
        }
        self.drain();
        result
    }

    fn snapshot(&self) -> (DataStats, usize, Option<Instant>, Vec<NodeId>) {
        (
            self.dp.stats(),
            self.dp.segment_refs(),
            self.dp.poll_timeout(),
            self.dp.subscribers().collect(),
        )
    }

    /// Anything but a command: never an error.
    fn input(&mut self, input: DataInput<'_>) {
        let name = input_name(&input);
        let result = self.dp.handle(self.clock.now, input);
        assert_eq!(result, Ok(()), "{name} is no command: handle must not fail");
        self.drain();
    }

    fn publish(&mut self, topic: String, op: &PayloadOp, expired: bool) {
        let mut fresh = |len: u16| {
            self.next_fresh += 1;
            Payload::Fresh {
                segment: SegmentId(FRESH_BASE + self.next_fresh),
                len: u64::from(len),
            }
        };
        let payload = match op {
            PayloadOp::Inline(bytes) => Payload::Inline(bytes.clone()),
            PayloadOp::Fresh(len) => fresh(*len),
            PayloadOp::Pooled { len, offset } => match self.pool.alloc(u64::from(*len)) {
                Some(slot) => {
                    let len = u64::from(*len);
                    self.sizes.insert(slot.segment, slot.size);
                    assert!(
                        !self.live.contains(&slot.segment),
                        "the pool handed out a segment the machine refers to"
                    );
                    Payload::Pooled {
                        segment: slot.segment,
                        size: slot.size,
                        offset: u64::from(*offset) % (slot.size - len + 1),
                        len,
                    }
                }
                None => fresh(*len),
            },
        };
        let seq = self.seqs.get(&topic).copied().unwrap_or(0) + 1;
        let key = (topic.clone(), seq);
        self.published.insert(key.clone(), payload.clone());
        if let Some(seg) = payload.segment() {
            self.live.insert(seg);
        }
        self.local_deliveries = 0;
        let cmd = DataCmd::Publish {
            topic: topic.clone(),
            payload: payload.clone(),
            expired,
        };
        if self.command(cmd).is_ok() {
            self.seqs.insert(topic.clone(), seq);
            if let Payload::Pooled { segment, .. } = payload {
                self.may_queue(segment);
            }
            let local = self.config.self_delivery && self.taken.contains(&topic);
            assert_eq!(
                self.local_deliveries,
                usize::from(local),
                "local deliveries of one message"
            );
        } else {
            // Refused: the segment is the driver's again.
            self.published.remove(&key);
            if let Some(seg) = payload.segment() {
                self.live.remove(&seg);
                if self.pool.contains(seg) {
                    self.pool.free(seg, self.clock.now);
                }
            }
        }
    }

    /// Notes that an offer of `segment` may be queued on the machine's links that are not up.
    fn may_queue(&mut self, segment: SegmentId) {
        for node in self.dp.subscribers().collect::<Vec<_>>() {
            // The machine's link to a node is the latest the harness saw asked for.
            let current = self.outs.iter_mut().rev().find(|(_, s)| s.node == node);
            if let Some((_, s)) = current
                && s.state != LinkState::Up
            {
                s.maybe_queued.insert(segment);
            }
        }
    }

    fn release(&mut self, link: Option<u8>, picks: &[u8], forged: Option<SlotRef>) {
        let (peer, mut slots) = match link {
            None => {
                let slots: Vec<SlotRef> = pick(&mut self.local_holds, picks)
                    .into_iter()
                    .map(|(s, offset)| SlotRef {
                        segment: s.0,
                        offset,
                    })
                    .collect();
                // A made-up slot that names a local delivery releases it.
                if let Some(f) = forged
                    && let Some(i) = self
                        .local_holds
                        .iter()
                        .position(|&(s, o)| (s.0, o) == (f.segment, f.offset))
                {
                    self.local_holds.remove(i);
                }
                (LOCAL, slots)
            }
            Some(n) => {
                let peer = in_peer(n);
                let slots = self
                    .ins
                    .get_mut(&peer)
                    .map(|s| pick(&mut s.delivered, picks))
                    .unwrap_or_default();
                (peer, slots)
            }
        };
        slots.extend(forged);
        let released = self.command(DataCmd::Release { peer, slots });
        assert_eq!(released, Ok(()), "a release is never refused");
    }

    fn up(&mut self, link: Link) {
        let peer = match link {
            Link::Out(n) => match self.nth_out(n, |s| s == LinkState::Connecting) {
                Some(peer) => {
                    let s = self.outs.get_mut(&peer).expect("listed");
                    s.restart();
                    s.state = LinkState::Up;
                    peer
                }
                None => stale_out(n),
            },
            Link::In(n) => {
                let peer = in_peer(n);
                if self.ins.contains_key(&peer) {
                    return;
                }
                self.ins.insert(peer, InSession::default());
                peer
            }
            Link::Stale(n) => stale_out(n),
        };
        self.input(DataInput::PeerUp { peer, cred: None });
    }

    fn down(&mut self, peer: PeerId) {
        self.close(peer);
        self.input(DataInput::PeerDown(peer));
    }

    /// The link is gone (down, or closed by the machine): nothing more may go out on it.
    fn close(&mut self, peer: PeerId) {
        self.closed_now = true;
        if let Some(s) = self.outs.get_mut(&peer) {
            s.state = LinkState::Closed;
            s.held.clear();
            s.maybe_queued.clear();
        }
        self.ins.remove(&peer);
    }

    fn feed_record(&mut self, peer: PeerId, bytes: Vec<u8>, segments: &[Seg]) {
        let limits = &self.config.limits;
        let decoded = decode_data(&bytes, limits.max_name, limits.max_release).ok();
        // A subscriber's release: the machine lets go of those ranges (of all of them if it
        // refuses the record, as it then closes the link).
        if let (Some(s), Some((DataFrame::Release(refs), _))) = (self.outs.get_mut(&peer), &decoded)
        {
            for r in refs {
                s.held.remove(&(SegmentId(r.segment), r.offset));
            }
        }
        // A publisher's first hello names the publisher of its link.
        if let (Some(s), Some((DataFrame::Hello { publisher }, _))) =
            (self.ins.get_mut(&peer), &decoded)
            && s.publisher.is_none()
            && segments.is_empty()
        {
            s.publisher = Some(*publisher);
        }
        let handed: Vec<ReceivedSegment> = segments
            .iter()
            .take(3)
            .map(|s| {
                self.next_received += 1;
                let segment = SegmentId(RECEIVED_BASE + self.next_received);
                self.received.insert(segment, Received::Pending(peer));
                ReceivedSegment {
                    segment,
                    size: s.size,
                    seals: s.seals,
                }
            })
            .collect();
        // Only a pool segment's offer from a publisher may be kept for later.
        let offer = handed.len() == 1
            && self.ins.contains_key(&peer)
            && matches!(decoded, Some((DataFrame::Segment { .. }, _)));
        let name = decoded.as_ref().map_or("undecodable", |(f, _)| f.name());
        let feeding = self.feeding.insert(Feeding {
            peer,
            bytes,
            segments: handed.iter().map(|s| s.segment).collect(),
            decoded,
        });
        let result = self.dp.handle(
            self.clock.now,
            DataInput::Record {
                peer,
                data: &feeding.bytes,
                segments: &handed,
            },
        );
        assert_eq!(result, Ok(()), "a record is never an error");
        self.drain();
        let feeding = self.feeding.take().expect("set above");
        // A record that waits for the view to show what its publisher claims is held (and
        // released with its link at the latest).
        if !offer && !self.dp.is_unverified(peer) {
            for seg in feeding.segments {
                assert_ne!(
                    self.received[&seg],
                    Received::Pending(peer),
                    "{seg:?}, handed in with a {name} record on {peer}, neither delivered nor \
                     released"
                );
            }
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.dp.poll_output() {
            match out {
                DataOutput::Connect { peer, addr } => self.on_connect(peer, &addr),
                DataOutput::Transmit {
                    peer,
                    bytes,
                    attach,
                } => self.on_transmit(peer, &bytes, attach),
                DataOutput::Disconnect(peer) => {
                    self.events.push("Disconnect");
                    self.close(peer);
                }
                DataOutput::Deliver(d) => self.on_deliver(d),
                DataOutput::Release(seg) => self.on_release(seg),
                DataOutput::Evt(e) => match e {
                    DataEvt::Room { topic, room } => {
                        self.events.push("Room");
                        match room {
                            Some(r) => self.room.insert(topic, r),
                            None => self.room.remove(&topic),
                        };
                    }
                    DataEvt::PeerMisbehaved { .. } => {
                        self.events.push("PeerMisbehaved");
                        self.misbehaved += 1;
                    }
                    DataEvt::PeerRefused { .. } => {
                        panic!("a link refused, although the policy allows anyone: {e:?}")
                    }
                    DataEvt::Subscriber { node, up } => {
                        self.events.push("Subscriber");
                        assert!(
                            self.outs.values().any(|s| s.node == node),
                            "Subscriber {{ {node}, {up} }} of a node it never connected to"
                        );
                    }
                },
            }
        }
        for seg in std::mem::take(&mut self.released) {
            if let Some((peer, _)) = self
                .outs
                .iter()
                .find(|(_, s)| s.held.iter().any(|(g, _)| *g == seg))
            {
                panic!("released {seg:?} while the subscriber on {peer} holds a range of it");
            }
        }
    }

    fn on_connect(&mut self, peer: PeerId, addr: &str) {
        self.events.push("Connect");
        assert_ne!(
            peer.0 & OUTGOING,
            0,
            "Connect for {peer}, not an outgoing id"
        );
        let node = addr
            .strip_prefix("@d")
            .and_then(|n| n.parse().ok())
            .and_then(NodeId::new)
            .unwrap_or_else(|| panic!("Connect to {addr}, no node's data address"));
        assert_ne!(node, self.config.node, "a data link to itself");
        let s = self
            .outs
            .entry(peer)
            .or_insert_with(|| OutSession::new(node));
        assert_eq!(s.node, node, "link {peer} reused for another node");
        assert_eq!(
            s.state,
            LinkState::Closed,
            "Connect for {peer}, which is not closed"
        );
        s.state = LinkState::Connecting;
    }

    fn on_transmit(&mut self, peer: PeerId, bytes: &[u8], attach: Option<SegmentId>) {
        let limits = &self.config.limits;
        let (frame, start) = decode_data(bytes, limits.max_name, limits.max_release)
            .unwrap_or_else(|e| panic!("a transmit to {peer} does not decode: {e} ({bytes:02x?})"));
        self.events.push(frame.name());
        let fd = matches!(frame, DataFrame::Fresh { .. } | DataFrame::Segment { .. });
        assert_eq!(
            attach.is_some(),
            fd,
            "{} to {peer} with attach {attach:?}",
            frame.name()
        );
        if let Some(seg) = attach {
            assert!(
                !self.received.contains_key(&seg),
                "attaches {seg:?}, a segment it received"
            );
            assert!(
                seg.0 >= FRESH_BASE || self.sizes.contains_key(&seg),
                "attaches {seg:?}, which the harness never published"
            );
            assert!(
                !self.destroyed.contains(&seg),
                "attaches {seg:?}, a pool segment retired (destroyed by the driver) before"
            );
        }
        if peer.0 & OUTGOING == 0 {
            assert!(
                self.ins.contains_key(&peer),
                "{} to {peer}, a link from a publisher that is not up",
                frame.name()
            );
            assert!(
                matches!(
                    frame,
                    DataFrame::Terms { .. } | DataFrame::Release(_) | DataFrame::Stats(_)
                ),
                "{} to a publisher",
                frame.name()
            );
            return;
        }
        self.sent_to_subscriber(peer, frame, &bytes[start..], attach);
    }

    /// Checks a record to a subscriber the way a correct subscriber reads it.
    fn sent_to_subscriber(
        &mut self,
        peer: PeerId,
        frame: DataFrame,
        payload: &[u8],
        attach: Option<SegmentId>,
    ) {
        let name = frame.name();
        let Some(s) = self.outs.get_mut(&peer) else {
            panic!("{name} to {peer}, a link it never asked for");
        };
        assert!(
            matches!(s.state, LinkState::Up | LinkState::Blocked),
            "{name} to {peer}, which is {:?}",
            s.state
        );
        assert!(!s.goodbye, "{name} to {peer} after its Goodbye");
        if !s.hello {
            assert_eq!(
                frame,
                DataFrame::Hello {
                    publisher: self.config.node
                },
                "the first record to a subscriber"
            );
            s.hello = true;
            return;
        }
        match frame {
            DataFrame::Topic { id, topic } => {
                assert!(
                    s.topics.insert(id, topic).is_none(),
                    "topic id {id} bound twice on {peer}"
                );
            }
            DataFrame::Inline(header)
            | DataFrame::Fresh { header, .. }
            | DataFrame::Pooled { header, .. } => {
                let Some(topic) = s.topics.get(&header.topic).cloned() else {
                    panic!("{name} of unbound topic id {} on {peer}", header.topic);
                };
                let last = s.last_seq.insert(topic.clone(), header.seq);
                assert!(
                    last.is_none_or(|l| l < header.seq),
                    "{topic}: message {} after {last:?} on {peer}",
                    header.seq
                );
                let Some(sent) = self.published.get(&(topic.clone(), header.seq)) else {
                    panic!("{topic}: message {} was never published", header.seq);
                };
                match (&frame, sent) {
                    (DataFrame::Inline(_), Payload::Inline(p)) => {
                        assert_eq!(payload, &p[..], "{topic} #{}: the payload", header.seq);
                    }
                    (DataFrame::Fresh { len, .. }, Payload::Fresh { segment, len: l }) => {
                        assert_eq!((attach, len), (Some(*segment), l), "{topic}: fresh");
                        assert!(self.live.contains(segment), "a released fresh segment sent");
                    }
                    (
                        DataFrame::Pooled {
                            segment,
                            offset,
                            len,
                            ..
                        },
                        Payload::Pooled {
                            segment: seg,
                            offset: o,
                            len: l,
                            ..
                        },
                    ) => {
                        assert_eq!((*segment, offset, len), (seg.0, o, l), "{topic}: pooled");
                        let Some(&size) = s.offered.get(segment) else {
                            panic!("a pooled message in segment {segment}, not offered on {peer}");
                        };
                        assert!(
                            offset.checked_add(*len).is_some_and(|end| end <= size),
                            "range {offset}+{len} outside the {size} bytes offered"
                        );
                        assert!(
                            self.live.contains(seg),
                            "a pooled message in {seg:?}, which it released"
                        );
                        assert!(
                            s.held.insert((*seg, *offset)),
                            "{seg:?} at {offset} sent twice to {peer}"
                        );
                    }
                    (f, p) => panic!("{p:?} sent as {f:?}"),
                }
            }
            DataFrame::Segment { id, size } => {
                assert_eq!(attach, Some(SegmentId(id)), "a segment offer's fd");
                assert_eq!(
                    self.sizes.get(&SegmentId(id)),
                    Some(&size),
                    "segment {id}'s size"
                );
                assert!(
                    s.offered.insert(id, size).is_none(),
                    "segment {id} offered twice on {peer}"
                );
            }
            DataFrame::Retire { id } => {
                assert!(
                    s.offered.remove(&id).is_some(),
                    "retire of segment {id}, not offered on {peer}"
                );
            }
            DataFrame::Goodbye => s.goodbye = true,
            other => panic!("{} to a subscriber", other.name()),
        }
    }

    fn on_deliver(&mut self, d: Delivery) {
        self.events.push("Deliver");
        let topic = d.topic.to_string();
        assert!(
            self.taken.contains(&topic),
            "delivered {topic}, which this node does not take"
        );
        if d.peer == LOCAL {
            assert!(self.config.self_delivery, "a local delivery, not enabled");
            assert_eq!(
                d.publisher, self.config.node,
                "a local delivery's publisher"
            );
            self.local_deliveries += 1;
            let Some(sent) = self.published.get(&(topic.clone(), d.seq)) else {
                panic!("{topic}: local delivery of {}, never published", d.seq);
            };
            match (&d.payload, sent) {
                (Delivered::Inline(b), Payload::Inline(p)) => assert_eq!(b, p),
                (Delivered::Fresh { segment, len }, Payload::Fresh { segment: s, len: l }) => {
                    assert_eq!((segment, len), (s, l));
                }
                (
                    Delivered::Pooled {
                        segment,
                        offset,
                        len,
                        slot,
                    },
                    Payload::Pooled {
                        segment: s,
                        offset: o,
                        len: l,
                        ..
                    },
                ) => {
                    assert_eq!((segment, offset, len), (s, o, l));
                    assert_eq!((slot.segment, slot.offset), (s.0, *o), "its slot");
                    self.local_holds.push((*s, *o));
                }
                (got, p) => panic!("{p:?} delivered locally as {got:?}"),
            }
            return;
        }
        let Some(f) = &self.feeding else {
            panic!("a delivery from {} with no record", d.peer);
        };
        assert_eq!(
            d.peer, f.peer,
            "a delivery from another link than the record's"
        );
        let Some(s) = self.ins.get_mut(&d.peer) else {
            panic!(
                "a delivery from {}, not an open link from a publisher",
                d.peer
            );
        };
        assert_eq!(
            Some(d.publisher),
            s.publisher,
            "the publisher its Hello named"
        );
        let last = s.last_seq.insert(topic.clone(), d.seq);
        assert!(
            last.is_none_or(|l| l < d.seq),
            "{topic}: delivered {} after {last:?}",
            d.seq
        );
        let Some((frame, start)) = &f.decoded else {
            panic!("a delivery from an undecodable record");
        };
        match (d.payload, frame) {
            (Delivered::Inline(b), DataFrame::Inline(h)) if h.seq == d.seq => {
                assert_eq!(b, f.bytes[*start..], "an inline payload");
            }
            (Delivered::Fresh { segment, len }, DataFrame::Fresh { header, len: l })
                if header.seq == d.seq && len == *l =>
            {
                assert_eq!(f.segments, [segment], "a fresh delivery's segment");
                let r = self.received.get_mut(&segment).expect("handed in");
                assert_eq!(*r, Received::Pending(d.peer), "{segment:?} delivered");
                *r = Received::Delivered;
            }
            (
                Delivered::Pooled {
                    segment,
                    offset,
                    len,
                    slot,
                },
                DataFrame::Pooled {
                    header,
                    segment: wire,
                    offset: o,
                    len: l,
                },
            ) if header.seq == d.seq => {
                assert_eq!(
                    (slot.segment, slot.offset, offset, len),
                    (*wire, *o, *o, *l)
                );
                assert_eq!(
                    self.received.get(&segment),
                    Some(&Received::Pending(d.peer)),
                    "a pooled delivery in {segment:?}: not a segment its link offered and holds"
                );
                s.delivered.push(slot);
            }
            (got, frame) => panic!("{frame:?} delivered as {got:?}"),
        }
    }

    fn on_release(&mut self, seg: SegmentId) {
        self.events.push("Release");
        if let Some(r) = self.received.get_mut(&seg) {
            match *r {
                Received::Pending(_) => *r = Received::Released,
                Received::Delivered => panic!("released {seg:?}, a fresh segment it delivered"),
                Received::Released => panic!("released {seg:?} twice"),
            }
            return;
        }
        assert!(
            self.live.remove(&seg),
            "released {seg:?}, which it does not hold (never published, or released already)"
        );
        assert!(
            !self.local_holds.iter().any(|(g, _)| *g == seg),
            "released {seg:?} while a local delivery in it is not released"
        );
        // Whether a subscriber still holds a range of it is checked once the outputs are
        // drained: a link the machine drops releases what it held before its `Disconnect`.
        self.released.push(seg);
        if self.pool.contains(seg) {
            assert!(self.pool.free(seg, self.clock.now), "a pool segment");
        }
    }

    fn check(&mut self) {
        let _ = self.dp.poll_timeout();
        for (seg, r) in &self.received {
            if let Received::Pending(peer) = r {
                // A publisher's link that went down while its records waited for the view
                // keeps them until the view vouches for them or their deadline passes.
                assert!(
                    self.ins.contains_key(peer) || self.dp.is_unverified(*peer),
                    "{seg:?}, handed in on {peer}, neither delivered nor released when the \
                     link went"
                );
            }
        }
        // Each segment published and not released is referenced by its ranges held (remotely
        // and locally), and by at most one queued message per link that is not up.
        let refs = self.dp.segment_refs();
        let links = self.dp.subscribers().count();
        let up = self
            .outs
            .values()
            .filter(|s| s.state == LinkState::Up)
            .count();
        assert!(up <= links, "{up} links up, {links} held");
        let queues = links - up;
        let (mut lower, mut upper) = (0, 0);
        for seg in &self.live {
            let held = self
                .outs
                .values()
                .map(|s| s.held.iter().filter(|(g, _)| g == seg).count())
                .sum::<usize>()
                + self.local_holds.iter().filter(|(g, _)| g == seg).count();
            lower += held.max(1);
            upper += held + queues;
        }
        assert!(
            (lower..=upper).contains(&refs),
            "segment_refs() is {refs}, expected {lower}..={upper} for {:?}",
            self.live
        );
        let pooled = self.live.iter().filter(|s| self.pool.contains(**s)).count();
        assert_eq!(self.pool.busy(), pooled, "pool segments in use");
        let stats = self.dp.stats();
        assert_eq!(
            stats.rejected, self.misbehaved,
            "rejected counts the PeerMisbehaved events"
        );
        assert!(
            stats.guard.oversized <= stats.rejected,
            "an oversized payload is a violation too"
        );
        let now = counters(&stats);
        if !self.closed_now {
            for (key, before) in &self.counters {
                let Some(after) = now.get(key) else {
                    panic!("the counters of {key:?} vanished with no link gone");
                };
                assert!(
                    before.iter().zip(after).all(|(b, a)| a >= b),
                    "the counters of {key:?} went from {before:?} to {after:?}"
                );
            }
        }
        self.counters = now;
        for topic in self.names.iter().chain(self.room.keys()) {
            assert_eq!(
                self.dp.room(topic),
                self.room.get(topic).copied(),
                "the room of {topic:?}, and its last Room event"
            );
        }
    }

    /// Every link goes, every delivery is released: nothing may be left.
    fn teardown(&mut self) {
        self.closed_now = false;
        let routed = self.command(DataCmd::Routes(Routes::default()));
        assert_eq!(routed, Ok(()), "routes are never refused");
        let ins: Vec<PeerId> = self.ins.keys().copied().collect();
        for peer in ins {
            self.down(peer);
        }
        // Records held from links that went down wait for their deadline: let it pass.
        let end = self.clock.now + self.config.verify_timeout + Duration::from_secs(1);
        while self.dp.has_held() {
            match self.dp.poll_timeout() {
                Some(at) if at <= end => {
                    self.clock.now = self.clock.now.max(at);
                    self.dp.handle_timeout(self.clock.now);
                    self.drain();
                }
                _ => break,
            }
        }
        assert!(!self.dp.has_held(), "records held past their deadline");
        let slots: Vec<SlotRef> = self
            .local_holds
            .drain(..)
            .map(|(s, offset)| SlotRef {
                segment: s.0,
                offset,
            })
            .collect();
        let released = self.command(DataCmd::Release { peer: LOCAL, slots });
        assert_eq!(released, Ok(()), "a release is never refused");
        self.check();
        assert_eq!(self.dp.subscribers().count(), 0, "links to nobody's routes");
        assert_eq!(
            self.dp.segment_refs(),
            0,
            "references left with every link gone and every delivery released"
        );
        assert!(self.live.is_empty(), "never released: {:?}", self.live);
        assert_eq!(self.pool.busy(), 0, "pool segments never given back");
    }
}

// ---- doc_bytes ----

/// The `doc_bytes` target: `data` cut into document messages (each a length byte, then that
/// many bytes), fed both as a replica's messages to a serving [`DocHost`](crate::doc::DocHost)
/// and as a host's messages to a [`DocReplica`](crate::doc::DocReplica) with a document open
/// and a patch pending. Neither panics, whatever the bytes; and a message that decodes
/// re-encodes to bytes that decode to the same message.
pub fn doc_bytes(data: &[u8], now: Instant) {
    use crate::doc::{
        DocHost, DocLimits, DocReplica, HostConfig, HostInput, ReplicaConfig, ReplicaInput,
    };
    use crate::wire::{decode_doc, encode_doc};
    let limits = DocLimits::default();
    let node = NodeId::new(7).expect("non-zero");
    let mut host = DocHost::new(HostConfig::default(), now);
    let _ = host.handle(now, HostInput::Settled);
    let mut replica = DocReplica::new(ReplicaConfig::new(node), now);
    let _ = replica.handle(now, ReplicaInput::HubUp);
    let _ = replica.open(now, "d", serde_json::json!({"n": 0, "a": [1, 2]}));
    let _ = replica.patch(now, "d", &serde_json::json!({"$inc": {"n": 1}}), 0);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (msg, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        if let Ok(m) = decode_doc(msg, &limits) {
            let again = decode_doc(&encode_doc(&m), &limits);
            assert_eq!(
                again.as_ref(),
                Ok(&m),
                "a decoded message re-encodes to itself"
            );
        }
        let input = HostInput::Bytes {
            peer: PeerId(1),
            node,
            data: msg,
        };
        let _ = host.handle(now, input);
        let _ = replica.handle(now, ReplicaInput::Bytes(msg));
        while host.poll_output().is_some() {}
        while replica.poll_output().is_some() {}
    }
}
