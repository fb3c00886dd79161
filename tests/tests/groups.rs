//! Groups of `ipc-pubsub node` processes: the hub leaving, repeated hub crashes, join storms,
//! refused peers. (The scenarios every driver must pass are in `conformance.rs`.)
//!
//! Each node is an `ipc-test-node node` process printing its events as JSON lines.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ipc_tests::{Child, Value, WAIT, converge, event, group, ids, is};
use nix::sys::signal::Signal;

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

/// A directory that every user may enter and write, for groups opened explicitly; removed
/// when dropped.
struct OpenDir(std::path::PathBuf);

impl OpenDir {
    fn new(group: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("ipc-open-{group}"));
        std::fs::create_dir(&path).expect("create the open directory");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        Self(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp dir")
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_peer_with_another_uid_is_refused_and_the_group_carries_on() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to start a peer with another uid");
        return;
    }
    // The group is opened in a directory every user may enter, but its access policy is the
    // default one: the same uid only.
    let g = group();
    let open = OpenDir::new(&g);
    let mut hub = Child::node(&g, "hub", &["--dir", open.arg()]);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut foreign = Child::spawn(
        "foreign",
        &[
            "as-uid",
            "65534",
            "--group",
            &g,
            "--dir",
            open.arg(),
            "node",
            "--name",
            "foreign",
        ],
    );
    // Each side refuses the other: the foreign node sends root's hub nothing (its own group
    // policy is its own uid), and says so plainly.
    let deadline = Instant::now() + WAIT;
    let says = "is held by uid 0 (pid";
    while !(foreign.stderr().contains(says)
        && foreign.stderr().contains("which the group does not allow"))
    {
        assert!(
            Instant::now() < deadline,
            "the foreign node logs the refusal: {}",
            foreign.stderr()
        );
        foreign.drain_for(Duration::from_millis(50));
    }
    let deadline = Instant::now() + WAIT;
    while !hub.stderr().contains("refused a peer") {
        assert!(
            Instant::now() < deadline,
            "the hub logs the refusal: {}",
            hub.stderr()
        );
        hub.drain_for(Duration::from_millis(50));
    }
    let mut later = Child::node(&g, "later", &["--dir", open.arg()]);
    let both = ids(&[&hub, &later]);
    converge(&mut [&mut hub, &mut later], &both);
    assert!(
        hub.seen.iter().all(|v| v["name"] != "foreign"),
        "the refused peer never joined"
    );
}

#[test]
fn another_user_cannot_reach_a_private_group() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to start a peer with another uid");
        return;
    }
    let g = group();
    let mut hub = Child::node(&g, "hub", &[]);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    // The same group name as another user: that user's own private directory, its own group.
    let mut foreign = Child::spawn(
        "foreign",
        &[
            "as-uid", "65534", "--group", &g, "node", "--name", "foreign",
        ],
    );
    foreign.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut later = Child::node(&g, "later", &[]);
    let both = ids(&[&hub, &later]);
    converge(&mut [&mut hub, &mut later], &both);
    assert!(
        hub.seen
            .iter()
            .chain(&later.seen)
            .all(|v| v["name"] != "foreign"),
        "the other user's node is in a group of its own"
    );
    assert!(
        foreign
            .seen
            .iter()
            .all(|v| v["name"] != "hub" && v["name"] != "later"),
        "and sees nothing of this one"
    );
}
