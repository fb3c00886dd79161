//! Bad input on a real hub's socket: every offender is disconnected, the hub carries on
//! serving everyone else, and nothing panics.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use ipc_driver_std::sys::addr::hub_addr;
use ipc_driver_std::sys::poll::{Events, Interest, Poller, Token};
use ipc_driver_std::sys::socket::{self, Recv, Sent};
use ipc_proto::wire::{Frame, Hello, encode};
use ipc_proto::{NodeId, NodeInfo, Term};
use ipc_tests::{Child, WAIT, event, group};

/// Connects to the group's hub as a raw peer.
fn raw(group: &str) -> OwnedFd {
    socket::connect(&hub_addr(group).expect("group name")).expect("connect to the hub")
}

fn send(fd: &OwnedFd, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    assert_eq!(
        socket::send_record(fd.as_fd(), bytes, fds).expect("send"),
        Sent::Complete
    );
}

/// Waits until the hub closes the link; returns the frames' bytes it sent before (a goodbye,
/// say) and how long it took.
fn closed_by_hub(fd: &OwnedFd, timeout: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let poller = Poller::new().expect("epoll");
    poller
        .add(fd.as_fd(), Token(0), Interest::READABLE)
        .expect("watch");
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0; 1 << 17];
    let mut got = Vec::new();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "the hub did not close the link within {timeout:?}"
        );
        poller.wait(&mut events, Some(left)).expect("wait");
        loop {
            let mut fds = Vec::new();
            match socket::recv_record(fd.as_fd(), &mut buf, &mut fds, 0) {
                Ok(Recv::Data { len, .. }) => got.extend_from_slice(&buf[..len]),
                Ok(Recv::Closed) | Err(_) => return (got, start.elapsed()),
                Ok(Recv::WouldBlock) => break,
            }
        }
    }
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
    }));
    // [len u32][tag][version varint]: the version is byte 5 and fits one byte below 251.
    assert_eq!(f[5], 1, "protocol version 1 encodes as one byte");
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

    // Garbage: a frame header whose tag is unknown.
    let fd = raw(&g);
    send(&fd, &[3, 0, 0, 0, 0xEE, 1, 2], &[]);
    closed_by_hub(&fd, WAIT);

    // An oversized length: refused before anything is buffered.
    let fd = raw(&g);
    send(&fd, &(16u32 << 20).to_le_bytes(), &[]);
    closed_by_hub(&fd, WAIT);

    // A record larger than any frame (the rest would be cut off by the kernel).
    let fd = raw(&g);
    send(&fd, &vec![0x55; 100_000], &[]);
    closed_by_hub(&fd, WAIT);

    // File descriptors on a topology link.
    let fd = raw(&g);
    let (a, _b) = socket::socketpair_seqpacket().expect("socketpair");
    send(&fd, &hello(1)[..5], &[a.as_fd()]);
    closed_by_hub(&fd, WAIT);

    // A wrong protocol version: a goodbye saying so, then the link closes.
    let fd = raw(&g);
    send(&fd, &hello(99), &[]);
    let (said, _) = closed_by_hub(&fd, WAIT);
    let mut d = ipc_proto::wire::Deframer::new(ipc_proto::Limits::default());
    d.push(&said);
    let goodbye = d.next_frame().expect("a frame").expect("a valid frame");
    assert_eq!(
        goodbye,
        Frame::Goodbye(ipc_proto::CloseReason::VersionMismatch {
            theirs: 99,
            ours: 1
        })
    );

    // A truncated frame, then silence: the keepalive (1 s) expels it.
    let fd = raw(&g);
    send(&fd, &hello(1)[..9], &[]);
    let (_, took) = closed_by_hub(&fd, WAIT);
    assert!(
        took >= Duration::from_millis(500),
        "expelled by the keepalive, after {took:?}"
    );

    // A valid introduction followed by a change about another node's topic? Changes carry no
    // node: the worst a peer can do is a protocol violation, e.g. IntroEnd before Hello.
    let fd = raw(&g);
    send(&fd, &encode(&Frame::IntroEnd), &[]);
    closed_by_hub(&fd, WAIT);

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
