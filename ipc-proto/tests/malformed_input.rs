//! Hostile and broken input, one test per case: hand-written nasty inputs, and every crash the
//! fuzzers (`fuzz/`) have found. A crash not fixed yet is an `#[ignore]`d test saying what it
//! does, where it was found and why it happens; un-ignore it with the fix.

use std::time::{Duration, Instant};

use ipc_proto::wire::{self, CloseReason, Deframer, Frame, Hello, Limits, Welcome};
use ipc_proto::{
    AccessPolicy, Change, Credentials, DecodeError, Epoch, Horizon, Hub, HubConfig, HubEvt,
    HubSeed, Input, NodeId, NodeInfo, Output, PeerId, Record, Seq, Spoke, SpokeCmd, SpokeConfig,
    SpokeEvt, Term, Transmit, Uid,
};

#[allow(clippy::disallowed_methods)] // the clock's origin; the machines only see durations
fn t0() -> Instant {
    Instant::now()
}

fn node(n: u64) -> NodeId {
    NodeId::new(n).expect("non-zero")
}

fn info(n: u64) -> NodeInfo {
    NodeInfo {
        id: node(n),
        name: format!("node-{n}"),
        data_addr: format!("@data/{n}"),
        pid: 0,
        uid: 0,
    }
}

const CRED: Credentials = Credentials {
    pid: 42,
    uid: 1000,
    gid: 1000,
};

/// A hub admitting uid 1000, hosted by node 1.
fn hub(now: Instant) -> Hub {
    let mut config = HubConfig::default();
    config.access(AccessPolicy::same_uid(1000));
    Hub::new(config, HubSeed::empty(node(1)), now)
}

fn drain(hub: &mut Hub) -> Vec<Output<HubEvt>> {
    std::iter::from_fn(|| hub.poll_output()).collect()
}

fn bytes(hub: &mut Hub, now: Instant, peer: PeerId, data: &[u8]) -> Vec<Output<HubEvt>> {
    hub.handle(now, Input::Bytes { peer, data })
        .expect("peer bytes are never an error");
    drain(hub)
}

fn up(hub: &mut Hub, now: Instant, peer: PeerId) {
    hub.handle(
        now,
        Input::PeerUp {
            peer,
            cred: Some(CRED),
        },
    )
    .expect("a link is never an error");
    assert_eq!(drain(hub), []);
}

/// What a hub does with a peer that broke the protocol: goodbye, close, report.
fn misbehaved(peer: PeerId, reason: &str) -> Vec<Output<HubEvt>> {
    let goodbye = Frame::Goodbye(CloseReason::ProtocolViolation(reason.into()));
    vec![
        Output::Transmit(Transmit {
            peer,
            bytes: wire::encode(&goodbye),
        }),
        Output::Disconnect(peer),
        Output::Evt(HubEvt::PeerMisbehaved {
            peer,
            reason: reason.into(),
        }),
    ]
}

fn stream(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(wire::encode).collect()
}

// ---- hand-written ----

#[test]
fn a_frame_claiming_u32_max_bytes_fails_before_anything_is_buffered() {
    let mut d = Deframer::new(Limits::default());
    d.push(&[0xFF; 4]);
    let err = DecodeError::TooLong {
        len: u32::MAX as usize,
        max: 64 * 1024,
    };
    assert_eq!(d.next_frame(), Some(Err(err.clone())));
    assert_eq!(d.buffered(), 0);

    let now = t0();
    let mut hub = hub(now);
    let peer = PeerId(7);
    up(&mut hub, now, peer);
    assert_eq!(
        bytes(&mut hub, now, peer, &[0xFF; 4]),
        misbehaved(peer, &err.to_string())
    );
    assert_eq!(hub.peer_count(), 0);
}

