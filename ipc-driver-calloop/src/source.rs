//! The node as a calloop event source.
//!
//! A [`NodeSource`] composes three calloop sources: a [`Generic`] watching the node's own
//! `epoll` set (every socket of the node and a `timerfd` for its deadlines), a [`Channel`] of
//! commands from [`NodeHandle`](crate::NodeHandle)s, and a [`PingSource`] woken when a
//! message or a loan is dropped on any thread. Links come and go inside the node's own set, so
//! the source never re-registers with calloop; timer changes are one `timerfd_settime`, made
//! only when the deadline moves earlier.
//!
//! Each wakeup reads the clock once, feeds what is ready to the [`Member`], acts on what it
//! asks (connect, bind, send, close, deliver, release), hands events to the callback, acts on
//! the commands the callback issued, and flushes what the sockets accept. Nothing blocks and
//! nothing sleeps. Commands issued outside the callback (through a `calloop::Dispatcher`) are
//! flushed in `before_sleep`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calloop::channel::{self, Channel};
use calloop::generic::Generic;
use calloop::ping::{self, PingSource};
use calloop::{EventSource, Interest, Mode, Poll, PostAction, Readiness, Token, TokenFactory};
use ipc_os::rendezvous::{DataSocket, GroupDir, HubSocket};
use ipc_proto::data::{DataCmd, Delivered, Delivery, OUTGOING, ReceivedSegment, SegmentId};
use ipc_proto::doc::DocEvt;
use ipc_proto::{
    Listener, Member, MemberCmd, MemberEvt, MemberInput, MemberOutput, NodeId, PeerId, SpokeCmd,
};
use slab::Slab;
use tracing::{debug, info, trace, warn};

use ipc_driver_core::{
    ACCEPT_BUDGET, CLOSE_FLUSH, MAX_FDS, PeerLog, READ_BUDGET, log_member_evt, random_seed,
};

use crate::builder::NodeBuilder;
use crate::data::{Mailbox, Message, ReleaseGuard};
use crate::error::DriverError;
use crate::node::{Node, NodeEvent, Request};
use ipc_os::memfd::{self, Mapping, SealSet, VerifiedSegment};
use ipc_os::poll::{Events, Interest as Want, Poller, Token as Key};
use ipc_os::socket::{self, Recv, Sent};
use ipc_os::timer::Timer;

const TIMER: u64 = u64::MAX;
const HUB_LISTENER: u64 = u64::MAX - 1;
const DATA_LISTENER: u64 = u64::MAX - 2;

#[derive(Debug)]
struct Link {
    fd: OwnedFd,
    /// A data link (records may carry fds; the member applies flow control).
    data: bool,
    peer: PeerId,
    outbox: VecDeque<(Vec<u8>, Option<SegmentId>)>,
    outbox_bytes: usize,
    /// Watching for writability.
    writable: bool,
    /// Reading stopped (the member rejected what it sent).
    paused: bool,
    /// The member was told the socket is full.
    told_blocked: bool,
    /// Closing: flush what is queued, then close, by this deadline.
    closing: Option<Instant>,
}

/// Readiness reports taken from the node's epoll set per turn (the rest wait for the next).
const EVENTS_PER_TURN: usize = 64;

/// What a link is watched for.
fn want(read: bool, write: bool) -> Want {
    match (read, write) {
        (true, true) => Want::BOTH,
        (true, false) => Want::READABLE,
        (false, true) => Want::WRITABLE,
        (false, false) => Want::NONE,
    }
}

/// A segment received from a publisher: verified, until first mapped, then its mapping.
#[derive(Debug)]
struct Received {
    verified: Option<VerifiedSegment>,
    size: u64,
    map: Option<Arc<Mapping>>,
}

/// The sockets and memory of a node.
#[derive(Debug)]
struct Io {
    epoll: Poller,
    events: Events,
    timer: Timer,
    dir: GroupDir,
    hub_listener: Option<HubSocket>,
    data_listener: Option<DataSocket>,
    links: Slab<Link>,
    peers: HashMap<PeerId, usize>,
    next_peer: u64,
    received: HashMap<SegmentId, Received>,
    next_received: u64,
    buf: Vec<u8>,
    data_buf: Vec<u8>,
    max_outbox: usize,
    /// What peers did wrong, logged rate-limited: a hostile peer chooses how often.
    peer_log: PeerLog,
}

