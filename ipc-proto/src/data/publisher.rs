//! The publisher side of the [`DataPlane`]: commands, routing, publishing, queues and flow
//! control, and the frames subscribers send back.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tracing::{debug, trace};

use crate::error::CmdError;
use crate::ids::{NodeId, PeerId};
use crate::wire::{DataFrame, MessageHeader, Policy, SlotRef, encode_data, encode_data_into};

use super::io::{DataCmd, DataEvt, DataOutput, DirectSend, Room, check_counters};
use super::options::Terms;
use super::payload::{
    Delivered, Delivery, LOCAL, OUTGOING, Outbound, Payload, ReceivedSegment, SegmentId,
};
use super::plane::{DataPlane, LastPublished, OutLink, OutState, Queued};
use super::subscriber::terms_record;
use super::topic::{Topic, value_of};

impl DataPlane {
    // ---- commands ----

    pub(super) fn on_cmd(&mut self, now: Instant, cmd: DataCmd) -> Result<(), CmdError> {
        match cmd {
            DataCmd::Routes(routes) => {
                self.routes = routes.interned(&mut self.names);
                self.links_epoch += 1;
                self.remember(now);
                self.reroute(now);
                // Topic bindings whose announcement is now in may go out; records held from
                // publishers may now check out.
                self.flush_all(now);
                self.replay_held(now);
            }
            DataCmd::Advertise { topic } => {
                self.check_topic(&topic)?;
                let topic = self.names.get(&topic);
                self.advertised.insert(topic);
                self.reroute(now);
            }
            DataCmd::Withdraw { topic } => {
                self.advertised.remove(topic.as_str());
                self.last_published = None;
                self.reroute(now);
                // A binding still waiting for its announcement goes, with its messages.
                self.flush_all(now);
            }
            DataCmd::Take { topic, terms } => {
                self.check_topic(&topic)?;
                let topic = self.names.get(&topic);
                self.taken.insert(topic.clone(), terms);
                self.expect_held();
                // Tell the publishers we already hear from.
                let bytes = terms_record(&topic, terms);
                let peers: Vec<PeerId> = self
                    .in_links
                    .iter()
                    .filter(|(_, l)| l.publisher.is_some())
                    .map(|(p, _)| *p)
                    .collect();
                for peer in peers {
                    self.send_to_publisher(peer, bytes.clone());
                }
            }
            DataCmd::Leave { topic } => {
                self.taken.remove(topic.as_str());
                self.expect_held();
                self.prune_streams(Some(&topic));
            }
            DataCmd::QueueDropped {
                topic,
                publisher,
                count,
            } => self.queue_dropped(&topic, publisher, count),
            DataCmd::Publish {
                topic,
                payload,
                expired,
            } => self.publish_named(&topic, payload.into(), expired, None)?,
            DataCmd::Release { peer, slots } => self.release_received(peer, slots),
            DataCmd::SetCounters(app) => {
                check_counters(&app)?;
                self.app = app;
            }
            DataCmd::Retire { segment } => {
                let bytes = encode_data(&DataFrame::Retire { id: segment.0 }, &[]);
                let peers: Vec<PeerId> = self
                    .out_links
                    .iter()
                    .filter(|(_, l)| l.offered.contains(&segment))
                    .map(|(p, _)| *p)
                    .collect();
                for peer in peers {
                    let l = self.out_links.get_mut(&peer).expect("listed above");
                    l.offered.remove(&segment);
                    l.queue.push_back(Queued {
                        bind: None,
                        topic: None,
                        bytes: bytes.clone(),
                        attach: None,
                        slot: None,
                        fresh: None,
                    });
                    self.flush(peer);
                }
            }
        }
        Ok(())
    }

    fn check_topic(&self, topic: &str) -> Result<(), CmdError> {
        if topic.is_empty() || topic.len() > self.config.limits.max_name {
            let reason = format!(
                "{} bytes (1 to {} allowed)",
                topic.len(),
                self.config.limits.max_name
            );
            return Err(CmdError::Invalid {
                what: "topic name",
                reason,
            });
        }
        Ok(())
    }

