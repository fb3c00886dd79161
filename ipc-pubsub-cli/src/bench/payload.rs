//! `bench payload`: the pub/sub data path as ratios against raw baselines of the same run.
//!
//! Everything measured is a [`Series`]: an id, a [`Shape`] (round trip, or one-way to some
//! receivers), message counts per size, and a function that runs one repetition through the
//! [`Harness`]. The [`baselines`] are listed in `baselines::SERIES`; the
//! pub/sub measurements go in [`OURS`] (with their child roles in [`OURS_ROLES`]) under the
//! ids reserved in [`series`](super::series). [`RATIOS`] pairs series: each ratio is printed
//! at every size where both of its series were measured, so the table shows only what exists.
//!
//! Key rows of ours are measured twice, with the data links' shared-memory rings (the
//! default) and without (the `.no_rings` series, see [`pubsub`]), and [`RATIOS`] has
//! `ringed / no_rings` for each, without a goal: what the rings bought, within one run.
//!
//! The run is interleaved: repetition 1 of every series and size, then repetition 2 of
//! every one, and so on, so that a slow minute on the shared VM spreads over all series
//! instead of skewing one ratio.
//!
//! # Adding a pub/sub measurement
//! 1. Write its child roles: `fn(&mut ChildCtx) -> Result<ChildReport>`, one for the
//!    publishing side and one for a subscriber, and list them in [`OURS_ROLES`] by name.
//!    `ChildCtx` carries the [`Case`] (`size`, `msgs`, `warmup`, `window`, `receivers`), the
//!    receiver `index`, a fresh `group` name (with `Team::group`), and any sockets the
//!    [`Wiring`](super::harness::Wiring) asked for. A child is already pinned when its role
//!    runs; it does its own warm-up, and reports `msgs`/`timed` and `secs` (throughput,
//!    timed from "warm-up acknowledged" to "last message acknowledged") or `latency`
//!    ([`LatencySummary::of_nanos`](super::measure::LatencySummary::of_nanos) over per-sample
//!    [`Instant`] times), plus a `checksum` ([`Payload`](super::measure::Payload) and
//!    [`checksum`](super::measure::checksum) make one) that the repetition compares.
//! 2. Write its repetition, `fn(&Harness, &Case) -> Result<RepValue>`: `harness.run(&Team {
//!    sender, receiver, wiring, group: true, case: *case, opts: &[] })` and turn the reports
//!    into `RepValue::latency(&latency)` or `RepValue::throughput(case.size, timed,
//!    secs)`.
//! 3. Add a [`Series`] to [`OURS`] with the reserved id ([`PUBSUB_RTT`], [`PUBSUB_INLINE`],
//!    ...), the shape and the sizes it supports (the baselines' counts are a guide). Its
//!    ratios in [`RATIOS`] then appear in the table and the JSON.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use clap::Args;

use super::baselines::{
    self, EVENTFD_PINGPONG, FRESH_MEMFD, FRESH_MEMFD_4, MEMCPY, PACED_RAW_1KHZ, PACED_RAW_30HZ,
    POOLED_RAW, POOLED_RAW_4, SEQPACKET_PINGPONG, SHM_RING_PINGPONG, SHM_RING_SPIN,
    SHM_SPIN_PINGPONG, UDS_STREAM, UDS_STREAM_4M, UDS_STREAM_DEFAULT,
};
use super::harness::{Case, Harness, IDLE_BUSY_PERCENT, IDLE_QUIET, Placement, RoleFn};
use super::measure::{CpuSample, Measurement, RepValue};
use super::report::{Ratio, Report, Row, Unsteady, size_name, table};
use super::series::{
    KIB4, KIB64, MIB1, MIB16, PUBSUB_FRESH, PUBSUB_FRESH_4, PUBSUB_INLINE, PUBSUB_INLINE_4,
    PUBSUB_INLINE_DEEP, PUBSUB_INLINE_NO_RINGS, PUBSUB_PACED_1KHZ, PUBSUB_PACED_30HZ,
    PUBSUB_POOLED, PUBSUB_POOLED_4, PUBSUB_POOLED_NO_RINGS, PUBSUB_RTT, PUBSUB_RTT_NO_RINGS,
    PUBSUB_RTT_SLEEP, PUBSUB_RTT_SPIN, Series, Shape,
};
use super::{build, machine, progress, pubsub};
use crate::{CliError, Result};

/// Options of `bench payload`.
#[derive(Debug, Args)]
pub(crate) struct PayloadArgs {
    /// Print one JSON document with every figure instead of the table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Repetitions of every measurement, each with fresh processes [default: 5; 3 with
    /// --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) reps: Option<u32>,

    /// CI-sized message counts: well under a minute instead of a few minutes, with noisier
    /// figures.
    #[arg(long)]
    pub(crate) quick: bool,

    /// cross-core: the sender on the first CPU this process may use, receivers on the
    /// second; same-core: all on the first.
    #[arg(long, value_enum, default_value_t = Placement::CrossCore)]
    pub(crate) placement: Placement,

    /// Only the series whose id contains SUBSTRING (repeatable), e.g. `--only pooled`, or
    /// `--only no_rings` for the rows measured with shared-memory rings off.
    #[arg(long, value_name = "SUBSTRING")]
    pub(crate) only: Vec<String>,

