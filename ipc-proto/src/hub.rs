//! The hub: sequences the group's history and keeps every spoke up to date.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, error, trace, warn};

use crate::error::CmdError;
use crate::exits::Exited;
use crate::history::{DEFAULT_TOMBSTONES, History, Horizon, Verdict};
use crate::ids::{Credentials, Epoch, NodeId, PeerId, Seq, Term};
use crate::keepalive::Keepalive;
use crate::machine::{AccessPolicy, Input, Output, Transmit};
use crate::rng::Rng;
use crate::timer::{Timer, TimerTable};
use crate::topology::{Change, NodeInfo, OwnTopics, Record};
use crate::wire::{CloseReason, Deframer, Frame, Limits, OwnChange, Welcome, encode};

/// How a hub behaves; `Default` plus chained setters.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Seed of the hub's random choices (record uids). Drivers draw it from the OS.
    pub rng_seed: u64,
    /// How long a hub started from an inherited history waits for that history's nodes to
    /// reconnect before it declares them gone. Nodes confirmed dead (their processes exited:
    /// [`MemberInput::PeerExited`](crate::MemberInput::PeerExited)) do not wait for it: they
    /// are declared gone at once ([`HubEvt::NodeExited`]). Default 200 ms.
    pub grace: Duration,
    /// The keepalive limit: a spoke silent for this long is expelled. Default 2 s. Set it
    /// with [`keepalive`](Self::keepalive), which also sets the heartbeat to a quarter of it.
    pub keepalive: Duration,
    /// The heartbeat interval: how often the hub sends a heartbeat to a spoke, or more often
    /// if the spoke asked for a shorter interval in its `Hello` (see [`Keepalive`]). Default
    /// 500 ms. [`Keepalive::check`] tells whether the two make sense together.
    pub heartbeat: Duration,
    /// Who may join. Default: nobody (drivers set [`AccessPolicy::same_uid`]).
    pub access: AccessPolicy,
    /// Bounds on what spokes may send.
    pub limits: Limits,
    /// How many removal records the history keeps. Default [`DEFAULT_TOMBSTONES`].
    pub max_tombstones: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            rng_seed: 0,
            grace: Duration::from_millis(200),
            keepalive: Duration::from_secs(2),
            heartbeat: Duration::from_millis(500),
            access: AccessPolicy::default(),
            limits: Limits::default(),
            max_tombstones: DEFAULT_TOMBSTONES,
        }
    }
}

impl HubConfig {
    /// Sets [`rng_seed`](Self::rng_seed).
    pub fn rng_seed(&mut self, seed: u64) -> &mut Self {
        self.rng_seed = seed;
        self
    }

    /// Sets [`grace`](Self::grace).
    pub fn grace(&mut self, grace: Duration) -> &mut Self {
        self.grace = grace;
        self
    }

    /// Sets the keepalive limit, [`keepalive`](Self::keepalive), and a
    /// [`heartbeat`](Self::heartbeat) of a quarter of it; call [`heartbeat`](Self::heartbeat)
    /// afterwards for another interval.
    pub fn keepalive(&mut self, timeout: Duration) -> &mut Self {
        self.keepalive = timeout;
        self.heartbeat = timeout / 4;
        self
    }

    /// Sets the heartbeat interval, [`heartbeat`](Self::heartbeat).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ipc_proto::{Keepalive, HubConfig};
    /// let mut config = HubConfig::default();
    /// config.keepalive(Duration::from_secs(3)).heartbeat(Duration::from_millis(200));
    /// assert_eq!(config.keepalive_figures(), Keepalive {
    ///     heartbeat: Duration::from_millis(200),
    ///     limit: Duration::from_secs(3),
    /// });
    /// assert!(config.keepalive_figures().check().is_ok());
    /// ```
    pub fn heartbeat(&mut self, interval: Duration) -> &mut Self {
        self.heartbeat = interval;
        self
    }

    /// The heartbeat interval and the keepalive limit.
    pub fn keepalive_figures(&self) -> Keepalive {
        Keepalive {
            heartbeat: self.heartbeat,
            limit: self.keepalive,
        }
    }

    /// Sets [`access`](Self::access).
    pub fn access(&mut self, access: AccessPolicy) -> &mut Self {
        self.access = access;
        self
    }
}

/// What a new hub starts from: the history and term knowledge of the spoke that won the bind.
///
/// Opaque: only [`Spoke::hub_seed`](crate::Spoke::hub_seed) makes one (or
/// [`HubSeed::empty`] for a hub with no past).
#[derive(Clone, Debug)]
pub struct HubSeed {
    pub(crate) node: NodeId,
    pub(crate) term: Term,
    pub(crate) history: History,
}

impl HubSeed {
    /// A seed with no history, for a hub hosted by `node`.
    pub fn empty(node: NodeId) -> Self {
        Self {
            node,
            term: Term(0),
            history: History::default(),
        }
    }
}

