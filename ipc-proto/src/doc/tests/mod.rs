//! Tests of the document machines: scenarios here, on the deterministic network of [`net`];
//! random schedules with hub crashes in [`sim`].

mod net;
mod sim;
mod witness;

use serde_json::json;

use self::net::{Net, host_names, names, node, t0};
use crate::doc::{
    DocError, DocEvt, DocHost, DocLimits, DocReplica, HostConfig, HostEvt, HostInput, HostOutput,
    Operator, PatchId, Path, Refusal, RejectReason, ReplicaConfig, ReplicaInput, ReplicaOutput,
    Scope, UpdateError, ValueKind, differs_at,
};
use crate::ids::PeerId;
use crate::wire::{DocMsg, encode_doc};

fn p(s: &str) -> Path {
    s.parse().expect("test path is valid")
}

fn accepted(evts: &[DocEvt]) -> Vec<(PatchId, u64)> {
    evts.iter()
        .filter_map(|e| match e {
            DocEvt::Accepted { id, version, .. } => Some((*id, *version)),
            _ => None,
        })
        .collect()
}

fn rejected(evts: &[DocEvt]) -> Vec<(PatchId, RejectReason)> {
    evts.iter()
        .filter_map(|e| match e {
            DocEvt::Rejected { id, reason, .. } => Some((*id, reason.clone())),
            _ => None,
        })
        .collect()
}

/// Every live replica holds the host's value and version, with nothing pending.
fn assert_converged(net: &Net, name: &str) {
    let host = net.host();
    for (i, r) in net.reps.iter().enumerate().filter(|(_, r)| r.alive) {
        if !r.m.is_open(name) {
            continue;
        }
        assert_eq!(r.m.value(name), host.value(name), "replica {i} local value");
        assert_eq!(
            r.m.confirmed(name),
            host.value(name),
            "replica {i} confirmed"
        );
        assert_eq!(r.m.version(name), host.version(name), "replica {i} version");
        assert_eq!(r.m.pending(name).count(), 0, "replica {i} pending");
    }
}

// ---- opening ----

#[test]
fn the_first_opener_creates_and_later_ones_get_the_value_not_their_default() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.take_host_evts();
    net.open(0, "cfg", json!({"mode": "a"}));
    net.run();
    assert_eq!(host_names(&net.take_host_evts()), ["Created"]);
    assert_eq!(
        net.take_evts(0),
        [DocEvt::Opened {
            name: "cfg".into(),
            version: 0
        }]
    );
    net.open(1, "cfg", json!({"mode": "b", "extra": 1}));
    assert_eq!(
        net.reps[1].m.value("cfg"),
        Some(&json!({"mode": "b", "extra": 1}))
    );
    assert_eq!(net.reps[1].m.version("cfg"), None, "not confirmed yet");
    net.run();
    assert!(net.take_host_evts().is_empty(), "nothing created");
    assert_eq!(net.host().value("cfg"), Some(&json!({"mode": "a"})));
    assert_eq!(
        net.take_evts(1),
        [
            DocEvt::Opened {
                name: "cfg".into(),
                version: 0
            },
            DocEvt::Changed {
                name: "cfg".into(),
                version: 0,
                scope: Scope::Root
            }
        ]
    );
    assert_converged(&net, "cfg");
    assert!(net.take_evts(0).is_empty(), "the first opener saw nothing");
}

#[test]
fn a_late_joiner_gets_the_current_value() {
    let mut net = Net::new(3, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.open(1, "d", json!({"n": 0}));
    net.run();
    for k in 0..5 {
        net.patch(k % 2, "d", json!({"$inc": {"n": 1}, "$push": {"log": k}}))
            .expect("valid");
        net.run();
    }
    net.open(2, "d", json!({}));
    net.run();
    assert_eq!(
        net.reps[2].m.value("d"),
        Some(&json!({"n": 5, "log": [0, 1, 2, 3, 4]}))
    );
    assert_eq!(net.reps[2].m.version("d"), Some(5));
    assert_converged(&net, "d");
    // And it follows from there.
    net.patch(2, "d", json!({"$inc": {"n": 10}}))
        .expect("valid");
    net.run();
    assert_eq!(net.host().value("d").map(|v| &v["n"]), Some(&json!(15)));
    assert_converged(&net, "d");
}

#[test]
fn patches_made_before_the_host_answers_count_against_its_state() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 1}));
    net.run();
    net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.run();
    // Replica 1 opens with another default and patches at once: the patch is held until the
    // state arrives, then sent against it.
    net.open(1, "d", json!({"n": 100}));
    let id = net.patch(1, "d", json!({"$inc": {"n": 1}})).expect("valid");
    assert_eq!(net.reps[1].m.value("d"), Some(&json!({"n": 101})));
    assert!(net.reps[1].up.len() == 1, "only the opening is sent");
    net.run();
    assert_eq!(accepted(&net.take_evts(1)), [(id, 2)]);
    assert_eq!(net.host().value("d"), Some(&json!({"n": 3})));
    assert_converged(&net, "d");
}

