//! A publisher and a subscriber data plane back to back; segments are handles with pretend
//! seals, as a driver would report them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::topology::{NodeInfo, NodeView};

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
        self.s
            .handle(
                self.now,
                DataInput::Cmd(DataCmd::Release { peer: IN, slots }),
            )
            .expect("release");
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

#[test]
fn inline_fresh_and_pooled_messages_arrive_in_order() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(b"hello".to_vec()));
    t.publish("t", Payload::Inline(Vec::new()));
    t.publish(
        "t",
        Payload::Fresh {
            segment: SegmentId(1),
            len: 1 << 20,
        },
    );
    t.publish("t", pooled(50));
    assert_eq!(t.seqs(), [1, 2, 3, 4]);
    assert_eq!(t.delivered[0].payload, Delivered::Inline(b"hello".to_vec()));
    assert_eq!(
        t.delivered[1].payload,
        Delivered::Inline(Vec::new()),
        "empty payloads are delivered"
    );
    assert!(matches!(t.delivered[2].payload, Delivered::Fresh { len, .. } if len == 1 << 20));
    assert!(
        t.delivered
            .iter()
            .all(|d| d.publisher == id(P) && &*d.topic == "t")
    );
    // The fresh segment is released as soon as it is sent; the pooled one once given back.
    assert_eq!(t.released_p, [SegmentId(1)]);
    t.release_all();
    assert_eq!(t.released_p, [SegmentId(1), SegmentId(50)]);
    assert_eq!(t.p.segment_refs(), 0);
}

#[test]
fn a_pool_segment_is_offered_once_per_link() {
    let mut t = Pair::new("t", Terms::default(), false);
    for _ in 0..3 {
        t.publish("t", pooled(50));
        t.release_all();
    }
    // One fd went over the link for three messages.
    assert_eq!(t.recv.len(), 1);
    assert_eq!(t.p.segment_refs(), 0);
}

#[test]
fn drop_newest_and_drop_oldest_bound_what_is_in_flight() {
    for (policy, kept) in [
        (Policy::DropNewest, [1, 2, 3]),
        (Policy::DropOldest, [1, 4, 5]),
    ] {
        let mut t = Pair::new(
            "t",
            Terms {
                policy,
                depth: 2,
                ..Terms::default()
            },
            false,
        );
        t.publish("t", Payload::Inline(vec![1]));
        t.hold_s = true;
        // The socket is full: the publisher's queue holds what it cannot send.
        t.p.handle(t.now, DataInput::Blocked(t.out.expect("linked")))
            .expect("blocked");
        for n in 2..=5 {
            t.publish("t", Payload::Inline(vec![n]));
        }
        t.hold_s = false;
        let held = std::mem::take(&mut t.held);
        for (b, a) in held {
            t.deliver_to_s(&b, a);
        }
        t.p.handle(t.now, DataInput::Writable(t.out.expect("linked")))
            .expect("writable");
        t.pump();
        assert_eq!(t.seqs(), kept, "{policy:?}");
        let stats = t.p.stats();
        assert_eq!(
            (stats.published[0].messages, stats.published[0].dropped),
            (3, 2),
            "{policy:?}: sent, dropped"
        );
        let missed = if policy == Policy::DropOldest { 2 } else { 0 };
        assert_eq!(
            t.s.stats().received[0].missed,
            missed,
            "{policy:?}: the subscriber sees the gap"
        );
    }
}

#[test]
fn block_holds_publishers_back_until_the_subscriber_releases() {
    let mut t = Pair::new(
        "t",
        Terms {
            policy: Policy::Block { timeout_ms: 250 },
            depth: 2,
            ..Terms::default()
        },
        false,
    );
    let room = |messages| {
        Some(Some(Room {
            messages,
            timeout: Duration::from_millis(250),
        }))
    };
    assert_eq!(
        t.room.get("t").copied(),
        room(2),
        "terms stated: room for two"
    );
    t.publish("t", pooled(1));
    assert_eq!(t.room.get("t").copied(), room(1));
    t.publish("t", pooled(2));
    assert_eq!(t.room.get("t").copied(), room(0), "two held: full");
    assert_eq!(t.p.room("t").map(|r| r.messages), Some(0));
    // A publisher that waited its full timeout publishes with `expired`: dropped for the full
    // subscriber, and the pool segment is free at once.
    t.publish_with("t", pooled(3), true);
    assert_eq!(t.seqs(), [1, 2]);
    assert!(t.released_p.contains(&SegmentId(3)));
    t.release_all();
    assert_eq!(t.room.get("t").copied(), room(2), "room again");
    t.publish("t", pooled(4));
    assert_eq!(t.seqs(), [4]);
    assert_eq!(t.s.stats().received[0].missed, 1, "seq 3 never came");
}