/// What a hub reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubEvt {
    /// A spoke completed its introduction and got the snapshot (edge).
    Introduced {
        /// The link.
        peer: PeerId,
        /// Its node, or `None` for an observer.
        node: Option<NodeId>,
        /// What became of the records it sent.
        merged: MergeStats,
    },
    /// A link was refused and closed (edge).
    PeerRefused {
        /// The link.
        peer: PeerId,
        /// Why.
        reason: CloseReason,
    },
    /// A peer broke the protocol; the link is closed (edge).
    PeerMisbehaved {
        /// The link.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
    /// A peer was silent for longer than the keepalive timeout; the link is closed and its node
    /// declared gone (edge).
    PeerExpelled {
        /// The link.
        peer: PeerId,
        /// Its node, if it had introduced itself as a member.
        node: Option<NodeId>,
    },
    /// A peer said goodbye or its link went down (edge).
    PeerLeft {
        /// The link.
        peer: PeerId,
        /// Its node, if it had introduced itself as a member.
        node: Option<NodeId>,
    },
    /// A node of the inherited history did not reconnect within the grace period and was
    /// declared gone (edge).
    NodePurged {
        /// The node.
        node: NodeId,
    },
    /// A node the history shows as joined, not connected to this hub, was confirmed dead (its
    /// process exited: [`MemberInput::PeerExited`](crate::MemberInput::PeerExited)) and was
    /// declared gone at once, without waiting for the grace period (edge, once per node).
    NodeExited {
        /// The node.
        node: NodeId,
    },
    /// A synced member sent a shared-document message ([`Frame::Doc`]), for the document
    /// host (edge, once per frame). [`Member`](crate::Member) feeds it to its
    /// [`DocHost`](crate::doc::DocHost) and does not report it.
    Doc {
        /// The link.
        peer: PeerId,
        /// Its node: the origin of its patches.
        node: NodeId,
        /// One encoded document message, unchecked.
        data: Vec<u8>,
    },
    /// A synced member has sent the opening of every document it has open
    /// ([`Frame::DocReady`]; edge, once per link).
    DocReady {
        /// The link.
        peer: PeerId,
        /// Its node.
        node: NodeId,
    },
}

impl HubEvt {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Introduced { .. } => "Introduced",
            Self::PeerRefused { .. } => "PeerRefused",
            Self::PeerMisbehaved { .. } => "PeerMisbehaved",
            Self::PeerExpelled { .. } => "PeerExpelled",
            Self::PeerLeft { .. } => "PeerLeft",
            Self::NodePurged { .. } => "NodePurged",
            Self::NodeExited { .. } => "NodeExited",
            Self::Doc { .. } => "Doc",
            Self::DocReady { .. } => "DocReady",
        }
    }
}

/// What became of the history records one spoke sent (see [`Verdict`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// New knowledge, now part of the hub's history.
    pub accepted: usize,
    /// Records the hub already held.
    pub duplicates: usize,
    /// Records older than what the hub holds, or about nodes connected to this hub (which
    /// speak for themselves).
    pub superseded: usize,
    /// Records that contradicted the hub's history; the spoke was resynced.
    pub conflicts: usize,
}

/// Commands for a hub.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubCmd {
    /// Say goodbye to every spoke and close every link: the hub's node is leaving.
    Close,
}

impl HubCmd {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Close => "Close",
        }
    }
}

/// One link, through its states:
///
/// ```text
///  PeerUp ──► AwaitingHello ──Hello──► Introducing ──IntroEnd──► Synced
///                   │                        │                      │
///                   └──── refused, misbehaved, expelled, goodbye, PeerDown ──► (forgotten)
/// ```
#[derive(Debug)]
struct Peer {
    cred: Option<Credentials>,
    deframer: Deframer,
    last_heard: Instant,
    /// Heartbeats to this peer: at the shorter of the hub's interval and the spoke's.
    heartbeat: Duration,
    next_heartbeat: Instant,
    state: PeerState,
}

#[derive(Debug)]
enum PeerState {
    AwaitingHello,
    Introducing {
        member: Option<NodeInfo>,
        horizon: Horizon,
        own: OwnTopics,
        received: usize,
        merged: MergeStats,
    },
    Synced {
        member: Option<NodeId>,
    },
}

impl PeerState {
    fn name(&self) -> &'static str {
        match self {
            Self::AwaitingHello => "AwaitingHello",
            Self::Introducing { .. } => "Introducing",
            Self::Synced { .. } => "Synced",
        }
    }

    fn member(&self) -> Option<NodeId> {
        match self {
            Self::AwaitingHello => None,
            Self::Introducing { member, .. } => member.as_ref().map(|m| m.id),
            Self::Synced { member } => *member,
        }
    }
}

