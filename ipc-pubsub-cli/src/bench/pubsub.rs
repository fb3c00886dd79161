//! The pub/sub series of `bench payload`: the std driver's data path between processes,
//! measured with the same harness, placement and payloads as the [baselines](super::baselines).
//!
//! Every child joins the team's fresh group as a [`Node`]; payloads travel only through the
//! pub/sub layer. The socketpair the harness wires between the sender and each receiver
//! carries nothing but 1-byte acknowledgements (end of warm-up, end of run) and, by closing,
//! the end of the repetition: it times the run the way the baselines' acks do.
//!
//! | series | sender | receiver |
//! |---|---|---|
//! | [`PUBSUB_RTT`] | publishes 64 B on topic `ping` ([`SendMode::Inline`]) and waits for the reply on `pong`; one sample per round trip | subscribes to `ping`, publishes each message's bytes back on `pong` |
//! | [`PUBSUB_RTT_SPIN`] | the same, its `pong` subscription spinning 1 ms (`SubscriptionOptions::spin`) | the same, its `ping` subscription spinning |
//! | [`PUBSUB_RTT_SLEEP`] | the same, its `pong` subscription never polling (spin zero) | the same, its `ping` subscription never polling |
//! | [`PUBSUB_PACED_30HZ`], [`PUBSUB_PACED_1KHZ`] | per message, on time: the time, a loan of a publisher with default options written in place with that time in it, [`Publisher::send`] | a `Block` subscription of depth 8; per message: the time as soon as `recv` returns it, then its order and [`checksum`]; the difference of the two times is the sample |
//! | [`PUBSUB_INLINE`], [`PUBSUB_FRESH`], [`PUBSUB_POOLED`] and their 4-receiver ones | per message: [`Publisher::loan`], the payload written into the loan in place, [`Publisher::send`]; timed from "warm-up received by every receiver" to "last message received by every receiver" | a `Block` subscription of depth `window` (8, the baselines' window); per message: checks its mode and length, [`checksum`] of every byte (in the mapping, no copy), drops it (which gives a pooled range back) |
//! | [`PUBSUB_INLINE_DEEP`] | as [`PUBSUB_INLINE`], at 4 KiB | the same, its subscription [`DEEP_WINDOW`] deep (`--opt depth=256`) |
//!
//! The loan is the realistic way to use each mode: for pooled it is the pool segment itself
//! (zero-copy, one write of the payload, as [`POOLED_RAW`](super::baselines::POOLED_RAW)'s
//! sender does), for fresh a new memfd mapped by the publisher (as
//! [`FRESH_MEMFD`](super::baselines::FRESH_MEMFD)'s sender does), for inline a buffer that the
//! I/O thread then copies into the socket. A message that arrives by another mode than the
//! series says (say, a pooled one sent fresh because the pool ran dry) fails the repetition.
//!
//! # Rings
//! Every node uses shared-memory rings on its data links, the default, except in the
//! `.no_rings` series ([`PUBSUB_RTT_NO_RINGS`], [`PUBSUB_INLINE_NO_RINGS`],
//! [`PUBSUB_POOLED_NO_RINGS`]), which repeat the key rows of their ringed series (same sizes,
//! same counts) with `shared_memory_rings(false)` in every process: each record through the
//! link's socket, as before issue 13. The ratio of the two says what the rings bought. Every
//! role is told which (`--opt rings=on|off`, required) and reports the ring mappings in its
//! `/proc/self/maps` once its links carried messages, at an untimed point (the end of the
//! warm-up or of the run) while its peers are still up; the repetition fails unless every
//! process of a ringed series has at least one and every process of a `.no_rings` series none.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::harness::{Case, ChildCtx, ChildReport, Harness, Reports, RoleFn, Team, Wiring};
use super::measure::{Payload, RepValue, STAMPED_MIN, checksum, monotonic_ns};
use super::series::{
    Counts, DEEP_WINDOW, FRESH_4_COUNTS, FRESH_COUNTS, KIB4, KIB64, MIB1, MIB16, OneWayTimes,
    PACED_1KHZ_COUNTS, PACED_30HZ_COUNTS, PUBSUB_FRESH, PUBSUB_FRESH_4, PUBSUB_INLINE,
    PUBSUB_INLINE_4, PUBSUB_INLINE_DEEP, PUBSUB_INLINE_NO_RINGS, PUBSUB_PACED_1KHZ,
    PUBSUB_PACED_30HZ, PUBSUB_POOLED, PUBSUB_POOLED_4, PUBSUB_POOLED_NO_RINGS, PUBSUB_RTT,
    PUBSUB_RTT_NO_RINGS, PUBSUB_RTT_SLEEP, PUBSUB_RTT_SPIN, Series, Shape, expect_delivery, hz,
    paced_latency, read_exact_record, round_trip_latency, send_paced, throughput, time_round_trips,
    write_record,
};
use crate::pubsub::wait_subscribers;
use crate::{CliError, Result};
use ipc_driver_std::{
    DEFAULT_INLINE_MAX, Message, Node, Publisher, PublisherOptions, SendMode, Subscription,
    SubscriptionOptions,
};

