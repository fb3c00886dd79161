//! A member's configuration, commands, inputs, outputs and events.

use std::time::Duration;

use crate::data::{DataCmd, DataConfig, Delivery, Loss, ReceivedSegment, Room, SegmentId};
use crate::doc::{DocEvt, DocLimits, HostEvt};
use crate::hub::{HubConfig, HubEvt};
use crate::ids::{Credentials, NodeId, PeerId, Term};
use crate::keepalive::{ConfigError, Keepalive};
use crate::machine::AccessPolicy;
use crate::spoke::{SpokeCmd, SpokeConfig};
use crate::topology::Event;
use crate::wire::{CloseReason, Limits};

/// How a member behaves.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// The spoke (its node id, name, data address, keepalive; `observer` for a watcher).
    pub spoke: SpokeConfig,
    /// The hub this node runs when it wins the address (its `rng_seed` is replaced by one
    /// drawn for each hub).
    pub hub: HubConfig,
    /// The data plane; `None` for an observer.
    pub data: Option<DataConfig>,
    /// Bounds on shared documents, for the replica and for the host this node may run (the
    /// same in every node of a group). `max_chunk` is lowered to fit the hub link's frames
    /// ([`Limits::max_frame`]), but not below [`DocLimits::MIN_CHUNK`] and the longest name
    /// and path: a `max_frame` below about 6 KiB leaves no room for documents.
    pub docs: DocLimits,
    /// Whether this node is a document witness
    /// ([`ReplicaConfig::witness`](crate::doc::ReplicaConfig::witness)); an observer never is.
    pub witness: bool,
}

/// What an application chooses for a node, the same whatever the driver: drivers keep one
/// of these in their builders and turn it into a [`MemberConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// The node's name, as others see it.
    pub name: String,
    /// The keepalive limit: a node (or hub) silent for this long is declared gone. Default
    /// 2 s.
    pub keepalive: Duration,
    /// The heartbeat interval: how often a heartbeat goes out on the hub link (more often if
    /// the other side asks for it, see [`Keepalive`]). `None`, the default, is a quarter of
    /// the keepalive limit (500 ms for the default 2 s). [`check`](Self::check) refuses an
    /// interval of zero or one above half the limit.
    pub heartbeat: Option<Duration>,
    /// How long a new hub waits for the nodes it inherited to reconnect before declaring them
    /// gone, unless their deaths are confirmed ([`MemberInput::PeerExited`]: those go at
    /// once). Default 200 ms.
    pub grace: Duration,
    /// The group's access policy: who may join should this node run the hub, which hub this
    /// node talks to, and which data peers it accepts (publishers, subscribers, stats
    /// requests). Every link is checked against it, with the kernel's credentials, before a
    /// byte is sent on it or believed. Default: only this process's uid.
    pub access: AccessPolicy,
    /// Bounds on what peers may send.
    pub limits: Limits,
    /// Whether this node's messages also reach its own subscriptions. Default no.
    pub self_delivery: bool,
    /// Whether this node may run the group's hub (see [`SpokeConfig::hub_eligible`]).
    /// Default yes.
    pub hub_eligible: bool,
    /// Whether this node keeps a copy of every shared document of the group, so that a patch
    /// acknowledged to its writer survives any one death
    /// ([`ReplicaConfig::witness`](crate::doc::ReplicaConfig::witness)). Default yes; a one-shot
    /// writer that leaves right after its work should say no.
    pub witness: bool,
    /// Whether this node's driver uses shared-memory rings on its data links
    /// ([`ring::link`](crate::ring::link)): as a publisher it takes the rings its subscribers
    /// offer, as a subscriber it offers them to publishers that take them. Default no (a
    /// driver built on `ipc-proto` alone moves records on sockets only); the workspace's
    /// drivers say yes.
    pub rings: bool,
}

impl NodeOptions {
    /// Defaults for a node named `name` in a process running as `uid`.
    pub fn new(name: impl Into<String>, uid: u32) -> Self {
        Self {
            name: name.into(),
            keepalive: Duration::from_secs(2),
            heartbeat: None,
            grace: Duration::from_millis(200),
            access: AccessPolicy::same_uid(uid),
            limits: Limits::default(),
            self_delivery: false,
            hub_eligible: true,
            witness: true,
            rings: false,
        }
    }

