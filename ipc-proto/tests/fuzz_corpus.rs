//! The fuzz corpora, replayed as a normal test: every file under `fuzz/corpus/<target>/` goes
//! through the same code as the fuzz target (`ipc_proto::fuzzing`), so `cargo test` catches a
//! regression on any input the fuzzers ever kept.
//!
//! The seed files of `hub_ops`, `spoke_ops` and `data_ops` (and some of `data_decode`) are
//! written from the scripts below:
//! [`ArbitraryEncoder`] produces the bytes that `arbitrary` reads back as exactly that script.
//! `seeds_are_current` checks that the files match the scripts, that they decode to them and
//! that they reach the states they are about; after changing a script or the op types, rewrite
//! the files with
//!
//! ```text
//! IPC_WRITE_SEEDS=1 cargo test -p ipc-proto --test fuzz_corpus seeds_are_current
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use ipc_proto::data::Seals;
use ipc_proto::fuzzing::{
    self, CmdOp, Cred, DataCase, DataOp, DataSetup, HubCase, HubOp, HubSetup, Inherited, Link,
    PayloadOp, RecordOp, RingCase, RingOp, Seg, SpokeCase, SpokeOp, SpokeSetup, TermsOp, Tick,
    Topic,
};
use ipc_proto::ring::PoolRange;
use ipc_proto::wire::{
    self, AppCounter, CloseReason, DATA_VERSION, DataFrame, DataStats, Frame, Hello, MessageHeader,
    OwnChange, Policy, SlotRef, TopicStats, Welcome, encode_data,
};
use ipc_proto::{
    Change, Credentials, Epoch, Horizon, Keepalive, NodeId, NodeInfo, Record, Seq, Term, Uid,
};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Every file of one corpus, sorted by name.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect()
}

#[allow(clippy::disallowed_methods)] // the clock's origin; the machines only see durations
fn origin() -> Instant {
    Instant::now()
}

#[test]
fn decode_corpus_replays() {
    let files = corpus("decode");
    assert!(!files.is_empty());
    for (path, data) in files {
        eprintln!("{}", path.display());
        fuzzing::decode(&data);
    }
}

#[test]
fn hub_ops_corpus_replays() {
    let files = corpus("hub_ops");
    assert!(!files.is_empty());
    for (path, data) in files {
        eprintln!("{}", path.display());
        let _ = fuzzing::hub_ops(&data, origin());
    }
}

#[test]
fn spoke_ops_corpus_replays() {
    let files = corpus("spoke_ops");
    assert!(!files.is_empty());
    for (path, data) in files {
        eprintln!("{}", path.display());
        let _ = fuzzing::spoke_ops(&data, origin());
    }
}

#[test]
fn data_decode_corpus_replays() {
    let files = corpus("data_decode");
    assert!(!files.is_empty());
    for (path, data) in files {
        eprintln!("{}", path.display());
        fuzzing::data_decode(&data);
    }
}

#[test]
fn data_ops_corpus_replays() {
    let files = corpus("data_ops");
    assert!(!files.is_empty());
    for (path, data) in files {
        eprintln!("{}", path.display());
        let _ = fuzzing::data_ops(&data, origin());
    }
}

#[test]
fn ring_consume_corpus_replays() {
    let files = corpus("ring_consume");
    assert!(!files.is_empty());
    for (path, data) in files {
        eprintln!("{}", path.display());
        fuzzing::ring_consume(&data);
    }
}

/// The seed files are the scripts below, decode to them, and get where they say.
#[test]
fn seeds_are_current() {
    let write = std::env::var_os("IPC_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    let mut check = |target: &str, name: &str, bytes: Vec<u8>| {
        let path = corpus_dir(target).join(name);
        if write {
            std::fs::create_dir_all(corpus_dir(target)).expect("create the corpus directory");
            std::fs::write(&path, &bytes).expect("write a seed");
        } else if std::fs::read(&path).ok().as_ref() != Some(&bytes) {
            stale.push(path.display().to_string());
        }
    };
    for (name, bytes) in decode_seeds() {
        check("decode", name, bytes);
    }
    for (name, case, expect) in hub_seeds() {
        let bytes = ArbitraryEncoder::encode(|e| e.hub_case(&case));
        let decoded = HubCase::arbitrary_take_rest(Unstructured::new(&bytes));
        assert_eq!(
            decoded.as_ref(),
            Ok(&case),
            "hub seed {name} decodes to its script"
        );
        let events = fuzzing::hub_ops(&bytes, origin());
        for e in expect {
            assert!(events.contains(e), "hub seed {name}: no {e} in {events:?}");
        }
        check("hub_ops", name, bytes);
    }
    for (name, case, expect) in spoke_seeds() {
        let bytes = ArbitraryEncoder::encode(|e| e.spoke_case(&case));
        let decoded = SpokeCase::arbitrary_take_rest(Unstructured::new(&bytes));
        assert_eq!(
            decoded.as_ref(),
            Ok(&case),
            "spoke seed {name} decodes to its script"
        );
        let events = fuzzing::spoke_ops(&bytes, origin());
        for e in expect {
            assert!(
                events.contains(e),
                "spoke seed {name}: no {e} in {events:?}"
            );
        }
        check("spoke_ops", name, bytes);
    }
    for (name, bytes) in data_decode_seeds() {
        check("data_decode", name, bytes);
    }
    for (name, frame, payload) in data_frame_seeds() {
        let mut bytes = ArbitraryEncoder::encode(|e| e.data_frame(&frame));
        bytes.extend_from_slice(payload);
        let mut u = Unstructured::new(&bytes);
        let decoded = DataFrame::arbitrary(&mut u);
        assert_eq!(
            decoded.as_ref(),
            Ok(&frame),
            "data frame seed {name} decodes to its script"
        );
        assert_eq!(
            u.take_rest(),
            payload,
            "data frame seed {name}: the payload"
        );
        fuzzing::data_decode(&bytes);
        check("data_decode", name, bytes);
    }
    for (name, case, expect) in data_seeds() {
        let bytes = ArbitraryEncoder::encode(|e| e.data_case(&case));
        let decoded = DataCase::arbitrary_take_rest(Unstructured::new(&bytes));
        assert_eq!(
            decoded.as_ref(),
            Ok(&case),
            "data seed {name} decodes to its script"
        );
        let events = fuzzing::data_ops(&bytes, origin());
        for e in expect {
            assert!(events.contains(e), "data seed {name}: no {e} in {events:?}");
        }
        check("data_ops", name, bytes);
    }
    for (name, case) in ring_seeds() {
        let bytes = ArbitraryEncoder::encode(|e| e.ring_case(&case));
        let decoded = RingCase::arbitrary_take_rest(Unstructured::new(&bytes));
        assert_eq!(
            decoded.as_ref(),
            Ok(&case),
            "ring seed {name} decodes to its script"
        );
        fuzzing::run_ring(&case);
        check("ring_consume", name, bytes);
    }
    assert!(
        stale.is_empty(),
        "seed files differ from their scripts (rewrite with IPC_WRITE_SEEDS=1): {stale:?}"
    );
}

// ---- the seeds ----