    /// Opens links to subscribers of what this node publishes; closes links nobody needs.
    fn reroute(&mut self, now: Instant) {
        let me = self.config.node;
        let wanted: BTreeSet<NodeId> = self
            .advertised
            .iter()
            .flat_map(|t| self.routes.subscribers_of(t))
            .filter(|n| *n != me)
            .collect();
        let gone: Vec<NodeId> = self
            .by_node
            .keys()
            .filter(|n| !wanted.contains(n))
            .copied()
            .collect();
        for node in gone {
            let peer = self.by_node[&node];
            debug!(%node, "no topic to send there any more: closing the data link");
            let up = matches!(
                self.out_links[&peer].state,
                OutState::Up | OutState::Blocked
            );
            if up {
                // What waited for this node's announcement goes ahead of the goodbye: the
                // announcement reached the hub before the retraction.
                let gated = std::mem::replace(&mut self.gated, false);
                self.flush(peer);
                self.gated = gated;
                // Each topic's last seq: what the subscriber did not get of it (dropped for
                // it, or still queued here and dropped with the link) is told as lost there.
                let l = &self.out_links[&peer];
                let lasts: Vec<MessageHeader> = l
                    .topics
                    .iter()
                    .filter_map(|(topic, t)| {
                        let seq = *self.seq.get(topic)?;
                        Some(MessageHeader { topic: t.id?, seq })
                    })
                    .collect();
                for h in lasts {
                    self.out.push_back(DataOutput::Transmit {
                        peer,
                        bytes: encode_data(&DataFrame::Last(h), &[]),
                        attach: None,
                    });
                }
                self.out.push_back(DataOutput::Transmit {
                    peer,
                    bytes: encode_data(&DataFrame::Goodbye, &[]),
                    attach: None,
                });
            }
            self.drop_out_link(peer);
            self.out.push_back(DataOutput::Disconnect(peer));
        }
        for node in wanted {
            if self.by_node.contains_key(&node) {
                continue;
            }
            let Some(addr) = self.routes.addrs.get(&node).cloned() else {
                continue;
            };
            self.next_out += 1;
            let peer = PeerId(OUTGOING | self.next_out);
            debug!(%node, %addr, %peer, "opening a data link");
            self.by_node.insert(node, peer);
            self.links_epoch += 1;
            self.out_links.insert(
                peer,
                OutLink {
                    node,
                    addr: addr.clone(),
                    state: OutState::Connecting,
                    attempts: 0,
                    topics: BTreeMap::new(),
                    with_terms: 0,
                    last_topic_id: 0,
                    offered: BTreeSet::new(),
                    queue: VecDeque::new(),
                    held: BTreeMap::new(),
                    untold: BTreeSet::new(),
                },
            );
            self.out.push_back(DataOutput::Connect { peer, addr });
        }
        self.tell_positions();
        self.update_blocked(now);
    }

    /// Binds each topic this node has published on the link of each of its subscribers, with
    /// the topic's last seq ([`DataFrame::Last`]) behind the binding, before any message of
    /// it: a subscriber that had messages of this node before (on a link that failed, or
    /// before it was expelled and rejoined) learns what it missed meanwhile now, not at the
    /// next message, which may never come; a new subscriber counts from there.
    pub(super) fn tell_positions(&mut self) {
        for l in self.out_links.values_mut() {
            for topic in &self.advertised {
                let Some(&seq) = self.seq.get(topic) else {
                    continue;
                };
                if l.topics.get(topic).is_some_and(|t| t.id.is_some())
                    || !self.routes.subscribers_of(topic).any(|n| n == l.node)
                {
                    continue;
                }
                let id = l.bind(topic);
                l.queue.push_back(Queued {
                    bind: None,
                    topic: None,
                    bytes: encode_data(&DataFrame::Last(MessageHeader { topic: id, seq }), &[]),
                    attach: None,
                    slot: None,
                    fresh: None,
                });
            }
        }
    }

