//! The conformance suite: every scenario written once against the test-side driver
//! abstraction (`ipc-test-node peer`, see `ipc_tests::peer`) and run with std nodes only,
//! calloop nodes only, and mixed groups where either driver runs the hub (the first node of a
//! scenario starts the group, so it is the hub). Every scenario also runs against an *outside*
//! driver, a program that speaks the peer protocol of `ipc_proto::guide`: alone, as the hub of
//! a group with std and calloop nodes, and as a member of groups whose hub is a std or a
//! calloop node. The outside driver is the program `IPC_CONFORMANCE_DRIVER` names (an absolute
//! path), by default the guide's example driver (`ipc-proto/examples/poll_driver.rs`); its
//! path is in every failure message about its nodes. An outside driver must speak the whole
//! protocol, data plane included: one without it fails the payload scenarios (to try only the
//! topology first, filter them out: `-- --skip payloads --skip data_socket`).
//!
//! Scenarios: join and leave; the original design's three topology scenarios (a middle node
//! keeps the others when the first leaves, a hub crash handed over to a survivor, a fresh node
//! with no history racing the survivors for the hub); payload integrity in every mode; bad
//! input on the hub socket and on a data socket; a frozen spoke and a frozen hub; a frozen
//! member in a group of mixed keepalive figures (expelled by the hub's limit, no member
//! flapping); a killed hub and a killed spoke known dead at once (their processes' exits, with a grace of ten minutes
//! that only the exit report can cut short), and a death that cannot be confirmed (pidfds
//! switched off) waiting for the grace, never less.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use ipc_os::socket;
use ipc_tests::peer::{Driver, fnv1a64, payload};
use ipc_tests::{Child, WAIT, converge, event, group, ids, is, raw};
use nix::sys::signal::Signal;

use Driver::{Calloop, Std};

/// Runs each scenario with eight driver assignments: all std, all calloop, two mixes with
/// either driver first (and hence hub), all outside, and the outside driver mixed with both,
/// first (the hub) and not.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        $(mod $scenario {
            use super::*;

            #[test]
            fn std() {
                super::$scenario([Std, Std, Std, Std]);
            }

            #[test]
            fn calloop() {
                super::$scenario([Calloop, Calloop, Calloop, Calloop]);
            }

            #[test]
            fn mixed_std_hub() {
                super::$scenario([Std, Calloop, Std, Calloop]);
            }

            #[test]
            fn mixed_calloop_hub() {
                super::$scenario([Calloop, Std, Calloop, Std]);
            }

            #[test]
            fn outside() {
                let o = Driver::outside();
                super::$scenario([o, o, o, o]);
            }

            #[test]
            fn mixed_outside_hub() {
                let o = Driver::outside();
                super::$scenario([o, Std, Calloop, o]);
            }

            #[test]
            fn mixed_std_hub_with_outside() {
                let o = Driver::outside();
                super::$scenario([Std, o, Calloop, o]);
            }

            #[test]
            fn mixed_calloop_hub_with_outside() {
                let o = Driver::outside();
                super::$scenario([Calloop, o, Std, o]);
            }
        })*
    };
}

conformance!(
    join_and_leave,
    middle_node_keeps_the_others,
    hub_crash_hands_over_to_a_survivor,
    fresh_node_races_the_survivors_for_the_hub,
    garbage_on_the_hub_socket,
    a_frozen_spoke_is_expelled_and_rejoins,
    a_frozen_hub_is_reported,
    a_frozen_member_is_expelled_by_the_hubs_figures,
    a_frozen_subscriber_is_told_what_it_lost,
    payloads_arrive_intact_in_every_mode,
    garbage_on_a_data_socket,
    a_killed_hub_is_known_dead,
    an_unconfirmable_death_waits_for_the_grace,
);

const KEEPALIVE: [&str; 2] = ["--keepalive-ms", "1000"];

fn peer(d: Driver, g: &str, name: &str) -> Child {
    Child::peer(d, g, name, &KEEPALIVE)
}

/// Closes a peer's stdin and expects it to leave and exit 0.
fn leave(c: &mut Child) {
    c.close_stdin();
    assert_eq!(c.wait_exit(WAIT), Some(0), "{} leaves cleanly", c.name);
    assert!(c.events("left").len() == 1, "{}: one left line", c.name);
}

