//! The node's I/O thread: the only thread that touches the node's [`Member`] and its sockets.
//!
//! One `epoll` set holds the eventfd waker (requests from application threads), the hub
//! address's listener while this node runs the hub, the node's data listener, and every link
//! the member asked for or the listeners accepted. Each wakeup reads the clock once, feeds what
//! is ready to the member, acts on what it asks (connect, bind, send, close, deliver, release),
//! flushes what the sockets accept, and sleeps until the next readiness or deadline. Every
//! protocol decision is the member's; this thread moves bytes, fds, memory and time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ipc_proto::data::{
    DataCmd, Delivered, Delivery, LOCAL, Mode, OUTGOING, Pool, ReceivedSegment, Seals, SegmentId,
};
use ipc_proto::{
    Listener, Member, MemberCmd, MemberEvt, MemberInput, MemberOutput, PeerId, SpokeCmd,
};
use slab::Slab;
use tracing::{debug, info, trace, warn};

use ipc_driver_core::{
    ACCEPT_BUDGET, CLOSE_FLUSH, LEAVE_DEADLINE, MAX_FDS, PeerLog, READ_BUDGET, log_member_evt,
};

use crate::data::{Mailbox, Message, Offered, OutSegment, Outgoing, SubQueue};
use crate::doc::{DocRegistry, push_all};
use crate::events::{NodeEvent, Sink};
use crate::request::{Request, Shared};
use ipc_os::memfd::{self, Mapping, SealSet, VerifiedSegment};
use ipc_os::poll::{Event, Events, Interest, Poller, Token, Waker};
use ipc_os::rendezvous::{DataSocket, GroupDir, HubSocket};
use ipc_os::socket::{self, Recv, Sent};

const WAKER: Token = Token(u64::MAX);
const HUB_LISTENER: Token = Token(u64::MAX - 1);
const DATA_LISTENER: Token = Token(u64::MAX - 2);

/// Everything the I/O thread needs to run a node.
pub(crate) struct Setup {
    pub(crate) dir: GroupDir,
    pub(crate) member: Member,
    pub(crate) data_listener: Option<DataSocket>,
    pub(crate) outgoing: Arc<Outgoing>,
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) max_outbox: usize,
    pub(crate) max_frame: usize,
    pub(crate) max_record: usize,
    /// Join only a running group (see [`Orphan`]).
    pub(crate) join_existing: bool,
    /// How long a node that joins only a running group waits for a new hub.
    pub(crate) keepalive: Duration,
}

/// What a node that joins only a running group
/// ([`NodeBuilder::join_existing`](crate::NodeBuilder::join_existing)) knows of its group.
///
/// ```text
///  Joining --connect fails, lock free--> NoGroup
///     | Synced                              ^
///     v                                     | deadline, still no hub
///  Synced <--Synced-- Orphaned{deadline} ---'
///     '----HubLost------^
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Orphan {
    Joining,
    Synced,
    Orphaned { deadline: Instant },
    NoGroup,
}

#[derive(Debug)]
struct Link {
    fd: OwnedFd,
    /// A data link (records may carry fds; the member applies flow control).
    data: bool,
    peer: PeerId,
    outbox: VecDeque<(Vec<u8>, Option<OutSegment>)>,
    outbox_bytes: usize,
    writable: bool,
    /// Reading paused: a subscription's queue is full under `Block`.
    paused: bool,
    /// The member was told the socket is full.
    told_blocked: bool,
    /// Closing: flush what is queued, then close, by this deadline.
    closing: Option<Instant>,
    /// A send failed (the peer has closed its end): nothing more is written, but what the peer
    /// sent before closing is still read, up to the end of the stream, which closes the link.
    write_failed: bool,
}

/// A segment received from a publisher, mapped once on first use.
#[derive(Debug)]
struct RecvSegment {
    verified: VerifiedSegment,
    map: Option<Arc<Mapping>>,
}