#[test]
fn block_room_comes_back_when_a_full_socket_drains() {
    // Inline payloads are in flight until the socket takes them: a full socket fills the
    // publisher's queue up to the depth, and its draining must give the room back, or `Block`
    // publishers would wait out their whole timeout although nothing is queued.
    let mut t = Pair::new(
        "t",
        Terms {
            policy: Policy::Block { timeout_ms: 60_000 },
            depth: 2,
            ..Terms::default()
        },
        false,
    );
    let messages = |t: &Pair| t.room.get("t").copied().flatten().map(|r| r.messages);
    t.hold_s = true;
    t.p.handle(t.now, DataInput::Blocked(t.out.expect("linked")))
        .expect("blocked");
    t.publish("t", Payload::Inline(vec![1]));
    t.publish("t", Payload::Inline(vec![2]));
    assert_eq!(messages(&t), Some(0), "two queued behind a full socket");
    t.p.handle(t.now, DataInput::Writable(t.out.expect("linked")))
        .expect("writable");
    t.pump();
    assert_eq!(messages(&t), Some(2), "the socket took both: room again");
    assert_eq!(t.p.room("t").map(|r| r.messages), Some(2));
    t.hold_s = false;
    for (b, a) in std::mem::take(&mut t.held) {
        t.deliver_to_s(&b, a);
    }
    t.pump();
    assert_eq!(t.seqs(), [1, 2]);
}

#[test]
fn a_publishers_goodbye_closes_its_link_without_a_complaint() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", pooled(1));
    assert_eq!(t.seqs(), [1]);
    t.deliver_to_s(&encode_data(&DataFrame::Goodbye, &[]), None);
    t.pump();
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    assert_eq!(t.s.stats().rejected, 0);
    assert!(t.s.stats().received.is_empty(), "the link is gone");
    assert_eq!(t.released_s.len(), 1, "its segment is unmapped");
}

#[test]
fn a_retired_segment_is_unmapped_by_the_subscribers_it_was_offered_to() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", pooled(8));
    t.release_all();
    assert_eq!(t.released_p, [SegmentId(8)], "free again");
    t.p.handle(
        t.now,
        DataInput::Cmd(DataCmd::Retire {
            segment: SegmentId(8),
        }),
    )
    .expect("retire");
    t.pump();
    let received: Vec<SegmentId> = t.recv.keys().copied().collect();
    assert_eq!(
        t.released_s, received,
        "the subscriber lets go of its handle"
    );
    // Used again later, it is offered again.
    t.publish("t", pooled(8));
    assert_eq!(t.recv.len(), 2);
}

#[test]
fn self_delivery_is_an_option_off_by_default() {
    let mut off = Pair::new("t", Terms::default(), false);
    off.publish("t", Payload::Inline(b"x".to_vec()));
    assert!(off.delivered.iter().all(|d| d.peer == IN));
    let mut on = Pair::new("t", Terms::default(), true);
    on.publish("t", pooled(9));
    let local: Vec<_> = on.delivered.iter().filter(|d| d.peer == LOCAL).collect();
    assert_eq!(local.len(), 1);
    // The local reference keeps the segment until the application drops it too.
    let slots: Vec<SlotRef> = on
        .delivered
        .iter()
        .filter(|d| d.peer != LOCAL)
        .filter_map(|d| {
            if let Delivered::Pooled { slot, .. } = d.payload {
                Some(slot)
            } else {
                None
            }
        })
        .collect();
    on.s.handle(on.now, DataInput::Cmd(DataCmd::Release { peer: IN, slots }))
        .expect("release");
    on.pump();
    assert!(!on.released_p.contains(&SegmentId(9)));
    let slot = SlotRef {
        segment: 9,
        offset: 0,
    };
    on.p.handle(
        on.now,
        DataInput::Cmd(DataCmd::Release {
            peer: LOCAL,
            slots: vec![slot],
        }),
    )
    .expect("release");
    on.pump();
    assert!(on.released_p.contains(&SegmentId(9)));
}

#[test]
fn an_unsubscribed_node_loses_its_link_and_every_reference_with_it() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", pooled(5));
    assert_eq!(t.p.segment_refs(), 1);
    let routes = Routes::from_view(&view("t", &[]));
    t.p.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes)))
        .expect("routes");
    t.pump();
    assert_eq!(
        t.p.segment_refs(),
        0,
        "the held range is freed with the link"
    );
    assert!(t.released_p.contains(&SegmentId(5)));
    assert_eq!(t.p.subscribers().count(), 0);
}

