//! The publishing credit: which publishing thread's message goes now, under the node's own
//! lock. A publish takes its credit, sends its message and gives the credit back in one hold
//! of that lock ([`Core::publish`]): a lock and its release cost about 9 ns on the machines
//! measured, and a small message took three (the credit's twice, the node's once).

use std::collections::BTreeMap;
use std::sync::{MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipc_driver_core::AdaptiveSpin;
use ipc_proto::data::{Admit, HoldBack, HoldInput, HoldOutput, Room};

use super::{Core, Reactor, Stopped};

/// How long a publishing thread held for room at a `Block` subscriber looks for it before it
/// sleeps, taking back what subscribers gave back (pooled ranges) each time: from a subscriber
/// that keeps up, room comes back within microseconds, and a sleep and its wakeup cost more.
/// Only while spinning finds room: after a spin that did not, threads sleep at once (when this
/// was first measured, a spin at every wait made 64 KiB messages, whose subscriber took longer
/// than 30 µs per window, 5-10 % slower). Never while idle. Measured with a `Block` subscriber
/// of depth 8 (pooled messages, two pinned processes): 1.5x the messages per second at 4 KiB,
/// 1.2x at 32 KiB, 64 KiB level.
///
/// 60 µs rather than the 30 it was: of the waits of a pooled 4 KiB stream, about half found
/// room within 30 µs, a seventh within 40 and most of the rest within 100 (the subscriber
/// woken from a park first). One that missed by a few microseconds made the next 15 waits
/// sleep, and each sleep let the subscriber drain its ring and park, so that the next message
/// cost a wakeup at both ends again. Against 30 µs, 3 alternated runs each: pooled 4 KiB 261 k
/// → 469 k messages per second (the publisher's CPU per message 2.4 → 2.0 µs), 64 KiB 158 k →
/// 174-184 k, 1 MiB, inline 4 KiB and 64 B level. 100 µs gained more at 4 KiB (500 k) but
/// swung at 64 KiB (145-207 k) and cost inline 4 KiB 8 % more of the publisher's CPU.
const ROOM_SPIN: Duration = Duration::from_micros(60);

/// The publishing credit of every topic: the protocol's [`HoldBack`] decides which publishing
/// thread goes; a thread that must wait holds a ticket there, and sleeps on
/// [`Core`]'s `credit_changed` (with the node's lock let go).
#[derive(Debug, Default)]
pub(super) struct Credits {
    hold: HoldBack<Ticket>,
    next_ticket: Ticket,
    /// Tickets let go by the hold-back and not yet picked up by their thread: whether expired.
    released: BTreeMap<Ticket, bool>,
    /// Threads waiting on `credit_changed`: only then is it notified (every message changes
    /// the credit, and a notification is a system call).
    waiting: u32,
    /// Whether a publish held for room spins for it first ([`ROOM_SPIN`]).
    room_spin: AdaptiveSpin,
}

/// A publishing thread waiting for room.
type Ticket = u64;

impl Credits {
    /// Takes what the hold-back decided: tickets for their threads.
    fn drain(&mut self) {
        while let Some(out) = self.hold.poll_output() {
            match out {
                HoldOutput::Publish {
                    item: ticket,
                    expired,
                    ..
                } => {
                    self.released.insert(ticket, expired);
                }
                // Publishing threads wait rather than fail: nobody is told.
                HoldOutput::Drained { .. } => {}
            }
        }
    }
}

/// The node's state, locked.
type Guard<'a> = MutexGuard<'a, Option<Reactor>>;

impl Core {
    /// Takes one credit to publish on `topic`, and returns the node's state locked for the
    /// publish, whether the wait for room ran out (the message is then dropped for the
    /// subscribers still full) and the time to publish at: the clock read for the hold-back
    /// and the publish (before the lock unless `lazy`), or read again after a wait. `Err` once
    /// the I/O thread has stopped.
    ///
    /// `lazy` (an inline message): a publish that goes at once ([`HoldBack::go`]) reads no
    /// clock here (the time is `None`): its message goes into the rings before the clock is
    /// read for what follows (see `Reactor::publish_here`). Measured (spinning 64 B round
    /// trip, two pinned processes, AMD EPYC VM, alternated runs): the clock read before the
    /// push cost 4-11 % of the round trip (medians of 9 and 11 pairs: 1.334 against 1.222 µs,
    /// 1.118 against 1.072 µs; `bench payload` three times each way: 0.932-0.951 against
    /// 0.841-0.862 µs). A pooled or fresh message goes out after the member's outputs anyway,
    /// with the clock read: nothing to gain there, and it keeps the read before the lock.
    ///
    /// Waits, as the protocol's [`HoldBack`] decides, while a `Block` subscriber has no room,
    /// up to its timeout (and while [`MAX_HELD`](ipc_proto::data::MAX_HELD) threads wait
    /// already). No other bound is needed on what is admitted and not yet taken by the member
    /// (the hold-back's pending messages): a message admitted at once is sent and accounted in
    /// the same hold of the lock, and one let go after a wait (by a `Block` subscriber's room,
    /// or by its timeout) belongs to a thread that held a ticket, at most
    /// [`MAX_HELD`](ipc_proto::data::MAX_HELD) per topic, each with its payload made. Before
    /// waiting for room, takes back what subscribers gave back already, which may make some:
    /// once, or again and again for up to [`ROOM_SPIN`] while that finds room, letting the
    /// lock go between the looks. The looks of a spin ask the subscribers for no wake at their
    /// next return (a subscriber that gives back would otherwise wake this node's I/O thread
    /// for returns the spinning thread takes itself); the last look before a sleep does.
    pub(super) fn admit(
        &self,
        topic: &str,
        lazy: bool,
    ) -> Result<(Guard<'_>, bool, Option<Instant>), Stopped> {
        let early = (!lazy).then(Instant::now);
        let mut guard = self.lock();
        if lazy && guard.as_mut().ok_or(Stopped)?.credits.hold.go(topic) {
            return Ok((guard, false, None));
        }
        let mut now = early.unwrap_or_else(Instant::now);
        let ticket = loop {
            let c = &mut guard.as_mut().ok_or(Stopped)?.credits;
            let ticket = c.next_ticket;
            c.next_ticket += 1;
            match c.hold.publish(now, topic, ticket) {
                Admit::Go(_) => return Ok((guard, false, Some(now))),
                Admit::Held { .. } => break ticket,
                // As many threads wait already: wait for one to go, then try again.
                Admit::Full(_) => {
                    guard = self.wait_credit(guard, None);
                    now = Instant::now();
                }
            }
        };
        let held_at = now;
        // Reclaim at least once; spin while spinning finds room (see `ROOM_SPIN`).
        let spin = guard.as_ref().is_some_and(|r| r.credits.room_spin.spins());
        let spin_until = held_at + if spin { ROOM_SPIN } else { Duration::ZERO };
        let mut asked = false;
        loop {
            let r = guard.as_mut().ok_or(Stopped)?;
            r.credits.drain();
            if let Some(expired) = r.credits.released.remove(&ticket) {
                if spin {
                    r.credits.room_spin.found(Instant::now() <= spin_until);
                }
                // Another thread may have taken tickets out for others.
                r.credit_changed();
                return Ok((guard, expired, Some(Instant::now())));
            }
            let now = Instant::now();
            if !asked || now < spin_until {
                let last = now >= spin_until;
                asked = last;
                r.reclaim(now, last);
                if !last {
                    // Let go between the looks. The lock is unfair: a thread that waits
                    // for it (the I/O thread, say) may get it only after the spin, at most
                    // `ROOM_SPIN` later, meanwhile this thread takes the returns itself,
                    // and a receiving thread's look on this node finds it taken and waits.
                    // The spin ends sooner once room comes.
                    drop(guard);
                    std::hint::spin_loop();
                    guard = self.lock();
                }
                continue;
            }
            guard = match r.credits.hold.poll_timeout() {
                Some(deadline) if deadline <= now => {
                    r.credits.hold.handle_timeout(now);
                    r.credits.drain();
                    // Tickets of other threads may be out.
                    r.credit_changed();
                    continue;
                }
                Some(deadline) => self.wait_credit(guard, Some(deadline - now)),
                None => self.wait_credit(guard, None),
            };
        }
    }

    /// Waits for the credit to change, at most `timeout`, with the node's lock let go.
    fn wait_credit<'a>(&self, mut guard: Guard<'a>, timeout: Option<Duration>) -> Guard<'a> {
        let Some(r) = guard.as_mut() else {
            return guard;
        };
        r.credits.waiting += 1;
        let mut guard = match timeout {
            None => (self.credit_changed.wait(guard)).unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                (self.credit_changed.wait_timeout(guard, t))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        if let Some(r) = guard.as_mut() {
            r.credits.waiting -= 1;
        }
        guard
    }
}

impl Reactor {
    /// Records what the `Block` subscribers of `topic` can still take.
    pub(super) fn set_room(&mut self, now: Instant, topic: &str, room: Option<Room>) {
        let c = &mut self.credits;
        c.hold.handle(now, HoldInput::Room { topic, room });
        c.drain();
        self.credit_changed();
    }

    /// The member took one message of `topic`; its room is now `room`.
    pub(super) fn processed(&mut self, now: Instant, topic: &str, room: Option<Room>) {
        let c = &mut self.credits;
        c.hold.handle(now, HoldInput::Accounted { topic, room });
        c.drain();
        self.credit_changed();
    }

    /// Wakes the publishing threads waiting for credit, if any wait.
    fn credit_changed(&self) {
        if self.credits.waiting > 0 {
            self.credit_changed.notify_all();
        }
    }
}
