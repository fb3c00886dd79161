//! What a message costs the application's loop, sleeping or spinning.
//!
//! A calloop node on its own thread answers every message from a std node; the std node sends
//! the next only once it has the answer. With a subscription that never polls
//! (`SubscriptionOptions::spin` zero) each message finds the loop asleep: the loop's thread
//! counts its own `read` and `write` system calls (`/proc/thread-self/io`) over the timed
//! messages. Per message it writes the pinger's ring eventfd once, and reads its own (and
//! calloop's poller reads its notifier once per wakeup). A source that woke its own loop a
//! second time for every event (calloop's `Channel` does, handed another source's event)
//! would write a ping and read it back, and make the poller read again. With a spin of its
//! own the loop polls instead of sleeping, and reads no eventfd at all; with default options
//! it polls for up to 10 µs while that finds the next message.
//!
//! The tests run one at a time: a spinning loop keeps a core busy, which the others' counts
//! and round trips should not share on a small machine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use calloop::EventLoop;
use ipc_driver_calloop::{Node as LoopNode, NodeEvent, NodeSource};
use ipc_driver_std::Node as StdNode;
use ipc_proto::data::{PublisherOptions, SubscriptionOptions};

#[path = "../../ipc-driver-std/tests/shared/rings.rs"]
mod rings;
#[path = "../../ipc-driver-std/tests/shared/threads.rs"]
mod threads;
#[path = "../../ipc-driver-std/tests/shared/wait.rs"]
mod wait;
use threads::{cpu_time, pin, sleeps, this_tid, two_cpus};

const WAIT: Duration = Duration::from_secs(20);
const MESSAGES: u64 = 300;

/// Taken by every test of this file: they run one at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn group() -> String {
    format!("calloop-wakeups-{:016x}", getrandom::u64().expect("random"))
}

/// This thread's `read` and `write` system calls so far.
fn syscalls() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/thread-self/io")
        .expect("/proc/thread-self/io (task I/O accounting) is readable");
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/thread-self/io: {io}"))
    };
    (field("syscr:"), field("syscw:"))
}

/// A calloop node of `group` subscribed to `t` with a spin of `spin`.
fn spinning_subscriber(group: &str, spin: Duration) -> NodeSource {
    let mut source = NodeSource::builder("sub")
        .group(group)
        .join()
        .expect("join");
    let options = SubscriptionOptions::default().spin(spin);
    source
        .node()
        .open_subscription("t", options)
        .expect("subscribe");
    source
}

/// A std node of `group` that publishes `message` on `t` every millisecond until `stop` (or
/// for [`WAIT`]), on a thread of its own.
fn publish_every_ms(
    group: &str,
    message: &'static [u8],
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let node = StdNode::builder("pub").group(group).join().expect("join");
    thread::spawn(move || {
        let publisher = node.publisher("t", "x").expect("publisher");
        let deadline = Instant::now() + WAIT;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            publisher.publish(message).expect("publish");
            thread::sleep(Duration::from_millis(1));
        }
    })
}

/// A calloop node on its own thread answers `MESSAGES + 1` numbered messages from a std node,
/// which sends each once it has the answer to the last; the node subscribes with `options`,
/// the std node with `pinger`. Returns the loop thread's `read` and `write` system calls from
/// its callback's answer to message 0 to its answer to the last: over `MESSAGES` round trips.
fn echo_syscalls(options: SubscriptionOptions, pinger: SubscriptionOptions) -> (u64, u64) {
    echo_syscalls_on(options, pinger, None)
}