#[test]
fn closing_and_reopening_ignores_answers_to_the_earlier_opening() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.open(1, "d", json!({"n": 0}));
    net.run();
    net.take_evts(0);
    net.patch(1, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.deliver_up(1);
    // Replica 0 has the broadcast queued; it closes and reopens before reading it.
    let now = net.now;
    net.reps[0].m.close(now, "d").expect("open");
    net.drain_rep(0);
    net.open(0, "d", json!({"other": true}));
    net.run();
    assert_eq!(names(&net.take_evts(0)), ["Opened", "Changed"]);
    assert_converged(&net, "d");
    assert_eq!(net.host().openers("d").count(), 2);
}

#[test]
fn the_host_refuses_documents_beyond_its_limit() {
    let limits = DocLimits {
        max_docs: 1,
        ..DocLimits::default()
    };
    let mut net = Net::new(2, limits).connected();
    net.open(0, "a", json!(1));
    net.open(1, "b", json!(2));
    net.run();
    assert_eq!(
        net.take_evts(1),
        [DocEvt::Refused {
            name: "b".into(),
            reason: Refusal::TooManyDocs { max: 1 }
        }]
    );
    assert!(!net.reps[1].m.is_open("b"));
    assert_eq!(
        host_names(&net.take_host_evts())[1..],
        ["Created", "Refused"]
    );
}

// ---- patches ----

#[test]
fn an_accepted_patch_is_broadcast_to_every_opener_and_acknowledges_its_origin() {
    let mut net = Net::new(3, DocLimits::default()).connected();
    for i in 0..2 {
        net.open(i, "d", json!({"n": 1}));
    }
    net.run();
    for i in 0..3 {
        net.take_evts(i);
    }
    net.take_host_evts();
    let id = net
        .patch(0, "d", json!({"$inc": {"n": 2}, "$set": {"a.b": "x"}}))
        .expect("valid");
    // Optimistic: the local value changes at once.
    assert_eq!(
        net.reps[0].m.value("d"),
        Some(&json!({"n": 3, "a": {"b": "x"}}))
    );
    assert_eq!(net.reps[0].m.confirmed("d"), Some(&json!({"n": 1})));
    assert_eq!(net.reps[0].m.pending("d").collect::<Vec<_>>(), [id]);
    net.run();
    assert_eq!(host_names(&net.take_host_evts()), ["Accepted"]);
    let e0 = net.take_evts(0);
    assert_eq!(names(&e0), ["Changed", "Patched", "Accepted"]);
    assert_eq!(accepted(&e0), [(id, 1)]);
    assert_eq!(
        e0[0],
        DocEvt::Changed {
            name: "d".into(),
            version: 0,
            scope: Scope::Paths(vec![p("a.b"), p("n")])
        }
    );
    let e1 = net.take_evts(1);
    assert_eq!(names(&e1), ["Patched", "Changed"]);
    assert!(net.take_evts(2).is_empty(), "replica 2 has not opened it");
    assert_converged(&net, "d");
}

#[test]
fn conflicting_patches_on_one_path_from_two_origins_one_wins_the_other_is_told() {
    for (a, b) in [("x", "x"), ("x", "x.y"), ("x.y", "x"), ("arr.1", "arr")] {
        let mut net = Net::new(2, DocLimits::default()).connected();
        net.open(0, "d", json!({"x": {"y": 0}, "arr": [0, 0]}));
        net.open(1, "d", json!({}));
        net.run();
        net.take_evts(0);
        net.take_evts(1);
        let id0 = net.patch(0, "d", json!({"$set": {a: 1}})).expect("valid");
        let id1 = net.patch(1, "d", json!({"$set": {b: 2}})).expect("valid");
        net.run();
        let (e0, e1) = (net.take_evts(0), net.take_evts(1));
        assert_eq!(accepted(&e0), [(id0, 1)], "{a} vs {b}");
        assert_eq!(accepted(&e1), []);
        assert_eq!(
            rejected(&e1),
            [(
                id1,
                RejectReason::Conflict {
                    path: p(a),
                    version: 1,
                    origin: node(1)
                }
            )]
        );
        assert_eq!(rejected(&e0), []);
        // The loser rolled back its optimistic change.
        assert_converged(&net, "d");
        assert_eq!(net.host().version("d"), Some(1));
        // And can try again on top of the winner (if it still applies: not through a number).
        if let Ok(again) = net.patch(1, "d", json!({"$set": {b: 2}})) {
            net.run();
            assert_eq!(accepted(&net.take_evts(1)), [(again, 2)]);
        }
    }
}

