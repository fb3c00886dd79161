//! A data link's shared-memory ring, on the driver's side: the region, the two eventfds, and
//! which end of [`ipc_proto::ring::link`] this node holds.
//!
//! The subscriber creates the ring when its publisher's `Hello` arrives and offers it over the
//! link's socket ([`RingLink::offer`]); the publisher takes it ([`RingLink::take`]) and from
//! then on [`Links`](crate::Links) puts message records in it instead of the socket. What goes
//! where, and in which order the subscriber hands records on, is decided by `ipc_proto`; this
//! module only holds the memory and the fds, and wakes the other side when told to.
//!
//! When each side resets its eventfd, parks, waits and wakes (here and in `Links`) is
//! model-checked by a mirror of this code in ipc-proto's `src/ring/loom/link.rs`: change
//! them together.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use ipc_os::poll::Waker;
use ipc_os::shared::{SharedRegion, SharedWord};
use ipc_os::socket::{self, Sent};
use ipc_proto::Member;
use ipc_proto::data::PayloadBuffer;
use ipc_proto::ring::link::{
    Next, NextInto, RingReceiver, RingSender, Sent as RingSent, link_config,
};
use ipc_proto::ring::{self, Body, Park, RingError, Writer};
use ipc_proto::wire::{MessageHeader, encode_ring_offer};

/// What [`RingLink::next`] found.
#[derive(Debug)]
pub(crate) enum Found {
    /// An inline message, its payload in the member's buffer.
    Message(MessageHeader, PayloadBuffer),
    /// Another message, in [`RingLink::record`].
    Record,
    /// None due now.
    Nothing,
}

/// Which end of the ring this node holds.
#[derive(Debug)]
pub(crate) enum End {
    /// The publisher's.
    Send(RingSender),
    /// The subscriber's.
    Recv(RingReceiver),
}

/// A data link's ring.
#[derive(Debug)]
pub(crate) struct RingLink {
    region: SharedRegion,
    /// This side's eventfd, in the node's `epoll` set.
    mine: Waker,
    /// The other side's.
    theirs: Waker,
    pub(crate) end: End,
    /// The publisher's side: the release record of the ranges given back
    /// ([`Self::take_returns`]); the subscriber's records are its receiver's.
    record: Vec<u8>,
    /// This side wrote its own eventfd, to come back to messages it left in the ring; cleared
    /// when it parks.
    armed: bool,
    /// A ring error the publisher's direct send met ([`Self::send_direct`]).
    failure: Option<RingError>,
}

/// Why a ring could not be taken.
#[derive(Debug)]
pub(crate) enum TakeError {
    /// The offer breaks the protocol: close the link.
    Violation(String),
    /// This side cannot use it (out of memory, no `/proc`): go on without a ring.
    Local(io::Error),
}