    /// Before each round of repetitions, wait until the CPUs have been less than 4 % busy
    /// for 3 s, but at most SECONDS (0: do not wait). For a machine that others share.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub(crate) wait_idle: u64,
}

/// The ids reserved for [`OURS`].
#[cfg(test)]
const RESERVED: &[&str] = &[
    PUBSUB_RTT,
    PUBSUB_RTT_NO_RINGS,
    PUBSUB_RTT_SPIN,
    PUBSUB_RTT_SLEEP,
    PUBSUB_INLINE,
    PUBSUB_INLINE_NO_RINGS,
    PUBSUB_INLINE_DEEP,
    PUBSUB_FRESH,
    PUBSUB_POOLED,
    PUBSUB_POOLED_NO_RINGS,
    PUBSUB_INLINE_4,
    PUBSUB_FRESH_4,
    PUBSUB_POOLED_4,
    PUBSUB_PACED_30HZ,
    PUBSUB_PACED_1KHZ,
];

/// The pub/sub measurements, in table order after the baselines (see [`pubsub`]); the
/// [module docs](self) say how to add one.
const OURS: &[Series] = pubsub::SERIES;

/// The child roles of [`OURS`], by name.
const OURS_ROLES: &[(&str, RoleFn)] = pubsub::ROLES;

/// The function of child role `name` (for `bench-child`).
pub(super) fn role(name: &str) -> Option<RoleFn> {
    baselines::ROLES
        .iter()
        .chain(OURS_ROLES)
        .find(|(n, _)| *n == name)
        .map(|&(_, f)| f)
}

fn all_series() -> impl Iterator<Item = &'static Series> {
    baselines::SERIES.iter().chain(OURS)
}

/// Which side of a bound a ratio should be on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// A target for a ratio, at sizes `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Goal {
    pub(super) bound: Bound,
    pub(super) from: usize,
    pub(super) to: usize,
    /// Where the target comes from.
    pub(super) source: &'static str,
}

impl Goal {
    const fn at_least(x: f64, from: usize, to: usize, source: &'static str) -> Self {
        Self {
            bound: Bound::AtLeast(x),
            from,
            to,
            source,
        }
    }

    const fn at_most(x: f64, source: &'static str) -> Self {
        Self {
            bound: Bound::AtMost(x),
            from: 0,
            to: usize::MAX,
            source,
        }
    }

    fn applies(&self, size: usize) -> bool {
        (self.from..=self.to).contains(&size)
    }

    fn met(&self, ratio: f64) -> bool {
        match self.bound {
            Bound::AtLeast(x) => ratio >= x,
            Bound::AtMost(x) => ratio <= x,
        }
    }

    fn describe(&self) -> String {
        let bound = match self.bound {
            Bound::AtLeast(x) => format!(">= {x}x"),
            Bound::AtMost(x) => format!("<= {x}x"),
        };
        match (self.from, self.to) {
            (0, usize::MAX) => bound,
            (from, usize::MAX) => format!("{bound} from {}", size_name(from)),
            (from, to) if from == to => format!("{bound} at {}", size_name(from)),
            (from, to) => format!("{bound} at {}-{}", size_name(from), size_name(to)),
        }
    }
}

/// A ratio of two series' medians, printed at every size where both were measured.
#[derive(Debug, Clone, Copy)]
pub(super) struct RatioSpec {
    pub(super) num: &'static str,
    pub(super) den: &'static str,
    /// Targets, the first that applies at a size counts (none: the ratio only informs).
    pub(super) goals: &'static [Goal],
    /// What the ratio tells.
    pub(super) note: &'static str,
}

const ISSUE: &str = "payload issue";
const LIMITS: &str = "BENCH.md";
const FAST_PATH: &str = "issue 13";
/// The note of the ratios of a ringed series over its `.no_rings` twin (no goal: they say
/// what the rings bought).
const RINGS_FASTER_BELOW_1: &str = "rings / no rings: below 1, the rings are faster";
const RINGS_FASTER_ABOVE_1: &str = "rings / no rings: above 1, the rings are faster";
const ALL: usize = usize::MAX;
/// The note of the fan-out ratios: the rate to 4 receivers (as sent; each gets every message)
/// over the rate to one.
const FAN_OUT: &str = "per-receiver rate with 4 receivers / with one";

const fn ratio(
    num: &'static str,
    den: &'static str,
    goals: &'static [Goal],
    note: &'static str,
) -> RatioSpec {
    RatioSpec {
        num,
        den,
        goals,
        note,
    }
}

