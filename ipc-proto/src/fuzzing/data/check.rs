//! What comes out of [`DataWatch`]'s data plane, checked against what a
//! correct driver and peers accept; the checks after each op and at the end.

use std::time::Duration;

use crate::data::{DataCmd, Delivered, Delivery, LOCAL, OUTGOING, Payload, Routes, SegmentId};
use crate::ids::{NodeId, PeerId};
use crate::wire::{DataFrame, SlotRef, decode_data};

use super::super::common::FRESH_BASE;
use super::super::data::{DataWatch, LinkState, OutSession, Received, counters};

impl DataWatch {
    pub(super) fn on_connect(&mut self, peer: PeerId, addr: &str) {
        self.events.push("Connect");
        assert_ne!(
            peer.0 & OUTGOING,
            0,
            "Connect for {peer}, not an outgoing id"
        );
        let node = addr
            .strip_prefix("@d")
            .and_then(|n| n.parse().ok())
            .and_then(NodeId::new)
            .unwrap_or_else(|| panic!("Connect to {addr}, no node's data address"));
        assert_ne!(node, self.config.node, "a data link to itself");
        let s = self
            .outs
            .entry(peer)
            .or_insert_with(|| OutSession::new(node));
        assert_eq!(s.node, node, "link {peer} reused for another node");
        assert_eq!(
            s.state,
            LinkState::Closed,
            "Connect for {peer}, which is not closed"
        );
        s.state = LinkState::Connecting;
    }

    pub(super) fn on_transmit(&mut self, peer: PeerId, bytes: &[u8], attach: Option<SegmentId>) {
        let limits = &self.config.limits;
        let (frame, start) = decode_data(bytes, limits.max_name, limits.max_release)
            .unwrap_or_else(|e| panic!("a transmit to {peer} does not decode: {e} ({bytes:02x?})"));
        self.events.push(frame.name());
        let fd = matches!(frame, DataFrame::Fresh { .. } | DataFrame::Segment { .. });
        assert_eq!(
            attach.is_some(),
            fd,
            "{} to {peer} with attach {attach:?}",
            frame.name()
        );
        if let Some(seg) = attach {
            assert!(
                !self.received.contains_key(&seg),
                "attaches {seg:?}, a segment it received"
            );
            assert!(
                seg.0 >= FRESH_BASE || self.sizes.contains_key(&seg),
                "attaches {seg:?}, which the harness never published"
            );
            assert!(
                !self.destroyed.contains(&seg),
                "attaches {seg:?}, a pool segment retired (destroyed by the driver) before"
            );
        }
        if peer.0 & OUTGOING == 0 {
            assert!(
                self.ins.contains_key(&peer),
                "{} to {peer}, a link from a publisher that is not up",
                frame.name()
            );
            assert!(
                matches!(
                    frame,
                    DataFrame::Terms { .. } | DataFrame::Release(_) | DataFrame::Stats(_)
                ),
                "{} to a publisher",
                frame.name()
            );
            return;
        }
        self.sent_to_subscriber(peer, frame, &bytes[start..], attach);
    }