/// The ring: a clean stream that wraps and blocks, returns of pool ranges, and a peer that
/// scribbles over the indexes and a descriptor.
fn ring_seeds() -> Vec<(&'static str, RingCase)> {
    let range = PoolRange {
        segment: 1,
        offset: 64,
        len: 64,
    };
    let push = |len| RingOp::Push { binding: 3, len };
    let pop = RingOp::Pop { buf: 255 };
    let case = |header, ops| RingCase {
        capacity_log2: 1,
        inline_max: 40,
        return_log2: 1,
        pool_len: 4096,
        header,
        ops,
    };
    vec![
        (
            "clean_wrap",
            case(
                vec![],
                vec![
                    push(1),
                    push(40),
                    push(9),
                    RingOp::Wait,
                    pop.clone(),
                    RingOp::Free,
                    push(0),
                    pop.clone(),
                    pop.clone(),
                    RingOp::Park,
                    pop.clone(),
                    RingOp::Park,
                ],
            ),
        ),
        (
            "pool_returns",
            case(
                vec![],
                vec![
                    RingOp::PushPool(range),
                    pop.clone(),
                    RingOp::Return(range),
                    RingOp::Return(range),
                    RingOp::Return(range),
                    RingOp::TakeReturn,
                    RingOp::TakeReturn,
                    RingOp::Wait,
                ],
            ),
        ),
        (
            "hostile_peer",
            case(
                vec![(2, 3)],
                vec![
                    push(8),
                    RingOp::Write { word: 16, value: 9 },
                    pop.clone(),
                    RingOp::Fill {
                        start: 80,
                        words: vec![u64::MAX, 1, u64::MAX],
                    },
                    pop.clone(),
                    RingOp::Write { word: 32, value: 7 },
                    RingOp::Free,
                ],
            ),
        ),
        (
            "writing_hint",
            case(
                vec![],
                vec![
                    RingOp::Writing,
                    push(4),
                    RingOp::Writing,
                    pop.clone(),
                    RingOp::Write { word: 17, value: 0 },
                    RingOp::Writing,
                    pop,
                ],
            ),
        ),
    ]
}

fn node(n: u64) -> NodeId {
    NodeId::new(n).expect("seed ids are non-zero")
}

fn info(n: u64, name: &str) -> NodeInfo {
    NodeInfo {
        id: node(n),
        name: name.into(),
        data_addr: format!("@data/{n}"),
        pid: 0,
        uid: 0,
    }
}

fn seq(term: u32, counter: u32) -> Seq {
    Seq::new(Epoch::new(term, 7), counter)
}

fn rec(term: u32, counter: u32, change: Change) -> Record {
    Record {
        seq: seq(term, counter),
        uid: Uid::new(u64::from(term) << 32 | u64::from(counter)).expect("non-zero"),
        change,
    }
}

fn sub(n: u64, topic: &str) -> Change {
    Change::Subscribe {
        node: node(n),
        topic: topic.into(),
    }
}

fn ann(n: u64, topic: &str) -> Change {
    Change::Announce {
        node: node(n),
        topic: topic.into(),
        mime: "text/plain".into(),
    }
}

fn hello(member: Option<u64>, term: u64) -> Frame {
    Frame::Hello(Hello {
        member: member.map(|n| info(n, "spoke")),
        term: Term(term),
        horizon: Horizon::default(),
        keepalive: Keepalive::default(),
    })
}

fn welcome(hub: u64, term: u64) -> Frame {
    Frame::Welcome(Welcome {
        hub: node(hub),
        term: Term(term),
        keepalive: Keepalive::default(),
    })
}

fn allowed() -> Cred {
    Cred::Allowed { pid: 4242 }
}

fn to_hub(peer: u8, frame: Frame) -> HubOp {
    HubOp::Frame {
        peer,
        frame,
        split: 0,
    }
}

fn to_spoke(frame: Frame) -> SpokeOp {
    SpokeOp::HubFrame { frame, split: 0 }
}

fn stream(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(wire::encode).collect()
}

/// Raw inputs: frame bodies (what `wire::decode` takes) and whole streams (what the deframer
/// takes), valid and not.
fn decode_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let body = |f: Frame| wire::encode(&f)[4..].to_vec();
    let history = Frame::History(vec![
        rec(1, 1, Change::Join(info(2, "a"))),
        rec(1, 2, ann(2, "t")),
        rec(1, 3, Change::Leave(node(3))),
    ]);
    let mut huge_list = vec![2, 0xFD];
    huge_list.extend_from_slice(&(1u64 << 60).to_le_bytes());
    vec![
        ("body_hello", body(hello(Some(2), 3))),
        ("body_history", body(history.clone())),
        (
            "body_own",
            body(Frame::Own(vec![
                OwnChange::Announce {
                    topic: "t".into(),
                    mime: "m".into(),
                },
                OwnChange::Unsubscribe { topic: "u".into() },
            ])),
        ),
        (
            "body_goodbye",
            body(Frame::Goodbye(CloseReason::ProtocolViolation("x".into()))),
        ),
        (
            "stream_intro",
            stream(&[
                hello(Some(2), 0),
                history,
                Frame::Own(vec![OwnChange::Subscribe { topic: "s".into() }]),
                Frame::IntroEnd,
            ]),
        ),
        (
            "stream_snapshot",
            stream(&[
                welcome(1, 2),
                Frame::Snapshot(vec![rec(2, 1, Change::Join(info(1, "hub")))]),
                Frame::SnapshotEnd(Horizon::default()),
                Frame::Minted(vec![rec(2, 2, sub(1, "t"))]),
                Frame::Heartbeat,
            ]),
        ),
        ("length_u32_max", vec![0xFF; 4]),
        ("list_of_2_pow_60", huge_list),
        ("hello_version_2", vec![1, 2, 0, 0]),
    ]
}

