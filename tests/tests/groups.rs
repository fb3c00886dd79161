//! Groups of real processes: the original design's scenarios, hub crashes, join storms, frozen
//! peers, refused peers.
//!
//! Each node is an `ipc-test-node node` process printing its events as JSON lines.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ipc_tests::{Child, Value, WAIT, event, group, is};
use nix::sys::signal::Signal;

/// The node ids a child's events say are in the group now.
fn members(c: &Child) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for v in &c.seen {
        let node = v["node"].as_str().unwrap_or_default().to_string();
        match event(v) {
            "node_joined" => {
                set.insert(node);
            }
            "node_left" => {
                set.remove(&node);
            }
            _ => {}
        }
    }
    set
}

/// Waits until every child sees exactly `ids` in the group.
fn converge(children: &mut [&mut Child], ids: &BTreeSet<String>) {
    for c in children.iter_mut() {
        if members(c) == *ids {
            continue;
        }
        let deadline = Instant::now() + WAIT;
        while members(c) != *ids {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                c.next_matching(left, |_| true).is_some(),
                "{} sees {:?}, not {ids:?}; saw {:#?}",
                c.name,
                members(c),
                c.seen
            );
        }
    }
}

fn ids(children: &[&Child]) -> BTreeSet<String> {
    children.iter().map(|c| c.node_id()).collect()
}

#[test]
fn three_nodes_join_and_two_leave() {
    // The original ClientEntersAndLeaves: the first node sees 3 joins and 2 leaves, never its
    // own leave.
    let g = group();
    let mut a = Child::node(&g, "a", &[]);
    a.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut b = Child::node(&g, "b", &[]);
    let mut c = Child::node(&g, "c", &[]);
    let all = ids(&[&a, &b, &c]);
    converge(&mut [&mut a, &mut b, &mut c], &all);
    assert_eq!(b.terminate(WAIT), Some(0), "b leaves cleanly");
    assert_eq!(c.terminate(WAIT), Some(0), "c leaves cleanly");
    let only_a = ids(&[&a]);
    converge(&mut [&mut a], &only_a);
    assert_eq!(a.events("node_joined").len(), 3);
    assert_eq!(a.events("node_left").len(), 2);
    assert!(
        a.events("node_left")
            .iter()
            .all(|v| !is(v, "node_left", &a.node_id()))
    );
}

#[test]
fn the_middle_node_of_three_still_sees_all_nodes() {
    // MiddleNodeShouldStillGetAllNodes: the first node (the hub) leaves; the middle node carries
    // on under a new hub and still sees the third.
    let g = group();
    let mut a = Child::node(&g, "a", &[]);
    let mut b = Child::node(&g, "b", &["--announce", "b-out=text/plain"]);
    let mut c = Child::node(&g, "c", &["--subscribe", "b-out"]);
    let all = ids(&[&a, &b, &c]);
    converge(&mut [&mut a, &mut b, &mut c], &all);
    let a_id = a.node_id();
    assert_eq!(a.terminate(WAIT), Some(0));
    let rest = ids(&[&b, &c]);
    converge(&mut [&mut b, &mut c], &rest);
    for x in [&mut b, &mut c] {
        x.wait_for(WAIT, |v| {
            event(v) == "synced" && v["hub"] != Value::String(a_id.clone())
        });
        assert_eq!(x.events("node_left").len(), 1, "{}: only a left", x.name);
        assert!(
            x.seen
                .iter()
                .any(|v| event(v) == "subscribed" && v["topic"] == "b-out")
        );
    }
}

#[test]
fn the_hub_leaves_gracefully_and_the_others_carry_on() {
    let g = group();
    let mut hub = Child::node(&g, "hub", &[]);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut others: Vec<Child> = (0..4)
        .map(|i| Child::node(&g, &format!("n{i}"), &[]))
        .collect();
    let mut all = ids(&others.iter().collect::<Vec<_>>());
    all.insert(hub.node_id());
    converge(&mut others.iter_mut().collect::<Vec<_>>(), &all);
    let hub_id = hub.node_id();
    assert_eq!(hub.terminate(WAIT), Some(0));
    all.remove(&hub_id);
    converge(&mut others.iter_mut().collect::<Vec<_>>(), &all);
    for o in &mut others {
        o.wait_for(WAIT, |v| {
            event(v) == "synced" && v["hub"] != Value::String(hub_id.clone())
        });
    }
    let new_hubs: usize = others.iter().map(|o| o.events("became_hub").len()).sum();
    assert_eq!(new_hubs, 1, "exactly one survivor takes over");
}

