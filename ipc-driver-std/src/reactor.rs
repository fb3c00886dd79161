//! The node's I/O thread and the state it shares with publishing threads.
//!
//! One `epoll` set holds the eventfd waker (requests from application threads), the hub
//! address's listener while this node runs the hub, the node's data listener, and every link
//! the member asked for or the listeners accepted. Each wakeup reads the clock once, feeds what
//! is ready to the member, acts on what it asks (connect, bind, send, close, deliver, release),
//! flushes what the sockets accept, and sleeps until the next readiness or deadline. Every
//! protocol decision is the member's; this thread moves bytes, fds, memory and time.
//!
//! The [`Member`] and its links sit in a [`Core`] behind one lock, which the I/O thread holds
//! for each wakeup and lets go while it sleeps. A publishing thread takes it to send its
//! message itself, into the link's ring or socket (no hand-off to the I/O thread and no wakeup
//! of it: the cost the fast path removes); whatever it leaves for later (a deadline sooner than
//! the I/O thread's, requests it found queued) it tells the I/O thread with the waker.
//!
//! `rings` holds what receiving threads do with the links' shared-memory rings (poll them,
//! wait on them) and how the reactor reads, parks and keeps them unparked; `deliver` how a
//! message reaches the node's subscriptions; `credits` which publishing thread's message goes
//! now (its credit, taken and given back in the same hold of the lock as its send).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsFd;
use std::sync::mpsc::{SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::time::{Duration, Instant};

use ipc_driver_core::{
    HubInfo, LEAVE_DEADLINE, Links, OWN_TOKEN, Owned, READ_BUDGET, Read, Reading, Ready,
    log_member_evt,
};
use ipc_os::poll::{Event, Events, Interest, Poller, Waker};
use ipc_os::rendezvous::{DataSocket, GroupDir};
use ipc_proto::data::{DataCmd, DataPlane, Incoming, Outbound, Payload};
use ipc_proto::wire::SlotRef;
use ipc_proto::{
    Listener, Member, MemberCmd, MemberEvt, MemberInput, MemberOutput, PeerId, SpokeCmd,
};
use tracing::{debug, info, trace, warn};

use crate::NodeEvent;
use crate::data::{ActNow, Mailbox, Message, OutSegment, Outgoing, SubQueue};
use crate::doc::{DocRegistry, push_all};
use crate::events::Sink;
use crate::request::{LEFT, Request, Requests, Shared};

mod credits;
mod deliver;
mod rings;

pub(crate) use rings::{Linger, Look};

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
    /// Use shared-memory rings on data links ([`NodeOptions::rings`](ipc_proto::NodeOptions::rings)).
    pub(crate) rings: bool,
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

/// The I/O thread's state.
pub(crate) struct Reactor {
    /// The node's sockets.
    io: Links<OutSegment>,
    waker: Arc<Waker>,
    requests: Requests,
    member: Member,
    sinks: Vec<Sink>,
    shared: Arc<Shared>,
    outgoing: Arc<Outgoing>,
    mailbox: Arc<Mailbox>,
    subs: BTreeMap<Arc<str>, Vec<Arc<SubQueue>>>,
    /// How many [`Publisher`](crate::Publisher)s of each topic the application holds: the
    /// topic is withdrawn with the last.
    publishers: BTreeMap<Arc<str>, usize>,
    view_dirty: bool,
    /// Leaving: who waits for the end, and when to give up flushing.
    leaving: Option<(Option<SyncSender<()>>, Instant)>,
    docs: DocRegistry,
    /// `None` for a node that may start the group; see [`Orphan`].
    orphan: Option<Orphan>,
    keepalive: Duration,
    /// Whether the I/O thread sleeps, and until when: what a publishing thread compares its
    /// deadlines with.
    io_thread: IoThread,
    /// An I/O error a publishing thread met acting for the member: the I/O thread stops on it
    /// as on its own.
    failed: Option<io::Error>,
    /// The keys of the links whose rings spinning threads read (kept to reuse its memory).
    ring_keys: Vec<usize>,
    /// In the rings' own set under [`OWN_TOKEN`]: wakes a thread waiting on the rings when
    /// its queue gets an item the rings did not bring, or closes (see [`Core::wait_on_rings`]).
    ring_waker: Option<Arc<Waker>>,
    /// The publishing credit of every topic (see `credits`).
    credits: credits::Credits,
    /// Notified when the credit changes while threads wait for it ([`Core`]'s).
    credit_changed: Arc<Condvar>,
    /// The address of the queue of the thread polling the rings under the lock right now,
    /// 0 if none: its first item handed on is taken into `taken` (see [`Core::poll_rings`]).
    taking: usize,
    taken: Option<Incoming<Message>>,
}

/// The longest the I/O thread sleeps while threads spin on the rings: after the last one
/// stops, the rings stay unparked (and messages for other subscriptions on them wait) until
/// the I/O thread comes to park them, at most this much later (or the spin, if longer).
const SPIN_CHECK: Duration = Duration::from_millis(1);

/// How long the rings stay unparked after a receiving thread read them outside a wait (see
/// [`Reactor::linger_rings`]): what a message for another subscription on those links may
/// wait for the I/O thread if that thread does not come back, and, while it keeps coming
/// back, how often the I/O thread wakes to check.
const LINGER: Duration = Duration::from_millis(1);

/// Most readiness reports of the rings' own set taken in one wait.
const RING_EVENTS: usize = 32;

/// How soon a deadline counts as now for the I/O thread: its `epoll_wait` counts whole
/// milliseconds.
const SOON: Duration = Duration::from_millis(1);

/// What the I/O thread does while it does not hold the [`Core`]'s lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IoThread {
    Awake,
    /// Waiting for readiness until `until` (`None`: no deadline). `soon_from`: `until` less
    /// [`SOON`], from which a deadline counts as due at that wake-up; kept so that the checks
    /// every message makes ([`Reactor::io_look_by`], [`Reactor::sooner_than_io_thread`]) are
    /// comparisons, not sums of the clock's (about 40 instructions each).
    Asleep {
        until: Option<Instant>,
        soon_from: Option<Instant>,
    },
}

