//! Payloads between nodes in one process: every mode, every size class, order, fan-out,
//! bus channels and backpressure.

use std::time::Duration;

use ipc_driver_std::{DEFAULT_INLINE_MAX, Node, PublisherOptions, SendMode, SubscriptionOptions};

const WAIT: Duration = Duration::from_secs(10);

fn group() -> String {
    format!("t-{:016x}", getrandom::u64().expect("OS randomness"))
}

/// A node publishing `topic` and a node subscribed to it, linked.
fn pair(
    g: &str,
    topic: &str,
    mode: SendMode,
    sub: SubscriptionOptions,
) -> (
    Node,
    ipc_driver_std::Publisher,
    Node,
    ipc_driver_std::Subscription,
) {
    let p = Node::builder("pub").group(g).join().expect("pub joins");
    let s = Node::builder("sub").group(g).join().expect("sub joins");
    let subscription = s.subscription(topic, sub).expect("subscribe");
    let options = PublisherOptions {
        mode,
        ..PublisherOptions::default()
    };
    let publisher = p
        .publisher_with(topic, "application/octet-stream", options)
        .expect("publisher");
    let sid = s.id();
    p.wait_view(WAIT, |v| {
        v.node(sid)
            .is_some_and(|n| n.subscribes.contains_key(topic))
    })
    .expect("sees the subscriber");
    (p, publisher, s, subscription)
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

#[test]
fn every_mode_delivers_every_size_intact_and_in_order() {
    for mode in [
        SendMode::Auto,
        SendMode::Inline,
        SendMode::Fresh,
        SendMode::Pooled,
    ] {
        let g = group();
        let (_p, publisher, _s, sub) = pair(&g, "t", mode, SubscriptionOptions::block(WAIT));
        let sizes: &[usize] = if mode == SendMode::Inline {
            &[0, 1, 100, 4096, DEFAULT_INLINE_MAX]
        } else {
            &[0, 1, 100, 4096, 8192, 65_536, 1 << 20, (4 << 20) + 3]
        };
        for (i, &len) in sizes.iter().enumerate() {
            publisher.publish(&pattern(len, i as u8)).expect("publish");
        }
        for (i, &len) in sizes.iter().enumerate() {
            let m = sub
                .recv_timeout(WAIT)
                .unwrap_or_else(|e| panic!("{mode:?}: message {i} of {len} bytes: {e}"));
            assert_eq!(m.seq(), i as u64 + 1, "{mode:?}: in order");
            assert_eq!(m.len(), len, "{mode:?}");
            assert!(
                *m == pattern(len, i as u8)[..],
                "{mode:?}: {len} bytes intact"
            );
            let expect = match mode {
                // Inline up to a ring's slot (4 KiB): this group is private and has rings.
                SendMode::Auto if len <= 4096 => "inline",
                SendMode::Auto | SendMode::Pooled => "pooled",
                SendMode::Inline => "inline",
                _ => "fresh",
            };
            assert_eq!(m.via().name(), expect, "{mode:?}, {len} bytes");
        }
    }
}

#[test]
fn a_64_mib_payload_arrives_intact_fresh_and_pooled() {
    const LEN: usize = 64 << 20;
    for mode in [SendMode::Fresh, SendMode::Pooled] {
        let g = group();
        let (_p, publisher, _s, sub) = pair(&g, "t", mode, SubscriptionOptions::block(WAIT));
        let mut loan = publisher.loan(LEN).expect("loan");
        for (i, chunk) in loan.chunks_mut(4096).enumerate() {
            chunk.fill(i as u8);
        }
        loan[LEN - 1] = 0xEE;
        publisher.send(loan).expect("send");
        let m = sub.recv_timeout(WAIT).expect("delivered");
        assert_eq!(m.len(), LEN, "{mode:?}");
        let mismatch = m[..LEN - 1]
            .chunks(4096)
            .enumerate()
            .position(|(i, c)| c.iter().any(|&b| b != i as u8));
        assert_eq!(mismatch, None, "{mode:?}: every page intact");
        assert_eq!(m[LEN - 1], 0xEE, "{mode:?}: the last byte");
        assert_eq!(
            m.via().name(),
            if mode == SendMode::Fresh {
                "fresh"
            } else {
                "pooled"
            }
        );
    }
}

#[test]
fn a_loan_is_sent_without_a_copy() {
    let g = group();
    let (_p, publisher, _s, sub) = pair(&g, "t", SendMode::Pooled, SubscriptionOptions::default());
    let mut loan = publisher.loan(1 << 20).expect("loan");
    loan.fill(0xAB);
    loan[0] = 1;
    publisher.send(loan).expect("send");
    let m = sub.recv_timeout(WAIT).expect("delivered");
    assert_eq!((m.len(), m[0], m[1 << 19]), (1 << 20, 1, 0xAB));
}

#[test]
fn fan_out_reaches_every_subscriber_and_never_the_publisher() {
    let g = group();
    let p = Node::builder("pub").group(&g).join().expect("pub");
    let own = p
        .subscription("t", SubscriptionOptions::default())
        .expect("own subscription");
    let subs: Vec<_> = (0..4)
        .map(|i| {
            Node::builder(&format!("s{i}"))
                .group(&g)
                .join()
                .expect("join")
        })
        .collect();
    let queues: Vec<_> = subs
        .iter()
        .map(|s| {
            s.subscription("t", SubscriptionOptions::block(WAIT))
                .expect("sub")
        })
        .collect();
    let publisher = p.publisher("t", "x").expect("publisher");
    p.wait_view(WAIT, |v| v.subscribers_of("t").count() == 5)
        .expect("all subscribed");
    for n in 0..50u32 {
        publisher
            .publish(&n.to_le_bytes().repeat(5000))
            .expect("publish");
    }
    for q in &queues {
        for n in 0..50u32 {
            let m = q.recv_timeout(WAIT).expect("delivered");
            assert_eq!(&m[..4], n.to_le_bytes());
        }
    }
    assert!(
        own.recv_timeout(Duration::from_millis(200)).is_err(),
        "no self-delivery by default"
    );
}

#[test]
fn self_delivery_is_an_option() {
    let g = group();
    let p = Node::builder("p")
        .group(&g)
        .self_delivery(true)
        .join()
        .expect("join");
    let sub = p
        .subscription("t", SubscriptionOptions::default())
        .expect("sub");
    let publisher = p
        .publisher_with(
            "t",
            "x",
            PublisherOptions {
                mode: SendMode::Pooled,
                ..Default::default()
            },
        )
        .expect("pub");
    publisher.publish(b"to myself").expect("publish");
    let m = sub.recv_timeout(WAIT).expect("delivered to itself");
    assert_eq!(&*m, b"to myself");
    assert_eq!(m.publisher(), p.id());
}

#[test]
fn a_bus_reaches_every_other_member_and_never_the_sender() {
    let g = group();
    let nodes: Vec<_> = (0..3)
        .map(|i| {
            Node::builder(&format!("m{i}"))
                .group(&g)
                .join()
                .expect("join")
        })
        .collect();
    let buses: Vec<_> = nodes
        .iter()
        .map(|n| {
            n.bus("chat", SubscriptionOptions::block(WAIT))
                .expect("bus")
        })
        .collect();
    let topic = ipc_driver_std::bus_topic("chat");
    for n in &nodes {
        n.wait_view(WAIT, |v| {
            v.subscribers_of(&topic).count() == 3 && v.publishers_of(&topic).count() == 3
        })
        .expect("members");
    }
    for (i, b) in buses.iter().enumerate() {
        b.send(format!("from {i}").as_bytes()).expect("send");
    }
    for (i, b) in buses.iter().enumerate() {
        let mut got: Vec<String> = (0..2)
            .map(|_| {
                String::from_utf8(b.recv_timeout(WAIT).expect("a message").to_vec()).expect("utf8")
            })
            .collect();
        got.sort();
        let want: Vec<String> = (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("from {j}"))
            .collect();
        assert_eq!(got, want, "member {i}");
        assert!(
            b.recv_timeout(Duration::from_millis(100)).is_err(),
            "member {i}: nothing from itself"
        );
    }
}

#[test]
fn block_is_lossless_with_a_slow_subscriber() {
    let g = group();
    let sub_opts = SubscriptionOptions {
        depth: 4,
        ..SubscriptionOptions::block(WAIT)
    };
    for mode in [SendMode::Inline, SendMode::Pooled, SendMode::Fresh] {
        let (_p, publisher, _s, sub) = pair(&g, &format!("t-{mode:?}"), mode, sub_opts);
        let n = 300u64;
        let reader = std::thread::spawn(move || {
            let mut seqs = Vec::new();
            while seqs.len() < n as usize {
                let m = sub.recv_timeout(WAIT).expect("no loss");
                if seqs.len() % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2)); // a slow reader, now and then
                }
                seqs.push(m.seq());
            }
            seqs
        });
        for i in 0..n {
            publisher
                .publish(&i.to_le_bytes().repeat(250))
                .expect("publish");
        }
        let seqs = reader.join().expect("reader");
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "{mode:?}: every seq, contiguous"
        );
    }
}

