//! The calloop driver side by side with the std driver, in the same run.
//!
//! ```text
//! cargo bench -p ipc-driver-calloop --bench vs_std [-- --quick] [-- --reps N] [-- --only std|calloop] [-- --no-pin]
//! ```
//!
//! `--only` runs one driver's repetitions (to profile it): no ratio then.
//!
//! The two application threads are pinned, each to its own CPU (the first two this process
//! may use), for the timed part of every repetition, with either driver. Unpinned
//! (`--no-pin`), the scheduler decides, and on a 2-vCPU VM it sometimes put the std driver's
//! two application threads on one CPU (round trips of 5 µs instead of 45: no wakeup across
//! vCPUs) and never the calloop driver's: the ratio measured the placement. The std driver's
//! I/O threads are not pinned (they start before the pinning and idle in a round trip).
//!
//! Two nodes of a fresh group in this process, a sender and an echoer, each on its own
//! application thread. The echoer answers every message on `bench/data` with its first 8
//! bytes (the message's number) on `bench/ack`. The sender keeps `window` messages
//! unanswered and sends the next one at each answer:
//!
//! - **64 B round trip**: inline payloads, a window of 1; the figure is the median time per
//!   round trip.
//!   Both subscriptions have default options: both drivers poll their rings for up to 10 µs
//!   while that finds the next message (`ipc_driver_core::RECV_SPIN`), which catches the
//!   replies of a back-to-back exchange at times, and then both ends poll.
//! - **64 B never polling**: the same with both subscriptions never polling
//!   (`spin(Duration::ZERO)`): every message wakes its receiver, the drivers' wakeup paths.
//! - **64 B spinning**: the same with both subscriptions spinning
//!   ([`SubscriptionOptions::spin`], 1 ms): the std driver's receiving threads poll in `recv`,
//!   the calloop driver's loops after each message.
//! - **1 MiB throughput**: pooled payloads (`publish`, which copies into a pool slot), a
//!   window of 4; the figure is payload bytes per second.
//! - **1 MiB spinning**: the same with both subscriptions spinning.
//!
//! With the std driver each node also has its I/O thread, and the application threads block
//! in `recv`; with the calloop driver each thread runs one `EventLoop` with the node inserted,
//! and the work happens in the node's callback. The same code paths of `ipc-proto` decide
//! everything, so the difference is the driver's. Repetitions alternate between the drivers,
//! each with fresh nodes, so that a slow moment of a shared machine spreads over both. The
//! ratio is calloop's cost over std's (time per round trip, or the inverse of throughput): the
//! issue's target is at most 1.10.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use calloop::EventLoop;
use ipc_driver_calloop::{Node as LoopNode, NodeEvent, NodeSource};
use ipc_driver_std::Node as StdNode;
use ipc_proto::data::{PublisherOptions, SendMode, SubscriptionOptions};
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

const DATA: &str = "bench/data";
const ACK: &str = "bench/ack";
const MIME: &str = "application/octet-stream";
/// Numbers of warm-up probes: the top bit set, so they never match a timed message.
const PROBE: u64 = 1 << 63;
/// The spin of the spinning round trip's subscriptions: far longer than a round trip.
const SPIN: Duration = Duration::from_millis(1);
/// How long any one step may take before the run is declared broken.
const STEP: Duration = Duration::from_secs(20);