    /// The heartbeat interval and keepalive limit in force.
    pub fn keepalive_figures(&self) -> Keepalive {
        let mut figures = Keepalive::with_limit(self.keepalive);
        if let Some(heartbeat) = self.heartbeat {
            figures.heartbeat = heartbeat;
        }
        figures
    }

    /// Whether the options make sense together (the keepalive figures:
    /// [`Keepalive::check`]); drivers check this before they start a node.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.keepalive_figures().check()
    }

    /// Whether only `uid` may join (then pooled payloads, whose immutability is by protocol,
    /// are the default for large messages).
    pub fn is_private(&self, uid: u32) -> bool {
        !self.access.anyone
            && self.access.gids.is_empty()
            && self.access.uids.iter().all(|u| *u == uid)
    }

    /// The member's configuration: node `id`, its data address (`None` for an observer, which
    /// has no data plane), seeded from `rng_seed`.
    pub fn member_config(
        &self,
        id: NodeId,
        data_addr: Option<String>,
        rng_seed: u64,
    ) -> MemberConfig {
        let figures = self.keepalive_figures();
        let mut spoke = SpokeConfig::default();
        spoke
            .rng_seed(rng_seed)
            .node_id(id)
            .name(self.name.clone())
            .observer(data_addr.is_none())
            .hub_eligible(self.hub_eligible)
            .keepalive(self.keepalive)
            .heartbeat(figures.heartbeat)
            .access(self.access.clone());
        spoke.limits = self.limits.clone();
        let data = data_addr.map(|addr| {
            spoke.data_addr(addr);
            let mut data = DataConfig::new(id);
            data.self_delivery = self.self_delivery;
            data.access = self.access.clone();
            data.limits.max_name = self.limits.max_name;
            data.rings = self.rings;
            data
        });
        let mut hub = HubConfig::default();
        hub.grace(self.grace)
            .keepalive(self.keepalive)
            .heartbeat(figures.heartbeat)
            .access(self.access.clone());
        hub.limits = self.limits.clone();
        MemberConfig {
            witness: self.witness,
            spoke,
            hub,
            data,
            docs: DocLimits::default(),
        }
    }
}

/// Which listener an accepted link came in on.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Listener {
    /// The group's hub address (this node runs the hub).
    Hub,
    /// This node's data address.
    Data,
}

/// A command for a member.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberCmd {
    /// A topology command (join, leave, announce...).
    Spoke(SpokeCmd),
    /// A data-plane command (publish, take...).
    Data(DataCmd),
}