impl RingLink {
    /// The subscriber's side: creates a ring and offers it on `socket`, from which `read`
    /// records were handed on so far. `None` (and the link
    /// goes on without a ring) if that is not possible now.
    pub(crate) fn offer(socket: BorrowedFd<'_>, read: u64) -> io::Result<Option<Self>> {
        let config = link_config();
        let layout = config
            .layout()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let len = usize::try_from(layout.region_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let region = SharedRegion::create("ipc-pubsub-ring", len)?;
        let layout = ring::init(region.words(), &config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mine = Waker::new()?;
        let theirs = Waker::new()?;
        let offer = encode_ring_offer(layout.region_bytes());
        let fds = [region.as_fd(), mine.as_fd(), theirs.as_fd()];
        match socket::send_record(socket, &offer, &fds)? {
            Sent::Complete => Ok(Some(Self {
                region,
                mine,
                theirs,
                end: End::Recv(RingReceiver::new(layout, read)),
                record: Vec::new(),
                armed: false,
                failure: None,
            })),
            Sent::WouldBlock => Ok(None),
        }
    }

    /// The publisher's side: takes a ring offered with a record stating `len` bytes and these
    /// fds (the region, the subscriber's eventfd, the publisher's), on a link that has sent
    /// `sent` records on its socket so far.
    pub(crate) fn take(len: u64, fds: Vec<OwnedFd>, sent: u64) -> Result<Self, TakeError> {
        let violation = |what: &str, e: &dyn std::fmt::Display| {
            TakeError::Violation(format!("a ring offer with {what}: {e}"))
        };
        let local = |e: io::Error| match e.kind() {
            io::ErrorKind::InvalidData => TakeError::Violation(format!("a bad ring offer: {e}")),
            _ => TakeError::Local(e),
        };
        let [region, theirs, mine]: [OwnedFd; 3] = fds
            .try_into()
            .map_err(|fds: Vec<OwnedFd>| violation("the wrong fds", &fds.len()))?;
        let region = SharedRegion::open(region, len).map_err(local)?;
        let layout = ring::attach(region.words()).map_err(|e| violation("a bad ring", &e))?;
        let theirs = Waker::adopt(theirs).map_err(local)?;
        let mine = Waker::adopt(mine).map_err(local)?;
        Ok(Self {
            region,
            mine,
            theirs,
            end: End::Send(RingSender::new(layout, sent)),
            record: Vec::new(),
            armed: false,
            failure: None,
        })
    }

    /// This side's eventfd, to watch.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.mine.as_fd()
    }

    /// Whether this is the publisher's end.
    pub(crate) fn is_sender(&self) -> bool {
        matches!(self.end, End::Send(_))
    }

    /// Wakes this side itself: it left messages in the ring to come back to.
    pub(crate) fn rearm(&mut self) {
        if !self.armed {
            self.armed = true;
            let _ = self.mine.wake();
        }
    }

    // ---- the publisher's end ----

    /// A record went out on the socket.
    pub(crate) fn record_sent(&mut self) {
        if let End::Send(tx) = &mut self.end {
            tx.record_sent();
        }
    }

    /// Puts a record in the ring if it goes there: `Ok(true)` if it went, `Ok(false)` if it
    /// takes the socket; `Err(None)`: the ring is full, wait for the wake.
    ///
    /// `lent`: the pool ranges out on the link once this record is sent (see
    /// [`RingSender::watch_returns`]); unless `watch_returns`, the sender asks for no wake
    /// for their return (its caller takes them back itself: see `links/returns.rs`).
    pub(crate) fn send(
        &mut self,
        record: &[u8],
        lent: u64,
        watch_returns: bool,
    ) -> Result<bool, Option<RingError>> {
        self.send_with(lent, watch_returns, |tx, words| tx.send(words, record))
    }

    /// [`Self::send`] of an inline message without its record (see
    /// [`RingSender::send_message`]), for a data plane's direct send: `true` if it went into
    /// the ring. `false` leaves the message to its record's send, which follows: a full ring
    /// (that send prepares the wait for room, not this one), a payload the ring does not
    /// carry, or a ring the peer broke, whose error waits for that send
    /// ([`Self::take_failure`]); a break seen after the message went in is kept the same way.
    pub(crate) fn send_direct(
        &mut self,
        header: MessageHeader,
        payload: &[u8],
        lent: u64,
        watch_returns: bool,
    ) -> bool {
        let End::Send(tx) = &mut self.end else {
            return false;
        };
        if self.failure.is_some() {
            // The record's send closes the link on it.
            return false;
        }
        let (went, result) =
            match tx.send_message(self.region.words(), header, Body::Inline(payload)) {
                Ok(RingSent::Ring { wake }) => (true, self.pushed(wake, lent, watch_returns)),
                Ok(RingSent::Socket | RingSent::Full) => return false,
                Err(e) => (false, Err(e)),
            };
        if let Err(e) = result {
            self.failure = Some(e);
        }
        went
    }

    /// A ring error [`Self::send_direct`] met, for the link's next send to close it on.
    pub(crate) fn take_failure(&mut self) -> Option<RingError> {
        self.failure.take()
    }

    /// After a push: wakes the subscriber if it sleeps, and watches the returns.
    fn pushed(&mut self, woke: bool, lent: u64, watch_returns: bool) -> Result<(), RingError> {
        if woke {
            wake(&self.theirs);
        }
        let End::Send(tx) = &mut self.end else {
            return Ok(());
        };
        // A range lent through the ring comes back through its return ring, which wakes
        // this side only while it says it waits: say so now, not only when idle (a
        // publisher that only publishes, or one blocked on a pool with every range lent,
        // would never take them back). Nothing to do while the last wait is not woken yet;
        // and it is a wait for returns only, which the subscriber's pops of the messages sent
        // meanwhile do not wake. A caller that takes the returns itself at its next send, and
        // has its loop look after the last one, says not to (`links/returns.rs`).
        if watch_returns && tx.watch_returns(self.region.words(), lent)? {
            self.rearm();
        }
        Ok(())
    }

    fn send_with(
        &mut self,
        lent: u64,
        watch_returns: bool,
        mut send: impl FnMut(&mut RingSender, &[SharedWord]) -> Result<RingSent, RingError>,
    ) -> Result<bool, Option<RingError>> {
        loop {
            let End::Send(tx) = &mut self.end else {
                return Ok(false);
            };
            match send(tx, self.region.words()).map_err(Some)? {
                RingSent::Ring { wake } => {
                    self.pushed(wake, lent, watch_returns).map_err(Some)?;
                    return Ok(true);
                }
                RingSent::Socket => return Ok(false),
                RingSent::Full => match tx.prepare_wait(self.region.words()).map_err(Some)? {
                    Park::Sleep => return Err(None),
                    Park::Ready if tx.has_room() => continue,
                    Park::Ready => break,
                },
            }
        }
        // Ranges came back but there is no room, and no wake is owed any more: come back
        // through the read path (which takes the returns) and retry then.
        self.rearm();
        Err(None)
    }

    /// The publisher's end fills a message this link will carry (a pooled loan), on CPU
    /// `cpu` if known: says so in the ring, a hint that its next push clears
    /// ([`RingSender::writing`]).
    pub(crate) fn writing(&mut self, cpu: Option<u32>) {
        if let End::Send(tx) = &mut self.end {
            // Only a word stored in a mapping checked when taken: nothing to fail on.
            let _ = tx.writing(self.region.words(), cpu);
        }
    }

    /// This side's eventfd was readable. The publisher takes the wake and stops waiting; the
    /// subscriber stops being parked but leaves its eventfd readable until it parks again, so
    /// that its loop comes back for whatever a read budget left in the ring.
    pub(crate) fn woken(&mut self) -> Result<(), RingError> {
        match &mut self.end {
            End::Send(tx) => {
                let _ = self.mine.reset();
                self.armed = false;
                tx.finish_wait(self.region.words())
            }
            End::Recv(rx) => rx.finish_park(self.region.words()),
        }
    }

    /// The ranges given back, as one release record in [`Self::record`]; how many (0: none).
    pub(crate) fn take_returns(&mut self, max: usize) -> Result<usize, RingError> {
        match &mut self.end {
            End::Send(tx) => tx.take_returns(self.region.words(), max, &mut self.record),
            End::Recv(_) => Ok(0),
        }
    }

    /// The publisher has nothing to read: waits for returns while `lent` ranges are out.
    /// `Ok(true)`: something came meanwhile, look again.
    pub(crate) fn idle_sender(&mut self, lent: u64) -> Result<bool, RingError> {
        let End::Send(tx) = &mut self.end else {
            return Ok(false);
        };
        // The eventfd is not reset here: a wake for room may be in it (the outbox waits for
        // room too), and only the ring's event, which flushes, may take that one.
        tx.watch_returns(self.region.words(), lent)
    }

    // ---- the subscriber's end ----

    /// The next ring message due before the socket's next record: an inline one popped
    /// straight into a buffer of `member`'s ([`Member::payload_buffer`]), anything else in
    /// [`Self::record`].
    pub(crate) fn next(&mut self, member: &mut Member) -> Result<Found, RingError> {
        let End::Recv(rx) = &mut self.end else {
            return Ok(Found::Nothing);
        };
        let next = rx.next_into(self.region.words(), |len| member.payload_buffer(len))?;
        if rx.take_wake() {
            wake(&self.theirs);
        }
        Ok(match next {
            NextInto::Inline { header, payload } => Found::Message(header, payload),
            NextInto::Other(Next::Record) => Found::Record,
            NextInto::Other(_) => Found::Nothing,
        })
    }

    /// The subscriber's end: whether [`Self::next`] may find something now
    /// ([`RingReceiver::may_hold`]); the publisher's end: `true`.
    pub(crate) fn may_hold(&mut self) -> bool {
        match &mut self.end {
            End::Recv(rx) => rx.may_hold(self.region.words()),
            End::Send(_) => true,
        }
    }

    /// The record [`Self::next`] or [`Self::take_returns`] found, to hand on.
    pub(crate) fn record(&self) -> &[u8] {
        match &self.end {
            End::Recv(rx) => rx.record(),
            End::Send(_) => &self.record,
        }
    }

    /// A socket record was handed on.
    pub(crate) fn record_read(&mut self) {
        if let End::Recv(rx) = &mut self.end {
            rx.record_read();
        }
    }

    /// The subscriber's end: whether the publisher says it fills a message for this link, and
    /// on which CPU ([`RingReceiver::producer_writing`]). The peer's word: only a hint.
    pub(crate) fn peer_writing(&self) -> Writer {
        match &self.end {
            End::Recv(rx) => rx
                .producer_writing(self.region.words())
                .unwrap_or(Writer::Idle),
            End::Send(_) => Writer::Idle,
        }
    }

    /// The subscriber has nothing to read: parks. `Ok(true)`: a message came meanwhile, look
    /// again.
    pub(crate) fn park(&mut self) -> Result<bool, RingError> {
        let End::Recv(rx) = &mut self.end else {
            return Ok(false);
        };
        let _ = self.mine.reset();
        self.armed = false;
        let words = self.region.words();
        match rx.prepare_park(words)? {
            Park::Ready => Ok(true),
            Park::Sleep => Ok(false),
        }
    }

    /// The subscriber's side, while threads poll its ring: takes the wake written to this
    /// side's eventfd (it does not park, which would), so that the I/O thread is not woken
    /// over and over; the read that follows comes back for what a budget leaves
    /// ([`Self::rearm`]).
    pub(crate) fn take_own_wake(&mut self) {
        if let End::Recv(_) = self.end {
            let _ = self.mine.reset();
            self.armed = false;
        }
    }

    /// The subscriber's side stops being parked without a wake: a thread polls the ring, so
    /// the publisher need not write the eventfd.
    pub(crate) fn unpark(&mut self) -> Result<(), RingError> {
        match &mut self.end {
            End::Recv(rx) => rx.finish_park(self.region.words()),
            End::Send(_) => Ok(()),
        }
    }

    /// Gives pooled ranges back through the return ring; returns how many went.
    pub(crate) fn give_back(
        &mut self,
        slots: &[ipc_proto::wire::SlotRef],
    ) -> Result<usize, RingError> {
        let End::Recv(rx) = &mut self.end else {
            return Ok(0);
        };
        let given = rx.give_back(self.region.words(), slots)?;
        if rx.take_wake() {
            wake(&self.theirs);
        }
        Ok(given)
    }
}

/// Wakes the other side. Cannot block (its eventfd is non-blocking); a failure means the peer
/// is gone, which its socket tells.
fn wake(theirs: &Waker) {
    let _ = theirs.wake();
}

/// A ring offered on one end of a socket pair and taken on the other: (subscriber's,
/// publisher's). For tests.
#[cfg(test)]
pub(crate) fn test_pair() -> (RingLink, RingLink) {
    use ipc_os::socket::{Recv, recv_record, socketpair_seqpacket};
    use ipc_proto::wire::ring_offer;

    let (a, b) = socketpair_seqpacket().expect("socketpair");
    let rx = RingLink::offer(a.as_fd(), 0).expect("offer").expect("sent");
    let mut buf = vec![0; 64];
    let mut fds = Vec::new();
    let Ok(Recv::Data { len, .. }) = recv_record(b.as_fd(), &mut buf, &mut fds, 3) else {
        panic!("no offer");
    };
    let region = ring_offer(&buf[..len]).expect("an offer").expect("valid");
    let tx = RingLink::take(region, fds, 0).unwrap_or_else(|_| panic!("taken"));
    (rx, tx)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    /// A direct send on a ring the peer broke sends nothing, keeps the error for the link's
    /// next send to close it on, and takes nothing more until then.
    #[test]
    fn a_direct_send_on_a_broken_ring_keeps_the_error_for_the_next_send() {
        let (rx, mut tx) = test_pair();
        // A ring full of messages nobody took: the next push reads the subscriber's tail.
        let capacity = u64::from(ipc_proto::ring::link::LINK_CAPACITY);
        for seq in 1..=capacity {
            let header = MessageHeader { topic: 1, seq };
            assert!(
                tx.send_direct(header, b"m", 0, true),
                "a sound ring takes it"
            );
        }
        assert!(tx.take_failure().is_none());
        let next = MessageHeader {
            topic: 1,
            seq: capacity + 1,
        };
        assert!(
            !tx.send_direct(next, b"m", 0, true),
            "full: the record waits"
        );
        assert!(tx.take_failure().is_none(), "full is no error");
        // The subscriber scribbles over everything past the ring's header line (its tail
        // among it): an index no ring can hold.
        for w in rx.region.words().iter().skip(8) {
            w.atomic().store(u64::MAX / 3, Relaxed);
        }
        assert!(!tx.send_direct(next, b"m", 0, true), "a broken ring");
        assert!(!tx.send_direct(next, b"m", 0, true), "the error first");
        assert!(tx.take_failure().is_some(), "kept for the next send");
        assert!(tx.take_failure().is_none(), "once");
    }
}