/// The I/O thread's state.
pub(crate) struct Reactor {
    dir: GroupDir,
    max_outbox: usize,
    poller: Poller,
    waker: Arc<Waker>,
    requests: Receiver<Request>,
    member: Member,
    hub_listener: Option<HubSocket>,
    data_listener: Option<DataSocket>,
    links: Slab<Link>,
    peers: HashMap<PeerId, usize>,
    next_peer: u64,
    sinks: Vec<Sink>,
    shared: Arc<Shared>,
    outgoing: Arc<Outgoing>,
    mailbox: Arc<Mailbox>,
    subs: BTreeMap<Arc<str>, Vec<Arc<SubQueue>>>,
    received: HashMap<SegmentId, RecvSegment>,
    next_received: u64,
    view_dirty: bool,
    buf: Vec<u8>,
    data_buf: Vec<u8>,
    /// Leaving: who waits for the end, and when to give up flushing.
    leaving: Option<(Option<SyncSender<()>>, Instant)>,
    docs: DocRegistry,
    /// What peers did wrong, logged rate-limited: a hostile peer chooses how often.
    peer_log: PeerLog,
    /// `None` for a node that may start the group; see [`Orphan`].
    orphan: Option<Orphan>,
    keepalive: Duration,
}

impl Reactor {
    pub(crate) fn new(
        setup: Setup,
        waker: Arc<Waker>,
        requests: Receiver<Request>,
        shared: Arc<Shared>,
        sinks: Vec<Sink>,
    ) -> io::Result<Self> {
        let poller = Poller::new()?;
        poller.add(waker.as_fd(), WAKER, Interest::READABLE)?;
        if let Some(l) = &setup.data_listener {
            poller.add(l.as_fd(), DATA_LISTENER, Interest::READABLE)?;
        }
        Ok(Self {
            dir: setup.dir,
            max_outbox: setup.max_outbox,
            poller,
            waker,
            requests,
            member: setup.member,
            hub_listener: None,
            data_listener: setup.data_listener,
            links: Slab::new(),
            peers: HashMap::new(),
            next_peer: 1,
            sinks,
            shared,
            outgoing: setup.outgoing,
            mailbox: setup.mailbox,
            subs: BTreeMap::new(),
            received: HashMap::new(),
            next_received: 1,
            view_dirty: false,
            // One frame, plus a byte to notice a record that is larger.
            buf: vec![0; setup.max_frame + 5],
            data_buf: vec![0; setup.max_record + 1],
            leaving: None,
            docs: DocRegistry::default(),
            peer_log: PeerLog::default(),
            orphan: setup.join_existing.then_some(Orphan::Joining),
            keepalive: setup.keepalive,
        })
    }

    /// Runs until the node has left (or the I/O fails), then releases every socket.
    pub(crate) fn run(mut self) {
        let result = self.event_loop();
        let no_group = self.orphan == Some(Orphan::NoGroup);
        let why = match &result {
            Ok(()) if no_group => {
                "no hub runs in the group, and this node may not start one".into()
            }
            Ok(()) => "left the group".to_string(),
            Err(e) => {
                warn!(error = %e, "I/O thread stops");
                format!("I/O error: {e}")
            }
        };
        // Why, first: whoever sees the events or a document end can ask the node.
        {
            let mut s = self.shared.lock();
            s.stopped = Some(why.clone());
            s.no_group = no_group;
            s.hub = None;
            s.is_hub = false;
        }
        self.shared.changed.notify_all();
        self.docs.stop(&why);
        for sink in &self.sinks {
            sink.close();
        }
        for queue in self.subs.values().flatten() {
            queue.close();
        }
        self.outgoing.close();
        if let Some((Some(reply), _)) = self.leaving.take() {
            let _ = reply.send(());
        }
    }

