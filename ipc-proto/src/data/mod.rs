//! The data plane: messages from publishers to subscribers, point to point, never through the
//! hub.
//!
//! A node's [`DataPlane`] opens one data link to each node that subscribes to a topic this node
//! publishes (at that node's data address, from the topology), and accepts the links of the
//! publishers of the topics it subscribes to. Over a link the publisher binds topic ids, offers
//! pool segments once, and sends messages whose payload is inline, in a fresh sealed memfd, or
//! at a range of a pool segment ([`wire::DataFrame`](crate::wire::DataFrame)); the subscriber
//! states its terms per topic (policy and queue depth) and gives pooled ranges back.
//!
//! Like the topology machines, this one touches no memory segment, fd or socket: the driver
//! creates and maps segments and names them by [`SegmentId`]; the machine decides what to send
//! where, what to drop, and what to deliver, and tells the driver when a segment is no longer
//! referenced ([`DataOutput::Release`]).
//!
//! # Flow control
//! Per subscriber and topic, a message is *in flight* from the moment it is published until the
//! subscriber has it: for inline and fresh payloads, until it is handed to the driver's socket;
//! for pooled payloads, until the subscriber releases the range. When `depth` messages are in
//! flight the subscriber's [`Policy`] applies: `DropNewest` drops the new message for it,
//! `DropOldest` drops its oldest message still queued here (or the new one when none is
//! queued), and `Block` holds the publisher back: the machine reports each topic's room, the
//! fewest messages any of its `Block` subscribers can still take ([`DataEvt::Room`]); the driver
//! lets publishers take that many credits and makes them wait for more, up to the subscriber's
//! timeout, before publishing with `expired` set, which drops the message for the subscribers
//! still full.
//! The subscriber applies its policy again to its own queues; with `Block` it stops reading
//! the link while the queue is full, which fills the socket, then the publisher's queue.

mod options;
mod pool;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, trace};

use crate::error::CmdError;
use crate::ids::{Credentials, NodeId, PeerId};
use crate::machine::AccessPolicy;
use crate::topology::{NodeInfo, View};
use crate::wire::{
    DataFrame, DataStats, GuardStats, MessageHeader, Policy, SlotRef, TopicStats, WitnessStats,
    decode_data, encode_data,
};

pub use options::{
    DEFAULT_INLINE_MAX, DEFAULT_MAX_PAYLOAD, PublisherOptions, SendMode, SubscriptionOptions,
};
pub use pool::{MIN_SEGMENT, Pool, PoolSlot};

#[cfg(test)]
mod tests;

/// A memory segment as the driver knows it: a fresh memfd, a pool segment, or a segment
/// received from a publisher.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SegmentId(pub u64);

/// Links this machine opens (to subscribers) carry ids with this bit set; the driver numbers
/// the links it accepts (from publishers) below it.
pub const OUTGOING: u64 = 1 << 63;

/// The seals a received memfd carries, as the driver read them (`F_GET_SEALS`).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Seals {
    /// `F_SEAL_SHRINK`.
    pub shrink: bool,
    /// `F_SEAL_GROW`.
    pub grow: bool,
    /// `F_SEAL_WRITE`.
    pub write: bool,
    /// `F_SEAL_FUTURE_WRITE`.
    pub future_write: bool,
}

/// A segment received with a record: verified by the driver to be a memfd that cannot shrink,
/// so that mapping it is safe, and registered under `segment`.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct ReceivedSegment {
    /// The driver's handle.
    pub segment: SegmentId,
    /// Its size (`fstat`).
    pub size: u64,
    /// Its seals.
    pub seals: Seals,
}

/// A payload to publish.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Payload {
    /// The bytes, sent in the frame.
    Inline(Vec<u8>),
    /// A fresh memfd holding the payload, sealed against writing, growing and shrinking.
    Fresh {
        /// The segment.
        segment: SegmentId,
        /// The payload's length.
        len: u64,
    },
    /// A range of a pool segment (sealed against growing, shrinking and new writers).
    Pooled {
        /// The segment.
        segment: SegmentId,
        /// The segment's size.
        size: u64,
        /// Where the payload starts.
        offset: u64,
        /// The payload's length.
        len: u64,
    },
}

impl Payload {
    /// The segment holding the payload, if any.
    pub fn segment(&self) -> Option<SegmentId> {
        match self {
            Self::Inline(_) => None,
            Self::Fresh { segment, .. } | Self::Pooled { segment, .. } => Some(*segment),
        }
    }

    /// The payload's length.
    pub fn len(&self) -> u64 {
        match self {
            Self::Inline(b) => b.len() as u64,
            Self::Fresh { len, .. } | Self::Pooled { len, .. } => *len,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The way the payload travels, for reports.
    pub fn mode(&self) -> Mode {
        match self {
            Self::Inline(_) => Mode::Inline,
            Self::Fresh { .. } => Mode::Fresh,
            Self::Pooled { .. } => Mode::Pooled,
        }
    }
}

/// How a payload travels.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Mode {
    /// In the frame.
    Inline,
    /// In a fresh memfd per message.
    Fresh,
    /// In a pool segment.
    Pooled,
}

impl Mode {
    /// `inline`, `fresh` or `pooled`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inline => "inline",
            Self::Fresh => "fresh",
            Self::Pooled => "pooled",
        }
    }
}

/// A payload delivered to this node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Delivered {
    /// The bytes.
    Inline(Vec<u8>),
    /// The first `len` bytes of a fresh segment, now the driver's to map and close.
    Fresh {
        /// The segment.
        segment: SegmentId,
        /// The payload's length.
        len: u64,
    },
    /// A range of a pool segment; give it back with [`DataCmd::Release`] once read.
    Pooled {
        /// The segment (the driver's handle, mapped once).
        segment: SegmentId,
        /// Where the payload starts.
        offset: u64,
        /// The payload's length.
        len: u64,
        /// What to give back.
        slot: SlotRef,
    },
}

/// A message for a local subscription.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Delivery {
    /// The topic.
    pub topic: Arc<str>,
    /// The publishing node.
    pub publisher: NodeId,
    /// The publisher's sequence number for the topic.
    pub seq: u64,
    /// The link it came on ([`LOCAL`] for this node's own messages).
    pub peer: PeerId,
    /// The payload.
    pub payload: Delivered,
}

/// The pseudo-link of messages this node delivers to itself.
pub const LOCAL: PeerId = PeerId(u64::MAX);

/// What a node subscribes to, and how its queue is to be treated.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Terms {
    /// What to do when the queue is full.
    pub policy: Policy,
    /// How many messages the queue holds.
    pub depth: u32,
    /// The largest payload the subscriber takes (checked by the subscriber, before mapping;
    /// not sent to publishers). Default [`DEFAULT_MAX_PAYLOAD`].
    pub max_payload: u64,
}

impl Default for Terms {
    fn default() -> Self {
        Self {
            policy: Policy::DropOldest,
            depth: 64,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

impl Terms {
    /// What a publisher assumes of a subscriber until it states its terms: hold back (1 s at
    /// most) rather than drop, so that the first messages of a `Block` subscription are not
    /// lost while its terms are on their way.
    pub const UNKNOWN: Self = Self {
        policy: Policy::Block { timeout_ms: 1000 },
        depth: 64,
        max_payload: DEFAULT_MAX_PAYLOAD,
    };
}

/// Who subscribes to what, and where: the part of a topology the data plane needs.
///
/// It also says who every node is, as the hub saw it (the uid and pid of the process that
/// joined), and which topics each node announced: a data link is checked against it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Routes {
    subscribers: BTreeMap<String, BTreeSet<NodeId>>,
    addrs: BTreeMap<NodeId, String>,
    nodes: BTreeMap<NodeId, Ident>,
}

/// A node as the hub saw it: its process, and the topics it announced.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
struct Ident {
    uid: u32,
    pid: u32,
    publishes: BTreeSet<String>,
}

impl Ident {
    /// Why a link with `cred` is not this node's process, if it is not: the uid must match,
    /// and the pid too where both are known.
    fn mismatch(&self, cred: Option<&Credentials>) -> Option<String> {
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
                    .entry(topic.clone())
                    .or_default()
                    .insert(n.info.id);
            }
        }
        r
    }

