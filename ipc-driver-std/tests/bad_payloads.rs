//! A hand-built publisher sends bad records to a subscriber's data socket: each is dropped and
//! counted, its fds closed, the link closed, and the subscriber carries on.
//!
//! Alone in its test binary: it counts the process's open fds.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use ipc_driver_std::{Node, SubscriptionOptions};
use ipc_os::memfd::{SealSet, Segment};
use ipc_os::poll::{Events, Interest, Poller, Token};
use ipc_os::rendezvous::{self, GroupDir};
use ipc_os::socket::{self, Recv, Sent};
use ipc_proto::wire::{DataFrame, MessageHeader, encode_data};

#[path = "shared/rings.rs"]
mod rings;
#[path = "shared/wait.rs"]
mod wait;
use rings::wait_rings;

const WAIT: Duration = Duration::from_secs(10);

fn group() -> String {
    format!("t-{:016x}", getrandom::u64().expect("OS randomness"))
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

fn send(fd: &OwnedFd, record: &[u8], with: &[std::os::fd::BorrowedFd<'_>]) {
    assert_eq!(
        socket::send_record(fd.as_fd(), record, with).expect("send"),
        Sent::Complete
    );
}

/// Waits until the other end closes the link.
fn closed(fd: &OwnedFd) {
    let poller = Poller::new().expect("epoll");
    poller
        .add(fd.as_fd(), Token(0), Interest::READABLE)
        .expect("watch");
    let mut events = Events::with_capacity(2);
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0; 1 << 16];
    loop {
        let mut got = Vec::new();
        match socket::recv_record(fd.as_fd(), &mut buf, &mut got, 4) {
            Ok(Recv::Closed) | Err(_) => return,
            Ok(Recv::Data { .. }) => continue,
            Ok(Recv::WouldBlock) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the subscriber did not close the link");
        poller.wait(&mut events, Some(left)).expect("wait");
    }
}

#[test]
fn bad_records_are_dropped_counted_and_leak_nothing() {
    let g = group();
    let sub = Node::builder("sub").group(&g).join().expect("join");
    let subscription = sub
        .subscription("t", SubscriptionOptions::default())
        .expect("subscribe");
    let addr = sub
        .view()
        .node(sub.id())
        .expect("itself")
        .info
        .data_addr
        .clone();
    let addr = GroupDir::private(&g)
        .expect("group directory")
        .paths()
        .resolve_data_addr(&addr)
        .expect("a data address");
    let header = MessageHeader { topic: 1, seq: 1 };
    let fresh = |len| encode_data(&DataFrame::Fresh { header, len }, &[]);
    let memfd = |len: usize, seals: SealSet| {
        let s = Segment::create("bad", len).expect("memfd");
        if !seals.is_empty() {
            s.seal(seals).expect("seal");
        }
        s.into_fd()
    };
    let file = std::fs::File::open("/proc/self/exe").expect("a plain file");
    let (pipe_r, _pipe_w) = nix::unistd::pipe().expect("pipe");
    let unsealed = memfd(4096, SealSet::EMPTY);
    let small = memfd(100, SealSet::FRESH);
    let ok = memfd(4096, SealSet::FRESH);
    let cases: Vec<(&str, Vec<u8>, Vec<std::os::fd::BorrowedFd<'_>>)> = vec![
        ("an unsealed memfd", fresh(10), vec![unsealed.as_fd()]),
        ("a plain file", fresh(10), vec![file.as_fd()]),
        ("a pipe", fresh(10), vec![pipe_r.as_fd()]),
        (
            "a memfd smaller than claimed",
            fresh(4096),
            vec![small.as_fd()],
        ),
        (
            "too many fds",
            fresh(10),
            vec![ok.as_fd(), ok.as_fd(), ok.as_fd()],
        ),
        (
            "a notice for an unknown segment",
            encode_data(
                &DataFrame::Pooled {
                    header,
                    segment: 9,
                    offset: 0,
                    len: 1,
                },
                &[],
            ),
            vec![],
        ),
        ("garbage", vec![0xff; 40], vec![]),
    ];
    // The raw links speak for a real node of this process (same uid and pid, as the
    // subscriber checks against its view), which announced the topic: only the records
    // themselves are bad.
    let p = Node::builder("pub").group(&g).join().expect("join");
    let publisher = p.publisher("t", "x").expect("publisher");
    let pid_ = p.id();
    sub.wait_view(WAIT, |v| {
        v.node(pid_).is_some_and(|n| n.publishes.contains_key("t"))
    })
    .expect("the subscriber sees the publisher's topic");
    let sid = sub.id();
    p.wait_view(WAIT, |v| {
        v.node(sid).is_some_and(|n| n.subscribes.contains_key("t"))
    })
    .expect("routed");
    // One real message first: the publisher's own data link is up before fds are counted,
    // and so is its ring, which the subscriber offers with the first messages and the
    // publisher maps (three fds) possibly after the message came: both ends mapped.
    publisher.publish(b"first").expect("publish");
    assert_eq!(
        &*subscription.recv_timeout(WAIT).expect("delivered"),
        b"first"
    );
    wait_rings(2, WAIT, "the link's ring, mapped at both ends");
    let before = fds();
    for (i, (what, record, with)) in cases.iter().enumerate() {
        let link = rendezvous::connect(&addr).expect("connect to the data address");
        send(
            &link,
            &encode_data(
                &DataFrame::Hello {
                    publisher: pid_,
                    rings: false,
                },
                &[],
            ),
            &[],
        );
        send(
            &link,
            &encode_data(
                &DataFrame::Topic {
                    id: 1,
                    topic: "t".into(),
                },
                &[],
            ),
            &[],
        );
        send(&link, record, with);
        closed(&link);
        let rejected = sub.data_stats().expect("stats").rejected;
        assert_eq!(rejected, i as u64 + 1, "{what}: counted");
    }
    assert!(subscription.try_recv().is_err(), "nothing was delivered");
    assert_eq!(fds(), before, "every received fd was closed");
    // The subscriber carries on: a real publisher gets through.
    publisher.publish(b"still here").expect("publish");
    assert_eq!(
        &*subscription.recv_timeout(WAIT).expect("delivered"),
        b"still here"
    );
}
