//! The rings, from both sides of the lock: threads that poll or wait on them ([`Core`]),
//! and the reactor's reading, parking and lingering of them ([`Reactor`]).

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_driver_core::{Links, READ_BUDGET, Read, Reading, Ready, WRITING_SPIN};
use ipc_os::poll::Events;
use ipc_proto::data::Incoming;
use tracing::{debug, warn};

use super::{Core, LINGER, RING_EVENTS, Reactor};
use crate::data::{Message, OutSegment, QueueWaiter, SubQueue};

/// The longest the rings stay unparked after a spinning receive got its message, for the
/// thread to come back for the next ([`Core::spin_stop`]): a thread that asked to spin for
/// ever (`Duration::MAX`) and then stops receiving must not leave them unparked (and the
/// node's other subscriptions on them read only when the I/O thread wakes for something
/// else) for ever.
const MAX_LINGER: Duration = Duration::from_secs(1);

thread_local! {
    /// The buffer of this thread's waits on the rings' own set ([`Core::wait_on_rings`]),
    /// kept between them: a receiving thread allocates none per message.
    static RING_READY: Cell<Option<Events>> = const { Cell::new(None) };
}

/// How long the rings stay unparked after a polling thread's look got its message (see
/// [`Core::poll_rings`]): [`WRITING_SPIN`] if it follows the `writing` hint and a publisher
/// says it fills a message for this node (or it polled past its window for one), else `spin`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Linger {
    pub(crate) spin: Duration,
    pub(crate) follow_hint: bool,
    pub(crate) hinted: bool,
}

impl Linger {
    /// The linger after a message was got; `peer_writing` asks whether a publisher says it
    /// fills a message for this node (only if the hint is followed and was not seen yet).
    pub(crate) fn after(self, peer_writing: impl FnOnce() -> bool) -> Duration {
        if self.follow_hint && (self.hinted || peer_writing()) {
            WRITING_SPIN
        } else {
            self.spin
        }
    }
}

/// What a polling thread's look at the rings did ([`Core::poll_rings`]).
#[derive(Debug)]
pub(crate) enum Look {
    /// No look: another thread held the node's state, or the node has stopped. A first look
    /// ([`Core::poll_rings`]'s `start`) that is not made did not start the thread's spin.
    NotNow,
    /// Looked: anything for the thread's queue is in it.
    Done,
    /// The queue's next item, taken as the look handed it on; the thread's spin has stopped.
    Got(Incoming<Message>),
}

impl Core {
    /// A receiving thread starts polling the rings ([`SubscriptionOptions::spin`]); `false`
    /// once the node has stopped.
    ///
    /// [`SubscriptionOptions::spin`]: ipc_proto::data::SubscriptionOptions::spin
    pub(crate) fn spin_start(&self) -> bool {
        let mut guard = self.lock();
        let Some(r) = guard.as_mut() else {
            return false;
        };
        r.io.spin_start();
        true
    }

    /// A polling thread's look at the rings at `now`, for `queue`: hands on what they hold,
    /// unless the I/O thread (or another thread) holds the state right now.
    ///
    /// The first item the look hands on to `queue` is taken as it is handed on (unless the
    /// queue paused a link, which its drain resumes: see `SubQueue::offer_take`), and the
    /// thread's spin stops in the same hold of the lock, its rings lingering for
    /// `linger` (see [`Linger`] and [`Self::spin_stop`]): a lock of the queue and one of the node
    /// fewer on a message's path, about 9 ns each on the machines measured.
    ///
    /// `now` is the polling thread's last reading of the clock, which it reads once every
    /// few looks ([`LOOKS_PER_CLOCK`](ipc_driver_core::LOOKS_PER_CLOCK)): at most a
    /// microsecond or so old, and read before what this look finds was there to find. A
    /// reading costs about 20 ns on the machines measured, and the look that finds a
    /// message is on that message's path; the machines take it as they take any `now`.
    ///
    /// With `start` (the thread's first look), its spin starts in the same hold of the lock
    /// (see [`Self::spin_start`]): one lock of the node fewer per message. If the look is
    /// [`Look::NotNow`], it did not start: the caller starts it with `spin_start`.
    pub(crate) fn poll_rings(
        &self,
        now: Instant,
        queue: &SubQueue,
        linger: Linger,
        start: bool,
    ) -> Look {
        let Some(mut guard) = self.try_lock() else {
            return Look::NotNow;
        };
        let Some(r) = guard.as_mut() else {
            return Look::NotNow;
        };
        if start {
            r.io.spin_start();
        }
        r.taking = std::ptr::from_ref(queue).addr();
        r.poll_rings(now);
        r.taking = 0;
        match r.taken.take() {
            Some(item) => {
                let linger = linger.after(|| r.io.peer_writing(ipc_os::current_cpu()));
                r.stop_spin(now, linger);
                Look::Got(item)
            }
            None => Look::Done,
        }
    }

