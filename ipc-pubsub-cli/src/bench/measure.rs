//! The numbers of `bench payload`: payloads whose checksums prove what arrived, the machine's
//! CPU load around a run, and the statistics over repetitions. Nothing here starts a process
//! or touches a socket: the children of the [`harness`](super::harness) and the report of
//! [`payload`](super::payload) compute with it.
//!
//! # Statistics
//! Each repetition yields one [`RepValue`]: for a round trip the median of its samples (and
//! its p99), for throughput the whole run's rate. A [`Measurement`] over the repetitions
//! reports the **median of the per-rep values**, their **min-max range**, and for round
//! trips the **median of the per-rep p99s**, as `BENCH.md` does. Medians of an even count
//! are the mean of the two middle values; percentiles are nearest-rank.

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------
// Payloads

/// [`checksum`] of `bytes`: the wrapping sum of its little-endian `u64` words, the last
/// partial word zero-padded. It reads every byte; the compiler vectorises it (about 100 GB/s
/// on L1/L2-resident data on the dev VM, as BENCH.md's §7a checksum).
pub(super) fn checksum(bytes: &[u8]) -> u64 {
    let (words, tail) = bytes.as_chunks::<8>();
    let mut sum = 0u64;
    for word in words {
        sum = sum.wrapping_add(u64::from_le_bytes(*word));
    }
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    sum.wrapping_add(u64::from_le_bytes(last))
}

/// Reads one byte of every 4 KiB page of `bytes`, so that every page is mapped (what
/// `MAP_POPULATE` would have done) without reading everything.
pub(super) fn touch_pages(bytes: &[u8]) {
    for i in (0..bytes.len()).step_by(4096) {
        std::hint::black_box(bytes[i]);
    }
}

/// A message payload: fixed bytes whose first word is replaced by the message's sequence
/// number, so that a stale or misplaced message changes the receivers' checksum.
#[derive(Debug)]
pub(super) struct Payload {
    bytes: Vec<u8>,
    /// [`checksum`] of the bytes with the first word zeroed.
    base: u64,
}

impl Payload {
    /// `size` bytes of a fixed pattern, written (so pre-touched).
    pub(super) fn new(size: usize) -> Self {
        // A 256-byte pattern (31 is odd, so `i * 31 + 7` hits every byte value), repeated.
        let pattern: Vec<u8> = (0..=255u8)
            .map(|i| i.wrapping_mul(31).wrapping_add(7))
            .collect();
        let mut bytes = Vec::with_capacity(size);
        while bytes.len() < size {
            let n = (size - bytes.len()).min(pattern.len());
            bytes.extend_from_slice(&pattern[..n]);
        }
        let stamp = bytes.len().min(8);
        bytes[..stamp].fill(0);
        let base = checksum(&bytes);
        Self { bytes, base }
    }

    /// Copies the payload of message `seq` into `dst`, which must be as long.
    pub(super) fn write_to(&self, dst: &mut [u8], seq: u64) {
        dst.copy_from_slice(&self.bytes);
        if dst.len() >= 8 {
            dst[..8].copy_from_slice(&seq.to_le_bytes());
        }
    }

    /// [`checksum`] of message `seq`.
    pub(super) fn sum(&self, seq: u64) -> u64 {
        if self.bytes.len() >= 8 {
            self.base.wrapping_add(seq)
        } else {
            self.base
        }
    }

    /// The bytes of every message (first word zero).
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// [`write_to`](Self::write_to) for a message that carries its send time: `stamp`
    /// replaces the second word. `dst` must be at least [`STAMPED_MIN`] bytes long.
    pub(super) fn write_stamped(&self, dst: &mut [u8], seq: u64, stamp: u64) {
        self.write_to(dst, seq);
        dst[8..16].copy_from_slice(&stamp.to_le_bytes());
    }

    /// [`checksum`] of message `seq` written with [`write_stamped`](Self::write_stamped).
    pub(super) fn sum_stamped(&self, seq: u64, stamp: u64) -> u64 {
        let replaced = self.bytes.get(8..16).map_or(0, |w| {
            u64::from_le_bytes(w.try_into().expect("an 8-byte slice"))
        });
        self.sum(seq).wrapping_sub(replaced).wrapping_add(stamp)
    }
}

