//! The node as a calloop event source.
//!
//! A [`NodeSource`] composes two calloop sources: a [`Generic`] watching the node's own
//! `epoll` set (every socket of the node and a `timerfd` for its deadlines), and a
//! [`PingSource`] woken when a [`NodeHandle`](crate::NodeHandle) sends a command or a message
//! or a loan is dropped on any thread. (Not calloop's `Channel` for the commands: it pings
//! itself whenever a composite source hands it another source's event, which would cost
//! every wakeup a second one.) Links come and go inside the node's own set, so
//! the source never re-registers with calloop; timer changes are one `timerfd_settime`, made
//! only when the deadline moves earlier.
//!
//! Each wakeup reads the clock once, feeds what is ready to the [`Member`](ipc_proto::Member),
//! acts on what it asks (connect, bind, send, close, deliver, release), hands events to the
//! callback, acts on the commands the callback issued, and flushes what the sockets accept.
//! Nothing blocks and nothing sleeps. Commands issued outside the callback (through a
//! `calloop::Dispatcher`) are flushed in `before_sleep`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use calloop::generic::Generic;
use calloop::ping::{self, PingSource};
use calloop::{EventSource, Interest, Mode, Poll, PostAction, Readiness, Token, TokenFactory};
use ipc_driver_core::DocEvent;
use ipc_driver_core::{
    AdaptiveWait, AdaptiveWaits, LOOKS_PER_CLOCK, Links, OWN_TOKEN, PastWindow, READ_BUDGET,
    RECV_SPIN, Read, Reading, Ready, Started, WRITING_SPIN, later, log_member_evt, map_own, start,
};
use ipc_os::memfd::Mapping;
use ipc_os::poll::{Events, Interest as Want, Poller};
use ipc_os::timer::Timer;
use ipc_proto::data::{
    DataCmd, Delivered, Delivery, Loss, LossReason, Mode as Via, Paths, SegmentId,
};
use ipc_proto::doc::DocEvt;
use ipc_proto::{Listener, MemberCmd, MemberEvt, MemberInput, MemberOutput, PeerId};
use tracing::{debug, info, warn};

use crate::builder::NodeBuilder;
use crate::data::{Mailbox, Message, ReleaseGuard};
use crate::node::{Node, Request, RequestSender};
use crate::{DriverError, NodeEvent};

/// Readiness reports taken from the node's epoll set per turn (the rest wait for the next).
const EVENTS_PER_TURN: usize = 64;

/// The longest a turn polls the rings for messages in all ([`Node::open_subscription`]'s
/// spin), unless a subscription asked to spin longer: a stream that never pauses then still
/// lets the loop's other sources have their turn.
const SPIN_TURN: Duration = Duration::from_millis(1);

/// While polling the rings, the rest of the node is served this often (its sockets, its
/// timer, pool ranges given back, commands): a look at the node's set is a system call, about
/// a hundredth of this.
const SERVE_EVERY: Duration = Duration::from_micros(10);

/// A node of a group, as a calloop event source: insert it into your loop, and its callback
/// receives [`NodeEvent`]s with `&mut` [`Node`] to issue commands.
///
/// Its callback is `FnMut(NodeEvent, &mut Node, &mut Data)`. Dropping the source (removing
/// it from the loop) says goodbye to the hub as far as the sockets take it without waiting;
/// [`Node::leave`] leaves gracefully and removes the source once everything is flushed.
#[derive(Debug)]
pub struct NodeSource {
    readiness: Generic<OwnedFd>,
    /// Commands from [`NodeHandle`](crate::NodeHandle)s, which ping `returns`.
    requests: mpsc::Receiver<Request>,
    returns: PingSource,
    /// A token of ours to report events from `before_sleep`.
    synthetic: Option<Token>,
    /// The node's sockets.
    /// Readiness reports of the node's set, per turn.
    ready: Events,
    /// The node's next deadline.
    timer: Timer,
    node: Node,
    events: VecDeque<NodeEvent>,
    /// A topic's room changed: held messages may go out.
    room_changed: bool,
    /// The links whose rings this node reads, while it polls them (kept between turns).
    ring_keys: Vec<usize>,
    /// The links whose rings this node publishes on, while it polls (kept between turns).
    sender_keys: Vec<usize>,
    /// The loop polls the rings ([`Self::spin`]); still set once it is over only if the
    /// callback panicked meanwhile.
    spinning: bool,
    /// Without a subscription's own spin: whether the loop polls the rings for up to
    /// [`RECV_SPIN`] after a turn that delivered messages, and on, up to [`WRITING_SPIN`]
    /// after the last message, while a publisher says it fills one for this node.
    waits: AdaptiveWaits,
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
        let now = clock();
        let Started {
            dir,
            private,
            id: _,
            data_listener,
            member,
            max_record,
        } = start::<DriverError>(
            &b.config.options,
            &b.config.group,
            b.config.dir.as_deref(),
            observer,
            now,
        )?;

