//! Data links of the [`DataPlane`]: links coming up and down, checking who is at the other
//! end, and records before they are known.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, trace};

use crate::ids::{Credentials, PeerId};
use crate::wire::{DataFrame, MessageHeader, decode_data, encode_data};

use super::io::{DataEvt, DataOutput};
use super::payload::{Delivered, Delivery, InlineBody, OUTGOING, ReceivedSegment};
use super::plane::{Check, DataPlane, InLink, OutState};

impl DataPlane {
    // ---- links ----

    pub(super) fn on_peer_up(&mut self, now: Instant, peer: PeerId, cred: Option<Credentials>) {
        let known = self.out_links.contains_key(&peer) || peer.0 & OUTGOING == 0;
        if known && !self.config.access.allows(cred.as_ref()) {
            return self.refuse(
                now,
                peer,
                cred,
                "not allowed by the group's access policy".into(),
            );
        }
        if let Some(l) = self.out_links.get(&peer)
            && let Some(why) = self
                .known
                .get(&l.node)
                .and_then(|(n, _)| n.mismatch(cred.as_ref()))
        {
            // The subscriber's address is held by another process than the node's.
            let reason = format!("the data address of node {} is held by {why}", l.node);
            return self.refuse(now, peer, cred, reason);
        }
        if let Some(l) = self.out_links.get_mut(&peer) {
            l.state = OutState::Up;
            l.attempts = 0;
            let node = l.node;
            let hello = encode_data(
                &DataFrame::Hello {
                    publisher: self.config.node,
                    rings: self.config.rings,
                },
                &[],
            );
            self.out.push_back(DataOutput::Transmit {
                peer,
                bytes: hello,
                attach: None,
            });
            self.out
                .push_back(DataOutput::Evt(DataEvt::Subscriber { node, up: true }));
            self.flush(peer);
        } else if peer.0 & OUTGOING == 0 {
            // A link that went down with records held, under an id the driver reuses: those
            // records go.
            self.forget_in_link(peer);
            self.in_links.insert(
                peer,
                InLink {
                    cred,
                    unverified: None,
                    held: VecDeque::new(),
                    held_bytes: 0,
                    down: false,
                    publisher: None,
                    topics: BTreeMap::new(),
                    bound: BTreeSet::new(),
                    segments: BTreeMap::new(),
                },
            );
        } else {
            trace!(%peer, "PeerUp for a link this machine no longer wants");
            self.out.push_back(DataOutput::Disconnect(peer));
        }
    }

    /// Closes a link whose process is not one this node talks to, before a byte goes either
    /// way. A link to a subscriber is retried later, as after a failed connection.
    fn refuse(&mut self, now: Instant, peer: PeerId, cred: Option<Credentials>, reason: String) {
        debug!(%peer, ?cred, %reason, "refusing a data link");
        self.refused += 1;
        self.out.push_back(DataOutput::Disconnect(peer));
        self.out
            .push_back(DataOutput::Evt(DataEvt::PeerRefused { peer, cred, reason }));
        if self.out_links.contains_key(&peer) {
            self.on_peer_down(now, peer);
        } else {
            self.forget_in_link(peer);
        }
    }

    /// Forgets a link from a publisher, releasing every segment it holds.
    pub(super) fn forget_in_link(&mut self, peer: PeerId) {
        if let Some(l) = self.in_links.remove(&peer) {
            for (seg, _) in l.segments.into_values() {
                self.out.push_back(DataOutput::Release(seg));
            }
            for (_, segments) in l.held {
                for s in segments {
                    self.out.push_back(DataOutput::Release(s.segment));
                }
            }
        }
    }

    pub(super) fn on_peer_down(&mut self, now: Instant, peer: PeerId) {
        if self.out_links.contains_key(&peer) {
            let was_up = matches!(
                self.out_links[&peer].state,
                OutState::Up | OutState::Blocked
            );
            // Whatever was queued or held on the link is gone with it.
            self.reset_out_link(peer);
            let l = self.out_links.get_mut(&peer).expect("checked");
            l.attempts = l.attempts.saturating_add(1);
            let delay = self
                .config
                .retry
                .saturating_mul(1 << l.attempts.min(5))
                .min(Duration::from_secs(1));
            l.state = OutState::Retry(now + delay);
            debug!(%peer, node = %l.node, ?delay, "data link down: retrying");
            let node = l.node;
            self.arm(now + delay);
            if was_up {
                self.out
                    .push_back(DataOutput::Evt(DataEvt::Subscriber { node, up: false }));
            }
            self.update_blocked(now);
        } else if let Some(l) = self.in_links.get_mut(&peer)
            && l.unverified.is_some()
        {
            // What it sent before it went is checked when the view catches up.
            debug!(%peer, "a publisher's link went down with records held");
            l.down = true;
        } else {
            self.forget_in_link(peer);
        }
    }