/// The shortest message that [`Payload::write_stamped`] can stamp.
pub(super) const STAMPED_MIN: usize = 16;

/// The sequence number and send time of a message written with [`Payload::write_stamped`].
pub(super) fn stamps(msg: &[u8]) -> Option<(u64, u64)> {
    let word = |at: usize| Some(u64::from_le_bytes(msg.get(at..at + 8)?.try_into().ok()?));
    Some((word(0)?, word(8)?))
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the machine, so a time
/// stamped by a sender can be subtracted from a receiver's (which [`Instant`] cannot do, as
/// it does not expose its value).
///
/// [`Instant`]: std::time::Instant
pub(super) fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    // Non-negative: the monotonic clock counts from boot.
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

// ---------------------------------------------------------------------------------------
// Machine load

/// CPU time used so far: by the whole machine (`/proc/stat`, all CPUs, steal included), and
/// by this process and its reaped children (`getrusage`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CpuSample {
    /// Time of all CPUs, busy or not.
    total: f64,
    /// Busy time of all CPUs: everything but idle and iowait.
    busy: f64,
    /// This process and the children it has reaped, user + system.
    ours: f64,
}

impl CpuSample {
    /// Now; `None` where `/proc/stat` or `getrusage` are unavailable.
    pub(super) fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        Self::parse(&stat, own_cpu_seconds()?)
    }

    fn parse(stat: &str, ours: f64) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8) // user nice system idle iowait irq softirq steal (guest is in user)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&hz| hz > 0)
            .unwrap_or(100) as f64;
        let total: u64 = ticks.iter().sum();
        let idle = ticks.get(3)? + ticks.get(4)?;
        Some(Self {
            total: total as f64 / hz,
            busy: total.saturating_sub(idle) as f64 / hz,
            ours,
        })
    }

    /// Share of all CPUs' time that was busy from `self` to `later`, in percent.
    pub(super) fn busy_percent(&self, later: &Self) -> Option<f64> {
        let total = later.total - self.total;
        (total > 0.0).then(|| (100.0 * (later.busy - self.busy) / total).clamp(0.0, 100.0))
    }

    /// Share of all CPUs' time that others (other processes, the host's steal) used from
    /// `self` to `later`, in percent: busy time minus ours. Ours is only complete once every
    /// child started in between has been reaped.
    pub(super) fn others_percent(&self, later: &Self) -> Option<f64> {
        let total = later.total - self.total;
        let others = (later.busy - self.busy) - (later.ours - self.ours);
        (total > 0.0).then(|| (100.0 * others / total).clamp(0.0, 100.0))
    }
}

/// User + system CPU time of this process and its reaped children, in seconds.
fn own_cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN]
        .into_iter()
        .map(|who| {
            getrusage(who)
                .ok()
                .map(|u| secs(u.user_time()) + secs(u.system_time()))
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Statistics

/// The median: the middle value, or the mean of the two middle ones; NaN for no values.
pub(super) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The nearest-rank `p`-th percentile of sorted values: the smallest value with at least
/// `p` % of the values at or below it. NaN for no values.
pub(super) fn nearest_rank<T: Copy + Into<f64>>(sorted: &[T], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    // The epsilon absorbs the rounding of `p` (99.9 / 100 * 1000 is 999.0000000000001).
    let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, n) - 1].into()
}

/// The round-trip times of one repetition, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct LatencySummary {
    pub(super) samples: u64,
    pub(super) median_us: f64,
    pub(super) p99_us: f64,
    pub(super) p999_us: f64,
    pub(super) min_us: f64,
    pub(super) max_us: f64,
}

impl LatencySummary {
    /// Summarises per-sample times in nanoseconds (sorting them); `None` for no samples.
    pub(super) fn of_nanos(samples: &mut [u64]) -> Option<Self> {
        samples.sort_unstable();
        let us: Vec<f64> = samples.iter().map(|&ns| ns as f64 / 1000.0).collect();
        Some(Self {
            samples: samples.len() as u64,
            median_us: median(&us),
            p99_us: nearest_rank(&us, 99.0),
            p999_us: nearest_rank(&us, 99.9),
            min_us: *us.first()?,
            max_us: *us.last()?,
        })
    }
}