fn hub_of(c: &Child) -> Option<String> {
    c.seen
        .iter()
        .rev()
        .find(|v| event(v) == "synced")
        .and_then(|v| v["hub"].as_str())
        .map(String::from)
}

/// Joins counted per node id: a node seen to join twice without leaving in between is a ghost.
fn no_duplicate_joins(c: &Child) {
    let mut present = BTreeSet::new();
    for v in &c.seen {
        let node = v["node"].as_str().unwrap_or_default().to_string();
        match event(v) {
            "node_joined" => assert!(
                present.insert(node.clone()),
                "{}: {node} joined twice without leaving: {:#?}",
                c.name,
                c.seen
            ),
            "node_left" => {
                present.remove(&node);
            }
            _ => {}
        }
    }
}

fn join_and_leave(d: [Driver; 4]) {
    // The original ClientEntersAndLeaves: the first node sees 3 joins and 2 leaves, never its
    // own leave.
    let g = group();
    let mut a = peer(d[0], &g, "a");
    a.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut b = peer(d[1], &g, "b");
    let mut c = peer(d[2], &g, "c");
    let all = ids(&[&a, &b, &c]);
    converge(&mut [&mut a, &mut b, &mut c], &all);
    leave(&mut b);
    leave(&mut c);
    let only_a = ids(&[&a]);
    converge(&mut [&mut a], &only_a);
    assert_eq!(a.events("node_joined").len(), 3);
    assert_eq!(a.events("node_left").len(), 2);
    assert!(!a.seen.iter().any(|v| is(v, "node_left", &a.node_id())));
    leave(&mut a);
}

fn middle_node_keeps_the_others(d: [Driver; 4]) {
    // MiddleNodeShouldStillGetAllNodes: the first node (the hub) leaves; the others carry on
    // under a new hub, with every topic.
    let g = group();
    let mut a = peer(d[0], &g, "a");
    a.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut b = Child::peer(d[1], &g, "b", &["--announce", "b-out"]);
    let mut c = Child::peer(d[2], &g, "c", &["--subscribe", "b-out"]);
    let all = ids(&[&a, &b, &c]);
    converge(&mut [&mut a, &mut b, &mut c], &all);
    let a_id = a.node_id();
    leave(&mut a);
    let rest = ids(&[&b, &c]);
    converge(&mut [&mut b, &mut c], &rest);
    for x in [&mut b, &mut c] {
        x.wait_for(WAIT, |v| event(v) == "synced" && v["hub"] != a_id.as_str());
        assert_eq!(x.events("node_left").len(), 1, "{}: only a left", x.name);
        for what in ["topic_announced", "subscribed"] {
            x.wait_for(WAIT, |v| event(v) == what && v["topic"] == "b-out");
        }
        no_duplicate_joins(x);
    }
}

/// Kills `hub`, the first node of a group whose other nodes are `rest`, once they all see one
/// another; then waits until the survivors see only one another and all follow one new hub,
/// and checks that exactly one of them took over, each reported the old hub's node left and
/// nobody else, and nobody reported a join twice. Returns the survivors' ids and the new hub.
fn kill_the_hub(mut hub: Child, rest: &mut [Child]) -> (BTreeSet<String>, String) {
    let mut all = ids(&rest.iter().collect::<Vec<_>>());
    all.insert(hub.node_id());
    converge(&mut rest.iter_mut().collect::<Vec<_>>(), &all);
    let hub_id = hub.node_id();
    hub.kill();
    all.remove(&hub_id);
    converge(&mut rest.iter_mut().collect::<Vec<_>>(), &all);
    let mut hubs = BTreeSet::new();
    for x in rest.iter_mut() {
        x.wait_for(WAIT, |v| {
            event(v) == "synced" && v["hub"] != hub_id.as_str()
        });
        hubs.insert(hub_of(x));
        assert_eq!(
            left(x),
            std::slice::from_ref(&hub_id),
            "{}: only the hub left: {:#?}",
            x.name,
            x.seen
        );
        no_duplicate_joins(x);
    }
    assert_eq!(hubs.len(), 1, "everyone follows the same new hub: {hubs:?}");
    let became: usize = rest.iter().map(|x| x.events("became_hub").len()).sum();
    assert_eq!(became, 1, "exactly one survivor took over");
    let new_hub = hubs.pop_first().flatten().expect("a new hub");
    (all, new_hub)
}

