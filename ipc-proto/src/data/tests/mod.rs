//! A publisher and a subscriber data plane back to back; segments are handles with pretend
//! seals, as a driver would report them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::ids::{Credentials, NodeId, PeerId};
use crate::machine::AccessPolicy;
use crate::topology::{NodeInfo, NodeView, View};
use crate::wire::{DataFrame, MessageHeader, Policy, SlotRef, decode_data, encode_data};

const P: u64 = 1;
const S: u64 = 2;
/// The id the subscriber's driver gives the accepted link.
const IN: PeerId = PeerId(7);
/// The group's uid.
const UID: u32 = 1000;

fn id(n: u64) -> NodeId {
    NodeId::new(n).expect("non-zero")
}

/// The kernel's credentials of node `n`'s process, as the hub saw them.
fn cred_of(n: u64) -> Credentials {
    Credentials {
        pid: 100 + n as u32,
        uid: UID,
        gid: UID,
    }
}

/// A data plane of node `n` in a group of [`UID`].
fn config(n: u64) -> DataConfig {
    let mut c = DataConfig::new(id(n));
    c.access = AccessPolicy::same_uid(UID);
    c
}

/// A view where `subscribers` subscribe to `topic`, which [`P`] announced.
fn view(topic: &str, subscribers: &[u64]) -> View {
    view_with(topic, subscribers, true, true)
}

/// The same, with [`P`]'s announcement of `topic` in or not, and [`P`] in or not.
fn view_with(topic: &str, subscribers: &[u64], announced: bool, with_p: bool) -> View {
    let mut v = View::default();
    for &n in &[P, S] {
        if n == P && !with_p {
            continue;
        }
        let c = cred_of(n);
        let info = NodeInfo {
            id: id(n),
            name: format!("n{n}"),
            data_addr: format!("@d{n}"),
            pid: c.pid,
            uid: c.uid,
        };
        let seq = |k: u64| crate::Seq::new(crate::Epoch::new(1, 0), k as u32);
        let mut nv = NodeView {
            info,
            joined: seq(n),
            publishes: BTreeMap::new(),
            subscribes: BTreeMap::new(),
        };
        if n == P && announced {
            nv.publishes
                .insert(topic.into(), ("application/octet-stream".into(), seq(20)));
        }
        if subscribers.contains(&n) {
            nv.subscribes.insert(
                topic.into(),
                crate::Seq::new(crate::Epoch::new(1, 0), 10 + n as u32),
            );
        }
        v.insert_node(nv);
    }
    v
}

struct Pair {
    now: Instant,
    p: DataPlane,
    s: DataPlane,
    /// The publisher's link id for the subscriber, once asked for.
    out: Option<PeerId>,
    /// Segments the publisher's driver created: handle -> (size, sealed for fresh?).
    segs: BTreeMap<SegmentId, (u64, bool)>,
    /// Received segment handles on the subscriber: its handle -> the publisher's handle.
    recv: BTreeMap<SegmentId, SegmentId>,
    next_recv: u64,
    delivered: Vec<Delivery>,
    lost: Vec<Loss>,
    released_p: Vec<SegmentId>,
    released_s: Vec<SegmentId>,
    room: BTreeMap<String, Option<Room>>,
    /// Records the subscriber's driver holds back (its socket is "full").
    hold_s: bool,
    held: Vec<(Vec<u8>, Option<SegmentId>)>,
    misbehaved: Vec<String>,
    /// Links refused, by either side.
    refused: Vec<String>,
    /// Links either side closed.
    disconnected: Vec<PeerId>,
    /// The credentials each side reads from the link: the publisher's of the subscriber, the
    /// subscriber's of the publisher.
    p_sees: Option<Credentials>,
    s_sees: Option<Credentials>,
    /// The subscriber takes inline messages as their parts
    /// ([`DataPlane::receive_inline`]), as a driver that has them apart hands them on; with
    /// `inline_buffers`, their payloads written into its own buffers
    /// ([`DataPlane::receive_payload`]), as a ring's reader does, whose addresses it keeps
    /// in `buffers`.
    inline_parts: bool,
    inline_buffers: bool,
    buffers: Vec<usize>,
}