    /// A publishing thread took a pooled loan it fills in place for `topic`: the rings of the
    /// links its message will go out on say so ([`Links::writing`], the ring's `writing`
    /// hint, which the next message on each clears). On the subscriber's side, a receiving
    /// thread about to sleep polls on instead for up to `pubsub::WRITING_SPIN`, the rings stay
    /// unparked that long after it got a message, and the I/O thread keeps them unparked
    /// ([`Reactor::linger_for_writers`]): the publisher's push then wakes nobody. Only pooled
    /// loans set it: an inline `publish` is written before the call, and a fresh memfd takes
    /// far longer to make than a wake costs. The calloop driver's loans of the loop's own
    /// `Node` set it too, and its loop polls for it after a turn that delivered messages.
    pub(crate) fn writing(&self, topic: &str) {
        let mut guard = self.lock();
        if let Some(r) = guard.as_mut()
            && let Some(data) = r.member.data()
        {
            r.io.writing(data.links_for(topic), ipc_os::current_cpu());
        }
    }

    /// Whether a publisher says it fills a message for one of this node's rings, worth
    /// polling for from the calling thread's CPU (see [`Links::peer_writing`]: not if it
    /// writes on that very CPU); `false` while the I/O thread (or another) holds the state: a
    /// hint that is not worth a wait.
    pub(crate) fn peer_writing(&self) -> bool {
        self.try_lock().is_some_and(|guard| {
            guard
                .as_ref()
                .is_some_and(|r| r.io.peer_writing(ipc_os::current_cpu()))
        })
    }

    /// A polling thread stops: the rings stay unparked for `linger` more (see
    /// [`Links::spin_stop`]), or until the sleeping I/O thread wakes anyway if that is later
    /// but within [`SOON`] of it. A sleeper that would wake later is woken (by
    /// `wake_if_needed`) to read and park them then: messages for the node's other
    /// subscriptions on those rings wake nobody meanwhile. (The I/O thread sleeps at most
    /// [`SPIN_CHECK`] while threads spin, but only once it has looked since they started: a
    /// thread that spins briefly, as every receive may, starts and stops while it sleeps.)
    ///
    /// `now`: the time of its last look, if that found its message (a few hundred
    /// nanoseconds ago: the linger ends that much sooner); else the clock is read. A linger
    /// is at most [`MAX_LINGER`].
    ///
    /// [`SOON`]: super::SOON
    /// [`SPIN_CHECK`]: super::SPIN_CHECK
    pub(crate) fn spin_stop(&self, linger: Duration, now: Option<Instant>) {
        let mut guard = self.lock();
        if let Some(r) = guard.as_mut() {
            r.stop_spin(now.unwrap_or_else(Instant::now), linger);
        }
    }