#[test]
fn disjoint_paths_never_conflict() {
    let mut net = Net::new(3, DocLimits::default()).connected();
    for i in 0..3 {
        net.open(i, "d", json!({}));
    }
    net.run();
    let paths = ["a.b", "a.c", "ab"];
    let ids: Vec<PatchId> = paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            net.patch(i, "d", json!({"$inc": {*path: 1}}))
                .expect("valid")
        })
        .collect();
    net.run();
    for (i, id) in ids.into_iter().enumerate() {
        let evts = net.take_evts(i);
        assert_eq!(accepted(&evts).len(), 1, "replica {i}: {evts:?}");
        assert_eq!(accepted(&evts)[0].0, id);
    }
    assert_eq!(
        net.host().value("d"),
        Some(&json!({"a": {"b": 1, "c": 1}, "ab": 1}))
    );
    assert_converged(&net, "d");
}

#[test]
fn patches_of_one_origin_never_conflict_with_each_other() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.open(1, "d", json!({}));
    net.run();
    let ids: Vec<PatchId> = (0..10)
        .map(|_| net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid"))
        .collect();
    assert_eq!(net.reps[0].m.value("d"), Some(&json!({"n": 10})));
    net.run();
    let got: Vec<PatchId> = accepted(&net.take_evts(0))
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, ids);
    assert_eq!(net.host().value("d"), Some(&json!({"n": 10})));
    assert_converged(&net, "d");
}

#[test]
fn a_base_older_than_the_log_window_is_stale() {
    let limits = DocLimits {
        log_window: 2,
        ..DocLimits::default()
    };
    let mut net = Net::new(2, limits).connected();
    net.open(0, "d", json!({}));
    net.open(1, "d", json!({}));
    net.run();
    // Replica 1's patch is made at version 0 and held back while three versions pass.
    let late = net.patch(1, "d", json!({"$set": {"z": 1}})).expect("valid");
    for k in 0..3 {
        net.patch(0, "d", json!({"$set": {format!("k{k}"): k}}))
            .expect("valid");
        net.deliver_up(0);
    }
    net.run();
    assert_eq!(
        rejected(&net.take_evts(1)),
        [(late, RejectReason::Stale { base: 0, oldest: 1 })]
    );
    assert_converged(&net, "d");
    // Within the window, disjoint: accepted.
    let ok = net.patch(1, "d", json!({"$set": {"z": 1}})).expect("valid");
    net.patch(0, "d", json!({"$set": {"k9": 1}}))
        .expect("valid");
    net.deliver_up(0);
    net.run();
    assert_eq!(accepted(&net.take_evts(1)), [(ok, 5)]);
}

#[test]
fn a_patch_that_would_make_the_value_too_large_is_rejected_and_changes_nothing() {
    let limits = DocLimits {
        max_value: 100,
        ..DocLimits::default()
    };
    let mut net = Net::new(2, limits).connected();
    net.open(0, "d", json!({}));
    net.open(1, "d", json!({}));
    net.run();
    let text = "x".repeat(45);
    let a = net
        .patch(0, "d", json!({"$set": {"a": text}}))
        .expect("fits alone");
    let b = net
        .patch(1, "d", json!({"$set": {"b": text}}))
        .expect("fits alone");
    net.run();
    assert_eq!(accepted(&net.take_evts(0)), [(a, 1)]);
    assert_eq!(
        rejected(&net.take_evts(1)),
        [(b, RejectReason::TooLarge { len: 105, max: 100 })]
    );
    assert_converged(&net, "d");
    // Locally too large: refused at once.
    assert!(matches!(
        net.patch(0, "d", json!({"$set": {"c": text}})),
        Err(DocError::TooLarge {
            what: "document",
            ..
        })
    ));
}

