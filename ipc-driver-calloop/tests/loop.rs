//! Two nodes in one calloop loop: join, see each other, exchange messages in every mode.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use calloop::EventLoop;
use ipc_driver_calloop::{
    Node, NodeEvent, NodeSource, PublisherOptions, SendMode, SubscriptionOptions,
};
use ipc_proto::Event;

const WAIT: Duration = Duration::from_secs(10);

fn group() -> String {
    format!("calloop-test-{:016x}", getrandom::u64().expect("random"))
}

#[derive(Default)]
struct State {
    /// (receiver name, topic, payload, via)
    messages: Vec<(String, String, Vec<u8>, &'static str)>,
    synced: Vec<String>,
    joined: Vec<(String, String)>,
    left: Vec<String>,
}

fn insert(event_loop: &EventLoop<'static, State>, source: NodeSource) {
    event_loop
        .handle()
        .insert_source(source, |event, node: &mut Node, state: &mut State| {
            let me = node.name().to_string();
            match event {
                NodeEvent::Synced { .. } => state.synced.push(me),
                NodeEvent::Topology(Event::NodeJoined { info, .. }) => {
                    state.joined.push((me, info.name.clone()));
                }
                NodeEvent::Message(m) => {
                    state
                        .messages
                        .push((me, m.topic().to_string(), m.to_vec(), m.via().name()));
                }
                NodeEvent::Left => state.left.push(me),
                _ => {}
            }
        })
        .expect("insert");
}

fn run_until(
    event_loop: &mut EventLoop<'static, State>,
    state: &mut State,
    what: &str,
    done: impl Fn(&State) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(state) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        event_loop
            .dispatch(Some(Duration::from_millis(10)), state)
            .expect("dispatch");
    }
}

#[test]
fn two_nodes_in_one_loop_exchange_every_payload_mode() {
    let g = group();
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().expect("loop");
    let mut state = State::default();
    let mut a = NodeSource::builder("a").group(&g).join().expect("a");
    let mut b = NodeSource::builder("b").group(&g).join().expect("b");
    let a_handle = a.node().handle();
    for (topic, mode) in [
        ("inline", SendMode::Inline),
        ("fresh", SendMode::Fresh),
        ("pooled", SendMode::Pooled),
    ] {
        let options = PublisherOptions {
            mode,
            inline_max: 64 << 10,
            ..PublisherOptions::default()
        };
        a.node()
            .open_publisher(topic, "application/octet-stream", options)
            .expect("publisher");
        b.node()
            .open_subscription(topic, SubscriptionOptions::default())
            .expect("subscription");
    }
    insert(&event_loop, a);
    insert(&event_loop, b);
    run_until(&mut event_loop, &mut state, "both synced", |s| {
        s.synced.len() >= 2
    });
    run_until(&mut event_loop, &mut state, "a sees b", |s| {
        s.joined.iter().any(|(me, who)| me == "a" && who == "b")
    });
    // The route from a to b exists once a's view has b's subscriptions: publish until b has
    // one message of each topic (earlier ones may go nowhere), then check the payloads.
    let payload =
        |i: usize, len: usize| -> Vec<u8> { (0..len).map(|j| (i * 31 + j) as u8).collect() };
    let sizes = [("inline", 100), ("fresh", 300_000), ("pooled", 1 << 20)];
    let deadline = Instant::now() + WAIT;
    let mut round = 0;
    while sizes
        .iter()
        .any(|(t, _)| !state.messages.iter().any(|(_, topic, ..)| topic == t))
    {
        assert!(Instant::now() < deadline, "no route from a to b");
        for (topic, len) in sizes {
            a_handle
                .publish(topic, payload(round, len))
                .expect("publish");
        }
        round += 1;
        event_loop
            .dispatch(Some(Duration::from_millis(20)), &mut state)
            .expect("dispatch");
    }
    for (who, topic, data, via) in &state.messages {
        assert_eq!(who, "b");
        let len = sizes.iter().find(|(t, _)| t == topic).expect("known").1;
        assert_eq!(data.len(), len);
        // Every message is some round's payload, intact.
        assert!(
            (0..round).any(|i| *data == payload(i, len)),
            "{topic} payload corrupted"
        );
        assert_eq!(via, topic, "travelled as its publisher asked");
    }
    a_handle.leave().expect("leave");
    run_until(&mut event_loop, &mut state, "a left", |s| {
        s.left.contains(&"a".to_string())
    });
}

