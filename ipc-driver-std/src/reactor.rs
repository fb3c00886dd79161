//! The node's I/O thread: the only thread that touches the machines and the sockets.
//!
//! One `epoll` set holds the eventfd waker (requests from application threads), the hub
//! address's listener while this node runs the hub, the node's data listener, and every link:
//! the spoke's link to the hub; while this node runs the hub, each spoke's link to it (this
//! node's own spoke included, through the kernel like any other); and the data links, to the
//! subscribers of what this node publishes and from the publishers of what it subscribes to.
//! Each wakeup reads the clock once, feeds what is ready to the [`Spoke`], the [`Hub`] or the
//! [`DataPlane`], drains their outputs, flushes what the sockets accept, and sleeps until the
//! next readiness or deadline.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use ipc_proto::data::{
    DataCmd, DataEvt, DataInput, DataOutput, DataPlane, Delivered, Mode, OUTGOING, ReceivedSegment,
    Routes, Seals, SegmentId, Terms,
};
use ipc_proto::wire::DataStats;
use ipc_proto::{
    CmdError, Hub, HubCmd, HubConfig, HubEvt, Input, NodeId, Output, PeerId, Spoke, SpokeCmd,
    SpokeEvt, Term, View,
};
use slab::Slab;
use tracing::{debug, info, trace, warn};

use crate::data::{Mailbox, Message, Offered, OutSegment, Outgoing, SubQueue};
use crate::events::{NodeEvent, Sink};
use crate::sys::addr::AbstractAddr;
use crate::sys::memfd::{self, Mapping, SealSet, VerifiedSegment};
use crate::sys::poll::{Event, Events, Interest, Poller, Token, Waker};
use crate::sys::socket::{self, Recv, Sent};

const WAKER: Token = Token(u64::MAX);
const HUB_LISTENER: Token = Token(u64::MAX - 1);
const DATA_LISTENER: Token = Token(u64::MAX - 2);

/// Records read from one link per wakeup before the others get their turn.
const READ_BUDGET: usize = 64;

/// How long a link that is being closed may take to flush what is queued for it.
const CLOSE_FLUSH: Duration = Duration::from_millis(500);

/// How long a hub waits for its own node's goodbye before closing.
const HUB_GOODBYE: Duration = Duration::from_millis(500);

/// Most file descriptors one data record may carry (one is the protocol's maximum; a second
/// tells a violation from a truncation).
const MAX_FDS: usize = 2;

/// A request from an application thread.
pub(crate) enum Request {
    Cmd(SpokeCmd, SyncSender<Result<(), CmdError>>),
    Events(Sink),
    Leave(SyncSender<()>),
    /// A data-plane command that needs no answer (publish, advertise...).
    Data(DataCmd),
    /// A subscription's queue for `topic`, and its terms.
    Take(Arc<str>, Arc<SubQueue>),
    /// A subscription is gone.
    Drop(Arc<str>, Weak<SubQueue>),
    Stats(SyncSender<DataStats>),
}

/// What application threads may read without asking the I/O thread.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) view: View,
    pub(crate) hub: Option<(NodeId, Term)>,
    pub(crate) is_hub: bool,
    /// Why the I/O thread stopped, once it has.
    pub(crate) stopped: Option<String>,
}

/// [`State`] and a condition to wait on its changes.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) changed: Condvar,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the I/O thread needs to run a node.
pub(crate) struct Setup {
    pub(crate) hub_addr: AbstractAddr,
    pub(crate) hub_config: HubConfig,
    pub(crate) spoke: Spoke,
    pub(crate) data: DataPlane,
    pub(crate) data_listener: Option<OwnedFd>,
    pub(crate) outgoing: Arc<Outgoing>,
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) max_outbox: usize,
    pub(crate) max_frame: usize,
    pub(crate) max_record: usize,
}

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Side {
    /// This node's spoke's link to the hub.
    ToHub,
    /// A spoke's link to this node's hub.
    FromSpoke,
    /// A data link, either way: to a subscriber (machine-numbered) or from a publisher.
    Data,
}

#[derive(Debug)]
struct Link {
    fd: OwnedFd,
    side: Side,
    peer: PeerId,
    outbox: VecDeque<(Vec<u8>, Option<OutSegment>)>,
    outbox_bytes: usize,
    writable: bool,
    /// Reading paused: a subscription's queue is full under `Block`.
    paused: bool,
    /// The data plane was told the socket is full.
    told_blocked: bool,
    /// Closing: flush what is queued, then close, by this deadline.
    closing: Option<Instant>,
}