#[test]
fn a_subscriber_that_is_gone_is_retried_while_routed() {
    let mut t = Pair::new("t", Terms::default(), false);
    let out = t.out.expect("linked");
    t.p.handle(t.now, DataInput::PeerDown(out)).expect("down");
    let at = t.p.poll_timeout().expect("a retry");
    assert!(at > t.now && at <= t.now + Duration::from_secs(1));
    while t.p.poll_output().is_some() {}
    t.p.handle_timeout(at);
    assert_eq!(
        t.p.poll_output(),
        Some(DataOutput::Connect {
            peer: out,
            addr: format!("@d{S}")
        })
    );
}

#[test]
fn bad_input_from_a_publisher_is_refused_and_its_fds_released() {
    let seg = |n, seals| {
        [ReceivedSegment {
            segment: SegmentId(n),
            size: 4096,
            seals,
        }]
    };
    let sealed_fresh = Seals {
        shrink: true,
        grow: true,
        write: true,
        future_write: false,
    };
    let unsealed = Seals {
        shrink: true,
        ..Seals::default()
    };
    let h = MessageHeader { topic: 1, seq: 1 };
    let hello = encode_data(&DataFrame::Hello { publisher: id(P) }, &[]);
    let bind = encode_data(
        &DataFrame::Topic {
            id: 1,
            topic: "t".into(),
        },
        &[],
    );
    let cases: Vec<(&str, Vec<u8>, Vec<ReceivedSegment>)> = vec![
        ("garbage", vec![1, 2, 3, 4, 5], vec![]),
        (
            "unsealed fresh",
            encode_data(&DataFrame::Fresh { header: h, len: 10 }, &[]),
            seg(1, unsealed).to_vec(),
        ),
        (
            "too small",
            encode_data(
                &DataFrame::Fresh {
                    header: h,
                    len: 5000,
                },
                &[],
            ),
            seg(2, sealed_fresh).to_vec(),
        ),
        (
            "fresh without fd",
            encode_data(&DataFrame::Fresh { header: h, len: 1 }, &[]),
            vec![],
        ),
        (
            "two fds",
            encode_data(&DataFrame::Inline(h), b"x"),
            [seg(3, sealed_fresh), seg(4, sealed_fresh)].concat(),
        ),
        (
            "unknown segment",
            encode_data(
                &DataFrame::Pooled {
                    header: h,
                    segment: 9,
                    offset: 0,
                    len: 1,
                },
                &[],
            ),
            vec![],
        ),
        (
            "unbound topic",
            encode_data(&DataFrame::Inline(MessageHeader { topic: 5, seq: 1 }), b""),
            vec![],
        ),
    ];
    for (name, record, segments) in cases {
        #[allow(clippy::disallowed_methods)] // the test's epoch
        let now = Instant::now();
        let mut s = DataPlane::new(config(S), now);
        let routes = Routes::from_view(&view("t", &[S]));
        s.handle(now, DataInput::Cmd(DataCmd::Routes(routes)))
            .expect("routes");
        s.handle(
            now,
            DataInput::Cmd(DataCmd::Take {
                topic: "t".into(),
                terms: Terms::default(),
            }),
        )
        .expect("take");
        s.handle(
            now,
            DataInput::PeerUp {
                peer: IN,
                cred: Some(cred_of(P)),
            },
        )
        .expect("up");
        for r in [&hello, &bind] {
            s.handle(
                now,
                DataInput::Record {
                    peer: IN,
                    data: r,
                    segments: &[],
                },
            )
            .expect("ok");
        }
        s.handle(
            now,
            DataInput::Record {
                peer: IN,
                data: &record,
                segments: &segments,
            },
        )
        .expect("never an error");
        let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
        assert!(
            out.contains(&DataOutput::Disconnect(IN)),
            "{name}: disconnected"
        );
        assert!(
            out.iter()
                .any(|o| matches!(o, DataOutput::Evt(DataEvt::PeerMisbehaved { .. }))),
            "{name}"
        );
        for r in &segments {
            assert!(
                out.contains(&DataOutput::Release(r.segment)),
                "{name}: fd {r:?} released"
            );
        }
        assert!(
            !out.iter().any(|o| matches!(o, DataOutput::Deliver(_))),
            "{name}: nothing delivered"
        );
    }
}

#[test]
fn a_release_of_a_range_not_held_disconnects_the_subscriber() {
    let mut t = Pair::new("t", Terms::default(), false);
    let out = t.out.expect("linked");
    let forged = encode_data(
        &DataFrame::Release(vec![SlotRef {
            segment: 77,
            offset: 0,
        }]),
        &[],
    );
    t.p.handle(
        t.now,
        DataInput::Record {
            peer: out,
            data: &forged,
            segments: &[],
        },
    )
    .expect("record");
    t.pump();
    assert_eq!(t.misbehaved.len(), 1);
}