#[test]
fn drop_newest_keeps_the_first_and_counts_the_rest() {
    let g = group();
    let (p, publisher, _s, sub) = pair(
        &g,
        "t",
        SendMode::Inline,
        SubscriptionOptions::drop_newest(8),
    );
    for i in 0..100u32 {
        publisher.publish(&i.to_le_bytes()).expect("publish");
    }
    // Every message is accounted for once: sent or dropped by the publisher, then received or
    // dropped by the subscription.
    let deadline = std::time::Instant::now() + WAIT;
    let (sent, dropped_at_publisher) = loop {
        let stats = p.data_stats().expect("stats");
        let sent: u64 = stats.published.iter().map(|t| t.messages).sum();
        let dropped: u64 = stats.published.iter().map(|t| t.dropped).sum();
        let c = sub.counters();
        if sent + dropped == 100 && c.received + c.dropped == sent {
            break (sent, dropped);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counters settle: {stats:?} {:?}",
            sub.counters()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let c = sub.counters();
    assert_eq!(c.queued, 8, "the queue holds its depth");
    assert_eq!(c.received, 8);
    assert_eq!(dropped_at_publisher + c.dropped, 92);
    assert!(sent >= 8);
    let kept: Vec<u32> = std::iter::from_fn(|| sub.try_recv().ok())
        .map(|m| u32::from_le_bytes(m[..4].try_into().expect("4 bytes")))
        .collect();
    assert_eq!(
        kept,
        (0..8).collect::<Vec<_>>(),
        "the oldest eight are kept"
    );
}

#[test]
fn a_subscriber_that_goes_away_holding_segments_gives_them_back() {
    let g = group();
    let p = Node::builder("pub").group(&g).join().expect("join");
    let s = Node::builder("sub").group(&g).join().expect("join");
    let subscription = s
        .subscription("t", SubscriptionOptions::drop_oldest(1000))
        .expect("subscribe");
    let options = PublisherOptions {
        mode: SendMode::Pooled,
        ..PublisherOptions::default()
    };
    let publisher = p.publisher_with("t", "x", options).expect("publisher");
    let sid = s.id();
    p.wait_view(WAIT, |v| {
        v.node(sid).is_some_and(|n| n.subscribes.contains_key("t"))
    })
    .expect("routed");
    for _ in 0..20 {
        publisher.publish(&[7; 100_000]).expect("publish");
    }
    let held: Vec<_> = (0..20)
        .map(|_| subscription.recv_timeout(WAIT).expect("delivered"))
        .collect();
    assert_eq!(
        p.segments_in_use().pool,
        20,
        "every segment is held by the subscriber"
    );
    // The subscriber's node leaves while its application still holds the messages.
    drop(subscription);
    drop(s);
    let deadline = std::time::Instant::now() + WAIT;
    while p.segments_in_use().pool > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "segments came back: {:?}",
            p.segments_in_use()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // What the application holds stays readable: the mappings are its own.
    assert!(held.iter().all(|m| m.iter().all(|&b| b == 7)));
}

#[test]
fn application_counters_are_in_the_node_stats_and_bounded() {
    let node = Node::builder("counting")
        .group(group())
        .join()
        .expect("joins");
    node.set_counters(&[("forwarded", 12), ("dropped", 1)])
        .expect("within the bounds");
    let app = node.data_stats().expect("stats").app;
    let got: Vec<(&str, u64)> = app.iter().map(|c| (c.name.as_str(), c.value)).collect();
    assert_eq!(got, [("forwarded", 12), ("dropped", 1)]);
    let long = "x".repeat(65);
    for bad in [&[(long.as_str(), 1)][..], &[("new\nline", 1)]] {
        let e = node.set_counters(bad).expect_err("out of bounds");
        assert!(
            matches!(e, ipc_driver_std::DriverError::Cmd(_)),
            "{bad:?}: {e}"
        );
    }
    assert_eq!(node.data_stats().expect("stats").app, app, "unchanged");
}

/// A pool at its bound: each loan waits for a segment to come back and reuses it, every
/// message arrives pooled (none falls back to a fresh segment, as one would if nothing came
/// back within the publisher's `pool_wait`), and once the publisher goes quiet every segment
/// comes back without it publishing again.
#[test]
fn a_pool_at_its_bound_reuses_what_comes_back() {
    const SIZE: usize = 64 << 10;
    const SEGMENTS: u64 = 4;
    let g = group();
    let p = Node::builder("pub")
        .group(&g)
        .pool_bytes(SEGMENTS * SIZE as u64)
        .join()
        .expect("pub joins");
    let s = Node::builder("sub").group(&g).join().expect("sub joins");
    let sub = s
        .subscription("t", SubscriptionOptions::block(WAIT))
        .expect("subscribe");
    let options = PublisherOptions {
        mode: SendMode::Pooled,
        pool_wait: WAIT,
        ..PublisherOptions::default()
    };
    let publisher = p.publisher_with("t", "x", options).expect("publisher");
    let sid = s.id();
    p.wait_view(WAIT, |v| {
        v.node(sid).is_some_and(|n| n.subscribes.contains_key("t"))
    })
    .expect("sees the subscriber");
    let wait_all_back = |what: &str| {
        let deadline = std::time::Instant::now() + WAIT;
        while p.segments_in_use().pool > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {:?} still lent to a subscriber that dropped every message",
                p.segments_in_use()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Below the bound, nothing waits: the publisher's sends ask for no wake for the
    // returns, and the node takes them back by itself once it is quiet.
    for i in 0..2 {
        publisher.publish(&pattern(SIZE, i)).expect("publish");
        let m = sub.recv_timeout(WAIT).expect("a message");
        assert_eq!(m.via().name(), "pooled");
    }
    wait_all_back("two messages");
    let n = 250u8;
    let reader = std::thread::spawn(move || {
        for i in 0..n {
            let m = sub.recv_timeout(WAIT).expect("a message");
            assert_eq!(m.via().name(), "pooled", "message {i}");
            assert_eq!(&m[..], &pattern(SIZE, i)[..], "message {i} intact");
        }
    });
    for i in 0..n {
        let mut loan = publisher.loan(SIZE).expect("loan");
        loan.copy_from_slice(&pattern(SIZE, i));
        publisher.send(loan).expect("send");
    }
    reader.join().expect("every message pooled and intact");
    assert!(
        p.pool_bytes() <= SEGMENTS * SIZE as u64,
        "the pool grew to {} bytes",
        p.pool_bytes()
    );
    wait_all_back("at the bound");
}