#[test]
fn application_counters_are_in_the_node_stats_and_bounded() {
    let mut source = NodeSource::builder("counting")
        .group(group())
        .join()
        .expect("joins");
    let node = source.node();
    node.set_counters(&[("forwarded", 12), ("dropped", 1)])
        .expect("within the bounds");
    let app = node.data_stats().app;
    let got: Vec<(&str, u64)> = app.iter().map(|c| (c.name.as_str(), c.value)).collect();
    assert_eq!(got, [("forwarded", 12), ("dropped", 1)]);
    let many: Vec<String> = (0..33).map(|i| format!("c{i}")).collect();
    let many: Vec<(&str, u64)> = many.iter().map(|n| (n.as_str(), 1)).collect();
    let e = node.set_counters(&many).expect_err("33 counters");
    assert!(matches!(e, ipc_driver_calloop::DriverError::Cmd(_)), "{e}");
    assert_eq!(node.data_stats().app, app, "unchanged");
}

/// Messages published while their `Block` subscriber takes none are held by the publishing
/// node once the subscriber has no room (its pooled slots all lent), inline ones copied (a
/// publish borrows the application's bytes only while it goes out at once), and reach it
/// intact and in order once it reads; a room event says they are all out.
#[test]
fn messages_held_for_a_full_subscriber_arrive_intact_and_in_order() {
    const MESSAGES: usize = 400;
    let g = group();
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().expect("loop");
    let mut state = State::default();
    let mut a = NodeSource::builder("a").group(&g).join().expect("a");
    // Small payloads inline, large ones pooled (each holds a slot until b has read it).
    let options = PublisherOptions {
        mode: SendMode::Auto,
        ..PublisherOptions::default()
    };
    (a.node())
        .open_publisher("held", "application/octet-stream", options)
        .expect("publisher");
    let a_handle = a.node().handle();
    let rooms = Rc::new(Cell::new(0));
    let subscribed = Rc::new(Cell::new(false));
    {
        let (rooms, subscribed) = (Rc::clone(&rooms), Rc::clone(&subscribed));
        event_loop
            .handle()
            .insert_source(a, move |event, node: &mut Node, _: &mut State| {
                subscribed.set(node.view().subscribers_of("held").count() > 0);
                if let NodeEvent::Room { topic } = event {
                    assert_eq!(topic, "held");
                    rooms.set(rooms.get() + 1);
                }
            })
            .expect("insert");
    }
    let b = ipc_driver_std::Node::builder("b")
        .group(&g)
        .join()
        .expect("b");
    let full = SubscriptionOptions {
        depth: 1,
        ..SubscriptionOptions::block(WAIT)
    };
    let sub = b.subscription("held", full).expect("subscription");
    run_until(
        &mut event_loop,
        &mut state,
        "a sees b's subscription",
        |_| subscribed.get(),
    );
    let payload = |i: usize| -> Vec<u8> {
        let len = if i.is_multiple_of(2) { 64 << 10 } else { 100 };
        (0..len).map(|j| (i * 7 + j) as u8).collect()
    };
    for i in 0..MESSAGES {
        a_handle.publish("held", payload(i)).expect("publish");
    }
    // b reads only now: what it has no room for waits in a.
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "{} of {MESSAGES} came",
            got.len()
        );
        event_loop
            .dispatch(Some(Duration::from_millis(1)), &mut state)
            .expect("dispatch");
        while let Ok(m) = sub.recv_timeout(Duration::from_millis(1)) {
            got.push(m.to_vec());
        }
    }
    for (i, data) in got.iter().enumerate() {
        assert!(*data == payload(i), "message {i}");
    }
    run_until(&mut event_loop, &mut state, "the held messages out", |_| {
        rooms.get() > 0
    });
}
