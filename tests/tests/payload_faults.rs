//! Payloads across faults, with real processes: a hub killed mid-stream under `Block`, a
//! subscriber joining mid-stream, and a subscriber killed while it holds pooled segments.
//!
//! Every wait is on a condition with a generous deadline; every child is killed and reaped
//! when its [`Child`] drops, also when a test fails.

use std::time::Duration;

use ipc_driver_std::{Node, PublisherOptions, SendMode};
use ipc_tests::peer::{Driver, fnv1a64, payload};
use ipc_tests::{Child, WAIT, event, group, is, node_id, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Checks that `got` are messages `first_seq..` of one publisher, contiguous, each intact:
/// `size` bytes carrying the index the publisher gave it (`first_index..`).
fn contiguous(
    who: &str,
    topic: &str,
    got: &[Value],
    size: usize,
    first_seq: u64,
    first_index: u64,
) {
    for (i, v) in got.iter().enumerate() {
        let (seq, index) = (first_seq + i as u64, first_index + i as u64);
        assert_eq!(v["seq"], seq, "{who}: {topic}: contiguous: {v}");
        assert_eq!(v["index"], index, "{who}: {topic}: in order: {v}");
        assert_eq!(v["len"], size, "{who}: {topic}: {v}");
        let want = format!("{:016x}", fnv1a64(&payload(index, size)));
        assert_eq!(
            v["fnv1a64"],
            want.as_str(),
            "{who}: {topic} #{index} intact: {v}"
        );
    }
}

fn messages_on(topic: &'static str) -> impl Fn(&Value) -> bool {
    move |v| event(v) == "message" && v["topic"] == topic
}

#[test]
fn block_is_lossless_across_a_hub_kill() {
    let g = group();
    let mut hub = Child::peer(Driver::Std, &g, "hub", &[]);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut sub = Child::peer(Driver::Std, &g, "sub", &[]);
    let mut p = Child::peer(Driver::Std, &g, "pub", &[]);
    // One topic inline, one pooled: both modes across the failover.
    let plan: [(&str, &str, usize); 2] = [("small", "inline", 200), ("large", "pooled", 100_000)];
    for (topic, mode, _) in plan {
        sub.send(&format!("subscription {topic} block 16"));
        p.send(&format!("publisher {topic} {mode}"));
    }
    let sub_id = sub.node_id();
    for (topic, ..) in plan {
        p.wait_for(WAIT, |v| {
            is(v, "subscribed", &sub_id) && v["topic"] == topic
        });
    }
    // A steady stream: batches go in one after the other, before, during and after the
    // failover; the publisher never waits for the group to settle.
    const BATCH: u64 = 50;
    let publish_batches = |p: &mut Child, n: u64| {
        for _ in 0..n {
            for (topic, _, size) in plan {
                p.send(&format!("publish {topic} {size} {BATCH}"));
            }
        }
    };
    publish_batches(&mut p, 2);
    for (topic, ..) in plan {
        sub.wait_count(WAIT, BATCH as usize, messages_on(topic));
    }
    let old = hub.node_id();
    hub.kill();
    publish_batches(&mut p, 4);
    // A new hub, and the stream goes on.
    for c in [&mut sub, &mut p] {
        c.wait_for(WAIT, |v| event(v) == "synced" && v["hub"] != old.as_str());
    }
    publish_batches(&mut p, 4);
    let total = 10 * BATCH as usize;
    p.wait_count(WAIT, 2 * 10, |v| event(v) == "published");
    assert!(p.events("failed").is_empty(), "{:#?}", p.events("failed"));
    for (topic, mode, size) in plan {
        let got = sub.wait_count(WAIT, total, messages_on(topic));
        assert_eq!(got.len(), total, "{topic}: no more than sent");
        contiguous("sub", topic, &got, size, 1, 0);
        assert!(got.iter().all(|v| v["via"] == mode), "{topic}: {mode}");
    }
}

#[test]
fn a_subscriber_joining_mid_stream_gets_the_rest_in_order() {
    let g = group();
    let mut first = Child::peer(Driver::Std, &g, "first", &[]);
    first.send("subscription t block 64");
    let mut p = Child::peer(Driver::Std, &g, "pub", &[]);
    p.send("publisher t auto");
    let first_id = first.node_id();
    p.wait_for(WAIT, |v| is(v, "subscribed", &first_id));
    const N: u64 = 100;
    p.send(&format!("publish t 1000 {N}"));
    first.wait_count(WAIT, N as usize, messages_on("t"));
    // The second subscriber arrives after the first hundred.
    let mut late = Child::peer(Driver::Std, &g, "late", &[]);
    late.send("subscription t block 64");
    let late_id = late.node_id();
    p.wait_for(WAIT, |v| is(v, "subscribed", &late_id));
    p.send(&format!("publish t 1000 {N}"));
    let got = first.wait_count(WAIT, 2 * N as usize, messages_on("t"));
    contiguous("first", "t", &got, 1000, 1, 0);
    let got = late.wait_count(WAIT, N as usize, messages_on("t"));
    assert_eq!(
        got.len(),
        N as usize,
        "late: only what came after it: {got:#?}"
    );
    contiguous("late", "t", &got, 1000, N + 1, N);
}

#[test]
fn a_subscriber_killed_holding_pooled_segments_gives_them_back() {
    let g = group();
    // This process publishes, so that its pool can be looked at; it runs the hub, with a long
    // keepalive, so that the stopped subscriber below is not expelled: what frees the
    // segments is its link closing when it is killed.
    let node = Node::builder("pub")
        .group(&g)
        .keepalive(Duration::from_secs(60))
        .join()
        .expect("join");
    let options = PublisherOptions {
        mode: SendMode::Pooled,
        ..PublisherOptions::default()
    };
    let publisher = node.publisher_with("t", "x", options).expect("publisher");
    let mut sub = Child::peer(Driver::Std, &g, "sub", &["--keepalive-ms", "60000"]);
    sub.send("subscription t oldest 1000");
    let sid = node_id(&sub.node_id());
    node.wait_view(WAIT, |v| {
        v.node(sid).is_some_and(|n| n.subscribes.contains_key("t"))
    })
    .expect("routed");
    // The link works, and every segment comes back while the subscriber runs.
    publisher.publish(&[1; 100_000]).expect("publish");
    sub.wait_count(WAIT, 1, messages_on("t"));
    wait_until("the first segment back", || {
        node.segments_in_use().pool == 0
    });
    // Stopped, it reads nothing: what is sent now stays lent to it.
    sub.signal(Signal::SIGSTOP);
    for _ in 0..20 {
        publisher.publish(&[7; 100_000]).expect("publish");
    }
    wait_until("segments lent", || node.segments_in_use().pool > 0);
    sub.kill();
    wait_until("every segment back", || node.segments_in_use().pool == 0);
    // Measured once the first subscriber's share is settled: the publisher may still have
    // been sending to it (and growing the pool) when the first segment was seen lent.
    let pool = node.pool_bytes();
    // The pool is reused, not grown, for the next subscriber: as many messages as it holds
    // segments of their class (more could all be lent at once, and rightly grow it).
    let segments = pool / ipc_proto::data::Pool::class(100_000);
    assert!(segments >= 1, "a pool of {pool} bytes");
    let mut next = Child::peer(Driver::Std, &g, "next", &["--keepalive-ms", "60000"]);
    next.send("subscription t block 16");
    let nid = node_id(&next.node_id());
    node.wait_view(WAIT, |v| {
        v.node(nid).is_some_and(|n| n.subscribes.contains_key("t"))
    })
    .expect("routed");
    for _ in 0..segments {
        publisher.publish(&[9; 100_000]).expect("publish");
    }
    let segments = usize::try_from(segments).expect("a few");
    next.wait_count(WAIT, segments, messages_on("t"));
    wait_until("segments back again", || node.segments_in_use().pool == 0);
    assert!(
        node.pool_bytes() <= pool,
        "the pool grew from {pool} to {} bytes",
        node.pool_bytes()
    );
}
