//! The vocabulary of `bench payload`, shared by the [baselines](super::baselines), our own
//! [pub/sub series](super::pubsub) and the [registry](super::payload) that runs and compares
//! them: what a series is ([`Series`], [`Shape`], [`Counts`]), the ids reserved for ours, the
//! message sizes, the checks every repetition makes of its children's reports, and the pieces
//! both sides of a paced series use (the [`Pacer`], the receiver's [`OneWayTimes`]). It
//! imports only the [`harness`](super::harness) and [`measure`](super::measure), so that none
//! of the three imports another's vocabulary.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use serde::Serialize;

use super::harness::{Case, ChildCtx, ChildReport, Harness, Reports, Team};
use super::measure::{LatencySummary, RepValue, checksum, monotonic_ns, stamps};
use crate::{CliError, Result};

/// What a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Shape {
    /// Round trips from the sender to one receiver and back; µs, lower is better.
    RoundTrip,
    /// Messages from the sender to `receivers` receivers; payload GB/s, higher is better.
    OneWay { receivers: usize },
    /// Messages at `hz` per second from the sender to one receiver, as an application at a
    /// frame or control rate sends them; the one-way latency of each, µs, lower is better.
    Paced { hz: u32 },
}

/// Messages per repetition at one size: for a full run, and for `--quick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) size: usize,
    pub(super) full: u64,
    pub(super) quick: u64,
}

impl Counts {
    pub(super) const fn new(size: usize, full: u64, quick: u64) -> Self {
        Self { size, full, quick }
    }
}

/// Runs one repetition of a series at one size (see [`Harness::run`]).
pub(super) type RepFn = fn(&Harness, &Case) -> Result<RepValue>;

/// A measured series: a baseline or one of ours.
#[derive(Debug)]
pub(super) struct Series {
    /// Stable id: table rows, ratios and JSON use it.
    pub(super) id: &'static str,
    /// One line for the legend.
    pub(super) label: &'static str,
    pub(super) shape: Shape,
    /// The sizes it is measured at, with their message counts.
    pub(super) counts: &'static [Counts],
    pub(super) rep: RepFn,
}

/// The 64 B round trip through pub/sub (publish, a subscriber's reply), against
/// [`SEQPACKET_PINGPONG`](super::baselines::SEQPACKET_PINGPONG).
pub(super) const PUBSUB_RTT: &str = "pubsub.rtt";
/// One-way throughput with the payload inline in the socket records.
pub(super) const PUBSUB_INLINE: &str = "pubsub.inline";
/// One-way throughput with a fresh sealed memfd per message.
pub(super) const PUBSUB_FRESH: &str = "pubsub.fresh";
/// One-way throughput through the reused segment pool.
pub(super) const PUBSUB_POOLED: &str = "pubsub.pooled";
/// [`PUBSUB_INLINE`] to 4 subscribers (for the inline threshold under fan-out).
pub(super) const PUBSUB_INLINE_4: &str = "pubsub.inline.4recv";
/// [`PUBSUB_FRESH`] to 4 subscribers.
pub(super) const PUBSUB_FRESH_4: &str = "pubsub.fresh.4recv";
/// [`PUBSUB_POOLED`] to 4 subscribers.
pub(super) const PUBSUB_POOLED_4: &str = "pubsub.pooled.4recv";

/// [`PUBSUB_RTT`] with spinning subscriptions (`SubscriptionOptions::spin`) at both ends,
/// against [`SHM_SPIN_PINGPONG`](super::baselines::SHM_SPIN_PINGPONG).
pub(super) const PUBSUB_RTT_SPIN: &str = "pubsub.rtt_spin";

/// [`PUBSUB_RTT`] with subscriptions that never poll (`SubscriptionOptions::spin` zero) at
/// both ends: every message wakes its receiver, as the raw baselines' blocking reads do.
pub(super) const PUBSUB_RTT_SLEEP: &str = "pubsub.rtt_sleep";

/// [`PUBSUB_RTT`] with shared-memory rings off (`Node::builder(..).shared_memory_rings(false)`
/// in both processes): every record through the data link's socket, as before issue 13.
pub(super) const PUBSUB_RTT_NO_RINGS: &str = "pubsub.rtt.no_rings";
/// [`PUBSUB_INLINE`] with rings off, at the sizes a ring carries inline (up to 4 KiB).
pub(super) const PUBSUB_INLINE_NO_RINGS: &str = "pubsub.inline.no_rings";
/// [`PUBSUB_POOLED`] with rings off: pool notices and returns through the socket.
pub(super) const PUBSUB_POOLED_NO_RINGS: &str = "pubsub.pooled.no_rings";

/// [`PUBSUB_INLINE`] at 4 KiB to a subscription 256 deep ([`DEEP_WINDOW`]): the queue holds a
/// ring's worth of payloads and more, whose buffers the subscriber's data plane must reuse
/// all the same (with too few watched it allocated one per message, and faulted pages in).
pub(super) const PUBSUB_INLINE_DEEP: &str = "pubsub.inline.deep";
/// The depth of [`PUBSUB_INLINE_DEEP`]'s subscription.
pub(super) const DEEP_WINDOW: u32 = 256;