        let epoll = Poller::new()?;
        let timer = Timer::new()?;
        epoll.add(&timer, OWN_TOKEN, Want::READABLE)?;
        // calloop watches a duplicate of the set's fd: the same epoll instance.
        let readiness = Generic::new(
            epoll.as_fd().try_clone_to_owned()?,
            Interest::READ,
            Mode::Level,
        );
        let max_frame = b.config.options.limits.max_frame;
        let mut io = Links::new(
            epoll,
            dir,
            data_listener,
            b.config.max_outbox,
            max_frame,
            max_record,
        )?;
        io.set_rings(b.config.options.rings);
        let (tx, requests) = mpsc::channel();
        let (ping, returns) = ping::make_ping()?;
        let tx = RequestSender::new(tx, ping.clone());
        let node = Node::new(
            member,
            io,
            b.config.group,
            b.config.options.name,
            b.config.pool_bytes,
            Paths {
                private,
                rings: b.config.options.rings,
            },
            Arc::new(Mailbox::new(ping)),
            tx,
        );
        Ok(Self {
            readiness,
            requests,
            returns,
            synthetic: None,
            ready: Events::with_capacity(EVENTS_PER_TURN),
            timer,
            node,
            events: VecDeque::new(),
            room_changed: false,
            ring_keys: Vec::new(),
            sender_keys: Vec::new(),
            spinning: false,
            waits: AdaptiveWaits::default(),
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
        self.node
            .io
            .poller()
            .wait(&mut self.ready, Some(Duration::ZERO))?;
        let ready: Vec<_> = self
            .ready
            .iter()
            .map(|e| (Ready::of(e.token()), e.is_readable(), e.is_writable()))
            .collect();
        for (what, readable, writable) in ready {
            match what {
                Ready::Own => self.timer.clear(),
                Ready::Listener(Listener::Hub) => listeners[0] = true,
                Ready::Listener(Listener::Data) => listeners[1] = true,
                Ready::Exited(key) => self.node.io.exited(&mut self.node.member, now, key),
                Ready::Link(key) => {
                    if writable {
                        let node = &mut self.node;
                        node.io.flush(&mut node.member, &node.outgoing, now, key);
                    }
                    if readable {
                        self.read(now, key, Reading::All);
                    }
                }
                Ready::Ring(key) => {
                    let node = &mut self.node;
                    node.io.ring_woken(&mut node.member, now, key);
                    node.io.flush(&mut node.member, &node.outgoing, now, key);
                    self.read(now, key, Reading::Ring);
                }
                // This driver's rings stay in the node's set (no `use_ring_set`).
                Ready::RingSet => {}
            }
        }
        // The links first, then the hub's listener before the data listener: a flood of
        // connections to a node's data address must not keep new members from joining.
        if listeners[0] {
            self.node
                .io
                .accept(&mut self.node.member, now, Listener::Hub);
        }
        if listeners[1] {
            self.node
                .io
                .accept(&mut self.node.member, now, Listener::Data);
        }
        self.settle(now)
    }

    /// After reading: the commands from other threads, what came back (dropped messages and
    /// loans), the deadlines due, and all the member asks.
    fn settle(&mut self, now: Instant) -> io::Result<()> {
        self.take_requests();
        self.returns_and_deadlines(now);
        self.pump(now)
    }

    fn returns_and_deadlines(&mut self, now: Instant) {
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
        self.node.io.handle_timeout(now);
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
            // A message, the most frequent output by far, is none of the link table's.
            if let MemberOutput::Deliver(d) = out {
                self.deliver(d);
                continue;
            }
            let node = &mut self.node;
            let Some(out) = node.io.act(&mut node.member, &node.outgoing, now, out)? else {
                continue;
            };
            match out {
                MemberOutput::ConnectHub { peer } => {
                    self.node.io.connect_hub(&mut self.node.member, now, peer);
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
                    let node = &mut self.node;
                    let out = &node.outgoing;
                    node.io
                        .transmit(&mut node.member, out, now, peer, bytes, attach);
                }
                MemberOutput::Lost(loss) => {
                    debug!(%loss, "messages lost");
                    self.events.push_back(NodeEvent::Lost(loss));
                }
                MemberOutput::Release(seg) => {
                    if !self.node.outgoing.release(seg, now) {
                        self.node.io.received().release(seg);
                    }
                }
                MemberOutput::Evt(evt) => self.on_evt(now, evt),
                // The link table acted on the rest.
                _ => unreachable!("Links::act returns only what is the driver's"),
            }
        }
        Ok(())
    }

