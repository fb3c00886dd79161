//! The [`DataPlane`] machine: its state, getters, inputs and outputs; the publisher side,
//! the subscriber side and the links are in `publisher`, `subscriber` and `links`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;
use tracing::debug;

use crate::error::CmdError;
use crate::ids::{Credentials, NodeId, PeerId};
use crate::wire::{
    AppCounter, DataFrame, DataStats, GuardStats, MessageHeader, TopicStats, WitnessStats,
    encode_data,
};

use super::buffers::{Buffers, Payloads};
use super::io::{DataCmd, DataConfig, DataInput, DataOutput, DirectSend, Room};
use super::loss::LossReason;
use super::options::Terms;
use super::payload::Outbound;
use super::payload::{Delivery, InlineBody, PayloadBuffer, ReceivedSegment, SegmentId};
use super::rooms::RoomChanges;
use super::routes::{Ident, Routes};
use super::topic::{Names, Topic, value_of};

/// A message waiting to be handed to a link's socket.
#[derive(Debug)]
pub(super) struct Queued {
    /// A topic binding: it waits until this node's view shows the topic announced (the
    /// subscriber checks the binding against its own view).
    pub(super) bind: Option<Topic>,
    pub(super) topic: Option<Topic>,
    pub(super) bytes: Vec<u8>,
    pub(super) attach: Option<SegmentId>,
    /// Pooled: the range the subscriber will hold once sent.
    pub(super) slot: Option<(SegmentId, u64)>,
    /// Fresh: the segment whose reference goes once sent.
    pub(super) fresh: Option<SegmentId>,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) messages: u64,
    pub(super) dropped: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum OutState {
    Connecting,
    Up,
    Blocked,
    /// The link failed; retry at this time (while the subscriber is routed).
    Retry(Instant),
}

/// A link to a subscriber.
#[derive(Debug)]
pub(super) struct OutLink {
    pub(super) node: NodeId,
    pub(super) addr: String,
    pub(super) state: OutState,
    pub(super) attempts: u32,
    /// What this link knows of each topic, in one entry (found once per message).
    pub(super) topics: BTreeMap<Topic, OutTopic>,
    /// How many of `topics` have terms (at most [`DataLimits::max_topics`]).
    ///
    /// [`DataLimits::max_topics`]: super::DataLimits::max_topics
    pub(super) with_terms: usize,
    /// The last topic id bound on this link (ids are never reused on a link).
    pub(super) last_topic_id: u32,
    pub(super) offered: BTreeSet<SegmentId>,
    pub(super) queue: VecDeque<Queued>,
    /// Pooled ranges the subscriber holds: (our segment, offset) -> topic.
    pub(super) held: BTreeMap<(SegmentId, u64), Topic>,
    /// Topics with messages dropped for this subscriber since it was last told the topic's
    /// last seq: once the queue is empty, a [`DataFrame::Last`] tells it (a hole at the end of
    /// a burst is otherwise told only before the next message).
    pub(super) untold: BTreeSet<Topic>,
}

/// One topic on a link to a subscriber. Its binding and terms go with the connection; its
/// counters stay for `status` while the link does (an entry without any is forgotten with the
/// connection, so a subscriber's terms for topics never published here do not pile up).
#[derive(Debug, Default)]
pub(super) struct OutTopic {
    /// Its id on this link, once bound.
    pub(super) id: Option<u32>,
    /// The subscriber's terms, once it stated them (else the node's default).
    pub(super) terms: Option<Terms>,
    /// Messages in flight: queued plus held.
    pub(super) in_flight: u32,
    pub(super) counters: Counters,
}

impl OutTopic {
    /// Its id, binding it first ([`DataFrame::Topic`], queued on `queue`) the first time: the
    /// link's `last` id plus one.
    pub(super) fn bind(
        &mut self,
        topic: &Topic,
        last: &mut u32,
        queue: &mut VecDeque<Queued>,
    ) -> u32 {
        if let Some(id) = self.id {
            return id;
        }
        *last += 1;
        let id = *last;
        self.id = Some(id);
        queue.push_back(Queued {
            bind: Some(topic.clone()),
            topic: None,
            bytes: encode_data(
                &DataFrame::Topic {
                    id,
                    topic: topic.to_string(),
                },
                &[],
            ),
            attach: None,
            slot: None,
            fresh: None,
        });
        id
    }