/// A node of a group, as a calloop event source: insert it into your loop, and its callback
/// receives [`NodeEvent`]s with `&mut` [`Node`] to issue commands.
///
/// Its callback is `FnMut(NodeEvent, &mut Node, &mut Data)`. Dropping the source (removing
/// it from the loop) says goodbye to the hub as far as the sockets take it without waiting;
/// [`Node::leave`] leaves gracefully and removes the source once everything is flushed.
#[derive(Debug)]
pub struct NodeSource {
    readiness: Generic<OwnedFd>,
    requests: Channel<Request>,
    returns: PingSource,
    /// A token of ours to report events from `before_sleep`.
    synthetic: Option<Token>,
    io: Io,
    node: Node,
    events: VecDeque<NodeEvent>,
    /// A topic's room changed: held messages may go out.
    room_changed: bool,
    left: bool,
}

impl NodeBuilder {
    /// Starts joining the group: the returned source, once inserted into an event loop, finds
    /// the group's hub or becomes it, and reports [`NodeEvent::Synced`] when it holds the
    /// group's history. Nothing here blocks.
    pub fn join(self) -> Result<NodeSource, DriverError> {
        NodeSource::start(self, false)
    }

    /// Watches the group without joining it: no node record, no topics, never the hub.
    pub fn observe(self) -> Result<NodeSource, DriverError> {
        NodeSource::start(self, true)
    }
}

impl NodeSource {
    /// Configures a node named `name`.
    pub fn builder(name: &str) -> NodeBuilder {
        NodeBuilder::new(name)
    }

    pub(crate) fn start(b: NodeBuilder, observer: bool) -> Result<Self, DriverError> {
        let private = b.options.is_private(ipc_os::current_credentials().uid);
        let dir = GroupDir::open(&b.group, b.dir.as_deref(), private)?;
        let id = NodeId::new(random_seed() | 1).expect("odd, hence non-zero");
        let data_listener = if observer {
            None
        } else {
            Some(dir.listen_data(id.get())?)
        };
        #[allow(clippy::disallowed_methods)] // the driver reads the clock
        let now = Instant::now();
        let config = b.options.member_config(
            id,
            data_listener.as_ref().map(|l| l.addr().to_owned()),
            random_seed(),
        );
        let max_record = config.data.as_ref().map_or(0, |d| d.limits.max_record);
        let mut member = Member::new(config, now);
        member.handle(now, MemberInput::Cmd(MemberCmd::Spoke(SpokeCmd::Join)))?;

        let epoll = Poller::new()?;
        let timer = Timer::new()?;
        epoll.add(&timer, Key(TIMER), Want::READABLE)?;
        if let Some(l) = &data_listener {
            epoll.add(l, Key(DATA_LISTENER), Want::READABLE)?;
        }
        // calloop watches a duplicate of the set's fd: the same epoll instance.
        let readiness = Generic::new(
            epoll.as_fd().try_clone_to_owned()?,
            Interest::READ,
            Mode::Level,
        );
        let (tx, requests) = channel::channel();
        let (ping, returns) = ping::make_ping()?;
        let node = Node::new(
            member,
            b.group,
            b.options.name,
            b.pool_bytes,
            private,
            Arc::new(Mailbox::new(ping)),
            tx,
        );
        Ok(Self {
            readiness,
            requests,
            returns,
            synthetic: None,
            io: Io {
                epoll,
                events: Events::with_capacity(EVENTS_PER_TURN),
                timer,
                dir,
                hub_listener: None,
                data_listener,
                links: Slab::new(),
                peers: HashMap::new(),
                next_peer: 1,
                received: HashMap::new(),
                next_received: 1,
                // One frame, plus a byte to notice a record that is larger.
                buf: vec![0; b.options.limits.max_frame + 5],
                data_buf: vec![0; max_record + 1],
                max_outbox: b.max_outbox,
                peer_log: PeerLog::default(),
            },
            node,
            events: VecDeque::new(),
            room_changed: false,
            left: false,
        })
    }

    /// The node, to issue commands outside the callback (before inserting the source, or
    /// through a `calloop::Dispatcher`); they are flushed before the loop sleeps.
    pub fn node(&mut self) -> &mut Node {
        &mut self.node
    }