/// How a [`Pair`] starts, where it differs from two nodes that agree.
struct Setup {
    /// The publisher's view shows its announcement.
    p_announced: bool,
    /// The subscriber's view shows the publisher's announcement, and the publisher.
    s_announced: bool,
    s_knows_p: bool,
    p_sees: Option<Credentials>,
    s_sees: Option<Credentials>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            p_announced: true,
            s_announced: true,
            s_knows_p: true,
            p_sees: Some(cred_of(S)),
            s_sees: Some(cred_of(P)),
        }
    }
}

impl Pair {
    fn new(topic: &str, terms: Terms, self_delivery: bool) -> Self {
        Self::with(topic, terms, self_delivery, Setup::default())
    }

    fn with(topic: &str, terms: Terms, self_delivery: bool, setup: Setup) -> Self {
        #[allow(clippy::disallowed_methods)] // the test's epoch
        let now = Instant::now();
        let mut pc = config(P);
        pc.self_delivery = self_delivery;
        let mut pair = Self {
            now,
            p: DataPlane::new(pc, now),
            s: DataPlane::new(config(S), now),
            out: None,
            segs: BTreeMap::new(),
            recv: BTreeMap::new(),
            next_recv: 1000,
            delivered: Vec::new(),
            lost: Vec::new(),
            released_p: Vec::new(),
            released_s: Vec::new(),
            room: BTreeMap::new(),
            hold_s: false,
            held: Vec::new(),
            misbehaved: Vec::new(),
            refused: Vec::new(),
            disconnected: Vec::new(),
            p_sees: setup.p_sees,
            s_sees: setup.s_sees,
            inline_parts: false,
            inline_buffers: false,
            buffers: Vec::new(),
        };
        pair.s
            .handle(
                now,
                DataInput::Cmd(DataCmd::Take {
                    topic: topic.into(),
                    terms,
                }),
            )
            .expect("take");
        let mut subs = vec![S];
        if self_delivery {
            subs.push(P);
            pair.p
                .handle(
                    now,
                    DataInput::Cmd(DataCmd::Take {
                        topic: topic.into(),
                        terms,
                    }),
                )
                .expect("take");
        }
        let p_routes = Routes::from_view(&view_with(topic, &subs, setup.p_announced, true));
        let s_routes =
            Routes::from_view(&view_with(topic, &subs, setup.s_announced, setup.s_knows_p));
        for (dp, routes) in [(&mut pair.p, p_routes), (&mut pair.s, s_routes)] {
            dp.handle(now, DataInput::Cmd(DataCmd::Routes(routes)))
                .expect("routes");
        }
        pair.p
            .handle(
                now,
                DataInput::Cmd(DataCmd::Advertise {
                    topic: topic.into(),
                }),
            )
            .expect("advertise");
        pair.pump();
        pair
    }

    /// Moves everything until both machines are quiet.
    fn pump(&mut self) {
        loop {
            let mut quiet = true;
            while let Some(o) = self.p.poll_output() {
                quiet = false;
                match o {
                    DataOutput::Connect { peer, addr } => {
                        assert_eq!(addr, format!("@d{S}"));
                        self.out = Some(peer);
                        let cred = self.p_sees;
                        self.p
                            .handle(self.now, DataInput::PeerUp { peer, cred })
                            .expect("up");
                        let cred = self.s_sees;
                        self.s
                            .handle(self.now, DataInput::PeerUp { peer: IN, cred })
                            .expect("up");
                    }
                    DataOutput::Transmit { bytes, attach, .. } => {
                        if self.hold_s {
                            self.held.push((bytes, attach));
                        } else {
                            self.deliver_to_s(&bytes, attach);
                        }
                    }
                    DataOutput::Release(seg) => self.released_p.push(seg),
                    DataOutput::Deliver(d) => self.delivered.push(d),
                    DataOutput::Lost(l) => self.lost.push(l),
                    DataOutput::Evt(DataEvt::Room { topic, room }) => {
                        self.room.insert(topic, room);
                    }
                    DataOutput::Evt(DataEvt::PeerMisbehaved { reason, .. }) => {
                        self.misbehaved.push(reason)
                    }
                    DataOutput::Evt(DataEvt::PeerRefused { reason, .. }) => {
                        self.refused.push(reason)
                    }
                    DataOutput::Disconnect(peer) => self.disconnected.push(peer),
                    DataOutput::Evt(_) => {}
                }
            }
            while let Some(o) = self.s.poll_output() {
                quiet = false;
                match o {
                    DataOutput::Transmit { bytes, .. } => {
                        let out = self.out.expect("linked");
                        self.p
                            .handle(
                                self.now,
                                DataInput::Record {
                                    peer: out,
                                    data: &bytes,
                                    segments: &[],
                                },
                            )
                            .expect("record");
                    }
                    DataOutput::Deliver(d) => self.delivered.push(d),
                    DataOutput::Lost(l) => self.lost.push(l),
                    DataOutput::Release(seg) => self.released_s.push(seg),
                    DataOutput::Evt(DataEvt::PeerMisbehaved { reason, .. }) => {
                        self.misbehaved.push(reason)
                    }
                    DataOutput::Evt(DataEvt::PeerRefused { reason, .. }) => {
                        self.refused.push(reason)
                    }
                    DataOutput::Disconnect(peer) => self.disconnected.push(peer),
                    _ => {}
                }
            }
            if quiet {
                return;
            }
        }
    }