fn hub_crash_hands_over_to_a_survivor(d: [Driver; 4]) {
    let g = group();
    let mut hub = peer(d[0], &g, "hub");
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut rest: Vec<Child> = (1..4)
        .map(|i| {
            Child::peer(
                d[i],
                &g,
                &format!("n{i}"),
                &["--announce", &format!("t{i}")],
            )
        })
        .collect();
    kill_the_hub(hub, &mut rest);
    // Every survivor still knows every survivor's topic, and nobody reports one twice. The
    // old hub is known dead at once (pidfds), so a survivor may sync with the new hub before
    // the others have reintroduced their topics to it: wait for each, then count.
    for x in &mut rest {
        for i in 1..4 {
            let t = format!("t{i}");
            x.wait_for(WAIT, |v| {
                event(v) == "topic_announced" && v["topic"] == t.as_str()
            });
            let n = x
                .events("topic_announced")
                .iter()
                .filter(|v| v["topic"] == t.as_str())
                .count();
            assert_eq!(n, 1, "{}: {t} announced once: {:#?}", x.name, x.seen);
        }
    }
}

fn fresh_node_races_the_survivors_for_the_hub(d: [Driver; 4]) {
    // The original's worry: a just-started node with no history may win the race for the hub
    // address. Its history is empty; the survivors' histories are merged into it, and no
    // survivor sees a ghost leave or join.
    let g = group();
    let mut hub = peer(d[0], &g, "hub");
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut b = peer(d[1], &g, "b");
    let mut c = peer(d[2], &g, "c");
    let mut all = ids(&[&hub, &b, &c]);
    converge(&mut [&mut hub, &mut b, &mut c], &all);
    let hub_id = hub.node_id();
    hub.kill();
    let mut fresh = peer(d[3], &g, "fresh");
    all.remove(&hub_id);
    all.insert(fresh.node_id());
    converge(&mut [&mut b, &mut c, &mut fresh], &all);
    for x in [&mut b, &mut c] {
        let left: Vec<_> = x.events("node_left");
        assert_eq!(left.len(), 1, "{}: only the old hub left: {left:?}", x.name);
        assert!(is(left[0], "node_left", &hub_id));
        no_duplicate_joins(x);
    }
    no_duplicate_joins(&fresh);
    for x in [&mut b, &mut c, &mut fresh] {
        x.wait_for(WAIT, |v| {
            event(v) == "synced" && v["hub"] != hub_id.as_str()
        });
    }
    let hubs: BTreeSet<_> = [&b, &c, &fresh].iter().map(|x| hub_of(x)).collect();
    assert_eq!(hubs.len(), 1, "one hub: {hubs:?}");
}

fn payloads_arrive_intact_in_every_mode(d: [Driver; 4]) {
    let g = group();
    let mut p = peer(d[0], &g, "pub");
    let mut subs: Vec<Child> = (1..3).map(|i| peer(d[i], &g, &format!("sub{i}"))).collect();
    // (topic, mode, sizes): zero-length and small inline, a large inline record, fresh
    // segments, pooled segments of several size classes.
    let plan: [(&str, &str, &[usize]); 3] = [
        ("inline", "inline", &[0, 1, 100, 100_000]),
        ("fresh", "fresh", &[1, 300_000, 4 << 20]),
        ("pooled", "pooled", &[1, 9000, 1 << 20, 5 << 20]),
    ];
    p.send("publisher warm inline");
    for (topic, mode, _) in plan {
        p.send(&format!("publisher {topic} {mode}"));
    }
    for s in &mut subs {
        s.send("subscription warm newest 1");
        for (topic, ..) in plan {
            s.send(&format!("subscription {topic} block 16"));
        }
    }
    // The publisher learns of both subscriptions, then its data links come up: publish on
    // the warm-up topic until both subscribers have heard it.
    let sub_ids: Vec<String> = subs.iter().map(Child::node_id).collect();
    for id in &sub_ids {
        for (topic, ..) in plan {
            p.wait_for(WAIT, |v| is(v, "subscribed", id) && v["topic"] == topic);
        }
    }
    for s in &mut subs {
        let deadline = Instant::now() + WAIT;
        while s
            .next_matching(Duration::from_millis(50), |v| {
                event(v) == "message" && v["topic"] == "warm"
            })
            .is_none()
        {
            assert!(Instant::now() < deadline, "{}: no data link", s.name);
            p.send("publish warm 8 1");
        }
    }
    const COUNT: u64 = 5;
    for (topic, _, sizes) in plan {
        for size in sizes {
            p.send(&format!("publish {topic} {size} {COUNT}"));
        }
    }
    for s in &mut subs {
        for (topic, mode, sizes) in plan {
            let total = COUNT as usize * sizes.len();
            let got = s.wait_count(WAIT, total, |v| {
                event(v) == "message" && v["topic"] == topic
            });
            assert_eq!(got.len(), total, "{}: {topic}: no more than sent", s.name);
            // In order, each intact, each the expected size and way.
            for (i, v) in got.iter().enumerate() {
                let size = sizes[i / COUNT as usize];
                let index = i as u64;
                assert_eq!(v["len"], size, "{}: {topic} #{i}: {v}", s.name);
                let want = format!("{:016x}", fnv1a64(&payload(index, size)));
                if size >= 8 {
                    assert_eq!(v["index"], index, "{}: {topic} in order: {v}", s.name);
                }
                assert_eq!(
                    v["fnv1a64"],
                    want.as_str(),
                    "{}: {topic} #{i} intact: {v}",
                    s.name
                );
                assert_eq!(v["via"], mode, "{}: {topic} #{i} travelled {mode}", s.name);
            }
        }
    }
}