#[test]
fn stats_are_served_to_any_process_of_the_group() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(b"x".to_vec()));
    let asker = PeerId(99);
    // `status`: an observer, in no view, of the group's uid.
    let cred = Some(Credentials {
        pid: 4242,
        uid: UID,
        gid: 5,
    });
    t.s.handle(t.now, DataInput::PeerUp { peer: asker, cred })
        .expect("up");
    let req = encode_data(&DataFrame::StatsRequest, &[]);
    t.s.handle(
        t.now,
        DataInput::Record {
            peer: asker,
            data: &req,
            segments: &[],
        },
    )
    .expect("record");
    let out: Vec<_> = std::iter::from_fn(|| t.s.poll_output()).collect();
    let DataOutput::Transmit { bytes, .. } = &out[0] else {
        panic!("{out:?}")
    };
    let (DataFrame::Stats(stats), _) = decode_data(bytes, 255, 16).expect("stats") else {
        panic!()
    };
    assert_eq!(stats.received[0].messages, 1);
    assert_eq!(out[1], DataOutput::Disconnect(asker));
}

#[test]
fn payloads_and_segments_larger_than_the_subscription_takes_are_refused_unmapped() {
    let sealed = |fresh: bool| Seals {
        shrink: true,
        grow: true,
        write: fresh,
        future_write: !fresh,
    };
    let h = MessageHeader { topic: 1, seq: 1 };
    let hello = encode_data(&DataFrame::Hello { publisher: id(P) }, &[]);
    let bind = encode_data(
        &DataFrame::Topic {
            id: 1,
            topic: "t".into(),
        },
        &[],
    );
    let offer = |id, size| encode_data(&DataFrame::Segment { id, size }, &[]);
    // Not a power of two: pool segments come in power-of-two classes.
    let max = 3 << 19;
    let class = Pool::class(max);
    /// The case, the records after hello and bind, the last one's segment (size, fresh), and
    /// whether it is refused.
    type Case = (&'static str, Vec<Vec<u8>>, Option<(u64, bool)>, bool);
    let cases: Vec<Case> = vec![
        (
            "a sparse 4 GiB fresh payload",
            vec![encode_data(
                &DataFrame::Fresh {
                    header: h,
                    len: 4 << 30,
                },
                &[],
            )],
            Some((4 << 30, true)),
            true,
        ),
        (
            "a small payload in a huge fresh segment",
            vec![encode_data(&DataFrame::Fresh { header: h, len: 10 }, &[])],
            Some((max + 1, true)),
            true,
        ),
        (
            "a fresh payload at the maximum",
            vec![encode_data(
                &DataFrame::Fresh {
                    header: h,
                    len: max,
                },
                &[],
            )],
            Some((max, true)),
            false,
        ),
        (
            "a pool segment larger than any payload taken",
            vec![offer(3, 4 << 30)],
            Some((4 << 30, false)),
            true,
        ),
        (
            "a pooled message larger than the maximum",
            vec![
                offer(3, class),
                encode_data(
                    &DataFrame::Pooled {
                        header: h,
                        segment: 3,
                        offset: 0,
                        len: max + 1,
                    },
                    &[],
                ),
            ],
            None,
            true,
        ),
    ];
    for (name, records, seg, refused) in cases {
        #[allow(clippy::disallowed_methods)] // the test's epoch
        let now = Instant::now();
        let mut s = DataPlane::new(config(S), now);
        let terms = SubscriptionOptions::default().max_payload(max).terms();
        let take = DataCmd::Take {
            topic: "t".into(),
            terms,
        };
        s.handle(now, DataInput::Cmd(take)).expect("take");
        let routes = DataCmd::Routes(Routes::from_view(&view("t", &[S])));
        s.handle(now, DataInput::Cmd(routes)).expect("routes");
        while s.poll_output().is_some() {}
        let up = DataInput::PeerUp {
            peer: IN,
            cred: Some(cred_of(P)),
        };
        s.handle(now, up).expect("up");
        let n = records.len();
        let mut out = Vec::new();
        for (i, r) in [hello.clone(), bind.clone()]
            .into_iter()
            .chain(records)
            .enumerate()
        {
            // Every offer, and the last record, come with their segment.
            let (size, fresh) = match (seg, i == n + 1) {
                (Some(s), true) => s,
                _ if r[4] == 6 => (class, false),
                _ => (0, false),
            };
            let segments: Vec<ReceivedSegment> = (size > 0)
                .then(|| ReceivedSegment {
                    segment: SegmentId(100 + i as u64),
                    size,
                    seals: sealed(fresh),
                })
                .into_iter()
                .collect();
            s.handle(
                now,
                DataInput::Record {
                    peer: IN,
                    data: &r,
                    segments: &segments,
                },
            )
            .expect("never an error");
            out.extend(std::iter::from_fn(|| s.poll_output()));
        }
        let delivered = out.iter().any(|o| matches!(o, DataOutput::Deliver(_)));
        assert_eq!(delivered, !refused, "{name}: {out:?}");
        assert_eq!(
            out.contains(&DataOutput::Disconnect(IN)),
            refused,
            "{name}: disconnected"
        );
        let stats = s.stats();
        assert_eq!(stats.guard.oversized, u64::from(refused), "{name}");
        assert_eq!(stats.rejected, u64::from(refused), "{name}");
        if refused {
            // Every segment of the link goes back to the driver, never mapped.
            let released = out
                .iter()
                .filter(|o| matches!(o, DataOutput::Release(_)))
                .count();
            assert!(released >= 1, "{name}: segments released: {out:?}");
        }
    }
}
// ---- credentials and identity (issue 19) ----

/// A process of another uid.
fn stranger() -> Credentials {
    Credentials {
        pid: 6666,
        uid: 65534,
        gid: 65534,
    }
}

/// Feeds `frames` to `s` on link `peer`, with `segments` on the last; returns what came out.
fn feed_s(
    s: &mut DataPlane,
    now: Instant,
    peer: PeerId,
    frames: &[(DataFrame, &[u8])],
    segments: &[ReceivedSegment],
) -> Vec<DataOutput> {
    for (i, (f, payload)) in frames.iter().enumerate() {
        let last = i + 1 == frames.len();
        let bytes = encode_data(f, payload);
        s.handle(
            now,
            DataInput::Record {
                peer,
                data: &bytes,
                segments: if last { segments } else { &[] },
            },
        )
        .expect("peer input is never an error");
    }
    std::iter::from_fn(|| s.poll_output()).collect()
}

/// A subscriber of "t" whose view shows [`P`] announcing it.
fn subscriber(now: Instant) -> DataPlane {
    let mut s = DataPlane::new(config(S), now);
    for cmd in [
        DataCmd::Take {
            topic: "t".into(),
            terms: Terms::default(),
        },
        DataCmd::Routes(Routes::from_view(&view("t", &[S]))),
    ] {
        s.handle(now, DataInput::Cmd(cmd)).expect("valid");
    }
    while s.poll_output().is_some() {}
    s
}

/// What a forger sends: a Hello naming `publisher`, topic "t" bound, three messages.
fn forged(publisher: NodeId) -> Vec<(DataFrame, &'static [u8])> {
    let h = |seq| MessageHeader { topic: 1, seq };
    vec![
        (DataFrame::Hello { publisher }, b""),
        (
            DataFrame::Topic {
                id: 1,
                topic: "t".into(),
            },
            b"",
        ),
        (DataFrame::Inline(h(1)), b"root-only-password=hunter2"),
        (DataFrame::Inline(h(2)), b"x"),
        (DataFrame::Inline(h(3)), b"y"),
    ]
}

fn delivered(out: &[DataOutput]) -> usize {
    out.iter()
        .filter(|o| matches!(o, DataOutput::Deliver(_)))
        .count()
}

#[test]
fn a_data_link_from_another_uid_is_refused_before_a_byte_is_read_or_sent() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut s = subscriber(now);
    let intruder = PeerId(40);
    s.handle(
        now,
        DataInput::PeerUp {
            peer: intruder,
            cred: Some(stranger()),
        },
    )
    .expect("up");
    let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(out[0], DataOutput::Disconnect(intruder));
    assert!(
        matches!(&out[1], DataOutput::Evt(DataEvt::PeerRefused { peer, cred: Some(c), .. })
            if *peer == intruder && c.uid == 65534),
        "{out:?}"
    );
    assert_eq!(out.len(), 2, "nothing sent to it: {out:?}");
    assert_eq!(s.refused(), 1);
    // What it sends anyway (the driver may have read it already) is nobody's.
    let fd = ReceivedSegment {
        segment: SegmentId(5),
        size: 64,
        seals: Seals {
            shrink: true,
            grow: true,
            write: true,
            future_write: false,
        },
    };
    let mut frames = forged(id(P));
    frames.push((
        DataFrame::Fresh {
            header: MessageHeader { topic: 1, seq: 4 },
            len: 10,
        },
        b"",
    ));
    let out = feed_s(&mut s, now, intruder, &frames, &[fd]);
    assert_eq!(delivered(&out), 0, "{out:?}");
    assert!(out.contains(&DataOutput::Release(SegmentId(5))), "{out:?}");
    assert!(
        !out.iter().any(|o| matches!(o, DataOutput::Transmit { .. })),
        "{out:?}"
    );
    // Without credentials, refused too (the policy does not allow anyone).
    s.handle(
        now,
        DataInput::PeerUp {
            peer: PeerId(41),
            cred: None,
        },
    )
    .expect("up");
    assert_eq!(s.refused(), 2);
}

