//! Shared-memory rings on data links: used when both ends' drivers take them, never offered
//! to a publisher that does not, messages intact either way, and the mappings gone with the
//! links. Alone in its binary: it counts this process's ring mappings.

use std::time::Duration;

#[path = "shared/pair.rs"]
mod pair;
#[path = "shared/rings.rs"]
mod rings;
#[path = "shared/wait.rs"]
mod wait;
use pair::{Pair, routed_pair};
use rings::{ring_mappings, wait_rings};

const WAIT: Duration = Duration::from_secs(20);

/// Sends 300 messages of sizes around the ring's inline limit from `publisher_rings` to
/// `subscriber_rings` and checks each; returns the ring mappings seen while the link is up.
fn exchange(publisher_rings: bool, subscriber_rings: bool) -> usize {
    let Pair {
        p,
        s,
        publisher,
        sub,
    } = routed_pair(
        ("pub", "sub"),
        Default::default(),
        (publisher_rings, subscriber_rings),
    );
    let mut seen = 0;
    for n in 0..300u32 {
        let len = 4000 + (n as usize * 7) % 200;
        let payload: Vec<u8> = (0..len).map(|i| (i as u32 ^ n) as u8).collect();
        publisher.publish(&payload).expect("publish");
        let m = sub.recv_timeout(WAIT).expect("a message");
        assert_eq!(&m[..], &payload[..], "message {n}");
        seen = seen.max(ring_mappings());
    }
    drop((publisher, sub));
    p.leave().expect("leave");
    s.leave().expect("leave");
    wait_rings(0, WAIT, "after both left");
    seen
}

#[test]
fn rings_only_where_both_drivers_take_them() {
    assert_eq!(exchange(true, true), 2, "one ring, mapped at both ends");
    assert_eq!(
        exchange(false, true),
        0,
        "not offered: the publisher takes none"
    );
    assert_eq!(
        exchange(true, false),
        0,
        "not offered: the subscriber uses none"
    );
}