    /// The links a message of `topic` published now would go out on: one per subscriber this
    /// node has a link to (or is opening one to). For a driver that tells those links'
    /// subscribers a message is being written (a ring's `writing` hint).
    pub fn links_for<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = PeerId> + 'a {
        self.links_to(topic)
    }

    /// [`Self::links_for`], by the topic's name or, quicker, by the [`Topic`] the routes key by.
    fn links_to<'a, Q>(&'a self, topic: &'a Q) -> impl Iterator<Item = PeerId> + 'a
    where
        Topic: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.routes
            .subscribers_of(topic)
            .filter_map(|n| self.by_node.get(&n).copied())
    }

    /// Publishes on the advertised topic `topic` names, offering its inline messages to
    /// `direct` (see [`DataPlane::publish_direct`]).
    pub(super) fn publish_named(
        &mut self,
        topic: &Arc<str>,
        payload: Outbound<'_>,
        expired: bool,
        direct: Option<&mut dyn DirectSend>,
    ) -> Result<(), CmdError> {
        // The last publish's names and links, taken out while this one uses them and put
        // back after: a message pays no reference count for its topic (an atomic operation
        // each), nor a look at the routes while they stay as they were (about 220
        // instructions of a publish to one subscriber, a fifth of those before its push).
        let mut last = match self.last_published.take() {
            Some(last) if Arc::ptr_eq(&last.named, topic) => last,
            other => {
                let Some(interned) = self.advertised.get(&**topic).cloned() else {
                    // The last one stays the last.
                    self.last_published = other;
                    return Err(CmdError::Invalid {
                        what: "topic",
                        reason: format!("`{topic}` is not advertised"),
                    });
                };
                let new = LastPublished {
                    named: Arc::clone(topic),
                    topic: interned,
                    targets: SmallVec::new(),
                    // Never the current epoch: the targets are found below.
                    epoch: self.links_epoch.wrapping_sub(1),
                };
                // Publishes that take turns on two topics reuse one box.
                match other {
                    Some(mut last) => {
                        *last = new;
                        last
                    }
                    None => Box::new(new),
                }
            }
        };
        if last.epoch != self.links_epoch {
            last.targets.clear();
            last.targets.extend(self.links_to(&last.topic));
            last.epoch = self.links_epoch;
        }
        debug_assert!(
            last.targets.iter().copied().eq(self.links_to(&last.topic)),
            "the links of `{topic}` changed without a bump of `links_epoch`"
        );
        self.publish(&last.topic, &last.targets, payload, expired, direct);
        self.last_published = Some(last);
        Ok(())
    }

    /// Publishes on `topic` to the links `targets` (its subscribers', [`Self::links_to`]).
    fn publish(
        &mut self,
        topic: &Topic,
        targets: &[PeerId],
        payload: Outbound<'_>,
        expired: bool,
        mut direct: Option<&mut dyn DirectSend>,
    ) {
        // One lookup (`value_of` makes two): the topic is known but for its first message.
        let seq = match self.seq.get_mut(topic) {
            Some(s) => {
                *s += 1;
                *s
            }
            None => {
                self.seq.insert(topic.clone(), 1);
                1
            }
        };
        let header = MessageHeader { topic: 0, seq };
        let segment = payload.segment();
        // Publishing holds a reference across the fan-out: whoever takes the payload holds
        // one too, and a payload nobody takes is released when this one goes.
        if let Some(seg) = segment {
            *self.refs.entry(seg).or_insert(0) += 1;
        }
        for &peer in targets {
            let direct = direct.as_mut().map(|d| &mut **d as &mut dyn DirectSend);
            self.enqueue(peer, topic, header, &payload, expired, direct);
        }
        if self.config.self_delivery && self.taken.contains_key(topic) {
            let delivered = match &payload {
                // The driver keeps a fresh segment alive while any message maps it.
                Outbound::Payload(Payload::Fresh { segment, len }) => Delivered::Fresh {
                    segment: *segment,
                    len: *len,
                },
                Outbound::Payload(Payload::Pooled {
                    segment,
                    offset,
                    len,
                    ..
                }) => {
                    *self.refs.entry(*segment).or_insert(0) += 1;
                    *self.local_held.entry((*segment, *offset)).or_insert(0) += 1;
                    let slot = SlotRef {
                        segment: segment.0,
                        offset: *offset,
                    };
                    Delivered::Pooled {
                        segment: *segment,
                        offset: *offset,
                        len: *len,
                        slot,
                    }
                }
                inline @ (Outbound::Inline(_) | Outbound::Payload(Payload::Inline(_))) => {
                    Delivered::Inline(self.payloads.copy_of(inline.bytes()))
                }
            };
            let publisher = self.config.node;
            self.out.push_back(DataOutput::Deliver(Delivery {
                topic: topic.arc(),
                publisher,
                seq,
                peer: LOCAL,
                payload: delivered,
            }));
        }
        if let Some(seg) = segment {
            self.unref(seg);
        }
        if let Outbound::Payload(Payload::Inline(bytes)) = payload {
            // Copied into every subscriber's record: the next payload or record may use it.
            self.buffers.put(bytes);
        }
    }

    /// Queues a message for one subscriber, applying its terms; then sends what the socket takes.
    fn enqueue(
        &mut self,
        peer: PeerId,
        topic: &Topic,
        header: MessageHeader,
        payload: &Outbound<'_>,
        expired: bool,
        direct: Option<&mut dyn DirectSend>,
    ) {
        let default = self.config.default_terms;
        let l = self.out_links.get_mut(&peer).expect("targets are links");
        let OutLink {
            topics,
            last_topic_id,
            offered,
            queue,
            held,
            untold,
            state,
            ..
        } = l;
        // The topic's entry on the link: one lookup for the message (made the first time).
        let t = match topics.get_mut(topic) {
            Some(t) => t,
            None => topics.entry(topic.clone()).or_default(),
        };
        let terms = t.terms.unwrap_or(default);
        // The segment of a queued message dropped to make room, unreferenced once this
        // message is through (it cannot be this message's: `publish` holds a reference).
        let mut freed = None;
        if t.in_flight >= terms.depth {
            let drop_new = match terms.policy {
                Policy::Block { .. } => expired,
                Policy::DropNewest => true,
                Policy::DropOldest => {
                    // The oldest queued message of this topic makes room, if there is one.
                    match queue.iter().position(|q| q.topic.as_ref() == Some(topic)) {
                        Some(i) => {
                            let q = queue.remove(i).expect("position is in range");
                            t.in_flight -= 1;
                            t.counters.dropped += 1;
                            untold.insert(topic.clone());
                            freed = q.slot.map(|(s, _)| s).or(q.fresh);
                            false
                        }
                        None => true,
                    }
                }
            };
            if drop_new {
                t.counters.dropped += 1;
                untold.insert(topic.clone());
                trace!(%peer, %topic, seq = header.seq, "dropped for a full subscriber");
                self.flush(peer);
                return;
            }
        }
        let id = t.bind(topic, last_topic_id, queue);
        let header = MessageHeader {
            topic: id,
            ..header
        };
        let (frame, data, attach, slot, fresh) = match payload {
            Outbound::Payload(Payload::Fresh { segment, len }) => (
                DataFrame::Fresh { header, len: *len },
                &[][..],
                Some(*segment),
                None,
                Some(*segment),
            ),
            Outbound::Payload(Payload::Pooled {
                segment,
                size,
                offset,
                len,
            }) => {
                if offered.insert(*segment) {
                    queue.push_back(Queued {
                        bind: None,
                        topic: None,
                        bytes: encode_data(
                            &DataFrame::Segment {
                                id: segment.0,
                                size: *size,
                            },
                            &[],
                        ),
                        attach: Some(*segment),
                        slot: None,
                        fresh: None,
                    });
                }
                let frame = DataFrame::Pooled {
                    header,
                    segment: segment.0,
                    offset: *offset,
                    len: *len,
                };
                (frame, &[][..], None, Some((*segment, *offset)), None)
            }
            inline @ (Outbound::Inline(_) | Outbound::Payload(Payload::Inline(_))) => {
                (DataFrame::Inline(header), inline.bytes(), None, None, None)
            }
        };
        if *state == OutState::Up && queue.is_empty() {
            // Nothing ahead of it (no binding or offer either): out now, as `flush` would
            // send it, without counting it queued (in flight, in the topic's room) only for
            // `flush` to take it out again. What stays counted is what `flush` leaves: a
            // pooled range, held until the subscriber gives it back. A fresh segment's
            // reference is not taken: `publish` holds one across the fan-out, and the
            // kernel has the fd once the driver sends the record.
            t.counters.messages += 1;
            let untold = !untold.is_empty();
            if let (None, Some(direct)) = (payload.segment(), direct)
                && direct.send_inline(peer, header, data)
            {
                self.unref_freed(freed);
                if untold {
                    self.tell_untold(peer);
                }
                return;
            }
            let mut bytes = self.buffers.take_or_new();
            encode_data_into(&frame, data, &mut bytes);
            if let Some(slot) = slot {
                held.insert(slot, topic.clone());
                t.in_flight += 1;
                if matches!(terms.policy, Policy::Block { .. }) {
                    self.room_changes.moved(topic, peer, 1);
                }
                *self.refs.entry(slot.0).or_insert(0) += 1;
            }
            self.out.push_back(DataOutput::Transmit {
                peer,
                bytes,
                attach,
            });
            self.unref_freed(freed);
            if untold {
                self.tell_untold(peer);
            }
            return;
        }
        let mut bytes = self.buffers.take_or_new();
        encode_data_into(&frame, data, &mut bytes);
        queue.push_back(Queued {
            bind: None,
            topic: Some(topic.clone()),
            bytes,
            attach,
            slot,
            fresh,
        });
        t.in_flight += 1;
        if matches!(terms.policy, Policy::Block { .. }) {
            // Only `Block` terms count in a room.
            self.room_changes.moved(topic, peer, 1);
        }
        if let Some(seg) = payload.segment() {
            *self.refs.entry(seg).or_insert(0) += 1;
        }
        self.unref_freed(freed);
        self.flush(peer);
    }

    /// [`Self::unref`] of a dropped message's segment, if it had one.
    fn unref_freed(&mut self, freed: Option<SegmentId>) {
        if let Some(seg) = freed {
            self.unref(seg);
        }
    }

    /// Takes in who the routes show: a node's identity and the topics it announced are
    /// remembered while it is shown and for
    /// [`DataConfig::verify_timeout`](super::DataConfig::verify_timeout) after.
    fn remember(&mut self, now: Instant) {
        for (id, n) in &self.routes.nodes {
            match self.known.get_mut(id) {
                Some((k, gone)) if k.uid == n.uid && k.pid == n.pid => {
                    k.publishes.extend(n.publishes.iter().cloned());
                    *gone = None;
                }
                _ => {
                    self.known.insert(*id, (n.clone(), None));
                }
            }
        }
        let timeout = self.config.verify_timeout;
        let shown = &self.routes.nodes;
        self.known.retain(|id, (_, gone)| {
            if !shown.contains_key(id) {
                gone.get_or_insert(now);
            }
            gone.is_none_or(|t| t + timeout > now)
        });
        self.prune_streams(None);
    }

    /// This node is leaving: topic bindings go out without waiting for its announcements
    /// (they were sent to the hub before its goodbye, so subscribers will see them), and
    /// what is queued behind them with them.
    pub(crate) fn ungate(&mut self, now: Instant) {
        self.gated = false;
        self.flush_all(now);
    }

    /// Flushes every link (see [`Self::flush`]), then recomputes the rooms.
    fn flush_all(&mut self, now: Instant) {
        let peers: Vec<PeerId> = self.out_links.keys().copied().collect();
        for peer in peers {
            self.flush(peer);
        }
        self.update_blocked(now);
    }

    /// Hands queued records to the driver while the link is up and its socket has room; a
    /// topic binding waits until this node's view shows its announcement (subscribers check
    /// bindings against their views).
    pub(super) fn flush(&mut self, peer: PeerId) {
        let Some(l) = self.out_links.get_mut(&peer) else {
            return;
        };
        if l.state != OutState::Up {
            return;
        }
        let me = self.config.node;
        let mut unref = Vec::new();
        while let Some(q) = l.queue.front() {
            // A topic withdrawn meanwhile goes too: its announcement is on its way to the hub
            // ahead of the retraction (a publisher that published, then dropped its topic).
            if self.gated
                && let Some(t) = &q.bind
                && self.advertised.contains(t)
                && !self.routes.announces(me, t)
            {
                trace!(%peer, topic = %t, "binding waits for this node's announcement");
                break;
            }
            let q = l.queue.pop_front().expect("front is some");
            if let Some(topic) = &q.topic {
                // The subscriber holds a pooled range until it releases it; anything else
                // is in flight no more.
                let terms = l.dequeued(topic, q.slot, self.config.default_terms);
                if q.slot.is_none() && matches!(terms.policy, Policy::Block { .. }) {
                    self.room_changes.moved(topic, peer, -1);
                }
            }
            if let Some(seg) = q.fresh {
                unref.push(seg);
            }
            self.out.push_back(DataOutput::Transmit {
                peer,
                bytes: q.bytes,
                attach: q.attach,
            });
        }
        self.tell_untold(peer);
        // The fd of a fresh payload is in the kernel's hands once transmitted... but only after
        // the driver has sent it: the driver keeps the segment open until its send completes,
        // so releasing our reference here is safe.
        for seg in unref {
            self.unref(seg);
        }
    }

    /// What was dropped for the subscriber at the end of a burst: tells it now, while nothing
    /// else is queued for it (a queued message of the topic tells it on arrival).
    fn tell_untold(&mut self, peer: PeerId) {
        let Some(l) = self.out_links.get_mut(&peer) else {
            return;
        };
        if l.queue.is_empty() && !l.untold.is_empty() {
            for topic in std::mem::take(&mut l.untold) {
                let id = l.topics.get(&topic).and_then(|t| t.id);
                let (Some(id), Some(&seq)) = (id, self.seq.get(&topic)) else {
                    // Never bound here: the subscriber has nothing to count from.
                    continue;
                };
                let last = DataFrame::Last(MessageHeader { topic: id, seq });
                self.out.push_back(DataOutput::Transmit {
                    peer,
                    bytes: encode_data(&last, &[]),
                    attach: None,
                });
            }
        }
    }

    pub(super) fn unref(&mut self, seg: SegmentId) {
        if let Some(n) = self.refs.get_mut(&seg) {
            *n -= 1;
            if *n == 0 {
                self.refs.remove(&seg);
                self.out.push_back(DataOutput::Release(seg));
            }
        }
    }

    /// Recomputes each topic's room, reporting changes.
    pub(super) fn update_blocked(&mut self, _now: Instant) {
        self.room_changes.clear();
        let topics: BTreeSet<Topic> = self
            .advertised
            .iter()
            .chain(self.room.keys())
            .cloned()
            .collect();
        for topic in topics {
            self.update_room(&topic);
        }
    }

    /// Recomputes the rooms that may have changed since the last input (`RoomChanges`):
    /// where a `Block` subscriber's messages in flight changed, by a publish or by a flush (of
    /// any topic: `fuzz/corpus/data_ops/regression-room-of-another-topic-after-a-publish`),
    /// and did not come back to where they were (a message queued and sent at once), or where
    /// a link was reset. Called once at the end of each input, so an input costs that, not a
    /// walk over every link and topic, and a message sent at once or that no `Block`
    /// subscriber takes costs no room at all; what changes rooms wholesale (a link gone, new
    /// terms, new routes) calls `update_blocked` instead.
    pub(super) fn settle_rooms(&mut self) {
        // Mostly none (a message sent at once, or received): taking and giving back the list
        // of nothing costs a few dozen instructions of a small message's path.
        if !self.room_changes.is_quiet() {
            let mut touched = self.room_changes.take();
            for t in touched.drain(..) {
                self.update_room(&t);
            }
            self.room_changes.give_back(touched);
        }
        // Every test drives this: the rooms must be what a walk over everything gives.
        #[cfg(debug_assertions)]
        if let Some((t, kept, walked)) = self.stale_room() {
            panic!("the room of `{t}` after an input: {kept:?}, a walk gives {walked:?}");
        }
    }

    /// The first topic whose kept room is not what a walk over every link gives, with both:
    /// the bookkeeping of `update_room` checked against its definition (by the debug build
    /// and by the fuzzing harness, after every input).
    #[cfg(any(debug_assertions, feature = "arbitrary"))]
    pub(crate) fn stale_room(&self) -> Option<(Topic, Option<Room>, Option<Room>)> {
        self.advertised
            .iter()
            .chain(self.room.keys())
            .find_map(|t| {
                let kept = self.room.get(t).copied();
                let walked = self.room_of(t).filter(|_| self.advertised.contains(t));
                (kept != walked).then(|| (t.clone(), kept, walked))
            })
    }

    /// Recomputes the room of one topic, reporting a change: the fewest messages any of its
    /// `Block` subscribers has room for, with the longest of their timeouts; none for a
    /// topic this node does not announce or no `Block` subscriber takes.
    fn update_room(&mut self, topic: &Topic) {
        let room = if self.advertised.contains(topic) {
            self.room_of(topic)
        } else {
            None
        };
        if self.room.get(topic) == room.as_ref() {
            return;
        }
        match room {
            Some(r) => self.room.insert(topic.clone(), r),
            None => self.room.remove(topic),
        };
        self.out.push_back(DataOutput::Evt(DataEvt::Room {
            topic: topic.to_string(),
            room,
        }));
    }

    fn room_of(&self, topic: &Topic) -> Option<Room> {
        let default = self.config.default_terms;
        let subscribers = self.routes.subscribers.get(topic)?;
        let mut room: Option<Room> = None;
        for l in self.out_links.values() {
            if !subscribers.contains(&l.node) {
                continue;
            }
            let t = l.topics.get(topic);
            let terms = t.and_then(|t| t.terms).unwrap_or(default);
            if let Policy::Block { timeout_ms } = terms.policy {
                let left = terms.depth.saturating_sub(t.map_or(0, |t| t.in_flight));
                let timeout = Duration::from_millis(u64::from(timeout_ms));
                let r = room.get_or_insert(Room {
                    messages: left,
                    timeout,
                });
                r.messages = r.messages.min(left);
                r.timeout = r.timeout.max(timeout);
            }
        }
        room
    }

    /// A frame on a link to a subscriber.
    pub(super) fn on_subscriber_frame(
        &mut self,
        now: Instant,
        peer: PeerId,
        frame: DataFrame,
        segments: &[ReceivedSegment],
    ) {
        match frame {
            DataFrame::Terms {
                topic,
                policy,
                depth,
            } => {
                let l = self.out_links.get_mut(&peer).expect("caller checked");
                let stated = (l.topics.get(topic.as_str())).is_some_and(|t| t.terms.is_some());
                if !stated && l.with_terms >= self.config.limits.max_topics {
                    return self.misbehaved(peer, "too many terms".into(), segments);
                }
                let t = value_of(&mut l.topics, &self.names.get(&topic));
                l.with_terms += usize::from(!stated);
                t.terms = Some(Terms {
                    policy,
                    depth: depth.max(1),
                    // The subscriber checks its own maximum.
                    max_payload: u64::MAX,
                });
                self.update_blocked(now);
            }
            DataFrame::Release(refs) => {
                for r in refs {
                    let key = (SegmentId(r.segment), r.offset);
                    let l = self.out_links.get_mut(&peer).expect("caller checked");
                    let Some(topic) = l.held.remove(&key) else {
                        let reason = format!("release of a range it does not hold: {r:?}");
                        return self.misbehaved(peer, reason, segments);
                    };
                    (l.topics.get_mut(&topic))
                        .expect("held messages are in flight")
                        .in_flight -= 1;
                    self.unref(key.0);
                }
                self.update_blocked(now);
            }
            DataFrame::Goodbye => {
                self.reset_out_link(peer);
                self.out.push_back(DataOutput::Disconnect(peer));
                if let Some(l) = self.out_links.get_mut(&peer) {
                    l.state = OutState::Retry(now + Duration::from_secs(1));
                    self.arm(now + Duration::from_secs(1));
                }
            }
            other => {
                let reason = format!("{} from a subscriber", other.name());
                self.misbehaved(peer, reason, segments);
            }
        }
    }
}