#[test]
fn a_hello_with_a_huge_string_length_is_refused_without_allocating() {
    // Tag 1, the version, member: Some, node id 5, then a name claiming 2^60 bytes (varint
    // 0xFD + u64 LE).
    let version = u8::try_from(wire::PROTOCOL_VERSION).expect("one byte below 251");
    let mut body = vec![1, version, 1, 5, 0xFD];
    body.extend_from_slice(&(1u64 << 60).to_le_bytes());
    // bincode stops at its own allocation cap (16 MiB). `len` is the length of what follows
    // the tag and the version, not the claimed length.
    let err = DecodeError::TooLong {
        len: body.len() - 2,
        max: 16 << 20,
    };
    assert_eq!(wire::decode(&body, &Limits::default()), Err(err.clone()));

    let now = t0();
    let mut hub = hub(now);
    let peer = PeerId(1);
    up(&mut hub, now, peer);
    let mut framed = u32::try_from(body.len())
        .expect("small")
        .to_le_bytes()
        .to_vec();
    framed.extend(&body);
    assert_eq!(
        bytes(&mut hub, now, peer, &framed),
        misbehaved(peer, &err.to_string())
    );
}

#[test]
fn a_history_claiming_2_pow_60_records_ends_early_without_allocating() {
    let mut body = vec![2, 0xFD];
    body.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert_eq!(
        wire::decode(&body, &Limits::default()),
        Err(DecodeError::UnexpectedEnd)
    );
}

#[test]
fn garbage_after_a_valid_frame_is_reported_after_the_frame() {
    let mut data = wire::encode(&Frame::Heartbeat);
    data.extend_from_slice(&[3, 0, 0, 0, 0xEE, 1, 2]);
    let mut d = Deframer::new(Limits::default());
    d.push(&data);
    assert_eq!(d.next_frame(), Some(Ok(Frame::Heartbeat)));
    assert_eq!(d.next_frame(), Some(Err(DecodeError::UnknownTag(0xEE))));
    assert_eq!(d.next_frame(), None, "a failed stream yields nothing more");

    // A valid frame's length covering a byte after its body.
    let mut trailing = wire::encode(&Frame::IntroEnd);
    trailing[0] += 1;
    trailing.push(0);
    assert_eq!(
        wire::decode(&trailing[4..], &Limits::default()),
        Err(DecodeError::TrailingBytes(1))
    );

    // A whole introduction, then garbage: the spoke is introduced, then thrown out, and its
    // node leaves again.
    let now = t0();
    let mut hub = hub(now);
    let peer = PeerId(3);
    up(&mut hub, now, peer);
    let mut data = stream(&[
        Frame::Hello(Hello {
            member: Some(info(2)),
            term: Term(0),
            horizon: Horizon::default(),
            keepalive: Default::default(),
        }),
        Frame::IntroEnd,
    ]);
    data.extend_from_slice(&[1, 0, 0, 0, 0xEE]);
    let out = bytes(&mut hub, now, peer, &data);
    let events: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Evt(e) => Some(e.name()),
            _ => None,
        })
        .collect();
    assert_eq!(events, ["Introduced", "PeerMisbehaved"]);
    assert!(out.contains(&Output::Disconnect(peer)));
    assert!(out.contains(&Output::Evt(HubEvt::PeerMisbehaved {
        peer,
        reason: DecodeError::UnknownTag(0xEE).to_string(),
    })));
    assert!(!hub.history().is_joined(node(2)));
}

#[test]
fn a_hub_that_sends_garbage_is_dropped_by_the_spoke() {
    let now = t0();
    let mut spoke = Spoke::new(
        SpokeConfig::default()
            .node_id(node(9))
            .access(AccessPolicy::anyone())
            .clone(),
        now,
    );
    spoke.handle(now, Input::Cmd(SpokeCmd::Join)).expect("join");
    let hub_link = PeerId(1);
    spoke
        .handle(
            now,
            Input::PeerUp {
                peer: hub_link,
                cred: None,
            },
        )
        .expect("a link is never an error");
    while spoke.poll_output().is_some() {}
    spoke
        .handle(
            now,
            Input::Bytes {
                peer: hub_link,
                data: &[0xFF; 4],
            },
        )
        .expect("hub bytes are never an error");
    let out: Vec<_> = std::iter::from_fn(|| spoke.poll_output()).collect();
    assert_eq!(out[0], Output::Disconnect(hub_link));
    assert_eq!(
        out[1],
        Output::Evt(SpokeEvt::HubMisbehaved {
            reason: DecodeError::TooLong {
                len: u32::MAX as usize,
                max: 64 * 1024
            }
            .to_string()
        })
    );
    assert_eq!(spoke.hub_peer(), None);
}

// ---- found by the fuzzers ----