#[test]
fn a_stats_request_from_another_uid_gets_no_answer() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(b"x".to_vec()));
    let asker = PeerId(99);
    t.s.handle(
        t.now,
        DataInput::PeerUp {
            peer: asker,
            cred: Some(stranger()),
        },
    )
    .expect("up");
    let out = feed_s(
        &mut t.s,
        t.now,
        asker,
        &[(DataFrame::StatsRequest, b"")],
        &[],
    );
    assert!(
        !out.iter().any(|o| matches!(o, DataOutput::Transmit { .. })),
        "no stats for another uid: {out:?}"
    );
    assert!(out.contains(&DataOutput::Disconnect(asker)), "{out:?}");
}

#[test]
fn a_hello_claiming_another_nodes_process_delivers_nothing_and_is_a_violation() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    // The same uid (the policy lets it in), another process than the one the hub saw join
    // as node P; then a Hello claiming the subscriber's own id.
    let impostor = Credentials {
        pid: 7777,
        ..cred_of(P)
    };
    for (claimed, what) in [(id(P), "another process"), (id(S), "this node's id")] {
        let mut s = subscriber(now);
        let link = PeerId(40);
        s.handle(
            now,
            DataInput::PeerUp {
                peer: link,
                cred: Some(impostor),
            },
        )
        .expect("up");
        let out = feed_s(&mut s, now, link, &forged(claimed), &[]);
        assert_eq!(delivered(&out), 0, "{what}: {out:?}");
        assert!(
            out.contains(&DataOutput::Disconnect(link)),
            "{what}: {out:?}"
        );
        assert!(
            out.iter().any(|o| matches!(
                o,
                DataOutput::Evt(DataEvt::PeerMisbehaved { peer, .. }) if *peer == link
            )),
            "{what}: {out:?}"
        );
        assert_eq!(s.stats().rejected, 1, "{what}");
    }
    // A uid that differs from the view's is refused at the Hello even where the policy
    // allows it (a group opened to two uids).
    let mut s = DataPlane::new(
        {
            let mut c = config(S);
            c.access.allow_uid(65534);
            c
        },
        now,
    );
    s.handle(
        now,
        DataInput::Cmd(DataCmd::Routes(Routes::from_view(&view("t", &[S])))),
    )
    .expect("routes");
    s.handle(
        now,
        DataInput::PeerUp {
            peer: PeerId(40),
            cred: Some(stranger()),
        },
    )
    .expect("up");
    let out = feed_s(&mut s, now, PeerId(40), &forged(id(P)), &[]);
    assert_eq!(delivered(&out), 0, "{out:?}");
    assert!(out.contains(&DataOutput::Disconnect(PeerId(40))), "{out:?}");
}