/// Every ratio the table may print, in order: ours against the baselines (printed once
/// [`OURS`] has the series), then the raw ceilings the goals need.
pub(super) const RATIOS: &[RatioSpec] = &[
    ratio(
        PUBSUB_RTT,
        SEQPACKET_PINGPONG,
        &[Goal::at_most(1.1, FAST_PATH)],
        "",
    ),
    ratio(
        PUBSUB_RTT,
        SHM_SPIN_PINGPONG,
        &[],
        "against the busy-wait floor (pubsub.rtt_spin has the goal)",
    ),
    ratio(
        PUBSUB_RTT,
        EVENTFD_PINGPONG,
        &[],
        "the blocking wakeup floor: two wakeups, no payload",
    ),
    ratio(PUBSUB_RTT, PUBSUB_RTT_NO_RINGS, &[], RINGS_FASTER_BELOW_1),
    ratio(
        PUBSUB_RTT_SLEEP,
        SEQPACKET_PINGPONG,
        &[],
        "neither end polls: every message wakes its receiver, as the raw sockets' do",
    ),
    ratio(
        PUBSUB_RTT_SLEEP,
        EVENTFD_PINGPONG,
        &[],
        "neither end polls, against the blocking wakeup floor",
    ),
    ratio(
        PUBSUB_RTT_SPIN,
        SHM_SPIN_PINGPONG,
        &[Goal::at_most(3.0, FAST_PATH)],
        "",
    ),
    ratio(
        PUBSUB_RTT_SPIN,
        SHM_RING_PINGPONG,
        &[],
        "over the bare rings: what the protocol and the driver add to a spinning round trip",
    ),
    ratio(
        PUBSUB_RTT_SPIN,
        PUBSUB_RTT,
        &[],
        "what spinning buys over the default subscription",
    ),
    ratio(
        PUBSUB_INLINE,
        UDS_STREAM,
        &[
            Goal::at_least(3.0, KIB4, KIB4, FAST_PATH),
            Goal::at_least(0.5, 0, ALL, LIMITS),
        ],
        "",
    ),
    ratio(
        PUBSUB_INLINE,
        SHM_RING_SPIN,
        &[],
        "share of the bare ring: no protocol, both sides spinning",
    ),
    ratio(PUBSUB_INLINE, MEMCPY, &[], ""),
    ratio(
        PUBSUB_INLINE,
        PUBSUB_INLINE_NO_RINGS,
        &[],
        RINGS_FASTER_ABOVE_1,
    ),
    ratio(
        PUBSUB_INLINE_DEEP,
        PUBSUB_INLINE,
        &[],
        "a subscription 256 deep / 8 deep: well below 1, the deep queue's payloads cost more",
    ),
    ratio(
        PUBSUB_POOLED,
        PUBSUB_INLINE,
        &[],
        "above 1: pooled beats inline (the inline threshold)",
    ),
    ratio(
        PUBSUB_FRESH,
        FRESH_MEMFD,
        &[Goal::at_least(0.9, 0, ALL, ISSUE)],
        "",
    ),
    ratio(PUBSUB_FRESH, UDS_STREAM, &[], ""),
    ratio(
        PUBSUB_POOLED,
        PUBSUB_FRESH,
        &[Goal::at_least(10.0, KIB64, ALL, ISSUE)],
        "",
    ),
    ratio(
        PUBSUB_POOLED,
        MEMCPY,
        &[
            Goal::at_least(0.7, MIB16, MIB16, FAST_PATH),
            Goal::at_least(0.5, MIB1, MIB16, ISSUE),
        ],
        "",
    ),
    ratio(
        PUBSUB_POOLED,
        UDS_STREAM,
        &[Goal::at_least(2.0, MIB1, MIB16, ISSUE)],
        "",
    ),
    ratio(PUBSUB_POOLED, POOLED_RAW, &[], "share of the raw pool"),
    ratio(
        PUBSUB_POOLED,
        PUBSUB_POOLED_NO_RINGS,
        &[],
        RINGS_FASTER_ABOVE_1,
    ),
    ratio(
        PUBSUB_POOLED_4,
        PUBSUB_INLINE_4,
        &[],
        "above 1: pooled beats inline (the inline threshold)",
    ),
    ratio(
        PUBSUB_INLINE_4,
        PUBSUB_INLINE,
        &[Goal::at_least(0.5, KIB4, KIB4, FAST_PATH)],
        FAN_OUT,
    ),
    ratio(
        PUBSUB_POOLED_4,
        PUBSUB_POOLED,
        &[Goal::at_least(0.5, MIB1, MIB1, FAST_PATH)],
        FAN_OUT,
    ),
    ratio(PUBSUB_FRESH_4, FRESH_MEMFD_4, &[], ""),
    ratio(PUBSUB_POOLED_4, POOLED_RAW_4, &[], "share of the raw pool"),
    ratio(
        SHM_RING_SPIN,
        UDS_STREAM,
        &[Goal::at_least(3.0, KIB4, KIB4, FAST_PATH)],
        "raw ceiling",
    ),
    ratio(
        SHM_RING_PINGPONG,
        SHM_SPIN_PINGPONG,
        &[Goal::at_most(3.0, FAST_PATH)],
        "raw ceiling: the bare rings' round trip against one word each way",
    ),
    ratio(
        POOLED_RAW,
        FRESH_MEMFD,
        &[Goal::at_least(10.0, KIB64, ALL, ISSUE)],
        "raw ceiling",
    ),
    ratio(
        POOLED_RAW,
        MEMCPY,
        &[
            Goal::at_least(0.7, MIB16, MIB16, FAST_PATH),
            Goal::at_least(0.5, MIB1, MIB16, ISSUE),
        ],
        "raw ceiling",
    ),
    ratio(
        POOLED_RAW,
        UDS_STREAM,
        &[Goal::at_least(2.0, MIB1, MIB16, ISSUE)],
        "raw ceiling",
    ),
    ratio(POOLED_RAW_4, FRESH_MEMFD_4, &[], "raw ceiling"),
    ratio(
        PUBSUB_PACED_30HZ,
        PACED_RAW_30HZ,
        &[],
        "one-way latency at 30 Hz, of the medians (p99s in the rows)",
    ),
    ratio(
        PUBSUB_PACED_1KHZ,
        PACED_RAW_1KHZ,
        &[],
        "one-way latency at 1 kHz, of the medians (p99s in the rows)",
    ),
];