/// 16 and 32 KiB: between the default inline threshold and 64 KiB, for the inline/pooled
/// crossover.
const KIB16: usize = 16 << 10;
const KIB32: usize = 32 << 10;

/// How long a child waits for a message, a peer in the view, or an acknowledgement before
/// it fails the repetition (the harness gives the whole repetition 120 s).
const WAIT: Duration = Duration::from_secs(60);

/// The topic of the throughput series.
const TOPIC: &str = "bench";

const RTT_COUNTS: &[Counts] = &[Counts::new(64, 10_000, 1_000)];
const INLINE_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 50_000, 2_000),
    Counts::new(KIB16, 20_000, 1_000),
    Counts::new(KIB32, 12_000, 500),
    Counts::new(KIB64, 8_192, 500),
];
const POOLED_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 50_000, 2_000),
    Counts::new(KIB16, 20_000, 1_000),
    Counts::new(KIB32, 12_000, 500),
    Counts::new(KIB64, 16_384, 500),
    Counts::new(MIB1, 2_048, 32),
    Counts::new(MIB16, 128, 4),
];
/// The key rows measured again without rings: the round trip, inline at the largest size a
/// ring carries inline, pooled small and large. The same counts as the ringed rows.
const RTT_NO_RINGS_COUNTS: &[Counts] = RTT_COUNTS;
const INLINE_NO_RINGS_COUNTS: &[Counts] = &[INLINE_COUNTS[0]];
const INLINE_DEEP_COUNTS: &[Counts] = &[INLINE_COUNTS[0]];
const POOLED_NO_RINGS_COUNTS: &[Counts] = &[POOLED_COUNTS[0], POOLED_COUNTS[4]];
const INLINE_4_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 10_000, 500),
    Counts::new(KIB16, 5_000, 250),
    Counts::new(KIB32, 4_000, 250),
    Counts::new(KIB64, 2_048, 125),
];
const POOLED_4_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 10_000, 500),
    Counts::new(KIB16, 5_000, 250),
    Counts::new(KIB32, 4_000, 250),
    Counts::new(KIB64, 4_096, 250),
    Counts::new(MIB1, 1_024, 32),
    Counts::new(MIB16, 64, 4),
];

