//! What the fuzz targets do with their input, shared by `fuzz/` and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so that a corpus file means the same thing in both.
//!
//! **Not a stable API.** Compiled only with the `arbitrary` feature, for this crate's own fuzzers
//! and tests; it changes whenever they need it to, in any release.
//!
//! Each target is a function of the raw input bytes: [`decode`], [`hub_ops`], [`spoke_ops`]. A
//! violated invariant panics, which is what a fuzzer reports as a crash. The op targets read
//! their input with [`Arbitrary::arbitrary_take_rest`], exactly as `libfuzzer-sys` does for a
//! typed target, and take the clock's origin as an argument: this crate reads no clock.
//!
//! Checked after every op, from outside the machine:
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
//! Every crash found goes into `tests/malformed_input.rs` as a test of its own (`#[ignore]`d
//! until fixed). While one is open, the harness may steer around it so that the fuzzers look
//! for others; say so here and at the detour, and drop the detour with the fix. None is open.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::error::DecodeError;
use crate::history::{DEFAULT_TOMBSTONES, History, Horizon};
use crate::hub::{Hub, HubCmd, HubConfig, HubSeed};
use crate::ids::{Credentials, NodeId, PeerId};
use crate::machine::{AccessPolicy, Input, Output};
use crate::spoke::{Spoke, SpokeCmd, SpokeConfig, SpokeEvt};
use crate::topology::{Change, Record, View};
use crate::wire::{self, Deframer, Frame, Limits, OwnChange, Welcome};

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
        | Frame::Horizon(_) => true,
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
        Frame::IntroEnd
        | Frame::Heartbeat
        | Frame::Goodbye(_)
        | Frame::SnapshotEnd(_)
        | Frame::Horizon(_) => {}
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
            match out {
                Output::Transmit(t) => {
                    assert!(
                        self.open.contains(&t.peer),
                        "transmit to {} after its link closed",
                        t.peer
                    );
                    check_transmit(&t.bytes, &self.config.limits);
                }
                Output::Disconnect(p) => {
                    assert!(self.open.remove(&p), "Disconnect({p}) of a link not open");
                }
                Output::Evt(e) => self.events.push(e.name()),
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
            match out {
                Output::Transmit(t) => {
                    assert!(
                        self.open.contains(&t.peer),
                        "transmit to {} after its link closed",
                        t.peer
                    );
                    check_transmit(&t.bytes, &self.config.limits);
                }
                Output::Disconnect(p) => {
                    assert!(self.open.remove(&p), "Disconnect({p}) of a link not open");
                }
                Output::Evt(e) => {
                    if let SpokeEvt::Topology(event) = &e {
                        assert!(
                            self.replayed.apply(event),
                            "{event:?} changes nothing in the view replayed from the events"
                        );
                    }
                    self.events.push(e.name());
                }
            }
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
