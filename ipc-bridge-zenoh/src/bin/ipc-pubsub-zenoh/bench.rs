//! `ipc-pubsub-zenoh bench`: the bridge against bare Zenoh, measured in the same run.
//!
//! Bare: two Zenoh sessions in peer mode over TCP on 127.0.0.1. Bridged: a group A and a
//! group B on this host, each with a bridge (its own session, the same transport), so a
//! message goes publisher → group A → bridge A → Zenoh → bridge B → group B → subscriber.
//! Latency is the round trip of a 64 B message (ping one way, pong back), throughput what a
//! subscriber receives per second from a publisher that keeps at most [`WINDOW`] messages in
//! flight (ipc-pubsub alone, in one group, is measured the same ways in the same run).

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipc_bridge_zenoh::{Bridge, BridgeConfig, peer_config};
use ipc_driver_std::{Node, Policy, SubscriptionOptions};
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::{Session, Wait};

/// Exit code: messages did not get through.
const EXIT_BENCH: u8 = 5;

const MIME: &str = "application/octet-stream";

/// Messages a throughput sender keeps in flight at most (the bridge's default depth): every
/// side is measured at the rate its path sustains, not at the rate of a sender spinning on a
/// core of its own while a queue drops what it cannot take.
const WINDOW: u64 = 64;

/// The bench's options.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Seconds of sending per throughput measurement.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Round trips per latency measurement.
    #[arg(long, default_value_t = 2000)]
    round_trips: u32,
}

type Res<T> = Result<T, String>;

pub(crate) fn run(args: &BenchArgs) -> ExitCode {
    match bench(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc-pubsub-zenoh bench: {e}");
            ExitCode::from(EXIT_BENCH)
        }
    }
}

/// Latency figures of one side.
struct Rtt {
    p50: Duration,
    p99: Duration,
    lost: u32,
}

/// Throughput figures of one side.
struct Rate {
    bytes_per_s: f64,
    sent: u64,
    received: u64,
}

fn bench(args: &BenchArgs) -> Res<()> {
    let seconds = Duration::from_secs(args.seconds.max(1));
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "ipc-pubsub-zenoh bench: {cpus} CPUs; Zenoh peer mode over TCP on 127.0.0.1; \
         {} round trips, {} s per throughput run",
        args.round_trips,
        seconds.as_secs()
    );
    let (bare_rtt, bare_4k, bare_1m) = {
        let bare = BarePair::open()?;
        (
            bare.latency(args.round_trips)?,
            bare.throughput(4 << 10, seconds)?,
            bare.throughput(1 << 20, seconds)?,
        )
    };
    let (ipc_rtt, ipc_4k, ipc_1m) = {
        let group = unique("bench-ipc");
        (
            ipc_latency(&group, &group, args.round_trips)?,
            ipc_throughput(&group, &group, 4 << 10, seconds)?,
            ipc_throughput(&group, &group, 1 << 20, seconds)?,
        )
    };
    let bridged = BridgedPair::open()?;
    let rtt = bridged.latency(args.round_trips)?;
    let tp_4k = bridged.throughput(4 << 10, seconds)?;
    let tp_1m = bridged.throughput(1 << 20, seconds)?;
    let (a, b) = (bridged.a.counters(), bridged.b.counters());
    drop(bridged);

    println!();
    println!(
        "{:<22} {:>14} {:>14} {:>14} {:>8} {:>8}",
        "", "bare zenoh", "bridge", "ipc alone", "ratio", "target"
    );
    let ratio = rtt.p50.as_secs_f64() / bare_rtt.p50.as_secs_f64();
    println!(
        "{:<22} {:>14} {:>14} {:>14} {:>7.2}x {:>8} {}",
        "latency 64 B RTT p50",
        fmt_us(bare_rtt.p50),
        fmt_us(rtt.p50),
        fmt_us(ipc_rtt.p50),
        ratio,
        "<= 1.2x",
        verdict(ratio <= 1.2)
    );
    println!(
        "{:<22} {:>14} {:>14} {:>14}",
        "latency 64 B RTT p99",
        fmt_us(bare_rtt.p99),
        fmt_us(rtt.p99),
        fmt_us(ipc_rtt.p99)
    );
    for (name, bare, bridged, ipc) in [
        ("throughput 4 KiB", &bare_4k, &tp_4k, &ipc_4k),
        ("throughput 1 MiB", &bare_1m, &tp_1m, &ipc_1m),
    ] {
        let ratio = bridged.bytes_per_s / bare.bytes_per_s;
        println!(
            "{:<22} {:>14} {:>14} {:>14} {:>7.2}x {:>8} {}",
            name,
            fmt_rate(bare.bytes_per_s),
            fmt_rate(bridged.bytes_per_s),
            fmt_rate(ipc.bytes_per_s),
            ratio,
            ">= 0.8x",
            verdict(ratio >= 0.8)
        );
    }
    // A bridged round trip is a bare Zenoh round trip plus two ipc-pubsub round trips (one in
    // each group): what is left is the bridges' own work.
    let own = rtt.p50.as_secs_f64() - bare_rtt.p50.as_secs_f64() - 2.0 * ipc_rtt.p50.as_secs_f64();
    println!();
    println!(
        "the bridges' own share of a round trip (bridge - bare - 2 x ipc alone, p50): {:.1} µs",
        own * 1e6
    );
    println!(
        "round trips lost: bare {}, bridge {}, ipc alone {}",
        bare_rtt.lost, rtt.lost, ipc_rtt.lost
    );
    for (name, bare, bridged, ipc) in [
        ("4 KiB", &bare_4k, &tp_4k, &ipc_4k),
        ("1 MiB", &bare_1m, &tp_1m, &ipc_1m),
    ] {
        println!(
            "{name} messages sent/received: bare {}/{}, bridge {}/{}, ipc alone {}/{}",
            bare.sent, bare.received, bridged.sent, bridged.received, ipc.sent, ipc.received
        );
    }
    println!("bridge A (export): {}", a.to_json());
    println!("bridge B (import): {}", b.to_json());
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn fmt_us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn fmt_rate(bytes_per_s: f64) -> String {
    format!("{:.0} MiB/s", bytes_per_s / f64::from(1 << 20))
}