/// [`echo_syscalls`], with the loop's thread and the pinger's pinned to `cpus`.
fn echo_syscalls_on(
    options: SubscriptionOptions,
    pinger: SubscriptionOptions,
    cpus: Option<[usize; 2]>,
) -> (u64, u64) {
    let group = group();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, counted) = mpsc::channel();
    let echo = {
        let (group, stop) = (group.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let _pinned = cpus.map(|[cpu, _]| pin(cpu));
            let mut source = NodeSource::builder("echo")
                .group(&group)
                .join()
                .expect("join");
            let node = source.node();
            node.open_subscription("ping", options).expect("subscribe");
            node.open_publisher("pong", "x", PublisherOptions::default())
                .expect("publish");
            let mut event_loop: EventLoop<'static, Option<(u64, u64)>> =
                EventLoop::try_new().expect("loop");
            event_loop
                .handle()
                .insert_source(source, move |event, node: &mut LoopNode, start| {
                    let NodeEvent::Message(m) = event else {
                        return;
                    };
                    node.publish("pong", &m).expect("answer");
                    // The numbered messages; not the warm-up.
                    let Ok(n) = <[u8; 8]>::try_from(&m[..]).map(u64::from_le_bytes) else {
                        return;
                    };
                    if n == 0 {
                        *start = Some(syscalls());
                    } else if n == MESSAGES
                        && let Some((r0, w0)) = start.take()
                    {
                        let (r, w) = syscalls();
                        let _ = tx.send((r - r0, w - w0));
                    }
                })
                .expect("insert");
            let mut start = None;
            let deadline = Instant::now() + WAIT * 2;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                event_loop
                    .dispatch(Some(Duration::from_millis(50)), &mut start)
                    .expect("dispatch");
            }
        })
    };
    let result = std::panic::catch_unwind(|| {
        let node = StdNode::builder("pinger")
            .group(&group)
            .join()
            .expect("join");
        // After the join: the node's I/O thread keeps every CPU.
        let _pinned = cpus.map(|[_, cpu]| pin(cpu));
        let pongs = node.subscription("pong", pinger).expect("subscribe");
        let pings = node.publisher("ping", "x").expect("publish");
        // Until the echo answers (its subscription and route are in).
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "the echo never answered");
            pings.publish(b"warm-up").expect("publish");
            if pongs.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
        }
        while pongs.try_recv().is_ok() {}
        for n in 0..=MESSAGES {
            pings.publish(&n.to_le_bytes()).expect("publish");
            loop {
                let m = pongs.recv_timeout(WAIT).expect("an answer");
                // A late answer to the warm-up.
                if m[..] != b"warm-up"[..] {
                    assert_eq!(m[..], n.to_le_bytes(), "answers in order");
                    break;
                }
            }
        }
        counted.recv_timeout(WAIT).expect("the echo's counts")
    });
    stop.store(true, Ordering::Relaxed);
    let joined = echo.join();
    let counts = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    joined.expect("echo thread");
    counts
}

#[test]
fn a_message_to_a_sleeping_loop_wakes_it_once() {
    let _one = one_at_a_time();
    let never = SubscriptionOptions::default().spin(Duration::ZERO);
    let (reads, writes) = echo_syscalls(never, never);
    // 2 reads and 1 write per message, and a few for timers; a second wakeup per message
    // (4 reads, 2 writes) made 4.1 to 6 of them.
    assert!(
        reads + writes < MESSAGES * 7 / 2,
        "{reads} reads and {writes} writes for {MESSAGES} messages"
    );
}

/// A loop whose subscription never polls sleeps after every turn even where the default
/// would poll: the pinger spins, so each next message comes within microseconds of the
/// answer (the default loop reads such a stream with a few dozen reads in all, see below).
#[test]
fn a_loop_that_never_polls_sleeps_for_every_message() {
    let _one = one_at_a_time();
    let (reads, writes) = echo_syscalls_on(
        SubscriptionOptions::default().spin(Duration::ZERO),
        SubscriptionOptions::default().spin(Duration::from_millis(200)),
        two_cpus(),
    );
    // Its ring's eventfd and the poller's notifier: 2 reads per wakeup.
    assert!(
        reads >= MESSAGES,
        "{reads} reads (and {writes} writes) for {MESSAGES} messages: the loop polled"
    );
}

/// With `SubscriptionOptions::spin`, the loop polls its rings for the next message after
/// each one instead of sleeping: the publisher wakes nobody, and the loop reads no eventfd.
/// Its one write per message is the std pinger's wakeup (the pinger sleeps in `recv`).
#[test]
fn a_spinning_subscription_reads_a_stream_without_waking() {
    let _one = one_at_a_time();
    // Far longer than any round trip here, even on a loaded machine.
    let spin = Duration::from_millis(200);
    let (reads, writes) = echo_syscalls(
        SubscriptionOptions::default().spin(spin),
        SubscriptionOptions::default().spin(Duration::ZERO),
    );
    // Asleep it reads twice per message (600 here). Spinning, a few at the ends of its
    // turns, which last at most the spin each.
    assert!(
        reads < MESSAGES / 4,
        "{reads} reads (and {writes} writes) for {MESSAGES} messages: the loop slept"
    );
    assert!(
        writes <= MESSAGES + MESSAGES / 10,
        "{writes} writes for {MESSAGES} messages"
    );
}