#[test]
fn a_patch_failing_on_the_hosts_value_is_rejected_with_operator_and_path() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"a": {"n": 1}}));
    net.open(1, "d", json!({}));
    net.run();
    net.patch(1, "d", json!({"$set": {"t": "str"}}))
        .expect("valid");
    net.run();
    // Both know `t` is a string: pushing to it is refused locally.
    assert_eq!(
        net.patch(0, "d", json!({"$push": {"t": 1}})),
        Err(DocError::Update(UpdateError::WrongType {
            op: Operator::Push,
            path: p("t"),
            found: ValueKind::String
        }))
    );
    assert_eq!(net.reps[0].m.pending("d").count(), 0, "nothing changed");
    // On the host: a patch that conflicts with nothing but fails on the host's value (a
    // replica would have refused it locally, so it is sent raw).
    let host_seen = net.host().version("d").expect("exists");
    let peer = net.reps[0].peer.expect("connected");
    net.host_input(HostInput::Msg {
        peer,
        node: node(1),
        msg: DocMsg::Patch {
            name: "d".into(),
            seq: 99,
            base: host_seen,
            wall_ms: 0,
            update: crate::doc::Update::parse(&json!({"$inc": {"t": 1}})).expect("valid"),
        },
    });
    assert_eq!(host_names(&net.take_host_evts()).last(), Some(&"Rejected"));
    let bytes = net.reps[0].down.back().expect("the rejection");
    assert_eq!(
        crate::wire::decode_doc(bytes, &DocLimits::default()),
        Ok(DocMsg::Rejected {
            name: "d".into(),
            seq: 99,
            version: host_seen,
            reason: RejectReason::Failed(UpdateError::WrongType {
                op: Operator::Inc,
                path: p("t"),
                found: ValueKind::String
            })
        })
    );
    assert_eq!(net.host().value("d").map(|v| &v["t"]), Some(&json!("str")));
}

#[test]
fn invalid_local_patches_are_refused_and_change_nothing() {
    let limits = DocLimits {
        max_pending: 2,
        ..DocLimits::default()
    };
    let mut net = Net::new(1, limits).connected();
    net.open(0, "d", json!({"s": "x"}));
    net.run();
    net.take_evts(0);
    let before = net.reps[0].m.value("d").cloned();
    assert_eq!(
        net.patch(0, "d", json!({"$inc": {"n": 1}, "$bogus": {}})),
        Err(DocError::Update(UpdateError::UnknownOperator {
            op: "$bogus".into()
        }))
    );
    assert!(matches!(
        net.patch(0, "d", json!({"$inc": {"s": 1}})),
        Err(DocError::Update(UpdateError::WrongType { .. }))
    ));
    assert!(matches!(
        net.patch(0, "d", json!({"$set": {"a": 1}, "$unset": {"a.b": ""}})),
        Err(DocError::Update(UpdateError::ConflictingPaths { .. }))
    ));
    assert_eq!(
        net.patch(0, "nope", json!({"$inc": {"n": 1}})),
        Err(DocError::NotOpen {
            name: "nope".into()
        })
    );
    let big = "x".repeat(70_000);
    assert!(matches!(
        net.patch(0, "d", json!({"$set": {"big": big}})),
        Err(DocError::TooLarge { what: "patch", .. })
    ));
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    assert!(matches!(
        net.patch(0, "d", json!({"$set": {"deep": deep}})),
        Err(DocError::TooDeep { .. })
    ));
    assert_eq!(net.reps[0].m.value("d").cloned(), before);
    assert!(net.take_evts(0).is_empty());
    assert!(net.reps[0].up.is_empty(), "nothing sent");
    // The pending bound.
    net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("room");
    net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("room");
    assert_eq!(
        net.patch(0, "d", json!({"$inc": {"n": 1}})),
        Err(DocError::PendingFull {
            name: "d".into(),
            max: 2
        })
    );
    net.run();
    net.patch(0, "d", json!({"$inc": {"n": 1}}))
        .expect("room again");
    // Local command errors.
    let now = net.now;
    let m = &mut net.reps[0].m;
    assert!(matches!(
        m.open(now, "d", json!({})),
        Err(DocError::AlreadyOpen { .. })
    ));
    assert!(matches!(
        m.open(now, "", json!({})),
        Err(DocError::InvalidName { .. })
    ));
    assert!(matches!(
        m.open(now, &"n".repeat(256), json!({})),
        Err(DocError::InvalidName { .. })
    ));
    assert!(matches!(
        m.close(now, "nope"),
        Err(DocError::NotOpen { .. })
    ));
}