/// The pub/sub series, in table order after the baselines.
pub(super) const SERIES: &[Series] = &[
    Series {
        id: PUBSUB_RTT,
        label: "pub/sub 64 B inline on `ping`, echoed on `pong` (std driver)",
        shape: Shape::RoundTrip,
        counts: RTT_COUNTS,
        rep: rtt,
    },
    Series {
        id: PUBSUB_RTT_SPIN,
        label: "pubsub.rtt with spinning subscriptions (spin 1 ms) at both ends",
        shape: Shape::RoundTrip,
        counts: RTT_COUNTS,
        rep: rtt_spin,
    },
    Series {
        id: PUBSUB_RTT_SLEEP,
        label: "pubsub.rtt with subscriptions that never poll (spin 0) at both ends",
        shape: Shape::RoundTrip,
        counts: RTT_COUNTS,
        rep: rtt_sleep,
    },
    Series {
        id: PUBSUB_RTT_NO_RINGS,
        label: "pubsub.rtt with shared-memory rings off: every record through the socket",
        shape: Shape::RoundTrip,
        counts: RTT_NO_RINGS_COUNTS,
        rep: rtt_no_rings,
    },
    Series {
        id: PUBSUB_INLINE,
        label: "pub/sub inline (loan = buffer, copied into the record), Block depth 8",
        shape: Shape::OneWay { receivers: 1 },
        counts: INLINE_COUNTS,
        rep: inline,
    },
    Series {
        id: PUBSUB_INLINE_NO_RINGS,
        label: "pubsub.inline with rings off (at 4 KiB, the most a ring carries inline)",
        shape: Shape::OneWay { receivers: 1 },
        counts: INLINE_NO_RINGS_COUNTS,
        rep: inline_no_rings,
    },
    Series {
        id: PUBSUB_INLINE_DEEP,
        label: "pubsub.inline at 4 KiB to a subscription 256 deep (Block depth 256)",
        shape: Shape::OneWay { receivers: 1 },
        counts: INLINE_DEEP_COUNTS,
        rep: inline_deep,
    },
    Series {
        id: PUBSUB_FRESH,
        label: "pub/sub fresh sealed memfd per message (loan = new memfd), Block depth 8",
        shape: Shape::OneWay { receivers: 1 },
        counts: FRESH_COUNTS,
        rep: fresh,
    },
    Series {
        id: PUBSUB_POOLED,
        label: "pub/sub pooled (loan = pool segment, written in place), Block depth 8",
        shape: Shape::OneWay { receivers: 1 },
        counts: POOLED_COUNTS,
        rep: pooled,
    },
    Series {
        id: PUBSUB_POOLED_NO_RINGS,
        label: "pubsub.pooled with rings off: notices and returns through the socket",
        shape: Shape::OneWay { receivers: 1 },
        counts: POOLED_NO_RINGS_COUNTS,
        rep: pooled_no_rings,
    },
    Series {
        id: PUBSUB_INLINE_4,
        label: "pub/sub inline, 4 subscriber processes (a copy per subscriber)",
        shape: Shape::OneWay { receivers: 4 },
        counts: INLINE_4_COUNTS,
        rep: inline,
    },
    Series {
        id: PUBSUB_FRESH_4,
        label: "pub/sub fresh memfd per message, 4 subscriber processes",
        shape: Shape::OneWay { receivers: 4 },
        counts: FRESH_4_COUNTS,
        rep: fresh,
    },
    Series {
        id: PUBSUB_POOLED_4,
        label: "pub/sub pooled loans, 4 subscriber processes",
        shape: Shape::OneWay { receivers: 4 },
        counts: POOLED_4_COUNTS,
        rep: pooled,
    },
    Series {
        id: PUBSUB_PACED_30HZ,
        label: "pub/sub at 30 msgs/s, default publisher (loan), Block depth 8, one-way latency",
        shape: Shape::Paced { hz: 30 },
        counts: PACED_30HZ_COUNTS,
        rep: paced,
    },
    Series {
        id: PUBSUB_PACED_1KHZ,
        label: "pub/sub at 1000 msgs/s, default publisher (loan), Block depth 8, one-way latency",
        shape: Shape::Paced { hz: 1000 },
        counts: PACED_1KHZ_COUNTS,
        rep: paced,
    },
];