/// The hub machine: accepts spokes, sequences their changes into the group's history and keeps
/// every spoke's copy current.
///
/// Drive it as the crate docs describe: feed inputs with [`handle`](Self::handle) and
/// [`handle_timeout`](Self::handle_timeout), then drain [`poll_output`](Self::poll_output) until
/// `None`, and sleep until [`poll_timeout`](Self::poll_timeout). Time passed in never moves
/// backwards: an earlier `now` counts as the latest one seen.
///
/// Guarantees:
/// - every record gets a position above any the hub has seen and a random non-zero uid,
///   LEAVE records included;
/// - a novel change that the live state already shows is not minted again;
/// - a spoke gets the whole history once, after its introduction, then each new record once:
///   the cost of a record is one frame per spoke;
/// - a spoke that disconnects or says goodbye leaves at once; one silent for longer than
///   [`HubConfig::keepalive`] is expelled; a node of the inherited history that has not
///   reconnected within [`HubConfig::grace`] is declared gone, and one confirmed dead (its
///   process exited) is declared gone at once: the gathering after a takeover ends as soon as
///   every node of the history has reconnected or been confirmed dead
///   ([`is_gathering`](Self::is_gathering));
/// - a node confirmed dead is never brought back: records about it that other spokes'
///   histories still hold are ignored (until it introduces itself, which proves it alive);
/// - a node connected to this hub speaks for itself: once its introduction is in, records about
///   it in other spokes' histories are ignored, and its introduction corrected whatever the
///   history said.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    rng: Rng,
    last_now: Instant,
    node: NodeId,
    term: Term,
    mint_epoch: Epoch,
    mint_counter: u32,
    history: History,
    peers: BTreeMap<PeerId, Peer>,
    /// Members that introduced themselves (or are doing so), and their link.
    members: BTreeMap<NodeId, PeerId>,
    /// Nodes the history shows as joined that have no link to this hub: when they are gone.
    orphans: BTreeMap<NodeId, Instant>,
    timers: TimerTable,
    out: VecDeque<Output<HubEvt>>,
    /// Nodes this hub declared gone (a LEAVE minted), not yet taken by [`Self::take_gone`].
    gone: Vec<NodeId>,
    /// Nodes confirmed dead: nothing said about them by others is integrated any more.
    exited: Exited,
    closed: bool,
}

impl Hub {
    /// A hub hosted by `seed`'s node, starting from its history.
    ///
    /// The term is one above any the seed knows of; every node the history shows as joined has
    /// [`HubConfig::grace`] to reconnect.
    pub fn new(config: HubConfig, seed: HubSeed, now: Instant) -> Self {
        let HubSeed {
            node,
            term,
            mut history,
        } = seed;
        let known = history
            .records()
            .map(|r| r.seq.epoch())
            .max()
            .unwrap_or_default();
        let known = known.max(history.horizon().max_epoch());
        let term = Term(u64::from(known.term()).max(term.0).saturating_add(1));
        let mut rng = Rng::new(config.rng_seed);
        // Above every epoch the seed knows, even where terms saturate.
        let mint_epoch = Epoch::new(u32::try_from(term.0).unwrap_or(u32::MAX), rng.salt())
            .max(known.successor());
        history.set_max_tombstones(config.max_tombstones);
        let deadline = now + config.grace;
        let orphans = history
            .live_nodes()
            .map(|n| (n.id, deadline))
            .collect::<BTreeMap<_, _>>();
        let mut timers = TimerTable::default();
        if !orphans.is_empty() {
            timers.set(Timer::Grace, deadline);
        }
        timers.set(Timer::Heartbeat, now + config.heartbeat);
        debug!(%node, %term, records = history.len(), orphans = orphans.len(), "hub starts");
        Self {
            rng,
            config,
            last_now: now,
            node,
            term,
            mint_epoch,
            mint_counter: 0,
            history,
            peers: BTreeMap::new(),
            members: BTreeMap::new(),
            orphans,
            timers,
            out: VecDeque::new(),
            gone: Vec::new(),
            exited: Exited::default(),
            closed: false,
        }
    }

    // ---- getters ----

