//! A subscriber that cannot keep up with its publisher under `Block`: its queue fills, the
//! link pauses, the receiving thread drains half the queue and reads the link itself. That
//! resume must not wake the node's I/O thread: the link is registered for reading again only
//! when the read drains it, and a stream that refills the queue in that read never does.
//! Counted with the kernel's per-thread counters, not timed. Each stream's nodes have names of
//! their own: the test counts the subscriber's I/O thread by name.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipc_driver_std::{PublisherOptions, SendMode, SubscriptionOptions};

#[path = "shared/pair.rs"]
mod pair;
#[path = "shared/threads.rs"]
mod threads;
use pair::{Pair, routed_pair_with};
use threads::io_threads;

const WAIT: Duration = Duration::from_secs(20);

/// Messages in each stream.
const N: u32 = 400;

/// The receiving thread's work per message: long enough that a publisher writing 4 KiB
/// messages outruns it on any machine, in any build.
const WORK: Duration = Duration::from_micros(300);

/// `Block` with a queue of 8: the link pauses when it is full and resumes at half, about once
/// every four messages of a stream that outruns its subscriber.
fn behind() -> SubscriptionOptions {
    SubscriptionOptions {
        depth: 8,
        ..SubscriptionOptions::block(WAIT)
    }
}

fn busy(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// One stream of `N` messages in `mode`, without rings, to a subscriber slower than its
/// publisher: how often the subscriber's I/O thread ran meanwhile.
fn io_runs_behind_a_slow_subscriber(mode: SendMode, names: (&str, &str)) -> u64 {
    let options = PublisherOptions {
        mode,
        ..PublisherOptions::default()
    };
    let Pair {
        p,
        s,
        publisher,
        sub,
    } = routed_pair_with(names, options, behind(), (false, false));
    let (done_tx, done_rx) = mpsc::channel();
    let receiver = std::thread::spawn(move || {
        for n in 0..N {
            let m = sub.recv_timeout(WAIT).expect("received");
            assert_eq!(m[..4], n.to_le_bytes(), "message {n} in order");
            busy(WORK);
        }
        done_tx.send(()).expect("main thread");
    });
    let io = format!("ipc-pubsub-io:{}", names.1);
    let before = io_threads(&io);
    assert_eq!(before.threads, 1, "the subscriber's I/O thread");
    let started = Instant::now();
    let mut payload = vec![7u8; 4096];
    for n in 0..N {
        payload[..4].copy_from_slice(&n.to_le_bytes());
        publisher.publish(&payload).expect("publish");
    }
    done_rx.recv_timeout(WAIT * 2).expect("all received");
    let (after, elapsed) = (io_threads(&io), started.elapsed());
    receiver.join().expect("the receiver");
    drop(publisher);
    p.leave().expect("leave");
    s.leave().expect("leave");
    let runs = after.runs - before.runs;
    eprintln!(
        "{mode:?}: the subscriber's I/O thread ran {runs} times for {N} \
         messages in {elapsed:?}"
    );
    runs
}

/// Without rings, about one pause per four messages: with the link registered again at each
/// resume, the records waiting in it woke the I/O thread each time (125-185 runs for 400
/// messages, the readiness and taking the interest away again); now what is left are the
/// nodes' timers (0-10 runs).
///
/// With rings (not tested here), a resume also keeps the rings unparked for a millisecond
/// (`Links::linger`), extended by each resume, and the I/O thread wakes when the linger it
/// slept for ends: about once a millisecond in such a stream, on an idle machine (77-99 runs
/// in 83-111 ms for these streams, with and without this change; under load it varies).
#[test]
fn a_subscriber_that_cannot_keep_up_wakes_no_io_thread_per_pause() {
    for (mode, names) in [
        (SendMode::Fresh, ("a", "b")),
        (SendMode::Inline, ("c", "d")),
    ] {
        let runs = io_runs_behind_a_slow_subscriber(mode, names);
        assert!(
            runs < N as u64 / 10,
            "{mode:?}: the subscriber's I/O thread ran {runs} times for {N} messages"
        );
    }
}