/// The seed a spoke hands its driver after following a hub that sent it this welcome and
/// snapshot.
fn seed_after(welcome: Welcome, snapshot: Vec<Record>, max_tombstones: usize) -> (Spoke, HubSeed) {
    let now = t0();
    let config = SpokeConfig {
        node_id: Some(node(1)),
        max_tombstones,
        access: AccessPolicy::anyone(),
        ..SpokeConfig::default()
    };
    let mut spoke = Spoke::new(config, now);
    spoke.handle(now, Input::Cmd(SpokeCmd::Join)).expect("join");
    let link = PeerId(0);
    spoke
        .handle(
            now,
            Input::PeerUp {
                peer: link,
                cred: None,
            },
        )
        .expect("a link is never an error");
    let data = stream(&[
        Frame::Welcome(welcome),
        Frame::Snapshot(snapshot),
        Frame::SnapshotEnd(Horizon::default()),
    ]);
    spoke
        .handle(
            now,
            Input::Bytes {
                peer: link,
                data: &data,
            },
        )
        .expect("hub bytes are never an error");
    while spoke.poll_output().is_some() {}
    let seed = spoke.hub_seed();
    (spoke, seed)
}

/// Found by `hub_ops` (its seed path) in its first seconds.
///
/// A hub sends a spoke `Welcome { term: u64::MAX }`; the spoke adopts the term. When that
/// spoke later won the bind, `Hub::new` computed `Term(known.max(term.0) + 1)` unchecked:
/// `attempt to add with overflow` in a debug build, a hub of term 0 in a release build. Fixed:
/// `Hub::new` saturates the term.
#[test]
fn a_welcome_with_the_last_term_does_not_break_the_next_hub() {
    let (spoke, seed) = seed_after(
        Welcome {
            hub: node(2),
            term: Term(u64::MAX),
            keepalive: Default::default(),
        },
        vec![],
        256,
    );
    assert_eq!(spoke.term(), Term(u64::MAX));
    let hub = Hub::new(HubConfig::default(), seed, t0());
    assert!(
        hub.term() >= spoke.term(),
        "the new hub's term went backwards"
    );
}

/// Found by `hub_ops` (its seed path) within two minutes.
///
/// A history record of epoch term `u32::MAX` (any salt but the last few) reaches a spoke, which
/// later starts a hub from its history. `Hub::new` took `term = known + 1 = 2^32`, saturated
/// the epoch's term to `u32::MAX` and drew a random salt, below the record's salt with high
/// probability. Its first mint about that record's node (here: the LEAVE when node 6 does not
/// come back within the grace period) sat below the node's JOIN, did not apply, and
/// `Hub::mint` panicked: `a freshly minted record applies`. Fixed: `Hub::new` mints above
/// `known.successor()`, as `bump_epoch` does.
#[test]
fn a_seed_record_of_the_last_epoch_term_does_not_break_the_next_hub() {
    let join = Record {
        seq: Seq::new(Epoch::new(u32::MAX, u32::MAX - 1), 5),
        uid: Uid::new(77).expect("non-zero"),
        change: Change::Join(info(6)),
    };
    let welcome = Welcome {
        hub: node(2),
        term: Term(3),
        keepalive: Default::default(),
    };
    let (_, seed) = seed_after(welcome, vec![join], 256);
    let now = t0();
    let mut hub = Hub::new(HubConfig::default(), seed, now);
    hub.handle_timeout(now + Duration::from_secs(1));
    let out: Vec<_> = std::iter::from_fn(|| hub.poll_output()).collect();
    assert!(out.contains(&Output::Evt(HubEvt::NodePurged { node: node(6) })));
    assert!(!hub.history().is_joined(node(6)));
}

