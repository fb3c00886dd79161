//! Feeding [`DataWatch`]'s data plane the ops: commands, publications, links,
//! records, releases.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::data::{
    DataCmd, DataEvt, DataInput, DataOutput, LOCAL, Outbound, Payload, ReceivedSegment, SegmentId,
    TakingDirect,
};
use crate::ids::{NodeId, PeerId};
use crate::wire::{DataFrame, DataStats, SlotRef, decode_data, encode_data};

use super::super::common::{FRESH_BASE, RECEIVED_BASE, check_deadline};
use super::super::data::{
    DataOp, DataWatch, Feeding, InSession, Link, LinkState, PayloadOp, Received, RecordOp, Seg,
    in_peer, input_name, pick, routes, stale_out,
};
use super::super::data_decode::sanitize_data;

impl DataWatch {
    pub(super) fn apply(&mut self, op: &DataOp) {
        match op {
            DataOp::Routes(pairs) => {
                let _ = self.command(DataCmd::Routes(routes(pairs)));
            }
            DataOp::Advertise(t) => {
                self.names.insert(t.get());
                let _ = self.command(DataCmd::Advertise { topic: t.get() });
            }
            DataOp::Withdraw(t) => {
                let _ = self.command(DataCmd::Withdraw { topic: t.get() });
            }
            DataOp::Take { topic, terms } => {
                let topic = topic.get();
                let terms = terms.get();
                let cmd = DataCmd::Take {
                    topic: topic.clone(),
                    terms,
                };
                if self.command(cmd).is_ok() {
                    self.taken.insert(topic);
                }
            }
            DataOp::Leave(t) => {
                self.taken.remove(&t.get());
                let _ = self.command(DataCmd::Leave { topic: t.get() });
            }
            DataOp::Publish {
                topic,
                payload,
                expired,
            } => self.publish(topic.get(), payload, *expired),
            DataOp::Release {
                link,
                picks,
                forged,
            } => self.release(*link, picks, *forged),
            DataOp::Retire { idle_ms } => {
                let idle = Duration::from_millis(u64::from(*idle_ms));
                // Detour (open bug, see
                // `a_dropped_message_does_not_leave_its_retired_segment_offered`): an offer of a
                // pool segment stays queued when the message that needed it is dropped, and
                // goes out after the segment is retired. Nothing is retired while an offer of
                // it may be queued.
                let queued: BTreeSet<SegmentId> = self
                    .outs
                    .values()
                    .flat_map(|s| s.maybe_queued.iter().copied())
                    .collect();
                let mut trial = self.pool.clone();
                if trial
                    .trim(self.clock.now, idle)
                    .iter()
                    .any(|s| queued.contains(s))
                {
                    return;
                }
                for segment in self.pool.trim(self.clock.now, idle) {
                    assert!(
                        !self.live.contains(&segment),
                        "the pool trimmed a busy segment"
                    );
                    self.destroyed.insert(segment);
                    let retired = self.command(DataCmd::Retire { segment });
                    assert_eq!(retired, Ok(()), "retiring a segment is never refused");
                }
            }
            DataOp::Up(link) => self.up(*link),
            DataOp::Down(link) => {
                let peer = match *link {
                    Link::Out(n) => self
                        .nth_out(n, |s| s != LinkState::Closed)
                        .unwrap_or_else(|| stale_out(n)),
                    Link::In(n) => in_peer(n),
                    Link::Stale(n) => stale_out(n),
                };
                self.down(peer);
            }
            DataOp::Record {
                link,
                record,
                segments,
            } => {
                let peer = self.resolve(*link);
                let bytes = match record {
                    RecordOp::Raw(bytes) => bytes.clone(),
                    RecordOp::Frame { frame, payload } => {
                        let mut frame = frame.clone();
                        sanitize_data(&mut frame, &self.config.limits);
                        encode_data(&frame, payload)
                    }
                };
                self.feed_record(peer, bytes, segments);
            }
            DataOp::SubRelease { link, picks } => {
                let up = |s| matches!(s, LinkState::Up | LinkState::Blocked);
                let Some(peer) = self.nth_out(*link, up) else {
                    return;
                };
                let mut held: Vec<_> = self.outs[&peer].held.iter().copied().collect();
                let mut refs: Vec<SlotRef> = pick(&mut held, picks)
                    .into_iter()
                    .map(|(segment, offset)| SlotRef {
                        segment: segment.0,
                        offset,
                    })
                    .collect();
                refs.truncate(self.config.limits.max_release);
                let bytes = encode_data(&DataFrame::Release(refs), &[]);
                self.feed_record(peer, bytes, &[]);
            }
            DataOp::Blocked(link) => {
                let peer = self.resolve(*link);
                if let Some(s) = self.outs.get_mut(&peer)
                    && s.state == LinkState::Up
                {
                    s.state = LinkState::Blocked;
                }
                self.input(DataInput::Blocked(peer));
            }
            DataOp::Writable(link) => {
                let peer = self.resolve(*link);
                if let Some(s) = self.outs.get_mut(&peer)
                    && s.state == LinkState::Blocked
                {
                    s.state = LinkState::Up;
                    s.maybe_queued.clear();
                }
                self.input(DataInput::Writable(peer));
            }
            DataOp::Rejected(link) => {
                let peer = self.resolve(*link);
                let reason = "not a usable memfd".to_owned();
                self.input(DataInput::Rejected { peer, reason });
            }
            DataOp::Time(tick) => {
                let at = self.clock.tick(tick, self.dp.poll_timeout());
                self.dp.handle_timeout(at);
                self.drain();
                check_deadline(self.dp.poll_timeout(), self.clock.now);
            }
        }
    }