    /// The nodes subscribed to `topic`.
    pub fn subscribers(&self, topic: &str) -> impl Iterator<Item = NodeId> + '_ {
        self.subscribers.get(topic).into_iter().flatten().copied()
    }

    /// Whether the view shows `node` publishing `topic` (its ANNOUNCE is in).
    pub fn announces(&self, node: NodeId, topic: &str) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|n| n.publishes.contains(topic))
    }
}

/// Commands for the data plane.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum DataCmd {
    /// The topology changed.
    Routes(Routes),
    /// This node publishes `topic`.
    Advertise {
        /// The topic.
        topic: String,
    },
    /// This node no longer publishes `topic`.
    Withdraw {
        /// The topic.
        topic: String,
    },
    /// This node takes messages of `topic` on these terms.
    Take {
        /// The topic.
        topic: String,
        /// How its queue is treated.
        terms: Terms,
    },
    /// This node no longer takes messages of `topic`.
    Leave {
        /// The topic.
        topic: String,
    },
    /// Publishes a message; with `expired`, the publisher waited for blocked subscribers as
    /// long as their terms allow, and the message is dropped for those still full.
    Publish {
        /// The topic (advertised).
        topic: String,
        /// The payload.
        payload: Payload,
        /// Whether the wait for room ran out.
        expired: bool,
    },
    /// A pool segment is being destroyed (it was idle): tell the subscribers it was offered to.
    Retire {
        /// The segment; no message refers to it any more.
        segment: SegmentId,
    },
    /// The application is done with these pooled messages received on `peer`.
    Release {
        /// The link they came on.
        peer: PeerId,
        /// What to give back.
        slots: Vec<SlotRef>,
    },
}

/// An input to the data plane.
#[derive(Debug)]
pub enum DataInput<'a> {
    /// A command from this node.
    Cmd(DataCmd),
    /// A link came up: one this machine asked for ([`DataOutput::Connect`]), or one the driver
    /// accepted on the node's data address.
    PeerUp {
        /// The link.
        peer: PeerId,
        /// The process at the other end.
        cred: Option<Credentials>,
    },
    /// A link went down, or a connection this machine asked for failed.
    PeerDown(PeerId),
    /// One record from a link, with the segments whose fds came with it.
    Record {
        /// The link.
        peer: PeerId,
        /// The record.
        data: &'a [u8],
        /// The attached segments, verified and registered by the driver.
        segments: &'a [ReceivedSegment],
    },
    /// The link's socket is full: the driver keeps what it was given and reports
    /// [`DataInput::Writable`] when it has drained.
    Blocked(PeerId),
    /// The link's socket has room again.
    Writable(PeerId),
    /// The driver refused what the link sent (a file descriptor that is not a usable memfd, a
    /// record too large): the link is closed as a protocol violation.
    Rejected {
        /// The link.
        peer: PeerId,
        /// Why.
        reason: String,
    },
}

/// What the data plane asks of its driver.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum DataOutput {
    /// Open a link to a subscriber's data address, known as `peer`; report
    /// [`DataInput::PeerUp`] or [`DataInput::PeerDown`].
    Connect {
        /// The link's id.
        peer: PeerId,
        /// The address.
        addr: String,
    },
    /// Send one record, with the segment's fd attached if `attach` is set.
    Transmit {
        /// The link.
        peer: PeerId,
        /// The record.
        bytes: Vec<u8>,
        /// The segment whose fd goes with it.
        attach: Option<SegmentId>,
    },
    /// Close the link once what is queued for it is sent.
    Disconnect(PeerId),
    /// Deliver a message to the local subscription of its topic.
    Deliver(Delivery),
    /// The machine refers to this segment no more: a pool slot is free again, a fresh memfd or a
    /// received segment can be closed (once the application's messages are gone).
    Release(SegmentId),
    /// Something to report.
    Evt(DataEvt),
}

/// What the data plane reports.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum DataEvt {
    /// How many more messages of `topic` its `Block` subscribers can take changed.
    Room {
        /// The topic.
        topic: String,
        /// `None` when no `Block` subscriber takes the topic: no limit.
        room: Option<Room>,
    },
    /// A link broke the protocol and was closed. Also: a data peer that claimed a node the
    /// view shows under other credentials, bound a topic its node never announced, or was not
    /// shown to be who it claimed within [`DataConfig::verify_timeout`].
    PeerMisbehaved {
        /// The link.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
    /// A link came up from (or, for a link to a subscriber, went to) a process the access
    /// policy does not allow, or one that is not the subscriber's: it was closed before a byte
    /// was sent on it or read from it (edge, once per link). A link to a subscriber is tried
    /// again later, as after a failed connection.
    PeerRefused {
        /// The link.
        peer: PeerId,
        /// The process at the other end, `None` where the driver could not read it.
        cred: Option<Credentials>,
        /// Why.
        reason: String,
    },
    /// A link to a subscriber came up or went down.
    Subscriber {
        /// The subscriber.
        node: NodeId,
        /// Whether the link is up.
        up: bool,
    },
}

/// How many more messages a topic's `Block` subscribers can take, and how long a publisher may
/// wait for more room.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Room {
    /// Messages the fullest `Block` subscriber can still take.
    pub messages: u32,
    /// The longest timeout among the `Block` subscribers.
    pub timeout: Duration,
}

/// Bounds on what the data plane holds for its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataLimits {
    /// Longest topic name.
    pub max_name: usize,
    /// Most topics bound on one link.
    pub max_topics: usize,
    /// Most segments a publisher may offer on one link.
    pub max_segments: usize,
    /// Most ranges in one release.
    pub max_release: usize,
    /// Largest record on a data link.
    pub max_record: usize,
    /// Most records held from a publisher while this node's view does not show yet who it is
    /// or that it announced the topic it binds (see [`DataConfig::verify_timeout`]).
    pub max_unverified: usize,
    /// Most bytes of such records.
    pub max_unverified_bytes: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        Self {
            max_name: 255,
            max_topics: 4096,
            max_segments: 4096,
            max_release: 4096,
            max_record: 256 << 10,
            max_unverified: 1024,
            max_unverified_bytes: 16 << 20,
        }
    }
}

/// How a data plane behaves.
#[derive(Clone, Debug)]
pub struct DataConfig {
    /// This node.
    pub node: NodeId,
    /// Whether this node's messages also reach its own subscriptions. Default no.
    pub self_delivery: bool,
    /// Terms assumed for a subscriber until it states its own.
    pub default_terms: Terms,
    /// Bounds.
    pub limits: DataLimits,
    /// Retry delay for a link to a subscriber that could not be opened (doubling up to 1 s).
    pub retry: Duration,
    /// Which processes may open data links to this node, or be connected to as subscribers:
    /// checked against each link's kernel credentials before anything else. Default: nobody
    /// (drivers set the group's policy, [`NodeOptions::access`](crate::NodeOptions::access)).
    pub access: AccessPolicy,
    /// How long a publisher's records are held, undelivered, while this node's view does not
    /// show its node (the `Hello`'s claim) or its announcement of a topic it binds: the
    /// publisher learned of this node from the hub and its records can overtake the hub's.
    /// After it, the link is closed as a protocol violation. Default 5 s.
    pub verify_timeout: Duration,
}

impl DataConfig {
    /// Defaults for `node`.
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            self_delivery: false,
            default_terms: Terms::UNKNOWN,
            limits: DataLimits::default(),
            retry: Duration::from_millis(50),
            access: AccessPolicy::default(),
            verify_timeout: Duration::from_secs(5),
        }
    }
}