#[test]
fn a_topic_its_node_never_announced_delivers_nothing_and_the_link_is_closed() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut s = subscriber(now);
    s.handle(
        now,
        DataInput::Cmd(DataCmd::Take {
            topic: "secret".into(),
            terms: Terms::default(),
        }),
    )
    .expect("take");
    let link = PeerId(40);
    s.handle(
        now,
        DataInput::PeerUp {
            peer: link,
            cred: Some(cred_of(P)),
        },
    )
    .expect("up");
    let fd = ReceivedSegment {
        segment: SegmentId(9),
        size: 64,
        seals: Seals {
            shrink: true,
            grow: true,
            write: true,
            future_write: false,
        },
    };
    let frames = [
        (DataFrame::Hello { publisher: id(P) }, &b""[..]),
        (
            DataFrame::Topic {
                id: 1,
                topic: "secret".into(),
            },
            b"",
        ),
        (
            DataFrame::Inline(MessageHeader { topic: 1, seq: 1 }),
            b"forged",
        ),
        (
            DataFrame::Fresh {
                header: MessageHeader { topic: 1, seq: 2 },
                len: 10,
            },
            b"",
        ),
    ];
    let out = feed_s(&mut s, now, link, &frames, &[fd]);
    assert_eq!(delivered(&out), 0, "{out:?}");
    // Held (the announcement may be on its way), within bounds and a deadline.
    let deadline = s.poll_timeout().expect("a verification deadline");
    assert_eq!(deadline, now + DataConfig::new(id(S)).verify_timeout);
    s.handle_timeout(deadline);
    let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(delivered(&out), 0, "{out:?}");
    assert!(out.contains(&DataOutput::Disconnect(link)), "{out:?}");
    assert!(
        out.contains(&DataOutput::Release(SegmentId(9))),
        "the held fd is released: {out:?}"
    );
    assert!(
        out.iter().any(|o| matches!(
            o,
            DataOutput::Evt(DataEvt::PeerMisbehaved { reason, .. }) if reason.contains("secret")
        )),
        "{out:?}"
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn unverified_records_are_bounded() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut c = config(S);
    c.limits.max_unverified = 3;
    let mut s = DataPlane::new(c, now);
    s.handle(
        now,
        DataInput::Cmd(DataCmd::Routes(Routes::from_view(&view("t", &[S])))),
    )
    .expect("routes");
    let link = PeerId(40);
    s.handle(
        now,
        DataInput::PeerUp {
            peer: link,
            cred: Some(cred_of(P)),
        },
    )
    .expect("up");
    let mut frames = vec![
        (DataFrame::Hello { publisher: id(P) }, &b""[..]),
        (
            DataFrame::Topic {
                id: 1,
                topic: "unannounced".into(),
            },
            b"",
        ),
    ];
    for seq in 1..=3 {
        frames.push((DataFrame::Inline(MessageHeader { topic: 1, seq }), b"m"));
    }
    let out = feed_s(&mut s, now, link, &frames, &[]);
    assert!(out.contains(&DataOutput::Disconnect(link)), "{out:?}");
    assert_eq!(s.stats().rejected, 1);
}

