//! Typed payloads between two nodes, as an application uses them: plain-old-data values
//! loaned in place and read without a copy in every mode, serde values, and the errors a
//! reader gets for another declared type, a wrong size and hostile bytes.

use std::borrow::Cow;
use std::time::Duration;

use ipc_driver_std::{
    Message, Node, Pod, PublisherOptions, SendMode, SubscriptionOptions, TypeError, TypeName,
    Zeroable, bincode_mime, pod_mime,
};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(10);

fn group() -> String {
    format!("t-{:016x}", getrandom::u64().expect("OS randomness"))
}

#[path = "shared/poses.rs"]
mod poses;
use poses::{Pose, Twist};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Settings {
    name: String,
    gains: Vec<f32>,
    enabled: bool,
}
impl TypeName for Settings {}

/// A publishing node and a subscribed node, each seeing the other: the subscriber's view
/// holds the publisher's declared type once `announced` is in it.
fn nodes(g: &str, topic: &str) -> (Node, Node, ipc_driver_std::Subscription) {
    let p = Node::builder("pub").group(g).join().expect("pub joins");
    let s = Node::builder("sub").group(g).join().expect("sub joins");
    let sub = s
        .subscription(topic, SubscriptionOptions::block(WAIT))
        .expect("subscribe");
    (p, s, sub)
}

fn wait_both(p: &Node, s: &Node, topic: &str) {
    let sid = s.id();
    p.wait_view(WAIT, |v| {
        v.node(sid)
            .is_some_and(|n| n.subscribes.contains_key(topic))
    })
    .expect("the publisher sees the subscriber");
    let pid = p.id();
    s.wait_view(WAIT, |v| {
        v.node(pid).is_some_and(|n| n.publishes.contains_key(topic))
    })
    .expect("the subscriber sees the declared type");
}

fn recv(sub: &ipc_driver_std::Subscription) -> Message {
    sub.recv_timeout(WAIT).expect("a message")
}

#[test]
fn pod_values_are_loaned_in_place_and_read_without_a_copy_in_every_mode() {
    for mode in [SendMode::Inline, SendMode::Pooled, SendMode::Fresh] {
        let g = group();
        let (p, s, sub) = nodes(&g, "pose");
        let options = PublisherOptions {
            mode,
            ..PublisherOptions::default()
        };
        let poses = p
            .pod_publisher_with::<Pose>("pose", options)
            .expect("publisher");
        wait_both(&p, &s, "pose");
        let mut loan = poses.loan().expect("loan");
        assert_eq!(*loan, Pose::zeroed(), "{mode:?}: a loan starts zeroed");
        loan.x = 1.5;
        loan.heading = -0.25;
        loan.stamp = 7;
        poses.send(loan).expect("send");
        poses
            .publish(&Pose {
                x: 2.0,
                y: 3.0,
                heading: 0.0,
                stamp: 8,
            })
            .expect("publish");

        let m = recv(&sub);
        assert_eq!(m.declared_type(&s).as_deref(), Some(&*pod_mime::<Pose>()));
        let pose = m.pod::<Pose>(&s).expect("a Pose");
        assert_eq!(
            *pose,
            Pose {
                x: 1.5,
                y: 0.0,
                heading: -0.25,
                stamp: 7
            },
            "{mode:?}"
        );
        if mode != SendMode::Inline {
            // A mapped segment is page-aligned: the value is the mapping's bytes.
            assert!(matches!(pose, Cow::Borrowed(_)), "{mode:?}: read in place");
        }
        assert_eq!(recv(&sub).pod::<Pose>(&s.view()).expect("a Pose").stamp, 8);
    }
}

#[test]
fn another_declared_type_is_a_mismatch_not_a_misread() {
    let g = group();
    let (p, s, sub) = nodes(&g, "pose");
    let poses = p.pod_publisher::<Pose>("pose").expect("publisher");
    wait_both(&p, &s, "pose");
    poses.publish(&Pose::zeroed()).expect("publish");
    let m = recv(&sub);
    // Same size, another name: refused before the bytes are looked at.
    assert_eq!(size_of::<Twist>(), size_of::<Pose>());
    assert_eq!(
        m.pod::<Twist>(&s),
        Err(TypeError::Mismatch {
            expected: "application/x-ipc-pod; size=32; type=robot.Twist/1".into(),
            declared: Some(pod_mime::<Pose>()),
        })
    );
    assert!(matches!(
        m.decode::<Settings>(&s),
        Err(TypeError::Mismatch {
            declared: Some(_),
            ..
        })
    ));
    // A view that does not know the publisher declares nothing.
    assert!(matches!(
        m.pod::<Pose>(&ipc_driver_std::View::default()),
        Err(TypeError::Mismatch { declared: None, .. })
    ));
    assert_eq!(m.pod::<Pose>(&s).expect("the right type").stamp, 0);
}