/// With default options the loop polls its rings for up to 10 µs after a turn that
/// delivered messages, while that finds the next one: a pinger that answers at once (it
/// spins) keeps it polling, and the loop reads its stream without a wakeup per message.
/// (Before, the loop slept after every turn: about 2 reads per message.) The two threads are
/// pinned to two CPUs: on one, the spinning pinger cannot answer while the loop polls, and
/// the loop rightly sleeps (2 vCPUs: in one run of three unpinned).
#[test]
fn a_default_loop_polls_while_the_next_message_comes_within_microseconds() {
    let _one = one_at_a_time();
    let Some(cpus) = two_cpus() else {
        eprintln!("skipped: this process may use only one CPU");
        return;
    };
    let (reads, writes) = echo_syscalls_on(
        SubscriptionOptions::default(),
        SubscriptionOptions::default().spin(Duration::from_millis(200)),
        Some(cpus),
    );
    // A pause of over 10 µs (the pinger preempted, say) ends a spin; the next turn that
    // delivers a message spins again at once if the last spin paid, else after 15 turns of
    // 2 reads each. A few such pauses stay far below a sleep per message.
    assert!(
        reads < MESSAGES / 2,
        "{reads} reads (and {writes} writes) for {MESSAGES} messages: the loop slept"
    );
}

/// A loop that spins for its acknowledgements and publishes pooled messages from its
/// callback takes the pool ranges its subscriber gives back as it goes (its sends take them,
/// and its polls look for them): its pool stays at the segments a stream takes turns with
/// (8 of 1 MiB) and those in flight. A loop that took them back only when its spin ended
/// made a new segment for most messages of the stream: 68 MiB of pool for a window of 4.
#[test]
fn a_spinning_loop_publishing_pooled_messages_reuses_its_pool() {
    let _one = one_at_a_time();
    use ipc_proto::data::SendMode;
    const SIZE: usize = 1 << 20;
    const WINDOW: u64 = 4;
    const COUNT: u64 = 400;
    const PROBE: u64 = u64::MAX;
    let group = group();
    let echo = StdNode::builder("echo").group(&group).join().expect("join");
    let data = echo
        .subscription("data", SubscriptionOptions::block(WAIT))
        .expect("subscribe");
    let acks = echo.publisher("ack", "x").expect("publish");
    let stop = Arc::new(AtomicBool::new(false));
    let answering = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = data.recv_timeout(Duration::from_millis(20)) {
                    acks.publish(&m[..8]).expect("answer");
                }
            }
        })
    };
    let result = std::panic::catch_unwind(|| {
        let mut source = NodeSource::builder("sender")
            .group(&group)
            .join()
            .expect("join");
        let node = source.node();
        let pooled = PublisherOptions {
            mode: SendMode::Pooled,
            ..PublisherOptions::default()
        };
        node.open_publisher("data", "x", pooled).expect("publish");
        let spin = SubscriptionOptions::block(WAIT).spin(Duration::from_millis(200));
        node.open_subscription("ack", spin).expect("subscribe");
        let probes = node.handle();
        let mut event_loop: EventLoop<'static, Sender> = EventLoop::try_new().expect("loop");
        let message = |n: u64| {
            let mut m = vec![0x5a; SIZE];
            m[..8].copy_from_slice(&n.to_le_bytes());
            m
        };
        event_loop
            .handle()
            .insert_source(source, move |event, node: &mut LoopNode, s: &mut Sender| {
                let NodeEvent::Message(m) = event else {
                    return;
                };
                let n = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
                if n == PROBE {
                    // The route is in: the stream starts (at the first answer to a probe).
                    if s.sent == 0 {
                        for n in 0..WINDOW {
                            node.publish("data", &message(n)).expect("publish");
                        }
                        s.sent = WINDOW;
                    }
                    return;
                }
                assert_eq!(n, s.answered, "answers in order");
                s.answered += 1;
                if n == 0 {
                    s.syscalls = syscalls();
                } else if n == COUNT - 1 {
                    let (r, w) = syscalls();
                    s.syscalls = (r - s.syscalls.0, w - s.syscalls.1);
                }
                if s.sent < COUNT {
                    node.publish("data", &message(s.sent)).expect("publish");
                    s.sent += 1;
                }
                s.pool = s.pool.max(node.pool_bytes());
            })
            .expect("insert");
        let mut state = Sender::default();
        let deadline = Instant::now() + WAIT;
        while state.answered < COUNT {
            assert!(
                Instant::now() < deadline,
                "{} of {COUNT} answers",
                state.answered
            );
            if state.sent == 0 {
                // From outside the callback: sent on the loop's next turn.
                probes
                    .publish("data", PROBE.to_le_bytes().to_vec())
                    .expect("probe");
            }
            event_loop
                .dispatch(Some(Duration::from_millis(20)), &mut state)
                .expect("dispatch");
        }
        state
    });
    stop.store(true, Ordering::Relaxed);
    answering.join().expect("echo thread");
    let sender = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(
        sender.pool <= 16 * SIZE as u64,
        "a pool of {} MiB for a window of {WINDOW}",
        sender.pool >> 20
    );
    // It did spin: the answers came without a wakeup each.
    let (reads, writes) = sender.syscalls;
    assert!(
        reads < COUNT / 4,
        "{reads} reads (and {writes} writes) for {COUNT} answers: the loop slept"
    );
}

