//! The spoke: every node's link to its group's hub, and its view of the group.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{debug, trace, warn};

use crate::error::CmdError;
use crate::history::{DEFAULT_TOMBSTONES, History};
use crate::hub::HubSeed;
use crate::ids::{Credentials, NodeId, PeerId, Term};
use crate::keepalive::Keepalive;
use crate::machine::{AccessPolicy, Input, Output, Transmit};
use crate::rng::Rng;
use crate::timer::{Timer, TimerTable};
use crate::topology::{Event, NodeInfo, OwnTopics, Record, View, diff_node};
use crate::wire::{CloseReason, Deframer, Frame, Hello, Limits, OwnChange, Welcome, encode};

/// How a spoke behaves; `Default` plus chained setters.
#[derive(Clone, Debug)]
pub struct SpokeConfig {
    /// Seed of the spoke's random choices (its node id if none is given, backoff jitter).
    pub rng_seed: u64,
    /// The node id; drawn from the seed when `None`.
    pub node_id: Option<NodeId>,
    /// The node's name, as others see it.
    pub name: String,
    /// Where the node receives payloads.
    pub data_addr: String,
    /// Watch the group without joining it: no node record, no topics, never a hub.
    pub observer: bool,
    /// Whether this node may run the hub when none answers. Default yes. A member that may
    /// not waits (with backoff) for another to take the address: a group of such members
    /// alone has no hub.
    pub hub_eligible: bool,
    /// The keepalive limit: a hub silent for this long is reported unresponsive. Default 2 s.
    /// Set it with [`keepalive`](Self::keepalive), which also sets the heartbeat to a quarter
    /// of it.
    pub keepalive: Duration,
    /// The heartbeat interval: how often the spoke sends a heartbeat to its hub, or more often
    /// if the hub's `Welcome` asked for a shorter interval (see [`Keepalive`]). Default
    /// 500 ms. [`Keepalive::check`] tells whether the two make sense together.
    pub heartbeat: Duration,
    /// First retry delay after a failed attempt to reach or become the hub. Default 5 ms.
    pub backoff_min: Duration,
    /// Cap of the retry delay. Default 500 ms.
    pub backoff_max: Duration,
    /// Which processes this spoke accepts as its hub: checked against the kernel's credentials
    /// of the hub link before anything is sent on it. Default: nobody (drivers set
    /// [`AccessPolicy::same_uid`], the group's policy).
    pub access: AccessPolicy,
    /// Bounds on what the hub may send and on this node's own topics.
    pub limits: Limits,
    /// How many removal records the history keeps. Default [`DEFAULT_TOMBSTONES`].
    pub max_tombstones: usize,
}

impl Default for SpokeConfig {
    fn default() -> Self {
        Self {
            rng_seed: 0,
            node_id: None,
            name: String::new(),
            data_addr: String::new(),
            observer: false,
            hub_eligible: true,
            keepalive: Duration::from_secs(2),
            heartbeat: Duration::from_millis(500),
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(500),
            access: AccessPolicy::default(),
            limits: Limits::default(),
            max_tombstones: DEFAULT_TOMBSTONES,
        }
    }
}

impl SpokeConfig {
    /// Sets [`rng_seed`](Self::rng_seed).
    pub fn rng_seed(&mut self, seed: u64) -> &mut Self {
        self.rng_seed = seed;
        self
    }

    /// Sets [`name`](Self::name).
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = name.into();
        self
    }

    /// Sets [`data_addr`](Self::data_addr).
    pub fn data_addr(&mut self, addr: impl Into<String>) -> &mut Self {
        self.data_addr = addr.into();
        self
    }

    /// Sets [`node_id`](Self::node_id).
    pub fn node_id(&mut self, id: NodeId) -> &mut Self {
        self.node_id = Some(id);
        self
    }

    /// Sets [`hub_eligible`](Self::hub_eligible).
    pub fn hub_eligible(&mut self, eligible: bool) -> &mut Self {
        self.hub_eligible = eligible;
        self
    }

    /// Sets [`observer`](Self::observer).
    pub fn observer(&mut self, observer: bool) -> &mut Self {
        self.observer = observer;
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
    /// # use ipc_proto::{Keepalive, SpokeConfig};
    /// let mut config = SpokeConfig::default();
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

/// Commands for a spoke.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpokeCmd {
    /// Start reaching for the group's hub (or becoming it).
    Join,
    /// Say goodbye and stop. Final.
    Leave,
    /// Publish `topic` with payload type `mime` (or change its type).
    Announce {
        /// The topic.
        topic: String,
        /// The payload type.
        mime: String,
    },
    /// Stop publishing `topic`.
    Retract {
        /// The topic.
        topic: String,
    },
    /// Subscribe to `topic`.
    Subscribe {
        /// The topic.
        topic: String,
    },
    /// Unsubscribe from `topic`.
    Unsubscribe {
        /// The topic.
        topic: String,
    },
}

