//! The simulated group ([`Sim`]): N nodes, a virtual clock, links with seeded latency (ordered
//! per link, reordered across links), crashes, freezes (SIGSTOP) and resumptions, graceful
//! leaves, links lost, and the hub address modelled as one atomic resource.
//!
//! Each node runs a [`Member`] exactly as a driver would: outputs are drained after every
//! input, `ConnectHub` and `Bind` become attempts evaluated when they are processed (so
//! concurrent attempts race), accepted links get ids the "driver" (the simulator) chooses, and
//! what the member says goes over the simulated links.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};

use super::app::NodeIx;
use super::app::{Deaths, NodeData, UID, data_addr};
use super::options::SpawnOptions;
use crate::data::{DataConfig, Incoming};
use crate::doc::{DocEvt, DocLimits, HostEvt, PatchId, Update};
use crate::wire::{DataFrame, decode_data};
use crate::{
    AccessPolicy, Credentials, Event, HubConfig, HubEvt, Limits, Listener, Member, MemberCmd,
    MemberConfig, MemberEvt, MemberInput, MemberOutput, NodeId, OwnTopics, PeerId, SpokeCmd,
    SpokeConfig, Term,
};

/// Knobs of a simulation (set through [`SimBuilder`](super::SimBuilder)).
#[derive(Clone, Debug)]
pub(crate) struct SimConfig {
    pub(crate) latency: (Duration, Duration),
    /// Cut transmits into random chunks (exercises the deframers).
    pub(crate) chunking: bool,
    pub(crate) grace: Duration,
    pub(crate) keepalive: Duration,
    pub(crate) max_tombstones: usize,
    /// Bounds of every spoke and hub.
    pub(crate) limits: Limits,
    /// Bounds of every document host and replica.
    pub(crate) docs: DocLimits,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: (Duration::from_micros(20), Duration::from_millis(2)),
            chunking: true,
            grace: Duration::from_millis(200),
            keepalive: Duration::from_secs(2),
            max_tombstones: crate::DEFAULT_TOMBSTONES,
            limits: Limits::default(),
            docs: DocLimits::default(),
        }
    }
}

/// A patch as a document host broadcast it: the simulation's ground truth.
#[derive(Clone, Debug)]
pub(crate) struct Broadcast {
    /// The node whose application issued it.
    pub(crate) origin: NodeId,
    /// Its wall clock (what `$currentDate` sets).
    pub(crate) wall_ms: u64,
    pub(crate) update: Update,
}

/// What one node did and saw.
#[derive(Debug)]
pub struct SimNode {
    pub(crate) name: String,
    pub(crate) member: Member,
    pub(crate) alive: bool,
    pub(crate) frozen: bool,
    /// Left gracefully (or is leaving: its hub may still be closing).
    pub(crate) leaving: bool,
    /// Holds the hub address (a listener is open).
    pub(crate) listening: bool,
    pub(crate) started: Instant,
    pub(crate) ended: Option<Instant>,
    /// Topology events, with when they were emitted.
    pub(crate) events: Vec<(Instant, Event)>,
    /// Names of every request and event of the member, in order.
    pub(crate) transcript: Vec<&'static str>,
    /// Inputs that arrived while frozen.
    pending: VecDeque<SimInput>,
    /// When the node was frozen, and until when (for the truth of "continuously alive").
    pub(crate) frozen_spans: Vec<(Instant, Instant)>,
    /// The node's own topics after each command, from its start.
    pub(crate) own_log: Vec<(Instant, OwnTopics)>,
    /// What its document replica reported, in order.
    pub(crate) doc_evts: Vec<DocEvt>,
    /// The patches its application issued (those the replica took), in order.
    pub(crate) patches: Vec<(String, PatchId)>,
    /// The update of each patch in `patches`.
    pub(crate) updates: BTreeMap<PatchId, Update>,
    /// What its applications publish and take, and what they read.
    pub(crate) data: NodeData,
}

impl SimNode {
    /// The node's id in the group.
    pub fn id(&self) -> NodeId {
        self.member.id()
    }

    /// The name it was spawned with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its machine, for queries (view, history, hub, documents).
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Whether it is a member: running (maybe frozen) and not leaving.
    pub fn is_member(&self) -> bool {
        self.alive && !self.leaving
    }

    /// Whether its process runs (it has not crashed or finished leaving).
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// Whether it is stopped (SIGSTOP).
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// The topology events it reported, with when.
    pub fn events(&self) -> &[(Instant, Event)] {
        &self.events
    }

    /// The names of every request and event of its member, in order.
    pub fn transcript(&self) -> &[&'static str] {
        &self.transcript
    }

