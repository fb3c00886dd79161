//! A pooled loan tells its subscribers that a message is on its way (the ring's `writing`
//! hint), and a receiving thread polls on for it a little instead of sleeping at once. A loan
//! held long (a buffer a device fills, say) must not keep that thread polling: it goes to
//! sleep on the rings, and the message, sent at last, still wakes it and arrives intact.
//! Where the receiving thread is, and its time on a CPU, come from procfs, not from timing.

use std::sync::mpsc;
use std::time::Duration;

use ipc_driver_std::{PublisherOptions, SendMode};

#[path = "shared/pair.rs"]
mod pair;
#[path = "shared/rings.rs"]
mod rings;
#[path = "shared/threads.rs"]
mod threads;
#[path = "shared/wait.rs"]
mod wait;
use pair::{Pair, routed_pair};
use rings::wait_rings;
use threads::{cpu_time, epoll_waits, io_threads, this_tid, wait_in_epoll_wait};

const WAIT: Duration = Duration::from_secs(20);

fn pooled() -> PublisherOptions {
    PublisherOptions {
        mode: SendMode::Pooled,
        ..PublisherOptions::default()
    }
}

fn pattern(n: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 ^ n.wrapping_mul(31)) as u8)
        .collect()
}

#[test]
fn a_loan_held_long_lets_the_receiver_sleep_and_its_message_still_arrives() {
    if epoll_waits().is_empty() {
        eprintln!("skipped: system call numbers unknown on this architecture");
        return;
    }
    let Pair {
        p,
        s,
        publisher,
        sub,
    } = routed_pair(("p", "s"), pooled(), (true, true));
    let len = 64 << 10;
    let (tid_tx, tid_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (got_tx, got_rx) = mpsc::channel();
    // Receives one message each time it is told to.
    let receiver = std::thread::spawn(move || {
        tid_tx.send(this_tid()).expect("main thread");
        while go_rx.recv().is_ok() {
            let Ok(m) = sub.recv() else { break };
            got_tx.send(m.to_vec()).expect("main thread");
        }
    });
    let tid = tid_rx.recv().expect("the receiver's tid");
    // Each message is loaned before the receiver asks for it, so that it finds the hint set.
    // A stream first: the ring is offered with the first messages, and polls for a loan being
    // written pay (so the receiver would poll for the held one, were it not bounded).
    for n in 0..200 {
        let mut loan = publisher.loan(len).expect("loan");
        go_tx.send(()).expect("the receiver");
        loan.copy_from_slice(&pattern(n, len));
        publisher.send(loan).expect("send");
        let m = got_rx.recv_timeout(WAIT).expect("received");
        assert!(m == pattern(n, len), "message {n}, intact");
    }
    wait_rings(2, WAIT, "the stream's link");
    // Held: the hint stays set. The receiver polls for a moment, then sleeps on the rings
    // (the wait fails after `WAIT` if it polls on), and the message still wakes it. Twenty
    // times: polls for a loan being written that went unrewarded stop, but one wait in 16
    // still tries (and a debug build's stream above may have made them stop already).
    let cpu_before = cpu_time(&tid);
    for n in 1000..1020 {
        let mut held = publisher.loan(len).expect("loan");
        go_tx.send(()).expect("the receiver");
        wait_in_epoll_wait(&tid, WAIT, "a receiver while a loan is held");
        held.copy_from_slice(&pattern(n, len));
        publisher.send(held).expect("send");
        let m = got_rx.recv_timeout(WAIT).expect("the held loan's message");
        assert!(m == pattern(n, len), "the held loan's message {n}, intact");
    }
    // Its time on a CPU, not a wall clock: a poll of 100 µs per wait is a few milliseconds in
    // all, even in a debug build; one that ran on while the loan was held (it ends at least
    // when the I/O thread holds the node's state) took hundreds.
    let spent = cpu_time(&tid) - cpu_before;
    assert!(
        spent < Duration::from_millis(200),
        "the receiver spent {spent:?} on a CPU while 20 loans were held"
    );
    drop(go_tx);
    receiver.join().expect("the receiver");
    drop(publisher);
    p.leave().expect("leave");
    s.leave().expect("leave");
}

/// While nobody waits on the rings (the subscriber's application is busy elsewhere), the
/// subscriber's I/O thread keeps them unparked for a loan being written, a millisecond at a
/// time; a loan held long costs it a few such wakes, then the rings park until a message
/// comes, which wakes it as usual.
#[test]
fn a_loan_held_long_costs_the_subscribers_io_thread_a_few_wakes() {
    let Pair {
        p,
        s,
        publisher,
        sub,
    } = routed_pair(("u", "v"), pooled(), (true, true));
    let len = 64 << 10;
    // A stream, the application taking each message as it comes.
    for n in 0..100 {
        let data = pattern(n, len);
        let mut loan = publisher.loan(len).expect("loan");
        loan.copy_from_slice(&data);
        publisher.send(loan).expect("send");
        let m = sub.recv_timeout(WAIT).expect("received");
        assert!(m[..] == data[..], "message {n}, intact");
    }
    // Held for 100 ms while the application does not receive (the time is the scenario, not
    // a wait for something to happen). Lingering a millisecond at a time without a bound, the
    // I/O thread ran about 90 times meanwhile; with it, 0 to 5.
    let mut held = publisher.loan(len).expect("loan");
    let before = io_threads("ipc-pubsub-io:v");
    std::thread::sleep(Duration::from_millis(100));
    let after = io_threads("ipc-pubsub-io:v");
    assert_eq!(after.threads, 1, "the subscriber's I/O thread");
    let runs = after.runs - before.runs;
    assert!(
        runs < 30,
        "the subscriber's I/O thread ran {runs} times while a loan was held 100 ms"
    );
    held.copy_from_slice(&pattern(7, len));
    publisher.send(held).expect("send");
    let m = sub.recv_timeout(WAIT).expect("the held loan's message");
    assert!(
        m[..] == pattern(7, len)[..],
        "the held loan's message, intact"
    );
    drop((publisher, sub));
    p.leave().expect("leave");
    s.leave().expect("leave");
}