    /// Whether it counted a message, sent or dropped (shown by `status`).
    pub(super) fn counted(&self) -> bool {
        self.counters.messages > 0 || self.counters.dropped > 0
    }
}

impl OutLink {
    /// The topic's id on this link, binding it first ([`DataFrame::Topic`], queued) the first
    /// time.
    pub(super) fn bind(&mut self, topic: &Topic) -> u32 {
        let t = value_of(&mut self.topics, topic);
        t.bind(topic, &mut self.last_topic_id, &mut self.queue)
    }

    /// A queued message of `topic` goes out to the driver: counted as sent, and a pooled range
    /// (`slot`) held until the subscriber gives it back; anything else is in flight no more.
    /// Its terms, to tell whether that changed the topic's room.
    pub(super) fn dequeued(
        &mut self,
        topic: &Topic,
        slot: Option<(SegmentId, u64)>,
        default: Terms,
    ) -> Terms {
        let t = self
            .topics
            .get_mut(topic)
            .expect("queued messages have an entry");
        t.counters.messages += 1;
        match slot {
            Some(slot) => {
                self.held.insert(slot, topic.clone());
            }
            None => t.in_flight -= 1,
        }
        t.terms.unwrap_or(default)
    }
}

/// A link from a publisher (or a stats request).
#[derive(Debug)]
pub(super) struct InLink {
    pub(super) cred: Option<Credentials>,
    /// Records held until the view shows who the publisher is or what it announced: since
    /// when, and why.
    pub(super) unverified: Option<(Instant, String)>,
    pub(super) held: VecDeque<(Vec<u8>, Vec<ReceivedSegment>)>,
    pub(super) held_bytes: usize,
    /// The link went down with records held: they still count (a publisher that published
    /// and left at once), and the link is forgotten once they are checked.
    pub(super) down: bool,
    pub(super) publisher: Option<NodeId>,
    /// The topics bound on this link, by wire id.
    pub(super) topics: BTreeMap<u32, Bound>,
    /// The same topics, by name: a topic is bound once per link (a second binding would
    /// start its sequence afresh).
    pub(super) bound: BTreeSet<Topic>,
    /// Wire id -> (our handle, size).
    pub(super) segments: BTreeMap<u64, (SegmentId, u64)>,
}

/// A topic a publisher bound on its link.
#[derive(Debug)]
pub(super) struct Bound {
    pub(super) topic: Topic,
    /// The last sequence number on this link (a link never goes back: a violation).
    pub(super) last_seq: u64,
}

/// What this node received of one publisher's topic, over every link from it: the order
/// across links, and the counters.
#[derive(Debug, Default)]
pub(super) struct Stream {
    /// The last sequence number delivered (0: none yet).
    pub(super) last: u64,
    /// The link it came on.
    pub(super) link: Option<PeerId>,
    /// This node was expelled since the last message on a new link: the next hole is a loss
    /// of [`LossReason::Expelled`].
    pub(super) expelled: bool,
    /// Messages delivered.
    pub(super) messages: u64,
    /// Messages lost before they reached this node (reported).
    pub(super) missed: u64,
    /// Messages the driver's queues dropped here (reported to the driver by the driver).
    pub(super) dropped: u64,
    /// Messages that came after a later one of the same publisher (an old link's backlog read
    /// after the new link's first message): discarded, already reported lost.
    pub(super) stale: u64,
}

impl Stream {
    /// Why a hole before a message (or a [`DataFrame::Last`]) on `peer` opened: after an
    /// expulsion, the first hole is its doing, on whichever link (the publisher may have seen
    /// this node leave and rejoin at once, and kept its link); else the publisher's, on the
    /// same link, or the replaced link's.
    pub(super) fn hole_reason(&mut self, peer: PeerId) -> LossReason {
        if std::mem::take(&mut self.expelled) {
            LossReason::Expelled
        } else if self.link == Some(peer) {
            LossReason::Publisher
        } else {
            LossReason::Relinked
        }
    }
}