    /// What its document replica reported, in order.
    pub fn doc_evts(&self) -> &[DocEvt] {
        &self.doc_evts
    }

    /// The patches its application issued that its replica took: (document, patch).
    pub fn patches(&self) -> &[(String, PatchId)] {
        &self.patches
    }

    /// What its applications read from their subscriptions' queues ([`Sim::take`]), in
    /// order: each entry a topic and a message or a loss.
    pub fn received(&self) -> &[(std::sync::Arc<str>, Incoming<super::SimMessage>)] {
        &self.data.received
    }

    /// How many messages its applications published on each topic ([`Sim::publish`]); the
    /// last sequence number of each.
    pub fn published(&self) -> &BTreeMap<String, u64> {
        &self.data.published
    }
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum SimInput {
    /// A record, and whether it is more than a heartbeat.
    Record(PeerId, Vec<u8>, bool),
    /// A link this node's listener accepted.
    Accepted(PeerId, u32),
    /// A link this node's data listener accepted (from the node of that index).
    AcceptedData(PeerId, u32),
    /// Evaluate a data connection attempt now.
    ConnectData(PeerId, String),
    PeerDown(PeerId),
    /// Evaluate a connection attempt now.
    Connect(PeerId),
    /// Evaluate a bind attempt now.
    Bind,
    /// The driver's pidfd for this link's peer became readable.
    PeerExited(PeerId),
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct Delivery {
    pub(crate) node: NodeIx,
    pub(crate) input: SimInput,
}

/// One connection between a spoke and a hub, or (`data`) from a publisher (`spoke`) to a
/// subscriber's data address (`hub`). Each direction is a FIFO stream.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) spoke: NodeIx,
    pub(crate) spoke_peer: PeerId,
    pub(crate) hub: NodeIx,
    pub(crate) hub_peer: PeerId,
    pub(crate) up_last: Instant,
    pub(crate) down_last: Instant,
    /// A data link: records go whole (SEQPACKET), never split.
    pub(crate) data: bool,
}

/// A process of another uid that holds the hub address: it accepts connections and keeps
/// what it is sent.
#[derive(Debug, Default)]
pub(crate) struct Squatter {
    /// The links it accepted that are still open: (node, the node's peer id).
    links: BTreeSet<(NodeIx, PeerId)>,
    /// Connections it accepted.
    pub(crate) accepted: usize,
    /// Bytes it was sent.
    pub(crate) received: usize,
}

/// The squatter's credentials: another uid than the group's.
pub(crate) const SQUATTER: Credentials = Credentials {
    pid: 666,
    uid: 65534,
    gid: 65534,
};

/// A simulated group: every node a [`Member`] driven as a driver would, over a simulated
/// network and clock. Build it with [`Sim::builder`].
pub struct Sim {
    seed: u64,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) config: SimConfig,
    pub(crate) epoch: Instant,
    now: Instant,
    pub(crate) nodes: Vec<SimNode>,
    /// Who holds the hub address.
    pub(crate) bind: Option<NodeIx>,
    /// A process of another uid holding the hub address (then `bind` is `None`).
    pub(crate) squatter: Option<Squatter>,
    pub(crate) links: BTreeMap<u64, Link>,
    /// Each end's link: (node, peer id at that node) -> link.
    ends: BTreeMap<(NodeIx, PeerId), u64>,
    next_link: u64,
    queue: BinaryHeap<Reverse<(Instant, u64, Delivery)>>,
    order: u64,
    /// When a hub first declared each node gone (LEAVE minted).
    pub(crate) gone_at: BTreeMap<NodeId, Instant>,
    /// Nodes a hub purged after the grace period, with when.
    pub(crate) purged: Vec<(Instant, NodeId)>,
    /// Nodes a hub expelled by keepalive, and nodes whose links were lost, with when: their
    /// removal is no flap.
    pub(crate) expelled: Vec<(Instant, NodeId)>,
    /// Every hub started, with its node and term.
    pub(crate) hubs_started: Vec<(Instant, NodeIx, Term)>,
    pub(crate) steps: usize,
    /// Deliveries of protocol data (not heartbeats) not yet handled by their machine.
    pub(crate) data_in_flight: usize,
    /// Every patch a document host broadcast, by document and version; a later host's
    /// overwrites an earlier one's (versions lost in a failover are given again).
    pub(crate) doc_history: BTreeMap<(String, u64), Broadcast>,
    /// How many document messages of each kind
    /// ([`DocMsg::name`](crate::wire::DocMsg::name)) the nodes sent.
    pub(crate) doc_msgs: BTreeMap<&'static str, usize>,
    /// Pids, and the deaths the hubs confirmed.
    pub(crate) deaths: Deaths,
    /// Broken invariants seen while stepping (two hubs at once, a correct peer misbehaving).
    pub(crate) violations: Vec<String>,
    /// Broken invariants of the data plane seen while stepping (a payload that is not its
    /// sequence number, a segment attached).
    pub(crate) data_violations: Vec<String>,
}

