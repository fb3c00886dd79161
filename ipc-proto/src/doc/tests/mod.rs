//! Tests of the document machines: scenarios here (opening, patches) and in [`failover`] and
//! [`hostile`], scripted on the fixture of [`net`]. The random schedules of documents run
//! through whole members on the public simulator: with hub deaths in `crate::tests::docs`, the
//! durability promise with transient writers in `crate::tests::witness`.

mod failover;
mod hostile;
mod net;

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