    fn on_evt(&mut self, now: Instant, evt: MemberEvt) {
        let Some(evt) = log_member_evt(self.node.io.peer_log(), now, evt) else {
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
                let docs = self.node.member.docs();
                match DocEvent::from_replica(e, |name| docs.version(name)) {
                    Some(e) => self.events.push_back(NodeEvent::Doc(e)),
                    None => return,
                }
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
                let map = self
                    .node
                    .io
                    .received()
                    .map_fresh(segment, len, Some(u64::MAX));
                map.zip(usize::try_from(len).ok()).and_then(|(map, len)| {
                    Message::mapped(topic, publisher, seq, Via::Fresh, map, (0, len), None)
                })
            }
            Delivered::Pooled {
                segment,
                offset,
                len,
                slot,
            } => self.map_pooled(segment).and_then(|map| {
                let range = (usize::try_from(offset).ok()?, usize::try_from(len).ok()?);
                // The data plane checked the range against the segment's size; `mapped`
                // checks it against the mapping.
                let release = ReleaseGuard {
                    peer: d.peer,
                    slot,
                    mailbox: Arc::clone(&self.node.mailbox),
                };
                Message::mapped(
                    topic,
                    publisher,
                    seq,
                    Via::Pooled,
                    map,
                    range,
                    Some(Box::new(release)),
                )
            }),
        };
        match msg {
            Some(m) => self.events.push_back(NodeEvent::Message(m)),
            None => {
                warn!(topic = %d.topic, "could not map a received payload: message dropped");
                let loss = Loss::single(d.topic, d.publisher, d.seq, LossReason::Unmapped);
                self.events.push_back(NodeEvent::Lost(loss));
            }
        }
    }

    fn map_pooled(&mut self, segment: SegmentId) -> Option<Arc<Mapping>> {
        if self.node.outgoing.is_pool(segment) {
            // Our own pool segment, delivered to ourselves: map it read-only like anyone else.
            return map_own(self.node.outgoing.fd(segment)?);
        }
        self.node.io.received().map_pooled(segment, Some(u64::MAX))
    }

    /// Reads up to [`READ_BUDGET`] records of a link, acting on each before the next
    /// (deliveries map the segments it carried at once).
    fn read(&mut self, now: Instant, key: usize, reading: Reading) {
        for _ in 0..READ_BUDGET {
            let node = &mut self.node;
            let mut took = None;
            let read = (node.io).read_record_direct(&mut node.member, now, key, reading, &mut took);
            // A message handed back goes before what the member asks after it.
            if let Some(d) = took {
                self.deliver(d);
            }
            if read != Read::Done
                && let Err(e) = self.pump(now)
            {
                warn!(error = %e, "I/O error while acting on a record");
            }
            if !self.node.io.read_on(key, read, reading) {
                return;
            }
        }
        self.node.io.budget_spent(key);
    }

    /// Whether the node has left and what it published is flushed (or it is time to give up).
    fn finished(&self, now: Instant) -> bool {
        self.node.leaving.is_some_and(|deadline| {
            (self.node.member.is_left() && self.node.io.is_flushed()) || deadline <= now
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.node.member.poll_timeout(),
            self.node.outgoing.next_trim(),
            self.node.next_held(),
            self.node.leaving,
            self.node.io.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Hands queued events to the callback; what the callback does is acted on before the
    /// next event. Returns whether it handed a message.
    fn dispatch<F>(&mut self, now: Instant, callback: &mut F) -> io::Result<bool>
    where
        F: FnMut(NodeEvent, &mut Node),
    {
        let mut message = false;
        while let Some(event) = self.events.pop_front() {
            message |= matches!(event, NodeEvent::Message(_));
            callback(event, &mut self.node);
            // Commands from the callback, and messages it dropped.
            self.returns_and_deadlines(now);
            self.pump(now)?;
        }
        Ok(message)
    }

    /// Carries out the commands [`NodeHandle`](crate::NodeHandle)s sent.
    fn take_requests(&mut self) {
        while let Ok(r) = self.requests.try_recv() {
            self.events.extend(self.node.request(r));
        }
    }

    /// After a turn that delivered messages: polls the rings for the next, handing each to
    /// the callback, before the loop sleeps (see [`Node::open_subscription`]). The rings stay
    /// unparked meanwhile, so that publishers push without writing an eventfd; at the end
    /// they are read to their end, which parks them. Returns the time it ended (`now` if it
    /// did not spin).
    fn spin<F>(&mut self, mut now: Instant, callback: &mut F) -> io::Result<Instant>
    where
        F: FnMut(NodeEvent, &mut Node),
    {
        if self.spinning {
            // The last spin's end panicked (see `before_sleep`).
            self.end_spin(now);
        }
        if self.node.leaving.is_some() {
            return Ok(now);
        }
        self.node.io.ring_receivers(&mut self.ring_keys);
        if self.ring_keys.is_empty() {
            return Ok(now);
        }
        // Without a subscription's own spin: for up to `RECV_SPIN` after each message while
        // such waits find the next one, and on, up to `WRITING_SPIN` after the last message,
        // while a publisher says it fills one for this node and such waits find it: the std
        // driver's receives decide the same way (`AdaptiveWaits`). Each wait (from one message
        // to the next, or to its end in vain) counts; one the turn's end cuts short does not.
        let here = ipc_os::current_cpu();
        let own = self.node.spin();
        let mut wait = match own {
            Some(Duration::ZERO) => return Ok(now),
            Some(_) => AdaptiveWait::for_next(),
            None => match self.waits.start(|| self.node.io.peer_writing(here)) {
                Some(wait) => wait,
                None => return Ok(now),
            },
        };
        // Without a spin of its own (the wait then counts).
        let mut adaptive = own.is_none();
        let mut spin = own.unwrap_or(RECV_SPIN);
        self.node.io.spin_start();
        self.spinning = true;
        // Its sends take back the pool ranges their subscribers gave back, and ask for no
        // wake for them, as the std driver's publishing threads do: the polling loop takes
        // them itself.
        self.node.io.defer_return_wakes(true);
        now = clock();
        let start = now;
        // When the last message came (the spin's start before the first): the wait's start.
        let mut last = now;
        let mut serve_at = now + SERVE_EVERY;
        let mut looks = 0u32;
        let spun = loop {
            self.read_rings(now);
            let mut looked_around = false;
            if self.events.is_empty() {
                looks = looks.wrapping_add(1);
                if !looks.is_multiple_of(LOOKS_PER_CLOCK) {
                    std::hint::spin_loop();
                    continue;
                }
                now = clock();
            } else {
                match self.dispatch(now, callback) {
                    Ok(true) => {
                        if adaptive {
                            wait.end(&self.waits, true);
                        }
                        wait = AdaptiveWait::for_next();
                        last = clock();
                    }
                    Ok(false) => {}
                    Err(e) => break Err(e),
                }
                now = clock();
                looked_around = true;
            }
            if now >= serve_at {
                serve_at = now + SERVE_EVERY;
                if let Err(e) = self.serve(now) {
                    break Err(e);
                }
                looked_around = true;
            }
            if looked_around {
                // The callback, or commands from other threads, may have closed spinning
                // subscriptions (the spin shortens, ends or becomes the driver's) or opened
                // some (whose links may bring rings), or left.
                let own = self.node.spin();
                if own == Some(Duration::ZERO) || self.node.leaving.is_some() {
                    break Ok(());
                }
                if own.is_some() {
                    wait = AdaptiveWait::for_next();
                }
                adaptive = own.is_none();
                spin = own.unwrap_or(RECV_SPIN);
                self.node.io.ring_receivers(&mut self.ring_keys);
            }
            if now >= later(start, spin.max(SPIN_TURN)) {
                break Ok(());
            }
            let window = if adaptive { wait.window() } else { spin };
            if now >= later(last, window) {
                if !adaptive {
                    break Ok(());
                }
                let in_time = now < later(last, WRITING_SPIN);
                let peer = self.node.io.peer_writing(here);
                match wait.past_window(&self.waits, in_time, peer) {
                    PastWindow::Poll => {}
                    PastWindow::LookAgain => continue,
                    PastWindow::End => {
                        wait.end(&self.waits, false);
                        break Ok(());
                    }
                }
            }
            std::hint::spin_loop();
        };
        self.end_spin(now);
        self.dispatch(now, callback)?;
        spun.map(|()| now)
    }

    /// The loop stops polling: the node's sends ask for return wakes again, and the rings
    /// are read to their end, which parks them (those of links made meanwhile too), so that
    /// what comes next wakes the loop. What that read finds waits in the events.
    fn end_spin(&mut self, now: Instant) {
        self.node.io.defer_return_wakes(false);
        // Takes what came back since, and asks for wakes for the rest.
        self.take_returns(now);
        if self.node.io.spin_stop(None) {
            self.node.io.ring_receivers(&mut self.ring_keys);
            self.read_rings(now);
        }
        // Last: a panic above leaves it set, for the next sleep to end the spin again.
        self.spinning = false;
    }

    /// While polling the rings: the rest of the node goes on, as in a turn (its sockets, its
    /// timer and other deadlines, the pool ranges its subscribers give back, messages and
    /// loans dropped on other threads, commands from other threads); the events it makes are
    /// handed to the callback with the next message, or when the spin ends.
    fn serve(&mut self, now: Instant) -> io::Result<()> {
        self.take_returns(now);
        if self.set_has_news()? {
            self.turn(now)
        } else {
            self.settle(now)
        }
    }

    /// Reads the rings this node reads ([`Self::ring_keys`]), up to [`READ_BUDGET`] records
    /// each.
    fn read_rings(&mut self, now: Instant) {
        let keys = std::mem::take(&mut self.ring_keys);
        self.ring_keys = self.read_each(now, keys);
    }

    /// Takes back the pool ranges given back on every link this node publishes on through a
    /// ring; unless return wakes are deferred, asks for a wake for the next ones.
    fn take_returns(&mut self, now: Instant) {
        let mut keys = std::mem::take(&mut self.sender_keys);
        self.node.io.ring_senders(&mut keys);
        self.sender_keys = self.read_each(now, keys);
    }

    /// Reads the rings of the links `keys` lists; gives the list back.
    fn read_each(&mut self, now: Instant, keys: Vec<usize>) -> Vec<usize> {
        for &key in &keys {
            self.read(now, key, Reading::Ring);
        }
        keys
    }

    /// Whether the node's set reports anything but a ring the spin reads anyway: a socket, a
    /// listener, the node's timer, or a ring this node publishes on (its subscriber gave
    /// pool ranges back), for the loop to serve.
    fn set_has_news(&mut self) -> io::Result<bool> {
        self.node
            .io
            .poller()
            .wait(&mut self.ready, Some(Duration::ZERO))?;
        let read = &self.ring_keys;
        Ok(self.ready.iter().any(|e| match Ready::of(e.token()) {
            Ready::Ring(key) => !read.contains(&key),
            _ => true,
        }))
    }
}

#[allow(clippy::disallowed_methods)] // the driver reads the clock
fn clock() -> Instant {
    Instant::now()
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
        self.returns
            .process_events(readiness, token, |(), _| {})
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.take_requests();

        let now = clock();
        self.turn(now)?;
        let now = match self.dispatch(now, &mut callback)? {
            true => self.spin(now, &mut callback)?,
            false => now,
        };
        if self.finished(now) {
            self.left = true;
            callback(NodeEvent::Left, &mut self.node);
            return Ok(PostAction::Remove);
        }
        self.timer.arm(now, self.next_deadline())?;
        Ok(PostAction::Continue)
    }

    fn register(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.readiness.register(poll, factory)?;
        self.returns.register(poll, factory)?;
        self.synthetic = Some(factory.token());
        Ok(())
    }

    fn reregister(&mut self, poll: &mut Poll, factory: &mut TokenFactory) -> calloop::Result<()> {
        self.readiness.reregister(poll, factory)?;
        self.returns.reregister(poll, factory)?;
        self.synthetic = Some(factory.token());
        Ok(())
    }

    fn unregister(&mut self, poll: &mut Poll) -> calloop::Result<()> {
        self.readiness.unregister(poll)?;
        self.returns.unregister(poll)?;
        self.synthetic = None;
        Ok(())
    }

    fn before_sleep(&mut self) -> calloop::Result<Option<(Readiness, Token)>> {
        let now = clock();
        if self.spinning {
            // The callback panicked while the loop polled, and the application caught it and
            // goes on: the rings would stay unparked, and their messages wake nobody.
            warn!("the callback panicked while the loop polled the rings: they park now");
            self.end_spin(now);
        }
        // Commands issued outside our callback since the last turn.
        self.returns_and_deadlines(now);
        self.pump(now)?;
        let pending = !self.events.is_empty() || self.finished(now);
        self.timer.arm(now, self.next_deadline())?;
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
        let now = clock();
        let _ = self.pump(now);
    }
}