/// The child roles of [`SERIES`].
pub(super) const ROLES: &[(&str, RoleFn)] = &[
    ("pubsub-ping", pubsub_ping),
    ("pubsub-echo", pubsub_echo),
    ("pubsub-send", pubsub_send),
    ("pubsub-recv", pubsub_recv),
    ("pubsub-paced-send", pubsub_paced_send),
    ("pubsub-paced-recv", pubsub_paced_recv),
];

// ---------------------------------------------------------------------------------------
// Repetitions (parent side)

/// Whether the nodes of a series carry their data links' messages through shared-memory
/// rings (`Node::builder(..).shared_memory_rings(..)`); the children get it as `--opt
/// rings=on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rings {
    On,
    Off,
}

impl Rings {
    const KEY: &'static str = "rings";

    /// The `--opt` pair that tells the children.
    fn opt(self) -> (&'static str, &'static str) {
        (
            Self::KEY,
            match self {
                Self::On => "on",
                Self::Off => "off",
            },
        )
    }

    /// What the parent told this child; every pub/sub role must be told.
    fn of(ctx: &ChildCtx) -> Result<Self> {
        match ctx.opt::<String>(Self::KEY)?.as_deref() {
            Some("on") => Ok(Self::On),
            Some("off") => Ok(Self::Off),
            other => Err(CliError::Failed(format!(
                "a pub/sub role needs --opt rings=on|off, got {other:?}"
            ))),
        }
    }
}

/// What a memfd ring region looks like in `/proc/self/maps` (`ipc-driver-core` names the
/// memfd `ipc-pubsub-ring`).
const RING_MAPPING: &str = "/memfd:ipc-pubsub-ring";

/// The ring regions mapped in this process now: one per data link that has a ring, at either
/// end.
fn ring_mappings() -> Result<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| CliError::Failed(format!("cannot read /proc/self/maps: {e}")))?;
    Ok(maps.lines().filter(|l| l.contains(RING_MAPPING)).count())
}

/// Every process of the team used rings as the series asked: at least one ring mapped at the
/// end of its run with [`Rings::On`], none with [`Rings::Off`].
fn expect_rings(r: &Reports, rings: Rings) -> Result<()> {
    let all = std::iter::once(("the sender".to_string(), &r.sender)).chain(
        r.receivers
            .iter()
            .enumerate()
            .map(|(i, rr)| (format!("receiver {i}"), rr)),
    );
    for (who, report) in all {
        let fine = match (rings, report.ring_mappings) {
            (_, None) => {
                return Err(CliError::Failed(format!(
                    "{who} reported no count of ring mappings"
                )));
            }
            (Rings::On, Some(n)) => n > 0,
            (Rings::Off, Some(n)) => n == 0,
        };
        if !fine {
            return Err(CliError::Failed(format!(
                "{who} had {} shared-memory ring(s) mapped at the end of its run with rings {}",
                report.ring_mappings.unwrap_or_default(),
                rings.opt().1
            )));
        }
    }
    Ok(())
}

fn rtt(h: &Harness, case: &Case) -> Result<RepValue> {
    round_trip(h, case, Rings::On)
}

fn rtt_no_rings(h: &Harness, case: &Case) -> Result<RepValue> {
    round_trip(h, case, Rings::Off)
}

/// How long the round trip's subscriptions spin in [`PUBSUB_RTT_SPIN`], in µs: longer than
/// a round trip, so that neither end ever sleeps while the other answers.
const RTT_SPIN_US: &str = "1000";

/// The `--opt` key of a subscription's spin, in µs (0: never poll; absent: the driver's
/// choice).
const SPIN_KEY: &str = "spin_us";

fn rtt_spin(h: &Harness, case: &Case) -> Result<RepValue> {
    round_trip_with(h, case, Rings::On, Some((SPIN_KEY, RTT_SPIN_US)))
}