#[test]
fn records_that_overtake_the_view_wait_for_it_and_are_delivered_in_order() {
    // The subscriber's view shows neither the publisher nor its announcement yet: the
    // publisher learned of the subscriber from the hub, and its records overtook the hub's.
    let mut t = Pair::with(
        "t",
        Terms::default(),
        false,
        Setup {
            s_knows_p: false,
            s_announced: false,
            ..Setup::default()
        },
    );
    t.publish("t", Payload::Inline(b"one".to_vec()));
    t.publish(
        "t",
        Payload::Fresh {
            segment: SegmentId(3),
            len: 4,
        },
    );
    assert!(t.delivered.is_empty(), "held until the view shows it");
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    // The publisher's join is in, not its announcement: still waiting.
    let routes = Routes::from_view(&view_with("t", &[S], false, true));
    t.s.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes)))
        .expect("routes");
    t.pump();
    assert!(t.delivered.is_empty());
    let deadline = t.s.poll_timeout().expect("a deadline");
    let routes = Routes::from_view(&view("t", &[S]));
    t.s.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes)))
        .expect("routes");
    t.pump();
    assert_eq!(t.seqs(), [1, 2]);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    assert_eq!(t.s.poll_timeout(), None, "nothing waits any more");
    // Later messages go straight through.
    t.publish("t", Payload::Inline(b"three".to_vec()));
    assert_eq!(t.seqs(), [1, 2, 3]);
    t.s.handle_timeout(deadline);
    t.pump();
    assert!(t.misbehaved.is_empty());
}

#[test]
fn a_binding_waits_for_the_publishers_own_announcement() {
    // The publisher's view does not show its announcement yet (it is on its way to the hub):
    // the link is up and the Hello out, the binding and the messages behind it wait.
    let mut t = Pair::with(
        "t",
        Terms::default(),
        false,
        Setup {
            p_announced: false,
            s_announced: false,
            ..Setup::default()
        },
    );
    t.publish("t", Payload::Inline(b"one".to_vec()));
    t.publish("t", Payload::Inline(b"two".to_vec()));
    assert!(t.delivered.is_empty());
    let routes = Routes::from_view(&view("t", &[S]));
    for dp in [&mut t.p, &mut t.s] {
        dp.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes.clone())))
            .expect("routes");
    }
    t.pump();
    assert_eq!(t.seqs(), [1, 2]);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
}

#[test]
fn a_topic_withdrawn_before_its_announcement_is_in_still_sends_what_was_published() {
    // Published, then the publisher dropped (the CLI's `pub` does so before leaving): the
    // announcement reached the hub ahead of the retraction, so the subscriber's view shows it
    // and the messages are delivered; nothing waits on the link.
    let mut t = Pair::with(
        "t",
        Terms::default(),
        false,
        Setup {
            p_announced: false,
            ..Setup::default()
        },
    );
    t.publish("t", pooled(4));
    assert!(t.delivered.is_empty(), "waits for the announcement");
    t.p.handle(
        t.now,
        DataInput::Cmd(DataCmd::Withdraw { topic: "t".into() }),
    )
    .expect("withdraw");
    t.pump();
    assert_eq!(t.seqs(), [1]);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
}

