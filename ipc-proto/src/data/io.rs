//! The data plane's commands, inputs, outputs, events, limits and configuration.

use std::sync::Arc;
use std::time::Duration;

use crate::error::CmdError;
use crate::ids::{Credentials, NodeId, PeerId};
use crate::machine::AccessPolicy;
use crate::wire::{AppCounter, MessageHeader, SlotRef, check_app_counters};

use super::loss::Loss;
use super::options::Terms;
use super::payload::{Delivery, Payload, ReceivedSegment, SegmentId};
use super::routes::Routes;

/// A driver's way to take a publish's inline messages without their records
/// ([`Member::publish_direct`](crate::Member::publish_direct)): the driver of a link with a
/// shared-memory ring puts the message straight into the ring
/// ([`RingSender::send_message`](crate::ring::link::RingSender::send_message)), where it would
/// otherwise get a [`DataOutput::Transmit`] of a record it takes apart again. The data plane
/// asks only when nothing of its own waits for the link (no binding, no queued message, no
/// output not yet taken), and counts a message taken exactly as one transmitted.
pub trait DirectSend {
    /// Takes the message of `header` with `payload` for the link `peer` if it can now, with
    /// nothing ahead of it on the link; `false`: the data plane sends its record as usual.
    fn send_inline(&mut self, peer: PeerId, header: MessageHeader, payload: &[u8]) -> bool;
}

/// A driver's direct path for the tests and the fuzzing harness: takes every message offered
/// while `take`, keeping each (link, header, payload) in `taken`.
#[cfg(any(test, feature = "arbitrary"))]
#[derive(Debug, Default)]
pub(crate) struct TakingDirect {
    pub(crate) take: bool,
    pub(crate) taken: Vec<(PeerId, MessageHeader, Vec<u8>)>,
}

#[cfg(any(test, feature = "arbitrary"))]
impl DirectSend for TakingDirect {
    fn send_inline(&mut self, peer: PeerId, header: MessageHeader, payload: &[u8]) -> bool {
        if self.take {
            self.taken.push((peer, header, payload.to_vec()));
        }
        self.take
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
        /// The topic (advertised). Shared, not copied: a publisher keeps one and hands a
        /// reference with each message.
        topic: Arc<str>,
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
    /// A subscription queue of the driver's dropped messages of `publisher` on `topic` (its
    /// policy, [`Inbox`](super::Inbox)): counted for `status` as
    /// [`TopicStats::dropped`](crate::wire::TopicStats::dropped).
    QueueDropped {
        /// The topic.
        topic: Arc<str>,
        /// Whose messages.
        publisher: NodeId,
        /// How many.
        count: u64,
    },
    /// The application is done with these pooled messages received on `peer`.
    Release {
        /// The link they came on.
        peer: PeerId,
        /// What to give back.
        slots: Vec<SlotRef>,
    },
    /// Replaces this node's application counters: every `Stats` reply carries them
    /// ([`DataStats::app`](crate::wire::DataStats::app)) until the next set. Refused with
    /// [`CmdError::Invalid`] beyond the bounds of [`check_app_counters`] (build it with
    /// [`DataCmd::set_counters`] to check first).
    SetCounters(Vec<AppCounter>),
}

impl DataCmd {
    /// [`DataCmd::SetCounters`] of `(name, value)` pairs, checked against the bounds of
    /// [`check_app_counters`]: at most 32 counters, names of 1 to 64 bytes of printable ASCII.
    /// What both drivers' `set_counters` build.
    pub fn set_counters(counters: &[(&str, u64)]) -> Result<Self, CmdError> {
        let app: Vec<AppCounter> = counters
            .iter()
            .map(|&(name, value)| AppCounter::new(name, value))
            .collect();
        check_counters(&app)?;
        Ok(Self::SetCounters(app))
    }
}

/// [`check_app_counters`] as a command's error.
pub(super) fn check_counters(app: &[AppCounter]) -> Result<(), CmdError> {
    check_app_counters(app).map_err(|e| CmdError::Invalid {
        what: "application counters",
        reason: e.to_string(),
    })
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
    /// Tell the local subscriptions of the loss's topic that these messages of its publisher
    /// will not come: in order, before the publisher's next [`DataOutput::Deliver`] (or
    /// message handed back by [`DataPlane::receive_payload_direct`], which never overtakes
    /// an output).
    ///
    /// [`DataPlane::receive_payload_direct`]: super::DataPlane::receive_payload_direct
    Lost(Loss),
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
    /// Whether this node's driver takes a shared-memory ring on its links to subscribers
    /// ([`ring::link`](crate::ring::link)), said in its `Hello`. Default no: only a driver
    /// that implements rings says yes ([`NodeOptions::rings`](crate::NodeOptions::rings)).
    pub rings: bool,
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
            rings: false,
        }
    }
}