    /// Everything that is ready and due, in one go; events are queued for the callback.
    fn turn(&mut self, now: Instant) -> io::Result<()> {
        let mut listeners = [false; 2];
        // What is ready now, without waiting (calloop waited on the set's fd).
        self.io
            .epoll
            .wait(&mut self.io.events, Some(Duration::ZERO))?;
        let ready: Vec<_> = self
            .io
            .events
            .iter()
            .map(|e| (e.token().0, e.is_readable(), e.is_writable()))
            .collect();
        for (key, readable, writable) in ready {
            match key {
                TIMER => self.io.timer.clear(),
                HUB_LISTENER => listeners[0] = true,
                DATA_LISTENER => listeners[1] = true,
                key => {
                    let key = key as usize;
                    if writable {
                        self.io.flush(&mut self.node, now, key);
                    }
                    if readable {
                        self.read(now, key);
                    }
                }
            }
        }
        // The links first, then the hub's listener before the data listener: a flood of
        // connections to a node's data address must not keep new members from joining.
        if listeners[0] {
            self.io.accept(&mut self.node, now, Listener::Hub)?;
        }
        if listeners[1] {
            self.io.accept(&mut self.node, now, Listener::Data)?;
        }
        while let Ok(r) = self.requests.try_recv() {
            if let Err(failed) = self.node.request(r) {
                self.events.push_back(NodeEvent::Failed {
                    command: failed.0,
                    error: failed.1,
                });
            }
        }
        self.returns_and_deadlines(now);
        self.pump(now)
    }

    fn returns_and_deadlines(&mut self, now: Instant) {
        self.io.peer_log.summary(now);
        let returns = self.node.mailbox.take();
        for (segment, seg) in returns.loans {
            self.node.outgoing.give_back(segment, seg, true, now);
        }
        let mut by_peer: HashMap<PeerId, Vec<_>> = HashMap::new();
        for (peer, slot) in returns.releases {
            by_peer.entry(peer).or_default().push(slot);
        }
        for (peer, slots) in by_peer {
            let cmd = MemberCmd::Data(DataCmd::Release { peer, slots });
            self.feed(now, MemberInput::Cmd(cmd));
        }
        if self.node.member.poll_timeout().is_some_and(|t| t <= now) {
            self.node.member.handle_timeout(now);
        }
        if self.node.outgoing.next_trim().is_some_and(|t| t <= now) {
            for segment in self.node.outgoing.trim(now) {
                self.feed(
                    now,
                    MemberInput::Cmd(MemberCmd::Data(DataCmd::Retire { segment })),
                );
            }
        }
        self.node.release_held(now);
        for topic in self.node.take_owed_room() {
            self.events.push_back(NodeEvent::Room { topic });
        }
        let overdue: Vec<usize> = self
            .io
            .links
            .iter()
            .filter(|(_, l)| l.closing.is_some_and(|at| at <= now))
            .map(|(k, _)| k)
            .collect();
        for key in overdue {
            debug!(peer = %self.io.links[key].peer, "closing link with unsent data");
            self.io.remove(key);
        }
    }

    fn feed(&mut self, now: Instant, input: MemberInput<'_>) {
        if let Err(e) = self.node.member.handle(now, input) {
            warn!(error = %e, "the node refused a command");
        }
    }

    /// Acts on everything the member asks, and sends held messages that gained room.
    fn pump(&mut self, now: Instant) -> io::Result<()> {
        self.act(now)?;
        while std::mem::take(&mut self.room_changed) {
            self.node.release_held(now);
            for topic in self.node.take_owed_room() {
                self.events.push_back(NodeEvent::Room { topic });
            }
            self.act(now)?;
        }
        Ok(())
    }

