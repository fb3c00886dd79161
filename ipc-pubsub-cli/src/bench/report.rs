//! The report of `bench payload`: its rows and ratios as the `--json` document has them, and the
//! table printed without `--json`. [`payload`](super::payload) fills it in.

use serde::Serialize;

use super::Machine;
use super::baselines::UDS_STREAM;
use super::harness::{Cores, Placement};
use super::measure::{Measurement, Unit};
use super::series::{PUBSUB_RTT, Shape};

/// One measured row of the report.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Row {
    #[serde(flatten)]
    pub(super) m: Measurement,
    pub(super) label: &'static str,
    pub(super) shape: Shape,
    /// Timed messages per repetition (0 for derived rows).
    pub(super) msgs: u64,
    /// Untimed messages before them.
    pub(super) warmup: u64,
    /// Throughput: messages per second at the median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) msgs_per_s: Option<f64>,
    /// A derived row: the series it copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) derived_from: Option<&'static str>,
}

/// One computed ratio.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Ratio {
    pub(super) num: &'static str,
    pub(super) den: &'static str,
    pub(super) size: usize,
    /// `num`'s median over `den`'s.
    pub(super) ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) goal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) goal_source: Option<&'static str>,
    /// Whether the goal is met; `None` without a goal, or when an unsteady baseline's reps
    /// disagree ([`Ratio::unsteady`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) met: Option<bool>,
    /// A goal's baseline whose repetitions spread over twice (see `payload::UNSTEADY`):
    /// the verdict stands only where `num`'s median meets or misses the goal against its
    /// lowest and highest reps alike.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) unsteady: Option<Unsteady>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(super) note: &'static str,
}

/// An unsteady baseline of a goal's ratio ([`Ratio::unsteady`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct Unsteady {
    /// The baseline's lowest and highest rep.
    pub(super) baseline: [f64; 2],
    /// `num`'s median over each of them, in the order of the ratio's size (over the highest,
    /// then over the lowest).
    pub(super) ratios: [f64; 2],
}

/// The `--json` document of `bench payload`.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) machine: Machine,
    pub(super) build: &'static str,
    pub(super) placement: Placement,
    pub(super) cores: Cores,
    pub(super) reps: u32,
    pub(super) quick: bool,
    /// Share of all CPUs busy (any process) in the half second before the run, in percent.
    pub(super) busy_percent_before: Option<f64>,
    /// Per round of repetitions: the share of all CPUs' time that other processes (and
    /// the host's steal) used meanwhile, in percent. High values mean noisy figures.
    pub(super) other_load_percent: Vec<Option<f64>>,
    /// Wall time of the whole run.
    pub(super) seconds: f64,
    pub(super) measurements: Vec<Row>,
    pub(super) ratios: Vec<Ratio>,
}

/// The blocking round trip's repetitions that ran under a fifth of the slowest one's time, if
/// any: there both processes polled, the std driver's default receive spin having caught the
/// replies of the back-to-back exchange (`RECV_SPIN` in `ipc-driver-std`), and the median
/// mixes two kinds of repetitions.
fn polled_note(m: &Measurement) -> Option<String> {
    let fast: Vec<String> = (m.reps.iter())
        .filter(|r| r.value * 5.0 < m.range[1])
        .map(|r| num(r.value))
        .collect();
    (!fast.is_empty()).then(|| {
        format!(
            "    ({} of {} reps polled: {} µs; the default receive spin caught the replies \
             at both ends; the others slept)",
            fast.len(),
            m.reps.len(),
            fast.join(", ")
        )
    })
}

/// `64 B`, `4 KiB`, `16 MiB`.
pub(super) fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// About four significant digits, without exponent.
fn num(x: f64) -> String {
    match x.abs() {
        a if a >= 1000.0 => format!("{x:.0}"),
        a if a >= 100.0 => format!("{x:.1}"),
        a if a >= 10.0 => format!("{x:.2}"),
        _ => format!("{x:.3}"),
    }
}