    /// Checks a record to a subscriber the way a correct subscriber reads it.
    fn sent_to_subscriber(
        &mut self,
        peer: PeerId,
        frame: DataFrame,
        payload: &[u8],
        attach: Option<SegmentId>,
    ) {
        let name = frame.name();
        let Some(s) = self.outs.get_mut(&peer) else {
            panic!("{name} to {peer}, a link it never asked for");
        };
        assert!(
            matches!(s.state, LinkState::Up | LinkState::Blocked),
            "{name} to {peer}, which is {:?}",
            s.state
        );
        assert!(!s.goodbye, "{name} to {peer} after its Goodbye");
        if !s.hello {
            assert_eq!(
                frame,
                DataFrame::Hello {
                    publisher: self.config.node,
                    rings: self.config.rings,
                },
                "the first record to a subscriber"
            );
            s.hello = true;
            return;
        }
        match frame {
            DataFrame::Topic { id, topic } => {
                assert!(
                    !s.topics.values().any(|t| *t == topic),
                    "topic `{topic}` bound twice on {peer}"
                );
                assert!(
                    s.topics.insert(id, topic).is_none(),
                    "topic id {id} bound twice on {peer}"
                );
            }
            DataFrame::Inline(header)
            | DataFrame::Fresh { header, .. }
            | DataFrame::Pooled { header, .. } => {
                let Some(topic) = s.topics.get(&header.topic).cloned() else {
                    panic!("{name} of unbound topic id {} on {peer}", header.topic);
                };
                let last = s.last_seq.insert(topic.clone(), header.seq);
                assert!(
                    last.is_none_or(|l| l < header.seq),
                    "{topic}: message {} after {last:?} on {peer}",
                    header.seq
                );
                let Some(sent) = self.published.get(&(topic.clone(), header.seq)) else {
                    panic!("{topic}: message {} was never published", header.seq);
                };
                match (&frame, sent) {
                    (DataFrame::Inline(_), Payload::Inline(p)) => {
                        assert_eq!(payload, &p[..], "{topic} #{}: the payload", header.seq);
                    }
                    (DataFrame::Fresh { len, .. }, Payload::Fresh { segment, len: l }) => {
                        assert_eq!((attach, len), (Some(*segment), l), "{topic}: fresh");
                        assert!(self.live.contains(segment), "a released fresh segment sent");
                    }
                    (
                        DataFrame::Pooled {
                            segment,
                            offset,
                            len,
                            ..
                        },
                        Payload::Pooled {
                            segment: seg,
                            offset: o,
                            len: l,
                            ..
                        },
                    ) => {
                        assert_eq!((*segment, offset, len), (seg.0, o, l), "{topic}: pooled");
                        let Some(&size) = s.offered.get(segment) else {
                            panic!("a pooled message in segment {segment}, not offered on {peer}");
                        };
                        assert!(
                            offset.checked_add(*len).is_some_and(|end| end <= size),
                            "range {offset}+{len} outside the {size} bytes offered"
                        );
                        assert!(
                            self.live.contains(seg),
                            "a pooled message in {seg:?}, which it released"
                        );
                        assert!(
                            s.held.insert((*seg, *offset)),
                            "{seg:?} at {offset} sent twice to {peer}"
                        );
                    }
                    (f, p) => panic!("{p:?} sent as {f:?}"),
                }
            }
            DataFrame::Segment { id, size } => {
                assert_eq!(attach, Some(SegmentId(id)), "a segment offer's fd");
                assert_eq!(
                    self.sizes.get(&SegmentId(id)),
                    Some(&size),
                    "segment {id}'s size"
                );
                assert!(
                    s.offered.insert(id, size).is_none(),
                    "segment {id} offered twice on {peer}"
                );
            }
            DataFrame::Retire { id } => {
                assert!(
                    s.offered.remove(&id).is_some(),
                    "retire of segment {id}, not offered on {peer}"
                );
            }
            DataFrame::Goodbye => s.goodbye = true,
            // Before the goodbye: the topic's last seq (of a binding sent or not).
            DataFrame::Last(h) => assert!(
                h.seq >= 1 && self.published.keys().any(|(_, seq)| *seq == h.seq),
                "Last {} on {peer}, never published",
                h.seq
            ),
            other => panic!("{} to a subscriber", other.name()),
        }
    }

