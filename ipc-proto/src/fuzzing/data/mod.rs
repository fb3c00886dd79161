//! The [`data_ops`] target: its ops, and the harness that plays the driver of
//! one data plane and the peers at the ends of its links (`drive`: the ops; `check`: what comes
//! out, checked).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::data::{
    DataCmd, DataConfig, DataInput, DataPlane, MIN_SEGMENT, OUTGOING, Payload, Pool, Room, Routes,
    Seals, SegmentId, Terms,
};
use crate::ids::{Epoch, NodeId, PeerId, Seq};
use crate::machine::AccessPolicy;
use crate::topology::{NodeInfo, NodeView, View};
use crate::wire::{DataFrame, DataStats, Policy, SlotRef};

use super::common::{Clock, LOCAL_NODE, NODES, PEERS, POOL_BASE, TOPICS, Tick};
use super::data_decode::tiny_data_limits;
use super::spoke::Topic;

mod check;
mod drive;

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
    /// A frame, [sanitized](super::sanitize_data) so that it decodes, with this payload if it is an
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
        /// The link, `None` for [`LOCAL`](crate::data::LOCAL).
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
        told: BTreeMap::new(),
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
    /// Asked for with [`DataOutput::Connect`](crate::data::DataOutput::Connect), not up yet.
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
    /// [`DataOutput::Release`](crate::data::DataOutput::Release), idle ones are retired.
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
    /// Per publisher and topic, the highest sequence number the outputs told (a delivery,
    /// or a loss's last): in the order the driver takes them (a message handed back first),
    /// each delivery and loss must come after it.
    told: BTreeMap<(NodeId, String), u64>,
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