impl SpokeCmd {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Join => "Join",
            Self::Leave => "Leave",
            Self::Announce { .. } => "Announce",
            Self::Retract { .. } => "Retract",
            Self::Subscribe { .. } => "Subscribe",
            Self::Unsubscribe { .. } => "Unsubscribe",
        }
    }
}

/// What a spoke reports: topology events for the application, and requests for its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpokeEvt {
    /// A change of the group, for the application (edge; see [`Event`]).
    Topology(Event),
    /// Driver: connect to the group's hub address now, then report [`Input::PeerUp`] or
    /// [`Input::ConnectFailed`].
    ConnectRequested,
    /// Driver: try to bind the group's hub address now. If that succeeds, start a
    /// [`Hub`](crate::Hub) from [`Spoke::hub_seed`]; then report [`Input::BindOutcome`].
    BindRequested,
    /// No hub answered and an observer does not become one; the spoke retries after a backoff
    /// (edge: once until it reaches a hub again). A one-shot observer such as `status` stops
    /// here.
    HubAbsent,
    /// The spoke holds the hub's history and follows its changes (edge, once per link).
    Synced {
        /// The node hosting the hub.
        hub: NodeId,
        /// The hub's term.
        term: Term,
    },
    /// The link to the hub went down; the spoke is reaching for a hub again (edge).
    HubLost,
    /// The hub has been silent for longer than the keepalive timeout, e.g. its process is
    /// stopped (edge). The spoke stays connected: if the hub dies, its link goes down and a new
    /// hub is elected; if it resumes, [`SpokeEvt::HubResponsive`] follows.
    HubUnresponsive,
    /// The hub spoke again after [`SpokeEvt::HubUnresponsive`] (edge).
    HubResponsive,
    /// The hub closed the link for this reason (edge); the link-down follows.
    HubClosed(CloseReason),
    /// The process holding the hub address is not one the group's access policy allows
    /// ([`SpokeConfig::access`]), or its credentials are unknown: the spoke sent it nothing,
    /// closed the link and tries again after a backoff, as after a failed connection. Edge:
    /// once per holder (credentials), until the spoke is synced with a hub again.
    HubRefused {
        /// The kernel's credentials of the holder, `None` if the driver could not read them.
        cred: Option<Credentials>,
    },
    /// The hub broke the protocol; the spoke closed the link (edge).
    HubMisbehaved {
        /// What it did.
        reason: String,
    },
    /// `Leave` is done: the goodbye is queued and the link closed (edge, final).
    Left,
    /// A shared-document message from the hub ([`Frame::Doc`]; edge, once per frame, only
    /// while synced). [`Member`](crate::Member) feeds it to its
    /// [`DocReplica`](crate::doc::DocReplica) and does not report it.
    Doc(Vec<u8>),
}

impl SpokeEvt {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Topology(e) => e.name(),
            Self::ConnectRequested => "ConnectRequested",
            Self::BindRequested => "BindRequested",
            Self::HubAbsent => "HubAbsent",
            Self::Synced { .. } => "Synced",
            Self::HubLost => "HubLost",
            Self::HubUnresponsive => "HubUnresponsive",
            Self::HubResponsive => "HubResponsive",
            Self::HubClosed(_) => "HubClosed",
            Self::HubRefused { .. } => "HubRefused",
            Self::HubMisbehaved { .. } => "HubMisbehaved",
            Self::Left => "Left",
            Self::Doc(_) => "Doc",
        }
    }
}