impl IoThread {
    fn asleep(until: Option<Instant>) -> Self {
        let soon_from = until.map(|u| u.checked_sub(SOON).unwrap_or(u));
        Self::Asleep { until, soon_from }
    }
}

/// The node's state ([`Reactor`]) behind the lock its I/O thread and its publishing threads
/// share; `None` once the I/O thread has stopped.
pub(crate) struct Core {
    reactor: Mutex<Option<Reactor>>,
    /// Publishing threads waiting for credit sleep on it, with `reactor` let go (see
    /// `credits`); the reactor's [`Reactor::credit_changed`].
    credit_changed: Arc<Condvar>,
    /// The rings' own set, for a receiving thread to wait on (see [`Core::wait_on_rings`]);
    /// `None` without rings.
    rings: Option<RingWait>,
}

/// What a thread waiting on the rings uses outside the lock.
struct RingWait {
    /// A second handle to the rings' own set.
    set: Poller,
    /// The reactor's [`Reactor::ring_waker`].
    waker: Arc<Waker>,
}

impl Core {
    pub(crate) fn new(reactor: Reactor) -> Self {
        let rings = match reactor.ring_wait() {
            Ok(rings) => rings,
            Err(e) => {
                debug!(error = %e, "receiving threads cannot wait on the rings: the I/O thread hands on");
                None
            }
        };
        Self {
            credit_changed: Arc::clone(&reactor.credit_changed),
            reactor: Mutex::new(Some(reactor)),
            rings,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Reactor>> {
        self.reactor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, unless another thread (or this one) holds it right now.
    fn try_lock(&self) -> Option<MutexGuard<'_, Option<Reactor>>> {
        match self.reactor.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Publishes on the calling thread: takes the publisher's credit ([`Core::admit`], which
    /// may wait), then the member takes the message and its links send it, and the credit
    /// comes back, all in one hold of the node's lock (see the module docs). The clock is
    /// read once, for the credit and the publish (a clock read is a fair share of a small
    /// message's cost), after an inline message is out if it goes at once (see
    /// `Core::admit`). With `spare`, returns a spare buffer for the next inline payload.
    /// `Err` once the I/O thread has stopped.
    pub(crate) fn publish(
        &self,
        topic: &Arc<str>,
        payload: Payload,
        spare: bool,
    ) -> Result<Option<Vec<u8>>, Stopped> {
        let inline = matches!(payload, Payload::Inline(_));
        let (mut guard, expired, now) = self.admit(topic, inline)?;
        let reactor = guard.as_mut().ok_or(Stopped)?;
        reactor.publish_here(now, topic, payload.into(), expired);
        Ok(spare.then(|| reactor.member.spare_buffer()).flatten())
    }

    /// Publishes a copy of `data` inline on the calling thread, as
    /// [`publish`](Self::publish) does a loan's buffer: `data` is borrowed for the publish
    /// ([`Outbound::Inline`]), copied straight into the rings and records that carry it. No
    /// buffer is handed between this thread and the node, so a publisher needs no lock of its
    /// own for one (two lock operations a message, a fair share of a small one's cost), and
    /// none holds a copy between (a 4 KiB message's `memcpy`, about 400 instructions).
    pub(crate) fn publish_copy(&self, topic: &Arc<str>, data: &[u8]) -> Result<(), Stopped> {
        let (mut guard, expired, now) = self.admit(topic, true)?;
        let reactor = guard.as_mut().ok_or(Stopped)?;
        reactor.publish_here(now, topic, Outbound::Inline(data), expired);
        Ok(())
    }

    /// A publishing thread is about to wait for a pool segment (its pool is at its bound;
    /// a wait for a `Block` subscriber's room does the same under the lock it holds, see
    /// `credits`): takes back the ranges subscribers gave back and
    /// its own sends did not (see [`Reactor::linger_returns`]), which may end the wait,
    /// rather than leave them to the I/O thread. With `ask` (the thread's last look before it
    /// sleeps), asks for wakes for the next ones; without (a look while it spins), asks for
    /// none, as its sends do not, and the I/O thread looks [`LINGER`] after the last such look
    /// unless the thread comes back first.
    pub(crate) fn take_returns(&self, ask: bool) {
        let mut guard = self.lock();
        if let Some(r) = guard.as_mut() {
            r.reclaim(Instant::now(), ask);
        }
    }

    /// The I/O thread: runs until the node has left (or the I/O fails), then releases every
    /// socket.
    pub(crate) fn run(&self) {
        let Some(poller) = self.lock().as_ref().map(|r| r.io.poller().try_clone()) else {
            return;
        };
        let result = poller.and_then(|p| self.event_loop(&p));
        let mut guard = self.lock();
        if let Some(reactor) = guard.as_mut() {
            reactor.stop(result);
        }
        // Publishing threads see the node stopped from here (those waiting for credit once
        // woken); its sockets close outside the lock.
        let reactor = guard.take();
        drop(guard);
        self.credit_changed.notify_all();
        drop(reactor);
    }

    fn event_loop(&self, poller: &Poller) -> io::Result<()> {
        let mut ready = Events::with_capacity(64);
        let mut rings = Events::with_capacity(RING_EVENTS);
        let mut guard = self.lock();
        let Some(r) = guard.as_mut() else {
            return Ok(());
        };
        // Start: the member was told to join before the thread started.
        r.pump(Instant::now())?;
        r.publish();
        loop {
            let Some(r) = guard.as_mut() else {
                return Ok(());
            };
            if let Some(e) = r.failed.take() {
                return Err(e);
            }
            if r.orphan == Some(Orphan::NoGroup) {
                return Ok(());
            }
            let mut until = r.next_deadline();
            if r.io.is_spinning() {
                // Back soon to park the rings once the spinning threads stop.
                let check = Instant::now() + SPIN_CHECK;
                until = Some(until.map_or(check, |u| u.min(check)));
            }
            r.io_thread = IoThread::asleep(until);
            drop(guard);
            let timeout = until.map(|d| d.saturating_duration_since(Instant::now()));
            poller.wait(&mut ready, timeout)?;
            guard = self.lock();
            let Some(r) = guard.as_mut() else {
                return Ok(());
            };
            r.io_thread = IoThread::Awake;
            let now = Instant::now();
            r.on_wakeup(now, &ready, &mut rings)?;
            if r.finished(now) {
                return Ok(());
            }
        }
    }
}

impl ActNow for Core {
    fn release(&self, peer: PeerId, slot: SlotRef) -> bool {
        let Some(mut guard) = self.try_lock() else {
            return false;
        };
        if let Some(r) = guard.as_mut() {
            let now = Instant::now();
            let cmd = DataCmd::Release {
                peer,
                slots: vec![slot],
            };
            r.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
            r.pump_here(now);
        }
        true
    }

    fn resume(&self, peer: PeerId) -> bool {
        let Some(mut guard) = self.try_lock() else {
            return false;
        };
        if let Some(r) = guard.as_mut() {
            let now = Instant::now();
            if let Some(key) = r.io.resume_reading(peer) {
                r.linger_rings(now, true);
                r.read(now, key, Reading::All);
            }
            r.wake_if_needed(now, r.failed.is_some());
        }
        true
    }
}

/// The node's I/O thread has stopped.
#[derive(Debug)]
pub(crate) struct Stopped;

impl Reactor {
    pub(crate) fn new(
        setup: Setup,
        waker: Arc<Waker>,
        requests: Requests,
        shared: Arc<Shared>,
        sinks: Vec<Sink>,
    ) -> io::Result<Self> {
        let poller = Poller::new()?;
        poller.add(waker.as_fd(), OWN_TOKEN, Interest::READABLE)?;
        let mut io = Links::new(
            poller,
            setup.dir,
            setup.data_listener,
            setup.max_outbox,
            setup.max_frame,
            setup.max_record,
        )?;
        io.set_rings(setup.rings);
        let ring_waker = if setup.rings {
            io.use_ring_set()?;
            let waker = Arc::new(Waker::new()?);
            if let Some(set) = io.ring_set() {
                set.add(waker.as_fd(), OWN_TOKEN, Interest::READABLE)?;
            }
            Some(waker)
        } else {
            None
        };
        Ok(Self {
            io,
            waker,
            requests,
            member: setup.member,
            sinks,
            shared,
            outgoing: setup.outgoing,
            mailbox: setup.mailbox,
            subs: BTreeMap::new(),
            publishers: BTreeMap::new(),
            view_dirty: false,
            leaving: None,
            docs: DocRegistry::default(),
            orphan: setup.join_existing.then_some(Orphan::Joining),
            keepalive: setup.keepalive,
            io_thread: IoThread::Awake,
            failed: None,
            ring_keys: Vec::new(),
            ring_waker,
            credits: credits::Credits::default(),
            credit_changed: Arc::new(Condvar::new()),
            taking: 0,
            taken: None,
        })
    }

    /// What a thread needs to wait on the rings' own set, if the node has one.
    fn ring_wait(&self) -> io::Result<Option<RingWait>> {
        let (Some(set), Some(waker)) = (self.io.ring_set(), &self.ring_waker) else {
            return Ok(None);
        };
        Ok(Some(RingWait {
            set: set.try_clone()?,
            waker: Arc::clone(waker),
        }))
    }

    /// Tells everyone waiting on the node why it stopped.
    fn stop(&mut self, result: io::Result<()>) {
        let no_group = self.orphan == Some(Orphan::NoGroup);
        let why = match &result {
            Ok(()) if no_group => {
                "no hub runs in the group, and this node may not start one".into()
            }
            Ok(()) => LEFT.to_string(),
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
        if let Some((Some(reply), _)) = self.leaving.take() {
            let _ = reply.send(());
        }
    }

    /// Acts on what `ready` reports (reading what the rings' own set reports into `rings`),
    /// on the deadlines passed, and on what the member asks.
    fn on_wakeup(&mut self, now: Instant, ready: &Events, rings: &mut Events) -> io::Result<()> {
        let mut listeners = [false; 2];
        let mut ring_set = false;
        for event in ready.iter() {
            match Ready::of(event.token()) {
                Ready::Listener(Listener::Hub) => listeners[0] = true,
                Ready::Listener(Listener::Data) => listeners[1] = true,
                Ready::RingSet => ring_set = true,
                _ => self.on_ready(now, event)?,
            }
        }
        // Unless a receiving thread waits on the rings: it took their set out of this
        // thread's, and acts on it itself.
        if ring_set
            && !self.io.is_ring_set_detached()
            && let Some(set) = self.io.ring_set()
        {
            set.wait(rings, Some(Duration::ZERO))?;
            self.on_ring_set(now, rings);
            self.wake_if_needed(now, self.failed.is_some());
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
        self.linger_for_writers(now);
        self.pump(now)?;
        self.publish();
        Ok(())
    }

    /// A publishing thread's message (see [`Core::publish`]), after the requests queued before
    /// it; wakes the I/O thread if what happened asks for it.
    fn publish_here(
        &mut self,
        at: Option<Instant>,
        topic: &Arc<str>,
        payload: Outbound<'_>,
        expired: bool,
    ) {
        // Other threads' requests go first, at a time read for them if the publish has none.
        let mut at = at;
        let earlier = if self.requests.has_news() {
            let now = *at.get_or_insert_with(Instant::now);
            self.take_requests(now)
        } else {
            Ok(false)
        };
        let (result, now) = match earlier {
            Ok(earlier) => {
                // The sends take back what came back themselves: the returns wake nobody.
                let (published, now) =
                    self.deferring_return_wakes(|r| r.on_publish(at, topic, payload, expired));
                (published.map(|()| earlier), now)
            }
            Err(e) => (Err(e), at.unwrap_or_else(Instant::now)),
        };
        match result {
            Ok(earlier) => self.wake_if_needed(now, earlier),
            Err(e) => {
                self.failed.get_or_insert(e);
                self.wake_if_needed(now, true);
            }
        }
    }

    /// After another thread acted for the member at `now`: wakes the I/O thread if it must
    /// look (`anyway`, a changed view, a deadline sooner than the one it sleeps to).
    fn wake_if_needed(&mut self, now: Instant, anyway: bool) {
        let wake = anyway || self.view_dirty || self.sooner_than_io_thread(now);
        if wake && let Err(e) = self.waker.wake() {
            warn!(error = %e, "cannot wake the I/O thread");
        }
    }

    /// After another thread fed the member: acts on what it asks, and wakes the I/O thread if
    /// it must look.
    fn pump_here(&mut self, now: Instant) {
        if let Err(e) = self.pump(now) {
            self.failed.get_or_insert(e);
        }
        self.wake_if_needed(now, self.failed.is_some());
    }

    /// Runs `f` for a publishing thread (its sends, or its looks for returns while it spins)
    /// asking subscribers for no return wakes (see `Links::defer_return_wakes`), then leaves
    /// the returns to come to the I/O thread's look by a deadline ([`Self::linger_returns`])
    /// from the time `f` says it acted at.
    fn deferring_return_wakes<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> (R, Instant),
    ) -> (R, Instant) {
        self.io.defer_return_wakes(true);
        let (result, now) = f(self);
        self.io.defer_return_wakes(false);
        self.linger_returns(now);
        (result, now)
    }

    /// After a publishing thread's sends, which asked no wake for the pool ranges they lent
    /// (see `Links::defer_return_wakes`): the I/O thread takes their returns and asks for
    /// wakes again [`LINGER`] after the last such send, unless the thread comes back first.
    /// Like [`Self::linger_rings`]: a sleeping I/O thread that would not wake by then is
    /// woken (by the caller's `wake_if_needed`), once per linger of a busy stream.
    fn linger_returns(&mut self, now: Instant) {
        let (at, _) = self.io_look_by(now + LINGER);
        self.io.returns_due(at);
    }

    /// When the I/O thread is to look at work due at `until`, and whether that costs it a
    /// wakeup: at its own wake-up if it sleeps until one within [`SOON`] after `until` (or
    /// at `until` if that is later), at `until` if it is awake; a sleeper that would wake
    /// later must be woken for `until`.
    fn io_look_by(&self, until: Instant) -> (Instant, bool) {
        match self.io_thread {
            IoThread::Asleep {
                until: Some(u),
                soon_from: Some(s),
            } if s <= until => (u.max(until), false),
            IoThread::Awake => (until, false),
            IoThread::Asleep { .. } => (until, true),
        }
    }

    /// A publishing thread about to wait (see [`Core::take_returns`]) takes back the ranges
    /// given back, asking for wakes for the next ones only if `ask`.
    fn reclaim(&mut self, now: Instant, ask: bool) {
        if ask {
            self.take_returns(now);
        } else {
            self.deferring_return_wakes(|r| (r.take_returns(now), now));
        }
        self.wake_if_needed(now, self.failed.is_some());
    }

    /// Takes back the pool ranges given back on every link this node publishes on, and asks
    /// for wakes for the next ones (see `Links::defer_return_wakes`).
    fn take_returns(&mut self, now: Instant) {
        self.read_rings(now, Links::ring_senders);
    }

    /// Whether a deadline comes before the sleeping I/O thread would wake. Not looked for
    /// when it wakes within [`SOON`] anyway (as it does while threads spin): its wait is
    /// rounded up to whole milliseconds, so no deadline is kept sooner than that, and the
    /// member's deadlines cost a walk over its machines.
    fn sooner_than_io_thread(&self, now: Instant) -> bool {
        match self.io_thread {
            IoThread::Awake => false,
            IoThread::Asleep {
                soon_from: Some(s), ..
            } if s <= now => false,
            IoThread::Asleep { until, .. } => self
                .next_deadline()
                .is_some_and(|d| until.is_none_or(|u| d < u)),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.member.poll_timeout(),
            self.outgoing.next_trim(),
            self.leaving.as_ref().map(|l| l.1),
            self.io.poll_timeout(),
            match self.orphan {
                Some(Orphan::Orphaned { deadline }) => Some(deadline),
                _ => None,
            },
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_ready(&mut self, now: Instant, event: Event) -> io::Result<()> {
        match Ready::of(event.token()) {
            Ready::Own => self.on_requests(now),
            // Accepted after the links (see `event_loop`).
            Ready::Listener(_) => Ok(()),
            Ready::Exited(key) => {
                self.io.exited(&mut self.member, now, key);
                Ok(())
            }
            Ready::Link(key) => {
                if event.is_writable() {
                    self.io.flush(&mut self.member, &Owned, now, key);
                }
                if event.is_readable() || event.is_hangup() || event.is_error() {
                    self.read(now, key, Reading::All);
                }
                Ok(())
            }
            Ready::Ring(key) => {
                self.io.ring_woken(&mut self.member, now, key);
                self.io.flush(&mut self.member, &Owned, now, key);
                self.read(now, key, Reading::Ring);
                Ok(())
            }
            // Read after the rest (see `on_wakeup`).
            Ready::RingSet => Ok(()),
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
            self.io.set_paused(peer, false);
        }
        self.take_requests(now).map(drop)
    }

    /// Acts on the queued requests; whether there were any.
    fn take_requests(&mut self, now: Instant) -> io::Result<bool> {
        if !self.requests.take() {
            return Ok(false);
        }
        let mut any = false;
        loop {
            let request = self.requests.next();
            any |= request.is_ok();
            match request {
                Ok(Request::Cmd(cmd, reply)) => {
                    let r = self
                        .member
                        .handle(now, MemberInput::Cmd(MemberCmd::Spoke(cmd)));
                    let _ = reply.send(r);
                    self.pump(now)?;
                }
                Ok(Request::Events(sink, reply)) => {
                    self.sinks.push(sink);
                    let _ = reply.send(());
                }
                Ok(Request::Leave(reply)) => self.start_leaving(now, Some(reply)),
                Ok(Request::Data(cmd)) => self.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd))),
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
                Ok(Request::Publisher { topic, mime, reply }) => {
                    let cmd = SpokeCmd::Announce {
                        topic: topic.to_string(),
                        mime,
                    };
                    let r = self
                        .member
                        .handle(now, MemberInput::Cmd(MemberCmd::Spoke(cmd)));
                    if r.is_ok() {
                        *self.publishers.entry(Arc::clone(&topic)).or_default() += 1;
                        let cmd = DataCmd::Advertise {
                            topic: topic.to_string(),
                        };
                        self.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
                    }
                    let _ = reply.send(r);
                    self.pump(now)?;
                }
                Ok(Request::Withdraw(topic)) => self.drop_publisher(now, &topic),
                Ok(Request::Doc(r)) => {
                    self.docs.handle(&mut self.member, now, r);
                    self.pump(now)?;
                }
                Ok(Request::Stats(reply)) => {
                    let _ = reply.send(self.member.data().map(|d| d.stats()).unwrap_or_default());
                }
                Err(TryRecvError::Empty) => return Ok(any),
                // The node's handle is gone without a goodbye (it always sends one): leave.
                Err(TryRecvError::Disconnected) => {
                    self.start_leaving(now, None);
                    return Ok(true);
                }
            }
        }
    }

    /// A publisher's message: sent before this returns (its inline messages straight into
    /// the rings that take them now), and its credit comes back. Published at `at`; a
    /// publish that went at once without reading the clock (`None`, see `Core::admit`) is
    /// given the data plane's own latest time, which changes nothing there (a message's
    /// publish only keeps the plane's clock from going back), and the clock is read once the
    /// message is out, for what follows. Returns that time with the result.
    fn on_publish(
        &mut self,
        at: Option<Instant>,
        topic: &Arc<str>,
        payload: Outbound<'_>,
        expired: bool,
    ) -> (io::Result<()>, Instant) {
        let clock = at.or_else(|| self.member.data().map(DataPlane::clock));
        let published = self.member.publish_topic(
            clock.unwrap_or_else(Instant::now),
            topic,
            payload,
            expired,
            &mut self.io,
        );
        if let Err(e) = published {
            warn!(error = %e, "the node refused a command");
        }
        let now = at.unwrap_or_else(Instant::now);
        // Its room is accounted for now: the publisher's credit comes back.
        if let Err(e) = self.pump(now) {
            return (Err(e), now);
        }
        let room = self.member.data().and_then(|d| d.room(topic));
        self.processed(now, topic, room);
        (Ok(()), now)
    }

    fn drop_subscription(&mut self, now: Instant, topic: &Arc<str>, queue: &Weak<SubQueue>) {
        let Some(list) = self.subs.get_mut(topic) else {
            return;
        };
        list.retain(|q| !std::ptr::eq(Arc::as_ptr(q), queue.as_ptr()));
        if list.is_empty() {
            // The topic's last subscription: the node takes no more of it, and says so
            // (refused only if the application unsubscribed the node itself already).
            self.subs.remove(topic);
            let data = DataCmd::Leave {
                topic: topic.to_string(),
            };
            let spoke = SpokeCmd::Unsubscribe {
                topic: topic.to_string(),
            };
            self.last_of_topic(now, topic, data, spoke);
        }
    }

    fn drop_publisher(&mut self, now: Instant, topic: &Arc<str>) {
        let Some(count) = self.publishers.get_mut(topic) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        // The topic's last publisher: the node sends no more of it, and says so (refused
        // only once the node has left the group).
        self.publishers.remove(topic);
        let data = DataCmd::Withdraw {
            topic: topic.to_string(),
        };
        let spoke = SpokeCmd::Retract {
            topic: topic.to_string(),
        };
        self.last_of_topic(now, topic, data, spoke);
    }

    /// The last subscription or publisher of `topic` went: the data plane is told `data`, the
    /// topology `spoke` (which a node that said it itself, or has left, refuses: logged).
    fn last_of_topic(&mut self, now: Instant, topic: &str, data: DataCmd, spoke: SpokeCmd) {
        self.feed(now, MemberInput::Cmd(MemberCmd::Data(data)));
        let name = spoke.name();
        if let Err(e) = self
            .member
            .handle(now, MemberInput::Cmd(MemberCmd::Spoke(spoke)))
        {
            debug!(error = %e, %topic, cmd = name, "not said after the topic's last handle");
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
        self.io.handle_timeout(now);
        if self.io.returns_lapsed(now) {
            self.take_returns(now);
        }
        if self.io.spin_lapsed(now) {
            self.park_rings(now);
        } else if self.io.is_lingering() {
            // A receiving thread keeps the rings unparked (see `linger_rings`), but reads
            // only its own links: what came on the others is handed on here, at least once
            // per linger (the I/O thread sleeps no longer than the linger meanwhile).
            self.poll_rings(now);
        }
    }

    /// Whether the node has left and what it published is flushed (or it is time to give up).
    fn finished(&self, now: Instant) -> bool {
        self.leaving.as_ref().is_some_and(|(_, deadline)| {
            (self.member.is_left() && self.io.is_flushed()) || *deadline <= now
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
            // A message, the most frequent output by far, is none of the link table's.
            if let MemberOutput::Deliver(d) = out {
                self.deliver(now, d);
            } else if let Some(out) = self.io.act(&mut self.member, &Owned, now, out)? {
                self.on_output(now, out);
            }
        }
        Ok(())
    }

    /// Acts on what the member asks that is not the link table's alone.
    fn on_output(&mut self, now: Instant, out: MemberOutput) {
        match out {
            MemberOutput::ConnectHub { peer } => {
                let linked = self.io.connect_hub(&mut self.member, now, peer);
                if !linked && self.orphan == Some(Orphan::Joining) {
                    self.check_group();
                }
            }
            MemberOutput::Transmit {
                peer,
                bytes,
                attach,
            } => match attach.map(|s| self.outgoing.segment(s)) {
                Some(None) => warn!(?attach, "a segment to send is gone: dropping the record"),
                seg => {
                    let seg = seg.flatten();
                    let member = &mut self.member;
                    self.io.transmit(member, &Owned, now, peer, bytes, seg);
                }
            },
            MemberOutput::Deliver(d) => self.deliver(now, d),
            MemberOutput::Lost(loss) => {
                debug!(%loss, "messages lost");
                for q in self.subs.get(&loss.topic).into_iter().flatten() {
                    q.lost(loss.clone());
                }
            }
            MemberOutput::Release(seg) => {
                if !self.outgoing.release(seg) {
                    self.io.received().release(seg);
                }
            }
            MemberOutput::Evt(evt) => self.on_evt(now, evt),
            // The link table acted on the rest.
            _ => unreachable!("Links::act returns only what is the driver's"),
        }
    }

    fn on_evt(&mut self, now: Instant, evt: MemberEvt) {
        let Some(evt) = log_member_evt(self.io.peer_log(), now, evt) else {
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
                    socket = %self.io.dir().paths().hub_socket().display(),
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
            MemberEvt::Room { topic, room } => return self.set_room(now, &topic, room),
            MemberEvt::HubRefused { cred } => {
                let holder = match cred {
                    Some(c) => format!("uid {} (pid {})", c.uid, c.pid),
                    None => "a process whose credentials cannot be read".into(),
                };
                return warn!(
                    "the hub socket {} is held by {holder}, which the group does not allow: \
                     nothing sent to it, trying again",
                    self.io.dir().paths().hub_socket().display()
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
        let hub = HubInfo::of(&self.member);
        let is_hub = self.member.is_hub();
        let mut s = self.shared.lock();
        let mut changed = s.hub != hub || s.is_hub != is_hub;
        s.hub = hub;
        s.is_hub = is_hub;
        if std::mem::take(&mut self.view_dirty) {
            s.view = self.member.view().clone();
            changed = true;
        }
        drop(s);
        if changed {
            self.shared.changed.notify_all();
        }
    }

    /// Shows application threads the member's view now if it changed since they last saw it
    /// (else [`publish`](Self::publish) does, once per wakeup).
    fn sync_view(&mut self) {
        if std::mem::take(&mut self.view_dirty) {
            self.shared.lock().view = self.member.view().clone();
            self.shared.changed.notify_all();
        }
    }

    // ---- links ----

    /// Accepts what a listener has; a failure pauses the listeners, before the next wait.
    fn accept(&mut self, now: Instant, listener: Listener) -> io::Result<()> {
        if self.io.accept(&mut self.member, now, listener) {
            self.pump(now)?;
        }
        Ok(())
    }

    /// Joining only a running group, the hub did not answer: if nobody holds the hub's lock,
    /// no group runs (a process that does, or is becoming the hub, makes it a retry).
    fn check_group(&mut self) {
        match self.io.dir().hub_claimed() {
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
        let own = self.io.data_listener().map(DataSocket::addr);
        self.io.dir().live_members(own).unwrap_or(0)
    }

    fn set_orphan(&mut self, to: Orphan) {
        debug!(from = ?self.orphan, ?to, "join-existing state");
        self.orphan = Some(to);
    }

    /// Reads up to [`READ_BUDGET`] records of a link; what each asks is acted on before the
    /// next is read (deliveries map its segments, a full `Block` subscription pauses the link).
    fn read(&mut self, now: Instant, key: usize, reading: Reading) {
        for _ in 0..READ_BUDGET {
            let mut took = None;
            match (self.io).read_record_direct(&mut self.member, now, key, reading, &mut took) {
                Read::Done => return,
                read => {
                    // A message handed back goes before what the member asks after it.
                    if let Some(d) = took {
                        self.deliver(now, d);
                    }
                    if let Err(e) = self.pump(now) {
                        warn!(error = %e, "I/O error while acting on a record");
                    }
                    if !self.io.read_on(key, read, reading) {
                        return;
                    }
                }
            }
        }
        self.io.budget_spent(key);
    }
}