    /// Forgets what a link to a subscriber carried (it went down): queued and held payloads.
    pub(super) fn reset_out_link(&mut self, peer: PeerId) {
        let l = self.out_links.get_mut(&peer).expect("caller checked");
        let mut freed = Vec::new();
        for q in l.queue.drain(..) {
            freed.extend(q.slot.map(|(s, _)| s).or(q.fresh));
        }
        freed.extend(std::mem::take(&mut l.held).into_keys().map(|(s, _)| s));
        // The rooms of what it had in flight, and of what it had terms for, change with it.
        for (topic, t) in &mut l.topics {
            if t.in_flight > 0 || (t.terms.is_some() && self.advertised.contains(topic)) {
                self.room_changes.touch(topic);
            }
            t.id = None;
            t.terms = None;
            t.in_flight = 0;
        }
        l.topics.retain(|_, t| t.counted());
        l.with_terms = 0;
        l.last_topic_id = 0;
        l.offered.clear();
        for seg in freed {
            self.unref(seg);
        }
    }

    pub(super) fn drop_out_link(&mut self, peer: PeerId) {
        self.reset_out_link(peer);
        if let Some(l) = self.out_links.remove(&peer) {
            self.by_node.remove(&l.node);
            self.links_epoch += 1;
        }
    }

    pub(super) fn misbehaved(
        &mut self,
        peer: PeerId,
        reason: String,
        segments: &[ReceivedSegment],
    ) {
        // The driver logs the event (rate-limited): a hostile peer must not flood the log.
        debug!(%peer, %reason, "data link broke the protocol");
        self.rejected += 1;
        for s in segments {
            self.out.push_back(DataOutput::Release(s.segment));
        }
        if self.out_links.contains_key(&peer) {
            self.drop_out_link(peer);
            // Its `Block` terms no longer hold anyone back (the fuzzers found a room that still
            // counted a link closed this way: `regression-room-after-a-link-misbehaved`).
            self.update_blocked(self.last_now);
        } else {
            self.forget_in_link(peer);
        }
        self.out.push_back(DataOutput::Disconnect(peer));
        self.out
            .push_back(DataOutput::Evt(DataEvt::PeerMisbehaved { peer, reason }));
    }

    pub(super) fn on_record(
        &mut self,
        now: Instant,
        peer: PeerId,
        data: &[u8],
        segments: &[ReceivedSegment],
    ) {
        if self
            .in_links
            .get(&peer)
            .is_some_and(|l| l.unverified.is_some())
        {
            // Behind a record that waits for the view: in order, after it.
            return self.hold(now, peer, data, segments, None);
        }
        let limits = &self.config.limits;
        let (frame, start) = match decode_data(data, limits.max_name, limits.max_release) {
            Ok(f) => f,
            Err(e) => return self.misbehaved(peer, e.to_string(), segments),
        };
        let wants_fd = matches!(frame, DataFrame::Fresh { .. } | DataFrame::Segment { .. });
        if segments.len() != usize::from(wants_fd) {
            let reason = format!("{} with {} file descriptors", frame.name(), segments.len());
            return self.misbehaved(peer, reason, segments);
        }
        if self.out_links.contains_key(&peer) {
            self.on_subscriber_frame(now, peer, frame, segments);
        } else if self.in_links.contains_key(&peer) {
            match self.verify(peer, &frame) {
                Check::Valid => self.on_publisher_frame(peer, frame, &data[start..], segments),
                Check::Wait(why) => self.hold(now, peer, data, segments, Some(why)),
                Check::Invalid(reason) => self.misbehaved(peer, reason, segments),
            }
        } else {
            for s in segments {
                self.out.push_back(DataOutput::Release(s.segment));
            }
        }
    }

    /// [`Self::on_record`] of an inline message's record, given as its parts (see
    /// [`DataPlane::receive_inline`] and [`DataPlane::receive_payload`]): from a greeted
    /// publisher's link whose records are not held, without encoding and decoding the record
    /// ([`Self::verify`] passes every message: it checks bindings and greetings); anything
    /// else (a message before `Hello`, behind held records, on an unknown link) takes the
    /// record's way.
    ///
    /// With `direct`, the delivery is returned rather than queued if no output waits ahead of
    /// it (see [`DataPlane::receive_payload_direct`]).
    pub(super) fn on_inline(
        &mut self,
        now: Instant,
        peer: PeerId,
        header: MessageHeader,
        payload: InlineBody<'_>,
        direct: bool,
    ) -> Option<Delivery> {
        let greeted = self
            .in_links
            .get(&peer)
            .is_some_and(|l| l.unverified.is_none() && l.publisher.is_some());
        if !greeted {
            let record = encode_data(&DataFrame::Inline(header), payload.bytes());
            self.on_record(now, peer, &record, &[]);
            return None;
        }
        let payload = match payload {
            InlineBody::Bytes(bytes) => self.payloads.copy_of(bytes),
            InlineBody::Buffer(buf) => {
                self.payloads.keep(&buf);
                buf
            }
        };
        self.receive_direct(peer, header, Delivered::Inline(payload), &[], direct)
    }