#[test]
fn a_payload_of_the_wrong_size_is_an_error() {
    let g = group();
    let (p, s, sub) = nodes(&g, "pose");
    // A byte publisher that declares Pose but sends 3 bytes, then 33.
    let liar = p.publisher("pose", &pod_mime::<Pose>()).expect("publisher");
    wait_both(&p, &s, "pose");
    liar.publish(&[1, 2, 3]).expect("publish");
    liar.publish(&[0; 33]).expect("publish");
    assert_eq!(
        recv(&sub).pod::<Pose>(&s),
        Err(TypeError::Size {
            expected: 32,
            len: 3
        })
    );
    assert_eq!(
        recv(&sub).pod::<Pose>(&s),
        Err(TypeError::Size {
            expected: 32,
            len: 33
        })
    );
}

#[test]
fn serde_values_round_trip_and_hostile_bytes_are_refused() {
    let g = group();
    let (p, s, sub) = nodes(&g, "settings");
    let settings = p
        .serde_publisher::<Settings>("settings")
        .expect("publisher");
    wait_both(&p, &s, "settings");
    let value = Settings {
        name: "arm".into(),
        gains: vec![0.5, 1.0, 2.0],
        enabled: true,
    };
    settings.publish(&value).expect("publish");
    let m = recv(&sub);
    assert_eq!(
        m.declared_type(&s).as_deref(),
        Some(&*bincode_mime::<Settings>())
    );
    assert_eq!(m.decode::<Settings>(&s), Ok(value));
    assert!(matches!(m.pod::<u64>(&s), Err(TypeError::Mismatch { .. })));
    drop(settings);

    // A hostile publisher declaring the same type.
    let hostile = p
        .publisher("settings2", &bincode_mime::<Settings>())
        .expect("publisher");
    let sub2 = s
        .subscription("settings2", SubscriptionOptions::block(WAIT))
        .expect("subscribe");
    wait_both(&p, &s, "settings2");
    let mut huge = vec![253u8]; // a string claiming 2^62 bytes
    huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let payloads: [&[u8]; 5] = [
        &[],
        &huge,
        &[3, b'a', b'r'],             // truncated
        &[2, 0xff, 0xfe, 0, 0],       // invalid UTF-8
        &[0, 0, 1, 9, 9, 9, 9, 9, 9], // trailing bytes
    ];
    for bytes in payloads {
        hostile.publish(bytes).expect("publish");
    }
    for bytes in payloads {
        let m = sub2.recv_timeout(WAIT).expect("a message");
        assert_eq!(&*m, bytes);
        assert!(
            matches!(m.decode::<Settings>(&s), Err(TypeError::Decode(_))),
            "{bytes:?} is refused"
        );
    }
}

#[test]
fn the_first_message_of_a_publisher_that_does_not_wait_has_its_declared_type() {
    // A publisher that publishes at once, as a short-lived program does: its first message
    // can reach the subscriber in the same wakeup as its announcement. The subscriber's view
    // must show the announcement by the time the message is received.
    for round in 0..20 {
        let g = group();
        let s = Node::builder("sub").group(&g).join().expect("sub joins");
        let sub = s
            .subscription("pose", SubscriptionOptions::block(WAIT))
            .expect("subscribe");
        let p = Node::builder("pub").group(&g).join().expect("pub joins");
        let poses = p.pod_publisher::<Pose>("pose").expect("publisher");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let publishing = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut stamp = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    stamp += 1;
                    let pose = Pose {
                        x: 0.0,
                        y: 0.0,
                        heading: 0.0,
                        stamp,
                    };
                    poses.publish(&pose).expect("publish");
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let first = recv(&sub);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let read = first.pod::<Pose>(&s);
        publishing.join().expect("the publisher");
        let pose = read.unwrap_or_else(|e| panic!("round {round}: the first message: {e}"));
        assert!(pose.stamp >= 1, "round {round}");
    }
}
