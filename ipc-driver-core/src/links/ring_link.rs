//! A data link's shared-memory ring as the link table sees it: offered by the subscriber's
//! side, taken by the publisher's, woken, and dropped when the peer breaks it.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use ipc_os::poll::{Interest, Token};
use ipc_proto::data::{Delivery, DirectSend};
use ipc_proto::wire::MessageHeader;
use ipc_proto::{Member, MemberInput, PeerId};
use tracing::{debug, trace, warn};

use super::ring_set::rings_in;
use super::{Links, MAX_RETURNS, RING_TAG, Read, feed};
use crate::ring::{Found, RingLink, TakeError};

impl<A> Links<A> {
    /// The peer broke the link's ring (or its offer): the ring is dropped, the link is read
    /// no more, and the member is told (it closes the link as a protocol violation).
    pub(super) fn ring_broken(
        &mut self,
        member: &mut Member,
        now: Instant,
        key: usize,
        e: &dyn fmt::Display,
    ) {
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        let ring = link.ring.take();
        link.outbox.clear();
        link.outbox_bytes = 0;
        let peer = link.peer;
        if let Some(ring) = ring {
            let _ = rings_in(&self.poller, &self.ring_set).delete(ring.fd());
            self.update_readers();
        }
        if self.peer_log.allow(now) {
            warn!(%peer, error = %e, "closing a data link: its peer broke the shared-memory ring");
        }
        self.stop_reading(key);
        let reason = format!("shared-memory ring: {e}");
        feed(member, now, MemberInput::Rejected { peer, reason });
    }

    /// A link's ring has news ([`Ready::Ring`](super::Ready::Ring)): takes its wake. Then
    /// flush the link (room) and read it (messages, returns).
    pub fn ring_woken(&mut self, member: &mut Member, now: Instant, key: usize) {
        let polled = self.is_polled();
        let Some(ring) = self.links.get_mut(key).and_then(|l| l.ring.as_mut()) else {
            return;
        };
        if polled {
            ring.take_own_wake();
        }
        if let Err(e) = ring.woken() {
            self.ring_broken(member, now, key, &e);
        }
    }

    /// The subscriber's side, on its publisher's `Hello`: offers the link a ring.
    pub(super) fn offer_ring(&mut self, key: usize) {
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        if link.ring.is_some() || !link.accepted || link.closing.is_some() {
            return;
        }
        match RingLink::offer(link.fd.as_fd(), link.read) {
            Ok(Some(ring)) => {
                let token = Token(RING_TAG | key as u64);
                if let Err(e) =
                    rings_in(&self.poller, &self.ring_set).add(ring.fd(), token, Interest::READABLE)
                {
                    debug!(peer = %link.peer, error = %e, "cannot watch a ring: going on without it");
                    return;
                }
                trace!(peer = %link.peer, "ring offered");
                link.ring = Some(ring);
                link.ring_registered = true;
                self.update_readers();
            }
            Ok(None) => trace!(peer = %link.peer, "socket full: no ring offered"),
            Err(e) => {
                debug!(peer = %link.peer, error = %e, "cannot offer a ring: going on without it")
            }
        }
    }

    /// The publisher's side: a ring offer arrived with these fds.
    pub(super) fn take_ring(
        &mut self,
        member: &mut Member,
        now: Instant,
        key: usize,
        offer: Result<u64, ipc_proto::DecodeError>,
        fds: Vec<OwnedFd>,
    ) -> Read {
        let Some(link) = self.links.get_mut(key) else {
            return Read::Done;
        };
        let peer = link.peer;
        if link.accepted || link.ring.is_some() || !self.rings {
            let reason = "a ring offer where none belongs".to_string();
            return Self::reject(member, now, peer, reason);
        }
        let taken = match offer {
            Ok(len) => RingLink::take(len, fds, link.sent),
            Err(e) => Err(TakeError::Violation(format!("a bad ring offer: {e}"))),
        };
        match taken {
            Ok(ring) => {
                let token = Token(RING_TAG | key as u64);
                if let Err(e) =
                    rings_in(&self.poller, &self.ring_set).add(ring.fd(), token, Interest::READABLE)
                {
                    debug!(%peer, error = %e, "cannot watch a ring: going on without it");
                } else {
                    trace!(%peer, "ring taken");
                    link.ring = Some(ring);
                    link.ring_registered = true;
                    self.update_readers();
                }
                Read::Record
            }
            Err(TakeError::Local(e)) => {
                debug!(%peer, error = %e, "cannot take a ring: going on without it");
                Read::Record
            }
            Err(TakeError::Violation(reason)) => Self::reject(member, now, peer, reason),
        }
    }