#[test]
fn a_rejection_rolls_back_the_local_value_and_keeps_later_patches() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"a": 0, "b": 0}));
    net.open(1, "d", json!({}));
    net.run();
    net.patch(1, "d", json!({"$set": {"a": 10}}))
        .expect("valid");
    let lose = net.patch(0, "d", json!({"$inc": {"a": 1}})).expect("valid");
    let keep = net.patch(0, "d", json!({"$inc": {"b": 1}})).expect("valid");
    assert_eq!(net.reps[0].m.value("d"), Some(&json!({"a": 1, "b": 1})));
    net.deliver_up(1);
    net.run();
    let evts = net.take_evts(0);
    assert_eq!(rejected(&evts).len(), 1);
    assert_eq!(rejected(&evts)[0].0, lose);
    assert_eq!(accepted(&evts), [(keep, 2)]);
    assert_eq!(net.host().value("d"), Some(&json!({"a": 10, "b": 1})));
    assert_converged(&net, "d");
}

#[test]
fn current_date_is_the_same_on_every_replica() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({}));
    net.open(1, "d", json!({}));
    net.run();
    net.patch(
        0,
        "d",
        json!({"$currentDate": {"at": true, "ts": {"$type": "timestamp"}}}),
    )
    .expect("valid");
    let mine = net.reps[0].m.value("d").cloned();
    for _ in 0..50 {
        net.tick();
    }
    net.run();
    assert_converged(&net, "d");
    assert_eq!(net.host().value("d").cloned(), mine);
    assert_eq!(mine.map(|v| v["ts"].clone()), Some(json!(net::WALL_BASE)));
}

// ---- resends and failover ----