/// What the pooled stream's sending loop keeps.
#[derive(Default)]
struct Sender {
    sent: u64,
    answered: u64,
    /// The largest its pool was.
    pool: u64,
    /// Its thread's system calls at the first answer; from the first to the last, after it.
    syscalls: (u64, u64),
}

/// A publisher whose link (and ring) comes while the loop spins is read like the others: its
/// ring is read during the spin and parked at its end, so that its next messages wake the
/// loop. (A spin that read only the rings it started with left a new ring unparked and
/// unread at its end: its publisher's pushes woke nobody, and its messages waited.)
#[test]
fn a_publisher_that_comes_during_a_spin_is_read() {
    let _one = one_at_a_time();
    // a's messages once the route is in; b comes at the middle of them.
    const FIRST: u64 = 200;
    const SECOND: u64 = 20;
    let group = group();
    let source = spinning_subscriber(&group, Duration::from_millis(500));
    let a = StdNode::builder("a").group(&group).join().expect("join");
    let stop = Arc::new(AtomicBool::new(false));
    let routed = Arc::new(AtomicBool::new(false));
    let (go_b, went_b) = mpsc::channel::<()>();
    let first = {
        let (stop, routed) = (Arc::clone(&stop), Arc::clone(&routed));
        thread::spawn(move || {
            let p = a.publisher("t", "x").expect("publisher");
            // Probes until the loop has one (a message sent before the route is dropped),
            // then the stream.
            let deadline = Instant::now() + WAIT;
            while !routed.load(Ordering::Relaxed) && Instant::now() < deadline {
                p.publish(b"a").expect("publish");
                thread::sleep(Duration::from_millis(1));
            }
            for _ in 0..FIRST {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                p.publish(b"a").expect("publish");
                thread::sleep(Duration::from_micros(100));
            }
        })
    };
    let second = {
        let (stop, group) = (Arc::clone(&stop), group.clone());
        thread::spawn(move || {
            // Not told: the test failed before.
            if went_b.recv_timeout(WAIT).is_ok() {
                publish_every_ms(&group, b"b", stop).join().expect("b");
            }
        })
    };
    // (messages of a, of b)
    let mut got = (0u64, 0u64);
    let mut event_loop: EventLoop<'static, (u64, u64)> = EventLoop::try_new().expect("loop");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        event_loop
            .handle()
            .insert_source(
                source,
                move |event, _: &mut LoopNode, got: &mut (u64, u64)| {
                    let NodeEvent::Message(m) = event else {
                        return;
                    };
                    match m.first() {
                        Some(b'a') => {
                            got.0 += 1;
                            routed.store(true, Ordering::Relaxed);
                            if got.0 == FIRST / 2 {
                                // Well into a's stream (the loop spins): b comes.
                                let _ = go_b.send(());
                            }
                        }
                        Some(b'b') => got.1 += 1,
                        _ => {}
                    }
                },
            )
            .expect("insert");
        let deadline = Instant::now() + WAIT;
        while got.1 < SECOND {
            assert!(
                Instant::now() < deadline,
                "{} messages of the publisher that came during the spin (and {} of the other)",
                got.1,
                got.0
            );
            event_loop
                .dispatch(Some(Duration::from_millis(50)), &mut got)
                .expect("dispatch");
        }
    }));
    stop.store(true, Ordering::Relaxed);
    let joined = (first.join(), second.join());
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    joined.0.expect("a");
    joined.1.expect("b");
}

