//! Threads that poll the rings instead of sleeping: a spinning subscription
//! ([`SubscriptionOptions::spin`]) reads the rings on its own thread while the rings stay
//! unparked, so that publishers push without writing an eventfd.
//!
//! [`SubscriptionOptions::spin`]: ipc_proto::data::SubscriptionOptions::spin

use std::time::Instant;

use ipc_proto::data::Delivery;
use ipc_proto::{Member, PeerId};

use super::{Links, Read};

/// Most lingers in a row for a publisher's `writing` hint while no message is read from a
/// ring ([`Links::linger_for_writers`]).
const WRITING_LINGERS: u32 = 4;

impl<A> Links<A> {
    /// A thread starts polling the rings for its next message instead of sleeping
    /// ([`SubscriptionOptions::spin`]): from now until the last such thread stops (and its
    /// linger ends), the subscriber's side of every ring stays unparked, so publishers push
    /// without writing an eventfd, and the polling threads read the rings
    /// ([`Links::read_ring_direct`] or [`Links::read_ring`] on each of
    /// [`Links::ring_receivers`]; the driver's own loop, polling, may use
    /// [`Links::read_record_direct`] or [`Links::read_record`] with
    /// [`Reading::Ring`](super::Reading::Ring), which also hands on a socket record held
    /// before a ring message).
    ///
    /// [`SubscriptionOptions::spin`]: ipc_proto::data::SubscriptionOptions::spin
    pub fn spin_start(&mut self) {
        self.spinners += 1;
        let parked = self.spin_linger.take().is_none() && self.spinners == 1;
        if parked {
            self.unpark_rings(false);
        }
    }

    /// The subscriber's side of every ring stops being parked, so that publishers push
    /// without writing an eventfd; with `take_wakes`, a wake written while it was parked is
    /// taken too (whoever unparks reads every ring later anyway).
    fn unpark_rings(&mut self, take_wakes: bool) {
        for (_, link) in &mut self.links {
            if let Some(ring) = &mut link.ring {
                // Only a word stored in a mapping checked when taken: nothing to fail on.
                let _ = ring.unpark();
                if take_wakes {
                    ring.take_own_wake();
                }
            }
        }
    }

    /// A polling thread stops. With `linger`, the rings stay unparked until then if it was
    /// the last (a thread that got its message comes back for the next soon), after which
    /// [`Links::spin_lapsed`] says to read and park them. Returns whether to do that now:
    /// the last thread stopped with no linger.
    pub fn spin_stop(&mut self, linger: Option<Instant>) -> bool {
        self.spinners = self.spinners.saturating_sub(1);
        if self.spinners > 0 {
            return false;
        }
        // With no ring to read, a linger would only wake the driver's loop at its end.
        self.spin_linger = linger.filter(|_| self.reads_rings());
        self.spin_linger.is_none()
    }

    /// Whether this node reads a ring: a link on which it subscribes has one.
    fn reads_rings(&self) -> bool {
        self.check_readers();
        !self.readers.is_empty()
    }