#[test]
fn a_resend_is_acknowledged_and_not_applied_twice() {
    let mut net = Net::new(1, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.run();
    net.take_host_evts();
    let patch = DocMsg::Patch {
        name: "d".into(),
        seq: 1,
        base: 0,
        wall_ms: 0,
        update: crate::doc::Update::parse(&json!({"$inc": {"n": 5}})).expect("valid"),
    };
    let peer = net.reps[0].peer.expect("connected");
    for _ in 0..3 {
        net.host_input(HostInput::Msg {
            peer,
            node: node(1),
            msg: patch.clone(),
        });
    }
    assert_eq!(host_names(&net.take_host_evts())[..], ["Accepted"]);
    assert_eq!(net.host().value("d"), Some(&json!({"n": 5})));
    let answers: Vec<DocMsg> = net.reps[0]
        .down
        .iter()
        .map(|b| crate::wire::decode_doc(b, &DocLimits::default()).expect("valid"))
        .collect();
    assert_eq!(
        answers.iter().map(DocMsg::name).collect::<Vec<_>>(),
        ["Patched", "Ack", "Ack", "Ack"],
        "no witness: the patch is answered at once, and each resend"
    );
}

#[test]
fn a_link_lost_after_the_host_accepted_answers_the_patch_once_from_the_state() {
    let mut net = Net::new(1, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.run();
    net.take_evts(0);
    let id = net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.deliver_up(0);
    // The broadcast is lost with the link; the hub stays.
    net.drop_link(0);
    assert_eq!(net.reps[0].m.pending("d").collect::<Vec<_>>(), [id]);
    net.connect(0);
    net.run();
    let evts = net.take_evts(0);
    // The local change, then the host's state, which shows the patch applied.
    assert_eq!(names(&evts), ["Changed", "Resynced", "Accepted"]);
    assert_eq!(accepted(&evts), [(id, 1)]);
    assert_eq!(net.host().value("d"), Some(&json!({"n": 1})));
    assert_converged(&net, "d");
}

#[test]
fn gathering_adopts_the_highest_version_and_resent_patches_are_applied_once() {
    let mut net = Net::new(3, DocLimits::default()).connected();
    for i in 0..3 {
        net.open(i, "d", json!({"n": 0}));
    }
    net.run();
    // Versions 1..=3 reach replica 0 only; replica 1 sees version 1; replica 2 none.
    for _ in 0..3 {
        net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid");
        net.deliver_up(0);
    }
    // Each broadcast and its answer (no witness: at once).
    for _ in 0..6 {
        net.deliver_down(0);
    }
    net.deliver_down(1);
    // Replica 2's patch reaches the host (version 4) but nobody hears of it.
    let lost = net
        .patch(2, "d", json!({"$inc": {"k": 100}}))
        .expect("valid");
    net.deliver_up(2);
    // And replica 1 has a patch in flight that never arrives.
    let held = net.patch(1, "d", json!({"$inc": {"m": 1}})).expect("valid");
    assert_eq!(net.host().version("d"), Some(4));
    net.crash_host();
    net.start_host();
    for i in 0..3 {
        net.connect(i);
    }
    net.run();
    assert!(net.host().is_gathering());
    assert!(
        net.reps.iter().all(|r| r.down.is_empty()),
        "nobody is answered while gathering"
    );
    net.take_host_evts();
    net.settle();
    assert_eq!(
        net.take_host_evts(),
        [
            HostEvt::Adopted {
                name: "d".into(),
                version: 3,
                node: node(1)
            },
            HostEvt::Settled {
                docs: 1,
                timed_out: false
            }
        ]
    );
    net.run();
    // Replica 2's patch was lost with the host (nobody had seen version 4) and is applied
    // now; replica 1's patch is sent again and applied.
    assert_eq!(
        net.host().value("d"),
        Some(&json!({"n": 3, "k": 100, "m": 1}))
    );
    assert_eq!(net.host().version("d"), Some(5));
    assert_eq!(
        accepted(&net.take_evts(2))
            .iter()
            .map(|a| a.0)
            .collect::<Vec<_>>(),
        [lost]
    );
    assert_eq!(
        accepted(&net.take_evts(1))
            .iter()
            .map(|a| a.0)
            .collect::<Vec<_>>(),
        [held]
    );
    assert_converged(&net, "d");
}

#[test]
fn a_patch_accepted_by_the_old_host_is_answered_from_the_adopted_marks() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.open(1, "d", json!({}));
    net.run();
    net.take_evts(0);
    let id = net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.deliver_up(0);
    // Replica 1 hears of it; replica 0 (the origin) does not.
    net.deliver_down(1);
    net.crash_host();
    net.start_host();
    net.connect(0);
    net.connect(1);
    net.run();
    net.settle();
    net.run();
    let evts = net.take_evts(0);
    assert_eq!(names(&evts), ["Changed", "Resynced", "Accepted"]);
    assert_eq!(accepted(&evts), [(id, 1)]);
    assert_eq!(
        net.host().value("d"),
        Some(&json!({"n": 1})),
        "applied once"
    );
    assert_converged(&net, "d");
}

#[test]
fn a_rejection_lost_with_the_host_is_recovered_from_the_holes() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"a": 0, "b": 0}));
    net.open(1, "d", json!({}));
    net.run();
    net.take_evts(0);
    // Replica 1 sets a; replica 0 increments a (conflict: rejected) then b (accepted).
    net.patch(1, "d", json!({"$set": {"a": 5}})).expect("valid");
    net.deliver_up(1);
    let lose = net.patch(0, "d", json!({"$inc": {"a": 1}})).expect("valid");
    let win = net.patch(0, "d", json!({"$inc": {"b": 1}})).expect("valid");
    net.deliver_up(0);
    net.deliver_up(0);
    // Only replica 1 hears anything; the host dies.
    while net.deliver_down(1) {}
    net.crash_host();
    net.start_host();
    net.connect(0);
    net.connect(1);
    net.run();
    net.settle();
    net.run();
    let evts = net.take_evts(0);
    assert_eq!(rejected(&evts), [(lose, RejectReason::Earlier)]);
    assert_eq!(accepted(&evts), [(win, 2)]);
    assert_eq!(net.host().value("d"), Some(&json!({"a": 5, "b": 1})));
    assert_converged(&net, "d");
}

#[test]
fn closing_and_reopening_while_gathering_answers_the_latest_opening_once() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.open(1, "d", json!({}));
    net.run();
    net.patch(1, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.run();
    net.crash_host();
    net.start_host();
    net.connect(0);
    net.connect(1);
    let now = net.now;
    net.reps[0].m.close(now, "d").expect("open");
    net.drain_rep(0);
    net.open(0, "d", json!({"fresh": true}));
    net.run();
    net.take_evts(0);
    net.settle();
    net.run();
    assert_eq!(names(&net.take_evts(0)), ["Opened", "Changed"]);
    // Two at the first openings, then one per replica when the new host settles.
    assert_eq!(net.sent.iter().filter(|m| **m == "State").count(), 2 + 2);
    assert_eq!(net.host().value("d"), Some(&json!({"n": 1})));
    assert_converged(&net, "d");
}

