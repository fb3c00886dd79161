//! A group's directory lasts while the group does: the node that leaves last removes it, so
//! that groups with generated names do not pile up in the runtime directory; nodes that join
//! while it goes still meet.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use ipc_driver_std::Node;
use ipc_os::rendezvous::GroupDir;

const WAIT: Duration = Duration::from_secs(20);

#[path = "shared/wait.rs"]
mod wait;

/// A random group, and where its directory is (made here: a node would make it anyway).
fn group() -> (String, PathBuf) {
    let g = format!("t-{:016x}", getrandom::u64().expect("OS randomness"));
    let dir = GroupDir::private(&g).expect("the group's directory");
    (g, dir.paths().dir().to_owned())
}

fn join(g: &str, name: &str) -> Node {
    Node::builder(name).group(g).join().expect("joins")
}

#[test]
fn the_node_that_leaves_last_removes_the_directory() {
    let (g, dir) = group();
    // Alone.
    join(&g, "a").leave().expect("a leaves");
    assert!(!dir.exists(), "a node alone takes the directory with it");

    // A spoke leaves first: the hub's sockets keep the directory.
    let a = join(&g, "a");
    assert!(dir.exists(), "made again by the next node");
    let b = join(&g, "b");
    a.wait_view(WAIT, |v| v.nodes().len() == 2)
        .expect("a sees b");
    b.leave().expect("b leaves");
    assert!(dir.exists(), "the hub is still in");
    a.leave().expect("a leaves");
    assert!(!dir.exists(), "the hub left last");

    // The hub leaves first: a survivor takes over, and leaves last.
    let a = join(&g, "a");
    let b = join(&g, "b");
    b.wait_view(WAIT, |v| v.nodes().len() == 2)
        .expect("b sees a");
    let a_id = a.id();
    a.leave().expect("a leaves");
    wait::wait_count(1, WAIT, "b running the hub", || usize::from(b.is_hub()));
    b.wait_view(WAIT, |v| !v.contains(a_id)).expect("a is gone");
    assert!(dir.exists(), "the new hub is in");
    b.leave().expect("b leaves");
    assert!(!dir.exists(), "the survivor left last");
}

/// The last node leaves while two others join, again and again: whoever removes what, the
/// two meet under one hub, and the directory goes with the last of them. (A join that makes
/// its data socket in a directory removed after it opened it failed within a few hundred
/// rounds before `listen_data` made the directory again.)
#[test]
fn nodes_that_join_while_the_last_leaves_still_meet() {
    let (g, dir) = group();
    for round in 0..500 {
        let last = join(&g, "last");
        let leaving = thread::spawn(move || last.leave().expect("leaves"));
        let joiners: Vec<_> = ["b", "c"]
            .into_iter()
            .map(|name| {
                let g = g.clone();
                // Spread over the leave (0.3-0.7 ms here): a join started at once binds its
                // socket before the leaving node looks, and the directory stays.
                let jitter = Duration::from_micros(getrandom::u64().expect("random") % 1500);
                thread::spawn(move || {
                    thread::sleep(jitter);
                    join(&g, name)
                })
            })
            .collect();
        leaving.join().expect("the leaving thread");
        let nodes: Vec<Node> = joiners
            .into_iter()
            .map(|t| t.join().expect("a joining thread"))
            .collect();
        let ids: Vec<_> = nodes.iter().map(Node::id).collect();
        for n in &nodes {
            n.wait_view(WAIT, |v| {
                v.nodes().len() == 2 && ids.iter().all(|id| v.contains(*id))
            })
            .unwrap_or_else(|e| panic!("round {round}: the joiners meet: {e}"));
        }
        wait::wait_count(1, WAIT, "hubs among the joiners", || {
            nodes.iter().filter(|n| n.is_hub()).count()
        });
        for n in nodes {
            n.leave().expect("leaves");
        }
        assert!(!dir.exists(), "round {round}: the last joiner took it");
    }
}