    fn act(&mut self, now: Instant) -> io::Result<()> {
        while let Some(out) = self.node.member.poll_output() {
            match out {
                MemberOutput::ConnectHub { peer } => {
                    let linked = self.io.dir.connect_hub();
                    self.io.connect(&mut self.node, now, peer, linked, false);
                }
                MemberOutput::ConnectData { peer, addr } => {
                    let linked = self.io.dir.connect_data(&addr);
                    self.io.connect(&mut self.node, now, peer, linked, true);
                }
                MemberOutput::Bind => self.io.bind(&mut self.node, now)?,
                MemberOutput::Unbind => {
                    if let Some(l) = self.io.hub_listener.take() {
                        let _ = self.io.epoll.delete(l.as_fd());
                        info!("this node's hub closed");
                    }
                }
                MemberOutput::Transmit {
                    peer,
                    bytes,
                    attach,
                } => {
                    if attach.is_some_and(|s| self.node.outgoing.fd(s).is_none()) {
                        warn!(?attach, "a segment to send is gone: dropping the record");
                        continue;
                    }
                    self.io.transmit(&mut self.node, now, peer, bytes, attach);
                }
                MemberOutput::Disconnect(peer) => self.io.disconnect(&mut self.node, now, peer),
                MemberOutput::Deliver(d) => self.deliver(d),
                MemberOutput::Release(seg) => {
                    if !self.node.outgoing.release(seg, now) {
                        self.io.received.remove(&seg);
                    }
                }
                MemberOutput::PauseAccepting | MemberOutput::ResumeAccepting => {
                    self.io.watch_listeners(self.node.member.is_accepting());
                }
                MemberOutput::Evt(evt) => self.on_evt(now, evt),
            }
        }
        Ok(())
    }

    fn on_evt(&mut self, now: Instant, evt: MemberEvt) {
        let Some(evt) = log_member_evt(&mut self.io.peer_log, now, evt) else {
            return;
        };
        let event = match evt {
            MemberEvt::Topology(e) => NodeEvent::Topology(e),
            MemberEvt::Synced { hub, term } => {
                info!(%hub, %term, "synced with the hub");
                NodeEvent::Synced { hub, term }
            }
            MemberEvt::BecameHub => {
                info!("this node is now the hub");
                NodeEvent::BecameHub
            }
            MemberEvt::HubLost => NodeEvent::HubLost,
            MemberEvt::HubUnresponsive => NodeEvent::HubUnresponsive,
            MemberEvt::HubResponsive => NodeEvent::HubResponsive,
            MemberEvt::HubClosed(reason) => NodeEvent::HubClosed(reason),
            MemberEvt::HubAbsent => NodeEvent::HubAbsent,
            // Held messages may go out now: see `pump`.
            MemberEvt::Room { .. } => {
                self.room_changed = true;
                return;
            }
            MemberEvt::HubRefused { cred } => {
                let holder = match cred {
                    Some(c) => format!("uid {} (pid {})", c.uid, c.pid),
                    None => "a process whose credentials cannot be read".into(),
                };
                return warn!(
                    "the hub socket of group {} is held by {holder}, which the group does not \
                     allow: nothing sent to it, trying again",
                    self.node.group
                );
            }
            MemberEvt::Doc(e) => {
                let observed = match &e {
                    DocEvt::Changed { name, scope, .. } => self.node.observed(name, scope),
                    _ => Vec::new(),
                };
                self.events.push_back(NodeEvent::Doc(e));
                self.events.extend(observed);
                return;
            }
            other => return debug!(evt = other.name(), "member event"),
        };
        self.events.push_back(event);
    }

    /// Turns a delivery into a message for the callback.
    fn deliver(&mut self, d: Delivery) {
        let (topic, publisher, seq) = (Arc::clone(&d.topic), d.publisher, d.seq);
        let msg = match d.payload {
            Delivered::Inline(bytes) => Some(Message::inline(topic, publisher, seq, bytes)),
            Delivered::Fresh { segment, len } => {
                self.io.map_fresh(segment, len).map(|(map, len)| {
                    Message::mapped(topic, publisher, seq, map, 0, len, "fresh", None)
                })
            }
            Delivered::Pooled {
                segment,
                offset,
                len,
                slot,
            } => self.map_pooled(segment).and_then(|map| {
                let start = usize::try_from(offset).ok()?;
                let len = usize::try_from(len).ok()?;
                // The data plane checked the range against the segment's size.
                (start.checked_add(len)? <= map.as_slice().len()).then_some(())?;
                let release = ReleaseGuard {
                    peer: d.peer,
                    slot,
                    mailbox: Arc::clone(&self.node.mailbox),
                };
                Some(Message::mapped(
                    topic,
                    publisher,
                    seq,
                    map,
                    start,
                    len,
                    "pooled",
                    Some(release),
                ))
            }),
        };
        match msg {
            Some(m) => self.events.push_back(NodeEvent::Message(m)),
            None => warn!(topic = %d.topic, "could not map a received payload: message dropped"),
        }
    }

