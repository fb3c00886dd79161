//! The subscriber side of the [`DataPlane`]: frames from publishers, received segments and
//! deliveries, and the ranges given back.

use std::collections::BTreeMap;

use tracing::{debug, trace};

use crate::ids::{NodeId, PeerId};
use crate::wire::{DataFrame, MessageHeader, SlotRef, encode_data};

use super::io::DataOutput;
use super::loss::Loss;
use super::options::{DEFAULT_MAX_PAYLOAD, Terms};
use super::payload::{Delivered, Delivery, LOCAL, ReceivedSegment, SegmentId};
use super::plane::{Bound, DataPlane};
use super::pool::MIN_SEGMENT;
use super::topic::value_of;

impl DataPlane {
    /// A frame on a link from a publisher.
    pub(super) fn on_publisher_frame(
        &mut self,
        peer: PeerId,
        frame: DataFrame,
        payload: &[u8],
        segments: &[ReceivedSegment],
    ) {
        let max_topics = self.config.limits.max_topics;
        let max_segments = self.config.limits.max_segments;
        let l = self.in_links.get_mut(&peer).expect("caller checked");
        if l.publisher.is_none()
            && !matches!(frame, DataFrame::Hello { .. } | DataFrame::StatsRequest)
        {
            let reason = format!("{} before Hello", frame.name());
            return self.misbehaved(peer, reason, segments);
        }
        match frame {
            DataFrame::Hello { publisher, .. } => {
                if l.publisher.is_some() {
                    return self.misbehaved(peer, "second Hello".into(), segments);
                }
                l.publisher = Some(publisher);
                let terms: Vec<Vec<u8>> = self
                    .taken
                    .iter()
                    .map(|(topic, terms)| terms_record(topic, *terms))
                    .collect();
                for bytes in terms {
                    self.send_to_publisher(peer, bytes);
                }
            }
            DataFrame::StatsRequest => {
                let bytes = encode_data(&DataFrame::Stats(self.stats()), &[]);
                self.send_to_publisher(peer, bytes);
                self.out.push_back(DataOutput::Disconnect(peer));
                self.forget_in_link(peer);
            }
            DataFrame::Topic { id, topic } => {
                let topic = self.names.get(&topic);
                if l.topics.len() >= max_topics
                    || l.topics.contains_key(&id)
                    || !l.bound.insert(topic.clone())
                {
                    return self.misbehaved(
                        peer,
                        format!("topic id {id} or `{topic}` bound twice, or too many topics"),
                        segments,
                    );
                }
                l.topics.insert(id, Bound { topic, last_seq: 0 });
            }
            DataFrame::Segment { id, size } => {
                let s = segments[0];
                let sealed =
                    s.seals.shrink && s.seals.grow && (s.seals.future_write || s.seals.write);
                let bound = self.max_segment();
                if s.size > bound {
                    let reason = format!(
                        "segment {id} of {} bytes, larger than any payload taken here \
                         ({bound} bytes at most)",
                        s.size
                    );
                    return self.oversized(peer, reason, segments);
                }
                let l = self.in_links.get_mut(&peer).expect("caller checked");
                if !sealed
                    || s.size < size
                    || l.segments.len() >= max_segments
                    || l.segments.contains_key(&id)
                {
                    let reason = format!(
                        "segment {id}: seals {:?}, size {} for {size}, or reused id",
                        s.seals, s.size
                    );
                    return self.misbehaved(peer, reason, segments);
                }
                l.segments.insert(id, (s.segment, size));
            }
            DataFrame::Retire { id } => match l.segments.remove(&id) {
                Some((seg, _)) => self.out.push_back(DataOutput::Release(seg)),
                None => self.misbehaved(peer, format!("retire of unknown segment {id}"), segments),
            },
            DataFrame::Inline(header) => {
                let payload = Delivered::Inline(self.payloads.copy_of(payload));
                self.receive(peer, header, payload, segments);
            }
            DataFrame::Fresh { header, len } => {
                let s = segments[0];
                if !(s.seals.shrink && s.seals.grow && s.seals.write) || s.size < len {
                    let reason = format!(
                        "fresh payload of {len} bytes in a segment of {} with seals {:?}",
                        s.size, s.seals
                    );
                    return self.misbehaved(peer, reason, segments);
                }
                // Checked before the driver maps anything: the segment's size, not just the
                // length it claims (a legitimate publisher's fresh segment is its payload).
                if let Some(max) = self.max_payload(peer, header.topic)
                    && s.size > max
                {
                    let reason = format!(
                        "fresh payload in a segment of {} bytes, larger than the \
                         subscription's maximum of {max}",
                        s.size
                    );
                    return self.oversized(peer, reason, segments);
                }
                self.receive(
                    peer,
                    header,
                    Delivered::Fresh {
                        segment: s.segment,
                        len,
                    },
                    segments,
                );
            }
            DataFrame::Pooled {
                header,
                segment,
                offset,
                len,
            } => {
                let Some(&(seg, size)) = l.segments.get(&segment) else {
                    return self.misbehaved(
                        peer,
                        format!("message in unknown segment {segment}"),
                        segments,
                    );
                };
                if offset.checked_add(len).is_none_or(|end| end > size) {
                    let reason =
                        format!("range {offset}+{len} outside segment {segment} of {size} bytes");
                    return self.misbehaved(peer, reason, segments);
                }
                if let Some(max) = self.max_payload(peer, header.topic)
                    && len > max
                {
                    let reason = format!(
                        "pooled payload of {len} bytes, larger than the subscription's maximum \
                         of {max}"
                    );
                    return self.oversized(peer, reason, segments);
                }
                let slot = SlotRef { segment, offset };
                self.receive(
                    peer,
                    header,
                    Delivered::Pooled {
                        segment: seg,
                        offset,
                        len,
                        slot,
                    },
                    segments,
                );
            }
            DataFrame::Last(h) => self.on_last(peer, h),
            DataFrame::Goodbye => {
                // The publisher closes the link (it left, or this node is no longer a
                // subscriber): what came before was delivered; the link's segments go.
                debug!(%peer, "a publisher closed its data link");
                for s in segments {
                    self.out.push_back(DataOutput::Release(s.segment));
                }
                self.forget_in_link(peer);
                self.out.push_back(DataOutput::Disconnect(peer));
            }
            other => {
                let reason = format!("{} from a publisher", other.name());
                self.misbehaved(peer, reason, segments);
            }
        }
    }