/// A spin of `Duration::MAX` ("poll until the next message comes") is no overflow of the
/// clock's arithmetic, and leaving from the callback ends it. The loop runs on a thread of
/// its own: a spin that did not end would never give it back.
#[test]
fn a_loop_may_spin_for_ever_until_it_leaves() {
    let _one = one_at_a_time();
    let group = group();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publish_every_ms(&group, b"m", Arc::clone(&stop));
    let (done, finished) = mpsc::channel();
    {
        let group = group.clone();
        thread::spawn(move || {
            let source = spinning_subscriber(&group, Duration::MAX);
            // (messages, left)
            let mut state = (0u32, false);
            let mut event_loop: EventLoop<'static, (u32, bool)> =
                EventLoop::try_new().expect("loop");
            event_loop
                .handle()
                .insert_source(
                    source,
                    |event, node: &mut LoopNode, s: &mut (u32, bool)| match event {
                        NodeEvent::Message(_) => {
                            s.0 += 1;
                            if s.0 == 3 {
                                node.leave();
                            }
                        }
                        NodeEvent::Left => s.1 = true,
                        _ => {}
                    },
                )
                .expect("insert");
            let deadline = Instant::now() + WAIT;
            while !state.1 && Instant::now() < deadline {
                event_loop
                    .dispatch(Some(Duration::from_millis(50)), &mut state)
                    .expect("dispatch");
            }
            let _ = done.send(state);
        });
    }
    let state = finished.recv_timeout(WAIT * 2);
    stop.store(true, Ordering::Relaxed);
    publishing.join().expect("publisher");
    let (messages, left) = state.expect("the loop came back from its spin");
    assert!(left, "{messages} messages, not left");
    assert!(messages >= 3, "{messages} messages");
}

/// Closing the spinning subscription from another thread (through a `NodeHandle`) ends a
/// spin of `Duration::MAX`, with no message to come: the loop comes back.
#[test]
fn closing_the_subscription_from_another_thread_ends_the_spin() {
    let _one = one_at_a_time();
    let group = group();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publish_every_ms(&group, b"m", Arc::clone(&stop));
    let (messages, counted) = mpsc::channel();
    let (done, finished) = mpsc::channel();
    let (handle_tx, handle_rx) = mpsc::channel();
    let closed = Arc::new(AtomicBool::new(false));
    {
        let (closed, group) = (Arc::clone(&closed), group.clone());
        // A node source is not `Send`: made on its loop's thread, which hands out a handle.
        thread::spawn(move || {
            let mut source = spinning_subscriber(&group, Duration::MAX);
            let _ = handle_tx.send(source.node().handle());
            let mut event_loop: EventLoop<'static, ()> = EventLoop::try_new().expect("loop");
            event_loop
                .handle()
                .insert_source(source, move |event, _: &mut LoopNode, _: &mut ()| {
                    if let NodeEvent::Message(_) = event {
                        let _ = messages.send(());
                    }
                })
                .expect("insert");
            let deadline = Instant::now() + WAIT;
            // Comes back from `dispatch` only once the spin has ended.
            while !closed.load(Ordering::Relaxed) && Instant::now() < deadline {
                event_loop
                    .dispatch(Some(Duration::from_millis(50)), &mut ())
                    .expect("dispatch");
            }
            let _ = done.send(());
        });
    }
    let handle = handle_rx.recv_timeout(WAIT).expect("the node's handle");
    // A few messages: the loop spins.
    for _ in 0..3 {
        counted.recv_timeout(WAIT).expect("a message");
    }
    // No message ends the spin from here.
    stop.store(true, Ordering::Relaxed);
    publishing.join().expect("publisher");
    closed.store(true, Ordering::Relaxed);
    handle.close_subscription("t").expect("close");
    finished
        .recv_timeout(WAIT)
        .expect("the loop came back from its spin");
}

/// A callback that panics while the loop polls, in an application that catches the panic
/// and goes on with its loop: the rings park again (at the loop's next sleep), so that the
/// next messages wake it. (Left unparked, their publisher's pushes woke nobody.)
#[test]
fn a_loop_goes_on_after_its_callback_panicked_in_a_spin() {
    let _one = one_at_a_time();
    const PANIC_AT: u32 = 5;
    const AFTER: u32 = 10;
    let group = group();
    let source = spinning_subscriber(&group, Duration::from_millis(500));
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publish_every_ms(&group, b"m", Arc::clone(&stop));
    let mut got = 0u32;
    let mut event_loop: EventLoop<'static, u32> = EventLoop::try_new().expect("loop");
    event_loop
        .handle()
        .insert_source(source, |event, _: &mut LoopNode, got: &mut u32| {
            if let NodeEvent::Message(_) = event {
                *got += 1;
                assert_ne!(*got, PANIC_AT, "the callback panics (as the test wants)");
            }
        })
        .expect("insert");
    let deadline = Instant::now() + WAIT;
    let mut panicked = false;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while got < PANIC_AT + AFTER {
            assert!(
                Instant::now() < deadline,
                "{got} messages (panicked: {panicked})"
            );
            let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                event_loop.dispatch(Some(Duration::from_millis(50)), &mut got)
            }));
            match turn {
                Ok(r) => r.expect("dispatch"),
                Err(_) => panicked = true,
            }
        }
    }));
    stop.store(true, Ordering::Relaxed);
    publishing.join().expect("publisher");
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(panicked, "the callback panicked");
}

