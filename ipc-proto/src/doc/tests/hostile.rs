//! Hostile input: malformed or forged messages close only the offending link.

use super::*;

/// A host with one honest, synced replica (replica 0) to check it keeps being served.
fn host_under_attack() -> Net {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.run();
    net.take_host_evts();
    net
}

fn expect_misbehaved(net: &mut Net, peer: PeerId) {
    let evts = net.take_host_evts();
    assert!(
        matches!(evts.last(), Some(HostEvt::PeerMisbehaved { peer: p, .. }) if *p == peer),
        "{evts:?}"
    );
    // The honest replica is still served.
    net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.run();
    assert_eq!(host_names(&net.take_host_evts()), ["Accepted"]);
}

#[test]
fn hostile_replica_messages_close_only_that_link() {
    let update = crate::doc::Update::parse(&json!({"$inc": {"n": 1}})).expect("valid");
    let body = crate::wire::doc::encode_body(
        &Default::default(),
        &crate::doc::state::Log::empty(0),
        &json!({}),
    );
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("garbage", vec![vec![0xff, 1, 2]]),
        ("oversized", vec![vec![2; 70_000]]),
        ("empty", vec![vec![]]),
        (
            "chunk with no body",
            vec![encode_doc(&DocMsg::More(vec![1]))],
        ),
        (
            "patch before open",
            vec![encode_doc(&DocMsg::Patch {
                name: "d".into(),
                seq: 1,
                base: 0,
                wall_ms: 0,
                update: update.clone(),
            })],
        ),
        (
            "patch of an unknown document",
            vec![encode_doc(&DocMsg::Patch {
                name: "zz".into(),
                seq: 1,
                base: 0,
                wall_ms: 0,
                update: update.clone(),
            })],
        ),
        (
            "resync of an unopened document",
            vec![encode_doc(&DocMsg::Resync { name: "d".into() })],
        ),
        (
            "a host's message",
            vec![encode_doc(&DocMsg::Ack {
                name: "d".into(),
                seq: 1,
                version: 0,
                witnesses: 0,
            })],
        ),
        (
            "wrong chunk order: a patch inside a body",
            vec![
                encode_doc(&DocMsg::Open {
                    name: "e".into(),
                    open: 1,
                    version: None,
                    len: body.len() as u32 + 1,
                    chunk: body.clone(),
                }),
                encode_doc(&DocMsg::Resync { name: "e".into() }),
            ],
        ),
        (
            "a chunk beyond the body",
            vec![
                encode_doc(&DocMsg::Open {
                    name: "e".into(),
                    open: 1,
                    version: None,
                    len: body.len() as u32 + 1,
                    chunk: body.clone(),
                }),
                encode_doc(&DocMsg::More(vec![0, 0])),
            ],
        ),
        (
            "a body that does not decode",
            vec![encode_doc(&DocMsg::Open {
                name: "e".into(),
                open: 1,
                version: None,
                len: 3,
                chunk: vec![1, 2, 3],
            })],
        ),
        (
            "a default that is not JSON",
            vec![{
                let bad = bincode::serde::encode_to_vec(
                    (
                        Vec::<(u64, u64, u128, u64)>::new(),
                        Vec::<(u64, u64, Vec<String>)>::new(),
                        "{not json",
                    ),
                    bincode::config::standard(),
                )
                .expect("encodes");
                encode_doc(&DocMsg::Open {
                    name: "e".into(),
                    open: 1,
                    version: None,
                    len: bad.len() as u32,
                    chunk: bad,
                })
            }],
        ),
        (
            "opened twice",
            vec![
                encode_doc(&DocMsg::Open {
                    name: "e".into(),
                    open: 1,
                    version: None,
                    len: body.len() as u32,
                    chunk: body.clone(),
                }),
                encode_doc(&DocMsg::Open {
                    name: "e".into(),
                    open: 2,
                    version: None,
                    len: body.len() as u32,
                    chunk: body.clone(),
                }),
            ],
        ),
    ];
    for (what, msgs) in cases {
        let mut net = host_under_attack();
        let peer = net.reps[1].peer.expect("connected");
        for m in &msgs {
            net.host_input(HostInput::Bytes {
                peer,
                node: node(2),
                data: m,
            });
        }
        assert!(net.reps[1].peer.is_none(), "{what}: link closed");
        expect_misbehaved(&mut net, peer);
        assert_converged(&net, "d");
    }
}

#[test]
fn hostile_host_messages_close_the_link_and_the_replica_reopens_on_the_next() {
    let state = |len: u32, chunk: Vec<u8>| {
        encode_doc(&DocMsg::State {
            name: "d".into(),
            open: 99,
            version: 0,
            len,
            chunk,
        })
    };
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("garbage", vec![vec![0xff]]),
        (
            "a replica's message",
            vec![encode_doc(&DocMsg::Close { name: "d".into() })],
        ),
        (
            "a chunk with no body",
            vec![encode_doc(&DocMsg::More(vec![1]))],
        ),
        ("a state that does not decode", vec![state(2, vec![9, 9])]),
        (
            "a patch inside a body",
            vec![
                state(10, vec![0]),
                encode_doc(&DocMsg::Ack {
                    name: "d".into(),
                    seq: 1,
                    version: 0,
                    witnesses: 0,
                }),
            ],
        ),
    ];
    for (what, msgs) in cases {
        let mut net = Net::new(1, DocLimits::default()).connected();
        net.open(0, "d", json!({"n": 0}));
        net.run();
        net.take_evts(0);
        for m in &msgs {
            net.rep_input(0, ReplicaInput::Bytes(m));
        }
        let evts = net.take_evts(0);
        assert_eq!(names(&evts), ["HubMisbehaved"], "{what}");
        assert!(net.reps[0].peer.is_none(), "{what}: link closed");
        assert!(!net.reps[0].m.is_hub_up());
        // Messages about unknown documents or other openings are ignored, not misbehaviour.
        net.connect(0);
        net.run();
        net.take_evts(0);
        for m in [
            DocMsg::Patched {
                name: "other".into(),
                version: 1,
                origin: node(5),
                seq: 1,
                wall_ms: 0,
                update: crate::doc::Update::parse(&json!({"$set": {}})).expect("valid"),
            },
            DocMsg::Rejected {
                name: "d".into(),
                seq: 42,
                version: 0,
                reason: RejectReason::Unknown,
            },
            DocMsg::Refused {
                name: "d".into(),
                open: 12345,
                reason: Refusal::TooManyDocs { max: 1 },
            },
        ] {
            net.rep_input(0, ReplicaInput::Msg(m));
        }
        assert!(net.take_evts(0).is_empty(), "{what}");
        assert!(net.reps[0].m.is_synced("d"));
        assert_converged(&net, "d");
    }
}

#[test]
fn a_broadcast_that_does_not_apply_makes_the_replica_resync() {
    let mut net = Net::new(1, DocLimits::default()).connected();
    net.open(0, "d", json!({"s": "x"}));
    net.run();
    net.take_evts(0);
    net.rep_input(
        0,
        ReplicaInput::Msg(DocMsg::Patched {
            name: "d".into(),
            version: 1,
            origin: node(7),
            seq: 1,
            wall_ms: 0,
            update: crate::doc::Update::parse(&json!({"$inc": {"s": 1}})).expect("valid"),
        }),
    );
    assert_eq!(net.reps[0].up.len(), 1, "a resync request");
    net.run();
    assert_eq!(names(&net.take_evts(0)), ["Resynced"]);
    assert_converged(&net, "d");
}