    fn deliver_to_s(&mut self, bytes: &[u8], attach: Option<SegmentId>) {
        if self.inline_parts
            && let Ok((DataFrame::Inline(header), start)) = decode_data(bytes, 64, 64)
        {
            let payload = &bytes[start..];
            if self.inline_buffers {
                let mut buf = self.s.payload_buffer(payload.len());
                buf.as_mut().copy_from_slice(payload);
                self.buffers.push(buf.bytes().as_ptr() as usize);
                self.s.receive_payload(self.now, IN, header, buf);
            } else {
                self.s.receive_inline(self.now, IN, header, payload);
            }
            return;
        }
        let segs: Vec<ReceivedSegment> = attach
            .map(|seg| {
                let (size, fresh) = self.segs[&seg];
                let mine = SegmentId(self.next_recv);
                self.next_recv += 1;
                self.recv.insert(mine, seg);
                let seals = Seals {
                    shrink: true,
                    grow: true,
                    write: fresh,
                    future_write: !fresh,
                };
                ReceivedSegment {
                    segment: mine,
                    size,
                    seals,
                }
            })
            .into_iter()
            .collect();
        self.s
            .handle(
                self.now,
                DataInput::Record {
                    peer: IN,
                    data: bytes,
                    segments: &segs,
                },
            )
            .expect("record");
    }

    fn publish(&mut self, topic: &str, payload: Payload) {
        self.publish_with(topic, payload, false);
    }

    fn publish_with(&mut self, topic: &str, payload: Payload, expired: bool) {
        if let Payload::Fresh { segment, len } = &payload {
            self.segs.insert(*segment, (*len, true));
        }
        if let Payload::Pooled { segment, size, .. } = &payload {
            self.segs.insert(*segment, (*size, false));
        }
        self.p
            .handle(
                self.now,
                DataInput::Cmd(DataCmd::Publish {
                    topic: topic.into(),
                    payload,
                    expired,
                }),
            )
            .expect("publish");
        self.pump();
    }

    /// The application drops every pooled message delivered so far.
    fn release_all(&mut self) {
        let slots: Vec<SlotRef> = self
            .delivered
            .iter()
            .filter_map(|d| {
                if let Delivered::Pooled { slot, .. } = d.payload {
                    Some(slot)
                } else {
                    None
                }
            })
            .collect();
        self.delivered.clear();
        self.release(slots);
    }

    /// The application drops the pooled messages of `slots`: the subscriber gives them back.
    fn release(&mut self, slots: Vec<SlotRef>) {
        self.s
            .handle(
                self.now,
                DataInput::Cmd(DataCmd::Release { peer: IN, slots }),
            )
            .expect("release");
        self.pump();
    }

    /// A record from the subscriber's side of link `peer` (as the publisher knows it),
    /// handed to the publisher, then both pumped.
    fn record_to_p(&mut self, peer: PeerId, bytes: &[u8]) {
        let record = DataInput::Record {
            peer,
            data: bytes,
            segments: &[],
        };
        self.p.handle(self.now, record).expect("record");
        self.pump();
    }

    fn seqs(&self) -> Vec<u64> {
        self.delivered.iter().map(|d| d.seq).collect()
    }
}

fn pooled(segment: u64) -> Payload {
    Payload::Pooled {
        segment: SegmentId(segment),
        size: 4096,
        offset: 0,
        len: 100,
    }
}

mod holdback;
mod links;
mod order;
mod publisher;
mod subscriber;