#[test]
fn killing_the_hub_of_eight_twenty_times() {
    for trial in 0..20 {
        let g = group();
        let mut nodes: Vec<Child> = (0..8)
            .map(|i| Child::node(&g, &format!("t{trial}n{i}"), &["--keepalive-ms", "4000"]))
            .collect();
        let all = ids(&nodes.iter().collect::<Vec<_>>());
        converge(&mut nodes.iter_mut().collect::<Vec<_>>(), &all);
        let hub_at = nodes
            .iter()
            .position(|n| !n.events("became_hub").is_empty())
            .expect("a hub");
        let mut dead = nodes.remove(hub_at);
        let dead_id = dead.node_id();
        let before: Vec<usize> = nodes.iter().map(|n| n.seen.len()).collect();
        dead.signal(Signal::SIGKILL);
        dead.kill();
        let survivors: BTreeSet<String> =
            all.iter().filter(|id| **id != dead_id).cloned().collect();
        converge(&mut nodes.iter_mut().collect::<Vec<_>>(), &survivors);
        for n in &mut nodes {
            n.wait_for(WAIT, |v| {
                event(v) == "synced" && v["hub"] != Value::String(dead_id.clone())
            });
        }
        let mut new_hubs = 0;
        for (n, from) in nodes.iter().zip(&before) {
            let after = &n.seen[*from..];
            new_hubs += after.iter().filter(|v| event(v) == "became_hub").count();
            let lefts: Vec<_> = after.iter().filter(|v| event(v) == "node_left").collect();
            assert_eq!(
                lefts.len(),
                1,
                "trial {trial}: {} saw only the dead hub leave: {lefts:?}",
                n.name
            );
            assert!(is(lefts[0], "node_left", &dead_id));
            assert!(
                after.iter().all(|v| event(v) != "node_joined"),
                "trial {trial}: {} saw a survivor flap: {after:#?}",
                n.name
            );
        }
        assert_eq!(new_hubs, 1, "trial {trial}: exactly one new hub");
    }
}

#[test]
fn sixteen_nodes_started_at_once_end_with_one_hub() {
    let g = group();
    let mut nodes: Vec<Child> = (0..16)
        .map(|i| {
            Child::spawn(
                &format!("s{i}"),
                &["--group", &g, "node", "--name", &format!("s{i}")],
            )
        })
        .collect();
    for n in &mut nodes {
        n.wait_for(WAIT, |v| event(v) == "started");
    }
    let all = ids(&nodes.iter().collect::<Vec<_>>());
    converge(&mut nodes.iter_mut().collect::<Vec<_>>(), &all);
    for n in &mut nodes {
        n.wait_for(WAIT, |v| event(v) == "synced");
    }
    let hubs: BTreeSet<String> = nodes
        .iter()
        .map(|n| {
            n.seen
                .iter()
                .rev()
                .find(|v| event(v) == "synced")
                .expect("synced")["hub"]
                .to_string()
        })
        .collect();
    assert_eq!(hubs.len(), 1, "everyone follows the same hub: {hubs:?}");
    let became: usize = nodes.iter().map(|n| n.events("became_hub").len()).sum();
    assert_eq!(became, 1, "one bind won");
}

#[test]
fn a_frozen_spoke_is_expelled_and_rejoins_as_a_new_arrival() {
    let g = group();
    let keepalive = ["--keepalive-ms", "1000"];
    let mut hub = Child::node(&g, "hub", &keepalive);
    let mut frozen = Child::node(&g, "frozen", &keepalive);
    let mut other = Child::node(&g, "other", &keepalive);
    let all = ids(&[&hub, &frozen, &other]);
    converge(&mut [&mut hub, &mut frozen, &mut other], &all);
    let frozen_id = frozen.node_id();
    let stopped = Instant::now();
    frozen.signal(Signal::SIGSTOP);
    other.wait_for(WAIT, |v| is(v, "node_left", &frozen_id));
    let took = stopped.elapsed();
    hub.wait_for(WAIT, |v| is(v, "node_left", &frozen_id));
    frozen.signal(Signal::SIGCONT);
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
    converge(&mut [&mut hub, &mut frozen, &mut other], &all);
    assert!(
        took < Duration::from_secs(10),
        "expelled after {took:?} (keepalive 1 s)"
    );
    eprintln!("frozen spoke expelled {took:?} after SIGSTOP (keepalive 1 s)");
}

#[test]
fn a_frozen_hub_is_reported_and_replaced_once_it_dies() {
    let g = group();
    let keepalive = ["--keepalive-ms", "1000"];
    let mut hub = Child::node(&g, "hub", &keepalive);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut b = Child::node(&g, "b", &keepalive);
    let mut c = Child::node(&g, "c", &keepalive);
    let all = ids(&[&hub, &b, &c]);
    converge(&mut [&mut hub, &mut b, &mut c], &all);
    hub.signal(Signal::SIGSTOP);
    for x in [&mut b, &mut c] {
        x.wait_for(WAIT, |v| event(v) == "hub_unresponsive");
    }
    let hub_id = hub.node_id();
    hub.kill();
    let rest = ids(&[&b, &c]);
    converge(&mut [&mut b, &mut c], &rest);
    for x in [&mut b, &mut c] {
        x.wait_for(WAIT, |v| {
            event(v) == "synced" && v["hub"] != Value::String(hub_id.clone())
        });
    }
}

#[test]
fn a_peer_with_another_uid_is_refused_and_the_group_carries_on() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to start a peer with another uid");
        return;
    }
    let g = group();
    let mut hub = Child::node(&g, "hub", &[]);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut foreign = Child::spawn(
        "foreign",
        &[
            "as-uid", "65534", "--group", &g, "node", "--name", "foreign",
        ],
    );
    let refused = foreign.wait_for(WAIT, |v| event(v) == "hub_closed");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("65534") && r.contains("not allowed")),
        "{refused}"
    );
    let deadline = Instant::now() + WAIT;
    while !hub.stderr().contains("refused a peer") {
        assert!(
            Instant::now() < deadline,
            "the hub logs the refusal: {}",
            hub.stderr()
        );
        hub.drain_for(Duration::from_millis(50));
    }
    let mut later = Child::node(&g, "later", &[]);
    let both = ids(&[&hub, &later]);
    converge(&mut [&mut hub, &mut later], &both);
    assert!(
        hub.seen.iter().all(|v| v["name"] != "foreign"),
        "the refused peer never joined"
    );
}