/// Found by `hub_ops` within two minutes; reachable from any local process the hub admits.
///
/// A hello carries the spoke's known term; the hub moves its mint epoch above
/// `Epoch::new(term as u32 (saturated), u32::MAX)` with `bump_epoch`. With a term of
/// `u32::MAX` that is `(u32::MAX, u32::MAX)`, the last epoch: `successor` saturates, so the
/// epoch did not move, but `bump_epoch` still reset `mint_counter` to 0. The hub then minted
/// position `(u32::MAX, u32::MAX, 1)` a second time: here the LEAVE of node 2, at the position
/// of its own JOIN, which did not apply, and `Hub::mint` panicked with `a freshly minted record
/// applies` (an `assert!`, so in release builds too). Fixed: `bump_epoch` resets the counter
/// only when the epoch moves, and a hub whose positions are exhausted drops the change with an
/// `error!` instead of panicking.
#[test]
fn hellos_with_the_last_term_do_not_panic_the_hub() {
    let now = t0();
    let mut hub = hub(now);
    let (a, b) = (PeerId(1), PeerId(2));
    let hello = |member: Option<NodeInfo>| {
        Frame::Hello(Hello {
            member,
            term: Term(u64::from(u32::MAX)),
            horizon: Horizon::default(),
            keepalive: Default::default(),
        })
    };
    up(&mut hub, now, a);
    bytes(
        &mut hub,
        now,
        a,
        &stream(&[hello(Some(info(2))), Frame::IntroEnd]),
    );
    up(&mut hub, now, b);
    bytes(&mut hub, now, b, &stream(&[hello(None)]));
    hub.handle(now, Input::PeerDown(a))
        .expect("a link is never an error");
    let out = drain(&mut hub);
    assert!(out.contains(&Output::Evt(HubEvt::PeerLeft {
        peer: a,
        node: Some(node(2))
    })));
    assert!(!hub.history().is_joined(node(2)));
}

/// Found by `hub_ops` (its seed path) within two minutes; `spoke_ops` reaches it through
/// `Minted` and `Relayed` frames as well.
///
/// `History::apply` indexes records by position (`order: BTreeMap<Seq, (NodeId, SlotKey)>`),
/// and nothing stops a hub from sending two records at the same position in different slots.
/// The second overwrote the first one's index entry; the position was also in `tombstones` if
/// the first was a removal. When that tombstone was evicted, `evict_tombstones` removed
/// whatever slot the index named then: here node 2's JOIN, and with it node 2's entry, while
/// node 2's SUBSCRIBE stayed indexed. `History::records` then panicked with `order indexes
/// only records that are present`: in the spoke's next introduction, or
/// in `Hub::new` from its seed. Fixed: `apply` (used for snapshots, minted and relayed
/// records) ignores a record whose position another slot holds, as `integrate` does.
#[test]
fn a_snapshot_reusing_a_position_does_not_corrupt_the_history() {
    let seq = |c| Seq::new(Epoch::new(1, 0), c);
    let rec = |c, uid, change| Record {
        seq: seq(c),
        uid: Uid::new(uid).expect("non-zero"),
        change,
    };
    let topic = |n, t: &str| (node(n), t.to_owned());
    let (n3, u) = topic(3, "u");
    let (n2, t) = topic(2, "t");
    let (n3b, v) = topic(3, "v");
    let snapshot = vec![
        rec(1, 1, Change::Join(info(3))),
        rec(2, 2, Change::Unsubscribe { node: n3, topic: u }),
        rec(2, 3, Change::Join(info(2))),
        rec(3, 4, Change::Subscribe { node: n2, topic: t }),
        rec(
            4,
            5,
            Change::Unsubscribe {
                node: n3b,
                topic: v,
            },
        ),
    ];
    let welcome = Welcome {
        hub: node(5),
        term: Term(1),
        keepalive: Default::default(),
    };
    // A tombstone cap of 1 evicts at the fifth record; with the default cap it takes 256 more
    // tombstones in the same snapshot.
    let (spoke, _) = seed_after(welcome, snapshot, 1);
    let records: Vec<_> = spoke.history().records().map(|r| r.seq).collect();
    assert_eq!(records.len(), spoke.history().len());
}

// ---- the data plane, found by the fuzzers ----

use ipc_proto::data::{
    DataCmd, DataConfig, DataInput, DataOutput, DataPlane, Payload, ReceivedSegment, Routes, Seals,
    SegmentId, Terms,
};
use ipc_proto::wire::{DataFrame, Policy, decode_data, encode_data};

/// The credentials of every process of [`info`]'s nodes (uid 0), for a data plane of a group
/// of that uid ([`data_config`]).
const DATA_CRED: Credentials = Credentials {
    pid: 0,
    uid: 0,
    gid: 0,
};

