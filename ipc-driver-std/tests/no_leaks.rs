//! Nodes created and dropped in a loop leave no thread, fd or socket behind.
//!
//! Alone in its test binary so that nothing else in the process opens fds or threads.

use std::time::Duration;

use ipc_driver_std::{EventKinds, Node, NodeWithEvents};

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .count()
}

/// Abstract sockets this process holds, from /proc/net/unix (inode column matched against our
/// fds is overkill: the names carry the group, which is unique to this test).
fn sockets_named(group: &str) -> usize {
    let table = std::fs::read_to_string("/proc/net/unix").expect("procfs");
    table.lines().filter(|l| l.contains(group)).count()
}

#[test]
fn a_hundred_nodes_created_and_dropped_leave_nothing_behind() {
    let group = format!("leak-{:016x}", getrandom::u64().expect("OS randomness"));
    let before = (fds(), threads());
    for i in 0..100 {
        // Exercise the callback thread too.
        let NodeWithEvents { node: n, events } = (Node::builder(&format!("n{i}")).group(&group))
            .on_event(|_| {})
            .join_with_events(EventKinds::ALL)
            .expect("join");
        assert!(n.is_hub());
        assert!(events.recv_timeout(Duration::from_secs(5)).is_some());
        drop(n);
        while events.try_recv().is_some() {}
        assert!(events.is_finished(), "a dropped node ends its receivers");
    }
    // A joined thread can linger in /proc/self/task for a moment while the kernel finishes
    // its exit: wait for the count to come back, up to a generous deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (fds(), threads()) != before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        (fds(), threads()),
        before,
        "fds and threads are back where they started"
    );
    assert_eq!(sockets_named(&group), 0, "no socket of the group remains");
}