    /// A receiving thread with nothing queued waits on the rings itself, rather than for the
    /// I/O thread to read them and wake it: the wakeup the publisher paid for reaches the
    /// thread that wants the message. Meanwhile the I/O thread waits on everything else;
    /// whatever it (or a publishing thread) hands `queue` wakes this thread through the
    /// waker in the rings' set.
    ///
    /// Returns when `queue` has an item or is closed, at `deadline`, or on a failure; at once
    /// if the rings were not this thread's to wait on (no rings, another thread waits on
    /// them, threads spin on them). Either way, the caller then waits on the queue as usual;
    /// where the rings were taken, counted as its waiter until it drops what this returns,
    /// so that no thread leaves the rings unparked meanwhile ([`Reactor::linger_rings`]).
    pub(crate) fn wait_on_rings(
        &self,
        queue: &SubQueue,
        deadline: Option<Instant>,
    ) -> Option<QueueWaiter> {
        let Some(rings) = &self.rings else {
            return None;
        };
        {
            let mut guard = self.lock();
            let r = guard.as_mut()?;
            // The set out of the I/O thread's: another receiving thread waits on it.
            if r.io.is_ring_set_detached() || r.io.is_spinning() {
                return Some(queue.queue_waiter());
            }
            // The rings linger unparked after a thread read them (this one, most likely):
            // read them to their end, which parks them, so that what comes next wakes this
            // thread.
            if r.io.end_linger() {
                r.park_rings(Instant::now());
            }
            // Under the node's lock, nothing is handed on meanwhile: the queue is empty (or
            // not) for good until this thread sleeps.
            if queue.wait_on_rings(Some(Arc::clone(&rings.waker))) {
                queue.wait_on_rings(None);
                return None;
            }
            if let Err(e) = r.io.detach_ring_set() {
                queue.wait_on_rings(None);
                debug!(error = %e, "cannot take the rings from the I/O thread");
                return Some(queue.queue_waiter());
            }
        }
        let mut ready = RING_READY
            .take()
            .unwrap_or_else(|| Events::with_capacity(RING_EVENTS));
        loop {
            let timeout = match deadline {
                None => None,
                Some(d) => match d.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => break,
                    left => Some(left),
                },
            };
            if let Err(e) = rings.set.wait(&mut ready, timeout) {
                warn!(error = %e, "cannot wait on the rings");
                break;
            }
            let mut guard = self.lock();
            let Some(r) = guard.as_mut() else {
                break;
            };
            // Awake: what this thread hands the queue itself need not wake it.
            queue.wait_on_rings(None);
            let now = Instant::now();
            r.on_ring_set(now, &ready);
            if queue.wait_on_rings(Some(Arc::clone(&rings.waker))) {
                // Woken below, on the way out.
                break;
            }
            r.wake_if_needed(now, r.failed.is_some());
        }
        let mut guard = self.lock();
        let got = queue.wait_on_rings(None);
        RING_READY.set(Some(ready));
        if let Some(r) = guard.as_mut() {
            if let Err(e) = r.io.attach_ring_set() {
                r.failed.get_or_insert(e);
            }
            let now = Instant::now();
            if got {
                // It comes back for its next message soon: see `Reactor::linger_rings`.
                r.linger_rings(now, false);
            }
            r.wake_if_needed(now, r.failed.is_some());
        }
        None
    }
}

impl Reactor {
    /// A polling thread stops at `now` (see [`Core::spin_stop`]).
    fn stop_spin(&mut self, now: Instant, linger: Duration) {
        let linger = linger.min(MAX_LINGER);
        let until = (!linger.is_zero()).then(|| self.io_look_by(now + linger).0);
        if self.io.spin_stop(until) {
            self.park_rings(now);
        }
        self.wake_if_needed(now, false);
    }

    /// Near the end of the I/O thread's turn, with the rings parked: if a publisher says it
    /// fills a message for one of them (a pooled loan sets its links' `writing` hint, which
    /// its send clears), they stay unparked for [`LINGER`] instead ([`Links::linger`]), so that
    /// its push wakes nobody; the receiving thread that comes back for its next message reads
    /// it, or this thread does when the linger ends. A wake costs the publisher about 15 µs of
    /// its CPU on this VM: with 1 MiB pooled messages, whose subscriber takes about as long to
    /// read one as its publisher takes to write it, the I/O thread was woken for every one.
    ///
    /// Not while a thread waits on a queue for this thread to hand it a message
    /// ([`Self::linger_rings`]'s rule); the rest of the rules, and the bound, are
    /// [`Links::linger_for_writers`]'s.
    pub(super) fn linger_for_writers(&mut self, now: Instant) {
        if !self.mailbox.has_queue_waiters() && self.io.linger_for_writers(now + LINGER) {
            self.poll_rings(now);
        }
    }