#[derive(Copy, Clone, Debug)]
struct Case {
    name: &'static str,
    size: usize,
    mode: SendMode,
    window: u64,
    count: u64,
    /// Both subscriptions' [`SubscriptionOptions::spin`]: `None` the driver's choice, zero
    /// never polling.
    spin: Option<Duration>,
}

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Driver {
    Std,
    Calloop,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(if quick { 3 } else { 7 });
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|d| match d.as_str() {
            "std" => Driver::Std,
            "calloop" => Driver::Calloop,
            other => panic!("--only std or calloop, not {other}"),
        });
    let cpus = if args.iter().any(|a| a == "--no-pin") {
        None
    } else {
        Cpus::first_two()
    };
    let scale = if quick { 5 } else { 1 };
    let cases = [
        Case {
            name: "64 B round trip",
            size: 64,
            mode: SendMode::Inline,
            window: 1,
            count: 20_000 / scale,
            spin: None,
        },
        Case {
            name: "64 B never polling",
            size: 64,
            mode: SendMode::Inline,
            window: 1,
            count: 20_000 / scale,
            spin: Some(Duration::ZERO),
        },
        Case {
            name: "64 B spinning",
            size: 64,
            mode: SendMode::Inline,
            window: 1,
            count: 200_000 / scale,
            spin: Some(SPIN),
        },
        Case {
            name: "1 MiB throughput",
            size: 1 << 20,
            mode: SendMode::Pooled,
            window: 4,
            count: 2_000 / scale,
            spin: None,
        },
        Case {
            name: "1 MiB spinning",
            size: 1 << 20,
            mode: SendMode::Pooled,
            window: 4,
            count: 2_000 / scale,
            spin: Some(SPIN),
        },
    ];
    println!("calloop driver vs std driver: {reps} repetitions each, alternating, fresh nodes");
    match cpus {
        Some(c) => println!(
            "application threads pinned: the sender to CPU {}, the echoer to CPU {}",
            c.sender, c.echoer
        ),
        None => println!("application threads not pinned"),
    }
    println!(
        "{:<18} {:>26} {:>26} {:>13}",
        "", "std (median, range)", "calloop (median, range)", "calloop/std"
    );
    for case in cases {
        let mut secs = [Vec::new(), Vec::new()];
        for rep in 0..reps {
            for (i, driver) in [Driver::Std, Driver::Calloop].into_iter().enumerate() {
                if only.is_some_and(|o| o != driver) {
                    continue;
                }
                eprint!(
                    "\r{}: repetition {}/{reps} on {driver:?}   ",
                    case.name,
                    rep + 1
                );
                let group = format!("bench-vs-{:016x}", getrandom::u64().expect("random"));
                let elapsed = match driver {
                    Driver::Std => std_run(&group, case, cpus),
                    Driver::Calloop => calloop_run(&group, case, cpus),
                };
                secs[i].push(elapsed.as_secs_f64());
            }
        }
        eprint!("\r{:60}\r", "");
        let [std, calloop] = secs.map(|mut v| {
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| (v[v.len() / 2], v[0], v[v.len() - 1]))
        });
        let shown = |(median, fastest, slowest): (f64, f64, f64)| {
            if case.window == 1 {
                let us = |s: f64| s / case.count as f64 * 1e6;
                // A spinning round trip takes about a microsecond: two decimals there.
                let digits = if us(median) < 10.0 { 2 } else { 1 };
                format!(
                    "{:.digits$} µs ({:.digits$}-{:.digits$})",
                    us(median),
                    us(fastest),
                    us(slowest)
                )
            } else {
                let gbs = |s: f64| (case.size as u64 * case.count) as f64 / s / 1e9;
                format!(
                    "{:.2} GB/s ({:.2}-{:.2})",
                    gbs(median),
                    gbs(slowest),
                    gbs(fastest)
                )
            }
        };
        let (Some(std), Some(calloop)) = (std, calloop) else {
            let one = std.or(calloop).expect("one driver ran");
            println!("{:<18} {:>26}", case.name, shown(one));
            continue;
        };
        let ratio = calloop.0 / std.0;
        println!(
            "{:<18} {:>26} {:>26} {:>12.3}x{}",
            case.name,
            shown(std),
            shown(calloop),
            ratio,
            if ratio <= 1.10 {
                ""
            } else {
                "  (above the 1.10 target)"
            }
        );
    }
}

/// The CPUs the two application threads run on.
#[derive(Copy, Clone, Debug)]
struct Cpus {
    sender: usize,
    echoer: usize,
}