/// A segment received from a publisher, mapped once on first use.
#[derive(Debug)]
struct RecvSegment {
    verified: VerifiedSegment,
    map: Option<Arc<Mapping>>,
}

/// The I/O thread's state.
pub(crate) struct Reactor {
    hub_addr: AbstractAddr,
    hub_config: HubConfig,
    max_outbox: usize,
    poller: Poller,
    waker: Arc<Waker>,
    requests: Receiver<Request>,
    spoke: Spoke,
    hub: Option<Hub>,
    data: DataPlane,
    hub_listener: Option<OwnedFd>,
    data_listener: Option<OwnedFd>,
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
    leaving: Option<Leaving>,
}

#[derive(Debug)]
struct Leaving {
    reply: Option<SyncSender<()>>,
    /// When to stop waiting for this node's goodbye to reach its own hub.
    hub_close_at: Instant,
    /// When to stop flushing and exit.
    exit_at: Instant,
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
            hub_addr: setup.hub_addr,
            hub_config: setup.hub_config,
            max_outbox: setup.max_outbox,
            poller,
            waker,
            requests,
            spoke: setup.spoke,
            hub: None,
            data: setup.data,
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
        })
    }

    /// Runs until the node has left (or the I/O fails), then releases every socket.
    pub(crate) fn run(mut self) {
        let result = self.event_loop();
        let why = match &result {
            Ok(()) => "left the group".to_string(),
            Err(e) => {
                warn!(error = %e, "I/O thread stops");
                format!("I/O error: {e}")
            }
        };
        for sink in &self.sinks {
            sink.close();
        }
        for queue in self.subs.values().flatten() {
            queue.close();
        }
        self.outgoing.close();
        {
            let mut s = self.shared.lock();
            s.stopped = Some(why);
            s.hub = None;
            s.is_hub = false;
        }
        self.shared.changed.notify_all();
        if let Some(mut l) = self.leaving.take()
            && let Some(reply) = l.reply.take()
        {
            let _ = reply.send(());
        }
    }

    fn event_loop(&mut self) -> io::Result<()> {
        let mut ready = Events::with_capacity(64);
        // Start: the spoke was told to join before the thread started.
        self.pump(Instant::now())?;
        self.publish();
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            self.poller.wait(&mut ready, timeout)?;
            let now = Instant::now();
            for event in ready.iter() {
                self.on_ready(now, event)?;
            }
            self.on_deadlines(now)?;
            self.pump(now)?;
            self.publish();
            if self.finished(now) {
                return Ok(());
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let machines = [
            self.spoke.poll_timeout(),
            self.hub.as_ref().and_then(Hub::poll_timeout),
            self.data.poll_timeout(),
            self.outgoing.next_trim(),
        ];
        let closing = self.links.iter().filter_map(|(_, l)| l.closing);
        let leaving = self
            .leaving
            .iter()
            .flat_map(|l| [l.hub_close_at, l.exit_at]);
        machines
            .into_iter()
            .flatten()
            .chain(closing)
            .chain(leaving)
            .min()
    }

    fn on_ready(&mut self, now: Instant, event: Event) -> io::Result<()> {
        match event.token() {
            WAKER => self.on_requests(now),
            HUB_LISTENER => self.accept(now, Side::FromSpoke),
            DATA_LISTENER => self.accept(now, Side::Data),
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
            self.feed_data(now, DataInput::Cmd(DataCmd::Release { peer, slots }));
        }
        for peer in self.mailbox.take_resumes() {
            self.set_paused(peer, false);
        }
        loop {
            match self.requests.try_recv() {
                Ok(Request::Cmd(cmd, reply)) => {
                    let r = self.spoke.handle(now, Input::Cmd(cmd));
                    let _ = reply.send(r);
                    self.pump(now)?;
                }
                Ok(Request::Events(sink)) => self.sinks.push(sink),
                Ok(Request::Leave(reply)) => self.start_leaving(now, reply),
                Ok(Request::Data(cmd)) => {
                    let published = match &cmd {
                        DataCmd::Publish { topic, .. } => Some(topic.clone()),
                        _ => None,
                    };
                    self.feed_data(now, DataInput::Cmd(cmd));
                    if let Some(topic) = published {
                        // Its room is accounted for now: the publisher's credit comes back.
                        self.pump(now)?;
                        self.outgoing.processed(&topic);
                    }
                }
                Ok(Request::Take(topic, queue)) => {
                    let terms = Terms {
                        policy: queue.options.policy,
                        depth: queue.options.depth.max(1),
                    };
                    self.subs.entry(Arc::clone(&topic)).or_default().push(queue);
                    self.feed_data(
                        now,
                        DataInput::Cmd(DataCmd::Take {
                            topic: topic.to_string(),
                            terms,
                        }),
                    );
                }
                Ok(Request::Drop(topic, queue)) => self.drop_subscription(now, &topic, &queue),
                Ok(Request::Stats(reply)) => {
                    let _ = reply.send(self.data.stats());
                }
                Err(TryRecvError::Empty) => return Ok(()),
                // The node's handle is gone without a goodbye (it always sends one): leave.
                Err(TryRecvError::Disconnected) => {
                    if self.leaving.is_none() {
                        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
                        self.start_leaving(now, tx);
                    }
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
            self.feed_data(
                now,
                DataInput::Cmd(DataCmd::Leave {
                    topic: topic.to_string(),
                }),
            );
        }
    }

    fn start_leaving(&mut self, now: Instant, reply: SyncSender<()>) {
        if self.leaving.is_some() {
            let _ = reply.send(());
            return;
        }
        debug!("leaving the group");
        let _ = self.spoke.handle(now, Input::Cmd(SpokeCmd::Leave));
        self.leaving = Some(Leaving {
            reply: Some(reply),
            hub_close_at: now + HUB_GOODBYE,
            exit_at: now + HUB_GOODBYE + CLOSE_FLUSH,
        });
    }

    fn on_deadlines(&mut self, now: Instant) -> io::Result<()> {
        if self.spoke.poll_timeout().is_some_and(|t| t <= now) {
            self.spoke.handle_timeout(now);
        }
        if let Some(hub) = &mut self.hub
            && hub.poll_timeout().is_some_and(|t| t <= now)
        {
            hub.handle_timeout(now);
        }
        if self.data.poll_timeout().is_some_and(|t| t <= now) {
            self.data.handle_timeout(now);
        }
        if self.outgoing.next_trim().is_some_and(|t| t <= now) {
            for segment in self.outgoing.trim(now) {
                self.feed_data(now, DataInput::Cmd(DataCmd::Retire { segment }));
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
        if self.leaving.as_ref().is_some_and(|l| l.hub_close_at <= now) {
            self.close_hub(now)?;
        }
        Ok(())
    }

    /// Whether the node has left and everything is flushed (or it is time to give up): the
    /// hub closed, the topology links gone, and what was published handed to the sockets.
    fn finished(&self, now: Instant) -> bool {
        self.leaving.as_ref().is_some_and(|l| {
            let flushed = self.hub.is_none()
                && self
                    .links
                    .iter()
                    .all(|(_, link)| link.side == Side::Data && link.outbox.is_empty());
            flushed || l.exit_at <= now
        })
    }

    // ---- the machines' outputs ----

    /// Drains the machines until none has anything left to say; acting on one output (a
    /// connection attempt, a bind, a topology change) can make another speak.
    fn pump(&mut self, now: Instant) -> io::Result<()> {
        loop {
            let mut quiet = true;
            while let Some(out) = self.spoke.poll_output() {
                quiet = false;
                match out {
                    Output::Transmit(t) => self.transmit(now, t.peer, t.bytes, None),
                    Output::Disconnect(peer) => self.disconnect(now, peer),
                    Output::Evt(evt) => self.on_spoke_evt(now, evt)?,
                }
            }
            while let Some(out) = self.hub.as_mut().and_then(Hub::poll_output) {
                quiet = false;
                match out {
                    Output::Transmit(t) => self.transmit(now, t.peer, t.bytes, None),
                    Output::Disconnect(peer) => self.disconnect(now, peer),
                    Output::Evt(evt) => self.on_hub_evt(now, evt),
                }
            }
            if self.view_dirty {
                // The topology changed: the data plane learns who subscribes what, where.
                self.view_dirty = false;
                self.shared.lock().view = self.spoke.view().clone();
                let routes = Routes::from_view(self.spoke.view());
                let _ = self
                    .data
                    .handle(now, DataInput::Cmd(DataCmd::Routes(routes)));
                self.shared.changed.notify_all();
            }
            while let Some(out) = self.data.poll_output() {
                quiet = false;
                self.on_data_output(now, out);
            }
            if quiet {
                return Ok(());
            }
        }
    }

    fn on_spoke_evt(&mut self, now: Instant, evt: SpokeEvt) -> io::Result<()> {
        let event = match evt {
            SpokeEvt::ConnectRequested => {
                self.connect_hub(now);
                return Ok(());
            }
            SpokeEvt::BindRequested => return self.bind(now),
            SpokeEvt::Topology(e) => {
                self.view_dirty = true;
                NodeEvent::Topology(e)
            }
            SpokeEvt::Synced { hub, term } => {
                self.view_dirty = true;
                info!(%hub, %term, "synced with the hub");
                NodeEvent::Synced { hub, term }
            }
            SpokeEvt::HubLost => {
                self.view_dirty = true;
                NodeEvent::HubLost
            }
            SpokeEvt::HubUnresponsive => {
                warn!("the hub is unresponsive");
                NodeEvent::HubUnresponsive
            }
            SpokeEvt::HubResponsive => NodeEvent::HubResponsive,
            SpokeEvt::HubClosed(reason) => NodeEvent::HubClosed(reason),
            SpokeEvt::HubMisbehaved { reason } => {
                warn!(%reason, "the hub broke the protocol");
                return Ok(());
            }
            SpokeEvt::HubAbsent => NodeEvent::HubAbsent,
            SpokeEvt::Left => return Ok(()),
            other => {
                trace!(evt = other.name(), "spoke event");
                return Ok(());
            }
        };
        self.emit(&event);
        Ok(())
    }

    fn on_hub_evt(&mut self, now: Instant, evt: HubEvt) {
        match &evt {
            HubEvt::PeerRefused { peer, reason } => warn!(%peer, %reason, "refused a peer"),
            HubEvt::PeerMisbehaved { peer, reason } => {
                warn!(%peer, %reason, "disconnected a peer that broke the protocol");
            }
            HubEvt::PeerExpelled { peer, node } => {
                warn!(%peer, ?node, "expelled a silent peer");
            }
            HubEvt::PeerLeft {
                node: Some(node), ..
            } if *node == self.spoke.id() => {
                // Our own goodbye is sequenced: the hub may close now.
                if let Some(l) = &mut self.leaving {
                    l.hub_close_at = l.hub_close_at.min(now);
                }
            }
            other => debug!(evt = other.name(), "hub event"),
        }
    }

    fn on_data_output(&mut self, now: Instant, out: DataOutput) {
        match out {
            DataOutput::Connect { peer, addr } => self.connect_data(now, peer, &addr),
            DataOutput::Transmit {
                peer,
                bytes,
                attach,
            } => {
                let seg = attach.and_then(|s| self.outgoing.segment(s));
                if attach.is_some() && seg.is_none() {
                    warn!(?attach, "a segment to send is gone: dropping the record");
                    return;
                }
                self.transmit(now, peer, bytes, seg);
            }
            DataOutput::Disconnect(peer) => self.disconnect(now, peer),
            DataOutput::Deliver(d) => self.deliver(now, d),
            DataOutput::Release(seg) => {
                if !self.outgoing.release(seg) {
                    self.received.remove(&seg);
                }
            }
            DataOutput::Evt(DataEvt::Room { topic, room }) => self.outgoing.set_room(topic, room),
            DataOutput::Evt(DataEvt::PeerMisbehaved { peer, reason }) => {
                warn!(%peer, %reason, "disconnected a data link that broke the protocol");
            }
            DataOutput::Evt(other) => debug!(evt = ?other, "data event"),
        }
    }

    /// Hands a message to the local subscriptions of its topic.
    fn deliver(&mut self, now: Instant, d: ipc_proto::data::Delivery) {
        let queues: Vec<Arc<SubQueue>> = self.subs.get(&d.topic).cloned().unwrap_or_default();
        let msg = match d.payload {
            Delivered::Inline(bytes) => Some(Message::inline(
                Arc::clone(&d.topic),
                d.publisher,
                d.seq,
                bytes,
            )),
            Delivered::Fresh { segment, len } => self.map_fresh(segment, len).map(|map| {
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
            } => self.map_pooled(segment).map(|map| {
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
        drop(msg);
        if pause && d.peer != ipc_proto::data::LOCAL {
            self.set_paused(d.peer, true);
        }
        let _ = now;
    }

    fn map_fresh(&mut self, segment: SegmentId, len: u64) -> Option<Arc<Mapping>> {
        let rs = self.received.remove(&segment)?;
        // The mapping keeps the pages; the fd closes here.
        rs.verified
            .map_ro(0, len)
            .map(Arc::new)
            .map_err(|e| warn!(error = %e, "mmap failed"))
            .ok()
    }

    fn map_pooled(&mut self, segment: SegmentId) -> Option<Arc<Mapping>> {
        if let Some(own) = self.outgoing.segment(segment) {
            // Our own pool segment, delivered to ourselves: map it read-only like anyone else.
            let fd = own.fd().try_clone_to_owned().ok()?;
            let v = memfd::verify(fd, SealSet::EMPTY, 0, 0).ok()?;
            return v.map_ro(0, v.size()).map(Arc::new).ok();
        }
        let rs = self.received.get_mut(&segment)?;
        if rs.map.is_none() {
            let size = rs.verified.size();
            rs.map = Some(Arc::new(
                rs.verified
                    .map_ro(0, size)
                    .map_err(|e| warn!(error = %e, "mmap failed"))
                    .ok()?,
            ));
        }
        rs.map.clone()
    }

    fn emit(&mut self, event: &NodeEvent) {
        self.sinks.retain(|s| s.push(event));
    }

    /// Publishes the node's state for application threads once per wakeup, if it changed.
    fn publish(&mut self) {
        let hub = self.spoke.hub();
        let is_hub = self.hub.is_some();
        let mut s = self.shared.lock();
        let changed = s.hub != hub || s.is_hub != is_hub;
        s.hub = hub;
        s.is_hub = is_hub;
        drop(s);
        if changed {
            self.shared.changed.notify_all();
        }
    }

    fn feed_data(&mut self, now: Instant, input: DataInput<'_>) {
        if let Err(e) = self.data.handle(now, input) {
            warn!(error = %e, "data plane refused a command");
        }
    }

    // ---- links ----

    fn connect_hub(&mut self, now: Instant) {
        let input = match socket::connect(&self.hub_addr) {
            Ok(fd) => {
                let cred = socket::peer_credentials(fd.as_fd()).ok().map(convert_cred);
                let peer = self.new_peer();
                match self.add_link(fd, Side::ToHub, peer) {
                    Ok(()) => Input::PeerUp { peer, cred },
                    Err(e) => {
                        warn!(error = %e, "cannot watch the hub link");
                        Input::ConnectFailed
                    }
                }
            }
            Err(e) => {
                trace!(error = %e, "no hub answered");
                Input::ConnectFailed
            }
        };
        let _ = self.spoke.handle(now, input);
    }

    fn connect_data(&mut self, now: Instant, peer: PeerId, addr: &str) {
        let name = addr.strip_prefix('@').unwrap_or(addr).as_bytes();
        let result = AbstractAddr::new(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
            .and_then(|a| socket::connect(&a))
            .and_then(|fd| {
                socket::set_send_buffer(fd.as_fd(), 1 << 20)?;
                Ok(fd)
            });
        let input = match result.and_then(|fd| self.add_link(fd, Side::Data, peer)) {
            Ok(()) => DataInput::PeerUp { peer, cred: None },
            Err(e) => {
                debug!(%addr, error = %e, "cannot open a data link");
                DataInput::PeerDown(peer)
            }
        };
        self.feed_data(now, input);
    }

    fn bind(&mut self, now: Instant) -> io::Result<()> {
        let won = match socket::listen(&self.hub_addr) {
            Ok(listener) => {
                self.poller
                    .add(listener.as_fd(), HUB_LISTENER, Interest::READABLE)?;
                self.hub_listener = Some(listener);
                let mut cfg = self.hub_config.clone();
                cfg.rng_seed(random_seed());
                self.hub = Some(Hub::new(cfg, self.spoke.hub_seed(), now));
                info!(addr = %self.hub_addr, "this node is now the hub");
                self.emit(&NodeEvent::BecameHub);
                true
            }
            Err(e) => {
                trace!(error = %e, "lost the hub address");
                false
            }
        };
        let _ = self.spoke.handle(now, Input::BindOutcome { won });
        Ok(())
    }

    fn accept(&mut self, now: Instant, side: Side) -> io::Result<()> {
        let listener = match side {
            Side::FromSpoke => &self.hub_listener,
            _ => &self.data_listener,
        };
        let mut accepted = Vec::new();
        if let Some(listener) = listener {
            while let Some(conn) = socket::accept(listener.as_fd())? {
                accepted.push(conn);
            }
        }
        for (fd, cred) in accepted {
            let peer = self.new_peer();
            self.add_link(fd, side, peer)?;
            let cred = Some(convert_cred(cred));
            match side {
                Side::FromSpoke => {
                    if let Some(hub) = &mut self.hub {
                        let _ = hub.handle(now, Input::PeerUp { peer, cred });
                    }
                }
                _ => self.feed_data(now, DataInput::PeerUp { peer, cred }),
            }
        }
        Ok(())
    }

    /// A fresh id for a link this driver opens or accepts (below the data plane's range).
    fn new_peer(&mut self) -> PeerId {
        self.next_peer += 1;
        debug_assert!(self.next_peer < OUTGOING);
        PeerId(self.next_peer)
    }

    fn add_link(&mut self, fd: OwnedFd, side: Side, peer: PeerId) -> io::Result<()> {
        let entry = self.links.vacant_entry();
        let key = entry.key();
        self.poller
            .add(fd.as_fd(), Token(key as u64), Interest::READABLE)?;
        entry.insert(Link {
            fd,
            side,
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

    fn transmit(&mut self, now: Instant, peer: PeerId, bytes: Vec<u8>, seg: Option<OutSegment>) {
        let Some(&key) = self.peers.get(&peer) else {
            trace!(%peer, "transmit to a closed link dropped");
            return;
        };
        let link = &mut self.links[key];
        if link.closing.is_some() {
            return;
        }
        link.outbox_bytes += bytes.len();
        link.outbox.push_back((bytes, seg));
        // The data plane bounds its own links; topology links are bounded here.
        if link.side != Side::Data && link.outbox_bytes > self.max_outbox {
            warn!(%peer, bytes = link.outbox_bytes, "peer does not keep up: closing its link");
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
        if link.side == Side::Data && link.closing.is_none() && full != link.told_blocked {
            link.told_blocked = full;
            let peer = link.peer;
            let input = if full {
                DataInput::Blocked(peer)
            } else {
                DataInput::Writable(peer)
            };
            self.feed_data(now, input);
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
            if link.side == Side::Data {
                if !self.read_data(now, key) {
                    return;
                }
                continue;
            }
            let mut fds = Vec::new();
            match socket::recv_record(link.fd.as_fd(), &mut self.buf, &mut fds, 0) {
                Ok(Recv::Data {
                    len,
                    truncated,
                    fds: n,
                    fds_truncated,
                    ..
                }) => {
                    if truncated || n > 0 || fds_truncated {
                        warn!(peer = %link.peer, truncated, fds = n, "malformed record: closing");
                        self.drop_link(now, key);
                        return;
                    }
                    let (peer, side) = (link.peer, link.side);
                    let data = &self.buf[..len];
                    if side == Side::ToHub {
                        let _ = self.spoke.handle(now, Input::Bytes { peer, data });
                    } else if let Some(hub) = &mut self.hub {
                        let _ = hub.handle(now, Input::Bytes { peer, data });
                    }
                }
                Ok(Recv::Closed) => {
                    self.drop_link(now, key);
                    return;
                }
                Ok(Recv::WouldBlock) => return,
                Err(e) => {
                    debug!(error = %e, "receive failed: link is gone");
                    self.drop_link(now, key);
                    return;
                }
            }
        }
    }

    /// Reads one record of a data link; `false` when there is nothing more to read now.
    fn read_data(&mut self, now: Instant, key: usize) -> bool {
        let link = &self.links[key];
        let peer = link.peer;
        let mut fds = Vec::new();
        match socket::recv_record(link.fd.as_fd(), &mut self.data_buf, &mut fds, MAX_FDS) {
            Ok(Recv::Data {
                len,
                record_len,
                truncated,
                fds_truncated,
                ..
            }) => {
                if truncated || fds_truncated {
                    let reason = format!("record of {record_len} bytes or more than {MAX_FDS} fds");
                    self.reject(now, key, reason);
                    return false;
                }
                let mut segments = Vec::with_capacity(fds.len());
                for fd in fds {
                    match memfd::verify(fd, SealSet::EMPTY, 0, 0) {
                        Ok(v) => {
                            let segment = SegmentId(self.next_received);
                            self.next_received += 1;
                            let s = v.seals();
                            let seals = Seals {
                                shrink: s.contains(SealSet::SHRINK),
                                grow: s.contains(SealSet::GROW),
                                write: s.contains(SealSet::WRITE),
                                future_write: s.contains(SealSet::FUTURE_WRITE),
                            };
                            segments.push(ReceivedSegment {
                                segment,
                                size: v.size(),
                                seals,
                            });
                            self.received.insert(
                                segment,
                                RecvSegment {
                                    verified: v,
                                    map: None,
                                },
                            );
                        }
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
                let data = &self.data_buf[..len];
                let _ = self.data.handle(
                    now,
                    DataInput::Record {
                        peer,
                        data,
                        segments: &segments,
                    },
                );
                // Drain now: deliveries map segments registered above.
                while let Some(out) = self.data.poll_output() {
                    self.on_data_output(now, out);
                }
                true
            }
            Ok(Recv::Closed) => {
                self.drop_link(now, key);
                false
            }
            Ok(Recv::WouldBlock) => false,
            Err(e) => {
                debug!(error = %e, "receive failed: data link is gone");
                self.drop_link(now, key);
                false
            }
        }
    }

    /// The driver refused what a data link sent: the data plane closes it as a violation.
    fn reject(&mut self, now: Instant, key: usize, reason: String) {
        let peer = self.links[key].peer;
        self.feed_data(now, DataInput::Rejected { peer, reason });
        // The data plane asked for a disconnect; nothing more is read from the link.
        while let Some(out) = self.data.poll_output() {
            self.on_data_output(now, out);
        }
        if let Some(link) = self.links.get_mut(key) {
            link.paused = true;
            self.update_interest(key);
        }
    }

    /// A machine asked to close a link: flush what is queued, then close.
    fn disconnect(&mut self, now: Instant, peer: PeerId) {
        let Some(&key) = self.peers.get(&peer) else {
            return;
        };
        self.links[key].closing = Some(now + CLOSE_FLUSH);
        self.flush(now, key);
    }

    /// The link broke (or misbehaved at the socket level): close it and tell its machine.
    fn drop_link(&mut self, now: Instant, key: usize) {
        let Some(link) = self.links.get(key) else {
            return;
        };
        let (peer, side, closing) = (link.peer, link.side, link.closing.is_some());
        self.remove(key);
        if closing {
            return;
        }
        match side {
            Side::ToHub => {
                let _ = self.spoke.handle(now, Input::PeerDown(peer));
            }
            Side::FromSpoke => {
                if let Some(hub) = &mut self.hub {
                    let _ = hub.handle(now, Input::PeerDown(peer));
                }
            }
            Side::Data => self.feed_data(now, DataInput::PeerDown(peer)),
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(link) = self.links.try_remove(key) {
            let _ = self.poller.delete(link.fd.as_fd());
            self.peers.remove(&link.peer);
            trace!(peer = %link.peer, "link closed");
        }
    }

    /// Closes this node's hub: goodbye to every spoke, then the address is free.
    fn close_hub(&mut self, now: Instant) -> io::Result<()> {
        if let Some(hub) = &mut self.hub {
            let _ = hub.handle(now, Input::Cmd(HubCmd::Close));
        }
        self.pump(now)?;
        self.hub = None;
        if let Some(listener) = self.hub_listener.take() {
            let _ = self.poller.delete(listener.as_fd());
        }
        if let Some(l) = &mut self.leaving {
            l.hub_close_at = l.exit_at;
        }
        Ok(())
    }
}

fn convert_cred(c: crate::sys::Credentials) -> ipc_proto::Credentials {
    ipc_proto::Credentials {
        pid: u32::try_from(c.pid).unwrap_or(0),
        uid: c.uid,
        gid: c.gid,
    }
}

/// A seed for a machine's generator, from the OS.
pub(crate) fn random_seed() -> u64 {
    getrandom::u64().expect("the OS random source is available on Linux")
}