    /// The largest payload this node takes on `peer`'s topic `id`: `None` when the topic is
    /// not bound or not taken (the message is then refused or given back unmapped).
    fn max_payload(&self, peer: PeerId, id: u32) -> Option<u64> {
        let bound = self.in_links.get(&peer)?.topics.get(&id)?;
        self.taken.get(&bound.topic).map(|t| t.max_payload)
    }

    /// The largest pool segment a publisher may offer: the size class of the largest payload
    /// any subscription here takes ([`DEFAULT_MAX_PAYLOAD`] with none).
    fn max_segment(&self) -> u64 {
        let max = self
            .taken
            .values()
            .map(|t| t.max_payload)
            .max()
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        max.max(MIN_SEGMENT)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX)
    }

    /// A payload or segment too large for this node: refused unmapped, as a violation.
    fn oversized(&mut self, peer: PeerId, reason: String, segments: &[ReceivedSegment]) {
        self.guard.oversized += 1;
        self.misbehaved(peer, reason, segments);
    }

    /// Checks a message's topic and order, then delivers it (or gives it back).
    pub(super) fn receive(
        &mut self,
        peer: PeerId,
        header: MessageHeader,
        payload: Delivered,
        segments: &[ReceivedSegment],
    ) {
        let queued = self.receive_direct(peer, header, payload, segments, false);
        debug_assert!(queued.is_none(), "handed back only when asked");
    }

    /// [`Self::receive`], the delivery returned instead of queued if `direct` and no output
    /// waits ahead of it (see [`DataPlane::receive_payload_direct`]).
    pub(super) fn receive_direct(
        &mut self,
        peer: PeerId,
        header: MessageHeader,
        payload: Delivered,
        segments: &[ReceivedSegment],
        direct: bool,
    ) -> Option<Delivery> {
        let l = self.in_links.get_mut(&peer).expect("caller checked");
        let Some(bound) = l.topics.get_mut(&header.topic) else {
            let reason = format!("message of unbound topic {}", header.topic);
            self.misbehaved(peer, reason, segments);
            return None;
        };
        if header.seq <= bound.last_seq {
            let (topic, last) = (&bound.topic, bound.last_seq);
            let reason = format!("{topic}: sequence {} after {last}", header.seq);
            self.misbehaved(peer, reason, segments);
            return None;
        }
        bound.last_seq = header.seq;
        // Borrowed: each clone or drop of a topic is an atomic operation (a reference count),
        // a fair share of a small message's cost; the delivery's is the one it needs.
        let topic = &bound.topic;
        let publisher = l.publisher.expect("checked before any message");
        if !self.taken.contains_key(topic) {
            // No longer subscribed: not wanted, so not lost; give it back at once.
            self.give_back(peer, payload);
            return None;
        }
        // One lookup where the stream is known (`value_of` makes two): all but a
        // publisher's first message of the topic.
        let streams = self.streams.entry(publisher).or_default();
        let stream = match streams.get_mut(topic) {
            Some(stream) => stream,
            None => streams.entry(topic.clone()).or_default(),
        };
        if header.seq <= stream.last {
            // An older link's backlog, read after a newer link's messages: the loss reported
            // then covers it. Delivering it now would take the publisher's order backwards.
            stream.stale += 1;
            trace!(%peer, %topic, seq = header.seq, last = stream.last, "stale message discarded");
            self.give_back(peer, payload);
            return None;
        }
        // The first message of a publisher is no loss (what came before was not for us).
        if stream.last > 0 && header.seq > stream.last + 1 {
            let reason = stream.hole_reason(peer);
            let loss = Loss::range(
                topic.arc(),
                publisher,
                stream.last + 1,
                header.seq - 1,
                reason,
            );
            stream.missed += loss.count;
            self.out.push_back(DataOutput::Lost(loss));
        }
        if stream.link != Some(peer) {
            stream.expelled = false;
            stream.link = Some(peer);
        }
        stream.last = header.seq;
        stream.messages += 1;
        let d = Delivery {
            topic: topic.arc(),
            publisher,
            seq: header.seq,
            peer,
            payload,
        };
        if direct && self.out.is_empty() {
            return Some(d);
        }
        self.out.push_back(DataOutput::Deliver(d));
        None
    }

    /// The publisher's last seq of a topic: sent behind a new binding (where the stream
    /// stands), after messages dropped for this node, and before it closes the link. What
    /// this node did not get up to it is lost; a first word of a publisher is where this node
    /// counts from. A topic whose binding never came, or not taken, tells nothing.
    fn on_last(&mut self, peer: PeerId, h: MessageHeader) {
        let l = self.in_links.get(&peer).expect("caller checked");
        let Some(topic) = l.topics.get(&h.topic).map(|b| b.topic.clone()) else {
            return;
        };
        let publisher = l.publisher.expect("checked before any message");
        if !self.taken.contains_key(&topic) {
            return;
        }
        let stream = value_of(self.streams.entry(publisher).or_default(), &topic);
        if h.seq <= stream.last {
            // Nothing missing, or an older link's word, read after a newer link's.
            return;
        }
        // A first word of this publisher is no loss: what came before was not for us.
        if stream.last > 0 {
            let reason = stream.hole_reason(peer);
            let loss = Loss::range(topic.arc(), publisher, stream.last + 1, h.seq, reason);
            stream.missed += loss.count;
            self.out.push_back(DataOutput::Lost(loss));
        }
        stream.expelled = false;
        stream.link = Some(peer);
        stream.last = h.seq;
    }

    /// A message not delivered: its segment or range goes back.
    fn give_back(&mut self, peer: PeerId, payload: Delivered) {
        match payload {
            Delivered::Inline(_) => {}
            Delivered::Fresh { segment, .. } => self.out.push_back(DataOutput::Release(segment)),
            Delivered::Pooled { slot, .. } => {
                let bytes = encode_data(&DataFrame::Release(vec![slot]), &[]);
                self.send_to_publisher(peer, bytes);
            }
        }
    }

    /// The driver's queues dropped `count` messages of `publisher` on `topic`: counted for
    /// `status` (the queue told its subscription).
    pub(super) fn queue_dropped(&mut self, topic: &str, publisher: NodeId, count: u64) {
        if let Some(s) = (self.streams.get_mut(&publisher)).and_then(|t| t.get_mut(topic)) {
            s.dropped += count;
        }
    }

    /// This node was expelled from the group: the next message of each publisher on a new
    /// link tells what went missing meanwhile as [`LossReason::Expelled`](super::LossReason::Expelled).
    pub(crate) fn expelled(&mut self) {
        for s in self.streams.values_mut().flat_map(BTreeMap::values_mut) {
            s.expelled = true;
        }
    }

    /// The subscriptions changed: the payload buffers watched for reuse follow what their
    /// queues hold in all ([`Payloads::expect`](super::buffers::Payloads::expect)).
    pub(super) fn expect_held(&mut self) {
        let held = (self.taken.values()).fold(0usize, |n, t| n.saturating_add(t.depth as usize));
        self.payloads.expect(held);
    }

    /// Forgets what was received of `topic` (no longer taken: a new subscription starts
    /// afresh) or of publishers no longer [`known`](DataPlane::known).
    pub(super) fn prune_streams(&mut self, topic: Option<&str>) {
        let known = &self.known;
        self.streams.retain(|publisher, topics| {
            if let Some(topic) = topic {
                topics.remove(topic);
            }
            known.contains_key(publisher) && !topics.is_empty()
        });
    }

    /// The application dropped received pooled messages: give the ranges back.
    pub(super) fn release_received(&mut self, peer: PeerId, slots: Vec<SlotRef>) {
        if peer == LOCAL {
            for s in slots {
                let key = (SegmentId(s.segment), s.offset);
                if let Some(n) = self.local_held.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.local_held.remove(&key);
                    }
                    self.unref(key.0);
                }
            }
            return;
        }
        if !self.publisher_link_up(peer) {
            return;
        }
        for chunk in slots.chunks(self.config.limits.max_release.max(1)) {
            let bytes = encode_data(&DataFrame::Release(chunk.to_vec()), &[]);
            self.send_to_publisher(peer, bytes);
        }
    }

    /// Sends a record to the publisher on the other end of `peer`, if that link is still up:
    /// a link that went down with records held stays known until they are checked
    /// ([`InLink::down`](super::plane::InLink::down)), but nothing more goes out on it.
    pub(super) fn send_to_publisher(&mut self, peer: PeerId, bytes: Vec<u8>) {
        if self.publisher_link_up(peer) {
            self.out.push_back(DataOutput::Transmit {
                peer,
                bytes,
                attach: None,
            });
        }
    }

    /// Whether records may still go out on the link from the publisher `peer`.
    fn publisher_link_up(&self, peer: PeerId) -> bool {
        self.in_links.get(&peer).is_some_and(|l| !l.down)
    }
}

/// The record telling a publisher the terms this node takes `topic` on: sent on every link
/// from a publisher when the node takes the topic, and to each new one on its `Hello`.
pub(super) fn terms_record(topic: &str, terms: Terms) -> Vec<u8> {
    let frame = DataFrame::Terms {
        topic: topic.to_owned(),
        policy: terms.policy,
        depth: terms.depth,
    };
    encode_data(&frame, &[])
}