/// An input to a member.
#[derive(Debug)]
pub enum MemberInput<'a> {
    /// A command from the application.
    Cmd(MemberCmd),
    /// A link the member asked for is connected.
    Connected {
        /// The link.
        peer: PeerId,
        /// The process at the other end.
        cred: Option<Credentials>,
    },
    /// A link the member asked for could not be connected.
    ConnectFailed(PeerId),
    /// The outcome of [`MemberOutput::Bind`].
    Bound {
        /// Whether this process now holds the hub address.
        won: bool,
    },
    /// The driver accepted a link on one of its listeners, with an id of its choosing (below
    /// [`OUTGOING`](crate::data::OUTGOING)).
    Accepted {
        /// The link.
        peer: PeerId,
        /// Where it came in.
        listener: Listener,
        /// The process at the other end.
        cred: Option<Credentials>,
    },
    /// One record from a link, with the segments whose fds came with it (data links only).
    Record {
        /// The link.
        peer: PeerId,
        /// The bytes.
        data: &'a [u8],
        /// Attached segments, verified and registered by the driver.
        segments: &'a [ReceivedSegment],
    },
    /// A link went down.
    PeerDown(PeerId),
    /// The process at the other end of `peer` has exited: not the link closing (that is
    /// [`PeerDown`](Self::PeerDown)), the process being dead. The member declares the nodes it
    /// reached through that link dead: the hub's node for the hub link, the spoke's node for a
    /// link to this node's hub. A hub that is gathering its inherited history's nodes after a
    /// takeover then stops waiting for them ([`HubEvt::NodeExited`]) instead of giving them
    /// [`HubConfig::grace`]; a member that is not the hub remembers them for the hub it may
    /// run next (the common case: the hub was killed and this node wins its address).
    ///
    /// The driver contract:
    /// - **When.** Report it once the kernel says so: a pidfd (`pidfd_open(2)`, Linux 5.3+)
    ///   for the link's peer process becomes readable (or is readable at once: then report
    ///   right after `Connected`/`Accepted`). Open it when the link is accepted or connected:
    ///   with `SO_PEERPIDFD` (Linux 6.5+; no pid is looked up), else with `pidfd_open` for the
    ///   pid of `SO_PEERCRED`, kept only if the socket's other end is still open after the
    ///   open (otherwise the pid may have been reused: never report for that link). Re-reading
    ///   `SO_PEERCRED` proves nothing: it keeps the connect-time pid after the peer exits.
    ///   `ipc_os::pidfd::PidFd::open_peer` does this (the [guide](crate::guide), section 8). Report
    ///   at most once per link, before or after [`PeerDown`](Self::PeerDown) for it (the
    ///   kernel hangs the socket up before the pidfd becomes readable, so usually after); the
    ///   member remembers a closed link's nodes for its last few hundred closed links. A
    ///   report for a link the member never heard of, or no longer remembers, is ignored.
    /// - **Which links.** Every link whose peer's pid the driver could watch, hub links and
    ///   links to this node's hub alike (data links may be reported; they are ignored for
    ///   now). A process hosting several nodes has a link per node: each gets its report.
    /// - **Never** for a link without credentials, with pid 0 (the peer is in a pid namespace
    ///   the driver cannot see) or where pidfds are unsupported or failed to open: those
    ///   peers' deaths are unconfirmable, and the grace applies to them. A stopped process
    ///   (`SIGSTOP`) is not dead: never report it (keepalive finds it).
    /// - **Ids.** Link ids are never reused in a member's lifetime (the member's own never
    ///   are; the driver numbers accepted links from a counter), so a late report cannot hit
    ///   a newer link. Node ids are fresh for each process start (drivers draw them at
    ///   random), so a death confirmed for a node id never hits a later process.
    PeerExited(PeerId),
    /// A data link's socket is full (the driver keeps what it was given).
    Blocked(PeerId),
    /// A data link's socket has room again.
    Writable(PeerId),
    /// The driver refused what a link sent (an unusable fd, a record too large).
    Rejected {
        /// The link.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// Accepting a connection on a listener failed (out of file descriptors: `EMFILE`,
    /// `ENFILE`, or out of memory). The member answers [`MemberOutput::PauseAccepting`]
    /// (once per pause) and [`MemberOutput::ResumeAccepting`] after
    /// [`Limits::accept_backoff`]; the connection waits in the listener's backlog.
    AcceptFailed(Listener),
}

/// What a member asks of its driver.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum MemberOutput {
    /// Connect to the group's hub address; report [`MemberInput::Connected`] or
    /// [`MemberInput::ConnectFailed`].
    ConnectHub {
        /// The link's id.
        peer: PeerId,
    },
    /// Try to bind the group's hub address and listen; report [`MemberInput::Bound`].
    Bind,
    /// Close the hub listener: this node's hub has closed.
    Unbind,
    /// Connect to a subscriber's data address; report as for `ConnectHub`.
    ConnectData {
        /// The link's id.
        peer: PeerId,
        /// The address.
        addr: String,
    },
    /// Send one record on a link, with the segment's fd attached if `attach` is set.
    Transmit {
        /// The link.
        peer: PeerId,
        /// The record.
        bytes: Vec<u8>,
        /// The segment whose fd goes with it.
        attach: Option<SegmentId>,
    },
    /// Close a link once what is queued for it is sent.
    Disconnect(PeerId),
    /// A message for the local subscriptions of its topic.
    Deliver(Delivery),
    /// Messages the local subscriptions of the loss's topic will not get (see
    /// [`DataOutput::Lost`](crate::data::DataOutput::Lost)): in order with the deliveries.
    Lost(Loss),
    /// A segment is no longer referred to (see
    /// [`DataOutput::Release`](crate::data::DataOutput::Release)).
    Release(SegmentId),
    /// Stop watching the listeners (the hub's, if bound later too) for connections until
    /// [`MemberOutput::ResumeAccepting`]; keep serving every link. See
    /// [`MemberInput::AcceptFailed`].
    PauseAccepting,
    /// Watch the listeners for connections again.
    ResumeAccepting,
    /// Something for the application.
    Evt(MemberEvt),
}