impl Sim {
    pub(crate) fn new(seed: u64, config: SimConfig) -> Self {
        #[allow(clippy::disallowed_methods)] // the simulation's epoch; only durations are added
        let epoch = Instant::now();
        Self {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            epoch,
            now: epoch,
            nodes: Vec::new(),
            bind: None,
            squatter: None,
            links: BTreeMap::new(),
            ends: BTreeMap::new(),
            next_link: 1,
            queue: BinaryHeap::new(),
            order: 0,
            gone_at: BTreeMap::new(),
            purged: Vec::new(),
            expelled: Vec::new(),
            hubs_started: Vec::new(),
            steps: 0,
            data_in_flight: 0,
            doc_history: BTreeMap::new(),
            doc_msgs: BTreeMap::new(),
            deaths: Deaths::default(),
            violations: Vec::new(),
            data_violations: Vec::new(),
        }
    }

    /// The seed the simulation was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The simulated time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// A node.
    pub fn node(&self, ix: NodeIx) -> &SimNode {
        &self.nodes[ix.0]
    }

    /// Every node ever spawned, in spawn order (index `i` is `NodeIx(i)`).
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The `tracing` span of node `ix`: what its machine logs while the simulator drives it is
    /// logged inside it, with its name.
    pub(crate) fn span(&self, ix: NodeIx) -> tracing::Span {
        tracing::info_span!("node", name = %self.nodes[ix.0].name)
    }

    /// Milliseconds since the start, for messages.
    pub(crate) fn ms(&self, t: Instant) -> f64 {
        (t - self.epoch).as_secs_f64() * 1e3
    }

    // ---- the world ----

    /// Starts a node that announces and subscribes `own` before it joins.
    pub fn spawn(&mut self, name: &str, own: &OwnTopics) -> NodeIx {
        self.spawn_with(name, own, &SpawnOptions::default())
    }

    /// Starts a node as [`spawn`](Self::spawn) does, with `options`: one that is no document
    /// witness, or may not run the hub.
    pub fn spawn_with(&mut self, name: &str, own: &OwnTopics, options: &SpawnOptions) -> NodeIx {
        let ix = NodeIx(self.nodes.len());
        let _span = tracing::info_span!("node", name = %name).entered();
        let rng_seed = self.rng.next_u64();
        // The id the spoke draws from its seed (drawn here the same way, not set: the spoke's
        // random sequence stays what it was before the simulation had a data plane).
        let id = crate::rng::Rng::new(rng_seed).node_id();
        let mut data = DataConfig::new(id);
        data.access = AccessPolicy::same_uid(UID);
        let mut spoke = SpokeConfig::default();
        spoke
            .rng_seed(rng_seed)
            .name(name)
            .data_addr(data_addr(ix))
            .keepalive(self.config.keepalive)
            .hub_eligible(options.hub_eligible)
            .access(AccessPolicy::same_uid(UID));
        spoke.max_tombstones = self.config.max_tombstones;
        spoke.limits = self.config.limits.clone();
        let mut hub = HubConfig::default();
        hub.grace(self.config.grace)
            .keepalive(self.config.keepalive)
            .access(AccessPolicy::same_uid(UID));
        hub.max_tombstones = self.config.max_tombstones;
        hub.limits = self.config.limits.clone();
        let mut member = Member::new(
            MemberConfig {
                spoke,
                hub,
                data: Some(data),
                docs: self.config.docs.clone(),
                witness: options.witness,
            },
            self.now,
        );
        let now = self.now;
        let mut cmd = |c: SpokeCmd| {
            member
                .handle(now, MemberInput::Cmd(MemberCmd::Spoke(c)))
                .expect("valid")
        };
        for (topic, mime) in &own.publishes {
            cmd(SpokeCmd::Announce {
                topic: topic.clone(),
                mime: mime.clone(),
            });
        }
        for topic in &own.subscribes {
            cmd(SpokeCmd::Subscribe {
                topic: topic.clone(),
            });
        }
        cmd(SpokeCmd::Join);
        self.nodes.push(SimNode {
            name: name.into(),
            member,
            alive: true,
            frozen: false,
            leaving: false,
            listening: false,
            started: self.now,
            ended: None,
            events: Vec::new(),
            transcript: Vec::new(),
            pending: VecDeque::new(),
            frozen_spans: Vec::new(),
            own_log: vec![(self.now, own.clone())],
            doc_evts: Vec::new(),
            patches: Vec::new(),
            updates: BTreeMap::new(),
            data: NodeData::default(),
        });
        debug_assert_eq!(
            self.nodes[ix.0].id(),
            id,
            "the data plane's id is the spoke's"
        );
        self.drain(ix);
        ix
    }