fn rtt_sleep(h: &Harness, case: &Case) -> Result<RepValue> {
    round_trip_with(h, case, Rings::On, Some((SPIN_KEY, "0")))
}

fn round_trip(h: &Harness, case: &Case, rings: Rings) -> Result<RepValue> {
    round_trip_with(h, case, rings, None)
}

/// The round trip, the children told `rings` and `extra`.
fn round_trip_with(
    h: &Harness,
    case: &Case,
    rings: Rings,
    extra: Option<(&str, &str)>,
) -> Result<RepValue> {
    let opts: Vec<(&str, &str)> = std::iter::once(rings.opt()).chain(extra).collect();
    let r = h.run(&Team {
        sender: "pubsub-ping",
        receiver: "pubsub-echo",
        wiring: Wiring::SeqPacket,
        group: true,
        case: *case,
        opts: &opts,
    })?;
    let latency = round_trip_latency(&r, case)?;
    expect_rings(&r, rings)?;
    Ok(latency)
}

fn inline(h: &Harness, case: &Case) -> Result<RepValue> {
    one_way(h, case, "inline", Rings::On)
}

fn inline_no_rings(h: &Harness, case: &Case) -> Result<RepValue> {
    one_way(h, case, "inline", Rings::Off)
}

/// The `--opt` key of the receivers' subscription depth (absent: the case's `window`).
const DEPTH_KEY: &str = "depth";

fn inline_deep(h: &Harness, case: &Case) -> Result<RepValue> {
    let depth = DEEP_WINDOW.to_string();
    one_way_with(h, case, "inline", Rings::On, Some((DEPTH_KEY, &depth)))
}

fn fresh(h: &Harness, case: &Case) -> Result<RepValue> {
    one_way(h, case, "fresh", Rings::On)
}

fn pooled(h: &Harness, case: &Case) -> Result<RepValue> {
    one_way(h, case, "pooled", Rings::On)
}

fn pooled_no_rings(h: &Harness, case: &Case) -> Result<RepValue> {
    one_way(h, case, "pooled", Rings::Off)
}

fn one_way(h: &Harness, case: &Case, mode: &str, rings: Rings) -> Result<RepValue> {
    one_way_with(h, case, mode, rings, None)
}

/// The one-way series, the children told `mode`, `rings` and `extra`.
fn one_way_with(
    h: &Harness,
    case: &Case,
    mode: &str,
    rings: Rings,
    extra: Option<(&str, &str)>,
) -> Result<RepValue> {
    let opts: Vec<(&str, &str)> = [("mode", mode), rings.opt()]
        .into_iter()
        .chain(extra)
        .collect();
    let r = h.run(&Team {
        sender: "pubsub-send",
        receiver: "pubsub-recv",
        wiring: Wiring::SeqPacket,
        group: true,
        case: *case,
        opts: &opts,
    })?;
    expect_delivery(&r, case)?;
    expect_rings(&r, rings)?;
    throughput(&r, case)
}

fn paced(h: &Harness, case: &Case) -> Result<RepValue> {
    let rings = Rings::On;
    let r = h.run(&Team {
        sender: "pubsub-paced-send",
        receiver: "pubsub-paced-recv",
        wiring: Wiring::SeqPacket,
        group: true,
        case: *case,
        opts: &[rings.opt()],
    })?;
    let latency = paced_latency(&r, case)?;
    expect_rings(&r, rings)?;
    Ok(latency)
}

// ---------------------------------------------------------------------------------------
// Child roles

/// The send mode named by `--opt mode=...`, and its name as [`Message::via`] gives it.
fn mode(ctx: &ChildCtx) -> Result<(SendMode, &'static str)> {
    match ctx.opt::<String>("mode")?.as_deref() {
        Some("inline") => Ok((SendMode::Inline, "inline")),
        Some("fresh") => Ok((SendMode::Fresh, "fresh")),
        Some("pooled") => Ok((SendMode::Pooled, "pooled")),
        other => Err(CliError::Failed(format!("--opt mode={other:?}"))),
    }
}