/// Messages per second: `463 k`, `4.15 k`, `306`.
fn rate(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e5 => format!("{:.0} k", x / 1e3),
        x if x >= 1e3 => format!("{:.1} k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn group_title(shape: Shape, size: usize, reps: u32) -> String {
    match shape {
        Shape::RoundTrip => format!(
            "round trip, {} each way: µs (median of {reps} per-rep medians, their range, median \
             of the per-rep p99s)",
            size_name(size)
        ),
        Shape::OneWay { receivers: 1 } => format!(
            "one-way throughput, {} messages: payload GB/s (median of {reps} reps, range); \
             msgs/s and µs/msg at the median",
            size_name(size)
        ),
        Shape::OneWay { receivers } => format!(
            "fan-out to {receivers} receivers, {} messages: payload GB/s (delivered: {receivers}x \
             that), msgs/s and µs/msg at the median",
            size_name(size)
        ),
        Shape::Paced { hz } => format!(
            "paced, {} messages at {hz} per second: one-way latency in µs, the sender's clock \
             before writing to the receiver's after reading (median of {reps} per-rep medians, \
             their range, median of the per-rep p99s)",
            size_name(size)
        ),
    }
}

pub(super) fn table(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line("ipc-pubsub bench payload".into());
    line(format!(
        "  machine    {} ({} cores), {}",
        r.machine.cpu, r.machine.cores, r.machine.kernel
    ));
    let placement = match r.placement {
        Placement::CrossCore => "cross-core",
        Placement::SameCore => "same-core",
    };
    line(format!(
        "  build      {}; {placement}: sender on CPU {}, receivers on CPU {}; {} reps{}, each \
         in fresh processes; {:.0} s",
        r.build,
        r.cores.sender,
        r.cores.receiver,
        r.reps,
        if r.quick { " (quick counts)" } else { "" },
        r.seconds
    ));
    let others: Vec<String> = r
        .other_load_percent
        .iter()
        .map(|o| o.map_or_else(|| "?".into(), |o| format!("{o:.1}")))
        .collect();
    line(format!(
        "  load       other processes used {} % of the CPUs during the reps; {} % were busy \
         before the run",
        others.join(" / "),
        r.busy_percent_before
            .map_or_else(|| "?".into(), |b| format!("{b:.1}"))
    ));
    let mut groups: Vec<(Shape, usize)> = Vec::new();
    for row in &r.measurements {
        let key = (row.shape, row.m.size);
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    groups.sort();
    for (shape, size) in groups {
        line(String::new());
        line(group_title(shape, size, r.reps));
        let in_group = r
            .measurements
            .iter()
            .filter(|row| row.shape == shape && row.m.size == size);
        let best_stream = r
            .measurements
            .iter()
            .find(|row| row.m.name == UDS_STREAM && row.m.size == size)
            .and_then(|row| row.derived_from);
        match shape {
            Shape::RoundTrip | Shape::Paced { .. } => line(format!(
                "  {:<28} {:>9} {:>19} {:>9}",
                "series", "median", "range", "p99"
            )),
            Shape::OneWay { .. } => line(format!(
                "  {:<28} {:>9} {:>19} {:>9} {:>9}",
                "series", "GB/s", "range", "msgs/s", "µs/msg"
            )),
        }
        for row in in_group.filter(|row| row.derived_from.is_none()) {
            let m = &row.m;
            let mark = if best_stream == Some(m.name.as_str()) {
                " *"
            } else {
                ""
            };
            let name = format!("{}{mark}", m.name);
            let range = format!("{} - {}", num(m.range[0]), num(m.range[1]));
            match (m.unit, m.msgs_per_s()) {
                (Unit::GigabytesPerSecond, Some(rps)) => line(format!(
                    "  {name:<28} {:>9} {range:>19} {:>9} {:>9}",
                    num(m.median),
                    rate(rps),
                    num(1e6 / rps)
                )),
                _ => line(format!(
                    "  {name:<28} {:>9} {range:>19} {:>9}",
                    num(m.median),
                    m.p99.map_or_else(|| "-".into(), num)
                )),
            }
            if m.name == PUBSUB_RTT
                && let Some(note) = polled_note(m)
            {
                line(note);
            }
        }
        let here: Vec<&Ratio> = r
            .ratios
            .iter()
            .filter(|q| {
                q.size == size
                    && r.measurements
                        .iter()
                        .any(|row| row.m.name == q.num && row.shape == shape && row.m.size == size)
            })
            .collect();
        if !here.is_empty() {
            line("  ratios of medians".into());
        }
        for q in here {
            let pair = format!("{} / {}", q.num, q.den);
            // An unsteady baseline: what the ratio is against its lowest and highest reps.
            let across = q.unsteady.map(|u| {
                let [lo, hi] = u.baseline;
                let [a, b] = u.ratios;
                format!(
                    "{}-{}x against the baseline's reps {}-{}",
                    num(a),
                    num(b),
                    num(lo),
                    num(hi)
                )
            });
            let goal = match (&q.goal, q.met, across) {
                (Some(g), Some(met), across) => format!(
                    "goal {g} ({}): {}{}",
                    q.goal_source.unwrap_or_default(),
                    if met { "met" } else { "MISSED" },
                    across.map(|a| format!(" ({a})")).unwrap_or_default()
                ),
                (Some(g), None, Some(across)) => format!(
                    "goal {g} ({}): no verdict, {across}",
                    q.goal_source.unwrap_or_default(),
                ),
                _ => String::new(),
            };
            let note = if q.note.is_empty() {
                String::new()
            } else {
                format!("[{}] ", q.note)
            };
            let text = format!("    {pair:<42} {:>8}x  {note}{goal}", num(q.ratio));
            line(text.trim_end().to_string());
        }
    }
    line(String::new());
    line("series".into());
    let mut seen: Vec<&str> = Vec::new();
    for row in &r.measurements {
        if !seen.contains(&row.m.name.as_str()) {
            seen.push(&row.m.name);
            line(format!("  {:<28} {}", row.m.name, row.label));
        }
    }
    if r.measurements.iter().any(|row| row.m.name == UDS_STREAM) {
        line(format!(
            "  (* marks the stream copy that ratios against {UDS_STREAM} use at that size)"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::measure::RepValue;
    use super::*;

    /// A round trip whose repetitions polled at times says which: the median alone hides it.
    #[test]
    fn polled_repetitions_of_the_blocking_round_trip_are_named() {
        let rep = |value| RepValue {
            value,
            p99: None,
            unit: Unit::Micros,
        };
        let of = |values: &[f64]| {
            Measurement::of(PUBSUB_RTT, 64, values.iter().copied().map(rep).collect())
                .expect("reps")
        };
        let mixed = of(&[54.4, 1.39, 44.0, 41.5, 0.98]);
        assert_eq!(
            polled_note(&mixed).as_deref(),
            Some(
                "    (2 of 5 reps polled: 1.390, 0.980 µs; the default receive spin caught the \
                 replies at both ends; the others slept)"
            )
        );
        assert_eq!(polled_note(&of(&[41.5, 54.4, 44.0])), None, "all slept");
        assert_eq!(polled_note(&of(&[0.98, 1.4, 1.2])), None, "all polled");
    }

    #[test]
    fn sizes_and_numbers_print_compactly() {
        assert_eq!(size_name(64), "64 B");
        assert_eq!(size_name(4096), "4 KiB");
        assert_eq!(size_name(16 << 20), "16 MiB");
        assert_eq!(size_name(1000), "1000 B");
        assert_eq!(num(62.612), "62.61");
        assert_eq!(num(0.1894), "0.189");
        assert_eq!(num(12_456.4), "12456");
        assert_eq!(rate(463_000.0), "463 k");
        assert_eq!(rate(4_147.0), "4.1 k");
        assert_eq!(rate(80.4), "80");
    }
}