    fn event_loop(&mut self) -> io::Result<()> {
        let mut ready = Events::with_capacity(64);
        // Start: the member was told to join before the thread started.
        self.pump(Instant::now())?;
        self.publish();
        loop {
            if self.orphan == Some(Orphan::NoGroup) {
                return Ok(());
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            self.poller.wait(&mut ready, timeout)?;
            let now = Instant::now();
            let mut listeners = [false; 2];
            for event in ready.iter() {
                match event.token() {
                    HUB_LISTENER => listeners[0] = true,
                    DATA_LISTENER => listeners[1] = true,
                    _ => self.on_ready(now, event)?,
                }
            }
            // The links first, then the hub's listener before the data listener: a flood of
            // connections to a node's data address must not keep new members from joining.
            if listeners[0] {
                self.accept(now, Listener::Hub)?;
            }
            if listeners[1] {
                self.accept(now, Listener::Data)?;
            }
            self.on_deadlines(now);
            self.pump(now)?;
            self.publish();
            if self.finished(now) {
                return Ok(());
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let closing = self.links.iter().filter_map(|(_, l)| l.closing);
        [
            self.member.poll_timeout(),
            self.outgoing.next_trim(),
            self.leaving.as_ref().map(|l| l.1),
            self.peer_log.poll_timeout(),
            match self.orphan {
                Some(Orphan::Orphaned { deadline }) => Some(deadline),
                _ => None,
            },
        ]
        .into_iter()
        .flatten()
        .chain(closing)
        .min()
    }

    fn on_ready(&mut self, now: Instant, event: Event) -> io::Result<()> {
        match event.token() {
            WAKER => self.on_requests(now),
            // Accepted after the links (see `event_loop`).
            HUB_LISTENER | DATA_LISTENER => Ok(()),
            Token(key) => {
                let key = key as usize;
                if event.is_writable() {
                    self.flush(now, key);
                }
                if event.is_readable() || event.is_hangup() || event.is_error() {
                    self.read(now, key);
                }
                Ok(())
            }
        }
    }

    fn on_requests(&mut self, now: Instant) -> io::Result<()> {
        self.waker.reset()?;
        for (peer, slots) in self.mailbox.take_releases() {
            self.feed(
                now,
                MemberInput::Cmd(MemberCmd::Data(DataCmd::Release { peer, slots })),
            );
        }
        for peer in self.mailbox.take_resumes() {
            self.set_paused(peer, false);
        }
        loop {
            match self.requests.try_recv() {
                Ok(Request::Cmd(cmd, reply)) => {
                    let r = self
                        .member
                        .handle(now, MemberInput::Cmd(MemberCmd::Spoke(cmd)));
                    let _ = reply.send(r);
                    self.pump(now)?;
                }
                Ok(Request::Events(sink)) => self.sinks.push(sink),
                Ok(Request::Leave(reply)) => self.start_leaving(now, Some(reply)),
                Ok(Request::Data(cmd)) => {
                    let published = match &cmd {
                        DataCmd::Publish { topic, .. } => Some(topic.clone()),
                        _ => None,
                    };
                    self.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
                    if let Some(topic) = published {
                        // Its room is accounted for now: the publisher's credit comes back.
                        self.pump(now)?;
                        self.outgoing.processed(&topic);
                    }
                }
                Ok(Request::Take(topic, queue)) => {
                    let mut terms = queue.options.terms();
                    let list = self.subs.entry(Arc::clone(&topic)).or_default();
                    // The topic's subscriptions take up to the largest of their maximums.
                    terms.max_payload = list
                        .iter()
                        .map(|q| q.options.max_payload)
                        .fold(terms.max_payload, u64::max);
                    list.push(queue);
                    let cmd = DataCmd::Take {
                        topic: topic.to_string(),
                        terms,
                    };
                    self.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
                }
                Ok(Request::Drop(topic, queue)) => self.drop_subscription(now, &topic, &queue),
                Ok(Request::Doc(r)) => {
                    self.docs.handle(&mut self.member, now, r);
                    self.pump(now)?;
                }
                Ok(Request::Stats(reply)) => {
                    let _ = reply.send(self.member.data().map(|d| d.stats()).unwrap_or_default());
                }
                Err(TryRecvError::Empty) => return Ok(()),
                // The node's handle is gone without a goodbye (it always sends one): leave.
                Err(TryRecvError::Disconnected) => {
                    self.start_leaving(now, None);
                    return Ok(());
                }
            }
        }
    }

    fn drop_subscription(&mut self, now: Instant, topic: &Arc<str>, queue: &Weak<SubQueue>) {
        let Some(list) = self.subs.get_mut(topic) else {
            return;
        };
        list.retain(|q| !std::ptr::eq(Arc::as_ptr(q), queue.as_ptr()));
        if list.is_empty() {
            self.subs.remove(topic);
            let cmd = DataCmd::Leave {
                topic: topic.to_string(),
            };
            self.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
        }
    }

    fn start_leaving(&mut self, now: Instant, reply: Option<SyncSender<()>>) {
        if self.leaving.is_some() {
            if let Some(r) = reply {
                let _ = r.send(());
            }
            return;
        }
        debug!("leaving the group");
        self.leaving = Some((reply, now + LEAVE_DEADLINE));
        self.feed(now, MemberInput::Cmd(MemberCmd::Spoke(SpokeCmd::Leave)));
    }

    fn on_deadlines(&mut self, now: Instant) {
        self.peer_log.summary(now);
        if let Some(Orphan::Orphaned { deadline }) = self.orphan
            && deadline <= now
            && self.member.hub().is_none()
            && self.leaving.is_none()
        {
            info!(
                after = ?self.keepalive,
                "the hub is gone and no member took over; this node may not: stopping"
            );
            self.set_orphan(Orphan::NoGroup);
        }
        if self.member.poll_timeout().is_some_and(|t| t <= now) {
            self.member.handle_timeout(now);
        }
        if self.outgoing.next_trim().is_some_and(|t| t <= now) {
            for segment in self.outgoing.trim(now) {
                self.feed(
                    now,
                    MemberInput::Cmd(MemberCmd::Data(DataCmd::Retire { segment })),
                );
            }
        }
        let overdue: Vec<usize> = self
            .links
            .iter()
            .filter(|(_, l)| l.closing.is_some_and(|at| at <= now))
            .map(|(k, _)| k)
            .collect();
        for key in overdue {
            debug!(peer = %self.links[key].peer, "closing link with unsent data");
            self.remove(key);
        }
    }

    /// Whether the node has left and what it published is flushed (or it is time to give up).
    fn finished(&self, now: Instant) -> bool {
        self.leaving.as_ref().is_some_and(|(_, deadline)| {
            let flushed = self.member.is_left()
                && self
                    .links
                    .iter()
                    .all(|(_, l)| l.data && l.outbox.is_empty());
            flushed || *deadline <= now
        })
    }

    fn feed(&mut self, now: Instant, input: MemberInput<'_>) {
        if let Err(e) = self.member.handle(now, input) {
            warn!(error = %e, "the node refused a command");
        }
    }

    // ---- the member's requests ----

    /// Acts on everything the member asks; acting on one request (a connection attempt, a
    /// bind) can make it ask more.
    fn pump(&mut self, now: Instant) -> io::Result<()> {
        while let Some(out) = self.member.poll_output() {
            match out {
                MemberOutput::ConnectHub { peer } => {
                    let linked = self.dir.connect_hub();
                    if linked.is_err() && self.orphan == Some(Orphan::Joining) {
                        self.check_group();
                    }
                    self.connect(now, peer, linked, false);
                }
                MemberOutput::ConnectData { peer, addr } => {
                    let linked = self.dir.connect_data(&addr);
                    self.connect(now, peer, linked, true);
                }
                MemberOutput::Bind => self.bind(now)?,
                MemberOutput::Unbind => {
                    if let Some(listener) = self.hub_listener.take() {
                        let _ = self.poller.delete(listener.as_fd());
                        info!("this node's hub closed");
                    }
                }
                MemberOutput::Transmit {
                    peer,
                    bytes,
                    attach,
                } => {
                    let seg = attach.and_then(|s| self.outgoing.segment(s));
                    if attach.is_some() && seg.is_none() {
                        warn!(?attach, "a segment to send is gone: dropping the record");
                        continue;
                    }
                    self.transmit(now, peer, bytes, seg);
                }
                MemberOutput::Disconnect(peer) => self.disconnect(now, peer),
                MemberOutput::Deliver(d) => self.deliver(d),
                MemberOutput::Release(seg) => {
                    if !self.outgoing.release(seg) {
                        self.received.remove(&seg);
                    }
                }
                MemberOutput::PauseAccepting | MemberOutput::ResumeAccepting => {
                    self.watch_listeners();
                }
                MemberOutput::Evt(evt) => self.on_evt(now, evt),
            }
        }
        Ok(())
    }

    /// Watches the listeners for connections while the member accepts them, and not while it
    /// has paused (out of descriptors): the links are served meanwhile.
    fn watch_listeners(&self) {
        let interest = if self.member.is_accepting() {
            Interest::READABLE
        } else {
            Interest::NONE
        };
        for (l, token) in [
            (self.hub_listener.as_ref().map(AsFd::as_fd), HUB_LISTENER),
            (self.data_listener.as_ref().map(AsFd::as_fd), DATA_LISTENER),
        ] {
            if let Some(l) = l
                && let Err(e) = self.poller.modify(l, token, interest)
            {
                warn!(error = %e, "could not change what a listener is watched for");
            }
        }
    }

    fn on_evt(&mut self, now: Instant, evt: MemberEvt) {
        let Some(evt) = log_member_evt(&mut self.peer_log, now, evt) else {
            return;
        };
        let event = match evt {
            MemberEvt::Topology(e) => {
                self.view_dirty = true;
                NodeEvent::Topology(e)
            }
            MemberEvt::Synced { hub, term } => {
                self.view_dirty = true;
                if self.orphan.is_some() {
                    self.set_orphan(Orphan::Synced);
                }
                info!(%hub, %term, "synced with the hub");
                NodeEvent::Synced { hub, term }
            }
            MemberEvt::BecameHub => {
                info!(
                    socket = %self.dir.paths().hub_socket().display(),
                    "this node is now the hub"
                );
                NodeEvent::BecameHub
            }
            MemberEvt::HubLost => {
                self.view_dirty = true;
                if self.orphan == Some(Orphan::Synced) {
                    let deadline = now + self.keepalive;
                    self.set_orphan(Orphan::Orphaned { deadline });
                }
                NodeEvent::HubLost
            }
            MemberEvt::HubUnresponsive => NodeEvent::HubUnresponsive,
            MemberEvt::HubResponsive => NodeEvent::HubResponsive,
            MemberEvt::HubClosed(reason) => NodeEvent::HubClosed(reason),
            MemberEvt::HubAbsent => NodeEvent::HubAbsent,
            MemberEvt::Room { topic, room } => return self.outgoing.set_room(topic, room),
            MemberEvt::HubRefused { cred } => {
                let holder = match cred {
                    Some(c) => format!("uid {} (pid {})", c.uid, c.pid),
                    None => "a process whose credentials cannot be read".into(),
                };
                return warn!(
                    "the hub socket {} is held by {holder}, which the group does not allow: \
                     nothing sent to it, trying again",
                    self.dir.paths().hub_socket().display()
                );
            }
            MemberEvt::Doc(e) => match self.docs.on_evt(e) {
                Some(event) => event,
                None => return,
            },
            other => return debug!(evt = other.name(), "member event"),
        };
        self.sinks.retain(|s| s.push(&event));
    }

    /// Publishes the node's state for application threads once per wakeup, if it changed.
    fn publish(&mut self) {
        let changed = self.docs.publish(&self.member);
        push_all(&mut self.sinks, &changed);
        let hub = self.member.hub();
        let is_hub = self.member.is_hub();
        let mut s = self.shared.lock();
        let changed = self.view_dirty || s.hub != hub || s.is_hub != is_hub;
        if std::mem::take(&mut self.view_dirty) {
            s.view = self.member.view().clone();
        }
        s.hub = hub;
        s.is_hub = is_hub;
        drop(s);
        if changed {
            self.shared.changed.notify_all();
        }
    }

    /// Hands a message to the local subscriptions of its topic.
    fn deliver(&mut self, d: Delivery) {
        let queues: Vec<Arc<SubQueue>> = self.subs.get(&d.topic).cloned().unwrap_or_default();
        // The data plane refused larger payloads already; a second check costs nothing and
        // stands between a peer and this process's memory.
        let max = queues.iter().map(|q| q.options.max_payload).max();
        let msg = match d.payload {
            Delivered::Inline(bytes) => Some(Message::inline(
                Arc::clone(&d.topic),
                d.publisher,
                d.seq,
                bytes,
            )),
            Delivered::Fresh { segment, len } => self.map_fresh(segment, len, max).map(|map| {
                Message::mapped(
                    Arc::clone(&d.topic),
                    d.publisher,
                    d.seq,
                    Mode::Fresh,
                    map,
                    (0, len as usize),
                    None,
                )
            }),
            Delivered::Pooled {
                segment,
                offset,
                len,
                slot,
            } => self.map_pooled(segment, max).map(|map| {
                let release = Some((d.peer, slot, Arc::clone(&self.mailbox)));
                let range = (offset as usize, len as usize);
                Message::mapped(
                    Arc::clone(&d.topic),
                    d.publisher,
                    d.seq,
                    Mode::Pooled,
                    map,
                    range,
                    release,
                )
            }),
        };
        let Some(msg) = msg else {
            warn!(topic = %d.topic, "could not map a received payload: message dropped");
            return;
        };
        let mut pause = false;
        for q in queues {
            if let Offered::QueuedFull = q.offer(msg.clone(), d.peer) {
                pause = true;
            }
        }
        if pause && d.peer != LOCAL {
            self.set_paused(d.peer, true);
        }
    }

    fn map_fresh(
        &mut self,
        segment: SegmentId,
        len: u64,
        max: Option<u64>,
    ) -> Option<Arc<Mapping>> {
        let rs = self.received.remove(&segment)?;
        // No subscription left to take it: nothing to map.
        let max = max?;
        if rs.verified.size() > max {
            let size = rs.verified.size();
            warn!(size, max, "a fresh payload too large: not mapped");
            return None;
        }
        // The mapping keeps the pages; the fd closes here.
        rs.verified
            .map_ro(0, len)
            .map(Arc::new)
            .map_err(|e| warn!(error = %e, "mmap failed"))
            .ok()
    }

    fn map_pooled(&mut self, segment: SegmentId, max: Option<u64>) -> Option<Arc<Mapping>> {
        if let Some(own) = self.outgoing.segment(segment) {
            // Our own pool segment, delivered to ourselves: map it read-only like anyone else.
            let fd = own.fd().try_clone_to_owned().ok()?;
            let v = memfd::verify(fd, SealSet::EMPTY, 0, 0).ok()?;
            return v.map_ro(0, v.size()).map(Arc::new).ok();
        }
        let rs = self.received.get_mut(&segment)?;
        if rs.map.is_none() {
            let size = rs.verified.size();
            let max = max?;
            if size > Pool::class(max) {
                warn!(size, max, "a pool segment too large: not mapped");
                return None;
            }
            rs.map = Some(Arc::new(
                rs.verified
                    .map_ro(0, size)
                    .map_err(|e| warn!(error = %e, "mmap failed"))
                    .ok()?,
            ));
        }
        rs.map.clone()
    }

    // ---- links ----

    fn connect(&mut self, now: Instant, peer: PeerId, linked: io::Result<OwnedFd>, data: bool) {
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
        self.feed(now, input);
    }

    fn bind(&mut self, now: Instant) -> io::Result<()> {
        let won = match self.dir.claim_hub() {
            Ok(Some(listener)) => {
                // Bound during a pause: watched once the member accepts again.
                let interest = if self.member.is_accepting() {
                    Interest::READABLE
                } else {
                    Interest::NONE
                };
                self.poller.add(listener.as_fd(), HUB_LISTENER, interest)?;
                self.hub_listener = Some(listener);
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
        self.feed(now, MemberInput::Bound { won });
        Ok(())
    }

    /// Joining only a running group, the hub did not answer: if nobody holds the hub's lock,
    /// no group runs (a process that does, or is becoming the hub, makes it a retry).
    fn check_group(&mut self) {
        match self.dir.hub_claimed() {
            Ok(true) => trace!("the hub did not answer, but its lock is held: retrying"),
            // Members alive, no hub: between a hub's death and a survivor's claim.
            Ok(false) if self.live_members() > 0 => {
                trace!("no hub, but members are alive: retrying");
            }
            Ok(false) => {
                debug!("no hub runs in the group, and this node may not start one");
                self.set_orphan(Orphan::NoGroup);
            }
            Err(e) => warn!(error = %e, "cannot tell whether a hub runs: retrying"),
        }
    }

    /// How many other members' data sockets are bound (0 if that cannot be read).
    fn live_members(&self) -> usize {
        let own = self.data_listener.as_ref().map(DataSocket::addr);
        self.dir.live_members(own).unwrap_or(0)
    }

    fn set_orphan(&mut self, to: Orphan) {
        debug!(from = ?self.orphan, ?to, "join-existing state");
        self.orphan = Some(to);
    }

    /// Accepts what a listener has, up to [`ACCEPT_BUDGET`] (the listener stays readable for
    /// the rest). A failure (out of descriptors: `EMFILE`, `ENFILE`) goes to the member, which
    /// pauses the listeners for a while: the node goes on serving the links it has.
    fn accept(&mut self, now: Instant, listener: Listener) -> io::Result<()> {
        if !self.member.is_accepting() {
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
                match socket::accept(fd.as_fd()) {
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
            self.feed(
                now,
                MemberInput::Accepted {
                    peer,
                    listener,
                    cred: Some(cred),
                },
            );
        }
        if let Some(e) = failed {
            debug!(?listener, error = %e, "accept failed");
            self.feed(now, MemberInput::AcceptFailed(listener));
            // The pause is due in `pump`; act on it before the next wait.
            self.pump(now)?;
        }
        Ok(())
    }

    fn add_link(&mut self, fd: OwnedFd, data: bool, peer: PeerId) -> io::Result<()> {
        let entry = self.links.vacant_entry();
        let key = entry.key();
        self.poller
            .add(fd.as_fd(), Token(key as u64), Interest::READABLE)?;
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
            write_failed: false,
        });
        self.peers.insert(peer, key);
        Ok(())
    }

    fn transmit(&mut self, now: Instant, peer: PeerId, bytes: Vec<u8>, seg: Option<OutSegment>) {
        let Some(&key) = self.peers.get(&peer) else {
            trace!(%peer, "transmit to a closed link dropped");
            return;
        };
        let link = &mut self.links[key];
        if link.closing.is_some() || link.write_failed {
            return;
        }
        link.outbox_bytes += bytes.len();
        link.outbox.push_back((bytes, seg));
        // The member bounds its data links; topology links are bounded here.
        if !link.data && link.outbox_bytes > self.max_outbox {
            let bytes = link.outbox_bytes;
            if self.peer_log.allow(now) {
                warn!(%peer, bytes, "peer does not keep up: closing its link");
            }
            self.drop_link(now, key);
            return;
        }
        self.flush(now, key);
    }

    /// Sends what the socket accepts; watches for writability if it does not take it all.
    fn flush(&mut self, now: Instant, key: usize) {
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        while let Some((bytes, seg)) = link.outbox.front() {
            let fds: Vec<_> = seg.iter().map(OutSegment::fd).collect();
            match socket::send_record(link.fd.as_fd(), bytes, &fds) {
                Ok(Sent::Complete) => {
                    link.outbox_bytes -= bytes.len();
                    link.outbox.pop_front();
                }
                Ok(Sent::WouldBlock) => break,
                Err(e) if link.closing.is_none() => {
                    // The peer closed its end, maybe with records for us still queued (a
                    // publisher that sent its last messages and left): read them all; the end
                    // of the stream then closes the link.
                    debug!(peer = %link.peer, error = %e, "send failed: reading what is left");
                    link.write_failed = true;
                    link.outbox.clear();
                    link.outbox_bytes = 0;
                }
                Err(e) => {
                    debug!(peer = %link.peer, error = %e, "send failed: link is gone");
                    self.drop_link(now, key);
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
            self.feed(
                now,
                if full {
                    MemberInput::Blocked(peer)
                } else {
                    MemberInput::Writable(peer)
                },
            );
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
        let interest = match (link.paused, link.writable) {
            (false, false) => Interest::READABLE,
            (false, true) => Interest::BOTH,
            (true, true) => Interest::WRITABLE,
            (true, false) => Interest::NONE,
        };
        let _ = self
            .poller
            .modify(link.fd.as_fd(), Token(key as u64), interest);
    }

    fn set_paused(&mut self, peer: PeerId, paused: bool) {
        let Some(&key) = self.peers.get(&peer) else {
            return;
        };
        if self.links[key].paused != paused {
            trace!(%peer, paused, "reading paused by a full subscription");
            self.links[key].paused = paused;
            self.update_interest(key);
        }
    }

    fn read(&mut self, now: Instant, key: usize) {
        for _ in 0..READ_BUDGET {
            let Some(link) = self.links.get(key) else {
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
        let link = &self.links[key];
        let (peer, data) = (link.peer, link.data);
        let buf = if data {
            &mut self.data_buf
        } else {
            &mut self.buf
        };
        let mut fds = Vec::new();
        let max_fds = if data { MAX_FDS } else { 0 };
        match socket::recv_record(link.fd.as_fd(), buf, &mut fds, max_fds) {
            Ok(Recv::Data {
                len,
                record_len,
                truncated,
                fds_truncated,
                ..
            }) => {
                if truncated || fds_truncated {
                    let reason = format!("record of {record_len} bytes, or too many fds");
                    self.reject(now, key, reason);
                    return false;
                }
                let mut segments = Vec::with_capacity(fds.len());
                for fd in fds {
                    match memfd::verify(fd, SealSet::EMPTY, 0, 0) {
                        Ok(v) => segments.push(self.register(v)),
                        Err(e) => {
                            for s in segments {
                                self.received.remove(&s.segment);
                            }
                            self.reject(
                                now,
                                key,
                                format!("a received fd is not a usable memfd: {e}"),
                            );
                            return false;
                        }
                    }
                }
                let buf = if data { &self.data_buf } else { &self.buf };
                let input = MemberInput::Record {
                    peer,
                    data: &buf[..len],
                    segments: &segments,
                };
                if let Err(e) = self.member.handle(now, input) {
                    warn!(error = %e, "record refused");
                }
                // Deliveries map the segments registered above: act on them now.
                if let Err(e) = self.pump(now) {
                    warn!(error = %e, "I/O error while acting on a record");
                }
                true
            }
            Ok(Recv::Closed) => {
                self.drop_link(now, key);
                false
            }
            Ok(Recv::WouldBlock) => false,
            Err(e) => {
                debug!(%peer, error = %e, "receive failed: link is gone");
                self.drop_link(now, key);
                false
            }
        }
    }

    /// Registers a received segment under a fresh handle.
    fn register(&mut self, v: VerifiedSegment) -> ReceivedSegment {
        let segment = SegmentId(self.next_received);
        self.next_received += 1;
        let s = v.seals();
        let seals = Seals {
            shrink: s.contains(SealSet::SHRINK),
            grow: s.contains(SealSet::GROW),
            write: s.contains(SealSet::WRITE),
            future_write: s.contains(SealSet::FUTURE_WRITE),
        };
        let r = ReceivedSegment {
            segment,
            size: v.size(),
            seals,
        };
        self.received.insert(
            segment,
            RecvSegment {
                verified: v,
                map: None,
            },
        );
        r
    }

    /// The driver refused what a link sent: the member closes it as a violation.
    fn reject(&mut self, now: Instant, key: usize, reason: String) {
        let peer = self.links[key].peer;
        self.feed(now, MemberInput::Rejected { peer, reason });
        if let Err(e) = self.pump(now) {
            warn!(error = %e, "I/O error while closing a link");
        }
        // Whatever the member decided, nothing more is read from this link.
        if let Some(link) = self.links.get_mut(key) {
            link.paused = true;
            self.update_interest(key);
        }
    }

    /// The member asked to close a link: flush what is queued, then close.
    fn disconnect(&mut self, now: Instant, peer: PeerId) {
        let Some(&key) = self.peers.get(&peer) else {
            return;
        };
        self.links[key].closing = Some(now + CLOSE_FLUSH);
        self.flush(now, key);
    }

    /// The link broke (or misbehaved at the socket level): close it and tell the member.
    fn drop_link(&mut self, now: Instant, key: usize) {
        let Some(link) = self.links.get(key) else {
            return;
        };
        let (peer, closing) = (link.peer, link.closing.is_some());
        self.remove(key);
        if !closing {
            self.feed(now, MemberInput::PeerDown(peer));
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(link) = self.links.try_remove(key) {
            let _ = self.poller.delete(link.fd.as_fd());
            self.peers.remove(&link.peer);
            trace!(peer = %link.peer, "link closed");
        }
    }
}