impl Cpus {
    /// The first two CPUs this process may use, if it may use two.
    fn first_two() -> Option<Self> {
        let allowed = sched_getaffinity(None).expect("sched_getaffinity");
        let mut cpus = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c));
        Some(Self {
            sender: cpus.next()?,
            echoer: cpus.next()?,
        })
    }
}

/// The calling thread pinned to one CPU; dropping it gives the thread back the CPUs it had
/// (so that the nodes of the next repetition start their threads unpinned).
struct Pinned(CpuSet);

impl Pinned {
    fn to(cpu: Option<usize>) -> Option<Self> {
        let cpu = cpu?;
        let before = sched_getaffinity(None).expect("sched_getaffinity");
        let mut one = CpuSet::new();
        one.set(cpu);
        sched_setaffinity(None, &one).expect("sched_setaffinity");
        Some(Self(before))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        sched_setaffinity(None, &self.0).expect("sched_setaffinity");
    }
}

/// The message numbered `n`, `size` bytes long.
fn message(n: u64, size: usize) -> Vec<u8> {
    let mut m = vec![0x5a; size.max(8)];
    m[..8].copy_from_slice(&n.to_le_bytes());
    m
}

fn number(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload[..8].try_into().expect("at least 8 bytes"))
}

fn publisher_options(case: Case) -> PublisherOptions {
    PublisherOptions {
        mode: case.mode,
        ..PublisherOptions::default()
    }
}

/// Lossless queues, deep enough for the window: nothing is dropped or held back.
fn subscription_options(case: Case) -> SubscriptionOptions {
    SubscriptionOptions {
        spin: case.spin,
        ..SubscriptionOptions::block(STEP)
    }
}

fn std_run(group: &str, case: Case, cpus: Option<Cpus>) -> Duration {
    let join = |name| {
        StdNode::builder(name)
            .group(group)
            .join()
            .expect("join a std node")
    };
    let (sender, echoer) = (join("sender"), join("echoer"));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = Arc::clone(&stop);
        let data = echoer
            .subscription(DATA, subscription_options(case))
            .expect("subscribe");
        let ack = echoer.publisher(ACK, MIME).expect("publisher");
        thread::spawn(move || {
            let _pinned = Pinned::to(cpus.map(|c| c.echoer));
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = data.recv_timeout(Duration::from_millis(50)) {
                    ack.publish(&m[..8]).expect("answer");
                }
            }
            drop(echoer);
        })
    };
    let out = sender
        .publisher_with(DATA, MIME, publisher_options(case))
        .expect("publisher");
    let acks = sender
        .subscription(ACK, subscription_options(case))
        .expect("subscribe");
    // Both nodes' I/O threads are running: pinning this thread no longer pins them.
    let pinned = Pinned::to(cpus.map(|c| c.sender));
    // Warm up: probe until one comes back, so that both routes exist.
    let deadline = Instant::now() + STEP;
    'warm: for probe in PROBE.. {
        assert!(Instant::now() < deadline, "std: no route between the nodes");
        out.publish(&message(probe, case.size)).expect("probe");
        while let Ok(m) = acks.recv_timeout(Duration::from_millis(20)) {
            if number(&m) & PROBE != 0 {
                break 'warm;
            }
        }
    }
    let start = Instant::now();
    let (mut sent, mut answered) = (0, 0);
    while answered < case.count {
        while sent < case.count && sent - answered < case.window {
            out.publish(&message(sent, case.size)).expect("publish");
            sent += 1;
        }
        let m = acks.recv_timeout(STEP).expect("std: an answer in time");
        if number(&m) & PROBE == 0 {
            assert_eq!(number(&m), answered, "answers in order");
            answered += 1;
        }
    }
    let elapsed = start.elapsed();
    drop(pinned);
    stop.store(true, Ordering::Relaxed);
    echo.join().expect("echo thread");
    drop(sender);
    elapsed
}

/// What the sender's callback keeps.
struct Sender {
    case: Case,
    /// When the first timed message went (the first probe answer arrived).
    start: Option<Instant>,
    elapsed: Option<Duration>,
    sent: u64,
    answered: u64,
}