/// One-way latency at 30 messages per second, as [`PACED_RAW_30HZ`](super::baselines::PACED_RAW_30HZ)
/// measures it for the raw socket.
pub(super) const PUBSUB_PACED_30HZ: &str = "pubsub.paced.30hz";
/// [`PUBSUB_PACED_30HZ`] at 1000 messages per second.
pub(super) const PUBSUB_PACED_1KHZ: &str = "pubsub.paced.1khz";

/// The message sizes of the throughput measurements.
pub(super) const KIB4: usize = 4 << 10;
pub(super) const KIB64: usize = 64 << 10;
pub(super) const MIB1: usize = 1 << 20;
pub(super) const MIB16: usize = 16 << 20;

/// Messages per repetition of a fresh memfd per message, to 1 and to 4 receivers: the
/// [`FRESH_MEMFD`](super::baselines::FRESH_MEMFD) baselines and `pubsub.fresh` use the same.
pub(super) const FRESH_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 10_000, 500),
    Counts::new(KIB64, 4_096, 128),
    Counts::new(MIB1, 256, 16),
    Counts::new(MIB16, 24, 2),
];
pub(super) const FRESH_4_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 5_000, 250),
    Counts::new(KIB64, 2_048, 64),
    Counts::new(MIB1, 256, 8),
    Counts::new(MIB16, 16, 2),
];

/// Messages per repetition of the paced series, raw and ours: a full run's 150 at 30 Hz take
/// 5 s, its 2,000 at 1 kHz 2 s (warm-up aside).
pub(super) const PACED_30HZ_COUNTS: &[Counts] =
    &[Counts::new(64, 150, 15), Counts::new(MIB1, 150, 15)];
pub(super) const PACED_1KHZ_COUNTS: &[Counts] =
    &[Counts::new(64, 2_000, 200), Counts::new(MIB1, 2_000, 200)];

// ---------------------------------------------------------------------------------------
// Paced series

/// The rate of a [`Shape::Paced`] series, as its children get it (`--hz N`).
pub(super) fn hz(ctx: &ChildCtx) -> Result<u32> {
    match ctx.case.hz {
        0 => Err(CliError::Failed("a paced role needs --hz N (N > 0)".into())),
        hz => Ok(hz),
    }
}

/// Sends at a fixed rate: message `i` is due `i` periods after the first, whatever the
/// previous ones cost, so a late message does not delay the rest (as a frame clock would).
pub(super) struct Pacer {
    start: Instant,
    period: Duration,
}

impl Pacer {
    pub(super) fn new(hz: u32) -> Self {
        Self {
            start: Instant::now(),
            period: Duration::from_secs(1) / hz,
        }
    }

    /// Sleeps until message `i` is due.
    pub(super) fn wait(&self, i: u64) {
        let periods = u32::try_from(i).unwrap_or(u32::MAX);
        let due = self.start + self.period * periods;
        if let Some(left) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        }
    }
}

/// What a paced receiver collects: the one-way latency of every timed message (from the
/// sender's clock just before it wrote the payload to the receiver's just after it could read
/// all of it, both [`monotonic_ns`]), the checksum of everything read, and that the messages
/// came in order, each once.
pub(super) struct OneWayTimes {
    warmup: u64,
    next: u64,
    sum: u64,
    samples: Vec<u64>,
}

impl OneWayTimes {
    pub(super) fn new(case: &Case) -> Result<Self> {
        Ok(Self {
            warmup: case.warmup,
            next: 0,
            sum: 0,
            samples: Vec::with_capacity(to_usize(case.msgs)?),
        })
    }

    /// Records message `msg`, received at `now` ([`monotonic_ns`]).
    pub(super) fn record(&mut self, msg: &[u8], now: u64) -> Result<()> {
        let (seq, stamp) = stamps(msg).ok_or_else(|| {
            CliError::Failed(format!("a {} B message has no time stamp", msg.len()))
        })?;
        if seq != self.next {
            return Err(CliError::Failed(format!(
                "message {seq} arrived, expected {}",
                self.next
            )));
        }
        if seq >= self.warmup {
            self.samples.push(now.saturating_sub(stamp));
        }
        self.sum = self.sum.wrapping_add(checksum(msg));
        self.next += 1;
        Ok(())
    }

    /// Messages recorded so far.
    pub(super) fn count(&self) -> u64 {
        self.next
    }

    /// The receiver's report.
    pub(super) fn report(mut self) -> ChildReport {
        ChildReport {
            msgs: self.next,
            timed: self.samples.len() as u64,
            latency: LatencySummary::of_nanos(&mut self.samples),
            checksum: Some(self.sum),
            ..ChildReport::default()
        }
    }
}

/// The sender's side of a paced series: `send(seq, stamp)` writes and sends message `seq`
/// stamped with `stamp` and returns its checksum, once per period, warm-up first.
pub(super) fn send_paced(
    case: &Case,
    hz: u32,
    mut send: impl FnMut(u64, u64) -> Result<u64>,
) -> Result<ChildReport> {
    let pacer = Pacer::new(hz);
    let mut sum = 0u64;
    for seq in 0..case.warmup + case.msgs {
        pacer.wait(seq);
        sum = sum.wrapping_add(send(seq, monotonic_ns())?);
    }
    Ok(ChildReport {
        msgs: case.warmup + case.msgs,
        timed: case.msgs,
        checksum: Some(sum),
        ..ChildReport::default()
    })
}