    /// The node hosting this hub.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// This hub's term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The group's history as this hub holds it.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// How many links are open.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The members connected to this hub (introducing or synced).
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.keys().copied()
    }

    /// Whether the hub still waits for nodes of its history to reconnect: some node the
    /// history shows as joined has no link to this hub, is not confirmed dead, and its
    /// [`HubConfig::grace`] has not run out.
    pub fn is_gathering(&self) -> bool {
        !self.orphans.is_empty()
    }

    /// Whether [`HubCmd::Close`] was handled.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Which timer [`poll_timeout`](Self::poll_timeout) reports.
    pub fn next_timer(&self) -> Option<Timer> {
        self.timers.next().map(|(_, t)| t)
    }

    // ---- inputs ----

    /// Feeds one input. `Err` only for a command invalid in the current state; anything a peer
    /// does is handled (and reported as an event), never returned as an error.
    pub fn handle(&mut self, now: Instant, input: Input<'_, HubCmd>) -> Result<(), CmdError> {
        let now = self.advance(now);
        if self.closed {
            return match input {
                Input::Cmd(_) => Err(CmdError::Closed),
                _ => Ok(()),
            };
        }
        match input {
            Input::Cmd(HubCmd::Close) => self.close(),
            Input::PeerUp { peer, cred } => self.on_peer_up(now, peer, cred),
            Input::PeerDown(peer) => self.on_peer_down(peer),
            Input::Bytes { peer, data } => self.on_bytes(now, peer, data),
            Input::ConnectFailed | Input::BindOutcome { .. } => {
                trace!("hub ignores spoke-only input");
            }
        }
        Ok(())
    }

    /// Runs the timers due at `now`; early or spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if self.closed {
            return;
        }
        if self.timers.expire(Timer::Heartbeat, now) {
            let due: Vec<_> = (self.peers.iter_mut())
                .filter(|(_, p)| p.next_heartbeat <= now)
                .map(|(&peer, p)| {
                    p.next_heartbeat = now + p.heartbeat;
                    peer
                })
                .collect();
            for peer in due {
                self.send(peer, &Frame::Heartbeat);
            }
            self.schedule_heartbeat(now);
        }
        if self.timers.expire(Timer::Keepalive, now) {
            self.expel_silent(now);
        }
        if self.timers.expire(Timer::Grace, now) {
            self.purge_orphans(now);
        }
    }

    // ---- outputs ----

    /// The next thing for the driver to do; drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output<HubEvt>> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.timers.next().map(|(at, _)| at)
    }

    // ---- shared documents (driven by the member) ----

    /// Sends one encoded document message to `peer`, if it is a synced member: otherwise the
    /// message is dropped (the link is gone or not ready, and the document host hears of it).
    pub(crate) fn send_doc(&mut self, peer: PeerId, data: Vec<u8>) {
        let synced = self
            .peers
            .get(&peer)
            .is_some_and(|p| matches!(p.state, PeerState::Synced { member: Some(_) }));
        if synced && !self.closed {
            self.send_raw(peer, &Frame::Doc(data));
        } else {
            trace!(%peer, "document message for a link that is not a synced member: dropped");
        }
    }

    /// Closes `peer` for a protocol violation found outside the hub (in its document
    /// messages): goodbye, disconnect, its node declared gone.
    pub(crate) fn expel_misbehaved(&mut self, peer: PeerId, reason: String) {
        if self.peers.contains_key(&peer) && !self.closed {
            self.misbehaved(peer, reason);
        }
    }

    /// Whether `peer` is past its `Hello` (or no longer a link of this hub).
    pub(crate) fn is_greeted(&self, peer: PeerId) -> bool {
        self.peers
            .get(&peer)
            .is_none_or(|p| !matches!(p.state, PeerState::AwaitingHello))
    }

    /// `node`'s process is confirmed dead (its exit was reported on a link that led to it).
    ///
    /// A node connected to this hub is left alone: its own link speaks for it (and goes down
    /// with its process). Otherwise, if the history shows it joined, it is declared gone at
    /// once ([`HubEvt::NodeExited`]); either way records about it from other spokes are
    /// ignored from now on.
    pub(crate) fn confirm_exited(&mut self, node: NodeId) {
        if self.closed || node == self.node || self.members.contains_key(&node) {
            trace!(%node, "exit of a connected node (or our own): its link speaks for it");
            return;
        }
        self.exited.insert(node);
        if self.history.is_joined(node) {
            debug!(%node, "confirmed dead: declared gone without waiting for the grace");
            self.mint_leave(node);
            self.out.push_back(Output::Evt(HubEvt::NodeExited { node }));
        }
        self.stop_grace_if_done();
    }

    /// The nodes declared gone (LEAVE minted) since the last call.
    pub(crate) fn take_gone(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.gone)
    }

    // ---- internals ----

    /// Moves the clock forward. A gap longer than half the keepalive means this hub did not
    /// run (its process was stopped, the machine suspended): the hub cannot have heard anyone
    /// in that time, so the gap is credited to every link rather than held against it.
    fn advance(&mut self, now: Instant) -> Instant {
        let gap = now.saturating_duration_since(self.last_now);
        if gap > self.config.keepalive / 2 {
            debug!(?gap, "hub was not running: crediting every link");
            for p in self.peers.values_mut() {
                p.last_heard = (p.last_heard + gap).min(now);
            }
        }
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn close(&mut self) {
        debug!(term = %self.term, peers = self.peers.len(), "hub closes");
        let peers: Vec<_> = self.peers.keys().copied().collect();
        for peer in peers {
            self.send(peer, &Frame::Goodbye(CloseReason::HubClosing));
            self.out.push_back(Output::Disconnect(peer));
        }
        self.peers.clear();
        self.members.clear();
        self.closed = true;
    }

    fn on_peer_up(&mut self, now: Instant, peer: PeerId, cred: Option<Credentials>) {
        if self.peers.contains_key(&peer) {
            warn!(%peer, "PeerUp for a link already open: closing both");
            self.drop_peer(peer);
            self.out.push_back(Output::Disconnect(peer));
            return;
        }
        if !self.config.access.allows(cred.as_ref()) {
            let (uid, gid) = cred.map_or((u32::MAX, u32::MAX), |c| (c.uid, c.gid));
            let reason = CloseReason::NotAllowed { uid, gid };
            // The driver logs HubEvt::PeerRefused, rate-limited.
            debug!(%peer, %reason, "refusing peer");
            self.refuse(peer, reason);
            return;
        }
        trace!(%peer, ?cred, "peer up");
        self.peers.insert(
            peer,
            Peer {
                cred,
                deframer: Deframer::new(self.config.limits.clone()),
                last_heard: now,
                heartbeat: self.config.heartbeat,
                // In step with the others: one tick serves every peer of the default interval.
                next_heartbeat: (self.timers.get(Timer::Heartbeat))
                    .unwrap_or(now + self.config.heartbeat),
                state: PeerState::AwaitingHello,
            },
        );
        self.schedule_heartbeat(now);
        let deadline = now + self.config.keepalive;
        if self
            .timers
            .get(Timer::Keepalive)
            .is_none_or(|at| at > deadline)
        {
            self.timers.set(Timer::Keepalive, deadline);
        }
    }

    fn on_peer_down(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let node = p.state.member();
        debug!(%peer, ?node, state = p.state.name(), "peer down");
        self.drop_peer(peer);
        if let Some(node) = node {
            self.mint_leave(node);
        }
        self.out
            .push_back(Output::Evt(HubEvt::PeerLeft { peer, node }));
    }

    fn on_bytes(&mut self, now: Instant, peer: PeerId, data: &[u8]) {
        let Some(p) = self.peers.get_mut(&peer) else {
            trace!(%peer, "bytes for an unknown link");
            return;
        };
        p.last_heard = now;
        p.deframer.push(data);
        loop {
            let Some(p) = self.peers.get_mut(&peer) else {
                return;
            };
            match p.deframer.next_frame() {
                None => return,
                Some(Ok(frame)) => self.on_frame(now, peer, frame),
                Some(Err(crate::error::DecodeError::UnsupportedVersion(theirs))) => {
                    let reason = CloseReason::VersionMismatch {
                        theirs,
                        ours: crate::wire::PROTOCOL_VERSION,
                    };
                    self.refuse(peer, reason);
                    return;
                }
                Some(Err(e)) => return self.misbehaved(peer, e.to_string()),
            }
        }
    }

    fn on_frame(&mut self, now: Instant, peer: PeerId, frame: Frame) {
        trace!(%peer, frame = frame.name(), "frame");
        let p = self.peers.get_mut(&peer).expect("caller checked the peer");
        match (&mut p.state, frame) {
            (_, Frame::Heartbeat) => {}
            (PeerState::AwaitingHello, Frame::Hello(hello)) => {
                let cred = p.cred;
                // Heartbeats at the spoke's interval if it is shorter.
                p.heartbeat = Keepalive::toward(self.config.heartbeat, &hello.keepalive);
                p.next_heartbeat = p.next_heartbeat.min(now + p.heartbeat);
                self.schedule_heartbeat(now);
                self.on_hello(peer, cred, hello);
            }
            (PeerState::Introducing { received, .. }, Frame::History(records)) => {
                *received += records.len();
                if *received > self.config.limits.max_history {
                    return self.misbehaved(peer, "introduction longer than max_history".into());
                }
                for record in records {
                    self.integrate(now, peer, record);
                }
            }
            (
                PeerState::Introducing {
                    member: Some(_),
                    own,
                    ..
                },
                Frame::Own(changes),
            ) => {
                for c in changes {
                    match c {
                        OwnChange::Announce { topic, mime } => {
                            own.publishes.insert(topic, mime);
                        }
                        OwnChange::Subscribe { topic } => {
                            own.subscribes.insert(topic);
                        }
                        other => {
                            let msg = format!("{other:?} in an introduction");
                            return self.misbehaved(peer, msg);
                        }
                    }
                }
                if own.len() > self.config.limits.max_topics_per_node {
                    self.misbehaved(peer, "more topics than max_topics_per_node".into());
                }
            }
            (PeerState::Introducing { .. }, Frame::IntroEnd) => self.on_intro_end(peer),
            (PeerState::Synced { member: Some(node) }, Frame::Change(change)) => {
                let node = *node;
                self.on_change(peer, node, change);
            }
            (PeerState::Synced { member: Some(node) }, Frame::Doc(data)) => {
                let node = *node;
                self.out
                    .push_back(Output::Evt(HubEvt::Doc { peer, node, data }));
            }
            (PeerState::Synced { member: Some(node) }, Frame::DocReady) => {
                let node = *node;
                self.out
                    .push_back(Output::Evt(HubEvt::DocReady { peer, node }));
            }
            (_, Frame::Goodbye(reason)) => {
                let node = p.state.member();
                debug!(%peer, ?node, %reason, "goodbye");
                self.drop_peer(peer);
                self.out.push_back(Output::Disconnect(peer));
                if let Some(node) = node {
                    self.mint_leave(node);
                }
                self.out
                    .push_back(Output::Evt(HubEvt::PeerLeft { peer, node }));
            }
            (state, frame) => {
                let msg = format!("unexpected {} while {}", frame.name(), state.name());
                self.misbehaved(peer, msg);
            }
        }
    }

    fn on_hello(&mut self, peer: PeerId, cred: Option<Credentials>, hello: crate::wire::Hello) {
        let crate::wire::Hello {
            member,
            term,
            horizon,
            keepalive: _,
        } = hello;
        let member = member.map(|mut info| {
            // The kernel's word, never the peer's: unknown without credentials.
            (info.pid, info.uid) = cred.map_or((0, NodeInfo::UNKNOWN_UID), |c| (c.pid, c.uid));
            info
        });
        if let Some(info) = &member {
            if self.members.contains_key(&info.id) {
                return self.refuse(peer, CloseReason::DuplicateNode(info.id));
            }
            self.members.insert(info.id, peer);
            self.orphans.remove(&info.id);
            // It speaks: whatever was reported about it concerned another process.
            self.exited.remove(info.id);
            self.stop_grace_if_done();
        }
        // Mint above anything the spoke may have seen, so that our records win their slots.
        let term = Epoch::new(u32::try_from(term.0).unwrap_or(u32::MAX), u32::MAX);
        self.bump_epoch(horizon.max_epoch().max(term));
        debug!(%peer, node = ?member.as_ref().map(|m| m.id), "hello");
        let p = self.peers.get_mut(&peer).expect("caller checked the peer");
        p.state = PeerState::Introducing {
            member,
            horizon,
            own: OwnTopics::default(),
            received: 0,
            merged: MergeStats::default(),
        };
    }

    fn integrate(&mut self, now: Instant, peer: PeerId, record: Record) {
        let about = record.change.node();
        let verdict = if self.speaks_for_itself(about) || self.exited.contains(about) {
            // A dead node's state is settled: stale records cannot bring it back.
            Verdict::Superseded
        } else {
            self.bump_epoch(record.seq.epoch());
            self.history.integrate(record.clone())
        };
        trace!(%peer, seq = %record.seq, change = record.change.name(), ?verdict, "integrate");
        if let Some(Peer {
            state: PeerState::Introducing { merged, .. },
            ..
        }) = self.peers.get_mut(&peer)
        {
            match verdict {
                Verdict::Accepted => merged.accepted += 1,
                Verdict::Duplicate => merged.duplicates += 1,
                Verdict::Superseded => merged.superseded += 1,
                Verdict::Conflict => merged.conflicts += 1,
            }
        }
        if verdict != Verdict::Accepted {
            return;
        }
        self.broadcast(&Frame::Relayed(vec![record]));
        if self.members.contains_key(&about) {
            // Connected: its own introduction settles its state.
        } else if self.history.is_joined(about) {
            let deadline = now + self.config.grace;
            let at = *self.orphans.entry(about).or_insert(deadline);
            if self.timers.get(Timer::Grace).is_none_or(|t| t > at) {
                self.timers.set(Timer::Grace, at);
            }
        } else {
            self.orphans.remove(&about);
            self.stop_grace_if_done();
        }
    }

    /// Ends the gathering's timer once no node is awaited any more.
    fn stop_grace_if_done(&mut self) {
        if self.orphans.is_empty() {
            self.timers.stop(Timer::Grace);
        }
    }

    /// Whether `node` has introduced itself to this hub: from then on its own word is the only
    /// one about it. Until its introduction ends, what other spokes know of it still counts, so
    /// that it never drops out of the snapshots others receive in the meantime.
    fn speaks_for_itself(&self, node: NodeId) -> bool {
        self.members
            .get(&node)
            .and_then(|p| self.peers.get(p))
            .is_some_and(|p| matches!(p.state, PeerState::Synced { .. }))
    }

    fn on_intro_end(&mut self, peer: PeerId) {
        let p = self.peers.get_mut(&peer).expect("caller checked the peer");
        let PeerState::Introducing {
            member,
            horizon,
            own,
            merged,
            ..
        } = std::mem::replace(&mut p.state, PeerState::AwaitingHello)
        else {
            unreachable!("IntroEnd is handled only while introducing")
        };
        let node = member.as_ref().map(|m| m.id);

        // The spoke's whole history is in: what it has seen, the hub has now seen.
        let before = self.history.horizon().clone();
        self.history.merge_horizon(&horizon);
        if *self.history.horizon() != before {
            let h = self.history.horizon().clone();
            self.broadcast_except(peer, &Frame::Horizon(h));
        }
        // Records minted now reach the other spokes; this one gets them in its snapshot, and
        // only then joins the broadcast.
        if let Some(info) = member {
            self.reconcile(info, &own);
        }
        self.send_snapshot(peer);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.state = PeerState::Synced { member: node };
        }
        debug!(%peer, ?node, ?merged, "introduced");
        self.out
            .push_back(Output::Evt(HubEvt::Introduced { peer, node, merged }));
    }

    /// Makes the history say what the node says of itself.
    fn reconcile(&mut self, info: NodeInfo, own: &OwnTopics) {
        let node = info.id;
        self.mint_if_new(Change::Join(info));
        let held = self.history.own_topics(node);
        for topic in held
            .publishes
            .keys()
            .filter(|t| !own.publishes.contains_key(*t))
        {
            self.mint_if_new(Change::Retract {
                node,
                topic: topic.clone(),
            });
        }
        for topic in held
            .subscribes
            .iter()
            .filter(|t| !own.subscribes.contains(*t))
        {
            self.mint_if_new(Change::Unsubscribe {
                node,
                topic: topic.clone(),
            });
        }
        for (topic, mime) in &own.publishes {
            self.mint_if_new(Change::Announce {
                node,
                topic: topic.clone(),
                mime: mime.clone(),
            });
        }
        for topic in &own.subscribes {
            self.mint_if_new(Change::Subscribe {
                node,
                topic: topic.clone(),
            });
        }
    }

    fn on_change(&mut self, peer: PeerId, node: NodeId, change: OwnChange) {
        let change = match change {
            OwnChange::Announce { topic, mime } => Change::Announce { node, topic, mime },
            OwnChange::Retract { topic } => Change::Retract { node, topic },
            OwnChange::Subscribe { topic } => Change::Subscribe { node, topic },
            OwnChange::Unsubscribe { topic } => Change::Unsubscribe { node, topic },
        };
        if !change.is_removal() && !self.history.is_current(&change) {
            let held = self.history.own_topics(node);
            if held.len() >= self.config.limits.max_topics_per_node {
                self.misbehaved(peer, "more topics than max_topics_per_node".into());
                return;
            }
        }
        self.mint_if_new(change);
    }

    fn send_snapshot(&mut self, peer: PeerId) {
        self.send(
            peer,
            &Frame::Welcome(Welcome {
                hub: self.node,
                term: self.term,
                keepalive: self.config.keepalive_figures(),
            }),
        );
        let per_frame = self.config.limits.records_per_frame();
        let mut chunk = Vec::with_capacity(per_frame.min(self.history.len()));
        let mut frames = Vec::new();
        for r in self.history.records() {
            chunk.push(r.clone());
            if chunk.len() == per_frame {
                frames.push(Frame::Snapshot(std::mem::take(&mut chunk)));
            }
        }
        if !chunk.is_empty() {
            frames.push(Frame::Snapshot(chunk));
        }
        for f in &frames {
            self.send(peer, f);
        }
        self.send(peer, &Frame::SnapshotEnd(self.history.horizon().clone()));
    }

    fn mint_if_new(&mut self, change: Change) {
        if self.history.is_current(&change) {
            trace!(change = change.name(), "already current: not minted");
            return;
        }
        self.mint(change);
    }

    fn mint_leave(&mut self, node: NodeId) {
        self.orphans.remove(&node);
        self.stop_grace_if_done();
        self.gone.push(node);
        self.mint_if_new(Change::Leave(node));
    }

    fn mint(&mut self, change: Change) {
        if self.mint_counter == u32::MAX {
            self.bump_epoch(self.mint_epoch);
        }
        let Some(counter) = self.mint_counter.checked_add(1) else {
            // Only reachable when peers claimed the very last term: positions are exhausted.
            error!(
                change = change.name(),
                "no position left to mint: change dropped"
            );
            return;
        };
        self.mint_counter = counter;
        let seq = Seq::new(self.mint_epoch, self.mint_counter);
        let record = Record {
            seq,
            uid: self.rng.uid(),
            change,
        };
        debug!(%seq, change = record.change.name(), node = %record.change.node(), "mint");
        // Minted above everything seen, so it applies; only saturated epochs (peers claiming
        // the last term) can leave a newer record in its slot.
        if !self.history.apply(record.clone()) {
            error!(%seq, "a minted record did not apply: change dropped");
            return;
        }
        self.history.observe(seq);
        self.broadcast(&Frame::Minted(vec![record]));
    }

    /// Moves minting to the next term past `epoch` if it is not already past it. At the last
    /// epoch it stays put and keeps counting: a position is never minted twice.
    fn bump_epoch(&mut self, epoch: Epoch) {
        if epoch >= self.mint_epoch {
            let term = epoch.term().saturating_add(1);
            let next = Epoch::new(term, self.rng.salt()).max(epoch.successor());
            if next > self.mint_epoch {
                debug!(from = ?self.mint_epoch, to = ?next, "mint epoch moves up");
                self.mint_epoch = next;
                self.mint_counter = 0;
            }
        }
    }

    /// The heartbeat timer at the earliest peer's next heartbeat (a full interval when there
    /// is none).
    fn schedule_heartbeat(&mut self, now: Instant) {
        let next = (self.peers.values().map(|p| p.next_heartbeat).min())
            .unwrap_or(now + self.config.heartbeat);
        self.timers.set(Timer::Heartbeat, next);
    }

    fn expel_silent(&mut self, now: Instant) {
        let timeout = self.config.keepalive;
        let silent: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, p)| p.last_heard + timeout <= now)
            .map(|(&peer, _)| peer)
            .collect();
        for peer in silent {
            let node = self.peers.get(&peer).and_then(|p| p.state.member());
            // The driver logs HubEvt::PeerExpelled, rate-limited.
            debug!(%peer, ?node, "expelling silent peer");
            self.send(peer, &Frame::Goodbye(CloseReason::Expelled));
            self.drop_peer(peer);
            self.out.push_back(Output::Disconnect(peer));
            if let Some(node) = node {
                self.mint_leave(node);
            }
            self.out
                .push_back(Output::Evt(HubEvt::PeerExpelled { peer, node }));
        }
        if let Some(oldest) = self.peers.values().map(|p| p.last_heard).min() {
            self.timers.set(Timer::Keepalive, oldest + timeout);
        }
    }

    fn purge_orphans(&mut self, now: Instant) {
        let due: Vec<_> = self
            .orphans
            .iter()
            .filter(|&(_, &at)| at <= now)
            .map(|(&n, _)| n)
            .collect();
        for node in due {
            debug!(%node, "did not reconnect within the grace period");
            self.mint_leave(node);
            self.out.push_back(Output::Evt(HubEvt::NodePurged { node }));
        }
        if let Some(&next) = self.orphans.values().min() {
            self.timers.set(Timer::Grace, next);
        }
    }

    fn refuse(&mut self, peer: PeerId, reason: CloseReason) {
        self.send_raw(peer, &Frame::Goodbye(reason.clone()));
        self.drop_peer(peer);
        self.out.push_back(Output::Disconnect(peer));
        self.out
            .push_back(Output::Evt(HubEvt::PeerRefused { peer, reason }));
    }

    fn misbehaved(&mut self, peer: PeerId, reason: String) {
        // The driver logs HubEvt::PeerMisbehaved, rate-limited.
        debug!(%peer, %reason, "peer misbehaved");
        let node = self.peers.get(&peer).and_then(|p| p.state.member());
        self.send(
            peer,
            &Frame::Goodbye(CloseReason::ProtocolViolation(reason.clone())),
        );
        self.drop_peer(peer);
        self.out.push_back(Output::Disconnect(peer));
        if let Some(node) = node {
            self.mint_leave(node);
        }
        self.out
            .push_back(Output::Evt(HubEvt::PeerMisbehaved { peer, reason }));
    }

    /// Forgets a link and, if it introduced a member, that the member is connected.
    fn drop_peer(&mut self, peer: PeerId) {
        if let Some(node) = self.peers.remove(&peer).and_then(|p| p.state.member())
            && self.members.get(&node) == Some(&peer)
        {
            self.members.remove(&node);
        }
    }

    fn send(&mut self, peer: PeerId, frame: &Frame) {
        if self.peers.contains_key(&peer) {
            self.send_raw(peer, frame);
        }
    }

    fn send_raw(&mut self, peer: PeerId, frame: &Frame) {
        self.out.push_back(Output::Transmit(Transmit {
            peer,
            bytes: encode(frame),
        }));
    }

    /// Sends to every synced link: they hold the history and need every change.
    fn broadcast(&mut self, frame: &Frame) {
        self.broadcast_filtered(frame, None);
    }

    fn broadcast_except(&mut self, except: PeerId, frame: &Frame) {
        self.broadcast_filtered(frame, Some(except));
    }

    fn broadcast_filtered(&mut self, frame: &Frame, except: Option<PeerId>) {
        let bytes = encode(frame);
        for (&peer, p) in &self.peers {
            if matches!(p.state, PeerState::Synced { .. }) && Some(peer) != except {
                self.out.push_back(Output::Transmit(Transmit {
                    peer,
                    bytes: bytes.clone(),
                }));
            }
        }
    }
}