/// A message waiting to be handed to a link's socket.
#[derive(Debug)]
struct Queued {
    /// A topic binding: it waits until this node's view shows the topic announced (the
    /// subscriber checks the binding against its own view).
    bind: Option<Arc<str>>,
    topic: Option<Arc<str>>,
    bytes: Vec<u8>,
    attach: Option<SegmentId>,
    /// Pooled: the range the subscriber will hold once sent.
    slot: Option<(SegmentId, u64)>,
    /// Fresh: the segment whose reference goes once sent.
    fresh: Option<SegmentId>,
}

#[derive(Debug, Default)]
struct Counters {
    messages: u64,
    dropped: u64,
    missed: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum OutState {
    Connecting,
    Up,
    Blocked,
    /// The link failed; retry at this time (while the subscriber is routed).
    Retry(Instant),
}

/// A link to a subscriber.
#[derive(Debug)]
struct OutLink {
    node: NodeId,
    addr: String,
    state: OutState,
    attempts: u32,
    topic_ids: BTreeMap<Arc<str>, u32>,
    /// The last topic id bound on this link (ids are never reused on a link).
    last_topic_id: u32,
    offered: BTreeSet<SegmentId>,
    terms: BTreeMap<String, Terms>,
    queue: VecDeque<Queued>,
    /// Pooled ranges the subscriber holds: (our segment, offset) -> topic.
    held: BTreeMap<(SegmentId, u64), Arc<str>>,
    /// Messages in flight per topic: queued plus held.
    in_flight: BTreeMap<Arc<str>, u32>,
    counters: BTreeMap<Arc<str>, Counters>,
}

/// A link from a publisher (or a stats request).
#[derive(Debug)]
struct InLink {
    cred: Option<Credentials>,
    /// Records held until the view shows who the publisher is or what it announced: since
    /// when, and why.
    unverified: Option<(Instant, String)>,
    held: VecDeque<(Vec<u8>, Vec<ReceivedSegment>)>,
    held_bytes: usize,
    /// The link went down with records held: they still count (a publisher that published
    /// and left at once), and the link is forgotten once they are checked.
    down: bool,
    publisher: Option<NodeId>,
    topics: BTreeMap<u32, Arc<str>>,
    /// Wire id -> (our handle, size).
    segments: BTreeMap<u64, (SegmentId, u64)>,
    last_seq: BTreeMap<Arc<str>, u64>,
    counters: BTreeMap<Arc<str>, Counters>,
}

/// What [`DataPlane::verify`] makes of a publisher's frame.
#[derive(Debug)]
enum Check {
    Valid,
    /// The view does not show it yet.
    Wait(String),
    /// A protocol violation.
    Invalid(String),
}

/// The data-plane machine (see the module docs).
#[derive(Debug)]
pub struct DataPlane {
    config: DataConfig,
    last_now: Instant,
    routes: Routes,
    advertised: BTreeSet<Arc<str>>,
    taken: BTreeMap<Arc<str>, Terms>,
    seq: BTreeMap<Arc<str>, u64>,
    out_links: BTreeMap<PeerId, OutLink>,
    by_node: BTreeMap<NodeId, PeerId>,
    next_out: u64,
    in_links: BTreeMap<PeerId, InLink>,
    /// References to this node's segments: queued, held by subscribers, or delivered locally.
    refs: BTreeMap<SegmentId, usize>,
    /// Local deliveries of pooled payloads not released yet: (segment, offset) count.
    local_held: BTreeMap<(SegmentId, u64), usize>,
    room: BTreeMap<Arc<str>, Room>,
    rejected: u64,
    /// What this node refused to stay bounded (the member counts its links' part here too).
    pub(crate) guard: GuardStats,
    /// What this node keeps as a document witness (the member keeps it current).
    pub(crate) witness: WitnessStats,
    refused: u64,
    /// Every node the routes showed, and since when it is gone from them (kept for
    /// [`DataConfig::verify_timeout`]): a publisher's records may arrive after the hub's word
    /// that it left (it published, then left at once).
    known: BTreeMap<NodeId, (Ident, Option<Instant>)>,
    /// Topic bindings wait for this node's own announcement (until it leaves).
    gated: bool,
    out: VecDeque<DataOutput>,
}

impl DataPlane {
    /// A data plane for `config.node`, with no links yet.
    pub fn new(config: DataConfig, now: Instant) -> Self {
        Self {
            config,
            last_now: now,
            routes: Routes::default(),
            advertised: BTreeSet::new(),
            taken: BTreeMap::new(),
            seq: BTreeMap::new(),
            out_links: BTreeMap::new(),
            by_node: BTreeMap::new(),
            next_out: 0,
            in_links: BTreeMap::new(),
            refs: BTreeMap::new(),
            local_held: BTreeMap::new(),
            room: BTreeMap::new(),
            rejected: 0,
            guard: GuardStats::default(),
            witness: WitnessStats::default(),
            refused: 0,
            known: BTreeMap::new(),
            gated: true,
            out: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// The counters, for `status`.
    pub fn stats(&self) -> DataStats {
        let mut s = DataStats {
            rejected: self.rejected,
            guard: self.guard,
            witness: self.witness,
            ..DataStats::default()
        };
        for l in self.out_links.values() {
            for (topic, c) in &l.counters {
                s.published.push(TopicStats {
                    topic: topic.to_string(),
                    peer: Some(l.node),
                    messages: c.messages,
                    dropped: c.dropped,
                    missed: 0,
                    in_flight: u64::from(l.in_flight.get(topic).copied().unwrap_or(0)),
                });
            }
        }
        for l in self.in_links.values() {
            for (topic, c) in &l.counters {
                s.received.push(TopicStats {
                    topic: topic.to_string(),
                    peer: l.publisher,
                    messages: c.messages,
                    dropped: c.dropped,
                    missed: c.missed,
                    in_flight: 0,
                });
            }
        }
        s
    }

    /// The subscribers this node has a link to (or is opening one to).
    pub fn subscribers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.by_node.keys().copied()
    }

    /// How many more messages of `topic` its `Block` subscribers can take (`None`: no limit).
    pub fn room(&self, topic: &str) -> Option<Room> {
        self.room.get(topic).copied()
    }

    /// Whether `peer` is past its `Hello` (or is no link from a publisher any more: it asked
    /// for the stats and was answered, or it is gone).
    pub(crate) fn is_greeted(&self, peer: PeerId) -> bool {
        self.in_links
            .get(&peer)
            .is_none_or(|l| l.publisher.is_some())
    }

    /// Whether any link's records are held until the view vouches for them (for the fuzzing
    /// harness).
    #[cfg(feature = "arbitrary")]
    pub(crate) fn has_held(&self) -> bool {
        self.in_links.values().any(|l| l.unverified.is_some())
    }

    /// Whether records from `peer` are held until the view shows who it is or what it
    /// announced (for the fuzzing harness).
    #[cfg(feature = "arbitrary")]
    pub(crate) fn is_unverified(&self, peer: PeerId) -> bool {
        self.in_links
            .get(&peer)
            .is_some_and(|l| l.unverified.is_some())
    }

    /// How many links were refused for their credentials ([`DataEvt::PeerRefused`]).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// How many segment references the machine holds (for leak checks).
    pub fn segment_refs(&self) -> usize {
        self.refs.values().sum()
    }

    // ---- inputs ----

    /// Feeds one input. `Err` only for an invalid command; nothing a peer does is an error.
    pub fn handle(&mut self, now: Instant, input: DataInput<'_>) -> Result<(), CmdError> {
        let now = self.advance(now);
        match input {
            DataInput::Cmd(cmd) => return self.on_cmd(now, cmd),
            DataInput::PeerUp { peer, cred } => self.on_peer_up(now, peer, cred),
            DataInput::PeerDown(peer) => self.on_peer_down(now, peer),
            DataInput::Record {
                peer,
                data,
                segments,
            } => self.on_record(now, peer, data, segments),
            DataInput::Blocked(peer) => {
                if let Some(l) = self.out_links.get_mut(&peer)
                    && l.state == OutState::Up
                {
                    l.state = OutState::Blocked;
                }
            }
            DataInput::Rejected { peer, reason } => self.misbehaved(peer, reason, &[]),
            DataInput::Writable(peer) => {
                if let Some(l) = self.out_links.get_mut(&peer)
                    && l.state == OutState::Blocked
                {
                    l.state = OutState::Up;
                    self.flush(peer);
                    // What left the queue is no longer in flight: `Block` publishers may go on.
                    self.update_blocked(now);
                }
            }
        }
        Ok(())
    }

    /// Retries links whose time has come; early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        let timeout = self.config.verify_timeout;
        let overdue: Vec<(PeerId, String)> = self
            .in_links
            .iter()
            .filter_map(|(p, l)| match &l.unverified {
                Some((since, why)) if *since + timeout <= now => Some((*p, why.clone())),
                _ => None,
            })
            .collect();
        for (peer, why) in overdue {
            let reason = format!("{why}, still after {timeout:?}");
            self.misbehaved(peer, reason, &[]);
        }
        let due: Vec<PeerId> = self
            .out_links
            .iter()
            .filter(|(_, l)| matches!(l.state, OutState::Retry(at) if at <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            let l = self.out_links.get_mut(&peer).expect("listed above");
            l.state = OutState::Connecting;
            let addr = l.addr.clone();
            self.out.push_back(DataOutput::Connect { peer, addr });
        }
    }

    /// The next thing for the driver to do; drain until `None`.
    pub fn poll_output(&mut self) -> Option<DataOutput> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.verify_timeout;
        let retries = self.out_links.values().filter_map(|l| match l.state {
            OutState::Retry(at) => Some(at),
            _ => None,
        });
        let verify = self
            .in_links
            .values()
            .filter_map(|l| l.unverified.as_ref().map(|(since, _)| *since + timeout));
        retries.chain(verify).min()
    }