fn free_endpoint() -> Res<String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    Ok(format!("tcp/127.0.0.1:{port}"))
}

fn unique(what: &str) -> String {
    #[allow(clippy::disallowed_methods)] // a name, not a measurement
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{what}-{}-{nanos:x}", std::process::id())
}

fn open(listen: &[&str], connect: &[&str]) -> Res<Session> {
    let config = peer_config(listen, connect).map_err(|e| e.to_string())?;
    zenoh::open(config).wait().map_err(|e| e.to_string())
}

fn now() -> Instant {
    #[allow(clippy::disallowed_methods)] // the bench measures time
    Instant::now()
}

/// Percentiles of `samples`, sorted in place.
fn rtt_of(samples: &mut [Duration], lost: u32) -> Res<Rtt> {
    if samples.is_empty() {
        return Err("no round trip completed".into());
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    Ok(Rtt {
        p50: at(0.5),
        p99: at(0.99),
        lost,
    })
}

/// What a receiving side counts: messages, bytes, and when the last one came (ns after
/// `start`).
struct Sink {
    start: Instant,
    count: AtomicU64,
    bytes: AtomicU64,
    last_ns: AtomicU64,
    /// Wakes a sender waiting for room in its window ([`Sink::wait_room`]).
    room: (Mutex<()>, Condvar),
}

impl Sink {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: now(),
            count: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            room: (Mutex::new(()), Condvar::new()),
        })
    }

    fn add(&self, len: usize) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        let ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_ns.store(ns, Ordering::Relaxed);
        self.room.1.notify_one();
    }

    /// Waits until fewer than [`WINDOW`] of the `sent` messages after `before` are
    /// outstanding, or 10 ms (a message dropped on the way never comes).
    fn wait_room(&self, sent: u64, before: u64) {
        let deadline = now() + Duration::from_millis(10);
        let mut guard = self.room.0.lock().expect("no panic holding it");
        while sent.saturating_sub(self.count() - before) >= WINDOW && now() < deadline {
            guard = self
                .room
                .1
                .wait_timeout(guard, Duration::from_millis(1))
                .expect("no panic holding it")
                .0;
        }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until nothing more arrives (no change for 300 ms, at most 10 s).
    fn settle(&self) {
        let deadline = now() + Duration::from_secs(10);
        let mut last = (self.count(), now());
        while now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let c = self.count();
            if c != last.0 {
                last = (c, now());
            } else if last.1.elapsed() >= Duration::from_millis(300) {
                return;
            }
        }
    }

    /// Bytes received after `from` per second until the last message.
    fn rate(&self, from: Instant, bytes_before: u64) -> f64 {
        let last = self.start + Duration::from_nanos(self.last_ns.load(Ordering::Relaxed));
        let secs = last.saturating_duration_since(from).as_secs_f64();
        let bytes = self.bytes.load(Ordering::Relaxed) - bytes_before;
        if secs > 0.0 { bytes as f64 / secs } else { 0.0 }
    }
}

