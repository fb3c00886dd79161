//! Protocol-level bad input on a real hub's socket (the conformance suite covers garbage,
//! oversized and fd-carrying records on both drivers): every offender is disconnected, the hub
//! carries on serving everyone else, and nothing panics.

use std::os::fd::OwnedFd;
use std::time::Duration;

use ipc_proto::wire::{Frame, Hello, encode};
use ipc_proto::{NodeId, NodeInfo, Term};
use ipc_tests::{Child, WAIT, event, group, raw};

/// Connects to the group's hub as a raw peer.
fn to_hub(group: &str) -> OwnedFd {
    raw::connect(&raw::hub_socket(group))
}

fn hello(version: u8) -> Vec<u8> {
    let info = NodeInfo {
        id: NodeId::new(42).expect("non-zero"),
        name: "raw".into(),
        data_addr: String::new(),
        pid: 0,
        uid: 0,
    };
    let mut f = encode(&Frame::Hello(Hello {
        member: Some(info),
        term: Term(0),
        horizon: Default::default(),
        keepalive: Default::default(),
    }));
    // [len u32][tag][version varint]: the version is byte 5 and fits one byte below 251.
    assert_eq!(
        u16::from(f[5]),
        ipc_proto::wire::PROTOCOL_VERSION,
        "the protocol version encodes as one byte"
    );
    f[5] = version;
    f
}

#[test]
fn every_kind_of_bad_input_gets_the_offender_disconnected() {
    let g = group();
    let keepalive = ["--keepalive-ms", "1000"];
    let mut hub = Child::node(&g, "hub", &keepalive);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut member = Child::node(&g, "member", &keepalive);
    member.wait_for(WAIT, |v| event(v) == "synced");

    // A wrong protocol version: a goodbye saying so, then the link closes.
    let fd = to_hub(&g);
    raw::send(&fd, &hello(99), &[]);
    let (said, _) = raw::closed(&fd);
    let mut d = ipc_proto::wire::Deframer::new(ipc_proto::Limits::default());
    d.push(&said);
    let goodbye = d.next_frame().expect("a frame").expect("a valid frame");
    assert_eq!(
        goodbye,
        Frame::Goodbye(ipc_proto::CloseReason::VersionMismatch {
            theirs: 99,
            ours: ipc_proto::wire::PROTOCOL_VERSION
        })
    );

    // A truncated frame, then silence: the keepalive (1 s) expels it.
    let fd = to_hub(&g);
    raw::send(&fd, &hello(1)[..9], &[]);
    let (_, took) = raw::closed(&fd);
    assert!(
        took >= Duration::from_millis(500),
        "expelled by the keepalive, after {took:?}"
    );

    // A valid introduction followed by a change about another node's topic? Changes carry no
    // node: the worst a peer can do is a protocol violation, e.g. IntroEnd before Hello.
    let fd = to_hub(&g);
    raw::send(&fd, &encode(&Frame::IntroEnd), &[]);
    raw::closed(&fd);

    // The hub and the group carry on: nothing of the offenders shows, a newcomer joins.
    let mut late = Child::node(&g, "late", &keepalive);
    late.wait_for(WAIT, |v| event(v) == "synced");
    member.wait_for(WAIT, |v| event(v) == "node_joined" && v["name"] == "late");
    member.drain_for(Duration::from_millis(100));
    let names: Vec<_> = member
        .events("node_joined")
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    assert!(
        names.iter().all(|n| n != "raw"),
        "no offender ever joined: {names:?}"
    );
    assert!(
        member.events("node_left").is_empty(),
        "nobody left: {:?}",
        member.events("node_left")
    );
    let stderr = hub.stderr();
    assert!(
        !stderr.contains("panicked"),
        "the hub did not panic: {stderr}"
    );
    assert!(
        stderr.contains("broke the protocol") || stderr.contains("malformed"),
        "{stderr}"
    );
}