/// What [`DataPlane::verify`] makes of a publisher's frame.
#[derive(Debug)]
pub(super) enum Check {
    Valid,
    /// The view does not show it yet.
    Wait(String),
    /// A protocol violation.
    Invalid(String),
}

/// The data-plane machine (see the module docs).
#[derive(Debug)]
pub struct DataPlane {
    pub(super) config: DataConfig,
    pub(super) last_now: Instant,
    pub(super) routes: Routes,
    /// Every topic name the maps below key by, once (see `topic`).
    pub(super) names: Names,
    pub(super) advertised: BTreeSet<Topic>,
    pub(super) taken: BTreeMap<Topic, Terms>,
    pub(super) seq: BTreeMap<Topic, u64>,
    pub(super) out_links: BTreeMap<PeerId, OutLink>,
    pub(super) by_node: BTreeMap<NodeId, PeerId>,
    pub(super) next_out: u64,
    pub(super) in_links: BTreeMap<PeerId, InLink>,
    /// Per publisher and topic taken, what was received (kept while the publisher is
    /// [`known`](Self::known) and the topic taken, across its links). By publisher, then
    /// topic: a message finds its stream with its topic borrowed (a key of both would be
    /// made, a topic's clone and drop, for every message).
    pub(super) streams: BTreeMap<NodeId, BTreeMap<Topic, Stream>>,
    /// References to this node's segments: queued, held by subscribers, or delivered locally.
    pub(super) refs: BTreeMap<SegmentId, usize>,
    /// Local deliveries of pooled payloads not released yet: (segment, offset) count.
    pub(super) local_held: BTreeMap<(SegmentId, u64), usize>,
    pub(super) room: BTreeMap<Topic, Room>,
    /// What may have changed rooms since they were last computed (see `settle_rooms`).
    pub(super) room_changes: RoomChanges,
    pub(super) rejected: u64,
    /// What this node refused to stay bounded (the member counts its links' part here too).
    pub(crate) guard: GuardStats,
    /// What this node keeps as a document witness (the member keeps it current).
    pub(crate) witness: WitnessStats,
    /// The application's counters, as last set ([`DataCmd::SetCounters`]).
    pub(super) app: Vec<AppCounter>,
    pub(super) refused: u64,
    /// Every node the routes showed, and since when it is gone from them (kept for
    /// [`DataConfig::verify_timeout`]): a publisher's records may arrive after the hub's word
    /// that it left (it published, then left at once).
    pub(super) known: BTreeMap<NodeId, (Ident, Option<Instant>)>,
    /// Topic bindings wait for this node's own announcement (until it leaves).
    pub(super) gated: bool,
    /// Buffers to encode the next records into (see `buffers`).
    pub(super) buffers: Buffers,
    /// The buffers of received inline payloads, written again once dropped (see `buffers`).
    pub(super) payloads: Payloads,
    /// The earliest timer armed since the member last took it ([`Self::take_armed`]).
    pub(super) armed: Option<Instant>,
    /// The topic of the last publish (see [`LastPublished`]). Cleared by any withdrawal.
    /// Boxed: a publish takes it out and puts it back, a pointer's move rather than its
    /// hundred-odd bytes' (about 40 instructions of a small message's publish).
    pub(super) last_published: Option<Box<LastPublished>>,
    /// Counts the changes to the routes and to `by_node`: the links a topic's message goes
    /// out on are the same while it stays (see [`LastPublished::targets`]). Bumped wherever
    /// either changes.
    pub(super) links_epoch: u64,
    pub(super) out: VecDeque<DataOutput>,
}