/// One repetition of a paced series: every message delivered intact and in order, and the
/// receiver's one-way latencies.
pub(super) fn paced_latency(r: &Reports, case: &Case) -> Result<RepValue> {
    expect_delivery(r, case)?;
    let latency = r
        .receivers
        .first()
        .and_then(|rr| rr.latency)
        .ok_or_else(|| CliError::Failed("the receiver reported no latency".into()))?;
    Ok(RepValue::latency(&latency))
}

// ---------------------------------------------------------------------------------------
// Checks of the children's reports

/// The error for a figure the sender did not report.
pub(super) fn missing(what: &str) -> CliError {
    CliError::Failed(format!("the sender reported no {what}"))
}

/// A round-trip repetition: runs the team, checks that every process handled every round
/// trip, and takes the initiator's latencies.
pub(super) fn round_trips(h: &Harness, team: &Team<'_>) -> Result<RepValue> {
    round_trip_latency(&h.run(team)?, &team.case)
}

/// The reports of a round-trip repetition: every process handled every round trip; the
/// initiator's latencies.
pub(super) fn round_trip_latency(r: &Reports, case: &Case) -> Result<RepValue> {
    expect_counts(r, case)?;
    let latency = r.sender.latency.ok_or_else(|| missing("latency"))?;
    Ok(RepValue::latency(&latency))
}

/// An initiator's loop: `round_trip(seq)` for the warm-up, then timed for every message of
/// the case; the report has each timed round trip's latency (and no checksum).
pub(super) fn time_round_trips(
    c: &Case,
    mut round_trip: impl FnMut(u64) -> Result<()>,
) -> Result<ChildReport> {
    for seq in 0..c.warmup {
        round_trip(seq)?;
    }
    let mut samples = Vec::with_capacity(to_usize(c.msgs)?);
    for seq in c.warmup..c.warmup + c.msgs {
        let t = Instant::now();
        round_trip(seq)?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    Ok(ChildReport {
        msgs: c.warmup + c.msgs,
        timed: c.msgs,
        latency: LatencySummary::of_nanos(&mut samples),
        ..ChildReport::default()
    })
}

pub(super) fn throughput(r: &Reports, case: &Case) -> Result<RepValue> {
    let secs = r.sender.secs.ok_or_else(|| missing("time"))?;
    Ok(RepValue::throughput(case.size, r.sender.timed, secs))
}

/// Every process handled every message.
pub(super) fn expect_counts(r: &Reports, case: &Case) -> Result<()> {
    let all = case.warmup + case.msgs;
    if r.sender.msgs != all || r.sender.timed != case.msgs {
        return Err(CliError::Failed(format!(
            "the sender handled {} messages ({} timed), expected {all} ({})",
            r.sender.msgs, r.sender.timed, case.msgs
        )));
    }
    if let Some((i, rr)) = r
        .receivers
        .iter()
        .enumerate()
        .find(|(_, rr)| rr.msgs != all)
    {
        return Err(CliError::Failed(format!(
            "receiver {i} handled {} messages, expected {all}",
            rr.msgs
        )));
    }
    Ok(())
}

/// [`expect_counts`], and every receiver read exactly the bytes the sender sent.
pub(super) fn expect_delivery(r: &Reports, case: &Case) -> Result<()> {
    expect_counts(r, case)?;
    let sent = r.sender.checksum.ok_or_else(|| missing("checksum"))?;
    match r.receivers.iter().position(|rr| rr.checksum != Some(sent)) {
        Some(i) => Err(CliError::Failed(format!(
            "receiver {i} read checksum {:?}, the sender sent {sent}",
            r.receivers[i].checksum
        ))),
        None => Ok(()),
    }
}

/// `v` as a `usize`, or an error.
pub(super) fn to_usize(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| CliError::Failed(format!("{v} does not fit usize")))
}

// ---------------------------------------------------------------------------------------
// Records on the children's socketpairs

/// Reads one record of exactly `buf.len()` bytes; `false` at end of stream.
pub(super) fn read_exact_record(fd: &OwnedFd, buf: &mut [u8]) -> Result<bool> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(0) => return Ok(false),
            Ok(n) if n == buf.len() => return Ok(true),
            Ok(n) => {
                return Err(CliError::Failed(format!(
                    "a {n} B record, expected {}",
                    buf.len()
                )));
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e).into()),
        }
    }
}

/// Writes one record of `buf`, whole.
pub(super) fn write_record(fd: &OwnedFd, buf: &[u8]) -> Result<()> {
    loop {
        match nix::unistd::write(fd, buf) {
            Ok(n) if n == buf.len() => return Ok(()),
            Ok(n) => return Err(CliError::Failed(format!("wrote {n} of {} B", buf.len()))),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e).into()),
        }
    }
}
