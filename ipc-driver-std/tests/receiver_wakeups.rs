//! A message on a ring link to a thread blocked in `recv` wakes that thread, not the node's
//! I/O thread: the blocked thread waits on the rings itself, and a publishing thread writes
//! them itself. Counted with the kernel's per-thread context switch counters, not timed.
//! Alone in its binary: it counts every node I/O thread of the process.

use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "shared/pair.rs"]
mod pair;
#[path = "shared/threads.rs"]
mod threads;
use pair::{Pair, routed_pair};
use threads::{epoll_waits, io_threads, this_tid, wait_in_epoll_wait};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_blocked_receiver_is_woken_by_the_ring_and_the_io_thread_sleeps_on() {
    if epoll_waits().is_empty() {
        eprintln!("skipped: system call numbers unknown on this architecture");
        return;
    }
    let Pair {
        p: _p,
        s: _s,
        publisher,
        sub,
    } = routed_pair(("p", "s"), Default::default(), (true, true));
    let (tid_tx, tid_rx) = mpsc::channel();
    let (got_tx, got_rx) = mpsc::channel();
    let receiver = std::thread::spawn(move || {
        tid_tx.send(this_tid()).expect("main thread");
        while let Ok(m) = sub.recv() {
            if m.is_empty() {
                break;
            }
            got_tx.send(m.to_vec()).expect("main thread");
        }
    });
    let tid = tid_rx.recv().expect("the receiver's tid");
    let one = |n: u64| {
        // Sent only once the receiver sleeps in its wait, so that the message has to wake
        // someone.
        wait_in_epoll_wait(&tid, WAIT, "the receiving thread");
        publisher.publish(&n.to_le_bytes()).expect("publish");
        let m = got_rx.recv_timeout(WAIT).expect("received");
        assert_eq!(m, n.to_le_bytes());
    };
    // Warm up: the ring is offered with the first messages.
    for n in 0..50 {
        one(n);
    }
    let before = io_threads("ipc-pubsub-io");
    assert_eq!(before.threads, 2, "one I/O thread per node");
    let start = Instant::now();
    const N: u64 = 300;
    for n in 0..N {
        one(n);
    }
    let elapsed = start.elapsed();
    let after = io_threads("ipc-pubsub-io");
    publisher.publish(&[]).expect("stop");
    receiver.join().expect("receiver");
    let (sleeps, runs) = (after.sleeps - before.sleeps, after.runs - before.runs);
    let cpu = after.cpu - before.cpu;
    eprintln!(
        "for {N} messages in {elapsed:?}, the I/O threads slept {sleeps} times, ran {runs} \
         times, for {cpu:?}"
    );
    // Through the I/O thread, each message would wake it (300 sleeps and runs), and one that
    // spun instead would stay on a CPU; what is left are the nodes' timers (heartbeats).
    assert!(sleeps < N / 5, "the I/O threads slept {sleeps} times");
    assert!(runs < N / 5, "the I/O threads ran {runs} times");
    assert!(
        cpu < elapsed / 4,
        "the I/O threads ran for {cpu:?} of {elapsed:?}"
    );
}
