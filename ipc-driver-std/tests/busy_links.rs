//! A node's I/O thread under a link its full queue paused, and under a busy stream whose
//! receiving thread reads the rings itself: it neither spins on what it may not read yet, nor
//! leaves other links' messages unread while the stream goes on.
//!
//! Each test names its nodes with letters of their own: I/O threads are counted by name
//! (`/proc/self/task/*/comm`), and the tests of this binary run at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_driver_std::{Node, PublisherOptions, RecvError, SendMode, SubscriptionOptions};

#[path = "shared/threads.rs"]
mod threads;
use threads::io_threads;

const WAIT: Duration = Duration::from_secs(20);

fn group() -> String {
    format!("t-{:016x}", getrandom::u64().expect("OS randomness"))
}

/// Waits until `node`'s view shows `who` subscribed to `n` topics.
fn routed(node: &Node, who: &Node, n: usize) {
    let id = who.id();
    node.wait_view(WAIT, |v| {
        v.node(id).is_some_and(|s| s.subscribes.len() == n)
    })
    .expect("routed");
}

/// Messages in fresh memfds travel as socket records: those that come while the queue that
/// paused the link is full make its socket readable. The I/O thread, told so once, stops
/// watching it (its readiness is level-triggered: watching on, it would be woken over and
/// over), and watches it again when the queue drains.
#[test]
fn a_paused_link_with_records_waiting_leaves_the_io_thread_idle() {
    let g = group();
    let p = Node::builder("p").group(&g).join().expect("join");
    // The subscriber's I/O thread is "ipc-pubsub-io:q".
    let q = Node::builder("q").group(&g).join().expect("join");
    let fresh = PublisherOptions {
        mode: SendMode::Fresh,
        ..PublisherOptions::default()
    };
    let publisher = p.publisher_with("t", "x", fresh).expect("publisher");
    let options = SubscriptionOptions {
        depth: 1,
        ..SubscriptionOptions::block(WAIT)
    };
    let sub = q.subscription("t", options).expect("sub");
    routed(&p, &q, 1);
    const N: u64 = 6;
    for n in 0..N {
        publisher.publish(&n.to_le_bytes()).expect("publish");
    }
    // The first fills the queue; the rest wait in the socket, sent by now (a `Block`
    // publisher's room is counted in messages not yet sent: it had room for every one).
    let before = io_threads("ipc-pubsub-io:q");
    assert_eq!(before.threads, 1, "one I/O thread named q");
    // An observation window, not a wait for a condition: what the I/O thread does while
    // nothing changes.
    let window = Duration::from_millis(300);
    std::thread::sleep(window);
    let after = io_threads("ipc-pubsub-io:q");
    let (runs, cpu) = (after.runs - before.runs, after.cpu - before.cpu);
    eprintln!("in {window:?} with the link paused, the I/O thread ran {runs} times for {cpu:?}");
    // Woken over and over, it would run thousands of times and most of the window; what is
    // left are its timers (heartbeats) and the one wake that told it.
    assert!(runs < 30, "the I/O thread ran {runs} times");
    assert!(cpu < window / 10, "the I/O thread ran for {cpu:?}");
    // Draining the queue resumes the link: every message comes, in order.
    for n in 0..N {
        let m = sub.recv_timeout(WAIT).expect("received");
        assert_eq!(&m[..], n.to_le_bytes());
    }
}

/// A receiving thread slower than its publisher resumes its link (paused by its full queue)
/// over and over and reads the rings itself, which then stay unparked a moment (so that the
/// publisher's next messages wake nobody). A message on another link, for a subscription
/// that a thread polls with `try_recv`, must still come while that stream goes on.
#[test]
fn a_busy_stream_does_not_hold_back_another_links_messages() {
    let g = group();
    let a = Node::builder("a").group(&g).join().expect("join");
    let b = Node::builder("b").group(&g).join().expect("join");
    let s = Node::builder("s").group(&g).join().expect("join");
    let busy = a.publisher("busy", "x").expect("publisher");
    let other = b.publisher("other", "x").expect("publisher");
    let options = SubscriptionOptions {
        depth: 2,
        ..SubscriptionOptions::block(WAIT)
    };
    let busy_sub = s.subscription("busy", options).expect("sub");
    let other_sub = s.subscription("other", options).expect("sub");
    routed(&a, &s, 2);
    routed(&b, &s, 2);
    // Warm up the other link: its ring is offered with the first messages.
    for n in 0..50u64 {
        other.publish(&n.to_le_bytes()).expect("publish");
        let m = other_sub.recv_timeout(WAIT).expect("warm-up");
        assert_eq!(&m[..], n.to_le_bytes());
    }
    // The publisher stops on `stop`; the receiver drains until the publisher is done.
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let received = Arc::new(AtomicU64::new(0));
    let publishing = {
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                busy.publish(&n.to_le_bytes()).expect("publish");
                n += 1;
            }
            done.store(true, Ordering::Relaxed);
            n
        })
    };
    let receiving = {
        let (done, received) = (Arc::clone(&done), Arc::clone(&received));
        std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                match busy_sub.recv_timeout(Duration::from_millis(100)) {
                    Ok(m) => assert_eq!(&m[..], n.to_le_bytes(), "in order"),
                    Err(RecvError::TimedOut(_)) if done.load(Ordering::Relaxed) => return n,
                    Err(RecvError::TimedOut(_)) => continue,
                    Err(e) => panic!("busy stream: {e}"),
                }
                n += 1;
                received.store(n, Ordering::Relaxed);
                // Slower than the publisher: the queue stays full, the link paused and
                // resumed, and this thread never waits for a message.
                let work = Instant::now();
                while work.elapsed() < Duration::from_micros(200) {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let deadline = Instant::now() + WAIT;
    while received.load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < deadline, "the busy stream never got going");
        std::thread::yield_now();
    }
    let before = received.load(Ordering::Relaxed);
    other.publish(b"other").expect("publish");
    let got = loop {
        match other_sub.try_recv() {
            Ok(m) => break m,
            Err(RecvError::Empty) => {
                assert!(
                    Instant::now() < deadline,
                    "the other link's message never came while the stream went on"
                );
                // Polling, as an application's own loop would; not the CPU hog the stream
                // must outrun.
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("other: {e}"),
        }
    };
    let during = received.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    let sent = publishing.join().expect("publisher");
    let got_busy = receiving.join().expect("receiver");
    assert_eq!(got_busy, sent, "every message of the stream");
    assert_eq!(&got[..], b"other");
    eprintln!("the other link's message came after {during} messages of the stream");
    // Counted in the stream's messages (200 µs each at least), not timed: handed on by the
    // I/O thread within a linger (1 ms), it comes a few messages later; left to the
    // receiving thread, only once its queue happens to run dry (thousands, here).
    assert!(
        during < 800,
        "the other link's message came {during} messages of the stream later"
    );
}