fn data_config(n: u64) -> DataConfig {
    let mut config = DataConfig::new(node(n));
    config.access = AccessPolicy::same_uid(0);
    config
}

fn data_drain(dp: &mut DataPlane) -> Vec<DataOutput> {
    std::iter::from_fn(|| dp.poll_output()).collect()
}

fn data_cmd(dp: &mut DataPlane, now: Instant, cmd: DataCmd) -> Vec<DataOutput> {
    dp.handle(now, DataInput::Cmd(cmd))
        .expect("a valid command");
    data_drain(dp)
}

fn data_record(
    dp: &mut DataPlane,
    now: Instant,
    peer: PeerId,
    frame: &DataFrame,
    segments: &[ReceivedSegment],
) -> Vec<DataOutput> {
    let data = encode_data(frame, &[]);
    dp.handle(
        now,
        DataInput::Record {
            peer,
            data: &data,
            segments,
        },
    )
    .expect("a record is never an error");
    data_drain(dp)
}

/// Found by `data_ops` in under two minutes (its check that every segment handed in with a
/// record is delivered or released by the time its link goes); reachable by any process that
/// connects to a node's data address.
///
/// A link from a publisher sends `Hello`, then offers a pool segment (`Segment`, its fd
/// registered by the driver and kept in the link's `segments`), then sends `StatsRequest`.
/// `on_publisher_frame` lets `StatsRequest` through in any state (the "before Hello" check
/// exempts it, and nothing refuses it after Hello), and its arm serves the stats, disconnects
/// and `in_links.remove(&peer)`s the link without releasing the segments it offered, as
/// `on_peer_down` and `misbehaved` do. No `DataOutput::Release` ever comes for them: the driver
/// keeps their fds and mappings for as long as it runs, one per offer, as often as a peer
/// likes. (`StatsRequest` is meant as the first and only frame of a link; after `Hello` it
/// could be refused as a protocol violation, which releases the segments.) Fixed: the stats
/// request's link is forgotten like any other, its segments released.
#[test]
fn a_stats_request_after_hello_releases_the_links_segments() {
    let now = t0();
    let mut dp = DataPlane::new(data_config(1), now);
    // Node 2 is in the view: its Hello checks out.
    let (spoke, _) = seed_after(
        Welcome {
            hub: node(2),
            term: Term(1),
            keepalive: Default::default(),
        },
        vec![Record {
            seq: Seq::new(Epoch::new(1, 0), 1),
            uid: Uid::new(1).expect("non-zero"),
            change: Change::Join(info(2)),
        }],
        256,
    );
    data_cmd(
        &mut dp,
        now,
        DataCmd::Routes(Routes::from_view(spoke.view())),
    );
    let link = PeerId(1);
    dp.handle(
        now,
        DataInput::PeerUp {
            peer: link,
            cred: Some(DATA_CRED),
        },
    )
    .expect("a link is never an error");
    let hello = DataFrame::Hello {
        publisher: node(2),
        rings: false,
    };
    assert_eq!(data_record(&mut dp, now, link, &hello, &[]), []);
    let offered = ReceivedSegment {
        segment: SegmentId(100),
        size: 4096,
        seals: Seals {
            shrink: true,
            grow: true,
            write: false,
            future_write: true,
        },
    };
    let offer = DataFrame::Segment { id: 3, size: 4096 };
    assert_eq!(
        data_record(&mut dp, now, link, &offer, &[offered]),
        [],
        "the offer is kept"
    );
    let out = data_record(&mut dp, now, link, &DataFrame::StatsRequest, &[]);
    assert!(out.contains(&DataOutput::Disconnect(link)), "{out:?}");
    assert!(
        out.contains(&DataOutput::Release(offered.segment)),
        "the link is gone, its segment never released: {out:?}"
    );
}