/// With default options the loop polls on, up to 100 µs after a message, while a publisher
/// says it fills the next one for this node (a pooled loan sets the ring's `writing` hint):
/// a publisher that holds each loan for 30 µs (three default spins, a third of the writing
/// one) sends its stream to a loop that sleeps for almost none of them (45-55 reads for 300
/// messages on a quiet machine). A loop that ignored the hint was woken for each message:
/// about 4 reads per message (1,207 and 1,214 for 300).
///
/// Up to [`ATTEMPTS`] streams, each in a fresh group: the bound must hold in one. With both
/// CPUs kept busy by other processes (a loaded CI machine), preemption makes a polling loop
/// sleep too: 305-632 reads in 7 of 48 single streams, before and after the calloop driver's
/// publish changed (it is not on this path); a loop that ignores the hint fails every one.
#[test]
fn a_default_loop_polls_while_a_publisher_fills_its_next_message() {
    let _one = one_at_a_time();
    let Some(cpus) = two_cpus() else {
        eprintln!("skipped: this process may use only one CPU");
        return;
    };
    let mut streams = Vec::new();
    for _ in 0..ATTEMPTS {
        let (reads, writes) = loan_held_stream(cpus);
        // A loan the publisher's I/O thread delays (preempting it) ends a wait in vain, and
        // up to 15 turns sleep then (about 4 reads each); one that ignored the hint made 4
        // reads per message.
        if reads < MESSAGES {
            return;
        }
        streams.push(format!("{reads} reads (and {writes} writes)"));
    }
    panic!(
        "for {MESSAGES} messages, {}: the loop slept",
        streams.join(", then ")
    );
}

/// Streams of a timing test that a loaded machine may fail: it passes if one of this many
/// does.
const ATTEMPTS: usize = 3;

/// One stream of [`a_default_loop_polls_while_a_publisher_fills_its_next_message`]: a std
/// publisher holds each pooled loan for 30 µs; the loop's reads and writes meanwhile.
fn loan_held_stream(cpus: [usize; 2]) -> (u64, u64) {
    const HOLD: Duration = Duration::from_micros(30);
    let (tx, counted) = mpsc::channel();
    let mut start = None;
    let on_number = move |n| {
        if n == 0 {
            start = Some(syscalls());
        } else if n == MESSAGES
            && let Some((r0, w0)) = start.take()
        {
            let (r, w) = syscalls();
            let _ = tx.send((r - r0, w - w0));
        }
    };
    pooled_to_a_default_loop(cpus, on_number, |publisher| {
        for n in 0..=MESSAGES {
            let mut loan = publisher.loan(64 << 10).expect("a pooled loan");
            loan[..8].copy_from_slice(&n.to_le_bytes());
            // Filled by a device, say: the loan is held a while.
            let taken = Instant::now();
            while taken.elapsed() < HOLD {
                std::hint::spin_loop();
            }
            publisher.send(loan).expect("send");
        }
        counted.recv_timeout(WAIT).expect("the loop's counts")
    })
}