    /// A polling thread reads what the rings hold (see [`Links::read_ring_direct`]).
    pub(super) fn poll_rings(&mut self, now: Instant) {
        let mut keys = std::mem::take(&mut self.ring_keys);
        self.io.ring_receivers(&mut keys);
        let mut any = false;
        for &key in &keys {
            for _ in 0..READ_BUDGET {
                let mut took = None;
                let read = (self.io).read_ring_direct(&mut self.member, now, key, &mut took);
                if read == Read::Done {
                    break;
                }
                any = true;
                // A message handed back goes before what the member asks after it.
                if let Some(d) = took {
                    self.deliver(now, d);
                }
                if let Err(e) = self.pump(now) {
                    self.failed.get_or_insert(e);
                }
                if !self.io.read_on(key, read, Reading::Ring) {
                    break;
                }
            }
        }
        self.ring_keys = keys;
        if any {
            self.wake_if_needed(now, self.failed.is_some());
        }
    }

    /// Acts on what the rings' own set reports: its rings' news as the I/O thread would, and
    /// the waiting thread's waker, taken. The caller then wakes the I/O thread if it must
    /// look ([`wake_if_needed`](Self::wake_if_needed)), once per turn: that walks every
    /// machine's deadlines (about a seventh of what a small message costs its receiver).
    pub(super) fn on_ring_set(&mut self, now: Instant, ready: &Events) {
        for event in ready.iter() {
            match Ready::of(event.token()) {
                Ready::Ring(_) => {
                    // A ring's news is never an error (a broken ring closes its link).
                    let _ = self.on_ready(now, event);
                }
                Ready::Own => {
                    if let Some(waker) = &self.ring_waker
                        && let Err(e) = waker.reset()
                    {
                        self.failed.get_or_insert(e);
                    }
                }
                _ => {}
            }
        }
    }

    /// A receiving thread read the rings outside any wait, or leaves its wait on them with a
    /// message, and comes back for its next one soon: the rings stay unparked for [`LINGER`]
    /// (see [`Links::linger`]), so that the publisher's next messages wake nobody, where
    /// parked they would wake the I/O thread only for it to find them read by that thread.
    ///
    /// Not while another thread would miss the wake of a parked ring (one waits on the rings,
    /// or on a queue's condition). If the thread does not come back, the I/O thread reads and
    /// parks the rings when the linger is over, or when it wakes anyway if that is later but
    /// still within [`LINGER`] and [`SOON`]. A sleeping I/O thread that would not wake by
    /// then is woken only if `may_wake` (a link resumed: a busy stream, where one wakeup per
    /// linger is cheap); otherwise the rings park as usual, so a slow stream costs the I/O
    /// thread nothing.
    ///
    /// [`SOON`]: super::SOON
    pub(super) fn linger_rings(&mut self, now: Instant, may_wake: bool) {
        if self.io.is_ring_set_detached() || self.mailbox.has_queue_waiters() {
            return;
        }
        let (at, wakes) = self.io_look_by(now + LINGER);
        // If it `wakes`, the caller's `wake_if_needed` wakes the I/O thread for the linger's end.
        if !wakes || may_wake {
            self.io.linger(at);
        }
    }

    /// Reads every ring link to its end, which parks the rings: nobody polls them any more.
    pub(super) fn park_rings(&mut self, now: Instant) {
        self.read_rings(now, Links::ring_receivers);
    }

    /// Reads the rings of the links `keys` lists (one side's) to their end.
    pub(super) fn read_rings(
        &mut self,
        now: Instant,
        keys: fn(&Links<OutSegment>, &mut Vec<usize>),
    ) {
        let mut list = std::mem::take(&mut self.ring_keys);
        keys(&self.io, &mut list);
        for &key in &list {
            self.read(now, key, Reading::Ring);
        }
        self.ring_keys = list;
    }
}