    fn map_pooled(&mut self, segment: SegmentId) -> Option<Arc<Mapping>> {
        if self.node.outgoing.is_pool(segment) {
            // Our own pool segment, delivered to ourselves: map it read-only like anyone else.
            let fd = self.node.outgoing.fd(segment)?.try_clone_to_owned().ok()?;
            let v = memfd::verify(fd, SealSet::EMPTY, 0, 0).ok()?;
            return v.map_ro(0, v.size()).ok().map(Arc::new);
        }
        let r = self.io.received.get_mut(&segment)?;
        if r.map.is_none() {
            let v = r.verified.take()?;
            match v.map_ro(0, r.size) {
                Ok(m) => r.map = Some(Arc::new(m)),
                Err(e) => {
                    warn!(error = %e, "mmap failed");
                    return None;
                }
            }
        }
        r.map.clone()
    }

    fn read(&mut self, now: Instant, key: usize) {
        for _ in 0..READ_BUDGET {
            let Some(link) = self.io.links.get(key) else {
                return;
            };
            if link.closing.is_some() || link.paused {
                return;
            }
            if !self.read_record(now, key) {
                return;
            }
        }
    }

    /// Reads one record of a link and hands it to the member; `false` when there is nothing
    /// more to read now.
    fn read_record(&mut self, now: Instant, key: usize) -> bool {
        let link = &self.io.links[key];
        let (peer, data) = (link.peer, link.data);
        let buf = if data {
            &mut self.io.data_buf
        } else {
            &mut self.io.buf
        };
        let mut fds = Vec::new();
        let max_fds = if data { MAX_FDS } else { 0 };
        match socket::recv_record(link.fd.as_fd(), buf, &mut fds, max_fds) {
            Ok(Recv::Data {
                len,
                truncated,
                fds_truncated,
                ..
            }) => {
                if truncated || fds_truncated || (!data && !fds.is_empty()) {
                    let reason = "a record too large, or with too many fds".to_string();
                    self.reject(now, key, reason);
                    return false;
                }
                let mut segments = Vec::with_capacity(fds.len());
                for fd in fds {
                    match memfd::verify(fd, SealSet::EMPTY, 0, 0) {
                        Ok(v) => {
                            let (size, seals) = (v.size(), v.seals().into());
                            let segment = SegmentId(self.io.next_received);
                            self.io.next_received += 1;
                            self.io.received.insert(
                                segment,
                                Received {
                                    verified: Some(v),
                                    size,
                                    map: None,
                                },
                            );
                            segments.push(ReceivedSegment {
                                segment,
                                size,
                                seals,
                            });
                        }
                        Err(e) => {
                            for s in segments {
                                self.io.received.remove(&s.segment);
                            }
                            self.reject(now, key, format!("a received fd is unusable: {e}"));
                            return false;
                        }
                    }
                }
                let buf = if data {
                    &self.io.data_buf
                } else {
                    &self.io.buf
                };
                let input = MemberInput::Record {
                    peer,
                    data: &buf[..len],
                    segments: &segments,
                };
                if let Err(e) = self.node.member.handle(now, input) {
                    warn!(error = %e, "record refused");
                }
                // Deliveries map the segments registered above: act on them now.
                if let Err(e) = self.pump(now) {
                    warn!(error = %e, "I/O error while acting on a record");
                }
                true
            }
            Ok(Recv::Closed) => {
                self.io.drop_link(&mut self.node, now, key);
                false
            }
            Ok(Recv::WouldBlock) => false,
            Err(e) => {
                debug!(%peer, error = %e, "receive failed: link is gone");
                self.io.drop_link(&mut self.node, now, key);
                false
            }
        }
    }

    /// The driver refused what a link sent: the member closes it as a violation.
    fn reject(&mut self, now: Instant, key: usize, reason: String) {
        let peer = self.io.links[key].peer;
        self.feed(now, MemberInput::Rejected { peer, reason });
        if let Err(e) = self.pump(now) {
            warn!(error = %e, "I/O error while closing a link");
        }
        // Whatever the member decided, nothing more is read from this link.
        if self.io.links.contains(key) {
            self.io.links[key].paused = true;
            self.io.update_interest(key);
        }
    }