    pub(super) fn on_deliver(&mut self, d: Delivery) {
        self.events.push("Deliver");
        let topic = d.topic.to_string();
        assert!(
            self.taken.contains(&topic),
            "delivered {topic}, which this node does not take"
        );
        if d.peer == LOCAL {
            assert!(self.config.self_delivery, "a local delivery, not enabled");
            assert_eq!(
                d.publisher, self.config.node,
                "a local delivery's publisher"
            );
            self.local_deliveries += 1;
            let Some(sent) = self.published.get(&(topic.clone(), d.seq)) else {
                panic!("{topic}: local delivery of {}, never published", d.seq);
            };
            match (&d.payload, sent) {
                (Delivered::Inline(b), Payload::Inline(p)) => assert_eq!(b[..], p[..]),
                (Delivered::Fresh { segment, len }, Payload::Fresh { segment: s, len: l }) => {
                    assert_eq!((segment, len), (s, l));
                }
                (
                    Delivered::Pooled {
                        segment,
                        offset,
                        len,
                        slot,
                    },
                    Payload::Pooled {
                        segment: s,
                        offset: o,
                        len: l,
                        ..
                    },
                ) => {
                    assert_eq!((segment, offset, len), (s, o, l));
                    assert_eq!((slot.segment, slot.offset), (s.0, *o), "its slot");
                    self.local_holds.push((*s, *o));
                }
                (got, p) => panic!("{p:?} delivered locally as {got:?}"),
            }
            return;
        }
        let Some(f) = &self.feeding else {
            panic!("a delivery from {} with no record", d.peer);
        };
        assert_eq!(
            d.peer, f.peer,
            "a delivery from another link than the record's"
        );
        let Some(s) = self.ins.get_mut(&d.peer) else {
            panic!(
                "a delivery from {}, not an open link from a publisher",
                d.peer
            );
        };
        assert_eq!(
            Some(d.publisher),
            s.publisher,
            "the publisher its Hello named"
        );
        let last = s.last_seq.insert(topic.clone(), d.seq);
        assert!(
            last.is_none_or(|l| l < d.seq),
            "{topic}: delivered {} after {last:?}",
            d.seq
        );
        // After every message and loss of its publisher told before it.
        let told = self.told.entry((d.publisher, topic.clone())).or_insert(0);
        assert!(
            *told < d.seq,
            "{topic}: delivered {} after {told} was told",
            d.seq
        );
        *told = d.seq;
        let Some((frame, start)) = &f.decoded else {
            panic!("a delivery from an undecodable record");
        };
        match (d.payload, frame) {
            (Delivered::Inline(b), DataFrame::Inline(h)) if h.seq == d.seq => {
                assert_eq!(b[..], f.bytes[*start..], "an inline payload");
            }
            (Delivered::Fresh { segment, len }, DataFrame::Fresh { header, len: l })
                if header.seq == d.seq && len == *l =>
            {
                assert_eq!(f.segments, [segment], "a fresh delivery's segment");
                let r = self.received.get_mut(&segment).expect("handed in");
                assert_eq!(*r, Received::Pending(d.peer), "{segment:?} delivered");
                *r = Received::Delivered;
            }
            (
                Delivered::Pooled {
                    segment,
                    offset,
                    len,
                    slot,
                },
                DataFrame::Pooled {
                    header,
                    segment: wire,
                    offset: o,
                    len: l,
                },
            ) if header.seq == d.seq => {
                assert_eq!(
                    (slot.segment, slot.offset, offset, len),
                    (*wire, *o, *o, *l)
                );
                assert_eq!(
                    self.received.get(&segment),
                    Some(&Received::Pending(d.peer)),
                    "a pooled delivery in {segment:?}: not a segment its link offered and holds"
                );
                s.delivered.push(slot);
            }
            (got, frame) => panic!("{frame:?} delivered as {got:?}"),
        }
    }

    pub(super) fn on_release(&mut self, seg: SegmentId) {
        self.events.push("Release");
        if let Some(r) = self.received.get_mut(&seg) {
            match *r {
                Received::Pending(_) => *r = Received::Released,
                Received::Delivered => panic!("released {seg:?}, a fresh segment it delivered"),
                Received::Released => panic!("released {seg:?} twice"),
            }
            return;
        }
        assert!(
            self.live.remove(&seg),
            "released {seg:?}, which it does not hold (never published, or released already)"
        );
        assert!(
            !self.local_holds.iter().any(|(g, _)| *g == seg),
            "released {seg:?} while a local delivery in it is not released"
        );
        // Whether a subscriber still holds a range of it is checked once the outputs are
        // drained: a link the machine drops releases what it held before its `Disconnect`.
        self.released.push(seg);
        if self.pool.contains(seg) {
            assert!(self.pool.free(seg, self.clock.now), "a pool segment");
        }
    }

