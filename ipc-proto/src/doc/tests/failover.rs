//! Resends and failover: answers to resent patches, gathering after a host is lost, and
//! replicas ahead of or behind the host.

use super::*;

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
            &crate::doc::state::Log::empty(0),
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