#[test]
fn mutated_messages_never_panic_either_machine() {
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::{Rng as _, SeedableRng};
    // Valid messages both ways, from a short session.
    let small = DocLimits {
        max_chunk: 0,
        ..DocLimits::default()
    };
    let mut net = Net::new(2, small).connected();
    net.open(0, "d", json!({"n": 0, "s": "x".repeat(9000)}));
    net.open(1, "d", json!({}));
    net.run();
    net.patch(
        0,
        "d",
        json!({"$inc": {"n": 1}, "$push": {"l": {"$each": [1, 2], "$slice": -1}}}),
    )
    .expect("valid");
    net.patch(1, "d", json!({"$set": {"n": 5}})).expect("valid");
    net.run();
    let mut corpus = std::mem::take(&mut net.wire);
    let kinds: std::collections::BTreeSet<&str> = net.sent.iter().copied().collect();
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    for msg in [
        DocMsg::Resync { name: "d".into() },
        DocMsg::Close { name: "d".into() },
        DocMsg::Ack {
            name: "d".into(),
            seq: 1,
            version: 1,
            witnesses: 2,
        },
        DocMsg::Witness,
        DocMsg::Have {
            name: "d".into(),
            version: 7,
        },
        DocMsg::Refused {
            name: "d".into(),
            open: 1,
            reason: Refusal::TooManyDocs { max: 1 },
        },
    ] {
        corpus.push(encode_doc(&msg));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let limits = DocLimits::default();
    let now = t0();
    for case in 0..3_000u64 {
        let mut host = DocHost::new(HostConfig::default(), now);
        host.handle(now, HostInput::Settled).expect("never Err");
        let mut replica = DocReplica::new(ReplicaConfig::new(node(1)), now);
        replica.open(now, "d", json!({})).expect("valid");
        replica.handle(now, ReplicaInput::HubUp).expect("never Err");
        for _ in 0..1 + rng.next_u64() % 6 {
            let mut bytes = corpus[(rng.next_u64() % corpus.len() as u64) as usize].clone();
            match rng.next_u64() % 4 {
                0 if !bytes.is_empty() => {
                    let at = (rng.next_u64() % bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << (rng.next_u64() % 8);
                }
                1 => bytes.truncate((rng.next_u64() % (bytes.len() as u64 + 1)) as usize),
                2 if !bytes.is_empty() => {
                    let at = (rng.next_u64() % bytes.len() as u64) as usize;
                    bytes[at] = rng.next_u64() as u8;
                }
                _ => {}
            }
            host.handle(
                now,
                HostInput::Bytes {
                    peer: PeerId(case % 3),
                    node: node(1 + case % 3),
                    data: &bytes,
                },
            )
            .expect("never Err");
            replica
                .handle(now, ReplicaInput::Bytes(&bytes))
                .expect("never Err");
            while host.poll_output().is_some() {}
            while replica.poll_output().is_some() {}
            if !replica.is_hub_up() {
                replica.handle(now, ReplicaInput::HubUp).expect("never Err");
            }
        }
        let _ = crate::wire::decode_doc(&corpus[0], &limits);
    }
}

#[test]
fn a_brand_new_group_creates_on_settle_and_a_timeout_settles_without_it() {
    let now = t0();
    let mut host = DocHost::new(
        HostConfig::default()
            .gather_timeout(std::time::Duration::from_millis(50))
            .clone(),
        now,
    );
    let open = |name: &str| {
        let body = crate::wire::doc::encode_body(
            &Default::default(),
            &crate::doc::Log::empty(0),
            &json!({"x": 1}),
        );
        DocMsg::Open {
            name: name.into(),
            open: 1,
            version: None,
            len: body.len() as u32,
            chunk: body,
        }
    };
    host.handle(
        now,
        HostInput::Msg {
            peer: PeerId(1),
            node: node(1),
            msg: open("d"),
        },
    )
    .expect("never Err");
    assert_eq!(host.poll_output(), None, "gathering");
    assert_eq!(
        host.poll_timeout(),
        Some(now + std::time::Duration::from_millis(50))
    );
    host.handle_timeout(now + std::time::Duration::from_millis(10));
    assert_eq!(host.poll_output(), None, "early");
    host.handle_timeout(now + std::time::Duration::from_millis(60));
    let outs: Vec<&'static str> = std::iter::from_fn(|| host.poll_output())
        .map(|o| o.name())
        .collect();
    assert_eq!(outs, ["Created", "Send", "Settled"]);
    assert_eq!(host.value("d"), Some(&json!({"x": 1})));
    assert_eq!(host.poll_timeout(), None);
    // A late Settled is ignored.
    host.handle(now, HostInput::Settled).expect("never Err");
    assert_eq!(host.poll_output(), None);
}

#[test]
fn a_replica_ahead_of_the_host_gets_the_hosts_state_and_it_is_reported() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.open(1, "d", json!({}));
    net.run();
    net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.run();
    // Replica 0 is cut off while the host dies; the new host settles with replica 1... which
    // is at version 1 too. Make replica 1 stale instead: a new patch reaches replica 0 only.
    net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.deliver_up(0);
    // The broadcast and the answer: with no witness, acknowledged with 0 witnesses.
    net.deliver_down(0);
    net.deliver_down(0);
    net.drop_link(1);
    net.crash_host();
    net.start_host();
    net.connect(1);
    net.run();
    net.settle();
    net.run();
    assert_eq!(net.host().version("d"), Some(1));
    net.take_host_evts();
    net.connect(0);
    net.run();
    assert_eq!(host_names(&net.take_host_evts()), ["NewerStateIgnored"]);
    // The replica says so too.
    assert!(
        net.take_evts(0).contains(&DocEvt::VersionsLost {
            name: "d".into(),
            from: 2,
            to: 1
        }),
        "the replica reports the lost versions"
    );
    // Documented loss (acknowledged with 0 witnesses): version 2 is gone; both replicas
    // follow the host.
    assert_eq!(net.host().value("d"), Some(&json!({"n": 1})));
    assert_converged(&net, "d");
}

#[test]
fn resync_after_a_gap_restores_the_hosts_state() {
    let mut net = Net::new(2, DocLimits::default()).connected();
    net.open(0, "d", json!({"n": 0}));
    net.open(1, "d", json!({}));
    net.run();
    net.take_evts(1);
    net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.patch(0, "d", json!({"$inc": {"n": 1}})).expect("valid");
    net.deliver_up(0);
    net.deliver_up(0);
    // Replica 1 loses version 1 (as a buggy link would): it finds the gap and resyncs.
    net.reps[1].down.pop_front();
    net.run();
    assert_eq!(names(&net.take_evts(1)), ["Resynced", "Changed"]);
    assert!(net.sent.contains(&"Resync"));
    assert_converged(&net, "d");
}

// ---- hostile input ----

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
    let body =
        crate::wire::doc::encode_body(&Default::default(), &crate::doc::Log::empty(0), &json!({}));
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

// ---- helpers ----

#[test]
fn differs_at_compares_the_values_under_a_path() {
    let a = json!({"x": {"y": 1, "z": [1, 2]}, "w": 0});
    let b = json!({"x": {"y": 1, "z": [1, 3]}, "w": 0});
    assert!(differs_at(&a, &b, None));
    assert!(differs_at(&a, &b, Some(&p("x"))));
    assert!(differs_at(&a, &b, Some(&p("x.z.1"))));
    assert!(!differs_at(&a, &b, Some(&p("x.y"))));
    assert!(!differs_at(&a, &b, Some(&p("w"))));
    assert!(!differs_at(&a, &b, Some(&p("missing"))));
    assert!(differs_at(&a, &json!({}), Some(&p("w"))), "removed");
    let scope = Scope::Paths(vec![p("x.z")]);
    assert!(scope.may_affect(&p("x")));
    assert!(scope.may_affect(&p("x.z.0")));
    assert!(!scope.may_affect(&p("x.y")));
    assert!(Scope::Root.may_affect(&p("anything")));
}

#[test]
fn machine_outputs_and_events_have_names() {
    let now = t0();
    let mut r = DocReplica::new(ReplicaConfig::new(node(1)), now);
    r.open(now, "d", json!({})).expect("valid");
    assert_eq!(r.poll_output(), None, "no hub: nothing sent");
    r.handle(now, ReplicaInput::HubUp).expect("never Err");
    assert_eq!(
        r.poll_output(),
        Some(ReplicaOutput::Send(DocMsg::Witness)),
        "a witness by default"
    );
    let out = r.poll_output().expect("the opening");
    assert_eq!(out.name(), "Send");
    assert!(matches!(out, ReplicaOutput::Send(DocMsg::Open { .. })));
    assert_eq!(r.poll_timeout(), None);
    let h = DocHost::new(HostConfig::default(), now);
    assert!(h.is_gathering());
    assert_eq!(HostOutput::Disconnect(PeerId(1)).name(), "Disconnect");
}