    /// Gives a node's application command.
    pub fn cmd(&mut self, ix: NodeIx, cmd: SpokeCmd) {
        let _span = self.span(ix).entered();
        let now = self.now;
        let n = &mut self.nodes[ix.0];
        if !n.is_member() || n.frozen {
            return;
        }
        n.member
            .handle(now, MemberInput::Cmd(MemberCmd::Spoke(cmd)))
            .expect("valid command");
        let own = n.member.spoke().own_topics().clone();
        n.own_log.push((now, own));
        self.drain(ix);
    }

    /// Kills a node: its links hang up, the hub address is freed if it held it.
    pub fn crash(&mut self, ix: NodeIx) {
        let n = &mut self.nodes[ix.0];
        if !n.alive {
            return;
        }
        n.alive = false;
        n.listening = false;
        let lost = n
            .pending
            .iter()
            .filter(|i| matches!(i, SimInput::Record(_, _, true)))
            .count();
        self.data_in_flight -= lost;
        let n = &mut self.nodes[ix.0];
        n.pending.clear();
        n.ended.get_or_insert(self.now);
        if n.frozen {
            n.frozen = false;
            if let Some(span) = n.frozen_spans.last_mut() {
                span.1 = self.now;
            }
        }
        if self.bind == Some(ix) {
            self.bind = None;
        }
        let ids: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| l.spoke == ix || l.hub == ix)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.hang_up(id, ix);
        }
    }

    /// Stops a node (SIGSTOP): what arrives waits, timers do not fire.
    pub fn freeze(&mut self, ix: NodeIx) {
        let now = self.now;
        let n = &mut self.nodes[ix.0];
        if n.alive && !n.frozen && !n.leaving {
            n.frozen = true;
            n.frozen_spans.push((now, now));
        }
    }

    /// Resumes a frozen node (SIGCONT): it handles what arrived, in order.
    pub fn resume(&mut self, ix: NodeIx) {
        let now = self.now;
        let n = &mut self.nodes[ix.0];
        if !n.alive || !n.frozen {
            return;
        }
        n.frozen = false;
        if let Some(span) = n.frozen_spans.last_mut() {
            span.1 = now;
        }
        let pending = std::mem::take(&mut n.pending);
        for input in pending {
            self.feed(ix, input);
        }
        self.fire_timers(ix);
    }

    #[cfg(test)] // the hostile processes are the crate's own scenarios
    /// `count` connections to the hub address that never say a word (a hostile process of the
    /// same uid): the hub's listener accepts them; they have no other end, so what the hub
    /// sends them is lost and closing them is all it can do. Returns how many were aimed at a
    /// listener (none without a hub).
    pub(crate) fn silent_connections(&mut self, count: usize) -> usize {
        let Some(hub) = self
            .bind
            .filter(|h| self.nodes[h.0].alive && self.nodes[h.0].listening)
        else {
            return 0;
        };
        let at = self.now + self.latency();
        for _ in 0..count {
            let id = self.next_link;
            self.next_link += 1;
            self.schedule(
                at,
                Delivery {
                    node: hub,
                    input: SimInput::Accepted(PeerId(id), hub.0 as u32),
                },
            );
        }
        count
    }

    /// Leaves gracefully: goodbye to the hub, and if the node hosts the hub, the hub closes
    /// once it has sequenced that goodbye.
    pub fn leave(&mut self, ix: NodeIx) {
        let _span = self.span(ix).entered();
        let now = self.now;
        let n = &mut self.nodes[ix.0];
        if !n.is_member() || n.frozen {
            return;
        }
        n.leaving = true;
        n.ended.get_or_insert(now);
        n.member
            .handle(now, MemberInput::Cmd(MemberCmd::Spoke(SpokeCmd::Leave)))
            .expect("leave once");
        self.drain(ix);
    }

    /// Loses every link of a node at once (a connection reset): both ends see the hangup
    /// after what is in flight to them; the node keeps running and reconnects.
    pub fn cut_links(&mut self, ix: NodeIx) {
        let ids: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| l.spoke == ix || l.hub == ix)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            let spoke = self.links.get(&id).expect("listed").spoke;
            let hub = self.links.get(&id).expect("listed").hub;
            let (lat_up, lat_down) = (self.latency(), self.latency());
            let l = self.links.remove(&id).expect("listed");
            // On one host a link ends only with a process: each end may take the other for
            // gone, and that is no flap.
            for end in [spoke, hub].into_iter().filter(|_| !l.data) {
                let id = self.nodes[end.0].id();
                self.expelled.push((self.now, id));
            }
            self.ends.remove(&(spoke, l.spoke_peer));
            self.ends.remove(&(hub, l.hub_peer));
            let down = (self.now + lat_down).max(l.down_last);
            let up = (self.now + lat_up).max(l.up_last);
            let spoke_down = SimInput::PeerDown(l.spoke_peer);
            let hub_down = SimInput::PeerDown(l.hub_peer);
            self.schedule(
                down,
                Delivery {
                    node: spoke,
                    input: spoke_down,
                },
            );
            self.schedule(
                up,
                Delivery {
                    node: hub,
                    input: hub_down,
                },
            );
        }
    }

    #[cfg(test)] // the hostile processes are the crate's own scenarios
    /// A process of another uid binds the hub address, if it is free; `false` if a node holds
    /// it.
    pub(crate) fn squat(&mut self) -> bool {
        if self.bind.is_some() {
            return false;
        }
        self.squatter.get_or_insert_with(Squatter::default);
        true
    }

    #[cfg(test)] // the hostile processes are the crate's own scenarios
    /// The squatter dies: the address is free, its links hang up.
    pub(crate) fn end_squat(&mut self) -> Option<Squatter> {
        let squatter = self.squatter.take()?;
        for &(node, peer) in &squatter.links {
            let at = self.now + self.latency();
            self.schedule(
                at,
                Delivery {
                    node,
                    input: SimInput::PeerDown(peer),
                },
            );
        }
        Some(squatter)
    }

    // ---- running ----

    pub(crate) fn latency(&mut self) -> Duration {
        let (lo, hi) = self.config.latency;
        let span = (hi - lo).as_nanos() as u64;
        lo + Duration::from_nanos(if span == 0 {
            0
        } else {
            self.rng.next_u64() % span
        })
    }

    pub(crate) fn schedule(&mut self, at: Instant, d: Delivery) {
        if matches!(d.input, SimInput::Record(_, _, true)) {
            self.data_in_flight += 1;
        }
        self.order += 1;
        self.queue.push(Reverse((at, self.order, d)));
    }

    /// When the next thing happens: a delivery or a timer of a running node.
    fn next_time(&self) -> Option<Instant> {
        let delivery = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let timer = self
            .nodes
            .iter()
            .filter(|n| n.alive && !n.frozen)
            .filter_map(|n| n.member.poll_timeout())
            .min();
        match (delivery, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the earliest delivery or timer; `false` if nothing is left to do.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(t);
        self.steps += 1;
        let due_delivery = self
            .queue
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= self.now);
        if due_delivery {
            let Reverse((_, _, d)) = self.queue.pop().expect("peeked");
            self.deliver(d);
        } else {
            for ix in 0..self.nodes.len() {
                self.fire_timers(NodeIx(ix));
            }
        }
        // At most one hub runs at any time, and it holds the address.
        let hubs: Vec<_> = self.hubs().collect();
        if hubs.len() > 1 || hubs.iter().any(|&h| self.bind != Some(h)) {
            let at = self.ms(self.now);
            self.violations.push(format!(
                "at {at:.1} ms hubs {hubs:?} ran, the address held by {:?}",
                self.bind
            ));
        }
        true
    }

    /// Runs until `done` holds, or fails after `max_steps` steps.
    pub fn run_until(
        &mut self,
        max_steps: usize,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<usize, String> {
        for taken in 0..max_steps {
            if done(self) {
                return Ok(taken);
            }
            if !self.step() {
                return Err(format!("nothing left to do after {taken} steps"));
            }
        }
        if done(self) {
            return Ok(max_steps);
        }
        Err(format!(
            "not done after {max_steps} steps at {:.1} ms",
            self.ms(self.now)
        ))
    }

    /// Runs until the group has [converged](Self::converged), or fails after `max_steps` steps
    /// with why it has not and every node's state.
    pub fn settle(&mut self, max_steps: usize) -> Result<usize, String> {
        self.run_until(max_steps, Self::converged)
            .map_err(|e| format!("{e}: {:?}\n{}", self.divergence(), self.describe()))
    }

    /// Runs every step up to `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.next_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    fn deliver(&mut self, d: Delivery) {
        let n = &mut self.nodes[d.node.0];
        if !n.alive {
            if matches!(d.input, SimInput::Record(_, _, true)) {
                self.data_in_flight -= 1;
            }
            return;
        }
        if n.frozen {
            n.pending.push_back(d.input);
            return;
        }
        self.feed(d.node, d.input);
    }

    fn feed(&mut self, ix: NodeIx, input: SimInput) {
        let _span = self.span(ix).entered();
        let now = self.now;
        let input = match input {
            SimInput::Connect(peer) => return self.attempt_connect(ix, peer),
            SimInput::ConnectData(peer, addr) => {
                return self.attempt_connect_data(ix, peer, &addr);
            }
            SimInput::AcceptedData(peer, from) => return self.accepted_data(ix, peer, from),
            SimInput::Bind => return self.attempt_bind(ix),
            SimInput::Record(peer, data, real) => {
                if real {
                    self.data_in_flight -= 1;
                }
                let n = &mut self.nodes[ix.0];
                // Every other inline message on a data link comes as a ring's reader hands
                // one on: written into the member's buffer, and handed back to be delivered
                // before the outputs when none waits ahead of it. The same as its record in
                // every way (`Member::receive_payload_direct`).
                if real
                    && let Ok((DataFrame::Inline(header), start)) =
                        decode_data(&data, usize::MAX, usize::MAX)
                    && header.seq % 2 == 0
                    && let Some(payload) = data.get(start..)
                {
                    let mut buf = n.member.payload_buffer(payload.len());
                    buf.as_mut().copy_from_slice(payload);
                    if let Some(d) = n.member.receive_payload_direct(now, peer, header, buf) {
                        self.on_deliver(ix, d);
                    }
                    return self.drain(ix);
                }
                let input = MemberInput::Record {
                    peer,
                    data: &data,
                    segments: &[],
                };
                n.member.handle(now, input).expect("peer inputs never fail");
                return self.drain(ix);
            }
            SimInput::Accepted(peer, from) => {
                // A listener that closed meanwhile took nothing: the connection is reset.
                if !self.nodes[ix.0].listening {
                    if let Some(&id) = self.ends.get(&(ix, peer)) {
                        self.hang_up(id, ix);
                    }
                    return;
                }
                let cred = Some(self.cred_of(NodeIx(from as usize)));
                MemberInput::Accepted {
                    peer,
                    listener: Listener::Hub,
                    cred,
                }
            }
            SimInput::PeerDown(peer) => MemberInput::PeerDown(peer),
            SimInput::PeerExited(peer) => MemberInput::PeerExited(peer),
        };
        let n = &mut self.nodes[ix.0];
        n.member.handle(now, input).expect("peer inputs never fail");
        self.drain(ix);
    }

    fn fire_timers(&mut self, ix: NodeIx) {
        let now = self.now;
        if !self.nodes[ix.0].alive || self.nodes[ix.0].frozen {
            return;
        }
        let _span = self.span(ix).entered();
        let n = &mut self.nodes[ix.0];
        if n.member.poll_timeout().is_some_and(|t| t <= now) {
            n.member.handle_timeout(now);
        }
        self.drain(ix);
    }

    fn attempt_connect(&mut self, ix: NodeIx, spoke_peer: PeerId) {
        let now = self.now;
        // A listener accepts into its backlog even while its process is stopped.
        if let Some(squatter) = &mut self.squatter {
            squatter.accepted += 1;
            squatter.links.insert((ix, spoke_peer));
            let n = &mut self.nodes[ix.0];
            let input = MemberInput::Connected {
                peer: spoke_peer,
                cred: Some(SQUATTER),
            };
            n.member
                .handle(now, input)
                .expect("driver reports never fail");
            return self.drain(ix);
        }
        let holder = self
            .bind
            .filter(|h| self.nodes[h.0].alive && self.nodes[h.0].listening);
        let Some(hub) = holder else {
            return self.connect_failed(ix, spoke_peer);
        };
        self.open_link(ix, spoke_peer, hub, false);
    }

    /// Tells node `ix` that its connection `peer` failed.
    pub(crate) fn connect_failed(&mut self, ix: NodeIx, peer: PeerId) {
        let now = self.now;
        self.nodes[ix.0]
            .member
            .handle(now, MemberInput::ConnectFailed(peer))
            .expect("driver reports never fail");
        self.drain(ix);
    }

    /// Opens a link from `ix` (its end `peer`) to node `to`, a hub link or (`data`) a data
    /// link: `to` accepts after the latency, and what `ix` sends queues behind the accept;
    /// `ix` is told `Connected` at once, with `to`'s credentials.
    pub(crate) fn open_link(&mut self, ix: NodeIx, peer: PeerId, to: NodeIx, data: bool) {
        let now = self.now;
        // The "driver" of `to` numbers the links it accepts (below the member's range).
        let id = self.new_link();
        let to_peer = PeerId(id);
        let at = now + self.latency();
        let link = Link {
            spoke: ix,
            spoke_peer: peer,
            hub: to,
            hub_peer: to_peer,
            up_last: at,
            down_last: now,
            data,
        };
        self.insert_link(id, link);
        let from = ix.0 as u32;
        let input = if data {
            SimInput::AcceptedData(to_peer, from)
        } else {
            SimInput::Accepted(to_peer, from)
        };
        self.schedule(at, Delivery { node: to, input });
        let input = MemberInput::Connected {
            peer,
            cred: Some(self.cred_of(to)),
        };
        self.nodes[ix.0]
            .member
            .handle(now, input)
            .expect("driver reports never fail");
        self.drain(ix);
    }

    fn attempt_bind(&mut self, ix: NodeIx) {
        let now = self.now;
        let won = self.bind.is_none() && self.squatter.is_none() && self.nodes[ix.0].alive;
        if won {
            self.bind = Some(ix);
            self.nodes[ix.0].listening = true;
        }
        let n = &mut self.nodes[ix.0];
        n.member
            .handle(now, MemberInput::Bound { won })
            .expect("driver reports never fail");
        self.drain(ix);
    }

    /// Acts on everything a node's member asked for.
    pub(crate) fn drain(&mut self, ix: NodeIx) {
        let now = self.now;
        while let Some(out) = self.nodes[ix.0].member.poll_output() {
            let n = &mut self.nodes[ix.0];
            match out {
                MemberOutput::ConnectHub { peer } => {
                    n.transcript.push("ConnectHub");
                    let at = now + Duration::from_micros(10);
                    self.schedule(
                        at,
                        Delivery {
                            node: ix,
                            input: SimInput::Connect(peer),
                        },
                    );
                }
                MemberOutput::Bind => {
                    n.transcript.push("Bind");
                    let at = now + Duration::from_micros(10);
                    self.schedule(
                        at,
                        Delivery {
                            node: ix,
                            input: SimInput::Bind,
                        },
                    );
                }
                MemberOutput::Unbind => {
                    n.listening = false;
                    if self.bind == Some(ix) {
                        self.bind = None;
                    }
                    // Connections the hub had not accepted yet are reset with the listener.
                    let pending: Vec<u64> = self
                        .links
                        .iter()
                        .filter(|(_, l)| l.hub == ix && !l.data)
                        .map(|(&id, _)| id)
                        .collect();
                    for id in pending {
                        self.hang_up(id, ix);
                    }
                }
                MemberOutput::Transmit { peer, bytes, .. }
                    if self
                        .squatter
                        .as_ref()
                        .is_some_and(|s| s.links.contains(&(ix, peer))) =>
                {
                    self.squatter.as_mut().expect("checked").received += bytes.len();
                }
                MemberOutput::Disconnect(peer)
                    if self
                        .squatter
                        .as_ref()
                        .is_some_and(|s| s.links.contains(&(ix, peer))) =>
                {
                    self.squatter
                        .as_mut()
                        .expect("checked")
                        .links
                        .remove(&(ix, peer));
                }
                MemberOutput::Transmit {
                    peer,
                    bytes,
                    attach,
                } => {
                    if attach.is_some() {
                        self.on_attach(ix, peer);
                    }
                    self.record_doc(&bytes);
                    self.transmit(ix, peer, bytes);
                }
                MemberOutput::Disconnect(peer) => {
                    if let Some(&id) = self.ends.get(&(ix, peer)) {
                        self.hang_up(id, ix);
                    }
                }
                MemberOutput::ConnectData { peer, addr } => {
                    n.transcript.push("ConnectData");
                    let at = now + Duration::from_micros(10);
                    self.schedule(
                        at,
                        Delivery {
                            node: ix,
                            input: SimInput::ConnectData(peer, addr),
                        },
                    );
                }
                MemberOutput::Deliver(d) => self.on_deliver(ix, d),
                MemberOutput::Lost(l) => self.on_lost(ix, l),
                // Inline payloads only: no segment to close.
                MemberOutput::Release(_) => {}
                // The simulated listeners never run out of descriptors.
                MemberOutput::PauseAccepting | MemberOutput::ResumeAccepting => {
                    unreachable!("no accept fails in the simulation")
                }
                MemberOutput::Evt(evt) => {
                    n.transcript.push(evt.name());
                    match evt {
                        MemberEvt::Topology(e) => n.events.push((now, e)),
                        MemberEvt::BecameHub => {
                            let term = n.member.hub_machine().expect("became hub").term();
                            self.hubs_started.push((now, ix, term));
                        }
                        MemberEvt::Left => n.alive = false,
                        MemberEvt::Hub(HubEvt::PeerLeft {
                            node: Some(node), ..
                        }) => {
                            self.gone_at.entry(node).or_insert(now);
                        }
                        MemberEvt::Hub(HubEvt::PeerExpelled {
                            node: Some(node), ..
                        }) => {
                            self.gone_at.entry(node).or_insert(now);
                            self.expelled.push((now, node));
                        }
                        MemberEvt::Hub(HubEvt::NodePurged { node }) => {
                            self.gone_at.entry(node).or_insert(now);
                            self.purged.push((now, node));
                        }
                        MemberEvt::Hub(HubEvt::NodeExited { node }) => {
                            self.gone_at.entry(node).or_insert(now);
                            self.exit_reported(ix, node);
                        }
                        MemberEvt::PeerMisbehaved { .. }
                        | MemberEvt::Hub(HubEvt::PeerMisbehaved { .. })
                        | MemberEvt::Doc(DocEvt::HubMisbehaved { .. })
                        | MemberEvt::DocHost(HostEvt::PeerMisbehaved { .. }) => {
                            let at = (now - self.epoch).as_secs_f64() * 1e3;
                            let name = &self.nodes[ix.0].name;
                            self.violations.push(format!(
                                "at {at:.1} ms {name} saw a correct peer misbehave: {evt:?}"
                            ));
                        }
                        MemberEvt::Doc(e) => n.doc_evts.push(e),
                        MemberEvt::PeerRefused { .. } => {
                            let name = &self.nodes[ix.0].name;
                            let at = self.ms(now);
                            self.data_violations
                                .push(format!("at {at:.1} ms {name} refused a peer: {evt:?}"));
                        }
                        _ => {}
                    }
                }
            }
        }
        if self.nodes[ix.0].alive {
            self.read_some(ix);
        } else {
            self.hang_up_data(ix);
        }
    }

    fn transmit(&mut self, from: NodeIx, peer: PeerId, bytes: Vec<u8>) {
        let Some(&id) = self.ends.get(&(from, peer)) else {
            return;
        };
        let lat = self.latency();
        let data = bytes != crate::wire::encode(&crate::wire::Frame::Heartbeat);
        let chunks = if self.links[&id].data {
            vec![bytes]
        } else {
            self.chunks(bytes)
        };
        let l = self.links.get_mut(&id).expect("ends point at links");
        let from_spoke = l.spoke == from && l.spoke_peer == peer;
        let (last, node, to) = if from_spoke {
            (&mut l.up_last, l.hub, l.hub_peer)
        } else {
            (&mut l.down_last, l.spoke, l.spoke_peer)
        };
        let at = (self.now + lat).max(*last);
        *last = at;
        for c in chunks {
            self.schedule(
                at,
                Delivery {
                    node,
                    input: SimInput::Record(to, c, data),
                },
            );
        }
    }

    /// A new link id (the accepting end's peer id too).
    pub(crate) fn new_link(&mut self) -> u64 {
        let id = self.next_link;
        self.next_link += 1;
        id
    }

    /// Opens a link: both ends point at it.
    pub(crate) fn insert_link(&mut self, id: u64, link: Link) {
        self.ends.insert((link.spoke, link.spoke_peer), id);
        self.ends.insert((link.hub, link.hub_peer), id);
        self.links.insert(id, link);
    }

    /// The links of `ix` (data links or hub links).
    pub(crate) fn links_of(&self, ix: NodeIx, data: bool) -> Vec<u64> {
        self.links
            .iter()
            .filter(|(_, l)| l.data == data && (l.spoke == ix || l.hub == ix))
            .map(|(&id, _)| id)
            .collect()
    }

    fn chunks(&mut self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        if !self.config.chunking || bytes.len() < 2 || !self.rng.next_u64().is_multiple_of(4) {
            return vec![bytes];
        }
        let cut = 1 + (self.rng.next_u64() as usize) % (bytes.len() - 1);
        vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]
    }

    /// One end closes (or dies): the other end sees the hangup after what is in flight to it.
    pub(crate) fn hang_up(&mut self, id: u64, closer: NodeIx) {
        let lat = self.latency();
        let Some(l) = self.links.remove(&id) else {
            return;
        };
        self.ends.remove(&(l.spoke, l.spoke_peer));
        self.ends.remove(&(l.hub, l.hub_peer));
        let now = self.now;
        if closer == l.spoke {
            let at = (now + lat).max(l.up_last);
            self.schedule(
                at,
                Delivery {
                    node: l.hub,
                    input: SimInput::PeerDown(l.hub_peer),
                },
            );
        }
        if closer == l.hub {
            let at = (now + lat).max(l.down_last);
            self.schedule(
                at,
                Delivery {
                    node: l.spoke,
                    input: SimInput::PeerDown(l.spoke_peer),
                },
            );
        }
    }
}