/// What a measurement's figures mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) enum Unit {
    /// Microseconds per sample (a round trip, or a one-way latency): lower is better.
    #[serde(rename = "us")]
    Micros,
    /// Payload gigabytes (10^9 bytes) per second: higher is better.
    #[serde(rename = "GB/s")]
    GigabytesPerSecond,
}

/// One repetition's figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct RepValue {
    /// Round trip: the median sample (µs); throughput: the whole timed run's rate (GB/s).
    pub(super) value: f64,
    /// Round trip: the p99 sample (µs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) p99: Option<f64>,
    /// The unit of both.
    #[serde(skip)]
    pub(super) unit: Unit,
}

impl RepValue {
    /// A latency repetition: round trips, or one-way times.
    pub(super) fn latency(l: &LatencySummary) -> Self {
        Self {
            value: l.median_us,
            p99: Some(l.p99_us),
            unit: Unit::Micros,
        }
    }

    /// A throughput repetition: `msgs` messages of `size` bytes in `secs` seconds.
    pub(super) fn throughput(size: usize, msgs: u64, secs: f64) -> Self {
        Self {
            value: size as f64 * msgs as f64 / secs / 1e9,
            p99: None,
            unit: Unit::GigabytesPerSecond,
        }
    }
}

/// A measured series at one size, over its repetitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Measurement {
    /// The series' id (`fresh_memfd`, ...).
    pub(super) name: String,
    /// Bytes per message.
    pub(super) size: usize,
    pub(super) unit: Unit,
    /// Median of the per-rep values.
    pub(super) median: f64,
    /// Lowest and highest per-rep value.
    pub(super) range: [f64; 2],
    /// Round trips: median of the per-rep p99s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) p99: Option<f64>,
    /// Every repetition, in order.
    pub(super) reps: Vec<RepValue>,
}

impl Measurement {
    /// Aggregates the repetitions; `None` for none.
    pub(super) fn of(name: &str, size: usize, reps: Vec<RepValue>) -> Option<Self> {
        let unit = reps.first()?.unit;
        let values: Vec<f64> = reps.iter().map(|r| r.value).collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let p99s: Option<Vec<f64>> = reps.iter().map(|r| r.p99).collect();
        Some(Self {
            name: name.to_string(),
            size,
            unit,
            median: median(&values),
            range: [lo, hi],
            p99: p99s.map(|p| median(&p)),
            reps,
        })
    }