    /// Whether the node has left and what it published is flushed (or it is time to give up).
    fn finished(&self, now: Instant) -> bool {
        self.node.leaving.is_some_and(|deadline| {
            let flushed = self.node.member.is_left()
                && self
                    .io
                    .links
                    .iter()
                    .all(|(_, l)| l.data && l.outbox.is_empty());
            flushed || deadline <= now
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        let closing = self.io.links.iter().filter_map(|(_, l)| l.closing);
        [
            self.node.member.poll_timeout(),
            self.node.outgoing.next_trim(),
            self.node.next_held(),
            self.node.leaving,
            self.io.peer_log.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .chain(closing)
        .min()
    }

    /// Hands queued events to the callback; what the callback does is acted on before the
    /// next event.
    fn dispatch<F>(&mut self, now: Instant, callback: &mut F) -> io::Result<()>
    where
        F: FnMut(NodeEvent, &mut Node),
    {
        while let Some(event) = self.events.pop_front() {
            callback(event, &mut self.node);
            // Commands from the callback, and messages it dropped.
            self.returns_and_deadlines(now);
            self.pump(now)?;
        }
        Ok(())
    }
}

impl Io {
    fn connect(
        &mut self,
        node: &mut Node,
        now: Instant,
        peer: PeerId,
        linked: io::Result<OwnedFd>,
        data: bool,
    ) {
        let linked = linked.and_then(|fd| {
            if data {
                socket::set_send_buffer(fd.as_fd(), 1 << 20)?;
            }
            let cred = socket::peer_credentials(fd.as_fd()).ok();
            self.add_link(fd, data, peer)?;
            Ok(cred)
        });
        let input = match linked {
            Ok(cred) => MemberInput::Connected { peer, cred },
            Err(e) => {
                trace!(%peer, error = %e, "connection failed");
                MemberInput::ConnectFailed(peer)
            }
        };
        feed(node, now, input);
    }

    fn bind(&mut self, node: &mut Node, now: Instant) -> io::Result<()> {
        let won = match self.dir.claim_hub() {
            Ok(Some(l)) => {
                // Bound during a pause: watched once the member accepts again.
                self.epoll.add(
                    &l,
                    Key(HUB_LISTENER),
                    want(node.member.is_accepting(), false),
                )?;
                self.hub_listener = Some(l);
                true
            }
            Ok(None) => {
                trace!("another process holds the hub's lock");
                false
            }
            Err(e) => {
                warn!(error = %e, "cannot claim the group's hub");
                false
            }
        };
        feed(node, now, MemberInput::Bound { won });
        Ok(())
    }

    /// Accepts what a listener has, up to [`ACCEPT_BUDGET`] (the listener stays readable for
    /// the rest). A failure (out of descriptors: `EMFILE`, `ENFILE`) goes to the member, which
    /// pauses the listeners for a while: the node goes on serving the links it has.
    fn accept(&mut self, node: &mut Node, now: Instant, listener: Listener) -> io::Result<()> {
        if !node.member.is_accepting() {
            return Ok(());
        }
        let fd = match listener {
            Listener::Hub => self.hub_listener.as_ref().map(AsFd::as_fd),
            Listener::Data => self.data_listener.as_ref().map(AsFd::as_fd),
        };
        let mut accepted = Vec::new();
        let mut failed = None;
        if let Some(fd) = fd {
            while accepted.len() < ACCEPT_BUDGET {
                match socket::accept(fd) {
                    Ok(Some(conn)) => accepted.push(conn),
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        for (fd, cred) in accepted {
            self.next_peer += 1;
            debug_assert!(self.next_peer < OUTGOING);
            let peer = PeerId(self.next_peer);
            if let Err(e) = self.add_link(fd, listener == Listener::Data, peer) {
                // The connection closes with its fd; the member never heard of it.
                if self.peer_log.allow(now) {
                    warn!(?listener, error = %e, "could not watch an accepted connection");
                }
                continue;
            }
            let input = MemberInput::Accepted {
                peer,
                listener,
                cred: Some(cred),
            };
            feed(node, now, input);
        }
        if let Some(e) = failed {
            debug!(?listener, error = %e, "accept failed");
            // The member answers with PauseAccepting, acted on in this turn's `pump`.
            feed(node, now, MemberInput::AcceptFailed(listener));
        }
        Ok(())
    }

    /// Watches the listeners for connections, or stops (out of descriptors): the links are
    /// served meanwhile.
    fn watch_listeners(&self, accepting: bool) {
        let want = want(accepting, false);
        for (l, key) in [
            (self.hub_listener.as_ref().map(AsFd::as_fd), HUB_LISTENER),
            (self.data_listener.as_ref().map(AsFd::as_fd), DATA_LISTENER),
        ] {
            if let Some(l) = l
                && let Err(e) = self.epoll.modify(l, Key(key), want)
            {
                warn!(error = %e, "could not change what a listener is watched for");
            }
        }
    }

    fn add_link(&mut self, fd: OwnedFd, data: bool, peer: PeerId) -> io::Result<()> {
        let entry = self.links.vacant_entry();
        let key = entry.key();
        self.epoll.add(&fd, Key(key as u64), Want::READABLE)?;
        entry.insert(Link {
            fd,
            data,
            peer,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            writable: false,
            paused: false,
            told_blocked: false,
            closing: None,
        });
        self.peers.insert(peer, key);
        Ok(())
    }

    fn transmit(
        &mut self,
        node: &mut Node,
        now: Instant,
        peer: PeerId,
        bytes: Vec<u8>,
        attach: Option<SegmentId>,
    ) {
        let Some(&key) = self.peers.get(&peer) else {
            trace!(%peer, "transmit to a closed link dropped");
            return;
        };
        let link = &mut self.links[key];
        if link.closing.is_some() {
            return;
        }
        link.outbox_bytes += bytes.len();
        link.outbox.push_back((bytes, attach));
        // The member bounds its data links; topology links are bounded here.
        if !link.data && link.outbox_bytes > self.max_outbox {
            let bytes = link.outbox_bytes;
            if self.peer_log.allow(now) {
                warn!(%peer, bytes, "peer does not keep up: closing its link");
            }
            self.drop_link(node, now, key);
            return;
        }
        self.flush(node, now, key);
    }

    /// Sends what the socket accepts; watches for writability if it does not take it all.
    fn flush(&mut self, node: &mut Node, now: Instant, key: usize) {
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        while let Some((bytes, attach)) = link.outbox.front() {
            let fd = attach.and_then(|s| node.outgoing.fd(s));
            if attach.is_some() && fd.is_none() {
                // Retired while queued: the record would refer to nothing.
                link.outbox_bytes -= bytes.len();
                link.outbox.pop_front();
                continue;
            }
            let fds: Vec<_> = fd.into_iter().collect();
            match socket::send_record(link.fd.as_fd(), bytes, &fds) {
                Ok(Sent::Complete) => {
                    link.outbox_bytes -= bytes.len();
                    link.outbox.pop_front();
                }
                Ok(Sent::WouldBlock) => break,
                Err(e) => {
                    debug!(peer = %link.peer, error = %e, "send failed: link is gone");
                    self.drop_link(node, now, key);
                    return;
                }
            }
        }
        let full = !link.outbox.is_empty();
        if full != link.writable {
            link.writable = full;
            self.update_interest(key);
        }
        let link = &mut self.links[key];
        if link.data && link.closing.is_none() && full != link.told_blocked {
            link.told_blocked = full;
            let peer = link.peer;
            let input = if full {
                MemberInput::Blocked(peer)
            } else {
                MemberInput::Writable(peer)
            };
            feed(node, now, input);
        }
        if self
            .links
            .get(key)
            .is_some_and(|l| l.closing.is_some() && l.outbox.is_empty())
        {
            self.remove(key);
        }
    }

    fn update_interest(&self, key: usize) {
        let link = &self.links[key];
        let want = want(!link.paused, link.writable);
        let _ = self.epoll.modify(link.fd.as_fd(), Key(key as u64), want);
    }

    fn map_fresh(&mut self, segment: SegmentId, len: u64) -> Option<(Arc<Mapping>, usize)> {
        let r = self.received.remove(&segment)?;
        let len = usize::try_from(len).ok()?;
        // The data plane checked `len` against the size (and `map_ro` checks it again); the
        // mapping keeps the pages and the fd closes here.
        let v = r.verified?;
        v.map_ro(0, len as u64)
            .map_err(|e| warn!(error = %e, "mmap failed"))
            .ok()
            .map(|m| (Arc::new(m), len))
    }

    /// The member asked to close a link: flush what is queued, then close.
    fn disconnect(&mut self, node: &mut Node, now: Instant, peer: PeerId) {
        let Some(&key) = self.peers.get(&peer) else {
            return;
        };
        self.links[key].closing = Some(now + CLOSE_FLUSH);
        self.flush(node, now, key);
    }

    /// The link broke: close it and tell the member.
    fn drop_link(&mut self, node: &mut Node, now: Instant, key: usize) {
        let Some(link) = self.links.get(key) else {
            return;
        };
        let (peer, closing) = (link.peer, link.closing.is_some());
        self.remove(key);
        if !closing {
            feed(node, now, MemberInput::PeerDown(peer));
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(link) = self.links.try_remove(key) {
            let _ = self.epoll.delete(link.fd.as_fd());
            self.peers.remove(&link.peer);
            trace!(peer = %link.peer, "link closed");
        }
    }
}

fn feed(node: &mut Node, now: Instant, input: MemberInput<'_>) {
    if let Err(e) = node.member.handle(now, input) {
        warn!(error = %e, "the node refused an input");
    }
}

impl EventSource for NodeSource {
    type Event = NodeEvent;
    type Metadata = Node;
    type Ret = ();
    type Error = DriverError;

    const NEEDS_EXTRA_LIFECYCLE_EVENTS: bool = true;

    fn process_events<F>(
        &mut self,
        readiness: Readiness,
        token: Token,
        mut callback: F,
    ) -> Result<PostAction, Self::Error>
    where
        F: FnMut(Self::Event, &mut Self::Metadata) -> Self::Ret,
    {
        if self.left {
            return Ok(PostAction::Remove);
        }
        // Clear the children's readiness; the work itself is the same whoever woke us.
        self.readiness
            .process_events(readiness, token, |_, _| Ok(PostAction::Continue))?;
        let mut requests = Vec::new();
        self.requests
            .process_events(readiness, token, |e, _| {
                if let channel::Event::Msg(r) = e {
                    requests.push(r);
                }
            })
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.returns
            .process_events(readiness, token, |(), _| {})
            .map_err(|e| io::Error::other(e.to_string()))?;
        for r in requests {
            if let Err((command, error)) = self.node.request(r) {
                self.events.push_back(NodeEvent::Failed { command, error });
            }
        }

        #[allow(clippy::disallowed_methods)] // the driver reads the clock
        let now = Instant::now();
        self.turn(now)?;
        self.dispatch(now, &mut callback)?;
        if self.finished(now) {
            self.left = true;
            callback(NodeEvent::Left, &mut self.node);
            return Ok(PostAction::Remove);
        }
        self.io.timer.arm(now, self.next_deadline())?;
        Ok(PostAction::Continue)
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.readiness.register(poll, factory)?;
        self.requests.register(poll, factory)?;
        self.returns.register(poll, factory)?;
        self.synthetic = Some(factory.token());
        Ok(())
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.readiness.reregister(poll, factory)?;
        self.requests.reregister(poll, factory)?;
        self.returns.reregister(poll, factory)?;
        self.synthetic = Some(factory.token());
        Ok(())
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.readiness.unregister(poll)?;
        self.requests.unregister(poll)?;
        self.returns.unregister(poll)?;
        self.synthetic = None;
        Ok(())
    }

    fn before_sleep(&mut self) -> calloop::Result<Option<(Readiness, Token)>> {
        #[allow(clippy::disallowed_methods)] // the driver reads the clock
        let now = Instant::now();
        // Commands issued outside our callback since the last turn.
        self.returns_and_deadlines(now);
        self.pump(now)?;
        let pending = !self.events.is_empty() || self.finished(now);
        self.io.timer.arm(now, self.next_deadline())?;
        Ok(if pending {
            self.synthetic.map(|t| (Readiness::EMPTY, t))
        } else {
            None
        })
    }
}

impl Drop for NodeSource {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        // Best effort without waiting: the goodbye goes out if the socket takes it.
        self.node.leave();
        #[allow(clippy::disallowed_methods)] // the driver reads the clock
        let now = Instant::now();
        let _ = self.pump(now);
    }
}