impl Sender {
    fn fill_window(&mut self, node: &mut LoopNode) {
        let case = self.case;
        while self.sent < case.count && self.sent - self.answered < case.window {
            node.publish(DATA, &message(self.sent, case.size))
                .expect("publish");
            self.sent += 1;
        }
    }

    fn on_answer(&mut self, node: &mut LoopNode, n: u64) {
        if n & PROBE != 0 {
            if self.start.is_none() {
                self.start = Some(Instant::now());
                self.fill_window(node);
            }
            return;
        }
        assert_eq!(n, self.answered, "answers in order");
        self.answered += 1;
        if self.answered == self.case.count {
            self.elapsed = self.start.map(|s| s.elapsed());
        } else {
            self.fill_window(node);
        }
    }
}

fn calloop_run(group: &str, case: Case, cpus: Option<Cpus>) -> Duration {
    let join = |name| {
        NodeSource::builder(name)
            .group(group)
            .join()
            .expect("join a calloop node")
    };
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = Arc::clone(&stop);
        let group = group.to_string();
        // A node source is not `Send`: the echoer is made on its own thread.
        thread::spawn(move || {
            let _pinned = Pinned::to(cpus.map(|c| c.echoer));
            let mut echoer = NodeSource::builder("echoer")
                .group(&group)
                .join()
                .expect("join a calloop node");
            echoer
                .node()
                .open_subscription(DATA, subscription_options(case))
                .expect("subscribe");
            echoer
                .node()
                .open_publisher(ACK, MIME, PublisherOptions::default())
                .expect("publisher");
            let mut event_loop: EventLoop<'static, ()> = EventLoop::try_new().expect("loop");
            event_loop
                .handle()
                .insert_source(echoer, |event, node: &mut LoopNode, _: &mut ()| {
                    if let NodeEvent::Message(m) = event {
                        node.publish(ACK, &m[..8]).expect("answer");
                    }
                })
                .expect("insert");
            while !stop.load(Ordering::Relaxed) {
                event_loop
                    .dispatch(Some(Duration::from_millis(50)), &mut ())
                    .expect("dispatch");
            }
        })
    };
    let mut sender = join("sender");
    sender
        .node()
        .open_publisher(DATA, MIME, publisher_options(case))
        .expect("publisher");
    sender
        .node()
        .open_subscription(ACK, subscription_options(case))
        .expect("subscribe");
    let probes = sender.node().handle();
    let mut event_loop: EventLoop<'static, Sender> = EventLoop::try_new().expect("loop");
    event_loop
        .handle()
        .insert_source(sender, |event, node: &mut LoopNode, s: &mut Sender| {
            if let NodeEvent::Message(m) = event {
                s.on_answer(node, number(&m));
            }
        })
        .expect("insert");
    let pinned = Pinned::to(cpus.map(|c| c.sender));
    let mut state = Sender {
        case,
        start: None,
        elapsed: None,
        sent: 0,
        answered: 0,
    };
    // Warm up: probe (from outside the callback) until one comes back; the callback starts
    // the timed run at the first answer.
    let deadline = Instant::now() + STEP;
    let mut probe = PROBE;
    while state.start.is_none() {
        assert!(
            Instant::now() < deadline,
            "calloop: no route between the nodes"
        );
        probes
            .publish(DATA, message(probe, case.size))
            .expect("probe");
        probe += 1;
        event_loop
            .dispatch(Some(Duration::from_millis(20)), &mut state)
            .expect("dispatch");
    }
    let deadline = Instant::now() + STEP * 10;
    while state.elapsed.is_none() {
        assert!(Instant::now() < deadline, "calloop: the run did not finish");
        event_loop
            .dispatch(Some(Duration::from_millis(50)), &mut state)
            .expect("dispatch");
    }
    drop(pinned);
    stop.store(true, Ordering::Relaxed);
    echo.join().expect("echo thread");
    state.elapsed.expect("finished")
}