/// Joins the team's group as a node named `name`, with rings on or off as the parent said.
fn join(ctx: &ChildCtx, name: &str) -> Result<Node> {
    let rings = Rings::of(ctx)? == Rings::On;
    Ok(Node::builder(name)
        .group(&ctx.group)
        .shared_memory_rings(rings)
        .join()?)
}

/// A publisher of `topic` that sends every payload inline (the round trip's 64 B).
fn inline_publisher(node: &Node, topic: &str) -> Result<Publisher> {
    let options = PublisherOptions {
        mode: SendMode::Inline,
        ..PublisherOptions::default()
    };
    Ok(node.publisher_with(topic, "application/octet-stream", options)?)
}

/// A lossless subscription: publishers wait for room (up to [`WAIT`]).
fn block(node: &Node, topic: &str, depth: u32) -> Result<Subscription> {
    block_spinning(node, topic, depth, None)
}

/// [`block`], with `spin` ([`SubscriptionOptions::spin`]: `None` leaves it to the driver).
fn block_spinning(
    node: &Node,
    topic: &str,
    depth: u32,
    spin: Option<Duration>,
) -> Result<Subscription> {
    let options = SubscriptionOptions {
        depth,
        spin,
        ..SubscriptionOptions::block(WAIT)
    };
    Ok(node.subscription(topic, options)?)
}

/// The spin the parent asked for (`--opt spin_us=N`, 0 never polls; none: the driver's
/// choice).
fn spin_of(ctx: &ChildCtx) -> Result<Option<Duration>> {
    Ok(ctx.opt::<u64>(SPIN_KEY)?.map(Duration::from_micros))
}

fn next(sub: &Subscription, what: &str) -> Result<Message> {
    sub.recv_timeout(WAIT)
        .map_err(|e| CliError::Failed(format!("no {what}: {e}")))
}

/// Waits for the 1-byte acknowledgement of every receiver.
fn acks(socks: &[OwnedFd]) -> Result<()> {
    let mut ack = [0u8; 1];
    for (i, s) in socks.iter().enumerate() {
        if !read_exact_record(s, &mut ack)? {
            return Err(CliError::Failed(format!("receiver {i} hung up")));
        }
    }
    Ok(())
}

/// Blocks until the other end closes the socket (the repetition is over for it).
fn until_closed(sock: &OwnedFd) -> Result<()> {
    let mut byte = [0u8; 1];
    while read_exact_record(sock, &mut byte)? {}
    Ok(())
}

/// [`PUBSUB_RTT`], initiator: publishes on `ping`, waits for the reply on `pong`.
fn pubsub_ping(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let node = join(ctx, "bench-ping")?;
    let pong = block_spinning(&node, "pong", c.window, spin_of(ctx)?)?;
    let ping = inline_publisher(&node, "ping")?;
    wait_subscribers(&node, "ping", 1, WAIT)?;
    let payload = Payload::new(c.size);
    let mut msg = vec![0u8; c.size];
    let mut sum = 0u64;
    let report = time_round_trips(&c, |seq| {
        payload.write_to(&mut msg, seq);
        ping.publish(&msg)?;
        let back = next(&pong, "reply")?;
        if checksum(&back) != payload.sum(seq) {
            return Err(CliError::Failed(format!("reply {seq} differs")));
        }
        sum = sum.wrapping_add(payload.sum(seq));
        Ok(())
    })?;
    // The echo is still up: it waits for this socket to close.
    let rings = ring_mappings()?;
    drop(sock);
    Ok(ChildReport {
        checksum: Some(sum),
        ring_mappings: Some(rings),
        ..report
    })
}