type Seed<C> = (&'static str, C, &'static [&'static str]);

fn hub_setup() -> HubSetup {
    HubSetup {
        rng_seed: 1,
        anyone: false,
        tombstones: None,
        inherited: None,
    }
}

fn hub_seeds() -> Vec<Seed<HubCase>> {
    let intro = [
        hello(Some(2), 0),
        Frame::History(vec![
            rec(1, 1, Change::Join(info(3, "gone"))),
            rec(1, 2, sub(3, "a")),
        ]),
        Frame::IntroEnd,
    ];
    vec![
        (
            "intro_changes_goodbye",
            HubCase {
                setup: hub_setup(),
                ops: vec![
                    HubOp::PeerUp {
                        peer: 1,
                        cred: allowed(),
                    },
                    to_hub(1, intro[0].clone()),
                    to_hub(1, intro[1].clone()),
                    HubOp::Frame {
                        peer: 1,
                        frame: Frame::Own(vec![
                            OwnChange::Announce {
                                topic: "a".into(),
                                mime: "m".into(),
                            },
                            OwnChange::Subscribe { topic: "b".into() },
                        ]),
                        split: 3,
                    },
                    to_hub(1, Frame::IntroEnd),
                    to_hub(1, Frame::Change(OwnChange::Subscribe { topic: "c".into() })),
                    to_hub(1, Frame::Change(OwnChange::Retract { topic: "a".into() })),
                    HubOp::Time(Tick::Advance(400)),
                    HubOp::Time(Tick::Fire),
                    to_hub(1, Frame::Goodbye(CloseReason::Leaving)),
                ],
            },
            &["Introduced", "NodePurged", "PeerLeft"],
        ),
        (
            "raw_intro_stream",
            HubCase {
                setup: hub_setup(),
                ops: vec![
                    HubOp::PeerUp {
                        peer: 1,
                        cred: allowed(),
                    },
                    HubOp::Bytes {
                        peer: 1,
                        data: stream(&intro),
                    },
                    HubOp::Bytes {
                        peer: 1,
                        data: stream(&[Frame::Change(OwnChange::Subscribe { topic: "x".into() })]),
                    },
                    HubOp::Bytes {
                        peer: 1,
                        data: vec![1, 0, 0, 0, 6],
                    },
                ],
            },
            &["Introduced"],
        ),
        (
            "two_spokes_duplicate_close",
            HubCase {
                setup: HubSetup {
                    tombstones: Some(1),
                    ..hub_setup()
                },
                ops: vec![
                    HubOp::PeerUp {
                        peer: 1,
                        cred: allowed(),
                    },
                    to_hub(1, hello(Some(2), 0)),
                    to_hub(1, Frame::IntroEnd),
                    HubOp::PeerUp {
                        peer: 2,
                        cred: allowed(),
                    },
                    to_hub(2, hello(Some(3), 1)),
                    to_hub(
                        2,
                        Frame::History(vec![
                            rec(1, 1, Change::Join(info(2, "stale"))),
                            rec(1, 2, Change::Join(info(4, "other"))),
                            rec(1, 3, Change::Leave(node(5))),
                        ]),
                    ),
                    to_hub(2, Frame::IntroEnd),
                    to_hub(2, Frame::Change(OwnChange::Subscribe { topic: "a".into() })),
                    to_hub(
                        2,
                        Frame::Change(OwnChange::Unsubscribe { topic: "a".into() }),
                    ),
                    HubOp::PeerUp {
                        peer: 3,
                        cred: allowed(),
                    },
                    to_hub(3, hello(Some(2), 0)),
                    HubOp::PeerDown(1),
                    HubOp::Close,
                    HubOp::Close,
                ],
            },
            &["Introduced", "PeerRefused", "PeerLeft"],
        ),
        (
            "refused_and_misbehaving",
            HubCase {
                setup: hub_setup(),
                ops: vec![
                    HubOp::PeerUp {
                        peer: 1,
                        cred: Cred::Missing,
                    },
                    HubOp::PeerUp {
                        peer: 2,
                        cred: Cred::Other(Credentials {
                            pid: 1,
                            uid: 0,
                            gid: 0,
                        }),
                    },
                    HubOp::PeerUp {
                        peer: 3,
                        cred: allowed(),
                    },
                    HubOp::Bytes {
                        peer: 3,
                        data: vec![0xFF; 4],
                    },
                    HubOp::PeerUp {
                        peer: 4,
                        cred: allowed(),
                    },
                    HubOp::Bytes {
                        peer: 4,
                        data: vec![4, 0, 0, 0, 1, 2, 0, 0],
                    },
                    HubOp::PeerUp {
                        peer: 5,
                        cred: allowed(),
                    },
                    to_hub(5, Frame::Minted(vec![])),
                    HubOp::PeerUp {
                        peer: 6,
                        cred: allowed(),
                    },
                    HubOp::PeerUp {
                        peer: 6,
                        cred: allowed(),
                    },
                    HubOp::SpokeOnly(true),
                    HubOp::SpokeOnly(false),
                ],
            },
            &["PeerRefused", "PeerMisbehaved"],
        ),
        (
            "expelled",
            HubCase {
                setup: HubSetup {
                    anyone: true,
                    ..hub_setup()
                },
                ops: vec![
                    HubOp::PeerUp {
                        peer: 1,
                        cred: Cred::Missing,
                    },
                    to_hub(1, hello(Some(2), 0)),
                    to_hub(1, Frame::IntroEnd),
                    HubOp::PeerUp {
                        peer: 2,
                        cred: Cred::Missing,
                    },
                    to_hub(2, hello(None, 0)),
                    to_hub(2, Frame::IntroEnd),
                    HubOp::Time(Tick::Advance(900)),
                    to_hub(2, Frame::Heartbeat),
                    HubOp::Time(Tick::Advance(900)),
                    to_hub(2, Frame::Heartbeat),
                    HubOp::Time(Tick::Advance(900)),
                    HubOp::Time(Tick::Early(500)),
                    HubOp::Time(Tick::Fire),
                ],
            },
            &["Introduced", "PeerExpelled"],
        ),
        (
            "inherited_history",
            HubCase {
                setup: HubSetup {
                    inherited: Some(Inherited {
                        welcome: Welcome {
                            hub: node(5),
                            term: Term(3),
                            keepalive: Keepalive::default(),
                        },
                        records: vec![
                            rec(3, 1, Change::Join(info(2, "back"))),
                            rec(3, 2, Change::Join(info(4, "lost"))),
                            rec(3, 3, ann(4, "a")),
                            rec(3, 4, Change::Leave(node(6))),
                        ],
                        horizon: Horizon::default(),
                    }),
                    ..hub_setup()
                },
                ops: vec![
                    HubOp::PeerUp {
                        peer: 1,
                        cred: allowed(),
                    },
                    to_hub(1, hello(Some(2), 3)),
                    to_hub(
                        1,
                        Frame::History(vec![
                            rec(3, 1, Change::Join(info(2, "back"))),
                            rec(3, 2, Change::Join(info(4, "lost"))),
                            rec(3, 5, sub(4, "b")),
                        ]),
                    ),
                    to_hub(1, Frame::IntroEnd),
                    HubOp::Time(Tick::Advance(300)),
                    HubOp::Time(Tick::Fire),
                ],
            },
            &["Introduced", "NodePurged"],
        ),
    ]
}

fn spoke_setup() -> SpokeSetup {
    SpokeSetup {
        rng_seed: 1,
        observer: false,
        tombstones: None,
    }
}

/// The spoke's own node is `fuzzing::LOCAL_NODE` (1), named "fuzz".
fn own_join(term: u32, counter: u32) -> Record {
    rec(
        term,
        counter,
        Change::Join(NodeInfo {
            id: fuzzing::LOCAL_NODE,
            name: "fuzz".into(),
            data_addr: "@fuzz/data".into(),
            pid: 0,
            uid: 0,
        }),
    )
}

fn spoke_seeds() -> Vec<Seed<SpokeCase>> {
    vec![
        (
            "sync_and_follow",
            SpokeCase {
                setup: spoke_setup(),
                ops: vec![
                    SpokeOp::Cmd(CmdOp::Subscribe(Topic::Known(0))),
                    SpokeOp::Cmd(CmdOp::Announce {
                        topic: Topic::Known(1),
                        mime: Topic::Known(3),
                    }),
                    SpokeOp::Cmd(CmdOp::Join),
                    SpokeOp::PeerUp(1),
                    to_spoke(welcome(2, 1)),
                    to_spoke(Frame::Snapshot(vec![
                        own_join(1, 1),
                        rec(1, 2, sub(1, "a")),
                        rec(1, 3, Change::Join(info(2, "hub"))),
                        rec(1, 4, ann(2, "x")),
                    ])),
                    to_spoke(Frame::SnapshotEnd(Horizon::default())),
                    to_spoke(Frame::Minted(vec![rec(1, 5, sub(2, "a"))])),
                    to_spoke(Frame::Relayed(vec![rec(
                        0,
                        9,
                        Change::Join(info(3, "old")),
                    )])),
                    to_spoke(Frame::Minted(vec![rec(1, 6, Change::Leave(node(2)))])),
                    to_spoke(Frame::Horizon(Horizon::default())),
                    SpokeOp::Time(Tick::Advance(600)),
                    SpokeOp::Cmd(CmdOp::Unsubscribe(Topic::Known(0))),
                    SpokeOp::Cmd(CmdOp::Retract(Topic::Raw("b".into()))),
                ],
            },
            &["Synced", "NodeJoined", "Subscribed", "NodeLeft"],
        ),
        (
            "bind_backoff_unresponsive",
            SpokeCase {
                setup: spoke_setup(),
                ops: vec![
                    SpokeOp::Cmd(CmdOp::Join),
                    SpokeOp::ConnectFailed,
                    SpokeOp::BindOutcome(false),
                    SpokeOp::Time(Tick::Fire),
                    SpokeOp::ConnectFailed,
                    SpokeOp::BindOutcome(true),
                    SpokeOp::PeerUp(0),
                    to_spoke(welcome(1, 1)),
                    to_spoke(Frame::SnapshotEnd(Horizon::default())),
                    SpokeOp::Time(Tick::Advance(900)),
                    SpokeOp::Time(Tick::Advance(900)),
                    SpokeOp::Time(Tick::Advance(900)),
                    SpokeOp::Time(Tick::Fire),
                    to_spoke(Frame::Heartbeat),
                    SpokeOp::HubDown,
                ],
            },
            &[
                "BindRequested",
                "Synced",
                "HubUnresponsive",
                "HubResponsive",
                "HubLost",
            ],
        ),
        (
            "hub_change",
            SpokeCase {
                setup: spoke_setup(),
                ops: vec![
                    SpokeOp::Cmd(CmdOp::Join),
                    SpokeOp::PeerUp(1),
                    to_spoke(welcome(2, 1)),
                    to_spoke(Frame::Snapshot(vec![
                        own_join(1, 1),
                        rec(1, 2, Change::Join(info(2, "a"))),
                        rec(1, 3, Change::Join(info(3, "b"))),
                        rec(1, 4, sub(3, "t")),
                    ])),
                    to_spoke(Frame::SnapshotEnd(Horizon::default())),
                    SpokeOp::HubDown,
                    SpokeOp::PeerUp(2),
                    to_spoke(welcome(3, 2)),
                    to_spoke(Frame::Snapshot(vec![
                        own_join(2, 1),
                        rec(2, 2, Change::Join(info(3, "b2"))),
                        rec(2, 3, Change::Join(info(4, "c"))),
                        rec(2, 4, ann(4, "t")),
                    ])),
                    to_spoke(Frame::SnapshotEnd(Horizon::default())),
                    to_spoke(Frame::Goodbye(CloseReason::HubClosing)),
                ],
            },
            &["HubChanged", "NodeLeft", "NodeJoined", "HubClosed"],
        ),
        (
            "misbehaving_hub",
            SpokeCase {
                setup: spoke_setup(),
                ops: vec![
                    SpokeOp::Cmd(CmdOp::Join),
                    SpokeOp::PeerUp(1),
                    SpokeOp::HubBytes(vec![0xFF; 4]),
                    SpokeOp::Time(Tick::Fire),
                    SpokeOp::PeerUp(2),
                    to_spoke(Frame::Minted(vec![])),
                    SpokeOp::Cmd(CmdOp::Subscribe(Topic::Known(4))),
                    SpokeOp::Cmd(CmdOp::Subscribe(Topic::Known(5))),
                    SpokeOp::Cmd(CmdOp::Join),
                    SpokeOp::Bytes {
                        peer: 5,
                        data: vec![1, 0, 0, 0, 6],
                    },
                    SpokeOp::PeerUp(6),
                ],
            },
            &["HubMisbehaved"],
        ),
        (
            "observer",
            SpokeCase {
                setup: SpokeSetup {
                    observer: true,
                    ..spoke_setup()
                },
                ops: vec![
                    SpokeOp::Cmd(CmdOp::Join),
                    SpokeOp::ConnectFailed,
                    SpokeOp::Cmd(CmdOp::Subscribe(Topic::Known(0))),
                    SpokeOp::Time(Tick::Fire),
                    SpokeOp::PeerUp(1),
                    to_spoke(welcome(2, 4)),
                    to_spoke(Frame::Snapshot(vec![rec(
                        4,
                        1,
                        Change::Join(info(2, "hub")),
                    )])),
                    to_spoke(Frame::SnapshotEnd(Horizon::default())),
                    SpokeOp::Cmd(CmdOp::Leave),
                    SpokeOp::Cmd(CmdOp::Join),
                ],
            },
            &["HubAbsent", "Synced", "Left"],
        ),
    ]
}

// ---- the data plane's seeds ----

fn header(topic: u32, seq: u64) -> MessageHeader {
    MessageHeader { topic, seq }
}

/// Raw data-link records, valid and not.
fn data_decode_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let stats = DataStats {
        published: vec![TopicStats {
            topic: "a".into(),
            peer: Some(node(2)),
            messages: 3,
            dropped: 1,
            missed: 0,
            in_flight: 2,
        }],
        received: vec![],
        rejected: 1,
        guard: Default::default(),
        witness: Default::default(),
        app: vec![AppCounter::new("exported", 7)],
    };
    // A version this build does not speak: the next one (its varint, one byte, follows the
    // length and the tag).
    let mut hello_next_version = encode_data(
        &DataFrame::Hello {
            publisher: node(2),
            rings: false,
        },
        &[],
    );
    hello_next_version[5] = u8::try_from(DATA_VERSION + 1)
        .ok()
        .filter(|v| *v < 251)
        .expect("a one-byte varint");
    vec![
        (
            "record_hello",
            encode_data(
                &DataFrame::Hello {
                    publisher: node(2),
                    rings: false,
                },
                &[],
            ),
        ),
        (
            "record_terms",
            encode_data(
                &DataFrame::Terms {
                    topic: "a".into(),
                    policy: Policy::Block { timeout_ms: 250 },
                    depth: 64,
                },
                &[],
            ),
        ),
        (
            "record_inline",
            encode_data(&DataFrame::Inline(header(1, 1)), b"payload"),
        ),
        (
            "record_pooled",
            encode_data(
                &DataFrame::Pooled {
                    header: header(1, u64::MAX),
                    segment: 3,
                    offset: 4096,
                    len: 100,
                },
                &[],
            ),
        ),
        (
            "record_release",
            encode_data(
                &DataFrame::Release(vec![
                    SlotRef {
                        segment: 1,
                        offset: 0,
                    },
                    SlotRef {
                        segment: 2,
                        offset: 8,
                    },
                    SlotRef {
                        segment: 3,
                        offset: 16,
                    },
                ]),
                &[],
            ),
        ),
        ("record_stats", encode_data(&DataFrame::Stats(stats), &[])),
        ("record_hello_next_version", hello_next_version),
        ("record_short", vec![1, 0]),
        ("record_length_mismatch", vec![5, 0, 0, 0, 10]),
        ("record_goodbye_trailing", vec![2, 0, 0, 0, 10, 0]),
    ]
}

/// Arbitrary frames (for the round trip), with the payload that follows them.
fn data_frame_seeds() -> Vec<(&'static str, DataFrame, &'static [u8])> {
    vec![
        (
            "frame_inline",
            DataFrame::Inline(header(2, 7)),
            b"an inline payload",
        ),
        (
            "frame_topic_too_long",
            DataFrame::Topic {
                id: 1,
                topic: "abcd".into(),
            },
            b"",
        ),
        (
            "frame_release_of_3",
            DataFrame::Release(vec![
                SlotRef {
                    segment: 1,
                    offset: 0,
                };
                3
            ]),
            b"",
        ),
    ]
}

fn data_setup() -> DataSetup {
    DataSetup {
        self_delivery: false,
        default_terms: None,
        tiny: false,
        retry_ms: 50,
        pool_pages: 16,
    }
}

fn terms(policy: Policy, depth: u8) -> TermsOp {
    TermsOp { policy, depth }
}

/// A frame arriving on a link, without fds.
fn frame_on(link: Link, frame: DataFrame) -> DataOp {
    DataOp::Record {
        link,
        record: RecordOp::Frame {
            frame,
            payload: vec![],
        },
        segments: vec![],
    }
}

const FRESH_SEALS: Seals = Seals {
    shrink: true,
    grow: true,
    write: true,
    future_write: false,
};

const POOL_SEALS: Seals = Seals {
    shrink: true,
    grow: true,
    write: false,
    future_write: true,
};

fn publish(payload: PayloadOp) -> DataOp {
    DataOp::Publish {
        topic: Topic::Known(0),
        payload,
        expired: false,
    }
}

fn pooled(len: u16, offset: u16) -> PayloadOp {
    PayloadOp::Pooled { len, offset }
}

fn data_seeds() -> Vec<Seed<DataCase>> {
    let a = Topic::Known(0);
    let from = Link::In(0);
    vec![
        (
            "publish_all_modes",
            DataCase {
                setup: data_setup(),
                ops: vec![
                    // Nodes 2 and 3 take "a".
                    DataOp::Routes(vec![(1, 0), (2, 0)]),
                    DataOp::Advertise(a.clone()),
                    DataOp::Up(Link::Out(0)),
                    frame_on(
                        Link::Out(0),
                        DataFrame::Terms {
                            topic: "a".into(),
                            policy: Policy::DropOldest,
                            depth: 4,
                        },
                    ),
                    publish(PayloadOp::Inline(b"hello".to_vec())),
                    publish(PayloadOp::Fresh(100)),
                    publish(pooled(100, 0)),
                    DataOp::SubRelease {
                        link: 0,
                        picks: vec![0],
                    },
                    // The second link comes up late: its queue goes out.
                    DataOp::Up(Link::Out(0)),
                    DataOp::SubRelease {
                        link: 1,
                        picks: vec![0],
                    },
                    DataOp::Time(Tick::Advance(100)),
                    DataOp::Retire { idle_ms: 50 },
                    frame_on(Link::Out(0), DataFrame::Goodbye),
                    DataOp::Time(Tick::Fire),
                ],
            },
            &[
                "Connect",
                "Hello",
                "Inline",
                "Fresh",
                "Segment",
                "Pooled",
                "Retire",
                "Release",
                "Subscriber",
            ],
        ),
        (
            "subscribe_receive",
            DataCase {
                setup: data_setup(),
                ops: vec![
                    DataOp::Take {
                        topic: a.clone(),
                        terms: terms(Policy::DropOldest, 7),
                    },
                    DataOp::Up(from),
                    frame_on(
                        from,
                        DataFrame::Hello {
                            publisher: node(2),
                            rings: false,
                        },
                    ),
                    frame_on(
                        from,
                        DataFrame::Topic {
                            id: 1,
                            topic: "a".into(),
                        },
                    ),
                    DataOp::Record {
                        link: from,
                        record: RecordOp::Frame {
                            frame: DataFrame::Inline(header(1, 1)),
                            payload: b"hi".to_vec(),
                        },
                        segments: vec![],
                    },
                    DataOp::Record {
                        link: from,
                        record: RecordOp::Frame {
                            frame: DataFrame::Fresh {
                                header: header(1, 2),
                                len: 10,
                            },
                            payload: vec![],
                        },
                        segments: vec![Seg {
                            size: 4096,
                            seals: FRESH_SEALS,
                        }],
                    },
                    DataOp::Record {
                        link: from,
                        record: RecordOp::Frame {
                            frame: DataFrame::Segment { id: 3, size: 4096 },
                            payload: vec![],
                        },
                        segments: vec![Seg {
                            size: 4096,
                            seals: POOL_SEALS,
                        }],
                    },
                    frame_on(
                        from,
                        DataFrame::Pooled {
                            header: header(1, 4),
                            segment: 3,
                            offset: 0,
                            len: 100,
                        },
                    ),
                    DataOp::Release {
                        link: Some(0),
                        picks: vec![0],
                        forged: None,
                    },
                    frame_on(from, DataFrame::Retire { id: 3 }),
                    DataOp::Leave(a.clone()),
                    frame_on(from, DataFrame::Inline(header(1, 5))),
                    DataOp::Down(from),
                ],
            },
            &["Terms", "Deliver", "Release"],
        ),
        (
            "misbehaving_links",
            DataCase {
                setup: DataSetup {
                    tiny: true,
                    ..data_setup()
                },
                ops: vec![
                    DataOp::Take {
                        topic: a.clone(),
                        terms: terms(Policy::DropNewest, 1),
                    },
                    DataOp::Up(Link::In(0)),
                    DataOp::Record {
                        link: Link::In(0),
                        record: RecordOp::Raw(vec![1, 2, 3]),
                        segments: vec![],
                    },
                    DataOp::Up(Link::In(1)),
                    frame_on(Link::In(1), DataFrame::Inline(header(1, 1))),
                    DataOp::Up(Link::In(2)),
                    frame_on(
                        Link::In(2),
                        DataFrame::Hello {
                            publisher: node(3),
                            rings: false,
                        },
                    ),
                    frame_on(
                        Link::In(2),
                        DataFrame::Fresh {
                            header: header(1, 1),
                            len: 1,
                        },
                    ),
                    DataOp::Up(Link::In(3)),
                    frame_on(
                        Link::In(3),
                        DataFrame::Hello {
                            publisher: node(4),
                            rings: false,
                        },
                    ),
                    DataOp::Record {
                        link: Link::In(3),
                        record: RecordOp::Frame {
                            frame: DataFrame::Segment { id: 1, size: 4096 },
                            payload: vec![],
                        },
                        segments: vec![Seg {
                            size: 10,
                            seals: Seals::default(),
                        }],
                    },
                    DataOp::Up(Link::In(4)),
                    DataOp::Record {
                        link: Link::In(4),
                        record: RecordOp::Frame {
                            frame: DataFrame::Hello {
                                publisher: node(5),
                                rings: false,
                            },
                            payload: vec![],
                        },
                        segments: vec![
                            Seg {
                                size: 1,
                                seals: FRESH_SEALS,
                            },
                            Seg {
                                size: 2,
                                seals: POOL_SEALS,
                            },
                        ],
                    },
                    DataOp::Record {
                        link: Link::In(5),
                        record: RecordOp::Raw(vec![]),
                        segments: vec![Seg {
                            size: 0,
                            seals: FRESH_SEALS,
                        }],
                    },
                    DataOp::Up(Link::Stale(3)),
                    DataOp::Routes(vec![(1, 0)]),
                    DataOp::Advertise(a.clone()),
                    DataOp::Up(Link::Out(0)),
                    frame_on(
                        Link::Out(0),
                        DataFrame::Release(vec![SlotRef {
                            segment: 1,
                            offset: 0,
                        }]),
                    ),
                    DataOp::Rejected(Link::In(6)),
                    // A new link to the subscriber that was thrown out.
                    DataOp::Routes(vec![(1, 0)]),
                    DataOp::Down(Link::Out(0)),
                    DataOp::Time(Tick::Early(5)),
                    DataOp::Time(Tick::Fire),
                ],
            },
            &["PeerMisbehaved", "Disconnect", "Connect", "Release"],
        ),
        (
            "self_delivery_blocked",
            DataCase {
                setup: DataSetup {
                    self_delivery: true,
                    pool_pages: 8,
                    ..data_setup()
                },
                ops: vec![
                    // This node (1) and node 2 take "a".
                    DataOp::Routes(vec![(0, 0), (1, 0)]),
                    DataOp::Take {
                        topic: a.clone(),
                        terms: terms(Policy::DropOldest, 4),
                    },
                    DataOp::Advertise(a.clone()),
                    DataOp::Up(Link::Out(0)),
                    frame_on(
                        Link::Out(0),
                        DataFrame::Terms {
                            topic: "a".into(),
                            policy: Policy::Block { timeout_ms: 100 },
                            depth: 2,
                        },
                    ),
                    DataOp::Blocked(Link::Out(0)),
                    publish(pooled(10, 5)),
                    publish(pooled(10, 5)),
                    publish(pooled(5000, 0)),
                    DataOp::Release {
                        link: None,
                        picks: vec![0, 0],
                        forged: None,
                    },
                    DataOp::Writable(Link::Out(0)),
                    DataOp::SubRelease {
                        link: 0,
                        picks: vec![0, 0, 0],
                    },
                    DataOp::Release {
                        link: None,
                        picks: vec![0],
                        forged: Some(SlotRef {
                            segment: 9,
                            offset: 0,
                        }),
                    },
                    DataOp::Publish {
                        topic: a.clone(),
                        payload: PayloadOp::Inline(vec![1]),
                        expired: true,
                    },
                ],
            },
            &["Deliver", "Room", "Pooled", "Release"],
        ),
        (
            "drop_oldest_while_connecting",
            DataCase {
                setup: DataSetup {
                    default_terms: Some(terms(Policy::DropOldest, 1)),
                    pool_pages: 4,
                    ..data_setup()
                },
                ops: vec![
                    DataOp::Routes(vec![(1, 0)]),
                    DataOp::Advertise(a.clone()),
                    // The second message drops the first, whose segment is free again.
                    publish(pooled(100, 0)),
                    publish(pooled(100, 0)),
                    DataOp::Retire { idle_ms: 0 },
                    DataOp::Up(Link::Out(0)),
                    DataOp::SubRelease {
                        link: 0,
                        picks: vec![0],
                    },
                    DataOp::Time(Tick::Advance(10)),
                    DataOp::Retire { idle_ms: 5 },
                ],
            },
            &["Release", "Segment", "Pooled", "Retire"],
        ),
        (
            "stats_and_refusals",
            DataCase {
                setup: data_setup(),
                ops: vec![
                    publish(PayloadOp::Fresh(1)),
                    DataOp::Take {
                        topic: Topic::Known(4),
                        terms: terms(Policy::DropNewest, 0),
                    },
                    DataOp::Advertise(Topic::Known(5)),
                    DataOp::Up(Link::In(0)),
                    frame_on(Link::In(0), DataFrame::StatsRequest),
                    DataOp::Up(Link::In(0)),
                    frame_on(Link::In(0), DataFrame::Goodbye),
                ],
            },
            &["Stats", "Disconnect", "PeerMisbehaved"],
        ),
    ]
}

// ---- writing inputs that `arbitrary` reads back ----

/// Writes the bytes from which `arbitrary` 1.x builds a given value: the inverse of its
/// `Unstructured`, for the types of the op targets. Integers are little-endian from the front,
/// `bool` is a byte, enum variants a `u32` scaled by the variant count, collections a
/// "continue" byte before each element, and string lengths come from the *end* of the data,
/// which is why [`encode`](Self::encode) lays the lengths out last. `seeds_are_current` checks
/// the result by decoding it.
#[derive(Default)]
struct ArbitraryEncoder {
    front: Vec<u8>,
    /// Each string length, with how much of `front` had been read when it was asked for.
    lens: Vec<(usize, usize)>,
}

impl ArbitraryEncoder {
    fn encode(f: impl FnOnce(&mut Self)) -> Vec<u8> {
        let mut e = Self::default();
        f(&mut e);
        e.finish()
    }

    fn finish(self) -> Vec<u8> {
        // A length read takes 1, 2 or 4 bytes from the end depending on how much data is left
        // then, which depends on the widths of the later reads: iterate to the fixed point.
        let mut widths = vec![1usize; self.lens.len()];
        let remaining = |widths: &[usize], i: usize| {
            self.front.len() - self.lens[i].0 + widths[i..].iter().sum::<usize>()
        };
        loop {
            let next: Vec<usize> = (0..self.lens.len())
                .map(|i| match remaining(&widths, i) {
                    r if r <= 256 => 1,
                    r if r <= 65_537 => 2,
                    _ => 4,
                })
                .collect();
            if next == widths {
                break;
            }
            widths = next;
        }
        let mut back = Vec::new();
        for i in (0..self.lens.len()).rev() {
            let (w, len) = (widths[i], self.lens[i].1);
            let max_size = remaining(&widths, i) - w;
            assert!(len <= max_size, "a string longer than the data after it");
            // Only as many bytes as `max_size` needs are read, most significant first.
            let used = (1..=w)
                .find(|&n| n == w || max_size >> (8 * n) == 0)
                .unwrap_or(w);
            let be = (len as u64).to_be_bytes();
            let mut field = be[8 - used..].to_vec();
            field.resize(w, 0);
            back.extend(field);
        }
        let mut out = self.front;
        out.extend(back);
        out
    }

    fn u8(&mut self, v: u8) {
        self.front.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.front.extend(v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.front.extend(v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.front.extend(v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    /// Variant `index` of an enum of `count` variants: derive reads `(u32 * count) >> 32`.
    fn variant(&mut self, index: u64, count: u64) {
        let v = (index << 32).div_ceil(count);
        let v = u32::try_from(v).expect("index < count");
        assert_eq!((u64::from(v) * count) >> 32, index);
        self.u32(v);
    }
    fn option<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        self.bool(v.is_some());
        if let Some(v) = v {
            f(self, v);
        }
    }
    fn seq_of<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        for item in items {
            self.bool(true);
            f(self, item);
        }
        self.bool(false);
    }
    fn bytes(&mut self, data: &[u8]) {
        self.seq_of(data, |e, b| e.u8(*b));
    }
    fn string(&mut self, s: &str) {
        self.lens.push((self.front.len(), s.len()));
        self.front.extend(s.as_bytes());
    }

    // ---- the protocol's types, fields in declaration order ----

    fn node(&mut self, id: NodeId) {
        self.u64(id.get());
    }
    fn term(&mut self, t: Term) {
        self.u64(t.0);
    }
    fn epoch(&mut self, e: Epoch) {
        self.u32(e.term());
        self.u32(e.salt());
    }
    fn seq(&mut self, s: Seq) {
        self.epoch(s.epoch());
        self.u32(s.counter());
    }
    fn horizon(&mut self, h: &Horizon) {
        // Its fields are private: the seeds use the empty horizon only.
        assert_eq!(h, &Horizon::default(), "seeds use empty horizons");
        self.epoch(Epoch::default());
        self.bool(false);
    }
    fn info(&mut self, i: &NodeInfo) {
        self.node(i.id);
        self.string(&i.name);
        self.string(&i.data_addr);
        self.u32(i.pid);
        self.u32(i.uid);
    }
    fn change(&mut self, c: &Change) {
        match c {
            Change::Join(i) => {
                self.variant(0, 6);
                self.info(i);
            }
            Change::Leave(n) => {
                self.variant(1, 6);
                self.node(*n);
            }
            Change::Announce { node, topic, mime } => {
                self.variant(2, 6);
                self.node(*node);
                self.string(topic);
                self.string(mime);
            }
            Change::Retract { node, topic } => {
                self.variant(3, 6);
                self.node(*node);
                self.string(topic);
            }
            Change::Subscribe { node, topic } => {
                self.variant(4, 6);
                self.node(*node);
                self.string(topic);
            }
            Change::Unsubscribe { node, topic } => {
                self.variant(5, 6);
                self.node(*node);
                self.string(topic);
            }
        }
    }
    fn record(&mut self, r: &Record) {
        self.seq(r.seq);
        self.u64(r.uid.get());
        self.change(&r.change);
    }
    fn own(&mut self, c: &OwnChange) {
        match c {
            OwnChange::Announce { topic, mime } => {
                self.variant(0, 4);
                self.string(topic);
                self.string(mime);
            }
            OwnChange::Retract { topic } => {
                self.variant(1, 4);
                self.string(topic);
            }
            OwnChange::Subscribe { topic } => {
                self.variant(2, 4);
                self.string(topic);
            }
            OwnChange::Unsubscribe { topic } => {
                self.variant(3, 4);
                self.string(topic);
            }
        }
    }
    fn reason(&mut self, r: &CloseReason) {
        match r {
            CloseReason::Leaving => self.variant(0, 7),
            CloseReason::HubClosing => self.variant(1, 7),
            CloseReason::VersionMismatch { theirs, ours } => {
                self.variant(2, 7);
                self.u16(*theirs);
                self.u16(*ours);
            }
            CloseReason::NotAllowed { uid, gid } => {
                self.variant(3, 7);
                self.u32(*uid);
                self.u32(*gid);
            }
            CloseReason::DuplicateNode(n) => {
                self.variant(4, 7);
                self.node(*n);
            }
            CloseReason::Expelled => self.variant(5, 7),
            CloseReason::ProtocolViolation(s) => {
                self.variant(6, 7);
                self.string(s);
            }
            other => panic!("no seed encoding for {other:?}"),
        }
    }
    fn welcome(&mut self, w: &Welcome) {
        self.node(w.hub);
        self.term(w.term);
        self.keepalive(&w.keepalive);
    }
    /// arbitrary's `Duration`: the seconds as a `u64`, then the nanoseconds from
    /// `int_in_range(0..=999_999_999)`, which reads 4 bytes big-endian.
    fn duration(&mut self, d: Duration) {
        self.u64(d.as_secs());
        self.front.extend(d.subsec_nanos().to_be_bytes());
    }
    fn keepalive(&mut self, k: &Keepalive) {
        self.duration(k.heartbeat);
        self.duration(k.limit);
    }
    fn frame(&mut self, f: &Frame) {
        let records = |e: &mut Self, rs: &Vec<Record>| e.seq_of(rs, Self::record);
        match f {
            Frame::Hello(h) => {
                self.variant(0, 15);
                self.option(h.member.as_ref(), Self::info);
                self.term(h.term);
                self.horizon(&h.horizon);
                self.keepalive(&h.keepalive);
            }
            Frame::History(rs) => {
                self.variant(1, 15);
                records(self, rs);
            }
            Frame::Own(cs) => {
                self.variant(2, 15);
                self.seq_of(cs, Self::own);
            }
            Frame::IntroEnd => self.variant(3, 13),
            Frame::Change(c) => {
                self.variant(4, 15);
                self.own(c);
            }
            Frame::Heartbeat => self.variant(5, 13),
            Frame::Goodbye(r) => {
                self.variant(6, 15);
                self.reason(r);
            }
            Frame::Welcome(w) => {
                self.variant(7, 15);
                self.welcome(w);
            }
            Frame::Snapshot(rs) => {
                self.variant(8, 15);
                records(self, rs);
            }
            Frame::SnapshotEnd(h) => {
                self.variant(9, 15);
                self.horizon(h);
            }
            Frame::Minted(rs) => {
                self.variant(10, 15);
                records(self, rs);
            }
            Frame::Relayed(rs) => {
                self.variant(11, 15);
                records(self, rs);
            }
            Frame::Horizon(h) => {
                self.variant(12, 15);
                self.horizon(h);
            }
            Frame::Doc(d) => {
                self.variant(13, 15);
                self.seq_of(d, |e, b| e.u8(*b));
            }
            Frame::DocReady => self.variant(14, 15),
        }
    }

    // ---- the op targets' types ----

    fn tick(&mut self, t: &Tick) {
        match t {
            Tick::Advance(ms) => {
                self.variant(0, 3);
                self.u16(*ms);
            }
            Tick::Fire => self.variant(1, 3),
            Tick::Early(ms) => {
                self.variant(2, 3);
                self.u16(*ms);
            }
        }
    }
    fn cred(&mut self, c: &Cred) {
        match c {
            Cred::Missing => self.variant(0, 3),
            Cred::Allowed { pid } => {
                self.variant(1, 3);
                self.u32(*pid);
            }
            Cred::Other(c) => {
                self.variant(2, 3);
                self.u32(c.pid);
                self.u32(c.uid);
                self.u32(c.gid);
            }
        }
    }
    fn hub_case(&mut self, c: &HubCase) {
        let s = &c.setup;
        self.u64(s.rng_seed);
        self.bool(s.anyone);
        self.option(s.tombstones.as_ref(), |e, n| e.u8(*n));
        self.option(s.inherited.as_ref(), |e, i| {
            e.welcome(&i.welcome);
            e.seq_of(&i.records, Self::record);
            e.horizon(&i.horizon);
        });
        // The op list takes the rest: no terminator.
        for op in &c.ops {
            self.bool(true);
            self.hub_op(op);
        }
    }
    fn hub_op(&mut self, op: &HubOp) {
        match op {
            HubOp::PeerUp { peer, cred } => {
                self.variant(0, 7);
                self.u8(*peer);
                self.cred(cred);
            }
            HubOp::PeerDown(p) => {
                self.variant(1, 7);
                self.u8(*p);
            }
            HubOp::Bytes { peer, data } => {
                self.variant(2, 7);
                self.u8(*peer);
                self.bytes(data);
            }
            HubOp::Frame { peer, frame, split } => {
                self.variant(3, 7);
                self.u8(*peer);
                self.frame(frame);
                self.u8(*split);
            }
            HubOp::Time(t) => {
                self.variant(4, 7);
                self.tick(t);
            }
            HubOp::Close => self.variant(5, 7),
            HubOp::SpokeOnly(b) => {
                self.variant(6, 7);
                self.bool(*b);
            }
        }
    }
    fn topic(&mut self, t: &Topic) {
        match t {
            Topic::Known(n) => {
                self.variant(0, 2);
                self.u8(*n);
            }
            Topic::Raw(s) => {
                self.variant(1, 2);
                self.string(s);
            }
        }
    }
    fn cmd(&mut self, c: &CmdOp) {
        match c {
            CmdOp::Join => self.variant(0, 6),
            CmdOp::Leave => self.variant(1, 6),
            CmdOp::Announce { topic, mime } => {
                self.variant(2, 6);
                self.topic(topic);
                self.topic(mime);
            }
            CmdOp::Retract(t) => {
                self.variant(3, 6);
                self.topic(t);
            }
            CmdOp::Subscribe(t) => {
                self.variant(4, 6);
                self.topic(t);
            }
            CmdOp::Unsubscribe(t) => {
                self.variant(5, 6);
                self.topic(t);
            }
        }
    }
    fn spoke_case(&mut self, c: &SpokeCase) {
        let s = &c.setup;
        self.u64(s.rng_seed);
        self.bool(s.observer);
        self.option(s.tombstones.as_ref(), |e, n| e.u8(*n));
        for op in &c.ops {
            self.bool(true);
            self.spoke_op(op);
        }
    }
    fn spoke_op(&mut self, op: &SpokeOp) {
        match op {
            SpokeOp::Cmd(c) => {
                self.variant(0, 10);
                self.cmd(c);
            }
            SpokeOp::ConnectFailed => self.variant(1, 10),
            SpokeOp::BindOutcome(won) => {
                self.variant(2, 10);
                self.bool(*won);
            }
            SpokeOp::PeerUp(p) => {
                self.variant(3, 10);
                self.u8(*p);
            }
            SpokeOp::PeerDown(p) => {
                self.variant(4, 10);
                self.u8(*p);
            }
            SpokeOp::HubDown => self.variant(5, 10),
            SpokeOp::Bytes { peer, data } => {
                self.variant(6, 10);
                self.u8(*peer);
                self.bytes(data);
            }
            SpokeOp::HubBytes(data) => {
                self.variant(7, 10);
                self.bytes(data);
            }
            SpokeOp::HubFrame { frame, split } => {
                self.variant(8, 10);
                self.frame(frame);
                self.u8(*split);
            }
            SpokeOp::Time(t) => {
                self.variant(9, 10);
                self.tick(t);
            }
        }
    }

    // ---- the data plane's types ----

    fn policy(&mut self, p: &Policy) {
        match p {
            Policy::Block { timeout_ms } => {
                self.variant(0, 3);
                self.u32(*timeout_ms);
            }
            Policy::DropOldest => self.variant(1, 3),
            Policy::DropNewest => self.variant(2, 3),
        }
    }
    fn header(&mut self, h: &MessageHeader) {
        self.u32(h.topic);
        self.u64(h.seq);
    }
    fn slot(&mut self, s: &SlotRef) {
        self.u64(s.segment);
        self.u64(s.offset);
    }
    fn topic_stats(&mut self, t: &TopicStats) {
        self.string(&t.topic);
        self.option(t.peer.as_ref(), |e, n| e.node(*n));
        self.u64(t.messages);
        self.u64(t.dropped);
        self.u64(t.missed);
        self.u64(t.in_flight);
    }
    fn data_frame(&mut self, f: &DataFrame) {
        match f {
            DataFrame::Hello { publisher, rings } => {
                self.variant(0, 13);
                self.node(*publisher);
                self.bool(*rings);
            }
            DataFrame::Terms {
                topic,
                policy,
                depth,
            } => {
                self.variant(1, 13);
                self.string(topic);
                self.policy(policy);
                self.u32(*depth);
            }
            DataFrame::Topic { id, topic } => {
                self.variant(2, 13);
                self.u32(*id);
                self.string(topic);
            }
            DataFrame::Inline(h) => {
                self.variant(3, 13);
                self.header(h);
            }
            DataFrame::Fresh { header, len } => {
                self.variant(4, 13);
                self.header(header);
                self.u64(*len);
            }
            DataFrame::Segment { id, size } => {
                self.variant(5, 13);
                self.u64(*id);
                self.u64(*size);
            }
            DataFrame::Pooled {
                header,
                segment,
                offset,
                len,
            } => {
                self.variant(6, 13);
                self.header(header);
                self.u64(*segment);
                self.u64(*offset);
                self.u64(*len);
            }
            DataFrame::Release(refs) => {
                self.variant(7, 13);
                self.seq_of(refs, Self::slot);
            }
            DataFrame::Retire { id } => {
                self.variant(8, 13);
                self.u64(*id);
            }
            DataFrame::Goodbye => self.variant(9, 13),
            DataFrame::StatsRequest => self.variant(10, 13),
            DataFrame::Stats(s) => {
                self.variant(11, 13);
                self.seq_of(&s.published, Self::topic_stats);
                self.seq_of(&s.received, Self::topic_stats);
                self.u64(s.rejected);
            }
            DataFrame::Last(h) => {
                self.variant(12, 13);
                self.header(h);
            }
        }
    }
    fn terms(&mut self, t: &TermsOp) {
        self.policy(&t.policy);
        self.u8(t.depth);
    }
    fn link(&mut self, l: &Link) {
        match l {
            Link::Out(n) => {
                self.variant(0, 3);
                self.u8(*n);
            }
            Link::In(n) => {
                self.variant(1, 3);
                self.u8(*n);
            }
            Link::Stale(n) => {
                self.variant(2, 3);
                self.u8(*n);
            }
        }
    }
    fn payload(&mut self, p: &PayloadOp) {
        match p {
            PayloadOp::Inline(bytes) => {
                self.variant(0, 3);
                self.bytes(bytes);
            }
            PayloadOp::Fresh(len) => {
                self.variant(1, 3);
                self.u16(*len);
            }
            PayloadOp::Pooled { len, offset } => {
                self.variant(2, 3);
                self.u16(*len);
                self.u16(*offset);
            }
        }
    }
    fn seg(&mut self, s: &Seg) {
        self.u64(s.size);
        self.bool(s.seals.shrink);
        self.bool(s.seals.grow);
        self.bool(s.seals.write);
        self.bool(s.seals.future_write);
    }
    fn pool_range(&mut self, r: &PoolRange) {
        self.u64(r.segment);
        self.u64(r.offset);
        self.u64(r.len);
    }
    fn ring_case(&mut self, c: &RingCase) {
        self.u8(c.capacity_log2);
        self.u8(c.inline_max);
        self.u8(c.return_log2);
        self.u16(c.pool_len);
        self.seq_of(&c.header, |e, &(w, v)| {
            e.u8(w);
            e.u64(v);
        });
        for op in &c.ops {
            self.bool(true);
            self.ring_op(op);
        }
    }
    fn ring_op(&mut self, op: &RingOp) {
        const N: u64 = 11;
        match op {
            RingOp::Push { binding, len } => {
                self.variant(0, N);
                self.u32(*binding);
                self.u8(*len);
            }
            RingOp::PushPool(r) => {
                self.variant(1, N);
                self.pool_range(r);
            }
            RingOp::Pop { buf } => {
                self.variant(2, N);
                self.u8(*buf);
            }
            RingOp::Park => self.variant(3, N),
            RingOp::Wait => self.variant(4, N),
            RingOp::Return(r) => {
                self.variant(5, N);
                self.pool_range(r);
            }
            RingOp::TakeReturn => self.variant(6, N),
            RingOp::Free => self.variant(7, N),
            RingOp::Write { word, value } => {
                self.variant(8, N);
                self.u16(*word);
                self.u64(*value);
            }
            RingOp::Fill { start, words } => {
                self.variant(9, N);
                self.u16(*start);
                self.seq_of(words, |e, w| e.u64(*w));
            }
            RingOp::Writing => self.variant(10, N),
        }
    }
    fn data_case(&mut self, c: &DataCase) {
        let s = &c.setup;
        self.bool(s.self_delivery);
        self.option(s.default_terms.as_ref(), Self::terms);
        self.bool(s.tiny);
        self.u8(s.retry_ms);
        self.u8(s.pool_pages);
        for op in &c.ops {
            self.bool(true);
            self.data_op(op);
        }
    }
    fn data_op(&mut self, op: &DataOp) {
        const N: u64 = 16;
        match op {
            DataOp::Routes(pairs) => {
                self.variant(0, N);
                self.seq_of(pairs, |e, &(n, t)| {
                    e.u8(n);
                    e.u8(t);
                });
            }
            DataOp::Advertise(t) => {
                self.variant(1, N);
                self.topic(t);
            }
            DataOp::Withdraw(t) => {
                self.variant(2, N);
                self.topic(t);
            }
            DataOp::Take { topic, terms } => {
                self.variant(3, N);
                self.topic(topic);
                self.terms(terms);
            }
            DataOp::Leave(t) => {
                self.variant(4, N);
                self.topic(t);
            }
            DataOp::Publish {
                topic,
                payload,
                expired,
            } => {
                self.variant(5, N);
                self.topic(topic);
                self.payload(payload);
                self.bool(*expired);
            }
            DataOp::Release {
                link,
                picks,
                forged,
            } => {
                self.variant(6, N);
                self.option(link.as_ref(), |e, n| e.u8(*n));
                self.bytes(picks);
                self.option(forged.as_ref(), Self::slot);
            }
            DataOp::Retire { idle_ms } => {
                self.variant(7, N);
                self.u16(*idle_ms);
            }
            DataOp::Up(l) => {
                self.variant(8, N);
                self.link(l);
            }
            DataOp::Down(l) => {
                self.variant(9, N);
                self.link(l);
            }
            DataOp::Record {
                link,
                record,
                segments,
            } => {
                self.variant(10, N);
                self.link(link);
                match record {
                    RecordOp::Raw(bytes) => {
                        self.variant(0, 2);
                        self.bytes(bytes);
                    }
                    RecordOp::Frame { frame, payload } => {
                        self.variant(1, 2);
                        self.data_frame(frame);
                        self.bytes(payload);
                    }
                }
                self.seq_of(segments, Self::seg);
            }
            DataOp::SubRelease { link, picks } => {
                self.variant(11, N);
                self.u8(*link);
                self.bytes(picks);
            }
            DataOp::Blocked(l) => {
                self.variant(12, N);
                self.link(l);
            }
            DataOp::Writable(l) => {
                self.variant(13, N);
                self.link(l);
            }
            DataOp::Rejected(l) => {
                self.variant(14, N);
                self.link(l);
            }
            DataOp::Time(t) => {
                self.variant(15, N);
                self.tick(t);
            }
        }
    }
}

/// `doc_bytes` on real document messages (each whole, cut short, and with a byte flipped) and on
/// a few shapes of garbage: the host and the replica take them all without panicking.
#[test]
fn doc_bytes_takes_real_and_broken_messages() {
    use ipc_proto::doc::{DocMsg, RejectReason, Update};
    use ipc_proto::wire::encode_doc;
    let update = Update::parse(&serde_json::json!({"$inc": {"n": 1}, "$set": {"a.1": "x"}}))
        .expect("a valid update");
    let node = NodeId::new(7).expect("non-zero");
    let messages = [
        DocMsg::Open {
            name: "d".into(),
            open: 1,
            version: None,
            len: 40,
            chunk: b"{\"n\":1}".to_vec(),
        },
        DocMsg::Patch {
            name: "d".into(),
            seq: 1,
            base: 0,
            wall_ms: 5,
            update: update.clone(),
        },
        DocMsg::Patched {
            name: "d".into(),
            version: 1,
            origin: node,
            seq: 1,
            wall_ms: 5,
            update,
        },
        DocMsg::Rejected {
            name: "d".into(),
            seq: 1,
            version: 3,
            reason: RejectReason::Earlier,
        },
        DocMsg::More(vec![1, 2, 3]),
        DocMsg::Resync { name: "d".into() },
        DocMsg::Close { name: "d".into() },
    ];
    let frame = |m: &[u8]| {
        let mut out = vec![u8::try_from(m.len()).expect("seeds are short")];
        out.extend_from_slice(m);
        out
    };
    let mut all = Vec::new();
    for m in &messages {
        let bytes = encode_doc(m);
        fuzzing::doc_bytes(&frame(&bytes), origin());
        fuzzing::doc_bytes(&frame(&bytes[..bytes.len() / 2]), origin());
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x5a;
            fuzzing::doc_bytes(&frame(&flipped), origin());
        }
        all.extend(frame(&bytes));
    }
    fuzzing::doc_bytes(&all, origin());
    fuzzing::doc_bytes(&[], origin());
    fuzzing::doc_bytes(&[255; 600], origin());
    fuzzing::doc_bytes(&[0; 64], origin());
}