    pub(super) fn check(&mut self) {
        let _ = self.dp.poll_timeout();
        for (seg, r) in &self.received {
            if let Received::Pending(peer) = r {
                // A publisher's link that went down while its records waited for the view
                // keeps them until the view vouches for them or their deadline passes.
                assert!(
                    self.ins.contains_key(peer) || self.dp.is_unverified(*peer),
                    "{seg:?}, handed in on {peer}, neither delivered nor released when the \
                     link went"
                );
            }
        }
        // Each segment published and not released is referenced by its ranges held (remotely
        // and locally), and by at most one queued message per link that is not up.
        let refs = self.dp.segment_refs();
        let links = self.dp.subscribers().count();
        let up = self
            .outs
            .values()
            .filter(|s| s.state == LinkState::Up)
            .count();
        assert!(up <= links, "{up} links up, {links} held");
        let queues = links - up;
        let (mut lower, mut upper) = (0, 0);
        for seg in &self.live {
            let held = self
                .outs
                .values()
                .map(|s| s.held.iter().filter(|(g, _)| g == seg).count())
                .sum::<usize>()
                + self.local_holds.iter().filter(|(g, _)| g == seg).count();
            lower += held.max(1);
            upper += held + queues;
        }
        assert!(
            (lower..=upper).contains(&refs),
            "segment_refs() is {refs}, expected {lower}..={upper} for {:?}",
            self.live
        );
        let pooled = self.live.iter().filter(|s| self.pool.contains(**s)).count();
        assert_eq!(self.pool.busy(), pooled, "pool segments in use");
        let stats = self.dp.stats();
        assert_eq!(
            stats.rejected, self.misbehaved,
            "rejected counts the PeerMisbehaved events"
        );
        assert!(
            stats.guard.oversized <= stats.rejected,
            "an oversized payload is a violation too"
        );
        let now = counters(&stats);
        if !self.closed_now {
            for (key, before) in &self.counters {
                let Some(after) = now.get(key) else {
                    // What was received of a topic goes when it is no longer taken (a new
                    // subscription starts afresh).
                    let (received, topic, _) = key;
                    assert!(
                        *received && !self.taken.contains(topic),
                        "the counters of {key:?} vanished with no link gone"
                    );
                    continue;
                };
                assert!(
                    before.iter().zip(after).all(|(b, a)| a >= b),
                    "the counters of {key:?} went from {before:?} to {after:?}"
                );
            }
        }
        self.counters = now;
        for topic in self.names.iter().chain(self.room.keys()) {
            assert_eq!(
                self.dp.room(topic),
                self.room.get(topic).copied(),
                "the room of {topic:?}, and its last Room event"
            );
        }
        if let Some((topic, kept, walked)) = self.dp.stale_room() {
            panic!("the room of {topic:?} is {kept:?}, a walk over the links gives {walked:?}");
        }
    }

    /// Every link goes, every delivery is released: nothing may be left.
    pub(super) fn teardown(&mut self) {
        self.closed_now = false;
        let routed = self.command(DataCmd::Routes(Routes::default()));
        assert_eq!(routed, Ok(()), "routes are never refused");
        let ins: Vec<PeerId> = self.ins.keys().copied().collect();
        for peer in ins {
            self.down(peer);
        }
        // Records held from links that went down wait for their deadline: let it pass.
        let end = self.clock.now + self.config.verify_timeout + Duration::from_secs(1);
        while self.dp.has_held() {
            match self.dp.poll_timeout() {
                Some(at) if at <= end => {
                    self.clock.now = self.clock.now.max(at);
                    self.dp.handle_timeout(self.clock.now);
                    self.drain();
                }
                _ => break,
            }
        }
        assert!(!self.dp.has_held(), "records held past their deadline");
        let slots: Vec<SlotRef> = self
            .local_holds
            .drain(..)
            .map(|(s, offset)| SlotRef {
                segment: s.0,
                offset,
            })
            .collect();
        let released = self.command(DataCmd::Release { peer: LOCAL, slots });
        assert_eq!(released, Ok(()), "a release is never refused");
        self.check();
        assert_eq!(self.dp.subscribers().count(), 0, "links to nobody's routes");
        assert_eq!(
            self.dp.segment_refs(),
            0,
            "references left with every link gone and every delivery released"
        );
        assert!(self.live.is_empty(), "never released: {:?}", self.live);
        assert_eq!(self.pool.busy(), 0, "pool segments never given back");
    }
}