/// The topic of the last publish, as its publisher names it (the command's allocation) and
/// as interned, and the links its message went out on: a stream of publishes on one topic
/// finds it by a pointer comparison, without a lookup by name (nor [`DataPlane::room`] after
/// each), and its links without a look at the routes while they stay as they were
/// ([`DataPlane::links_epoch`]).
#[derive(Debug)]
pub(super) struct LastPublished {
    pub(super) named: Arc<str>,
    pub(super) topic: Topic,
    /// The links to the topic's subscribers as of `epoch` (`links_to`).
    pub(super) targets: SmallVec<[PeerId; 8]>,
    pub(super) epoch: u64,
}

impl DataPlane {
    /// A data plane for `config.node`, with no links yet.
    pub fn new(config: DataConfig, now: Instant) -> Self {
        Self {
            config,
            last_now: now,
            routes: Routes::default(),
            names: Names::default(),
            advertised: BTreeSet::new(),
            taken: BTreeMap::new(),
            seq: BTreeMap::new(),
            out_links: BTreeMap::new(),
            by_node: BTreeMap::new(),
            next_out: 0,
            in_links: BTreeMap::new(),
            streams: BTreeMap::new(),
            refs: BTreeMap::new(),
            local_held: BTreeMap::new(),
            room: BTreeMap::new(),
            room_changes: RoomChanges::default(),
            rejected: 0,
            guard: GuardStats::default(),
            witness: WitnessStats::default(),
            app: Vec::new(),
            refused: 0,
            known: BTreeMap::new(),
            gated: true,
            buffers: Buffers::default(),
            payloads: Payloads::default(),
            armed: None,
            last_published: None,
            links_epoch: 0,
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
            app: self.app.clone(),
            ..DataStats::default()
        };
        for l in self.out_links.values() {
            for (topic, t) in l.topics.iter().filter(|(_, t)| t.counted()) {
                s.published.push(TopicStats {
                    topic: topic.to_string(),
                    peer: Some(l.node),
                    messages: t.counters.messages,
                    dropped: t.counters.dropped,
                    missed: 0,
                    in_flight: u64::from(t.in_flight),
                });
            }
        }
        let streams = (self.streams.iter())
            .flat_map(|(publisher, topics)| topics.iter().map(move |(t, c)| (publisher, t, c)));
        for (publisher, topic, c) in streams {
            s.received.push(TopicStats {
                topic: topic.to_string(),
                peer: Some(*publisher),
                messages: c.messages,
                dropped: c.dropped,
                missed: c.missed,
                in_flight: 0,
            });
        }
        s
    }