    /// The `n`-th (modulo) outgoing link whose state `keep` accepts.
    fn nth_out(&self, n: u8, keep: impl Fn(LinkState) -> bool) -> Option<PeerId> {
        let links: Vec<PeerId> = self
            .outs
            .iter()
            .filter(|(_, s)| keep(s.state))
            .map(|(p, _)| *p)
            .collect();
        (!links.is_empty()).then(|| links[usize::from(n) % links.len()])
    }

    /// The link a record, `Blocked`, `Writable` or `Rejected` is about.
    fn resolve(&self, link: Link) -> PeerId {
        match link {
            Link::Out(n) => self
                .nth_out(n, |s| matches!(s, LinkState::Up | LinkState::Blocked))
                .unwrap_or_else(|| stale_out(n)),
            Link::In(n) => in_peer(n),
            Link::Stale(n) => stale_out(n),
        }
    }

    /// A command: `Err` is fine, but then nothing changed.
    pub(super) fn command(&mut self, cmd: DataCmd) -> Result<(), crate::CmdError> {
        self.command_with(cmd, None)
    }

    /// [`Self::command`], through [`DataPlane::publish_direct`](crate::data::DataPlane::publish_direct)
    /// with `direct` if given: what it takes is checked as the records it stands for, sent
    /// before anything the command output.
    fn command_with(
        &mut self,
        cmd: DataCmd,
        direct: Option<&mut TakingDirect>,
    ) -> Result<(), crate::CmdError> {
        let before = self.snapshot();
        let name = format!("{cmd:?}");
        let result = match direct {
            Some(direct) => {
                let now = self.clock.now;
                let result = match cmd {
                    // Half the inline payloads lent for the publish, as a driver publishing an
                    // application's slice does (`Outbound::Inline`).
                    DataCmd::Publish {
                        topic,
                        payload: Payload::Inline(bytes),
                        expired,
                    } if bytes.len() % 2 == 1 => {
                        let lent = Outbound::Inline(&bytes);
                        self.dp.publish_topic(now, &topic, lent, expired, direct)
                    }
                    cmd => self.dp.publish_direct(now, cmd, direct),
                };
                for (peer, header, payload) in direct.taken.drain(..) {
                    assert!(result.is_ok(), "{name} refused but sent a message");
                    let record = encode_data(&DataFrame::Inline(header), &payload);
                    self.on_transmit(peer, &record, None);
                }
                result
            }
            None => self.dp.handle(self.clock.now, DataInput::Cmd(cmd)),
        };
        if let Err(e) = &result {
            assert!(
                self.dp.poll_output().is_none(),
                "{name} refused ({e}) but queued output"
            );
            assert_eq!(
                before,
                self.snapshot(),
                "{name} refused ({e}) but changed the machine"
            );
        }
        self.drain();
        result
    }

