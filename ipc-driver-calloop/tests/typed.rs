//! Typed payloads between two nodes in one calloop loop: a plain-old-data value loaned in a
//! pool segment and read in place, a serde value, and what the reader gets for another
//! declared type, a wrong size and hostile bytes; and the publisher's own type checks.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use calloop::{Dispatcher, EventLoop};
use ipc_driver_calloop::{
    DriverError, Node, NodeEvent, NodeSource, Pod, PublisherOptions, SendMode, SubscriptionOptions,
    TypeError, TypeName, Zeroable, bincode_mime, pod_mime,
};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(10);
const TOPICS: [&str; 4] = ["pose", "settings", "liar", "hostile"];

fn group() -> String {
    format!("calloop-typed-{:016x}", getrandom::u64().expect("random"))
}

#[path = "../../ipc-driver-std/tests/shared/poses.rs"]
mod poses;
use poses::{Pose, Twist};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Settings {
    name: String,
    gains: Vec<f32>,
}
impl TypeName for Settings {}

/// What b read of one message, both ways.
struct Read {
    topic: String,
    pod: Result<(Pose, bool), TypeError>,
    serde: Result<Settings, TypeError>,
}

#[derive(Default)]
struct State {
    reads: Vec<Read>,
}

#[test]
fn typed_values_between_two_nodes_in_one_loop() {
    let g = group();
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().expect("loop");
    let mut state = State::default();
    let mut a = NodeSource::builder("a").group(&g).join().expect("a");
    let mut b = NodeSource::builder("b").group(&g).join().expect("b");
    let pooled = PublisherOptions {
        mode: SendMode::Pooled,
        ..PublisherOptions::default()
    };
    let node = a.node();
    node.open_pod_publisher::<Pose>("pose", pooled)
        .expect("pose");
    node.open_serde_publisher::<Settings>("settings", PublisherOptions::default())
        .expect("settings");
    // Byte publishers that declare types and send something else.
    node.open_publisher("liar", &pod_mime::<Pose>(), PublisherOptions::default())
        .expect("liar");
    node.open_publisher(
        "hostile",
        &bincode_mime::<Settings>(),
        PublisherOptions::default(),
    )
    .expect("hostile");

    // The publisher's own checks: the topic's declared type, or none.
    assert!(matches!(
        node.loan_pod::<Twist>("pose"),
        Err(DriverError::Type(TypeError::Mismatch { .. }))
    ));
    assert!(matches!(
        node.publish_serde(
            "pose",
            &Settings {
                name: String::new(),
                gains: vec![]
            }
        ),
        Err(DriverError::Type(TypeError::Mismatch { .. }))
    ));
    assert!(matches!(
        node.publish_pod("nowhere", &Pose::zeroed()),
        Err(DriverError::NotPublishing(_))
    ));

    for topic in TOPICS {
        b.node()
            .open_subscription(topic, SubscriptionOptions::default())
            .expect("subscription");
    }
    let (a_id, b_id) = (a.node().id(), b.node().id());
    let a = Dispatcher::new(a, |_, _: &mut Node, _: &mut State| {});
    event_loop
        .handle()
        .register_dispatcher(a.clone())
        .expect("insert a");
    let b = Dispatcher::new(b, |event, node: &mut Node, state: &mut State| {
        if let NodeEvent::Message(m) = event {
            let node = &*node;
            state.reads.push(Read {
                topic: m.topic().into(),
                pod: m
                    .pod::<Pose>(node)
                    .map(|p| (*p, matches!(p, Cow::Borrowed(_)))),
                serde: m.decode::<Settings>(node),
            });
        }
    });
    event_loop
        .handle()
        .register_dispatcher(b.clone())
        .expect("insert b");

    // Until a sees b's subscriptions and b sees a's declared types.
    let deadline = Instant::now() + WAIT;
    loop {
        let a_sees_b = a
            .as_source_mut()
            .node()
            .view()
            .node(b_id)
            .is_some_and(|n| TOPICS.iter().all(|t| n.subscribes.contains_key(*t)));
        let b_sees_a = b
            .as_source_mut()
            .node()
            .view()
            .node(a_id)
            .is_some_and(|n| TOPICS.iter().all(|t| n.publishes.contains_key(*t)));
        if a_sees_b && b_sees_a {
            break;
        }
        assert!(Instant::now() < deadline, "a and b never saw each other");
        event_loop
            .dispatch(Some(Duration::from_millis(10)), &mut state)
            .expect("dispatch");
    }

    let settings = Settings {
        name: "arm".into(),
        gains: vec![0.5, 2.0],
    };
    {
        let mut source = a.as_source_mut();
        let node = source.node();
        let mut pose = node.loan_pod::<Pose>("pose").expect("loan");
        pose.x = 4.0;
        pose.stamp = 42;
        node.send_pod(pose).expect("send");
        node.publish_serde("settings", &settings).expect("settings");
        node.publish("liar", &[1, 2, 3, 4, 5]).expect("liar");
        let mut huge = vec![253u8]; // a name claiming 2^62 bytes
        huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
        node.publish("hostile", &huge).expect("hostile");
    }
    let deadline = Instant::now() + WAIT;
    while state.reads.len() < TOPICS.len() {
        assert!(
            Instant::now() < deadline,
            "b got {} messages",
            state.reads.len()
        );
        event_loop
            .dispatch(Some(Duration::from_millis(10)), &mut state)
            .expect("dispatch");
    }

    for r in &state.reads {
        match r.topic.as_str() {
            "pose" => {
                let expected = Pose {
                    x: 4.0,
                    stamp: 42,
                    ..Pose::zeroed()
                };
                assert_eq!(r.pod, Ok((expected, true)), "read in place from the pool");
                assert!(matches!(r.serde, Err(TypeError::Mismatch { .. })));
            }
            "settings" => {
                assert_eq!(r.serde, Ok(settings.clone()));
                assert!(matches!(r.pod, Err(TypeError::Mismatch { .. })));
            }
            "liar" => assert_eq!(
                r.pod,
                Err(TypeError::Size {
                    expected: 32,
                    len: 5
                })
            ),
            "hostile" => assert!(
                matches!(r.serde, Err(TypeError::Decode(_))),
                "refused: {:?}",
                r.serde
            ),
            other => panic!("unexpected topic {other}"),
        }
    }
}