/// A calloop node on its own thread, pinned to `cpus[0]`, subscribed to `data` with default
/// options (`Block`, depth 8), which hands each message's number (its first 8 bytes) to
/// `on_number` on the loop's thread, but for warm-ups (`u64::MAX`); and a std node that
/// publishes pooled messages on `data` from this thread, pinned to `cpus[1]` after its join
/// (its I/O thread keeps every CPU: pinned with this thread, it could run only by preempting
/// a publisher that holds its loan). Once the link has its ring, runs `publish` and stops the
/// loop; returns what `publish` returned.
fn pooled_to_a_default_loop<T>(
    [loop_cpu, publisher_cpu]: [usize; 2],
    mut on_number: impl FnMut(u64) + Send + 'static,
    publish: impl FnOnce(&ipc_driver_std::Publisher) -> T,
) -> T {
    use ipc_proto::data::SendMode;
    let group = group();
    // The ring mappings of the tests before, if any are still there.
    let rings_before = rings::ring_mappings();
    let stop = Arc::new(AtomicBool::new(false));
    let subscriber = {
        let (group, stop) = (group.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let _pinned = pin(loop_cpu);
            let mut source = NodeSource::builder("sub")
                .group(&group)
                .join()
                .expect("join");
            let options = SubscriptionOptions {
                depth: 8,
                ..SubscriptionOptions::block(WAIT)
            };
            source
                .node()
                .open_subscription("data", options)
                .expect("subscribe");
            let mut event_loop: EventLoop<'static, ()> = EventLoop::try_new().expect("loop");
            event_loop
                .handle()
                .insert_source(source, move |event, _, _| {
                    let NodeEvent::Message(m) = event else {
                        return;
                    };
                    let n = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
                    if n != u64::MAX {
                        on_number(n);
                    }
                })
                .expect("insert");
            let deadline = Instant::now() + WAIT * 2;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                event_loop
                    .dispatch(Some(Duration::from_millis(50)), &mut ())
                    .expect("dispatch");
            }
        })
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let node = StdNode::builder("pub").group(&group).join().expect("join");
        let _pinned = pin(publisher_cpu);
        let pooled = PublisherOptions {
            mode: SendMode::Pooled,
            ..PublisherOptions::default()
        };
        let publisher = node.publisher_with("data", "x", pooled).expect("publisher");
        let me = node.id();
        node.wait_view(WAIT, |v| {
            v.nodes()
                .iter()
                .any(|(&id, n)| id != me && !n.subscribes.is_empty())
        })
        .expect("the subscriber");
        // Until the link has its ring (both ends are in this process): the first messages
        // may take the socket.
        let deadline = Instant::now() + WAIT;
        while rings::ring_mappings() < rings_before + 2 {
            assert!(Instant::now() < deadline, "the link never got its ring");
            publisher.publish(&u64::MAX.to_le_bytes()).expect("warm-up");
            thread::sleep(Duration::from_millis(1));
        }
        publish(&publisher)
    }));
    stop.store(true, Ordering::Relaxed);
    let joined = subscriber.join();
    let out = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    joined.expect("subscriber thread");
    out
}