    fn snapshot(&self) -> (DataStats, usize, Option<Instant>, Vec<NodeId>) {
        (
            self.dp.stats(),
            self.dp.segment_refs(),
            self.dp.poll_timeout(),
            self.dp.subscribers().collect(),
        )
    }

    /// Anything but a command: never an error.
    fn input(&mut self, input: DataInput<'_>) {
        let name = input_name(&input);
        let result = self.dp.handle(self.clock.now, input);
        assert_eq!(result, Ok(()), "{name} is no command: handle must not fail");
        self.drain();
    }

    fn publish(&mut self, topic: String, op: &PayloadOp, expired: bool) {
        let mut fresh = |len: u16| {
            self.next_fresh += 1;
            Payload::Fresh {
                segment: SegmentId(FRESH_BASE + self.next_fresh),
                len: u64::from(len),
            }
        };
        let payload = match op {
            PayloadOp::Inline(bytes) => Payload::Inline(bytes.clone()),
            PayloadOp::Fresh(len) => fresh(*len),
            PayloadOp::Pooled { len, offset } => match self.pool.alloc(u64::from(*len)) {
                Some(slot) => {
                    let len = u64::from(*len);
                    self.sizes.insert(slot.segment, slot.size);
                    assert!(
                        !self.live.contains(&slot.segment),
                        "the pool handed out a segment the machine refers to"
                    );
                    Payload::Pooled {
                        segment: slot.segment,
                        size: slot.size,
                        offset: u64::from(*offset) % (slot.size - len + 1),
                        len,
                    }
                }
                None => fresh(*len),
            },
        };
        let seq = self.seqs.get(&topic).copied().unwrap_or(0) + 1;
        let key = (topic.clone(), seq);
        self.published.insert(key.clone(), payload.clone());
        if let Some(seg) = payload.segment() {
            self.live.insert(seg);
        }
        self.local_deliveries = 0;
        let cmd = DataCmd::Publish {
            topic: topic.as_str().into(),
            payload: payload.clone(),
            expired,
        };
        // An inline payload of odd length goes the direct way, which takes some of the
        // messages offered (those of a length not divisible by 3).
        let mut direct = match &payload {
            Payload::Inline(b) if b.len() % 2 == 1 => Some(TakingDirect {
                take: b.len() % 3 != 0,
                taken: Vec::new(),
            }),
            _ => None,
        };
        if self.command_with(cmd, direct.as_mut()).is_ok() {
            self.seqs.insert(topic.clone(), seq);
            if let Payload::Pooled { segment, .. } = payload {
                self.may_queue(segment);
            }
            let local = self.config.self_delivery && self.taken.contains(&topic);
            assert_eq!(
                self.local_deliveries,
                usize::from(local),
                "local deliveries of one message"
            );
        } else {
            // Refused: the segment is the driver's again.
            self.published.remove(&key);
            if let Some(seg) = payload.segment() {
                self.live.remove(&seg);
                if self.pool.contains(seg) {
                    self.pool.free(seg, self.clock.now);
                }
            }
        }
    }

    /// Notes that an offer of `segment` may be queued on the machine's links that are not up.
    fn may_queue(&mut self, segment: SegmentId) {
        for node in self.dp.subscribers().collect::<Vec<_>>() {
            // The machine's link to a node is the latest the harness saw asked for.
            let current = self.outs.iter_mut().rev().find(|(_, s)| s.node == node);
            if let Some((_, s)) = current
                && s.state != LinkState::Up
            {
                s.maybe_queued.insert(segment);
            }
        }
    }