    /// The subscribers this node has a link to (or is opening one to).
    pub fn subscribers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.by_node.keys().copied()
    }

    /// The latest time this plane was given: a time that changes nothing of its clock, for a
    /// publish that needs none (see [`HoldBack::go`](super::HoldBack::go)).
    pub fn clock(&self) -> Instant {
        self.last_now
    }

    /// How many more messages of `topic` its `Block` subscribers can take (`None`: no limit).
    pub fn room(&self, topic: &str) -> Option<Room> {
        match &self.last_published {
            // The name of the last publish, as its publisher passed it: the interned key.
            Some(last) if std::ptr::eq(&*last.named, topic) => self.room.get(&last.topic).copied(),
            _ => self.room.get(topic).copied(),
        }
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
    ///
    /// [`DataEvt::PeerRefused`]: super::DataEvt::PeerRefused
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// How many segment references the machine holds (for leak checks).
    pub fn segment_refs(&self) -> usize {
        self.refs.values().sum()
    }

    // ---- buffers ----

    /// Gives back a buffer the driver is done with, such as a [`DataOutput::Transmit`]'s bytes
    /// once sent: the machine encodes its next messages into it instead of allocating.
    /// Optional: a driver that drops its buffers loses only the reuse. A few small buffers
    /// are kept, the rest freed.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.buffers.put(buf);
    }

    /// A buffer given back before ([`Self::recycle`], or an inline payload once sent), to
    /// write the next inline payload into instead of allocating one: resize it to the
    /// payload's length (a shorter length costs nothing). Its bytes are what it held before,
    /// this node's own; `None` when none is kept.
    pub fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.buffers.take()
    }

    // ---- inputs ----

    /// Feeds one input. `Err` only for an invalid command; nothing a peer does is an error.
    pub fn handle(&mut self, now: Instant, input: DataInput<'_>) -> Result<(), CmdError> {
        let now = self.advance(now);
        let result = match input {
            DataInput::Cmd(cmd) => self.on_cmd(now, cmd),
            DataInput::PeerUp { peer, cred } => {
                self.on_peer_up(now, peer, cred);
                Ok(())
            }
            DataInput::PeerDown(peer) => {
                self.on_peer_down(now, peer);
                Ok(())
            }
            DataInput::Record {
                peer,
                data,
                segments,
            } => {
                self.on_record(now, peer, data, segments);
                Ok(())
            }
            DataInput::Blocked(peer) => {
                if let Some(l) = self.out_links.get_mut(&peer)
                    && l.state == OutState::Up
                {
                    l.state = OutState::Blocked;
                }
                Ok(())
            }
            DataInput::Rejected { peer, reason } => {
                self.misbehaved(peer, reason, &[]);
                Ok(())
            }
            DataInput::Writable(peer) => {
                if let Some(l) = self.out_links.get_mut(&peer)
                    && l.state == OutState::Blocked
                {
                    l.state = OutState::Up;
                    self.flush(peer);
                }
                Ok(())
            }
        };
        // What left a queue is no longer in flight: `Block` publishers may go on.
        self.settle_rooms();
        result
    }

    /// [`handle`](Self::handle) of a command, a [`DataCmd::Publish`] offering its inline
    /// messages to `direct` first (see [`DirectSend`]): while no output of this plane waits to
    /// be taken, a message for a link with nothing queued goes to `direct`, and its record
    /// only if `direct` does not take it.
    pub fn publish_direct(
        &mut self,
        now: Instant,
        cmd: DataCmd,
        direct: &mut dyn DirectSend,
    ) -> Result<(), CmdError> {
        match cmd {
            DataCmd::Publish {
                topic,
                payload,
                expired,
            } => self.publish_topic(now, &topic, payload.into(), expired, direct),
            cmd => self.handle(now, DataInput::Cmd(cmd)),
        }
    }

    /// [`publish_direct`](Self::publish_direct) of a [`DataCmd::Publish`] of `topic`,
    /// `payload` and `expired`, the topic borrowed: a command owns its `Arc`, whose clone and
    /// drop (an atomic operation each) a small message would pay for nothing; and so may the
    /// payload's bytes be ([`Outbound::Inline`]).
    pub fn publish_topic(
        &mut self,
        now: Instant,
        topic: &Arc<str>,
        payload: Outbound<'_>,
        expired: bool,
        direct: &mut dyn DirectSend,
    ) -> Result<(), CmdError> {
        self.advance(now);
        // An output not taken yet may be a record for a link the message would overtake.
        let direct = self.out.is_empty().then_some(direct);
        let result = self.publish_named(topic, payload, expired, direct);
        self.settle_rooms();
        result
    }

    /// [`handle`](Self::handle) of a [`DataInput::Record`] that is an inline message, given
    /// as its header and payload: for a driver that has those apart without the record (it
    /// would otherwise write one for this plane to read again). A reader that can write the
    /// payload into a buffer of this plane's saves the copy ([`Self::receive_payload`]).
    pub fn receive_inline(
        &mut self,
        now: Instant,
        peer: PeerId,
        header: MessageHeader,
        payload: &[u8],
    ) {
        let now = self.advance(now);
        let queued = self.on_inline(now, peer, header, InlineBody::Bytes(payload), false);
        debug_assert!(queued.is_none(), "handed back only when asked");
        self.settle_rooms();
    }

    /// A buffer of exactly `len` bytes for an inline payload to receive: written by the
    /// driver, then handed back with [`Self::receive_payload`] (see [`PayloadBuffer`]), which
    /// delivers all of it. The buffer of the oldest payload this plane still watches, if the
    /// application dropped it and it is that long; a new one otherwise.
    pub fn payload_buffer(&mut self, len: usize) -> PayloadBuffer {
        PayloadBuffer(self.payloads.buffer(len))
    }

    /// [`Self::receive_inline`] of a payload written into a [`Self::payload_buffer`]: delivered
    /// in that buffer, without a copy.
    pub fn receive_payload(
        &mut self,
        now: Instant,
        peer: PeerId,
        header: MessageHeader,
        payload: PayloadBuffer,
    ) {
        let now = self.advance(now);
        let queued = self.on_inline(now, peer, header, InlineBody::Buffer(payload.0), false);
        debug_assert!(queued.is_none(), "handed back only when asked");
        self.settle_rooms();
    }

    /// [`Self::receive_payload`], its message returned rather than queued as a
    /// [`DataOutput::Deliver`] when no output waits ahead of it (the driver polled them all
    /// since the last input): the caller hands it on before it polls the outputs, which may
    /// follow it (a room's news). A message that must follow an output waiting (a loss
    /// before it, say) is queued behind it as `receive_payload` queues it, and `None` is
    /// returned. What this saves a driver that delivers at once: the message's moves through
    /// the output queues (its own and the member's), about a tenth of what a small message
    /// costs its receiver.
    #[must_use = "a message returned is delivered by the caller, or lost"]
    pub fn receive_payload_direct(
        &mut self,
        now: Instant,
        peer: PeerId,
        header: MessageHeader,
        payload: PayloadBuffer,
    ) -> Option<Delivery> {
        let now = self.advance(now);
        let d = self.on_inline(now, peer, header, InlineBody::Buffer(payload.0), true);
        self.settle_rooms();
        d
    }

    /// Retries links whose time has come; early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        let timeout = self.config.verify_timeout;
        let overdue: Vec<(PeerId, String, bool)> = self
            .in_links
            .iter()
            .filter_map(|(p, l)| match &l.unverified {
                Some((since, why)) if *since + timeout <= now => Some((*p, why.clone(), l.down)),
                _ => None,
            })
            .collect();
        for (peer, why, down) in overdue {
            if down {
                // The publisher is gone, and the view never vouched for what it sent (its
                // announcement died with a hub, say): drop its records quietly, it broke
                // nothing.
                debug!(%peer, %why, "records of a link gone, never vouched for: dropped");
                self.forget_in_link(peer);
                continue;
            }
            let reason = format!("{why}, still after {timeout:?}");
            self.misbehaved(peer, reason, &[]);
        }
        let due: Vec<PeerId> = self
            .out_links
            .iter()
            .filter(|(_, l)| matches!(l.state, OutState::Retry(at) if at <= now))
            .map(|(p, _)| *p)
            .collect();
        for &peer in &due {
            let l = self.out_links.get_mut(&peer).expect("listed above");
            l.state = OutState::Connecting;
            let addr = l.addr.clone();
            self.out.push_back(DataOutput::Connect { peer, addr });
        }
        if !due.is_empty() {
            // The bindings went with the failed link: bound again, with their positions.
            self.tell_positions();
        }
        self.settle_rooms();
    }

    /// The next thing for the driver to do; drain until `None`.
    pub fn poll_output(&mut self) -> Option<DataOutput> {
        self.out.pop_front()
    }

    /// The earliest of the timers armed since the last call (a link's retry, a publisher's
    /// records held until the view vouches for it): what can make [`Self::poll_timeout`]
    /// sooner. The member keeps a deadline across the inputs of messages and asks this
    /// instead of `poll_timeout`, which looks at every link (debug builds check that the
    /// deadline it keeps is never later than `poll_timeout`'s).
    pub(crate) fn take_armed(&mut self) -> Option<Instant> {
        self.armed.take()
    }

    /// A timer is armed for `at` (see [`Self::take_armed`]).
    pub(super) fn arm(&mut self, at: Instant) {
        self.armed = Some(self.armed.map_or(at, |a| a.min(at)));
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
}