/// [`PUBSUB_RTT`], echo: every message on `ping` back on `pong`, until the initiator is done.
fn pubsub_echo(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let node = join(ctx, "bench-echo")?;
    let ping = block_spinning(&node, "ping", c.window, spin_of(ctx)?)?;
    let pong = inline_publisher(&node, "pong")?;
    wait_subscribers(&node, "pong", 1, WAIT)?;
    let (mut msgs, mut rings) = (0, None);
    while msgs < c.warmup + c.msgs {
        let m = next(&ping, "ping")?;
        if msgs + 1 == c.warmup.max(1) {
            // Untimed (the last warm-up round trip), and the initiator waits for this reply.
            rings = Some(ring_mappings()?);
        }
        pong.publish(&m)?;
        msgs += 1;
    }
    // Leaving before the initiator has the last reply could lose it.
    until_closed(&sock)?;
    Ok(ChildReport {
        msgs,
        ring_mappings: rings,
        ..ChildReport::default()
    })
}

/// One-way series, publisher: a loan per message, written in place.
fn pubsub_send(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let socks = std::mem::take(&mut ctx.fds);
    let c = ctx.case;
    if socks.len() != c.receivers {
        return Err(CliError::Failed(format!(
            "{} sockets for {} receivers",
            socks.len(),
            c.receivers
        )));
    }
    let (mode, _) = mode(ctx)?;
    let node = join(ctx, "bench-pub")?;
    let options = PublisherOptions {
        mode,
        inline_max: c.size.max(DEFAULT_INLINE_MAX),
        ..PublisherOptions::default()
    };
    let publisher = node.publisher_with(TOPIC, "application/octet-stream", options)?;
    wait_subscribers(&node, TOPIC, c.receivers, WAIT)?;
    let payload = Payload::new(c.size);
    let send = |publisher: &Publisher, seq: u64| -> Result<u64> {
        let mut loan = publisher.loan(c.size)?;
        payload.write_to(&mut loan, seq);
        publisher.send(loan)?;
        Ok(payload.sum(seq))
    };
    let mut sum = 0u64;
    for seq in 0..c.warmup {
        sum = sum.wrapping_add(send(&publisher, seq)?);
    }
    acks(&socks)?;
    let started = Instant::now();
    for seq in c.warmup..c.warmup + c.msgs {
        sum = sum.wrapping_add(send(&publisher, seq)?);
    }
    acks(&socks)?;
    let secs = started.elapsed().as_secs_f64();
    // The receivers are still up: they wait for their sockets to close.
    let rings = ring_mappings()?;
    Ok(ChildReport {
        msgs: c.warmup + c.msgs,
        timed: c.msgs,
        secs: Some(secs),
        checksum: Some(sum),
        ring_mappings: Some(rings),
        ..ChildReport::default()
    })
}

/// One-way series, subscriber: checks and checksums every message in place, acknowledges the
/// end of the warm-up and of the run.
fn pubsub_recv(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let (_, via) = mode(ctx)?;
    let node = join(ctx, &format!("bench-sub{}", ctx.index))?;
    let depth = ctx.opt::<u32>(DEPTH_KEY)?.unwrap_or(c.window);
    let sub = block(&node, TOPIC, depth)?;
    let all = c.warmup + c.msgs;
    let (mut msgs, mut sum, mut rings) = (0u64, 0u64, None);
    if c.warmup == 0 {
        write_record(&sock, &[1])?;
    }
    while msgs < all {
        let m = next(&sub, "message")?;
        if m.via().name() != via || m.len() != c.size {
            return Err(CliError::Failed(format!(
                "receiver {}: message {} came {} with {} B, expected {via} with {} B",
                ctx.index,
                m.seq(),
                m.via(),
                m.len(),
                c.size
            )));
        }
        sum = sum.wrapping_add(checksum(&m));
        drop(m);
        msgs += 1;
        if msgs == c.warmup.max(1) {
            // Before the warm-up's acknowledgement: untimed, and the sender waits for it.
            rings = Some(ring_mappings()?);
        }
        if msgs == c.warmup || msgs == all {
            write_record(&sock, &[1])?;
        }
    }
    until_closed(&sock)?;
    Ok(ChildReport {
        msgs,
        checksum: Some(sum),
        ring_mappings: rings,
        ..ChildReport::default()
    })
}