#[test]
fn a_subscriber_address_held_by_another_process_is_refused_and_retried() {
    for (held_by, what) in [
        (stranger(), "another uid"),
        (
            Credentials {
                pid: 7777,
                ..cred_of(S)
            },
            "another process of the uid",
        ),
    ] {
        let t = Pair::with(
            "t",
            Terms::default(),
            false,
            Setup {
                p_sees: Some(held_by),
                ..Setup::default()
            },
        );
        let mut t = t;
        t.publish("t", Payload::Inline(b"secret".to_vec()));
        assert!(t.delivered.is_empty(), "{what}");
        assert_eq!(t.refused.len(), 1, "{what}: {:?}", t.refused);
        let out = t.out.expect("asked for");
        assert!(t.disconnected.contains(&out), "{what}");
        assert_eq!(t.p.refused(), 1, "{what}");
        // Tried again later, as after a failed connection.
        assert!(t.p.poll_timeout().is_some(), "{what}: a retry");
        assert_eq!(t.p.stats().published.len(), 0, "{what}: nothing sent");
    }
}

#[test]
fn a_leaving_publisher_sends_what_waited_for_its_announcement() {
    // Published, then left at once: its announcement is on its way to the hub ahead of its
    // goodbye, so the subscriber will see it; the binding does not wait for it any more.
    let mut t = Pair::with(
        "t",
        Terms::default(),
        false,
        Setup {
            p_announced: false,
            ..Setup::default()
        },
    );
    t.publish("t", Payload::Inline(b"last words".to_vec()));
    assert!(t.delivered.is_empty());
    let now = t.now;
    t.p.ungate(now);
    t.pump();
    assert_eq!(t.seqs(), [1]);
}

#[test]
fn records_of_a_publisher_that_just_left_the_view_are_still_checked_and_delivered() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(b"one".to_vec()));
    // The hub's word that the publisher left reaches the subscriber before the publisher's
    // last records (it published, then left at once).
    let gone = Routes::from_view(&view_with("t", &[S], false, false));
    t.s.handle(t.now, DataInput::Cmd(DataCmd::Routes(gone.clone())))
        .expect("routes");
    // Its last records still check out against what the view showed of it.
    t.publish("t", Payload::Inline(b"two".to_vec()));
    assert_eq!(t.seqs(), [1, 2]);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    // Long after, it is forgotten: a link claiming it waits, then is closed.
    let later = t.now + DataConfig::new(id(S)).verify_timeout + Duration::from_millis(1);
    t.s.handle(later, DataInput::Cmd(DataCmd::Routes(gone)))
        .expect("routes");
    let link = PeerId(50);
    t.s.handle(
        later,
        DataInput::PeerUp {
            peer: link,
            cred: Some(cred_of(P)),
        },
    )
    .expect("up");
    let out = feed_s(&mut t.s, later, link, &forged(id(P)), &[]);
    assert_eq!(delivered(&out), 0, "{out:?}");
    assert!(t.s.poll_timeout().is_some(), "waits for the view");
}

#[test]
fn records_held_when_the_publisher_hangs_up_are_still_delivered() {
    // Published, left, and its link closed before the subscriber's view showed its
    // announcement: what it sent still counts once the view catches up.
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut s = DataPlane::new(config(S), now);
    let unannounced = Routes::from_view(&view_with("t", &[S], false, true));
    for cmd in [
        DataCmd::Take {
            topic: "t".into(),
            terms: Terms::default(),
        },
        DataCmd::Routes(unannounced),
    ] {
        s.handle(now, DataInput::Cmd(cmd)).expect("valid");
    }
    let link = PeerId(40);
    s.handle(
        now,
        DataInput::PeerUp {
            peer: link,
            cred: Some(cred_of(P)),
        },
    )
    .expect("up");
    let out = feed_s(&mut s, now, link, &forged(id(P)), &[]);
    assert_eq!(delivered(&out), 0);
    s.handle(now, DataInput::PeerDown(link)).expect("down");
    let routes = Routes::from_view(&view("t", &[S]));
    s.handle(now, DataInput::Cmd(DataCmd::Routes(routes)))
        .expect("routes");
    let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(delivered(&out), 3, "{out:?}");
    assert!(s.stats().received.is_empty(), "the link is forgotten after");
    assert_eq!(s.poll_timeout(), None);
}