    fn release(&mut self, link: Option<u8>, picks: &[u8], forged: Option<SlotRef>) {
        let (peer, mut slots) = match link {
            None => {
                let slots: Vec<SlotRef> = pick(&mut self.local_holds, picks)
                    .into_iter()
                    .map(|(s, offset)| SlotRef {
                        segment: s.0,
                        offset,
                    })
                    .collect();
                // A made-up slot that names a local delivery releases it.
                if let Some(f) = forged
                    && let Some(i) = self
                        .local_holds
                        .iter()
                        .position(|&(s, o)| (s.0, o) == (f.segment, f.offset))
                {
                    self.local_holds.remove(i);
                }
                (LOCAL, slots)
            }
            Some(n) => {
                let peer = in_peer(n);
                let slots = self
                    .ins
                    .get_mut(&peer)
                    .map(|s| pick(&mut s.delivered, picks))
                    .unwrap_or_default();
                (peer, slots)
            }
        };
        slots.extend(forged);
        let released = self.command(DataCmd::Release { peer, slots });
        assert_eq!(released, Ok(()), "a release is never refused");
    }

    fn up(&mut self, link: Link) {
        let peer = match link {
            Link::Out(n) => match self.nth_out(n, |s| s == LinkState::Connecting) {
                Some(peer) => {
                    let s = self.outs.get_mut(&peer).expect("listed");
                    s.restart();
                    s.state = LinkState::Up;
                    peer
                }
                None => stale_out(n),
            },
            Link::In(n) => {
                let peer = in_peer(n);
                if self.ins.contains_key(&peer) {
                    return;
                }
                self.ins.insert(peer, InSession::default());
                peer
            }
            Link::Stale(n) => stale_out(n),
        };
        self.input(DataInput::PeerUp { peer, cred: None });
    }

    pub(super) fn down(&mut self, peer: PeerId) {
        self.close(peer);
        self.input(DataInput::PeerDown(peer));
    }

    /// The link is gone (down, or closed by the machine): nothing more may go out on it.
    fn close(&mut self, peer: PeerId) {
        self.closed_now = true;
        if let Some(s) = self.outs.get_mut(&peer) {
            s.state = LinkState::Closed;
            s.held.clear();
            s.maybe_queued.clear();
        }
        self.ins.remove(&peer);
    }

    fn feed_record(&mut self, peer: PeerId, bytes: Vec<u8>, segments: &[Seg]) {
        let limits = &self.config.limits;
        let decoded = decode_data(&bytes, limits.max_name, limits.max_release).ok();
        // A subscriber's release: the machine lets go of those ranges (of all of them if it
        // refuses the record, as it then closes the link).
        if let (Some(s), Some((DataFrame::Release(refs), _))) = (self.outs.get_mut(&peer), &decoded)
        {
            for r in refs {
                s.held.remove(&(SegmentId(r.segment), r.offset));
            }
        }
        // A publisher's first hello names the publisher of its link.
        if let (Some(s), Some((DataFrame::Hello { publisher, .. }, _))) =
            (self.ins.get_mut(&peer), &decoded)
            && s.publisher.is_none()
            && segments.is_empty()
        {
            s.publisher = Some(*publisher);
        }
        let handed: Vec<ReceivedSegment> = segments
            .iter()
            .take(3)
            .map(|s| {
                self.next_received += 1;
                let segment = SegmentId(RECEIVED_BASE + self.next_received);
                self.received.insert(segment, Received::Pending(peer));
                ReceivedSegment {
                    segment,
                    size: s.size,
                    seals: s.seals,
                }
            })
            .collect();
        // Only a pool segment's offer from a publisher may be kept for later.
        let offer = handed.len() == 1
            && self.ins.contains_key(&peer)
            && matches!(decoded, Some((DataFrame::Segment { .. }, _)));
        let name = decoded.as_ref().map_or("undecodable", |(f, _)| f.name());
        let feeding = self.feeding.insert(Feeding {
            peer,
            bytes,
            segments: handed.iter().map(|s| s.segment).collect(),
            decoded,
        });
        // An inline message of odd length and no fds comes as its parts (one in two with its
        // payload in the plane's own buffer, as a ring's reader hands it on, half of those
        // with the message handed back; the others borrowed, as a driver that has them apart
        // would): the same as its record in every way.
        let parts = match decode_data(&feeding.bytes, usize::MAX, usize::MAX) {
            Ok((DataFrame::Inline(header), start))
                if handed.is_empty() && feeding.bytes.len() % 2 == 1 =>
            {
                Some((header, start))
            }
            _ => None,
        };
        let result = match parts {
            Some((header, start)) => {
                let payload = feeding.bytes.get(start..).unwrap_or_default();
                if feeding.bytes.len() % 4 == 1 {
                    let mut buf = self.dp.payload_buffer(payload.len());
                    buf.as_mut().copy_from_slice(payload);
                    let now = self.clock.now;
                    if feeding.bytes.len() % 8 == 1 {
                        // Handed back, as the drivers' ring readers take it: delivered before
                        // the outputs are polled.
                        if let Some(d) = self.dp.receive_payload_direct(now, peer, header, buf) {
                            self.on_deliver(d);
                        }
                    } else {
                        self.dp.receive_payload(now, peer, header, buf);
                    }
                } else {
                    self.dp
                        .receive_inline(self.clock.now, peer, header, payload);
                }
                Ok(())
            }
            None => self.dp.handle(
                self.clock.now,
                DataInput::Record {
                    peer,
                    data: &feeding.bytes,
                    segments: &handed,
                },
            ),
        };
        assert_eq!(result, Ok(()), "a record is never an error");
        self.drain();
        let feeding = self.feeding.take().expect("set above");
        // A record that waits for the view to show what its publisher claims is held (and
        // released with its link at the latest).
        if !offer && !self.dp.is_unverified(peer) {
            for seg in feeding.segments {
                assert_ne!(
                    self.received[&seg],
                    Received::Pending(peer),
                    "{seg:?}, handed in with a {name} record on {peer}, neither delivered nor \
                     released"
                );
            }
        }
    }