    /// Whether a publisher's frame agrees with this node's view: its `Hello` must name a node
    /// the view shows with the link's credentials, its `Topic` a topic that node announced.
    /// What the view does not show yet waits for it.
    fn verify(&self, peer: PeerId, frame: &DataFrame) -> Check {
        let l = &self.in_links[&peer];
        match frame {
            DataFrame::Hello { publisher, .. } if l.publisher.is_none() => {
                if *publisher == self.config.node {
                    return Check::Invalid(format!("Hello claims this node's id {publisher}"));
                }
                match self.known.get(publisher) {
                    None => Check::Wait(format!(
                        "Hello from node {publisher}, which this node's view does not show"
                    )),
                    Some((n, _)) => match n.mismatch(l.cred.as_ref()) {
                        Some(why) => Check::Invalid(format!(
                            "Hello claims node {publisher}, but the link is {why}"
                        )),
                        None => Check::Valid,
                    },
                }
            }
            DataFrame::Topic { topic, .. } => match l.publisher {
                Some(node)
                    if !self
                        .known
                        .get(&node)
                        .is_some_and(|(n, _)| n.publishes.contains(topic.as_str())) =>
                {
                    Check::Wait(format!(
                        "binds topic `{topic}`, which this node's view does not show node {node} \
                     announcing"
                    ))
                }
                _ => Check::Valid,
            },
            _ => Check::Valid,
        }
    }

    /// Holds a publisher's record, undelivered, until the view shows what it claims (`why`
    /// starts the wait); bounded in records, bytes and time.
    fn hold(
        &mut self,
        now: Instant,
        peer: PeerId,
        data: &[u8],
        segments: &[ReceivedSegment],
        why: Option<String>,
    ) {
        let limits = &self.config.limits;
        let (max, max_bytes) = (limits.max_unverified, limits.max_unverified_bytes);
        let l = self.in_links.get_mut(&peer).expect("caller checked");
        if l.held.len() >= max || l.held_bytes + data.len() > max_bytes {
            let why = l.unverified.as_ref().map_or("", |(_, w)| w.as_str());
            let reason =
                format!("more than {max} records or {max_bytes} bytes while unverified: {why}");
            return self.misbehaved(peer, reason, segments);
        }
        l.held_bytes += data.len();
        l.held.push_back((data.to_vec(), segments.to_vec()));
        if let Some(why) = why {
            trace!(%peer, %why, "holding a publisher's records until the view shows it");
            let (since, _) = l.unverified.get_or_insert((now, why));
            let at = *since + self.config.verify_timeout;
            self.arm(at);
        }
    }

    /// Runs the records held from publishers again, now that the view changed: what checks out
    /// goes on, in order, and the rest waits for the next change (or its deadline).
    pub(super) fn replay_held(&mut self, now: Instant) {
        let peers: Vec<PeerId> = self
            .in_links
            .iter()
            .filter(|(_, l)| l.unverified.is_some())
            .map(|(p, _)| *p)
            .collect();
        for peer in peers {
            let l = self.in_links.get_mut(&peer).expect("listed above");
            let since = l.unverified.take().map(|(t, _)| t);
            let held = std::mem::take(&mut l.held);
            l.held_bytes = 0;
            for (data, segments) in held {
                if self.in_links.contains_key(&peer) {
                    self.on_record(now, peer, &data, &segments);
                } else {
                    // Closed meanwhile: what it sent goes with it.
                    for s in segments {
                        self.out.push_back(DataOutput::Release(s.segment));
                    }
                }
            }
            // Still waiting: the deadline runs from the first wait.
            if let Some(l) = self.in_links.get_mut(&peer)
                && let (Some((t, _)), Some(since)) = (&mut l.unverified, since)
            {
                *t = since;
                self.arm(since + self.config.verify_timeout);
            }
            if self
                .in_links
                .get(&peer)
                .is_some_and(|l| l.down && l.unverified.is_none())
            {
                self.forget_in_link(peer);
            }
        }
    }
}