    /// Messages per second at the median (throughput only).
    pub(super) fn msgs_per_s(&self) -> Option<f64> {
        (self.unit == Unit::GigabytesPerSecond && self.size > 0)
            .then(|| self.median * 1e9 / self.size as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gbps(v: f64) -> RepValue {
        RepValue {
            value: v,
            p99: None,
            unit: Unit::GigabytesPerSecond,
        }
    }

    #[test]
    fn a_stamped_message_carries_its_seq_and_time_and_its_checksum_is_known() {
        for size in [STAMPED_MIN, 64, 4099] {
            let p = Payload::new(size);
            let mut msg = vec![0u8; size];
            p.write_stamped(&mut msg, 7, 123_456_789);
            assert_eq!(stamps(&msg), Some((7, 123_456_789)));
            assert_eq!(checksum(&msg), p.sum_stamped(7, 123_456_789), "{size} B");
            // Another time, or another message, changes the checksum.
            assert_ne!(checksum(&msg), p.sum_stamped(7, 123_456_790));
            assert_ne!(checksum(&msg), p.sum_stamped(8, 123_456_789));
        }
        assert_eq!(stamps(&[0u8; 15]), None);
        let (a, b) = (monotonic_ns(), monotonic_ns());
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 99.0), 99.0);
        assert_eq!(nearest_rank(&v, 50.0), 50.0);
        assert_eq!(nearest_rank(&v, 100.0), 100.0);
        assert_eq!(nearest_rank(&v, 0.0), 1.0);
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 99.0), 990.0);
        assert_eq!(nearest_rank(&v, 99.9), 999.0);
        assert_eq!(nearest_rank(&[5.0], 99.0), 5.0);
        assert!(nearest_rank::<f64>(&[], 50.0).is_nan());
    }

    #[test]
    fn latency_summary_sorts_and_converts_to_micros() {
        let mut ns: Vec<u64> = (1..=200).rev().map(|i| i * 1000).collect();
        let s = LatencySummary::of_nanos(&mut ns).expect("samples");
        assert_eq!(s.samples, 200);
        assert_eq!(s.median_us, 100.5);
        assert_eq!(s.p99_us, 198.0);
        assert_eq!(s.p999_us, 200.0);
        assert_eq!((s.min_us, s.max_us), (1.0, 200.0));
        assert_eq!(LatencySummary::of_nanos(&mut []), None);
    }

    #[test]
    fn a_measurement_is_the_median_of_rep_values_with_their_range() {
        let m = Measurement::of(
            "x",
            4096,
            vec![gbps(2.0), gbps(5.0), gbps(1.0), gbps(3.0), gbps(4.0)],
        )
        .expect("reps");
        assert_eq!((m.median, m.range, m.p99), (3.0, [1.0, 5.0], None));
        assert_eq!(m.unit, Unit::GigabytesPerSecond);
        assert_eq!(m.msgs_per_s(), Some(3e9 / 4096.0));
        assert_eq!(m.reps.len(), 5);
        assert_eq!(Measurement::of("x", 1, vec![]), None);
    }

    #[test]
    fn round_trips_take_the_median_of_per_rep_p99s() {
        let rep = |median_us, p99_us| {
            RepValue::latency(&LatencySummary {
                samples: 10,
                median_us,
                p99_us,
                p999_us: p99_us,
                min_us: 1.0,
                max_us: p99_us,
            })
        };
        let m = Measurement::of(
            "rtt",
            64,
            vec![rep(60.0, 90.0), rep(66.0, 110.0), rep(62.0, 94.0)],
        )
        .expect("reps");
        assert_eq!((m.median, m.range, m.p99), (62.0, [60.0, 66.0], Some(94.0)));
        assert_eq!(m.unit, Unit::Micros);
        assert_eq!(m.msgs_per_s(), None);
    }

    #[test]
    fn throughput_is_payload_bytes_per_second() {
        let r = RepValue::throughput(1 << 20, 1000, 0.5);
        assert!((r.value - (1u64 << 20) as f64 * 2000.0 / 1e9).abs() < 1e-12);
    }

    #[test]
    fn checksum_sums_little_endian_words() {
        let simple = |b: &[u8]| {
            b.chunks(8).fold(0u64, |s, c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                s.wrapping_add(u64::from_le_bytes(w))
            })
        };
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 200, 4096, 4099] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 131 + 17) as u8).collect();
            assert_eq!(checksum(&bytes), simple(&bytes), "len {len}");
        }
        assert_eq!(checksum(&[1, 0, 0, 0, 0, 0, 0, 0, 2]), 3);
    }

    #[test]
    fn payload_sums_track_the_stamped_sequence_number() {
        for size in [4, 64, 4096] {
            let p = Payload::new(size);
            let mut buf = vec![0u8; size];
            for seq in [0, 1, 12_345] {
                p.write_to(&mut buf, seq);
                assert_eq!(checksum(&buf), p.sum(seq), "size {size} seq {seq}");
            }
        }
    }

    #[test]
    fn cpu_samples_separate_our_time_from_others() {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .expect("CLK_TCK") as f64;
        let stat = |user: u64, idle: u64| {
            format!("cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")
        };
        let t = |ticks: u64| ticks as f64 / hz;
        let a = CpuSample::parse(&stat(100, 900), 0.0).expect("parses");
        // 200 ticks pass on all CPUs: 100 busy, of which we used 60.
        let b = CpuSample::parse(&stat(200, 1000), t(60)).expect("parses");
        assert!((a.busy_percent(&b).expect("time passed") - 50.0).abs() < 1e-9);
        assert!((a.others_percent(&b).expect("time passed") - 20.0).abs() < 1e-9);
        assert_eq!(a.busy_percent(&a), None, "no time passed");
        assert_eq!(CpuSample::parse("cpu  1 2", 0.0), None);
        assert!(CpuSample::now().is_some(), "Linux has /proc/stat");
    }
}