fn no_panic(c: &Child) {
    let stderr = c.stderr();
    assert!(!stderr.contains("panicked"), "{}: {stderr}", c.name);
}

fn garbage_on_the_hub_socket(d: [Driver; 4]) {
    let g = group();
    let mut hub = peer(d[0], &g, "hub");
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut member = peer(d[1], &g, "member");
    member.wait_for(WAIT, |v| event(v) == "synced");
    let addr = raw::hub_socket(&g);
    // An unknown tag; an oversized length; a record larger than any frame; fds on a topology
    // link: each offender is disconnected.
    for bytes in [
        vec![3, 0, 0, 0, 0xEE, 1, 2],
        (16u32 << 20).to_le_bytes().to_vec(),
        vec![0x55; 100_000],
    ] {
        let fd = raw::connect(&addr);
        raw::send(&fd, &bytes, &[]);
        raw::closed(&fd);
    }
    let fd = raw::connect(&addr);
    let (x, _y) = socket::socketpair_seqpacket().expect("socketpair");
    raw::send(&fd, &[1, 0, 0, 0, 1], &[x.as_fd()]);
    raw::closed(&fd);
    // The group carries on: a newcomer joins, nobody left, no offender appears.
    let mut late = peer(d[2], &g, "late");
    late.wait_for(WAIT, |v| event(v) == "synced");
    member.wait_for(WAIT, |v| event(v) == "node_joined" && v["name"] == "late");
    assert!(member.events("node_left").is_empty(), "{:#?}", member.seen);
    assert_eq!(member.events("node_joined").len(), 3, "{:#?}", member.seen);
    no_panic(&hub);
}

