//! Pool ranges a publisher lent through its rings, and when it asks to be woken for their
//! return.
//!
//! A ring's subscriber gives ranges back through the return ring, and wakes its publisher
//! only if that one says it waits for them ([`RingSender::watch_returns`]). A driver whose
//! loop sends every message says so after each one, and is woken about once per message
//! of a pooled stream. A driver whose application threads send themselves (the std
//! driver's publishing threads) need not: while such a thread sends
//! ([`Links::defer_return_wakes`]), or looks for returns while it spins for room, its sends
//! and looks ask for no wake and take back whatever came back already, so a stream wakes
//! nobody for its returns. Once the thread stops, the
//! driver's loop looks at the rings by a deadline ([`Links::returns_due`],
//! [`Links::returns_lapsed`]): it takes what came back and asks for wakes again, so that
//! the ranges of a publisher that went quiet come back without it.
//!
//! [`RingSender::watch_returns`]: ipc_proto::ring::link::RingSender::watch_returns

use std::time::Instant;

use ipc_proto::Member;

use super::Links;

/// Whether sends ask for return wakes now, and the deadline of the ones that did not.
#[derive(Debug, Default)]
pub(super) struct ReturnWakes {
    /// Sends ask for no wake ([`Links::defer_return_wakes`]).
    deferred: bool,
    /// A send with ranges out asked for no wake since the driver's loop last looked.
    unasked: bool,
    /// When the driver's loop looks ([`Links::returns_due`]).
    due: Option<Instant>,
}

impl ReturnWakes {
    /// Before a ring send that leaves `lent` ranges out: whether it asks for a return wake.
    pub(super) fn ask(&mut self, lent: u64) -> bool {
        if self.deferred {
            self.unasked |= lent > 0;
        }
        !self.deferred
    }

    pub(super) fn is_deferred(&self) -> bool {
        self.deferred
    }

    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }
}

impl<A> Links<A> {
    /// A thread other than the driver's loop starts (`true`) or stops sending, or taking back
    /// returns while it spins: meanwhile, a ring send asks for no wake for the ranges it
    /// lends, and takes back the ranges already given back on its link, and a read of a
    /// publisher's ring to its end asks for none either. After the thread stops, call
    /// [`Links::returns_due`], or read every link of [`Links::ring_senders`] at once (with
    /// [`Reading::Ring`](super::Reading::Ring)), which takes what came back and asks for
    /// wakes again (the calloop driver's loop does, after it polled).
    pub fn defer_return_wakes(&mut self, defer: bool) {
        self.return_wakes.deferred = defer;
    }

    /// After sends that asked for no return wake ([`Links::defer_return_wakes`]): the
    /// driver's loop must look at the rings by `until` ([`Links::poll_timeout`] includes
    /// it), or later if that is its deadline already. Returns whether there were any.
    pub fn returns_due(&mut self, until: Instant) -> bool {
        let w = &mut self.return_wakes;
        if !std::mem::take(&mut w.unasked) {
            return false;
        }
        w.due = Some(w.due.map_or(until, |d| d.max(until)));
        true
    }

    /// Whether the deadline of [`Links::returns_due`] has come: then read every link of
    /// [`Links::ring_senders`] (with [`Reading::Ring`](super::Reading::Ring)), which takes
    /// what came back and asks for wakes again.
    pub fn returns_lapsed(&mut self, now: Instant) -> bool {
        let w = &mut self.return_wakes;
        if w.due.is_some_and(|d| d <= now) {
            w.due = None;
            return true;
        }
        false
    }

    /// The keys of the links whose ring this node sends on (the publisher's side), into
    /// `out`.
    pub fn ring_senders(&self, out: &mut Vec<usize>) {
        out.clear();
        out.extend(
            self.links
                .iter()
                .filter(|(_, l)| l.ring.as_ref().is_some_and(|r| r.is_sender()))
                .map(|(key, _)| key),
        );
    }

    /// After sends that asked for no return wake: takes back what the link's subscriber gave
    /// back already, handed to the member as the release records they are.
    pub(super) fn take_returns_now(&mut self, member: &mut Member, now: Instant, key: usize) {
        let lends = self
            .links
            .get(key)
            .is_some_and(|l| l.lent.get() > 0 && l.ring.as_ref().is_some_and(|r| r.is_sender()));
        if lends {
            // One record takes every return there is (up to `MAX_RETURNS`).
            let _ = self.ring_record(member, now, key, None);
        }
    }
}