    /// The ring's next record, handed to the member: a publisher's returns, a subscriber's
    /// next due message. `None`: nothing from the ring now.
    pub(super) fn ring_record(
        &mut self,
        member: &mut Member,
        now: Instant,
        key: usize,
        took: Option<&mut Option<Delivery>>,
    ) -> Option<Read> {
        let link = self.links.get_mut(key)?;
        let peer = link.peer;
        let ring = link.ring.as_mut()?;
        let got = if ring.is_sender() {
            ring.take_returns(MAX_RETURNS).map(|n| {
                link.lent.returned(n);
                if n > 0 { Found::Record } else { Found::Nothing }
            })
        } else {
            ring.next(member)
        };
        match got {
            Ok(Found::Nothing) => None,
            Ok(found) => {
                Self::hand_on_found(member, now, peer, ring, found, took);
                if !ring.is_sender() {
                    self.writing_lingers = 0;
                }
                Some(Read::Record)
            }
            Err(e) => {
                self.ring_broken(member, now, key, &e);
                Some(Read::Done)
            }
        }
    }
}

impl<A> Links<A> {
    /// Hands on to `member` what [`RingLink::next`] (or the publisher's returns) found on the
    /// link `peer`: an inline message in the member's buffer, or the record (nothing for
    /// [`Found::Nothing`], which the callers take apart first). With `took`, a message the
    /// member hands back rather than queues ([`Member::receive_payload_direct`]) is put there,
    /// for the driver to deliver before it polls the member's outputs.
    pub(super) fn hand_on_found(
        member: &mut Member,
        now: Instant,
        peer: PeerId,
        ring: &RingLink,
        found: Found,
        took: Option<&mut Option<Delivery>>,
    ) {
        match (found, took) {
            (Found::Message(header, payload), Some(took)) => {
                debug_assert!(took.is_none(), "a message handed back was not delivered");
                *took = member.receive_payload_direct(now, peer, header, payload);
            }
            (Found::Message(header, payload), None) => {
                member.receive_payload(now, peer, header, payload);
            }
            (Found::Record, _) => Self::hand_on(member, now, peer, ring.record(), &[]),
            (Found::Nothing, _) => {}
        }
    }
}

/// A publish's inline messages straight into the rings of the links that can take them now
/// ([`Member::publish_direct`]): a link with a ring and nothing in its outbox, which a
/// message in its ring would overtake, and no pool ranges out while their returns are
/// deferred (a send then takes them back first, which needs the member). What the ring cannot
/// take (it is full, the peer broke it, the payload is above its inline size) comes back as a
/// record, and the send of the record does what a send does about it (waits for room, closes
/// the link on the error the direct send kept: `RingLink::take_failure`).
impl<A> DirectSend for Links<A> {
    fn send_inline(&mut self, peer: PeerId, header: MessageHeader, payload: &[u8]) -> bool {
        let Some(&key) = self.peers.get(&peer) else {
            return false;
        };
        let Some(link) = self.links.get_mut(key) else {
            return false;
        };
        if link.closing.is_some() || link.write_failed || !link.outbox.is_empty() {
            return false;
        }
        let lent = link.lent.get();
        // A send while returns are deferred takes them back first (`Links::flush`), which
        // needs the member: the record's send does.
        if lent > 0 && self.return_wakes.is_deferred() {
            return false;
        }
        let Some(ring) = &mut link.ring else {
            return false;
        };
        let watch = self.return_wakes.ask(lent);
        ring.send_direct(header, payload, lent, watch)
    }
}