fn garbage_on_a_data_socket(d: [Driver; 4]) {
    let g = group();
    let mut p = peer(d[0], &g, "pub");
    let mut s = peer(d[1], &g, "sub");
    p.send("publisher t pooled");
    s.send("subscription t block 8");
    p.wait_for(WAIT, |v| is(v, "subscribed", &s.node_id()));
    // The subscriber's data socket, where publishers connect.
    let addr = raw::data_socket(&g, &format!("{}.data", s.node_id()));
    // Garbage; a frame with a pipe where a memfd should be; an oversized record.
    let fd = raw::connect(&addr);
    raw::send(&fd, &[9, 0, 0, 0, 0xEE, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    raw::closed(&fd);
    let fd = raw::connect(&addr);
    let (r, _w) = nix::unistd::pipe().expect("pipe");
    raw::send(&fd, &[1, 0, 0, 0, 3], &[r.as_fd()]);
    raw::closed(&fd);
    let fd = raw::connect(&addr);
    raw::send(&fd, &vec![0; 300_000], &[]);
    raw::closed(&fd);
    // The real publisher's messages still arrive, every one.
    let deadline = Instant::now() + WAIT;
    let mut warm = 0;
    while s
        .next_matching(Duration::from_millis(50), |v| event(v) == "message")
        .is_none()
    {
        assert!(Instant::now() < deadline, "no data link");
        p.send("publish t 64 1");
        warm += 1;
    }
    p.send("publish t 20000 10");
    let batch = s.wait_count(WAIT, 10, |v| event(v) == "message" && v["len"] == 20000);
    let indices: Vec<u64> = batch.iter().filter_map(|v| v["index"].as_u64()).collect();
    assert_eq!(
        indices,
        (warm..warm + 10).collect::<Vec<_>>(),
        "all, in order"
    );
    assert!(batch.iter().all(|v| v["via"] == "pooled"));
    assert!(s.events("node_left").is_empty());
    no_panic(&s);
}

/// Once the three see one another, stops `frozen` (SIGSTOP) until the hub and `other` have
/// both seen it leave, then lets it go on (SIGCONT). Returns its id.
fn freeze_until_left(hub: &mut Child, frozen: &mut Child, other: &mut Child) -> String {
    let all = ids(&[hub, frozen, other]);
    converge(&mut [&mut *hub, &mut *frozen, &mut *other], &all);
    let frozen_id = frozen.node_id();
    frozen.signal(Signal::SIGSTOP);
    for c in [&mut *hub, &mut *other] {
        c.wait_for(WAIT, |v| is(v, "node_left", &frozen_id));
    }
    frozen.signal(Signal::SIGCONT);
    frozen_id
}

fn a_frozen_spoke_is_expelled_and_rejoins(d: [Driver; 4]) {
    let g = group();
    let mut hub = peer(d[0], &g, "hub");
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut frozen = peer(d[1], &g, "frozen");
    let mut other = peer(d[2], &g, "other");
    let frozen_id = freeze_until_left(&mut hub, &mut frozen, &mut other);
    // It comes back as a new arrival: everyone sees it join again, after its leave.
    for c in [&mut hub, &mut other] {
        let left_at = c
            .seen
            .iter()
            .rposition(|v| is(v, "node_left", &frozen_id))
            .expect("left");
        if !c.seen[left_at..]
            .iter()
            .any(|v| is(v, "node_joined", &frozen_id))
        {
            c.next_matching(WAIT, |v| is(v, "node_joined", &frozen_id))
                .expect("rejoined");
        }
    }
    let all = ids(&[&hub, &frozen, &other]);
    converge(&mut [&mut hub, &mut frozen, &mut other], &all);
}

/// A subscriber frozen past the keepalive is expelled; what was published meanwhile is told
/// to it as a `lost` line (reason `expelled`) in its place, and its seqs never go back.
fn a_frozen_subscriber_is_told_what_it_lost(d: [Driver; 4]) {
    let g = group();
    let mut hub = peer(d[0], &g, "hub");
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut frozen = peer(d[1], &g, "frozen");
    let mut p = peer(d[2], &g, "pub");
    let all = ids(&[&hub, &frozen, &p]);
    converge(&mut [&mut hub, &mut frozen, &mut p], &all);
    let frozen_id = frozen.node_id();
    p.send("publisher t inline");
    frozen.send("subscription t oldest 4");
    p.wait_for(WAIT, |v| {
        is(v, "subscribed", &frozen_id) && v["topic"] == "t"
    });
    let mut published = 0u64;
    // Until the data link is up and carries messages.
    let message = |v: &serde_json::Value| event(v) == "message" && v["topic"] == "t";
    let deadline = Instant::now() + WAIT;
    while frozen
        .next_matching(Duration::from_millis(50), message)
        .is_none()
    {
        assert!(Instant::now() < deadline, "no data link");
        p.send("publish t 16 1");
        published += 1;
    }
    frozen.signal(Signal::SIGSTOP);
    for c in [&mut hub, &mut p] {
        c.wait_for(WAIT, |v| is(v, "node_left", &frozen_id));
    }
    // Published while it is out of the group: lost to it.
    p.send("publish t 16 50");
    published += 50;
    p.wait_for(WAIT, |v| event(v) == "published" && v["count"] == 50);
    frozen.signal(Signal::SIGCONT);
    // It subscribes again after its rejoin (a line after its leave).
    let subscribed = |v: &serde_json::Value| is(v, "subscribed", &frozen_id) && v["topic"] == "t";
    let left_at = p
        .seen
        .iter()
        .rposition(|v| is(v, "node_left", &frozen_id))
        .expect("left");
    if !p.seen[left_at..].iter().any(subscribed) {
        p.next_matching(WAIT, subscribed)
            .expect("subscribed again after its rejoin");
    }
    // Once it subscribed again, publish until a new message reaches it.
    let before = frozen.seen.iter().filter(|v| message(v)).count();
    let deadline = Instant::now() + WAIT;
    loop {
        p.send("publish t 16 1");
        published += 1;
        let _ = frozen.next_matching(Duration::from_millis(50), message);
        let got: Vec<&serde_json::Value> = frozen.seen.iter().filter(|v| message(v)).collect();
        if got.len() > before && got.last().and_then(|v| v["seq"].as_u64()) > Some(51) {
            break;
        }
        assert!(Instant::now() < deadline, "no message after the rejoin");
    }
    // Per the publisher: in order, and every missing seq told.
    let (mut next, mut messages, mut lost, mut expelled) = (0u64, 0u64, 0u64, false);
    for v in &frozen.seen {
        let (first, last, n) = match event(v) {
            "message" if v["topic"] == "t" => (v["seq"].as_u64(), v["seq"].as_u64(), 1),
            "lost" => {
                expelled |= v["reason"] == "expelled";
                (
                    v["first"].as_u64(),
                    v["last"].as_u64(),
                    v["lost"].as_u64().unwrap_or(0),
                )
            }
            _ => continue,
        };
        let (first, last) = (first.expect("first"), last.expect("last"));
        assert!(
            first > next || next == 0,
            "{}: seq goes back at {v}",
            frozen.name
        );
        if next != 0 {
            assert_eq!(
                first,
                next + 1,
                "{}: a hole nobody told before {v}",
                frozen.name
            );
        }
        next = last;
        if event(v) == "lost" {
            lost += n;
        } else {
            messages += 1;
        }
    }
    assert!(
        expelled && lost >= 50,
        "{}: {messages} messages, {lost} told lost of {published}; saw {:#?}",
        frozen.name,
        frozen.seen
    );
    no_panic(&frozen);
}

fn a_frozen_hub_is_reported(d: [Driver; 4]) {
    let g = group();
    let mut hub = peer(d[0], &g, "hub");
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut b = peer(d[1], &g, "b");
    let mut c = peer(d[2], &g, "c");
    let all = ids(&[&hub, &b, &c]);
    converge(&mut [&mut hub, &mut b, &mut c], &all);
    hub.signal(Signal::SIGSTOP);
    for x in [&mut b, &mut c] {
        x.wait_for(WAIT, |v| event(v) == "hub_unresponsive");
    }
    hub.signal(Signal::SIGCONT);
    for x in [&mut b, &mut c] {
        x.wait_for(WAIT, |v| event(v) == "hub_responsive");
    }
    let hub_id = hub.node_id();
    hub.kill();
    let rest = ids(&[&b, &c]);
    converge(&mut [&mut b, &mut c], &rest);
    for x in [&mut b, &mut c] {
        x.wait_for(WAIT, |v| {
            event(v) == "synced" && v["hub"] != hub_id.as_str()
        });
    }
}

/// Keepalive figures that differ in one group: a hub that heartbeats slowly and tolerates 2 s
/// of silence, members that tolerate only 400 ms. The hub heartbeats each member at the
/// member's shorter interval, so no member ever suspects the live hub; a frozen member is
/// expelled by the hub's limit (never by its own), and only it leaves.
fn a_frozen_member_is_expelled_by_the_hubs_figures(d: [Driver; 4]) {
    let g = group();
    let slow = ["--keepalive-ms", "2000", "--heartbeat-ms", "900"];
    let quick = ["--keepalive-ms", "400", "--heartbeat-ms", "100"];
    let mut hub = Child::peer(d[0], &g, "hub", &slow);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut frozen = Child::peer(d[1], &g, "frozen", &quick);
    let mut other = Child::peer(d[2], &g, "other", &quick);
    let frozen_id = freeze_until_left(&mut hub, &mut frozen, &mut other);
    for c in [&hub, &other] {
        // Only the frozen member left, once, after it joined; the hub never changed.
        assert_eq!(left(c), std::slice::from_ref(&frozen_id), "{:?}", c.seen);
        let joined = (c.seen.iter()).position(|v| is(v, "node_joined", &frozen_id));
        let gone = (c.seen.iter()).position(|v| is(v, "node_left", &frozen_id));
        assert!(
            joined.is_some() && joined < gone,
            "joined, then left: {:?}",
            c.seen
        );
        assert!(c.events("became_hub").len() <= 1, "{:?}", c.seen);
    }
    // Two seconds with a 400 ms limit: the quick member never suspected its slow hub.
    assert!(
        other.events("hub_unresponsive").is_empty(),
        "{:?}",
        other.seen
    );
    assert!(other.events("hub_lost").is_empty(), "{:?}", other.seen);
    no_panic(&hub);
    no_panic(&other);
}

/// A grace no scenario waits out: a death seen within [`WAIT`] was known, not waited for.
const LONG_GRACE: [&str; 4] = ["--keepalive-ms", "1000", "--grace-ms", "600000"];

/// The nodes `c` saw leave, in order.
fn left(c: &Child) -> Vec<String> {
    c.events("node_left")
        .iter()
        .filter_map(|v| v["node"].as_str().map(String::from))
        .collect()
}

/// `kill -9` of the hub, then of a spoke, under a ten-minute grace: every survivor reports
/// each death exactly once, in order, within [`WAIT`], which only the drivers' reports of the
/// processes' exits make possible (`MemberInput::PeerExited`); one new hub, no flaps, no
/// duplicate joins.
fn a_killed_hub_is_known_dead(d: [Driver; 4]) {
    let g = group();
    let mut hub = Child::peer(d[0], &g, "hub", &LONG_GRACE);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut rest: Vec<Child> = (1..4)
        .map(|i| Child::peer(d[i], &g, &format!("n{i}"), &LONG_GRACE))
        .collect();
    let hub_id = hub.node_id();
    let (mut all, new_hub) = kill_the_hub(hub, &mut rest);

    // A spoke killed under the new hub.
    let i = rest
        .iter()
        .position(|x| x.node_id() != new_hub)
        .expect("a spoke");
    let mut spoke = rest.swap_remove(i);
    let spoke_id = spoke.node_id();
    spoke.kill();
    all.remove(&spoke_id);
    converge(&mut rest.iter_mut().collect::<Vec<_>>(), &all);
    for x in &rest {
        assert_eq!(
            left(x),
            [hub_id.clone(), spoke_id.clone()],
            "{}: {:#?}",
            x.name,
            x.seen
        );
        no_duplicate_joins(x);
        assert_eq!(hub_of(x).as_deref(), Some(new_hub.as_str()), "{}", x.name);
    }
}

/// The grace of [`an_unconfirmable_death_waits_for_the_grace`], in milliseconds.
const GRACE_MS: u64 = 1500;

/// Pidfds switched off (`IPC_PUBSUB_NO_PIDFD=1`, as on a kernel without them): the killed
/// hub's death cannot be confirmed, so the survivors report it only once the new hub's grace
/// has run out, never sooner (measured from before the kill to the line's arrival here, which
/// can only be later than the node's decision); then the group carries on as usual.
fn an_unconfirmable_death_waits_for_the_grace(d: [Driver; 4]) {
    let g = group();
    let grace = GRACE_MS.to_string();
    let args = ["--keepalive-ms", "1000", "--grace-ms", grace.as_str()];
    let env = [("IPC_PUBSUB_NO_PIDFD", "1")];
    let mut hub = Child::peer_env(d[0], &g, "hub", &args, &env);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut rest: Vec<Child> = (1..4)
        .map(|i| Child::peer_env(d[i], &g, &format!("n{i}"), &args, &env))
        .collect();
    let mut all = ids(&rest.iter().collect::<Vec<_>>());
    all.insert(hub.node_id());
    converge(&mut rest.iter_mut().collect::<Vec<_>>(), &all);
    let hub_id = hub.node_id();
    let before_kill = Instant::now();
    hub.kill();
    all.remove(&hub_id);
    converge(&mut rest.iter_mut().collect::<Vec<_>>(), &all);
    let mut hubs = BTreeSet::new();
    for x in &mut rest {
        let at = x
            .seen
            .iter()
            .position(|v| is(v, "node_left", &hub_id))
            .expect("the old hub left");
        let after = x.arrived[at].duration_since(before_kill);
        assert!(
            after >= Duration::from_millis(GRACE_MS),
            "{}: the old hub left {after:?} after the kill, before the grace of {GRACE_MS} ms",
            x.name
        );
        x.wait_for(WAIT, |v| {
            event(v) == "synced" && v["hub"] != hub_id.as_str()
        });
        hubs.insert(hub_of(x));
        assert_eq!(
            left(x),
            std::slice::from_ref(&hub_id),
            "{}: {:#?}",
            x.name,
            x.seen
        );
        no_duplicate_joins(x);
    }
    assert_eq!(hubs.len(), 1, "everyone follows the same new hub: {hubs:?}");
}