    /// The keys of the links whose ring this node reads, found by a walk over every link.
    fn walk_readers(&self) -> impl Iterator<Item = usize> + '_ {
        (self.links.iter())
            .filter(|(_, l)| l.reads_ring())
            .map(|(key, _)| key)
    }

    /// A link gained or lost its ring (or closed with one): the keys of the links whose ring
    /// this node reads are found again.
    pub(super) fn update_readers(&mut self) {
        let readers: Vec<usize> = self.walk_readers().collect();
        self.readers = readers;
    }

    /// Every test drives this: the keys kept are those a walk finds.
    fn check_readers(&self) {
        debug_assert!(
            self.readers.iter().copied().eq(self.walk_readers()),
            "the ring readers kept are not the links' own"
        );
    }

    /// A thread read the rings outside the driver's loop (a subscription resuming the link
    /// its full queue paused, or leaving its own wait on the rings with a message) and comes
    /// back soon: the rings stay unparked until `until` (or a later linger), so that the
    /// publisher's next messages do not wake the driver's own loop for what that thread
    /// reads anyway. The driver's loop must wake by `until` and read what came for the other
    /// subscriptions meanwhile ([`Links::is_lingering`]). Like [`Links::spin_stop`]'s
    /// linger, it ends with [`Links::spin_lapsed`], or with [`Links::end_linger`] when a
    /// thread comes to wait on the rings. Nothing while threads spin: they keep the rings
    /// unparked already; nothing on a node that reads no ring (its links have none): there
    /// is nothing to keep unparked, and the linger's end would wake the driver's loop for
    /// nothing, about once a millisecond in a stream its subscriber cannot keep up with.
    pub fn linger(&mut self, until: Instant) {
        if self.spinners > 0 || !self.reads_rings() {
            return;
        }
        if let Some(t) = &mut self.spin_linger {
            *t = (*t).max(until);
            return;
        }
        self.spin_linger = Some(until);
        // A wake written while they were parked would wake the driver's loop for nothing:
        // the linger's end reads every ring anyway.
        self.unpark_rings(true);
    }

    /// A thread is about to wait on the rings: a linger ends now. Returns whether one did
    /// (no thread spins): then read every ring link to its end, which parks the rings,
    /// before waiting.
    pub fn end_linger(&mut self) -> bool {
        self.spinners == 0 && self.spin_linger.take().is_some()
    }

    /// Whether the rings linger unparked after a thread read them ([`Links::linger`], or the
    /// linger of [`Links::spin_stop`]) while no thread spins on them.
    pub fn is_lingering(&self) -> bool {
        self.spinners == 0 && self.spin_linger.is_some()
    }

    /// Whether threads poll the rings now (the driver's own wait should then be short: see
    /// [`Links::spin_stop`]'s linger).
    pub fn is_spinning(&self) -> bool {
        self.spinners > 0
    }

    /// Whether the linger after the last polling thread has run out ([`Links::poll_timeout`]
    /// includes it): the driver reads every ring link to its end, which parks the rings.
    pub fn spin_lapsed(&mut self, now: Instant) -> bool {
        if self.spinners == 0 && self.spin_linger.is_some_and(|t| t <= now) {
            self.spin_linger = None;
            return true;
        }
        false
    }

    /// Whether threads poll the rings (or did a moment ago): the rings do not park.
    pub fn is_polled(&self) -> bool {
        self.spinners > 0 || self.spin_linger.is_some()
    }

    /// This node fills a message that will go out on the links to `peers` (the data plane's
    /// [`links_for`](ipc_proto::data::DataPlane::links_for) its topic), on CPU `cpu` if the
    /// driver knows it (`ipc_os::current_cpu`): each of them with a ring tells its
    /// subscriber, whose polling thread may then poll a little longer instead of parking
    /// ([`Links::peer_writing`]), unless it runs on that CPU. The next message on the link
    /// clears it.
    pub fn writing(&mut self, peers: impl IntoIterator<Item = PeerId>, cpu: Option<u32>) {
        for peer in peers {
            if let Some(ring) = self
                .peers
                .get(&peer)
                .and_then(|&key| self.links.get_mut(key))
                .and_then(|l| l.ring.as_mut())
            {
                ring.writing(cpu);
            }
        }
    }

    /// Whether a publisher says it fills a message for one of the rings this node reads (see
    /// [`Links::writing`]): a message is on its way, worth polling for from CPU `here` (the
    /// caller's, if known; `None` for any): not if the publisher said it writes on that same
    /// CPU, which it needs to finish ([`Writer::worth_polling_from`]). The peer's word: a
    /// thread that polls longer for it bounds that itself.
    ///
    /// [`Writer::worth_polling_from`]: ipc_proto::ring::Writer::worth_polling_from
    pub fn peer_writing(&self, here: Option<u32>) -> bool {
        self.links.iter().any(|(_, l)| {
            l.ring
                .as_ref()
                .is_some_and(|r| r.peer_writing().worth_polling_from(here))
        })
    }

    /// The driver's loop is done with its turn and the rings are parked: if a publisher says
    /// it fills a message for one of them ([`Links::peer_writing`]), they stay unparked until
    /// `until` instead ([`Links::linger`]), so that its push wakes nobody, and this returns
    /// `true`: read the rings now (the linger took any wake written since they parked, which
    /// may have been for a message), and again when the linger ends
    /// ([`Links::spin_lapsed`]). Not while threads poll the rings or one waits on them (it
    /// sleeps until woken), and at most four times in a row while no message is read from a
    /// ring: a hint that stays set (a loan held long, or a hostile peer) costs
    /// the loop that many timer wakes, then the rings park as usual until a message comes. A
    /// driver whose threads may wait for its loop to hand messages on checks that none does
    /// first.
    pub fn linger_for_writers(&mut self, until: Instant) -> bool {
        if self.is_polled()
            || self.is_ring_set_detached()
            || self.writing_lingers >= WRITING_LINGERS
            || !self.peer_writing(None)
        {
            return false;
        }
        self.writing_lingers += 1;
        self.linger(until);
        true
    }

    /// The keys of the links whose ring this node reads (the subscriber's side), into `out`.
    pub fn ring_receivers(&self, out: &mut Vec<usize>) {
        self.check_readers();
        out.clear();
        out.extend_from_slice(&self.readers);
    }

    /// A polling thread's read of a link's ring: its next message if one is due, handed to
    /// the member, without reading the socket (a message held for a socket record waits for
    /// the I/O thread, which the socket wakes). [`Read::Done`] if none.
    pub fn read_ring(&mut self, member: &mut Member, now: Instant, key: usize) -> Read {
        self.read_ring_with(member, now, key, None)
    }

    /// [`Links::read_ring`], its inline message put in `took` rather than queued among the
    /// member's outputs when nothing waits ahead of it (as [`Links::read_record_direct`]
    /// does): the driver delivers it, then acts on what the member asks.
    pub fn read_ring_direct(
        &mut self,
        member: &mut Member,
        now: Instant,
        key: usize,
        took: &mut Option<Delivery>,
    ) -> Read {
        self.read_ring_with(member, now, key, Some(took))
    }

    fn read_ring_with(
        &mut self,
        member: &mut Member,
        now: Instant,
        key: usize,
        took: Option<&mut Option<Delivery>>,
    ) -> Read {
        if !self.is_reading(key) {
            return Read::Done;
        }
        self.ring_record(member, now, key, took)
            .unwrap_or(Read::Done)
    }
}