/// What a member reports to its application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberEvt {
    /// A change of the group (see [`Event`]).
    Topology(Event),
    /// The node holds the hub's history (after joining, after every hub change).
    Synced {
        /// The node hosting the hub.
        hub: NodeId,
        /// Its term.
        term: Term,
    },
    /// This node won the hub address and runs the group's hub.
    BecameHub,
    /// The link to the hub went down; the node is finding (or becoming) the next hub.
    HubLost,
    /// The hub has been silent past the keepalive timeout.
    HubUnresponsive,
    /// The hub spoke again.
    HubResponsive,
    /// The hub closed the link, and why.
    HubClosed(CloseReason),
    /// An observer found no hub.
    HubAbsent,
    /// The hub address is held by a process the group's access policy does not allow: the node sent
    /// it nothing and keeps trying (see [`SpokeEvt::HubRefused`](crate::SpokeEvt::HubRefused);
    /// edge, once per holder until synced again).
    HubRefused {
        /// The holder's credentials, `None` where the driver could not read them.
        cred: Option<Credentials>,
    },
    /// How many more messages of a topic its `Block` subscribers can take changed.
    Room {
        /// The topic.
        topic: String,
        /// `None`: no limit.
        room: Option<Room>,
    },
    /// What this node's hub reports (peers refused, expelled, purged...), for logs.
    Hub(HubEvt),
    /// A data link (a publisher's, a subscriber's or a stats request) came from a process the
    /// group's access policy does not allow, or without credentials: it was closed before a
    /// byte was sent on it or read from it (edge, once per link).
    PeerRefused {
        /// The link.
        peer: PeerId,
        /// The process at the other end, `None` where the driver could not read it.
        cred: Option<Credentials>,
        /// Why.
        reason: String,
    },
    /// A peer broke the protocol and was disconnected.
    PeerMisbehaved {
        /// The link.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
    /// What the document replica reports: documents opened, changed, patched, patches of
    /// this node accepted or rejected, states from a new host (see [`DocEvt`]).
    Doc(DocEvt),
    /// What this node's document host reports, for logs (see [`HostEvt`]).
    DocHost(HostEvt),
    /// An accepted link was closed before it completed its handshake (edge; see
    /// [`Limits::max_pending`] and [`Limits::handshake_timeout`]). Counted in
    /// [`GuardStats`](crate::wire::GuardStats); drivers log it rate-limited.
    LinkRefused {
        /// The link.
        peer: PeerId,
        /// Where it came in.
        listener: Listener,
        /// Why it was closed.
        reason: Refusal,
    },
    /// Accepting failed for lack of resources: the listeners rest for
    /// [`Limits::accept_backoff`] (edge, once per pause). Counted in
    /// [`GuardStats::accept_paused`](crate::wire::GuardStats::accept_paused).
    AcceptPaused,
    /// The node has left: everything is said; the driver flushes and stops.
    Left,
}

/// Why an accepted link was closed before its handshake ([`MemberEvt::LinkRefused`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Too many accepted links had not completed their handshake.
    TooManyPending {
        /// The bound ([`Limits::max_pending`]).
        max: usize,
    },
    /// The link sent no `Hello` in time ([`Limits::handshake_timeout`]).
    HandshakeTimeout(Duration),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooManyPending { max } => {
                write!(f, "{max} connections already wait for their handshake")
            }
            Self::HandshakeTimeout(t) => write!(f, "no handshake within {t:?}"),
        }
    }
}

impl MemberEvt {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Topology(e) => e.name(),
            Self::Synced { .. } => "Synced",
            Self::BecameHub => "BecameHub",
            Self::HubLost => "HubLost",
            Self::HubUnresponsive => "HubUnresponsive",
            Self::HubResponsive => "HubResponsive",
            Self::HubClosed(_) => "HubClosed",
            Self::HubAbsent => "HubAbsent",
            Self::HubRefused { .. } => "HubRefused",
            Self::PeerRefused { .. } => "PeerRefused",
            Self::Room { .. } => "Room",
            Self::Hub(e) => e.name(),
            Self::PeerMisbehaved { .. } => "PeerMisbehaved",
            Self::Doc(e) => e.name(),
            Self::DocHost(e) => e.name(),
            Self::LinkRefused { .. } => "LinkRefused",
            Self::AcceptPaused => "AcceptPaused",
            Self::Left => "Left",
        }
    }
}