/// Two Zenoh sessions, publisher and subscriber, nothing between.
struct BarePair {
    one: Session,
    two: Session,
}

impl BarePair {
    fn open() -> Res<Self> {
        let endpoint = free_endpoint()?;
        let one = open(&[&endpoint], &[])?;
        let two = open(&[], &[&endpoint])?;
        Ok(Self { one, two })
    }

    fn latency(&self, round_trips: u32) -> Res<Rtt> {
        let z = |e: zenoh::Error| e.to_string();
        let pong = self
            .two
            .declare_publisher("bench/pong")
            .congestion_control(CongestionControl::Block)
            .wait()
            .map_err(z)?;
        let _ponger = self
            .two
            .declare_subscriber("bench/ping")
            .callback(move |s| {
                let _ = pong.put(s.payload().clone()).wait();
            })
            .wait()
            .map_err(z)?;
        let ping = self
            .one
            .declare_publisher("bench/ping")
            .congestion_control(CongestionControl::Block)
            .wait()
            .map_err(z)?;
        let pongs = self
            .one
            .declare_subscriber("bench/pong")
            .wait()
            .map_err(z)?;
        let payload = vec![0x5a_u8; 64];
        let round_trip = |timeout: Duration| -> Res<Option<Duration>> {
            let t = now();
            ping.put(payload.clone()).wait().map_err(z)?;
            Ok(pongs.recv_timeout(timeout).map_err(z)?.map(|_| t.elapsed()))
        };
        warm_up(|| round_trip(Duration::from_millis(100)).map(|r| r.is_some()))?;
        while pongs.try_recv().map_err(z)?.is_some() {}
        let (mut samples, mut lost) = (Vec::new(), 0);
        for _ in 0..round_trips {
            match round_trip(Duration::from_secs(1))? {
                Some(d) => samples.push(d),
                None => lost += 1,
            }
        }
        rtt_of(&mut samples, lost)
    }

    fn throughput(&self, size: usize, seconds: Duration) -> Res<Rate> {
        let z = |e: zenoh::Error| e.to_string();
        let sink = Sink::new();
        let s = Arc::clone(&sink);
        let _sub = self
            .two
            .declare_subscriber("bench/tp")
            .callback(move |sample| s.add(sample.payload().len()))
            .wait()
            .map_err(z)?;
        let publisher = self
            .one
            .declare_publisher("bench/tp")
            .congestion_control(CongestionControl::Block)
            .wait()
            .map_err(z)?;
        let payload = Bytes::from(vec![0xa5_u8; size]);
        warm_up(|| {
            publisher
                .put(ZBytes::from(payload.clone()))
                .wait()
                .map_err(z)?;
            std::thread::sleep(Duration::from_millis(10));
            Ok(sink.count() > 0)
        })?;
        sink.settle();
        let (before, bytes_before) = (sink.count(), sink.bytes.load(Ordering::Relaxed));
        let start = now();
        let mut sent = 0;
        while start.elapsed() < seconds {
            sink.wait_room(sent, before);
            publisher
                .put(ZBytes::from(payload.clone()))
                .wait()
                .map_err(z)?;
            sent += 1;
        }
        sink.settle();
        Ok(Rate {
            bytes_per_s: sink.rate(start, bytes_before),
            sent,
            received: sink.count() - before,
        })
    }
}

/// Repeats `attempt` until it says the path works, for at most 20 s.
fn warm_up(mut attempt: impl FnMut() -> Res<bool>) -> Res<()> {
    let deadline = now() + Duration::from_secs(20);
    while now() < deadline {
        if attempt()? {
            return Ok(());
        }
    }
    Err("no message got through within 20 s".into())
}

/// Two groups on this host, each with a bridge, the bridges linked by Zenoh.
struct BridgedPair {
    group_a: String,
    group_b: String,
    a: Bridge,
    b: Bridge,
}

impl BridgedPair {
    fn open() -> Res<Self> {
        let endpoint = free_endpoint()?;
        let (group_a, group_b) = (unique("bench-a"), unique("bench-b"));
        let prefix = format!("ipc/{}", unique("bench"));
        let e = |e: ipc_bridge_zenoh::BridgeError| e.to_string();
        let mut a = BridgeConfig::new(&group_a);
        a.set_key_prefix(&prefix)
            .map_err(e)?
            .export("bench/ping")
            .map_err(e)?
            .export("bench/tp")
            .map_err(e)?
            .import("bench/pong")
            .map_err(e)?
            .zenoh(peer_config(&[&endpoint], &[]).map_err(e)?);
        let mut b = BridgeConfig::new(&group_b);
        b.set_key_prefix(&prefix)
            .map_err(e)?
            .export("bench/pong")
            .map_err(e)?
            .import("bench/ping")
            .map_err(e)?
            .import("bench/tp")
            .map_err(e)?
            .zenoh(peer_config(&[], &[&endpoint]).map_err(e)?);
        let a = Bridge::start(a).map_err(e)?;
        let b = Bridge::start(b).map_err(e)?;
        Ok(Self {
            group_a,
            group_b,
            a,
            b,
        })
    }