    fn advance(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    // ---- commands ----

    fn on_cmd(&mut self, now: Instant, cmd: DataCmd) -> Result<(), CmdError> {
        match cmd {
            DataCmd::Routes(routes) => {
                self.routes = routes;
                self.remember(now);
                self.reroute(now);
                // Topic bindings whose announcement is now in may go out; records held from
                // publishers may now check out.
                self.flush_all(now);
                self.replay_held(now);
            }
            DataCmd::Advertise { topic } => {
                self.check_topic(&topic)?;
                self.advertised.insert(Arc::from(topic));
                self.reroute(now);
            }
            DataCmd::Withdraw { topic } => {
                self.advertised.remove(topic.as_str());
                self.reroute(now);
                // A binding still waiting for its announcement goes, with its messages.
                self.flush_all(now);
            }
            DataCmd::Take { topic, terms } => {
                self.check_topic(&topic)?;
                let topic: Arc<str> = Arc::from(topic);
                self.taken.insert(Arc::clone(&topic), terms);
                // Tell the publishers we already hear from.
                let frame = DataFrame::Terms {
                    topic: topic.to_string(),
                    policy: terms.policy,
                    depth: terms.depth,
                };
                let bytes = encode_data(&frame, &[]);
                let peers: Vec<PeerId> = self
                    .in_links
                    .iter()
                    .filter(|(_, l)| l.publisher.is_some())
                    .map(|(p, _)| *p)
                    .collect();
                for peer in peers {
                    self.out.push_back(DataOutput::Transmit {
                        peer,
                        bytes: bytes.clone(),
                        attach: None,
                    });
                }
            }
            DataCmd::Leave { topic } => {
                self.taken.remove(topic.as_str());
            }
            DataCmd::Publish {
                topic,
                payload,
                expired,
            } => {
                let Some(topic) = self.advertised.get(topic.as_str()).cloned() else {
                    return Err(CmdError::Invalid {
                        what: "topic",
                        reason: format!("`{topic}` is not advertised"),
                    });
                };
                self.publish(now, topic, payload, expired);
            }
            DataCmd::Release { peer, slots } => self.release_received(peer, slots),
            DataCmd::Retire { segment } => {
                let bytes = encode_data(&DataFrame::Retire { id: segment.0 }, &[]);
                let peers: Vec<PeerId> = self
                    .out_links
                    .iter()
                    .filter(|(_, l)| l.offered.contains(&segment))
                    .map(|(p, _)| *p)
                    .collect();
                for peer in peers {
                    let l = self.out_links.get_mut(&peer).expect("listed above");
                    l.offered.remove(&segment);
                    l.queue.push_back(Queued {
                        bind: None,
                        topic: None,
                        bytes: bytes.clone(),
                        attach: None,
                        slot: None,
                        fresh: None,
                    });
                    self.flush(peer);
                }
            }
        }
        Ok(())
    }

    fn check_topic(&self, topic: &str) -> Result<(), CmdError> {
        if topic.is_empty() || topic.len() > self.config.limits.max_name {
            let reason = format!(
                "{} bytes (1 to {} allowed)",
                topic.len(),
                self.config.limits.max_name
            );
            return Err(CmdError::Invalid {
                what: "topic name",
                reason,
            });
        }
        Ok(())
    }

    /// Opens links to subscribers of what this node publishes; closes links nobody needs.
    fn reroute(&mut self, now: Instant) {
        let me = self.config.node;
        let wanted: BTreeSet<NodeId> = self
            .advertised
            .iter()
            .flat_map(|t| self.routes.subscribers(t))
            .filter(|n| *n != me)
            .collect();
        let gone: Vec<NodeId> = self
            .by_node
            .keys()
            .filter(|n| !wanted.contains(n))
            .copied()
            .collect();
        for node in gone {
            let peer = self.by_node[&node];
            debug!(%node, "no topic to send there any more: closing the data link");
            let up = matches!(
                self.out_links[&peer].state,
                OutState::Up | OutState::Blocked
            );
            if up {
                // What waited for this node's announcement goes ahead of the goodbye: the
                // announcement reached the hub before the retraction.
                let gated = std::mem::replace(&mut self.gated, false);
                self.flush(peer);
                self.gated = gated;
                self.out.push_back(DataOutput::Transmit {
                    peer,
                    bytes: encode_data(&DataFrame::Goodbye, &[]),
                    attach: None,
                });
            }
            self.drop_out_link(peer);
            self.out.push_back(DataOutput::Disconnect(peer));
        }
        for node in wanted {
            if self.by_node.contains_key(&node) {
                continue;
            }
            let Some(addr) = self.routes.addrs.get(&node).cloned() else {
                continue;
            };
            self.next_out += 1;
            let peer = PeerId(OUTGOING | self.next_out);
            debug!(%node, %addr, %peer, "opening a data link");
            self.by_node.insert(node, peer);
            self.out_links.insert(
                peer,
                OutLink {
                    node,
                    addr: addr.clone(),
                    state: OutState::Connecting,
                    attempts: 0,
                    topic_ids: BTreeMap::new(),
                    last_topic_id: 0,
                    offered: BTreeSet::new(),
                    terms: BTreeMap::new(),
                    queue: VecDeque::new(),
                    held: BTreeMap::new(),
                    in_flight: BTreeMap::new(),
                    counters: BTreeMap::new(),
                },
            );
            self.out.push_back(DataOutput::Connect { peer, addr });
        }
        self.update_blocked(now);
    }

    fn publish(&mut self, now: Instant, topic: Arc<str>, payload: Payload, expired: bool) {
        let seq = {
            let s = self.seq.entry(Arc::clone(&topic)).or_insert(0);
            *s += 1;
            *s
        };
        let header = MessageHeader { topic: 0, seq };
        let segment = payload.segment();
        // Publishing holds a reference across the fan-out: whoever takes the payload holds
        // one too, and a payload nobody takes is released when this one goes.
        if let Some(seg) = segment {
            *self.refs.entry(seg).or_insert(0) += 1;
        }
        let targets: Vec<PeerId> = self
            .routes
            .subscribers(&topic)
            .filter_map(|n| self.by_node.get(&n).copied())
            .collect();
        for peer in targets {
            self.enqueue(peer, &topic, header, &payload, expired);
        }
        if self.config.self_delivery && self.taken.contains_key(&topic) {
            let delivered = match &payload {
                Payload::Inline(b) => Delivered::Inline(b.clone()),
                // The driver keeps a fresh segment alive while any message maps it.
                Payload::Fresh { segment, len } => Delivered::Fresh {
                    segment: *segment,
                    len: *len,
                },
                Payload::Pooled {
                    segment,
                    offset,
                    len,
                    ..
                } => {
                    *self.refs.entry(*segment).or_insert(0) += 1;
                    *self.local_held.entry((*segment, *offset)).or_insert(0) += 1;
                    let slot = SlotRef {
                        segment: segment.0,
                        offset: *offset,
                    };
                    Delivered::Pooled {
                        segment: *segment,
                        offset: *offset,
                        len: *len,
                        slot,
                    }
                }
            };
            let publisher = self.config.node;
            self.out.push_back(DataOutput::Deliver(Delivery {
                topic: Arc::clone(&topic),
                publisher,
                seq,
                peer: LOCAL,
                payload: delivered,
            }));
        }
        if let Some(seg) = segment {
            self.unref(seg);
        }
        self.update_blocked(now);
    }

    /// Queues a message for one subscriber, applying its terms; then sends what the socket takes.
    fn enqueue(
        &mut self,
        peer: PeerId,
        topic: &Arc<str>,
        header: MessageHeader,
        payload: &Payload,
        expired: bool,
    ) {
        let default = self.config.default_terms;
        let l = self.out_links.get_mut(&peer).expect("targets are links");
        let terms = l.terms.get(&**topic).copied().unwrap_or(default);
        let in_flight = l.in_flight.get(topic).copied().unwrap_or(0);
        if in_flight >= terms.depth {
            let drop_new = match terms.policy {
                Policy::Block { .. } => expired,
                Policy::DropNewest => true,
                Policy::DropOldest => {
                    // The oldest queued message of this topic makes room, if there is one.
                    match l.queue.iter().position(|q| q.topic.as_ref() == Some(topic)) {
                        Some(i) => {
                            let q = l.queue.remove(i).expect("position is in range");
                            *l.in_flight.get_mut(topic).expect("in flight") -= 1;
                            l.counters.entry(Arc::clone(topic)).or_default().dropped += 1;
                            let freed = q.slot.map(|(s, _)| s).or(q.fresh);
                            if let Some(seg) = freed {
                                self.unref(seg);
                            }
                            false
                        }
                        None => true,
                    }
                }
            };
            if drop_new {
                let l = self.out_links.get_mut(&peer).expect("checked");
                l.counters.entry(Arc::clone(topic)).or_default().dropped += 1;
                trace!(%peer, %topic, seq = header.seq, "dropped for a full subscriber");
                return;
            }
        }
        let l = self.out_links.get_mut(&peer).expect("checked");
        // Bind the topic on this link the first time.
        let next_id = l.last_topic_id + 1;
        let id = *l.topic_ids.entry(Arc::clone(topic)).or_insert_with(|| {
            l.last_topic_id = next_id;
            l.queue.push_back(Queued {
                bind: Some(Arc::clone(topic)),
                topic: None,
                bytes: encode_data(
                    &DataFrame::Topic {
                        id: next_id,
                        topic: topic.to_string(),
                    },
                    &[],
                ),
                attach: None,
                slot: None,
                fresh: None,
            });
            next_id
        });
        let header = MessageHeader {
            topic: id,
            ..header
        };
        let (frame, data, attach, slot, fresh) = match payload {
            Payload::Inline(b) => (DataFrame::Inline(header), &b[..], None, None, None),
            Payload::Fresh { segment, len } => (
                DataFrame::Fresh { header, len: *len },
                &[][..],
                Some(*segment),
                None,
                Some(*segment),
            ),
            Payload::Pooled {
                segment,
                size,
                offset,
                len,
            } => {
                if l.offered.insert(*segment) {
                    l.queue.push_back(Queued {
                        bind: None,
                        topic: None,
                        bytes: encode_data(
                            &DataFrame::Segment {
                                id: segment.0,
                                size: *size,
                            },
                            &[],
                        ),
                        attach: Some(*segment),
                        slot: None,
                        fresh: None,
                    });
                }
                let frame = DataFrame::Pooled {
                    header,
                    segment: segment.0,
                    offset: *offset,
                    len: *len,
                };
                (frame, &[][..], None, Some((*segment, *offset)), None)
            }
        };
        l.queue.push_back(Queued {
            bind: None,
            topic: Some(Arc::clone(topic)),
            bytes: encode_data(&frame, data),
            attach,
            slot,
            fresh,
        });
        *l.in_flight.entry(Arc::clone(topic)).or_insert(0) += 1;
        if let Some(seg) = payload.segment() {
            *self.refs.entry(seg).or_insert(0) += 1;
        }
        self.flush(peer);
    }

    /// Takes in who the routes show: a node's identity and the topics it announced are
    /// remembered while it is shown and for [`DataConfig::verify_timeout`] after.
    fn remember(&mut self, now: Instant) {
        for (id, n) in &self.routes.nodes {
            match self.known.get_mut(id) {
                Some((k, gone)) if k.uid == n.uid && k.pid == n.pid => {
                    k.publishes.extend(n.publishes.iter().cloned());
                    *gone = None;
                }
                _ => {
                    self.known.insert(*id, (n.clone(), None));
                }
            }
        }
        let timeout = self.config.verify_timeout;
        let shown = &self.routes.nodes;
        self.known.retain(|id, (_, gone)| {
            if !shown.contains_key(id) {
                gone.get_or_insert(now);
            }
            gone.is_none_or(|t| t + timeout > now)
        });
    }

    /// This node is leaving: topic bindings go out without waiting for its announcements
    /// (they were sent to the hub before its goodbye, so subscribers will see them), and
    /// what is queued behind them with them.
    pub(crate) fn ungate(&mut self, now: Instant) {
        self.gated = false;
        self.flush_all(now);
    }

    /// Flushes every link (see [`Self::flush`]), then recomputes the rooms.
    fn flush_all(&mut self, now: Instant) {
        let peers: Vec<PeerId> = self.out_links.keys().copied().collect();
        for peer in peers {
            self.flush(peer);
        }
        self.update_blocked(now);
    }

    /// Hands queued records to the driver while the link is up and its socket has room; a
    /// topic binding waits until this node's view shows its announcement (subscribers check
    /// bindings against their views).
    fn flush(&mut self, peer: PeerId) {
        let Some(l) = self.out_links.get_mut(&peer) else {
            return;
        };
        if l.state != OutState::Up {
            return;
        }
        let me = self.config.node;
        let mut unref = Vec::new();
        while let Some(q) = l.queue.front() {
            // A topic withdrawn meanwhile goes too: its announcement is on its way to the hub
            // ahead of the retraction (a publisher that published, then dropped its topic).
            if self.gated
                && let Some(t) = &q.bind
                && self.advertised.contains(t)
                && !self.routes.announces(me, t)
            {
                trace!(%peer, topic = %t, "binding waits for this node's announcement");
                break;
            }
            let q = l.queue.pop_front().expect("front is some");
            if let Some(topic) = &q.topic {
                l.counters.entry(Arc::clone(topic)).or_default().messages += 1;
                match q.slot {
                    // The subscriber holds the range until it releases it.
                    Some(slot) => {
                        l.held.insert(slot, Arc::clone(topic));
                    }
                    None => {
                        *l.in_flight
                            .get_mut(topic)
                            .expect("queued messages are in flight") -= 1;
                    }
                }
            }
            if let Some(seg) = q.fresh {
                unref.push(seg);
            }
            self.out.push_back(DataOutput::Transmit {
                peer,
                bytes: q.bytes,
                attach: q.attach,
            });
        }
        // The fd of a fresh payload is in the kernel's hands once transmitted... but only after
        // the driver has sent it: the driver keeps the segment open until its send completes,
        // so releasing our reference here is safe.
        for seg in unref {
            self.unref(seg);
        }
    }

    fn unref(&mut self, seg: SegmentId) {
        if let Some(n) = self.refs.get_mut(&seg) {
            *n -= 1;
            if *n == 0 {
                self.refs.remove(&seg);
                self.out.push_back(DataOutput::Release(seg));
            }
        }
    }

    /// Recomputes each topic's room, reporting changes.
    fn update_blocked(&mut self, _now: Instant) {
        let default = self.config.default_terms;
        let mut room: BTreeMap<Arc<str>, Room> = BTreeMap::new();
        for l in self.out_links.values() {
            for topic in &self.advertised {
                let subscribed = self
                    .routes
                    .subscribers
                    .get(&**topic)
                    .is_some_and(|s| s.contains(&l.node));
                if !subscribed {
                    continue;
                }
                let terms = l.terms.get(&**topic).copied().unwrap_or(default);
                if let Policy::Block { timeout_ms } = terms.policy {
                    let left = terms
                        .depth
                        .saturating_sub(l.in_flight.get(topic).copied().unwrap_or(0));
                    let timeout = Duration::from_millis(u64::from(timeout_ms));
                    let r = room.entry(Arc::clone(topic)).or_insert(Room {
                        messages: left,
                        timeout,
                    });
                    r.messages = r.messages.min(left);
                    r.timeout = r.timeout.max(timeout);
                }
            }
        }
        let changed: BTreeSet<Arc<str>> = room
            .iter()
            .filter(|(t, r)| self.room.get(*t) != Some(r))
            .map(|(t, _)| Arc::clone(t))
            .chain(self.room.keys().filter(|t| !room.contains_key(*t)).cloned())
            .collect();
        for topic in changed {
            let r = room.get(&topic).copied();
            self.out.push_back(DataOutput::Evt(DataEvt::Room {
                topic: topic.to_string(),
                room: r,
            }));
        }
        self.room = room;
    }

    // ---- links ----

    fn on_peer_up(&mut self, now: Instant, peer: PeerId, cred: Option<Credentials>) {
        let known = self.out_links.contains_key(&peer) || peer.0 & OUTGOING == 0;
        if known && !self.config.access.allows(cred.as_ref()) {
            return self.refuse(
                now,
                peer,
                cred,
                "not allowed by the group's access policy".into(),
            );
        }
        if let Some(l) = self.out_links.get(&peer)
            && let Some(why) = self
                .known
                .get(&l.node)
                .and_then(|(n, _)| n.mismatch(cred.as_ref()))
        {
            // The subscriber's address is held by another process than the node's.
            let reason = format!("the data address of node {} is held by {why}", l.node);
            return self.refuse(now, peer, cred, reason);
        }
        if let Some(l) = self.out_links.get_mut(&peer) {
            l.state = OutState::Up;
            l.attempts = 0;
            let node = l.node;
            let hello = encode_data(
                &DataFrame::Hello {
                    publisher: self.config.node,
                },
                &[],
            );
            self.out.push_back(DataOutput::Transmit {
                peer,
                bytes: hello,
                attach: None,
            });
            self.out
                .push_back(DataOutput::Evt(DataEvt::Subscriber { node, up: true }));
            self.flush(peer);
        } else if peer.0 & OUTGOING == 0 {
            // A link that went down with records held, under an id the driver reuses: those
            // records go.
            self.forget_in_link(peer);
            self.in_links.insert(
                peer,
                InLink {
                    cred,
                    unverified: None,
                    held: VecDeque::new(),
                    held_bytes: 0,
                    down: false,
                    publisher: None,
                    topics: BTreeMap::new(),
                    segments: BTreeMap::new(),
                    last_seq: BTreeMap::new(),
                    counters: BTreeMap::new(),
                },
            );
        } else {
            trace!(%peer, "PeerUp for a link this machine no longer wants");
            self.out.push_back(DataOutput::Disconnect(peer));
        }
    }

    /// Closes a link whose process is not one this node talks to, before a byte goes either
    /// way. A link to a subscriber is retried later, as after a failed connection.
    fn refuse(&mut self, now: Instant, peer: PeerId, cred: Option<Credentials>, reason: String) {
        debug!(%peer, ?cred, %reason, "refusing a data link");
        self.refused += 1;
        self.out.push_back(DataOutput::Disconnect(peer));
        self.out
            .push_back(DataOutput::Evt(DataEvt::PeerRefused { peer, cred, reason }));
        if self.out_links.contains_key(&peer) {
            self.on_peer_down(now, peer);
        } else {
            self.forget_in_link(peer);
        }
    }

    /// Forgets a link from a publisher, releasing every segment it holds.
    fn forget_in_link(&mut self, peer: PeerId) {
        if let Some(l) = self.in_links.remove(&peer) {
            for (seg, _) in l.segments.into_values() {
                self.out.push_back(DataOutput::Release(seg));
            }
            for (_, segments) in l.held {
                for s in segments {
                    self.out.push_back(DataOutput::Release(s.segment));
                }
            }
        }
    }

    fn on_peer_down(&mut self, now: Instant, peer: PeerId) {
        if self.out_links.contains_key(&peer) {
            let was_up = matches!(
                self.out_links[&peer].state,
                OutState::Up | OutState::Blocked
            );
            // Whatever was queued or held on the link is gone with it.
            self.reset_out_link(peer);
            let l = self.out_links.get_mut(&peer).expect("checked");
            l.attempts = l.attempts.saturating_add(1);
            let delay = self
                .config
                .retry
                .saturating_mul(1 << l.attempts.min(5))
                .min(Duration::from_secs(1));
            l.state = OutState::Retry(now + delay);
            debug!(%peer, node = %l.node, ?delay, "data link down: retrying");
            if was_up {
                let node = l.node;
                self.out
                    .push_back(DataOutput::Evt(DataEvt::Subscriber { node, up: false }));
            }
            self.update_blocked(now);
        } else if let Some(l) = self.in_links.get_mut(&peer)
            && l.unverified.is_some()
        {
            // What it sent before it went is checked when the view catches up.
            debug!(%peer, "a publisher's link went down with records held");
            l.down = true;
        } else {
            self.forget_in_link(peer);
        }
    }

    /// Forgets what a link to a subscriber carried (it went down): queued and held payloads.
    fn reset_out_link(&mut self, peer: PeerId) {
        let l = self.out_links.get_mut(&peer).expect("caller checked");
        let mut freed = Vec::new();
        for q in l.queue.drain(..) {
            freed.extend(q.slot.map(|(s, _)| s).or(q.fresh));
        }
        freed.extend(std::mem::take(&mut l.held).into_keys().map(|(s, _)| s));
        l.in_flight.clear();
        l.topic_ids.clear();
        l.last_topic_id = 0;
        l.offered.clear();
        l.terms.clear();
        for seg in freed {
            self.unref(seg);
        }
    }

    fn drop_out_link(&mut self, peer: PeerId) {
        self.reset_out_link(peer);
        if let Some(l) = self.out_links.remove(&peer) {
            self.by_node.remove(&l.node);
        }
    }

    fn misbehaved(&mut self, peer: PeerId, reason: String, segments: &[ReceivedSegment]) {
        // The driver logs the event (rate-limited): a hostile peer must not flood the log.
        debug!(%peer, %reason, "data link broke the protocol");
        self.rejected += 1;
        for s in segments {
            self.out.push_back(DataOutput::Release(s.segment));
        }
        if self.out_links.contains_key(&peer) {
            self.drop_out_link(peer);
        } else {
            self.forget_in_link(peer);
        }
        self.out.push_back(DataOutput::Disconnect(peer));
        self.out
            .push_back(DataOutput::Evt(DataEvt::PeerMisbehaved { peer, reason }));
    }

    fn on_record(&mut self, now: Instant, peer: PeerId, data: &[u8], segments: &[ReceivedSegment]) {
        if self
            .in_links
            .get(&peer)
            .is_some_and(|l| l.unverified.is_some())
        {
            // Behind a record that waits for the view: in order, after it.
            return self.hold(now, peer, data, segments, None);
        }
        let limits = &self.config.limits;
        let (frame, start) = match decode_data(data, limits.max_name, limits.max_release) {
            Ok(f) => f,
            Err(e) => return self.misbehaved(peer, e.to_string(), segments),
        };
        let wants_fd = matches!(frame, DataFrame::Fresh { .. } | DataFrame::Segment { .. });
        if segments.len() != usize::from(wants_fd) {
            let reason = format!("{} with {} file descriptors", frame.name(), segments.len());
            return self.misbehaved(peer, reason, segments);
        }
        if self.out_links.contains_key(&peer) {
            self.on_subscriber_frame(now, peer, frame, segments);
        } else if self.in_links.contains_key(&peer) {
            match self.verify(peer, &frame) {
                Check::Valid => self.on_publisher_frame(peer, frame, &data[start..], segments),
                Check::Wait(why) => self.hold(now, peer, data, segments, Some(why)),
                Check::Invalid(reason) => self.misbehaved(peer, reason, segments),
            }
        } else {
            for s in segments {
                self.out.push_back(DataOutput::Release(s.segment));
            }
        }
    }

    /// Whether a publisher's frame agrees with this node's view: its `Hello` must name a node
    /// the view shows with the link's credentials, its `Topic` a topic that node announced.
    /// What the view does not show yet waits for it.
    fn verify(&self, peer: PeerId, frame: &DataFrame) -> Check {
        let l = &self.in_links[&peer];
        match frame {
            DataFrame::Hello { publisher } if l.publisher.is_none() => {
                if *publisher == self.config.node {
                    return Check::Invalid(format!("Hello claims this node's id {publisher}"));
                }
                match self.known.get(publisher) {
                    None => Check::Wait(format!(
                        "Hello from node {publisher}, which this node's view does not show"
                    )),
                    Some((n, _)) => match n.mismatch(l.cred.as_ref()) {
                        Some(why) => Check::Invalid(format!(
                            "Hello claims node {publisher}, but the link is {why}"
                        )),
                        None => Check::Valid,
                    },
                }
            }
            DataFrame::Topic { topic, .. } => match l.publisher {
                Some(node)
                    if !self
                        .known
                        .get(&node)
                        .is_some_and(|(n, _)| n.publishes.contains(topic.as_str())) =>
                {
                    Check::Wait(format!(
                        "binds topic `{topic}`, which this node's view does not show node {node} \
                     announcing"
                    ))
                }
                _ => Check::Valid,
            },
            _ => Check::Valid,
        }
    }

    /// Holds a publisher's record, undelivered, until the view shows what it claims (`why`
    /// starts the wait); bounded in records, bytes and time.
    fn hold(
        &mut self,
        now: Instant,
        peer: PeerId,
        data: &[u8],
        segments: &[ReceivedSegment],
        why: Option<String>,
    ) {
        let limits = &self.config.limits;
        let (max, max_bytes) = (limits.max_unverified, limits.max_unverified_bytes);
        let l = self.in_links.get_mut(&peer).expect("caller checked");
        if l.held.len() >= max || l.held_bytes + data.len() > max_bytes {
            let why = l.unverified.as_ref().map_or("", |(_, w)| w.as_str());
            let reason =
                format!("more than {max} records or {max_bytes} bytes while unverified: {why}");
            return self.misbehaved(peer, reason, segments);
        }
        if let Some(why) = why {
            trace!(%peer, %why, "holding a publisher's records until the view shows it");
            l.unverified.get_or_insert((now, why));
        }
        l.held_bytes += data.len();
        l.held.push_back((data.to_vec(), segments.to_vec()));
    }

    /// Runs the records held from publishers again, now that the view changed: what checks out
    /// goes on, in order, and the rest waits for the next change (or its deadline).
    fn replay_held(&mut self, now: Instant) {
        let peers: Vec<PeerId> = self
            .in_links
            .iter()
            .filter(|(_, l)| l.unverified.is_some())
            .map(|(p, _)| *p)
            .collect();
        for peer in peers {
            let l = self.in_links.get_mut(&peer).expect("listed above");
            let since = l.unverified.take().map(|(t, _)| t);
            let held = std::mem::take(&mut l.held);
            l.held_bytes = 0;
            for (data, segments) in held {
                if self.in_links.contains_key(&peer) {
                    self.on_record(now, peer, &data, &segments);
                } else {
                    // Closed meanwhile: what it sent goes with it.
                    for s in segments {
                        self.out.push_back(DataOutput::Release(s.segment));
                    }
                }
            }
            // Still waiting: the deadline runs from the first wait.
            if let Some(l) = self.in_links.get_mut(&peer)
                && let (Some((t, _)), Some(since)) = (&mut l.unverified, since)
            {
                *t = since;
            }
            if self
                .in_links
                .get(&peer)
                .is_some_and(|l| l.down && l.unverified.is_none())
            {
                self.forget_in_link(peer);
            }
        }
    }

    /// A frame on a link to a subscriber.
    fn on_subscriber_frame(
        &mut self,
        now: Instant,
        peer: PeerId,
        frame: DataFrame,
        segments: &[ReceivedSegment],
    ) {
        match frame {
            DataFrame::Terms {
                topic,
                policy,
                depth,
            } => {
                let l = self.out_links.get_mut(&peer).expect("caller checked");
                if l.terms.len() >= self.config.limits.max_topics && !l.terms.contains_key(&topic) {
                    return self.misbehaved(peer, "too many terms".into(), segments);
                }
                l.terms.insert(
                    topic,
                    Terms {
                        policy,
                        depth: depth.max(1),
                        // The subscriber checks its own maximum.
                        max_payload: u64::MAX,
                    },
                );
                self.update_blocked(now);
            }
            DataFrame::Release(refs) => {
                for r in refs {
                    let key = (SegmentId(r.segment), r.offset);
                    let l = self.out_links.get_mut(&peer).expect("caller checked");
                    let Some(topic) = l.held.remove(&key) else {
                        let reason = format!("release of a range it does not hold: {r:?}");
                        return self.misbehaved(peer, reason, segments);
                    };
                    *l.in_flight
                        .get_mut(&topic)
                        .expect("held messages are in flight") -= 1;
                    self.unref(key.0);
                }
                self.update_blocked(now);
            }
            DataFrame::Goodbye => {
                self.reset_out_link(peer);
                self.out.push_back(DataOutput::Disconnect(peer));
                if let Some(l) = self.out_links.get_mut(&peer) {
                    l.state = OutState::Retry(now + Duration::from_secs(1));
                }
            }
            other => {
                let reason = format!("{} from a subscriber", other.name());
                self.misbehaved(peer, reason, segments);
            }
        }
    }

    /// A frame on a link from a publisher.
    fn on_publisher_frame(
        &mut self,
        peer: PeerId,
        frame: DataFrame,
        payload: &[u8],
        segments: &[ReceivedSegment],
    ) {
        let max_topics = self.config.limits.max_topics;
        let max_segments = self.config.limits.max_segments;
        let l = self.in_links.get_mut(&peer).expect("caller checked");
        if l.publisher.is_none()
            && !matches!(frame, DataFrame::Hello { .. } | DataFrame::StatsRequest)
        {
            let reason = format!("{} before Hello", frame.name());
            return self.misbehaved(peer, reason, segments);
        }
        match frame {
            DataFrame::Hello { publisher } => {
                if l.publisher.is_some() {
                    return self.misbehaved(peer, "second Hello".into(), segments);
                }
                l.publisher = Some(publisher);
                for (topic, terms) in &self.taken {
                    let frame = DataFrame::Terms {
                        topic: topic.to_string(),
                        policy: terms.policy,
                        depth: terms.depth,
                    };
                    self.out.push_back(DataOutput::Transmit {
                        peer,
                        bytes: encode_data(&frame, &[]),
                        attach: None,
                    });
                }
            }
            DataFrame::StatsRequest => {
                let bytes = encode_data(&DataFrame::Stats(self.stats()), &[]);
                self.out.push_back(DataOutput::Transmit {
                    peer,
                    bytes,
                    attach: None,
                });
                self.out.push_back(DataOutput::Disconnect(peer));
                self.forget_in_link(peer);
            }
            DataFrame::Topic { id, topic } => {
                if l.topics.len() >= max_topics || l.topics.contains_key(&id) {
                    return self.misbehaved(
                        peer,
                        format!("topic id {id} bound twice or too many"),
                        segments,
                    );
                }
                l.topics.insert(id, Arc::from(topic));
            }
            DataFrame::Segment { id, size } => {
                let s = segments[0];
                let sealed =
                    s.seals.shrink && s.seals.grow && (s.seals.future_write || s.seals.write);
                let bound = self.max_segment();
                if s.size > bound {
                    let reason = format!(
                        "segment {id} of {} bytes, larger than any payload taken here \
                         ({bound} bytes at most)",
                        s.size
                    );
                    return self.oversized(peer, reason, segments);
                }
                let l = self.in_links.get_mut(&peer).expect("caller checked");
                if !sealed
                    || s.size < size
                    || l.segments.len() >= max_segments
                    || l.segments.contains_key(&id)
                {
                    let reason = format!(
                        "segment {id}: seals {:?}, size {} for {size}, or reused id",
                        s.seals, s.size
                    );
                    return self.misbehaved(peer, reason, segments);
                }
                l.segments.insert(id, (s.segment, size));
            }
            DataFrame::Retire { id } => match l.segments.remove(&id) {
                Some((seg, _)) => self.out.push_back(DataOutput::Release(seg)),
                None => self.misbehaved(peer, format!("retire of unknown segment {id}"), segments),
            },
            DataFrame::Inline(header) => {
                let payload = Delivered::Inline(payload.to_vec());
                self.receive(peer, header, payload, segments);
            }
            DataFrame::Fresh { header, len } => {
                let s = segments[0];
                if !(s.seals.shrink && s.seals.grow && s.seals.write) || s.size < len {
                    let reason = format!(
                        "fresh payload of {len} bytes in a segment of {} with seals {:?}",
                        s.size, s.seals
                    );
                    return self.misbehaved(peer, reason, segments);
                }
                // Checked before the driver maps anything: the segment's size, not just the
                // length it claims (a legitimate publisher's fresh segment is its payload).
                if let Some(max) = self.max_payload(peer, header.topic)
                    && s.size > max
                {
                    let reason = format!(
                        "fresh payload in a segment of {} bytes, larger than the \
                         subscription's maximum of {max}",
                        s.size
                    );
                    return self.oversized(peer, reason, segments);
                }
                self.receive(
                    peer,
                    header,
                    Delivered::Fresh {
                        segment: s.segment,
                        len,
                    },
                    segments,
                );
            }
            DataFrame::Pooled {
                header,
                segment,
                offset,
                len,
            } => {
                let Some(&(seg, size)) = l.segments.get(&segment) else {
                    return self.misbehaved(
                        peer,
                        format!("message in unknown segment {segment}"),
                        segments,
                    );
                };
                if offset.checked_add(len).is_none_or(|end| end > size) {
                    let reason =
                        format!("range {offset}+{len} outside segment {segment} of {size} bytes");
                    return self.misbehaved(peer, reason, segments);
                }
                if let Some(max) = self.max_payload(peer, header.topic)
                    && len > max
                {
                    let reason = format!(
                        "pooled payload of {len} bytes, larger than the subscription's maximum \
                         of {max}"
                    );
                    return self.oversized(peer, reason, segments);
                }
                let slot = SlotRef { segment, offset };
                self.receive(
                    peer,
                    header,
                    Delivered::Pooled {
                        segment: seg,
                        offset,
                        len,
                        slot,
                    },
                    segments,
                );
            }
            DataFrame::Goodbye => {
                // The publisher closes the link (it left, or this node is no longer a
                // subscriber): what came before was delivered; the link's segments go.
                debug!(%peer, "a publisher closed its data link");
                for s in segments {
                    self.out.push_back(DataOutput::Release(s.segment));
                }
                self.forget_in_link(peer);
                self.out.push_back(DataOutput::Disconnect(peer));
            }
            other => {
                let reason = format!("{} from a publisher", other.name());
                self.misbehaved(peer, reason, segments);
            }
        }
    }

    /// The largest payload this node takes on `peer`'s topic `id`: `None` when the topic is
    /// not bound or not taken (the message is then refused or given back unmapped).
    fn max_payload(&self, peer: PeerId, id: u32) -> Option<u64> {
        let topic = self.in_links.get(&peer)?.topics.get(&id)?;
        self.taken.get(topic).map(|t| t.max_payload)
    }

    /// The largest pool segment a publisher may offer: the size class of the largest payload
    /// any subscription here takes ([`DEFAULT_MAX_PAYLOAD`] with none).
    fn max_segment(&self) -> u64 {
        let max = self
            .taken
            .values()
            .map(|t| t.max_payload)
            .max()
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        max.max(MIN_SEGMENT)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX)
    }