/// Paced series, publisher: a publisher with the default options, as an application opens
/// it; per message, on time, a loan written in place (with the time taken just before) and
/// sent. It leaves once the subscriber says it has every message.
fn pubsub_paced_send(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let hz = hz(ctx)?;
    let socks = std::mem::take(&mut ctx.fds);
    let c = ctx.case;
    let node = join(ctx, "bench-paced-pub")?;
    let publisher = node.publisher(TOPIC, "application/octet-stream")?;
    wait_subscribers(&node, TOPIC, c.receivers, WAIT)?;
    let size = c.size.max(STAMPED_MIN);
    let payload = Payload::new(size);
    let report = send_paced(&c, hz, |seq, stamp| {
        let mut loan = publisher.loan(size)?;
        payload.write_stamped(&mut loan, seq, stamp);
        publisher.send(loan)?;
        Ok(payload.sum_stamped(seq, stamp))
    })?;
    acks(&socks)?;
    // The receiver is still up: it waits for its socket to close.
    Ok(ChildReport {
        ring_mappings: Some(ring_mappings()?),
        ..report
    })
}

/// Paced series, subscriber: a `Block` subscription; each message's latency is taken as soon
/// as `recv` returns it, then it is checked and checksummed in place.
fn pubsub_paced_recv(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let node = join(ctx, &format!("bench-paced-sub{}", ctx.index))?;
    let sub = block(&node, TOPIC, c.window)?;
    let mut times = OneWayTimes::new(&c)?;
    while times.count() < c.warmup + c.msgs {
        let m = next(&sub, "message")?;
        times.record(&m, monotonic_ns())?;
    }
    // After the last sample, and the sender waits for the acknowledgement.
    let rings = ring_mappings()?;
    write_record(&sock, &[1])?;
    until_closed(&sock)?;
    Ok(ChildReport {
        ring_mappings: Some(rings),
        ..times.report()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rings: Option<usize>) -> ChildReport {
        ChildReport {
            ring_mappings: rings,
            ..ChildReport::default()
        }
    }

    fn team(sender: Option<usize>, receivers: &[Option<usize>]) -> Reports {
        Reports {
            sender: report(sender),
            receivers: receivers.iter().map(|&r| report(r)).collect(),
        }
    }

    #[test]
    fn the_children_are_told_about_rings_in_words() {
        assert_eq!(Rings::On.opt(), ("rings", "on"));
        assert_eq!(Rings::Off.opt(), ("rings", "off"));
    }

    #[test]
    fn a_repetition_fails_unless_every_process_used_rings_as_asked() {
        assert!(expect_rings(&team(Some(2), &[Some(1), Some(1)]), Rings::On).is_ok());
        assert!(expect_rings(&team(Some(0), &[Some(0)]), Rings::Off).is_ok());
        let err = |r: &Reports, rings| match expect_rings(r, rings) {
            Err(CliError::Failed(e)) => e,
            other => panic!("{other:?}"),
        };
        let e = err(&team(Some(0), &[Some(1), Some(0)]), Rings::Off);
        assert!(
            e.starts_with("receiver 0 had 1 shared-memory ring(s)"),
            "{e}"
        );
        assert!(e.ends_with("with rings off"), "{e}");
        let e = err(&team(Some(1), &[Some(1), Some(0)]), Rings::On);
        assert!(e.starts_with("receiver 1 had 0 "), "{e}");
        let e = err(&team(None, &[Some(0)]), Rings::Off);
        assert_eq!(e, "the sender reported no count of ring mappings");
    }
}