    pub(super) fn drain(&mut self) {
        while let Some(out) = self.dp.poll_output() {
            match out {
                DataOutput::Connect { peer, addr } => self.on_connect(peer, &addr),
                DataOutput::Transmit {
                    peer,
                    bytes,
                    attach,
                } => self.on_transmit(peer, &bytes, attach),
                DataOutput::Disconnect(peer) => {
                    self.events.push("Disconnect");
                    self.close(peer);
                }
                DataOutput::Deliver(d) => self.on_deliver(d),
                DataOutput::Lost(l) => {
                    self.events.push("Lost");
                    assert!(
                        self.taken.contains(&*l.topic),
                        "a loss of {}, which this node does not take",
                        l.topic
                    );
                    assert!(
                        l.first >= 1 && l.first <= l.last && l.count == l.last - l.first + 1,
                        "a loss that is no range: {l:?}"
                    );
                    let told = self.told.entry((l.publisher, l.topic.to_string()));
                    let told = told.or_insert(0);
                    assert!(
                        l.first > *told,
                        "a loss of {}..={} after {told} was told",
                        l.first,
                        l.last
                    );
                    *told = l.last;
                }
                DataOutput::Release(seg) => self.on_release(seg),
                DataOutput::Evt(e) => match e {
                    DataEvt::Room { topic, room } => {
                        self.events.push("Room");
                        match room {
                            Some(r) => self.room.insert(topic, r),
                            None => self.room.remove(&topic),
                        };
                    }
                    DataEvt::PeerMisbehaved { .. } => {
                        self.events.push("PeerMisbehaved");
                        self.misbehaved += 1;
                    }
                    DataEvt::PeerRefused { .. } => {
                        panic!("a link refused, although the policy allows anyone: {e:?}")
                    }
                    DataEvt::Subscriber { node, up } => {
                        self.events.push("Subscriber");
                        assert!(
                            self.outs.values().any(|s| s.node == node),
                            "Subscriber {{ {node}, {up} }} of a node it never connected to"
                        );
                    }
                },
            }
        }
        for seg in std::mem::take(&mut self.released) {
            if let Some((peer, _)) = self
                .outs
                .iter()
                .find(|(_, s)| s.held.iter().any(|(g, _)| *g == seg))
            {
                panic!("released {seg:?} while the subscriber on {peer} holds a range of it");
            }
        }
    }
}