/// Where a spoke stands.
///
/// ```text
///          Join                 PeerUp                     SnapshotEnd
///  Idle ─────────► Connecting ─────────► Introducing ────────────────► Synced
///                   │   ▲   ▲                 │                          │
///     ConnectFailed │   │   └──── PeerDown ───┴──────────────────────────┘
///                   ▼   │ won          (backoff unless it was synced)
///                 Binding ───lost───► Backoff ──timer──► Connecting
///  Leave from any state ──► Closed
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpokeState {
    /// Not joined yet.
    Idle,
    /// Waiting for the driver to connect to the hub.
    Connecting,
    /// Waiting for the driver to try to bind the hub address.
    Binding,
    /// Waiting before the next attempt.
    Backoff,
    /// Connected; the introduction is sent and the hub's snapshot awaited.
    Introducing,
    /// Holding the hub's history and following its changes.
    Synced,
    /// Left.
    Closed,
}

#[derive(Debug)]
enum State {
    Idle,
    Connecting {
        attempt: u32,
    },
    Binding {
        attempt: u32,
    },
    Backoff {
        attempt: u32,
    },
    Introducing {
        link: Link,
        attempt: u32,
        snapshot: Option<(Welcome, History)>,
    },
    Synced {
        link: Link,
        hub: NodeId,
        term: Term,
    },
    Closed,
}

impl State {
    fn public(&self) -> SpokeState {
        match self {
            Self::Idle => SpokeState::Idle,
            Self::Connecting { .. } => SpokeState::Connecting,
            Self::Binding { .. } => SpokeState::Binding,
            Self::Backoff { .. } => SpokeState::Backoff,
            Self::Introducing { .. } => SpokeState::Introducing,
            Self::Synced { .. } => SpokeState::Synced,
            Self::Closed => SpokeState::Closed,
        }
    }