/// Found while writing `data_ops` (reading `enqueue`), and caught by its check that no record
/// attaches a pool segment the driver retired; the fuzzer itself did not reach it in 18 minutes
/// without a seed close to it (it takes `DropOldest`, a link that cannot send, two pooled
/// messages and a trim, in that order). The seed `drop_oldest_while_connecting` stops one op
/// short of it.
///
/// `enqueue` queues a `Segment` offer (with the segment's fd attached) the first time a pool
/// segment goes to a link, and marks it `offered`; the offer holds no reference on the segment
/// (`refs` counts messages only). When the link cannot send (connecting, blocked, or retrying)
/// and the subscriber's policy is `DropOldest`, the next message of the topic removes the queued
/// *message* in that segment but leaves the offer queued. The message's reference was the last,
/// so the segment is released (`DataOutput::Release`): the driver's pool frees it, trims it when
/// idle and reports `DataCmd::Retire`, which queues a `Retire` behind the offer. When the link
/// drains, the machine hands the driver an offer attaching the segment the driver destroyed:
/// the std driver drops that record ("a segment to send is gone"), then sends the `Retire` of a
/// segment the subscriber never got, and the subscriber closes the link as a protocol
/// violation ("retire of unknown segment"). Only `DropOldest` removes queued messages; a link
/// going down resets offers and queue together.
#[test]
#[ignore = "known bug: a dropped message leaves its segment's offer queued after the segment is retired"]
fn a_dropped_message_does_not_leave_its_retired_segment_offered() {
    let now = t0();
    let mut config = data_config(1);
    config.default_terms = Terms {
        policy: Policy::DropOldest,
        depth: 1,
        ..Terms::default()
    };
    let mut dp = DataPlane::new(config, now);
    // Node 2 subscribes to "a".
    let subscribe = Change::Subscribe {
        node: node(2),
        topic: "a".into(),
    };
    let seq = |c| Seq::new(Epoch::new(1, 0), c);
    let snapshot = vec![
        Record {
            seq: seq(1),
            uid: Uid::new(1).expect("non-zero"),
            change: Change::Join(info(2)),
        },
        // This node announced "a" (the binding waits for that).
        Record {
            seq: seq(3),
            uid: Uid::new(3).expect("non-zero"),
            change: Change::Join(info(1)),
        },
        Record {
            seq: seq(4),
            uid: Uid::new(4).expect("non-zero"),
            change: Change::Announce {
                node: node(1),
                topic: "a".into(),
                mime: "m".into(),
            },
        },
        Record {
            seq: seq(2),
            uid: Uid::new(2).expect("non-zero"),
            change: subscribe,
        },
    ];
    let welcome = Welcome {
        hub: node(2),
        term: Term(1),
        keepalive: Default::default(),
    };
    let (spoke, _) = seed_after(welcome, snapshot, 256);
    let routes = Routes::from_view(spoke.view());
    data_cmd(&mut dp, now, DataCmd::Routes(routes));
    let out = data_cmd(&mut dp, now, DataCmd::Advertise { topic: "a".into() });
    let Some(link) = out.iter().find_map(|o| match o {
        DataOutput::Connect { peer, .. } => Some(*peer),
        _ => None,
    }) else {
        panic!("no link to the subscriber: {out:?}");
    };
    let publish = |segment| DataCmd::Publish {
        topic: "a".into(),
        payload: Payload::Pooled {
            segment: SegmentId(segment),
            size: 4096,
            offset: 0,
            len: 100,
        },
        expired: false,
    };
    // Two messages while the link connects: the second drops the first.
    data_cmd(&mut dp, now, publish(1));
    let out = data_cmd(&mut dp, now, publish(2));
    let retired = out.contains(&DataOutput::Release(SegmentId(1)));
    if retired {
        // Free again: the driver's pool finds it idle and destroys it.
        data_cmd(
            &mut dp,
            now,
            DataCmd::Retire {
                segment: SegmentId(1),
            },
        );
    }
    dp.handle(
        now,
        DataInput::PeerUp {
            peer: link,
            cred: Some(DATA_CRED),
        },
    )
    .expect("a link is never an error");
    let mut offered = Vec::new();
    for out in data_drain(&mut dp) {
        let DataOutput::Transmit { bytes, attach, .. } = out else {
            continue;
        };
        let (frame, _) = decode_data(&bytes, 255, 4096).expect("a transmit decodes");
        match frame {
            DataFrame::Segment { id, .. } => {
                assert!(
                    !(retired && attach == Some(SegmentId(1))),
                    "offers segment 1, released and retired before"
                );
                offered.push(id);
            }
            DataFrame::Retire { id } => {
                assert!(offered.contains(&id), "retire of {id}, never offered");
            }
            _ => {}
        }
    }
}