/// One series at one size, as the run plans it.
struct Planned {
    series: &'static Series,
    case: Case,
}

fn plan(quick: bool, only: &[String]) -> Vec<Planned> {
    let wanted = |s: &Series| only.is_empty() || only.iter().any(|o| s.id.contains(o.as_str()));
    all_series()
        .filter(|s| wanted(s))
        .flat_map(|series| {
            series.counts.iter().map(move |c| {
                let msgs = if quick { c.quick } else { c.full };
                let min_warmup = if quick { 2 } else { 16 };
                Planned {
                    series,
                    case: Case {
                        size: c.size,
                        msgs,
                        warmup: (msgs / 10).max(min_warmup),
                        window: 8,
                        receivers: match series.shape {
                            Shape::RoundTrip | Shape::Paced { .. } => 1,
                            Shape::OneWay { receivers } => receivers,
                        },
                        hz: match series.shape {
                            Shape::Paced { hz } => hz,
                            Shape::RoundTrip | Shape::OneWay { .. } => 0,
                        },
                    },
                }
            })
        })
        .collect()
}

/// Runs `bench payload`.
pub(super) fn run(args: &PayloadArgs) -> Result<()> {
    let began = Instant::now();
    let machine = machine();
    let build = build();
    let reps = args.reps.unwrap_or(if args.quick { 3 } else { 5 });
    let harness = Harness::new(args.placement)?;
    let cores = harness.cores();
    progress(&format!(
        "bench payload on {} ({} cores), {}; {build} build; sender on CPU {}, receivers on \
         CPU {}; {reps} reps{}",
        machine.cpu,
        machine.cores,
        machine.kernel,
        cores.sender,
        cores.receiver,
        if args.quick { ", quick" } else { "" }
    ));
    if cfg!(debug_assertions) {
        progress("warning: a debug build; use `cargo run --release` for numbers worth quoting");
    }
    let busy = CpuSample::now().and_then(|before| {
        std::thread::sleep(Duration::from_millis(500));
        before.busy_percent(&CpuSample::now()?)
    });
    if let Some(b) = busy.filter(|&b| b > 10.0) {
        progress(&format!(
            "warning: the machine was {b:.0} % busy before the run; figures will be noisy"
        ));
    }
    let plan = plan(args.quick, &args.only);
    if plan.is_empty() {
        return Err(CliError::Failed(format!(
            "--only {:?} matches no series",
            args.only
        )));
    }
    let mut values: Vec<Vec<RepValue>> = vec![Vec::new(); plan.len()];
    let mut other_load = Vec::new();
    for rep in 1..=reps {
        if args.wait_idle > 0 && !harness.wait_idle(Duration::from_secs(args.wait_idle))? {
            progress(&format!(
                "warning: the CPUs were not below {IDLE_BUSY_PERCENT} % busy for {} s within \
                 {} s; going on",
                IDLE_QUIET.as_secs(),
                args.wait_idle
            ));
        }
        let t = Instant::now();
        let before = CpuSample::now();
        for (p, v) in plan.iter().zip(&mut values) {
            let value = (p.series.rep)(&harness, &p.case).map_err(|e| match e {
                CliError::Interrupted(_) => e,
                e => CliError::Failed(format!(
                    "{} at {}, rep {rep}: {e}",
                    p.series.id,
                    size_name(p.case.size)
                )),
            })?;
            v.push(value);
        }
        let others = before
            .zip(CpuSample::now())
            .and_then(|(b, a)| b.others_percent(&a));
        other_load.push(others.map(round3));
        progress(&format!(
            "rep {rep}/{reps}: {} measurements in {:.1} s; other processes used {} of the CPUs",
            plan.len(),
            t.elapsed().as_secs_f64(),
            others.map_or_else(|| "an unknown share".into(), |o| format!("{o:.1} %"))
        ));
    }
    let mut rows: Vec<Row> = plan
        .iter()
        .zip(values)
        .filter_map(|(p, v)| {
            let m = Measurement::of(p.series.id, p.case.size, v)?;
            Some(Row {
                msgs_per_s: m.msgs_per_s(),
                m,
                label: p.series.label,
                shape: p.series.shape,
                msgs: p.case.msgs,
                warmup: p.case.warmup,
                derived_from: None,
            })
        })
        .collect();
    rows.extend(derive_best_stream(&rows));
    let ratios = ratios(&rows);
    let report = Report {
        machine,
        build,
        placement: args.placement,
        cores,
        reps,
        quick: args.quick,
        busy_percent_before: busy.map(round3),
        other_load_percent: other_load,
        seconds: round3(began.elapsed().as_secs_f64()),
        measurements: rows,
        ratios,
    };
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(table(&report).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// [`UDS_STREAM`] at each size: a copy of the better stream row.
fn derive_best_stream(rows: &[Row]) -> Vec<Row> {
    let mut best: Vec<Row> = Vec::new();
    for r in rows.iter().filter(|r| {
        r.derived_from.is_none() && [UDS_STREAM_DEFAULT, UDS_STREAM_4M].contains(&r.m.name.as_str())
    }) {
        match best.iter_mut().find(|b| b.m.size == r.m.size) {
            Some(b) if b.m.median >= r.m.median => {}
            Some(b) => *b = r.clone(),
            None => best.push(r.clone()),
        }
    }
    for b in &mut best {
        b.derived_from = Some(if b.m.name == UDS_STREAM_4M {
            UDS_STREAM_4M
        } else {
            UDS_STREAM_DEFAULT
        });
        b.m.name = UDS_STREAM.to_string();
        b.label = "the better of the two stream copies";
        b.msgs = 0;
        b.warmup = 0;
    }
    best
}

/// A baseline whose repetitions spread wider than this (the highest over the lowest) was not
/// one level for the run: the machine changed speed for it between or within rounds (this VM
/// has modes in which its one-word spin ping-pong takes four times as long, 0.45 against
/// 0.11 µs, while our round trip barely changes). A goal's verdict on a ratio over its median
/// would then say more about the mode than about our path: the verdict is given only if our
/// median meets (or misses) the goal against the baseline's lowest and highest reps alike,
/// and withheld otherwise ([`Ratio::unsteady`]). A threshold of judgement, not a statistic:
/// twice is far beyond the spread of a steady baseline on the machines measured (within
/// 1.3x), and well below the VM's modes.
const UNSTEADY: f64 = 2.0;

/// Whether a row's repetitions spread wider than [`UNSTEADY`] (or one measured nothing).
fn unsteady(row: &Row) -> bool {
    let [lo, hi] = row.m.range;
    lo <= 0.0 || hi / lo > UNSTEADY
}

fn ratios(rows: &[Row]) -> Vec<Ratio> {
    let find = |id: &str, size: usize| rows.iter().find(|r| r.m.name == id && r.m.size == size);
    let mut out = Vec::new();
    for spec in RATIOS {
        for num in rows.iter().filter(|r| r.m.name == spec.num) {
            let Some(den) = find(spec.den, num.m.size) else {
                continue;
            };
            let ratio = num.m.median / den.m.median;
            let goal = spec.goals.iter().find(|g| g.applies(num.m.size));
            let mut met = goal.map(|g| g.met(ratio));
            let mut unsteady_den = None;
            if let Some(g) = goal
                && unsteady(den)
            {
                // Our median against the baseline's lowest and highest reps.
                let [lo, hi] = den.m.range;
                let across = [num.m.median / hi, num.m.median / lo];
                let (a, b) = (g.met(across[0]), g.met(across[1]));
                met = (a == b).then_some(a);
                unsteady_den = Some(Unsteady {
                    baseline: den.m.range,
                    ratios: across.map(round3),
                });
            }
            out.push(Ratio {
                num: spec.num,
                den: spec.den,
                size: num.m.size,
                ratio: round3(ratio),
                goal: goal.map(|g| g.describe()),
                goal_source: goal.map(|g| g.source),
                met,
                unsteady: unsteady_den,
                note: spec.note,
            });
        }
    }
    out
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::harness::Cores;
    use crate::bench::measure::Unit;

    fn row(name: &'static str, shape: Shape, size: usize, median: f64) -> Row {
        let unit = match shape {
            Shape::RoundTrip | Shape::Paced { .. } => Unit::Micros,
            Shape::OneWay { .. } => Unit::GigabytesPerSecond,
        };
        let rep = RepValue {
            value: median,
            p99: (unit == Unit::Micros).then_some(median * 1.5),
            unit,
        };
        let m = Measurement::of(name, size, vec![rep, rep]).expect("reps");
        Row {
            msgs_per_s: m.msgs_per_s(),
            m,
            label: "test",
            shape,
            msgs: 10,
            warmup: 1,
            derived_from: None,
        }
    }

    const ONE: Shape = Shape::OneWay { receivers: 1 };

    #[test]
    fn ids_are_unique_and_ratios_name_known_series() {
        let ids: Vec<&str> = all_series().map(|s| s.id).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(id), "{id} twice");
            assert!(!RESERVED.contains(id) || OURS.iter().any(|s| s.id == *id));
        }
        for spec in RATIOS {
            for id in [spec.num, spec.den] {
                assert!(
                    ids.contains(&id) || RESERVED.contains(&id) || id == UDS_STREAM,
                    "ratio names unknown series {id}"
                );
            }
        }
    }

    #[test]
    fn roles_are_unique_and_found() {
        let names: Vec<&str> = baselines::ROLES
            .iter()
            .chain(OURS_ROLES)
            .map(|r| r.0)
            .collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "role {n} twice");
            assert!(role(n).is_some());
        }
        assert!(role("no-such-role").is_none());
    }

    #[test]
    fn the_plan_scales_counts_and_warmups() {
        let full = plan(false, &[]);
        let quick = plan(true, &[]);
        assert_eq!(full.len(), quick.len());
        for (f, q) in full.iter().zip(&quick) {
            assert!(q.case.msgs <= f.case.msgs, "{}", f.series.id);
            assert!(f.case.warmup >= 16 && f.case.warmup >= f.case.msgs / 10);
            assert_eq!(f.case.window, 8);
        }
        let fan: Vec<_> = full
            .iter()
            .filter(|p| p.series.id == FRESH_MEMFD_4)
            .collect();
        assert_eq!(fan.len(), 4);
        assert!(fan.iter().all(|p| p.case.receivers == 4));
        let only = plan(false, &["pooled".into()]);
        assert!(only.iter().all(|p| p.series.id.contains("pooled")));
        let pooled_sizes: usize = all_series()
            .filter(|s| s.id.contains("pooled"))
            .map(|s| s.counts.len())
            .sum();
        assert_eq!(only.len(), pooled_sizes);
        assert!(only.len() > 8, "the raw pools and ours");
        let no_rings: Vec<_> = plan(true, &["no_rings".into()])
            .iter()
            .map(|p| (p.series.id, p.case.size))
            .collect();
        assert_eq!(
            no_rings,
            [
                (PUBSUB_RTT_NO_RINGS, 64),
                (PUBSUB_INLINE_NO_RINGS, KIB4),
                (PUBSUB_POOLED_NO_RINGS, KIB4),
                (PUBSUB_POOLED_NO_RINGS, MIB1),
            ],
            "the key rows: 64 B round trip, 4 KiB inline, 4 KiB and 1 MiB pooled"
        );
    }

    #[test]
    fn every_no_rings_series_repeats_rows_of_its_ringed_twin_with_a_ratio() {
        let no_rings: Vec<&Series> = OURS
            .iter()
            .filter(|s| s.id.ends_with(".no_rings"))
            .collect();
        assert_eq!(no_rings.len(), 3);
        for s in no_rings {
            let twin_id = s.id.strip_suffix(".no_rings").expect("the suffix");
            let twin = OURS
                .iter()
                .find(|t| t.id == twin_id)
                .unwrap_or_else(|| panic!("{} has no ringed twin", s.id));
            assert_eq!(s.shape, twin.shape, "{}", s.id);
            assert!(!s.counts.is_empty(), "{}", s.id);
            for c in s.counts {
                assert!(
                    twin.counts.contains(c),
                    "{} at {}: not a size of its twin, or other counts",
                    s.id,
                    size_name(c.size)
                );
            }
            let specs: Vec<_> = RATIOS
                .iter()
                .filter(|r| r.num == twin.id && r.den == s.id)
                .collect();
            assert_eq!(specs.len(), 1, "one ratio {twin_id} / {}", s.id);
            assert!(specs[0].goals.is_empty(), "informative, no goal");
            let note = match s.shape {
                Shape::RoundTrip | Shape::Paced { .. } => RINGS_FASTER_BELOW_1,
                Shape::OneWay { .. } => RINGS_FASTER_ABOVE_1,
            };
            assert_eq!(specs[0].note, note, "{}", s.id);
        }
    }

    #[test]
    fn rings_ratios_are_printed_where_both_ran_and_kept_in_json() {
        let rows = vec![
            row(PUBSUB_RTT, Shape::RoundTrip, 64, 40.0),
            row(PUBSUB_RTT_NO_RINGS, Shape::RoundTrip, 64, 80.0),
            row(PUBSUB_POOLED, ONE, KIB4, 0.6),
            row(PUBSUB_POOLED, ONE, KIB64, 2.0),
            row(PUBSUB_POOLED_NO_RINGS, ONE, KIB4, 0.2),
        ];
        let got = ratios(&rows);
        let rings: Vec<_> = got
            .iter()
            .filter(|q| q.den.ends_with(".no_rings"))
            .map(|q| (q.num, q.size, q.ratio, q.goal.is_some(), q.met))
            .collect();
        assert_eq!(
            rings,
            [
                (PUBSUB_RTT, 64, 0.5, false, None),
                (PUBSUB_POOLED, KIB4, 3.0, false, None),
            ],
            "not at 64 KiB, where only the ringed series ran"
        );
        let report = report_of(rows, got);
        let t = table(&report);
        for needle in [
            "pubsub.rtt.no_rings",
            "pubsub.rtt / pubsub.rtt.no_rings",
            RINGS_FASTER_BELOW_1,
            "pubsub.pooled / pubsub.pooled.no_rings",
            RINGS_FASTER_ABOVE_1,
        ] {
            assert!(t.contains(needle), "{needle:?} missing from\n{t}");
        }
        let json = serde_json::to_value(&report).expect("serializes");
        let ratios = json["ratios"].as_array().expect("ratios");
        let pooled = ratios
            .iter()
            .find(|q| q["den"] == PUBSUB_POOLED_NO_RINGS)
            .expect("in the JSON");
        assert_eq!(pooled["num"], PUBSUB_POOLED);
        assert_eq!(pooled["ratio"], 3.0);
        assert_eq!(pooled["note"], RINGS_FASTER_ABOVE_1);
        assert!(pooled.get("goal").is_none() && pooled.get("met").is_none());
    }

    fn report_of(rows: Vec<Row>, ratios: Vec<Ratio>) -> Report {
        Report {
            machine: machine(),
            build: "test",
            placement: Placement::CrossCore,
            cores: Cores {
                sender: 0,
                receiver: 1,
            },
            reps: 2,
            quick: true,
            busy_percent_before: Some(1.0),
            other_load_percent: vec![Some(0.5), None],
            seconds: 1.0,
            ratios,
            measurements: rows,
        }
    }

    #[test]
    fn the_better_stream_copy_stands_for_uds() {
        let rows = vec![
            row(UDS_STREAM_DEFAULT, ONE, 4096, 2.0),
            row(UDS_STREAM_4M, ONE, 4096, 1.5),
            row(UDS_STREAM_DEFAULT, ONE, 1 << 20, 4.0),
            row(UDS_STREAM_4M, ONE, 1 << 20, 13.0),
        ];
        let best = derive_best_stream(&rows);
        let got: Vec<_> = best
            .iter()
            .map(|b| (b.m.name.as_str(), b.m.size, b.m.median, b.derived_from))
            .collect();
        assert_eq!(
            got,
            [
                (UDS_STREAM, 4096, 2.0, Some(UDS_STREAM_DEFAULT)),
                (UDS_STREAM, 1 << 20, 13.0, Some(UDS_STREAM_4M)),
            ]
        );
    }

    /// The ratio of `num` over `den` at `size`, if both were measured.
    fn find_ratio<'a>(got: &'a [Ratio], num: &str, den: &str, size: usize) -> Option<&'a Ratio> {
        got.iter()
            .find(|q| q.num == num && q.den == den && q.size == size)
    }

    #[test]
    fn ratios_need_both_series_and_check_goals_where_they_apply() {
        let mut rows = vec![
            row(FRESH_MEMFD, ONE, 4096, 0.2),
            row(FRESH_MEMFD, ONE, 65536, 1.0),
            row(POOLED_RAW, ONE, 4096, 1.7),
            row(POOLED_RAW, ONE, 65536, 21.0),
            row(MEMCPY, ONE, 4096, 80.0),
            // Ours: only the fresh path, at one size.
            row(PUBSUB_FRESH, ONE, 65536, 0.85),
        ];
        rows.extend(derive_best_stream(&rows));
        let got = ratios(&rows);
        let find = |num, den, size| find_ratio(&got, num, den, size);
        let raw = find(POOLED_RAW, FRESH_MEMFD, 4096).expect("both measured");
        assert_eq!((raw.ratio, raw.met), (8.5, None), "no goal below 64 KiB");
        let raw = find(POOLED_RAW, FRESH_MEMFD, 65536).expect("both measured");
        assert_eq!((raw.ratio, raw.met), (21.0, Some(true)));
        assert_eq!(raw.goal.as_deref(), Some(">= 10x from 64 KiB"));
        assert!(
            find(POOLED_RAW, MEMCPY, 65536).is_none(),
            "no memcpy at 64 KiB"
        );
        let ours = find(PUBSUB_FRESH, FRESH_MEMFD, 65536).expect("ours and its baseline");
        assert_eq!((ours.ratio, ours.met), (0.85, Some(false)));
        assert!(
            find(PUBSUB_FRESH, FRESH_MEMFD, 4096).is_none(),
            "ours not at 4 KiB"
        );
        assert!(
            find(PUBSUB_POOLED, PUBSUB_FRESH, 65536).is_none(),
            "no pooled of ours"
        );
    }

    /// Issue 13's targets where it set them: inline at 4 KiB against the raw stream (the
    /// looser limit of BENCH.md elsewhere), and the fan-out to 4 receivers at 4 KiB inline
    /// and 1 MiB pooled.
    #[test]
    fn the_first_goal_that_applies_at_a_size_counts() {
        let four = Shape::OneWay { receivers: 4 };
        let mut rows = vec![
            row(UDS_STREAM_DEFAULT, ONE, 4096, 1.0),
            row(UDS_STREAM_DEFAULT, ONE, 65536, 1.0),
            row(PUBSUB_INLINE, ONE, 4096, 1.3),
            row(PUBSUB_INLINE, ONE, 65536, 0.6),
            row(PUBSUB_INLINE_4, four, 4096, 0.3),
            row(PUBSUB_POOLED, ONE, 1 << 20, 10.0),
            row(PUBSUB_POOLED_4, four, 1 << 20, 6.0),
            row(MEMCPY, ONE, MIB1, 50.0),
            row(MEMCPY, ONE, MIB16, 20.0),
            row(PUBSUB_POOLED, ONE, MIB16, 12.0),
        ];
        rows.extend(derive_best_stream(&rows));
        let got = ratios(&rows);
        let find = |num, den, size| {
            find_ratio(&got, num, den, size)
                .map(|q| (q.goal.as_deref(), q.met))
                .expect("both measured")
        };
        assert_eq!(
            find(PUBSUB_INLINE, UDS_STREAM, 4096),
            (Some(">= 3x at 4 KiB"), Some(false))
        );
        assert_eq!(
            find(PUBSUB_INLINE, UDS_STREAM, 65536),
            (Some(">= 0.5x"), Some(true))
        );
        assert_eq!(
            find(PUBSUB_INLINE_4, PUBSUB_INLINE, 4096),
            (Some(">= 0.5x at 4 KiB"), Some(false))
        );
        assert_eq!(
            find(PUBSUB_POOLED_4, PUBSUB_POOLED, 1 << 20),
            (Some(">= 0.5x at 1 MiB"), Some(true))
        );
        // Issue 13 asks more of 16 MiB than the payload issue did of 1 MiB to 16 MiB.
        assert_eq!(
            find(PUBSUB_POOLED, MEMCPY, MIB1),
            (Some(">= 0.5x at 1 MiB-16 MiB"), Some(false))
        );
        assert_eq!(
            find(PUBSUB_POOLED, MEMCPY, MIB16),
            (Some(">= 0.7x at 16 MiB"), Some(false))
        );
    }

    #[test]
    fn round_trip_goals_are_upper_bounds() {
        for (rtt, met) in [(63.0, true), (72.0, false)] {
            let rows = vec![
                row(SEQPACKET_PINGPONG, Shape::RoundTrip, 64, 60.0),
                row(EVENTFD_PINGPONG, Shape::RoundTrip, 64, 50.0),
                row(PUBSUB_RTT, Shape::RoundTrip, 64, rtt),
            ];
            let got = ratios(&rows);
            assert_eq!(got.len(), 2);
            assert_eq!((got[0].ratio, got[0].met), (rtt / 60.0, Some(met)));
            assert_eq!(got[0].goal.as_deref(), Some("<= 1.1x"));
            assert_eq!((got[1].ratio, got[1].met), (rtt / 50.0, None), "no goal");
        }
    }

    /// A baseline whose reps spread over twice (the VM's modes: its one-word spin at 0.11
    /// and 0.45 µs in one run) gives a verdict only where our median meets or misses the
    /// goal against its lowest and highest reps alike, and the table says what the ratio is
    /// against each; a steady one gives the verdict of the medians.
    #[test]
    fn an_unsteady_baseline_gives_a_verdict_only_where_its_reps_agree() {
        let with_reps = |name: &'static str, values: &[f64]| {
            let mut r = row(name, Shape::RoundTrip, 64, values[0]);
            let reps = values.iter().map(|&value| RepValue {
                value,
                p99: Some(value * 1.5),
                unit: Unit::Micros,
            });
            r.m = Measurement::of(name, 64, reps.collect()).expect("reps");
            r
        };
        let modes = &[0.45, 0.12, 0.11, 0.47, 0.49][..];
        let steady = &[0.11, 0.12, 0.11, 0.12, 0.11][..];
        let ours = &[0.76, 1.08, 0.61, 0.60, 0.61][..];
        let slow = &[2.0, 2.1, 1.9, 2.0, 2.0][..];
        for (spin, ours, verdict, text) in [
            (
                modes,
                ours,
                None,
                "goal <= 3x (issue 13): no verdict, 1.245-5.545x against the baseline's reps \
                 0.110-0.490",
            ),
            (steady, ours, Some(false), "goal <= 3x (issue 13): MISSED"),
            (
                modes,
                slow,
                Some(false),
                "goal <= 3x (issue 13): MISSED (4.082-18.18x against the baseline's reps \
                 0.110-0.490)",
            ),
        ] {
            let rows = vec![
                with_reps(SHM_SPIN_PINGPONG, spin),
                with_reps(PUBSUB_RTT_SPIN, ours),
            ];
            let got = ratios(&rows);
            let q = find_ratio(&got, PUBSUB_RTT_SPIN, SHM_SPIN_PINGPONG, 64).expect("both");
            assert_eq!(q.met, verdict, "spin reps {spin:?}, ours {ours:?}");
            assert_eq!(q.unsteady.is_some(), spin == modes);
            let table = table(&report_of(rows, got.clone()));
            assert!(table.contains(text), "{text:?} missing from\n{table}");
        }
    }

    #[test]
    fn the_table_groups_rows_and_prints_ratios_under_their_numerator() {
        let mut rows = vec![
            row(SEQPACKET_PINGPONG, Shape::RoundTrip, 64, 62.5),
            row(PUBSUB_RTT, Shape::RoundTrip, 64, 70.0),
            row(UDS_STREAM_DEFAULT, ONE, MIB1, 4.3),
            row(UDS_STREAM_4M, ONE, MIB1, 13.0),
            row(MEMCPY, ONE, MIB1, 50.0),
            row(FRESH_MEMFD, ONE, MIB1, 1.38),
            row(POOLED_RAW, ONE, MIB1, 37.0),
            row(FRESH_MEMFD_4, Shape::OneWay { receivers: 4 }, MIB1, 1.0),
            row(POOLED_RAW_4, Shape::OneWay { receivers: 4 }, MIB1, 16.1),
        ];
        rows.extend(derive_best_stream(&rows));
        let ratios = ratios(&rows);
        let report = report_of(rows, ratios);
        let t = table(&report);
        for needle in [
            "round trip, 64 B each way",
            "one-way throughput, 1 MiB messages",
            "fan-out to 4 receivers, 1 MiB messages",
            "uds_stream_copy.sndbuf_4m *",
            "pubsub.rtt / seqpacket_pingpong",
            "pooled_raw / memcpy",
            "goal >= 0.5x at 1 MiB-16 MiB (payload issue): met",
            "pooled_raw.4recv / fresh_memfd.4recv",
        ] {
            assert!(t.contains(needle), "{needle:?} missing from\n{t}");
        }
        let rtt = t.find("round trip").expect("group");
        let one = t.find("one-way throughput").expect("group");
        let fan = t.find("fan-out").expect("group");
        assert!(rtt < one && one < fan, "{t}");
        let ratio_at = t.find("pubsub.rtt / seqpacket_pingpong").expect("ratio");
        assert!(rtt < ratio_at && ratio_at < one, "under its group: {t}");
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["measurements"][0]["name"], SEQPACKET_PINGPONG);
        assert_eq!(json["measurements"][0]["unit"], "us");
        assert_eq!(json["measurements"][0]["shape"], "round_trip");
        assert_eq!(json["ratios"][0]["num"], PUBSUB_RTT);
    }
}