    fn link(&mut self) -> Option<&mut Link> {
        match self {
            Self::Introducing { link, .. } | Self::Synced { link, .. } => Some(link),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Link {
    peer: PeerId,
    deframer: Deframer,
    last_heard: Instant,
    unresponsive: bool,
    /// Heartbeats to the hub: at the shorter of the spoke's interval and the hub's.
    heartbeat: Duration,
    /// The hub's figures, from its `Welcome`.
    hub_keepalive: Option<Keepalive>,
}

/// The spoke machine: one per node, hub host included.
///
/// It reaches for the hub through its driver ([`SpokeEvt::ConnectRequested`],
/// [`SpokeEvt::BindRequested`]), introduces itself (its history, its node, its topics), adopts
/// the hub's history and reports exactly the [`Event`]s that turn its old view into the new one,
/// then applies the hub's records one by one. Commands made while no hub is reachable change
/// the node's own state, which every introduction carries: nothing is lost, and a subscribe
/// undone before the hub is back costs nothing.
///
/// Drive it like the [`Hub`](crate::Hub): [`handle`](Self::handle),
/// [`handle_timeout`](Self::handle_timeout), drain [`poll_output`](Self::poll_output), sleep
/// until [`poll_timeout`](Self::poll_timeout); time never moves backwards.
#[derive(Debug)]
pub struct Spoke {
    config: SpokeConfig,
    rng: Rng,
    last_now: Instant,
    id: NodeId,
    state: State,
    own: OwnTopics,
    history: History,
    view: View,
    known_term: Term,
    /// An observer reported [`SpokeEvt::HubAbsent`] and has not reached a hub since.
    absent: bool,
    /// The holder last reported with [`SpokeEvt::HubRefused`], until the spoke syncs again.
    refused: Option<Option<Credentials>>,
    timers: TimerTable,
    out: VecDeque<Output<SpokeEvt>>,
}

impl Spoke {
    /// A spoke that has not joined yet.
    pub fn new(config: SpokeConfig, now: Instant) -> Self {
        let mut rng = Rng::new(config.rng_seed);
        let id = config.node_id.unwrap_or_else(|| rng.node_id());
        Self {
            history: History::new(config.max_tombstones),
            config,
            rng,
            last_now: now,
            id,
            state: State::Idle,
            own: OwnTopics::default(),
            view: View::default(),
            known_term: Term(0),
            absent: false,
            refused: None,
            timers: TimerTable::default(),
            out: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// Whether this spoke watches without joining (it holds no topics and no documents).
    pub fn is_observer(&self) -> bool {
        self.config.observer
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where the spoke stands.
    pub fn state(&self) -> SpokeState {
        self.state.public()
    }

    /// The group as this node sees it.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// This node's history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// This node's own topics: what it has announced and subscribed, hub or no hub.
    pub fn own_topics(&self) -> &OwnTopics {
        &self.own
    }

    /// The hub this spoke follows, once synced.
    pub fn hub(&self) -> Option<(NodeId, Term)> {
        match self.state {
            State::Synced { hub, term, .. } => Some((hub, term)),
            _ => None,
        }
    }

    /// The keepalive figures of the hub this spoke is synced with, from its `Welcome`.
    pub fn hub_keepalive(&self) -> Option<Keepalive> {
        match &self.state {
            State::Synced { link, .. } => link.hub_keepalive,
            _ => None,
        }
    }

    /// This spoke's heartbeat interval toward its hub: the shorter of its own and the hub's
    /// (`None` without a link).
    pub fn heartbeat_in_force(&self) -> Option<Duration> {
        match &self.state {
            State::Introducing { link, .. } | State::Synced { link, .. } => Some(link.heartbeat),
            _ => None,
        }
    }

    /// The highest hub term this spoke knows of.
    pub fn term(&self) -> Term {
        self.known_term
    }

    /// The link to the hub, if one is up.
    pub fn hub_peer(&self) -> Option<PeerId> {
        match &self.state {
            State::Introducing { link, .. } | State::Synced { link, .. } => Some(link.peer),
            _ => None,
        }
    }

    /// What a hub started by this node's driver begins from: this node's history and terms.
    pub fn hub_seed(&self) -> HubSeed {
        HubSeed {
            node: self.id,
            term: self.known_term,
            history: self.history.clone(),
        }
    }

    /// Which timer [`poll_timeout`](Self::poll_timeout) reports.
    pub fn next_timer(&self) -> Option<Timer> {
        self.timers.next().map(|(_, t)| t)
    }

    /// Replaces the history and view, as if the spoke had followed another hub.
    #[cfg(test)]
    pub(crate) fn seed_history(&mut self, history: History) {
        self.view = history.view();
        self.history = history;
    }

    // ---- inputs ----

    /// Feeds one input. `Err` only for a command invalid in the current state; anything the hub
    /// or the driver does is handled, never returned as an error.
    pub fn handle(&mut self, now: Instant, input: Input<'_, SpokeCmd>) -> Result<(), CmdError> {
        let now = self.advance(now);
        match input {
            Input::Cmd(cmd) => return self.on_cmd(cmd),
            Input::PeerUp { peer, cred } => self.on_peer_up(now, peer, cred),
            Input::PeerDown(peer) => self.on_peer_down(now, peer),
            Input::Bytes { peer, data } => self.on_bytes(now, peer, data),
            Input::ConnectFailed => self.on_connect_failed(now),
            Input::BindOutcome { won } => self.on_bind_outcome(now, won),
        }
        Ok(())
    }

    /// Runs the timers due at `now`; early or spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if self.timers.expire(Timer::Backoff, now)
            && let State::Backoff { attempt } = self.state
        {
            self.connect(attempt.saturating_add(1));
        }
        if self.timers.expire(Timer::Heartbeat, now)
            && let Some(link) = self.state.link()
        {
            let (peer, interval) = (link.peer, link.heartbeat);
            self.send(peer, &Frame::Heartbeat);
            self.timers.set(Timer::Heartbeat, now + interval);
        }
        if self.timers.expire(Timer::Keepalive, now) {
            let keepalive = self.config.keepalive;
            if let Some(link) = self.state.link() {
                let due = link.last_heard + keepalive;
                if due <= now {
                    if !link.unresponsive {
                        link.unresponsive = true;
                        warn!(peer = %link.peer, "hub unresponsive");
                        self.out.push_back(Output::Evt(SpokeEvt::HubUnresponsive));
                    }
                    // Check again a full period later; no busy loop while the hub is frozen.
                    self.timers.set(Timer::Keepalive, now + keepalive);
                } else {
                    self.timers.set(Timer::Keepalive, due);
                }
            }
        }
    }

    // ---- outputs ----

    /// The next thing for the driver to do; drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output<SpokeEvt>> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next().map(|(at, _)| at)
    }

    // ---- commands ----

    fn on_cmd(&mut self, cmd: SpokeCmd) -> Result<(), CmdError> {
        trace!(cmd = cmd.name(), "command");
        if matches!(self.state, State::Closed) {
            return Err(CmdError::Closed);
        }
        let change = match cmd {
            SpokeCmd::Join => {
                if !matches!(self.state, State::Idle) {
                    return Err(CmdError::AlreadyJoined);
                }
                self.connect(0);
                return Ok(());
            }
            SpokeCmd::Leave => {
                self.leave();
                return Ok(());
            }
            SpokeCmd::Announce { topic, mime } => {
                self.check_topic(&topic)?;
                self.check_name("type string", &mime)?;
                if self.own.publishes.get(&topic) == Some(&mime) {
                    return Ok(());
                }
                self.check_room(&topic, true)?;
                self.own.publishes.insert(topic.clone(), mime.clone());
                OwnChange::Announce { topic, mime }
            }
            SpokeCmd::Retract { topic } => {
                self.check_topic(&topic)?;
                if self.own.publishes.remove(&topic).is_none() {
                    return Ok(());
                }
                OwnChange::Retract { topic }
            }
            SpokeCmd::Subscribe { topic } => {
                self.check_topic(&topic)?;
                if self.own.subscribes.contains(&topic) {
                    return Ok(());
                }
                self.check_room(&topic, false)?;
                self.own.subscribes.insert(topic.clone());
                OwnChange::Subscribe { topic }
            }
            SpokeCmd::Unsubscribe { topic } => {
                self.check_topic(&topic)?;
                if !self.own.subscribes.remove(&topic) {
                    return Ok(());
                }
                OwnChange::Unsubscribe { topic }
            }
        };
        // Linked: tell the hub now. Otherwise the next introduction carries the new state.
        if let Some(peer) = self.hub_peer() {
            self.send(peer, &Frame::Change(change));
        }
        Ok(())
    }

    fn check_topic(&self, topic: &str) -> Result<(), CmdError> {
        if self.config.observer {
            return Err(CmdError::Observer);
        }
        if topic.is_empty() {
            return Err(CmdError::Invalid {
                what: "topic name",
                reason: "empty".into(),
            });
        }
        self.check_name("topic name", topic)
    }

    fn check_name(&self, what: &'static str, s: &str) -> Result<(), CmdError> {
        let max = self.config.limits.max_name;
        if s.len() > max {
            let reason = format!("{} bytes, the maximum is {max}", s.len());
            return Err(CmdError::Invalid { what, reason });
        }
        Ok(())
    }

    fn check_room(&self, topic: &str, publish: bool) -> Result<(), CmdError> {
        let held = if publish {
            self.own.publishes.contains_key(topic)
        } else {
            self.own.subscribes.contains(topic)
        };
        let max = self.config.limits.max_topics_per_node;
        if !held && self.own.len() >= max {
            return Err(CmdError::TooManyTopics { max });
        }
        Ok(())
    }

    fn leave(&mut self) {
        if let Some(peer) = self.hub_peer() {
            self.send(peer, &Frame::Goodbye(CloseReason::Leaving));
            self.out.push_back(Output::Disconnect(peer));
        }
        self.transition(State::Closed);
        self.timers = TimerTable::default();
        self.out.push_back(Output::Evt(SpokeEvt::Left));
    }

    // ---- reaching the hub ----

    fn connect(&mut self, attempt: u32) {
        self.transition(State::Connecting { attempt });
        self.out.push_back(Output::Evt(SpokeEvt::ConnectRequested));
    }

    fn on_connect_failed(&mut self, now: Instant) {
        let State::Connecting { attempt } = self.state else {
            trace!("ConnectFailed while not connecting: ignored");
            return;
        };
        if self.config.observer {
            if !self.absent {
                self.absent = true;
                self.out.push_back(Output::Evt(SpokeEvt::HubAbsent));
            }
            self.backoff(now, attempt);
        } else if !self.config.hub_eligible {
            trace!("no hub answered; this node may not run one: backoff");
            self.backoff(now, attempt);
        } else {
            self.transition(State::Binding { attempt });
            self.out.push_back(Output::Evt(SpokeEvt::BindRequested));
        }
    }

    fn on_bind_outcome(&mut self, now: Instant, won: bool) {
        let State::Binding { attempt } = self.state else {
            trace!("BindOutcome while not binding: ignored");
            return;
        };
        if won {
            debug!(node = %self.id, "won the hub address");
            self.connect(attempt);
        } else {
            self.backoff(now, attempt);
        }
    }

    /// Waits `backoff_min * 2^attempt`, capped at `backoff_max`, jittered down by up to half.
    fn backoff(&mut self, now: Instant, attempt: u32) {
        let cap = self.config.backoff_max;
        let delay = self
            .config
            .backoff_min
            .saturating_mul(1u32 << attempt.min(16))
            .min(cap);
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let jitter = self.rng.below_or_eq(nanos / 2);
        let delay = Duration::from_nanos(nanos - jitter);
        trace!(attempt, ?delay, "backoff");
        self.transition(State::Backoff { attempt });
        self.timers.set(Timer::Backoff, now + delay);
    }

    fn on_peer_up(&mut self, now: Instant, peer: PeerId, cred: Option<Credentials>) {
        let State::Connecting { attempt } = self.state else {
            warn!(%peer, state = ?self.state(), "unexpected link: closing it");
            self.out.push_back(Output::Disconnect(peer));
            return;
        };
        if !self.config.access.allows(cred.as_ref()) {
            // Not a byte to it: our hello carries our node, our address and our topics.
            self.out.push_back(Output::Disconnect(peer));
            if self.refused != Some(cred) {
                warn!(%peer, ?cred, "the hub address is held by a process the group does not allow");
                self.refused = Some(cred);
                self.out
                    .push_back(Output::Evt(SpokeEvt::HubRefused { cred }));
            } else {
                debug!(%peer, ?cred, "the hub address is still held by a process not allowed");
            }
            // As if no hub had answered: bind (which fails while the holder listens) or back off.
            return self.on_connect_failed(now);
        }
        let link = Link {
            peer,
            deframer: Deframer::new(self.config.limits.clone()),
            last_heard: now,
            unresponsive: false,
            heartbeat: self.config.heartbeat,
            hub_keepalive: None,
        };
        self.transition(State::Introducing {
            link,
            attempt,
            snapshot: None,
        });
        self.introduce(peer);
        self.timers
            .set(Timer::Heartbeat, now + self.config.heartbeat);
        self.timers
            .set(Timer::Keepalive, now + self.config.keepalive);
    }

    /// Hello, the history in chunks, the own topics in chunks, IntroEnd.
    fn introduce(&mut self, peer: PeerId) {
        let member = (!self.config.observer).then(|| NodeInfo {
            id: self.id,
            name: self.config.name.clone(),
            data_addr: self.config.data_addr.clone(),
            pid: 0,
            uid: 0,
        });
        let hello = Hello {
            member,
            term: self.known_term,
            horizon: self.history.horizon().clone(),
            keepalive: self.config.keepalive_figures(),
        };
        self.send(peer, &Frame::Hello(hello));
        let per_frame = self.config.limits.records_per_frame();
        let records: Vec<Record> = self.history.records().cloned().collect();
        for chunk in records.chunks(per_frame) {
            self.send(peer, &Frame::History(chunk.to_vec()));
        }
        if !self.config.observer {
            let own: Vec<OwnChange> = self
                .own
                .publishes
                .iter()
                .map(|(t, m)| OwnChange::Announce {
                    topic: t.clone(),
                    mime: m.clone(),
                })
                .chain(
                    self.own
                        .subscribes
                        .iter()
                        .map(|t| OwnChange::Subscribe { topic: t.clone() }),
                )
                .collect();
            for chunk in own.chunks(per_frame) {
                self.send(peer, &Frame::Own(chunk.to_vec()));
            }
        }
        self.send(peer, &Frame::IntroEnd);
    }

    fn on_peer_down(&mut self, now: Instant, peer: PeerId) {
        if self.hub_peer() != Some(peer) {
            trace!(%peer, "PeerDown for a link not ours: ignored");
            return;
        }
        self.lose_link(now, false);
    }

    /// The link is gone: reach for a hub again.
    ///
    /// Losing a hub we were synced with is reported once ([`SpokeEvt::HubLost`]) and retried at
    /// once. A link that drops during the introduction (typically a connection that landed in
    /// a dying hub's listen queue) is retried at once the first time and with a growing backoff
    /// after that; a hub that refused us (`refused`) is not asked again before the longest
    /// backoff.
    fn lose_link(&mut self, now: Instant, refused: bool) {
        let introducing = match self.state {
            State::Introducing { attempt, .. } => Some(attempt),
            _ => None,
        };
        self.timers.stop(Timer::Heartbeat);
        self.timers.stop(Timer::Keepalive);
        match introducing {
            _ if refused => self.backoff(now, u32::MAX),
            None => {
                self.out.push_back(Output::Evt(SpokeEvt::HubLost));
                self.connect(0);
            }
            Some(0) => self.connect(1),
            Some(a) => self.backoff(now, a),
        }
    }

    // ---- frames from the hub ----

    fn on_bytes(&mut self, now: Instant, peer: PeerId, data: &[u8]) {
        let Some(link) = self.state.link().filter(|l| l.peer == peer) else {
            trace!(%peer, "bytes for a link not ours");
            return;
        };
        link.last_heard = now;
        link.deframer.push(data);
        if link.unresponsive {
            link.unresponsive = false;
            debug!(%peer, "hub responsive again");
            self.out.push_back(Output::Evt(SpokeEvt::HubResponsive));
        }
        loop {
            let Some(link) = self.state.link().filter(|l| l.peer == peer) else {
                return;
            };
            match link.deframer.next_frame() {
                None => return,
                Some(Ok(frame)) => self.on_frame(now, frame),
                Some(Err(e)) => return self.hub_misbehaved(now, &e),
            }
        }
    }

    fn on_frame(&mut self, now: Instant, frame: Frame) {
        trace!(frame = frame.name(), "frame from hub");
        let max_history = self.config.limits.max_history;
        match (&mut self.state, frame) {
            (_, Frame::Heartbeat) => {}
            (_, Frame::Goodbye(reason)) => {
                debug!(%reason, "hub closed the link");
                let refused = matches!(
                    reason,
                    CloseReason::NotAllowed { .. }
                        | CloseReason::VersionMismatch { .. }
                        | CloseReason::DuplicateNode(_)
                        | CloseReason::ProtocolViolation(_)
                );
                self.out.push_back(Output::Evt(SpokeEvt::HubClosed(reason)));
                if let Some(peer) = self.hub_peer() {
                    self.out.push_back(Output::Disconnect(peer));
                }
                self.lose_link(now, refused);
            }
            (
                State::Introducing {
                    snapshot: snapshot @ None,
                    link,
                    ..
                },
                Frame::Welcome(w),
            ) => {
                // Heartbeats at the hub's interval if it is shorter.
                link.heartbeat = Keepalive::toward(self.config.heartbeat, &w.keepalive);
                link.hub_keepalive = Some(w.keepalive);
                let next = now + link.heartbeat;
                if self.timers.get(Timer::Heartbeat).is_none_or(|at| at > next) {
                    self.timers.set(Timer::Heartbeat, next);
                }
                *snapshot = Some((w, History::new(self.config.max_tombstones)));
            }
            (
                State::Introducing {
                    snapshot: Some((_, h)),
                    ..
                },
                Frame::Snapshot(records),
            ) => {
                if h.len() + records.len() > max_history {
                    return self.hub_misbehaved(now, &"snapshot longer than max_history");
                }
                for r in records {
                    h.apply(r);
                }
            }
            (
                State::Introducing {
                    snapshot: Some(_), ..
                },
                Frame::SnapshotEnd(horizon),
            ) => {
                let State::Introducing {
                    link,
                    snapshot: Some((welcome, mut history)),
                    ..
                } = std::mem::replace(&mut self.state, State::Idle)
                else {
                    unreachable!("matched above")
                };
                history.set_horizon(horizon);
                self.adopt(link, welcome, history);
            }
            (State::Synced { .. }, Frame::Minted(records)) => {
                self.apply_records(now, records, true);
            }
            (State::Synced { .. }, Frame::Relayed(records)) => {
                self.apply_records(now, records, false);
            }
            (State::Synced { .. }, Frame::Horizon(h)) => self.history.merge_horizon(&h),
            (State::Synced { .. }, Frame::Doc(data)) => {
                self.out.push_back(Output::Evt(SpokeEvt::Doc(data)));
            }
            (state, frame) => {
                let msg = format!("unexpected {} while {:?}", frame.name(), state.public());
                self.hub_misbehaved(now, &msg);
            }
        }
    }

    /// Takes the hub's history as our own and reports the difference.
    fn adopt(&mut self, link: Link, welcome: Welcome, history: History) {
        let Welcome { hub, term, .. } = welcome;
        self.known_term = self.known_term.max(term);
        self.history = history;
        let mut view = self.history.view();
        view.set_hub(Some((hub, term)));
        if self.view.hub() != Some((hub, term)) {
            self.out
                .push_back(Output::Evt(SpokeEvt::Topology(Event::HubChanged {
                    node: hub,
                    term,
                })));
        }
        let events = View::diff(&self.view, &view);
        debug!(%hub, %term, records = self.history.len(), events = events.len(), "synced");
        self.view = view;
        self.out.extend(
            events
                .into_iter()
                .map(|e| Output::Evt(SpokeEvt::Topology(e))),
        );
        self.out
            .push_back(Output::Evt(SpokeEvt::Synced { hub, term }));
        self.refused = None;
        self.transition(State::Synced { link, hub, term });
    }

    fn apply_records(&mut self, now: Instant, records: Vec<Record>, minted: bool) {
        for r in records {
            let seq = r.seq;
            let node = r.change.node();
            if self.history.apply(r) {
                let new = self.history.node_view(node);
                let mut events = Vec::new();
                diff_node(self.view.node(node), new.as_ref(), &mut events);
                match new {
                    Some(n) => self.view.insert_node(n),
                    None => {
                        self.view.remove_node(node);
                    }
                }
                self.out.extend(
                    events
                        .into_iter()
                        .map(|e| Output::Evt(SpokeEvt::Topology(e))),
                );
            }
            if minted {
                // Minted in order by our hub: everything before it in its epoch is seen.
                self.history.observe(seq);
            }
            if self.history.len() > self.config.limits.max_history {
                return self.hub_misbehaved(now, &"history longer than max_history");
            }
        }
    }

    fn hub_misbehaved(&mut self, now: Instant, reason: &dyn std::fmt::Display) {
        let reason = reason.to_string();
        warn!(%reason, "hub misbehaved");
        if let Some(peer) = self.hub_peer() {
            self.out.push_back(Output::Disconnect(peer));
        }
        self.out
            .push_back(Output::Evt(SpokeEvt::HubMisbehaved { reason }));
        self.lose_link(now, false);
    }

    // ---- shared documents (driven by the member) ----

    /// Sends one encoded document message to the hub, if synced with one (else it is dropped:
    /// the document replica resends what matters after the next sync).
    pub(crate) fn send_doc(&mut self, data: Vec<u8>) {
        self.send_synced(&Frame::Doc(data));
    }

    /// Tells the hub that every document opening is sent ([`Frame::DocReady`]).
    pub(crate) fn send_doc_ready(&mut self) {
        self.send_synced(&Frame::DocReady);
    }

    fn send_synced(&mut self, frame: &Frame) {
        match &self.state {
            State::Synced { link, .. } => {
                let peer = link.peer;
                self.send(peer, frame);
            }
            _ => trace!(frame = frame.name(), "not synced: document frame dropped"),
        }
    }

    /// Closes the hub link for a protocol violation found in its document messages.
    pub(crate) fn doc_violation(&mut self, now: Instant, reason: &str) {
        if matches!(self.state, State::Synced { .. }) {
            self.hub_misbehaved(now, &reason);
        }
    }

    // ---- plumbing ----

    /// Moves the clock forward. A gap longer than half the keepalive means this spoke did not
    /// run (its process was stopped): the hub's silence over that gap is not the hub's fault.
    fn advance(&mut self, now: Instant) -> Instant {
        let gap = now.saturating_duration_since(self.last_now);
        if gap > self.config.keepalive / 2
            && let Some(link) = self.state.link()
        {
            link.last_heard = (link.last_heard + gap).min(now);
        }
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn transition(&mut self, to: State) {
        debug!(node = %self.id, "{:?} -> {:?}", self.state.public(), to.public());
        self.state = to;
    }

    fn send(&mut self, peer: PeerId, frame: &Frame) {
        self.out.push_back(Output::Transmit(Transmit {
            peer,
            bytes: encode(frame),
        }));
    }
}