    /// A payload or segment too large for this node: refused unmapped, as a violation.
    fn oversized(&mut self, peer: PeerId, reason: String, segments: &[ReceivedSegment]) {
        self.guard.oversized += 1;
        self.misbehaved(peer, reason, segments);
    }

    /// Checks a message's topic and order, then delivers it (or gives it back).
    fn receive(
        &mut self,
        peer: PeerId,
        header: MessageHeader,
        payload: Delivered,
        segments: &[ReceivedSegment],
    ) {
        let l = self.in_links.get_mut(&peer).expect("caller checked");
        let Some(topic) = l.topics.get(&header.topic).cloned() else {
            let reason = format!("message of unbound topic {}", header.topic);
            return self.misbehaved(peer, reason, segments);
        };
        let last = l.last_seq.get(&topic).copied().unwrap_or(0);
        if header.seq <= last {
            let reason = format!("{topic}: sequence {} after {last}", header.seq);
            return self.misbehaved(peer, reason, segments);
        }
        l.last_seq.insert(Arc::clone(&topic), header.seq);
        let c = l.counters.entry(Arc::clone(&topic)).or_default();
        // Messages dropped at the publisher, for this subscriber or before it subscribed.
        if last > 0 {
            c.missed += header.seq - last - 1;
        }
        let publisher = l.publisher.expect("checked before any message");
        if !self.taken.contains_key(&topic) {
            // No longer subscribed: give it back at once.
            c.dropped += 1;
            match payload {
                Delivered::Inline(_) => {}
                Delivered::Fresh { segment, .. } => {
                    self.out.push_back(DataOutput::Release(segment))
                }
                Delivered::Pooled { slot, .. } => {
                    let bytes = encode_data(&DataFrame::Release(vec![slot]), &[]);
                    self.out.push_back(DataOutput::Transmit {
                        peer,
                        bytes,
                        attach: None,
                    });
                }
            }
            return;
        }
        c.messages += 1;
        self.out.push_back(DataOutput::Deliver(Delivery {
            topic,
            publisher,
            seq: header.seq,
            peer,
            payload,
        }));
    }

    /// The application dropped received pooled messages: give the ranges back.
    fn release_received(&mut self, peer: PeerId, slots: Vec<SlotRef>) {
        if peer == LOCAL {
            for s in slots {
                let key = (SegmentId(s.segment), s.offset);
                if let Some(n) = self.local_held.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.local_held.remove(&key);
                    }
                    self.unref(key.0);
                }
            }
            return;
        }
        if !self.in_links.contains_key(&peer) || slots.is_empty() {
            return;
        }
        for chunk in slots.chunks(self.config.limits.max_release.max(1)) {
            let bytes = encode_data(&DataFrame::Release(chunk.to_vec()), &[]);
            self.out.push_back(DataOutput::Transmit {
                peer,
                bytes,
                attach: None,
            });
        }
    }
}