    fn latency(&self, round_trips: u32) -> Res<Rtt> {
        ipc_latency(&self.group_a, &self.group_b, round_trips)
    }

    fn throughput(&self, size: usize, seconds: Duration) -> Res<Rate> {
        ipc_throughput(&self.group_a, &self.group_b, size, seconds)
    }
}

fn node(name: &str, group: &str) -> Res<Node> {
    Node::builder(name)
        .group(group)
        .join()
        .map_err(|e| e.to_string())
}

/// Round trips of a pinger in `ping_group` and a ponger in `pong_group` (the same group: plain
/// ipc-pubsub; two bridged groups: through the bridges).
fn ipc_latency(ping_group: &str, pong_group: &str, round_trips: u32) -> Res<Rtt> {
    let d = |e: ipc_driver_std::DriverError| e.to_string();
    let pinger = node("pinger", ping_group)?;
    let ponger = node("ponger", pong_group)?;
    let ping = pinger.publisher("bench/ping", MIME).map_err(d)?;
    let pongs = pinger
        .subscription("bench/pong", SubscriptionOptions::default())
        .map_err(d)?;
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let pings = ponger
            .subscription("bench/ping", SubscriptionOptions::default())
            .map_err(d)?;
        let pong = ponger.publisher("bench/pong", MIME).map_err(d)?;
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = pings.recv_timeout(Duration::from_millis(50)) {
                    let _ = pong.publish(&m);
                }
            }
        })
    };
    let _stop = StopOnDrop(stop, Some(echo));
    let payload = [0x5a_u8; 64];
    let round_trip = |timeout: Duration| -> Res<Option<Duration>> {
        let t = now();
        ping.publish(&payload).map_err(d)?;
        Ok(pongs.recv_timeout(timeout).ok().map(|_| t.elapsed()))
    };
    warm_up(|| round_trip(Duration::from_millis(100)).map(|r| r.is_some()))?;
    while pongs.try_recv().is_ok() {}
    let (mut samples, mut lost) = (Vec::new(), 0);
    for _ in 0..round_trips {
        match round_trip(Duration::from_secs(1))? {
            Some(d) => samples.push(d),
            None => lost += 1,
        }
    }
    rtt_of(&mut samples, lost)
}

/// What a sink in `sink_group` receives per second from a source in `source_group` sending as
/// fast as it can.
fn ipc_throughput(
    source_group: &str,
    sink_group: &str,
    size: usize,
    seconds: Duration,
) -> Res<Rate> {
    let d = |e: ipc_driver_std::DriverError| e.to_string();
    let source = node("source", source_group)?;
    let sink_node = node("sink", sink_group)?;
    let publisher = source.publisher("bench/tp", MIME).map_err(d)?;
    let options = SubscriptionOptions {
        policy: Policy::DropOldest,
        depth: 256,
        ..SubscriptionOptions::default()
    };
    let sub = sink_node.subscription("bench/tp", options).map_err(d)?;
    let sink = Sink::new();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (sink, stop) = (Arc::clone(&sink), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = sub.recv_timeout(Duration::from_millis(50)) {
                    sink.add(m.len());
                }
            }
        })
    };
    let _stop = StopOnDrop(stop, Some(reader));
    let payload = vec![0xa5_u8; size];
    warm_up(|| {
        publisher.publish(&payload).map_err(d)?;
        std::thread::sleep(Duration::from_millis(10));
        Ok(sink.count() > 0)
    })?;
    sink.settle();
    let (before, bytes_before) = (sink.count(), sink.bytes.load(Ordering::Relaxed));
    let start = now();
    let mut sent = 0;
    while start.elapsed() < seconds {
        sink.wait_room(sent, before);
        publisher.publish(&payload).map_err(d)?;
        sent += 1;
    }
    sink.settle();
    Ok(Rate {
        bytes_per_s: sink.rate(start, bytes_before),
        sent,
        received: sink.count() - before,
    })
}

/// Stops and joins a helper thread, also on an early return.
struct StopOnDrop(Arc<AtomicBool>, Option<JoinHandle<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}