/// A loop's pooled loan tells its subscribers that a message is on its way (the ring's
/// `writing` hint), as a std publishing thread's does: a std subscriber with default options
/// polls on for it instead of sleeping. The std node asks for each message ("go"), which the
/// loop (spinning for it) answers with a pooled loan held 30 µs (longer than the default
/// spin of 10 µs, a third of the writing one); the subscriber slept for every message when
/// the loop set no hint (299-300 sleeps per 300 messages; 3-4 with it). It receives 5 µs
/// after its ask, once the loop holds the loan: a receive that starts before the hint is set
/// and finds its default spins in vain sleeps at once (45-139 sleeps without the pause).
#[test]
fn a_loops_pooled_loan_keeps_its_subscriber_polling() {
    let _one = one_at_a_time();
    use ipc_proto::data::SendMode;
    const HOLD: Duration = Duration::from_micros(30);
    const WARM_UP: u64 = u64::MAX;
    let Some([loop_cpu, subscriber_cpu]) = two_cpus() else {
        eprintln!("skipped: this process may use only one CPU");
        return;
    };
    let group = group();
    let rings_before = rings::ring_mappings();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (group, stop) = (group.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let _pinned = pin(loop_cpu);
            let mut source = NodeSource::builder("pub")
                .group(&group)
                .join()
                .expect("join");
            let node = source.node();
            let pooled = PublisherOptions {
                mode: SendMode::Pooled,
                ..PublisherOptions::default()
            };
            node.open_publisher("data", "x", pooled).expect("publish");
            // It answers each "go" at once: the subscriber's wait starts with it.
            let spin = SubscriptionOptions::block(WAIT).spin(Duration::from_millis(200));
            node.open_subscription("go", spin).expect("subscribe");
            let mut event_loop: EventLoop<'static, ()> = EventLoop::try_new().expect("loop");
            event_loop
                .handle()
                .insert_source(source, move |event, node: &mut LoopNode, _| {
                    let NodeEvent::Message(m) = event else {
                        return;
                    };
                    // "go": the number of the message to send.
                    let mut loan = node.loan("data", 64 << 10).expect("a pooled loan");
                    loan[..8].copy_from_slice(&m[..8]);
                    // Filled by a device, say: the loan is held a while.
                    let taken = Instant::now();
                    while taken.elapsed() < HOLD {
                        std::hint::spin_loop();
                    }
                    node.send(loan).expect("send");
                })
                .expect("insert");
            let deadline = Instant::now() + WAIT * 2;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                event_loop
                    .dispatch(Some(Duration::from_millis(50)), &mut ())
                    .expect("dispatch");
            }
        })
    };
    let result = std::panic::catch_unwind(|| {
        // Before the join: the node's I/O thread shares this thread's CPU, not the loop's,
        // whose held loans it would delay (a wait in vain then, and 15 sleeping receives).
        let _pinned = pin(subscriber_cpu);
        let node = StdNode::builder("sub").group(&group).join().expect("join");
        let data = node
            .subscription("data", SubscriptionOptions::block(WAIT))
            .expect("subscribe");
        let go = node.publisher("go", "x").expect("publisher");
        let me = node.id();
        node.wait_view(WAIT, |v| {
            v.nodes()
                .iter()
                .any(|(&id, n)| id != me && !n.subscribes.is_empty())
        })
        .expect("the publisher");
        let ask = |n: u64| go.publish(&n.to_le_bytes()).expect("go");
        // Until the link has its ring (both ends are in this process): the first messages
        // may take the socket.
        let deadline = Instant::now() + WAIT;
        while rings::ring_mappings() < rings_before + 2 {
            assert!(Instant::now() < deadline, "the link never got its ring");
            ask(WARM_UP);
            data.recv_timeout(WAIT).expect("a warm-up");
        }
        let (mut slept, mut n) = (0, 0);
        while n <= MESSAGES {
            ask(n);
            // Until the loop has its loan (a few µs: it polls for the ask): the receive
            // below then starts with the hint set.
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_micros(5) {
                std::hint::spin_loop();
            }
            let m = data.recv_timeout(WAIT).expect("a message");
            assert_eq!(m[..8], n.to_le_bytes(), "in order");
            match n {
                0 => slept = sleeps(),
                MESSAGES => slept = sleeps() - slept,
                _ => {}
            }
            n += 1;
        }
        slept
    });
    stop.store(true, Ordering::Relaxed);
    let joined = publisher.join();
    let slept = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    joined.expect("publisher thread");
    assert!(
        slept < MESSAGES / 2,
        "the subscriber slept {slept} times for {MESSAGES} messages"
    );
}

/// A publisher that holds its loans long (a buffer a device fills, say) does not keep a
/// default loop polling for them: a wait for a message being written lasts at most 100 µs,
/// and after one in vain the loop sleeps at once, trying once in 16 turns. 20 loans held
/// 20 ms each, each message sent at last (it wakes the loop) and the next loan taken at
/// once: the loop's thread is on a CPU for a few milliseconds in all (the wakeups, the
/// messages, a few waits of 100 µs), not for the 400 ms the hint is set.
#[test]
fn a_publisher_holding_its_loans_long_does_not_keep_a_loop_polling() {
    let _one = one_at_a_time();
    const LOANS: u64 = 20;
    const HOLD: Duration = Duration::from_millis(20);
    // On two CPUs: a hint set on the loop's own CPU is not worth polling for.
    let Some(cpus) = two_cpus() else {
        eprintln!("skipped: this process may use only one CPU");
        return;
    };
    let (tx, spent) = mpsc::channel();
    let mut start = None;
    let on_number = move |n| {
        if n == 0 {
            start = Some(cpu_time(&this_tid()));
        } else if n == LOANS
            && let Some(t0) = start.take()
        {
            let _ = tx.send(cpu_time(&this_tid()) - t0);
        }
    };
    let spent = pooled_to_a_default_loop(cpus, on_number, |publisher| {
        let mut loan = publisher.loan(64 << 10).expect("a pooled loan");
        for n in 0..=LOANS {
            loan[..8].copy_from_slice(&n.to_le_bytes());
            thread::sleep(HOLD);
            publisher.send(loan).expect("send");
            // The next one at once: the hint is set again while the loop takes this one.
            loan = publisher.loan(64 << 10).expect("a pooled loan");
        }
        spent.recv_timeout(WAIT).expect("the loop's time")
    });
    // Polling while the hint is set would be 1 ms per turn at least (the turn's bound), 20
    // ms in all; polling for the whole hold, 400 ms.
    assert!(
        spent < Duration::from_millis(10),
        "the loop spent {spent:?} on a CPU while {LOANS} loans were held {HOLD:?} each"
    );
}
