//! `ipc-pubsub-peers`: iceoryx2 0.10 publish-subscribe and ours side by side, in one run,
//! between the same two pinned processes, with the same sizes and checks (see README.md).
//!
//! The binary is both the parent and its children: the parent re-executes itself as
//! `ipc-pubsub-peers child <role> ...` for the two processes of every repetition and reads
//! their `RESULT {json}` lines.

mod common;
mod ice;
mod ours;

use std::io::BufRead;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sched::{CpuSet, sched_getaffinity};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use common::{Case, Control, Payload, Res, err};

/// Default subscriber queue depth for both systems (`bench payload`'s window).
const WINDOW: usize = 8;
/// A repetition that takes longer than this fails (its children are killed).
const REP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 64 B round trip: latency, lower is better.
    RoundTrip,
    /// One-way stream: messages/s, higher is better.
    OneWay,
}

struct Measure {
    id: &'static str,
    label: &'static str,
    kind: Kind,
    size: usize,
    /// (messages, warm-up) for a full and a `--quick` run.
    full: (u64, u64),
    quick: (u64, u64),
    /// iceoryx2: listener wait + notify per sample (true) or `receive()` in a spin loop.
    /// Ours: `recv` with the default options (true) or a spinning subscription.
    blocking: bool,
}

const MEASURES: &[Measure] = &[
    Measure {
        id: "rtt_64_blocking",
        label: "64 B round trip, blocking wait",
        kind: Kind::RoundTrip,
        size: 64,
        full: (10_000, 1_000),
        quick: (2_000, 200),
        blocking: true,
    },
    Measure {
        id: "rtt_64_spin",
        label: "64 B round trip, busy-wait",
        kind: Kind::RoundTrip,
        size: 64,
        full: (10_000, 1_000),
        quick: (2_000, 200),
        blocking: false,
    },
    Measure {
        id: "oneway_4k",
        label: "4 KiB one-way, blocking wait",
        kind: Kind::OneWay,
        size: 4 << 10,
        full: (50_000, 2_000),
        quick: (10_000, 1_000),
        blocking: true,
    },
    Measure {
        id: "oneway_1m",
        label: "1 MiB one-way, blocking wait",
        kind: Kind::OneWay,
        size: 1 << 20,
        full: (2_048, 32),
        quick: (256, 16),
        blocking: true,
    },
    Measure {
        id: "oneway_4k_spin",
        label: "4 KiB one-way, busy-wait receiver",
        kind: Kind::OneWay,
        size: 4 << 10,
        full: (50_000, 2_000),
        quick: (10_000, 1_000),
        blocking: false,
    },
    Measure {
        id: "oneway_1m_spin",
        label: "1 MiB one-way, busy-wait receiver",
        kind: Kind::OneWay,
        size: 1 << 20,
        full: (2_048, 32),
        quick: (256, 16),
        blocking: false,
    },
];

/// The measures run by default (the spin one-way ones need `--spin-throughput`).
fn default_measure(m: &Measure) -> bool {
    m.kind == Kind::RoundTrip || m.blocking
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Iceoryx2,
    Ours,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::Iceoryx2 => "iceoryx2",
            Self::Ours => "ours",
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Self::Iceoryx2 => "ice",
            Self::Ours => "ours",
        }
    }
}

struct Opts {
    reps: usize,
    quick: bool,
    json: bool,
    spin_throughput: bool,
    only: Option<String>,
    window: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: ipc-pubsub-peers [--reps N] [--quick] [--json] [--spin-throughput] [--only ID]\n\
         \n  --reps N            repetitions, each with fresh processes (default 5)\
         \n  --quick             fewer messages per repetition\
         \n  --json              print the results as JSON after the table\
         \n  --spin-throughput   also the one-way measures with a busy-wait receiver\
         \n  --only ID           only the measures whose id contains ID\
         \n  --window N          subscriber queue depth, both systems (default 8)"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        std::process::exit(match child(&args[1..]) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("child {}: {e}", args.get(1).map_or("?", String::as_str));
                1
            }
        });
    }
    let mut opts = Opts { reps: 5, quick: false, json: false, spin_throughput: false, only: None, window: WINDOW };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => {
                opts.reps = it.next().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or_else(|| usage())
            }
            "--quick" => opts.quick = true,
            "--json" => opts.json = true,
            "--spin-throughput" => opts.spin_throughput = true,
            "--only" => opts.only = Some(it.next().unwrap_or_else(|| usage())),
            "--window" => {
                opts.window = it.next().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or_else(|| usage())
            }
            _ => usage(),
        }
    }
    if let Err(e) = parent(&opts) {
        eprintln!("ipc-pubsub-peers: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// Children

/// `child <role> <cpu|-> <fd> <size> <msgs> <warmup> <window> <name> <blocking 0|1>`
fn child(args: &[String]) -> Res<()> {
    let [role, cpu, fd, size, msgs, warmup, window, name, blocking] = args else {
        return Err(format!("bad child arguments {args:?}"));
    };
    let num = |s: &String| s.parse::<u64>().map_err(err("child argument"));
    // First of all, before any thread starts: every thread inherits the mask.
    if cpu != "-" {
        common::pin(num(cpu)? as usize)?;
    }
    let mut ctl = Control::from_fd(num(fd)? as i32);
    let case = Case {
        size: num(size)? as usize,
        msgs: num(msgs)?,
        warmup: num(warmup)?,
        window: num(window)? as usize,
        name: name.clone(),
    };
    let blocking = blocking == "1";
    let report = match role.as_str() {
        "ice-ping" => ice::ping(&case, &mut ctl, blocking)?,
        "ice-echo" => ice::echo(&case, &mut ctl, blocking)?,
        "ice-send" => ice::send(&case, &mut ctl, blocking)?,
        "ice-recv" => ice::recv(&case, &mut ctl, blocking)?,
        "ours-ping" => ours::ping(&case, &mut ctl, blocking)?,
        "ours-echo" => ours::echo(&case, &mut ctl, blocking)?,
        "ours-send" => ours::send(&case, &mut ctl, blocking)?,
        "ours-recv" => ours::recv(&case, &mut ctl, blocking)?,
        other => return Err(format!("unknown role {other}")),
    };
    report.print();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Parent

/// What one repetition gave.
#[derive(Clone, Debug)]
enum RepValue {
    Latency { median_ns: u64, p99_ns: u64 },
    Rate { msgs_per_s: f64 },
}

struct Outcome {
    value: RepValue,
    via: Value,
}

fn parent(opts: &Opts) -> Res<()> {
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(err("current_exe"))?;
    let cpus = allowed_cpus()?;
    let (send_cpu, recv_cpu) = match cpus.as_slice() {
        [a, b, ..] => (Some(*a), Some(*b)),
        _ => (None, None),
    };
    let run_id = format!("{:08x}", run_suffix());
    let machine = machine();
    println!("ipc-pubsub-peers: iceoryx2 0.10.0 vs ipc-driver-std, run {run_id}");
    println!("machine: {}", machine["summary"].as_str().unwrap_or("?"));
    match (send_cpu, recv_cpu) {
        (Some(s), Some(r)) => println!("placement: sender pinned to CPU {s}, receiver to CPU {r}"),
        _ => println!(
            "placement: only one CPU is allowed ({cpus:?}): both processes share it, unpinned; \
             the busy-wait measures are skipped (a spinner would starve its peer)"
        ),
    }
    let before = load_sample();
    println!("load before the run: {}", before.describe());
    println!(
        "{} repetitions per measure and system, fresh processes each, queue depth {}, {}\n",
        opts.reps,
        opts.window,
        if opts.quick { "--quick message counts" } else { "full message counts" }
    );
    let stat0 = read_proc_stat();

    let mut rows = Vec::new();
    for (mi, m) in MEASURES.iter().enumerate() {
        if !(default_measure(m) || opts.spin_throughput) {
            continue;
        }
        if let Some(only) = &opts.only
            && !m.id.contains(only.as_str())
        {
            continue;
        }
        if !m.blocking && send_cpu.is_none() {
            rows.push(Row::skipped(m, "one CPU only"));
            continue;
        }
        let (msgs, warmup) = if opts.quick { m.quick } else { m.full };
        let mut per: [(Vec<RepValue>, Value); 2] = [(Vec::new(), Value::Null), (Vec::new(), Value::Null)];
        for rep in 0..opts.reps {
            // Alternate which system goes first, so drift in the machine's load hits both.
            let order = if rep % 2 == 0 {
                [System::Iceoryx2, System::Ours]
            } else {
                [System::Ours, System::Iceoryx2]
            };
            for sys in order {
                let name = match sys {
                    // iceoryx2 service names: a path-like name unique to the run.
                    System::Iceoryx2 => format!("ipc-pubsub-peers/{run_id}/{}/{rep}", m.id),
                    // Our group name becomes a socket path: keep it short.
                    System::Ours => format!("pp{run_id}m{mi}r{rep}"),
                };
                let case = Case { size: m.size, msgs, warmup, window: opts.window, name };
                let t = Instant::now();
                let out = run_rep(&exe, m, sys, &case, send_cpu, recv_cpu)
                    .map_err(|e| format!("{} {} rep {rep}: {e}", m.id, sys.name()))?;
                eprintln!(
                    "  {:<16} {:<8} rep {rep}: {} ({:.1} s)",
                    m.id,
                    sys.name(),
                    show(&out.value, m.size),
                    t.elapsed().as_secs_f64()
                );
                let slot = &mut per[(sys == System::Ours) as usize];
                slot.0.push(out.value);
                slot.1 = out.via;
            }
        }
        rows.push(Row::new(m, &per[0], &per[1]));
    }
    let stat1 = read_proc_stat();
    let after = load_sample_now();
    let cleanup = ice_cleanup(&run_id);
    let secs = started.elapsed().as_secs_f64();

    println!();
    print_table(&rows);
    let busy = busy_fraction(stat0, stat1);
    println!(
        "\nload during the run (all CPUs, our children included): {}; after: {}",
        busy.map_or("?".into(), |b| format!("{:.0} % busy", b * 100.0)),
        after
    );
    println!("iceoryx2 resources left by this run: {cleanup}");
    println!("wall time: {secs:.0} s");
    println!(
        "command: cargo run --release -- --reps {}{}{}{}",
        opts.reps,
        if opts.window == WINDOW { String::new() } else { format!(" --window {}", opts.window) },
        if opts.quick { " --quick" } else { "" },
        if opts.spin_throughput { " --spin-throughput" } else { "" }
    );
    if opts.json {
        let j = json!({
            "run": run_id,
            "iceoryx2": "0.10.0",
            "machine": machine,
            "load_before": before.describe(),
            "busy_during": busy,
            "load_after": after,
            "reps": opts.reps,
            "quick": opts.quick,
            "window": opts.window,
            "wall_s": secs,
            "cleanup": cleanup,
            "measures": rows.iter().map(Row::json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&j).map_err(err("json"))?);
    }
    Ok(())
}

/// Runs one repetition of `m` for `sys`: two fresh processes, sender and receiver.
fn run_rep(
    exe: &std::path::Path,
    m: &Measure,
    sys: System,
    case: &Case,
    send_cpu: Option<usize>,
    recv_cpu: Option<usize>,
) -> Res<Outcome> {
    let (send_role, recv_role) = match m.kind {
        Kind::RoundTrip => ("ping", "echo"),
        Kind::OneWay => ("send", "recv"),
    };
    let (a, b) = UnixStream::pair().map_err(err("socketpair"))?;
    // Each end is inherited by its child alone: clear its close-on-exec just for that spawn.
    let sender = spawn(exe, &format!("{}-{send_role}", sys.tag()), send_cpu, &a, case, m.blocking)?;
    drop(a);
    let receiver = spawn(exe, &format!("{}-{recv_role}", sys.tag()), recv_cpu, &b, case, m.blocking)?;
    drop(b);
    let s = collect(sender);
    let r = collect(receiver);
    let deadline = Instant::now() + REP_TIMEOUT;
    let wait = |rx: &mpsc::Receiver<Res<Value>>, pid: u32| -> Res<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => v,
            Err(_) => Err(format!("child {pid} timed out")),
        }
    };
    let sv = wait(&s.1, s.0);
    if sv.is_err() {
        // Our own child, by pid: it would wait for a peer that is gone.
        let _ = kill(Pid::from_raw(r.0 as i32), Signal::SIGKILL);
    }
    let rv = wait(&r.1, r.0);
    let (sv, rv) = match (sv, rv) {
        (Ok(sv), Ok(rv)) => (sv, rv),
        (sv, rv) => {
            // Our own children only, by pid.
            for pid in [s.0, r.0] {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            return Err(format!("sender: {:?}; receiver: {:?}", sv.err(), rv.err()));
        }
    };
    let num = |v: &Value, k: &str| v[k].as_u64().ok_or_else(|| format!("no {k} in {v}"));
    let all = case.all();
    match m.kind {
        Kind::RoundTrip => {
            if num(&sv, "msgs")? != all || num(&rv, "msgs")? != all {
                return Err(format!("round trips: ping {sv}, echo {rv}"));
            }
            // The initiator checked every echo; check its total too.
            let p = Payload::new(case.size);
            let expect = (0..all).fold(0u64, |a, seq| a.wrapping_add(p.sum(seq)));
            if num(&sv, "checksum")? != expect {
                return Err("round trip checksum differs".into());
            }
            Ok(Outcome {
                value: RepValue::Latency {
                    median_ns: num(&sv, "median_ns")?,
                    p99_ns: num(&sv, "p99_ns")?,
                },
                via: sv["via"].clone(),
            })
        }
        Kind::OneWay => {
            if num(&rv, "msgs")? != all || num(&sv, "msgs")? != all {
                return Err(format!("messages: sender {sv}, receiver {rv}"));
            }
            if num(&sv, "checksum")? != num(&rv, "checksum")? {
                return Err(format!("checksums differ: sender {sv}, receiver {rv}"));
            }
            let secs = sv["secs"].as_f64().ok_or("no secs")?;
            Ok(Outcome {
                value: RepValue::Rate { msgs_per_s: case.msgs as f64 / secs },
                via: rv["via"].clone(),
            })
        }
    }
}

fn spawn(
    exe: &std::path::Path,
    role: &str,
    cpu: Option<usize>,
    fd: &UnixStream,
    case: &Case,
    blocking: bool,
) -> Res<std::process::Child> {
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).map_err(err("fcntl"))?;
    let r = Command::new(exe)
        .arg("child")
        .arg(role)
        .arg(cpu.map_or("-".to_string(), |c| c.to_string()))
        .arg(fd.as_raw_fd().to_string())
        .args([case.size, case.msgs as usize, case.warmup as usize, case.window].map(|n| n.to_string()))
        .arg(&case.name)
        .arg(if blocking { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(err("spawn"));
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(err("fcntl"))?;
    r
}

/// Waits for a child on a thread; gives its pid and a channel with its `RESULT` line.
fn collect(mut c: std::process::Child) -> (u32, mpsc::Receiver<Res<Value>>) {
    let pid = c.id();
    let (tx, rx) = mpsc::channel();
    let stdout = c.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        let mut result = None;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(j) = line.strip_prefix("RESULT ") {
                result = serde_json::from_str::<Value>(j).ok();
            } else {
                println!("{line}");
            }
        }
        let status = c.wait();
        let _ = tx.send(match (status, result) {
            (Ok(s), Some(v)) if s.success() => Ok(v),
            (s, _) => Err(format!("child {pid} failed: {s:?}")),
        });
    });
    (pid, rx)
}

// ---------------------------------------------------------------------------------------
// Results

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn show(v: &RepValue, size: usize) -> String {
    match v {
        RepValue::Latency { median_ns, p99_ns } => {
            format!("{:.1} µs (p99 {:.1})", *median_ns as f64 / 1e3, *p99_ns as f64 / 1e3)
        }
        RepValue::Rate { msgs_per_s } => format!(
            "{:.0} k msg/s, {:.2} GB/s",
            msgs_per_s / 1e3,
            msgs_per_s * size as f64 / 1e9
        ),
    }
}

/// One measure's result: medians over the repetitions of each system.
struct Row {
    id: &'static str,
    label: &'static str,
    kind: Kind,
    size: usize,
    /// (median, median p99) in ns, or (msgs/s, 0), per system; None if skipped.
    ice: Option<(f64, f64)>,
    ours: Option<(f64, f64)>,
    reps: [Vec<RepValue>; 2],
    via: [Value; 2],
    note: Option<&'static str>,
}

impl Row {
    fn skipped(m: &Measure, why: &'static str) -> Self {
        Self {
            id: m.id,
            label: m.label,
            kind: m.kind,
            size: m.size,
            ice: None,
            ours: None,
            reps: [Vec::new(), Vec::new()],
            via: [Value::Null, Value::Null],
            note: Some(why),
        }
    }

    fn new(m: &Measure, ice: &(Vec<RepValue>, Value), ours: &(Vec<RepValue>, Value)) -> Self {
        let summary = |v: &[RepValue]| -> (f64, f64) {
            let a = v.iter().map(|r| match r {
                RepValue::Latency { median_ns, .. } => *median_ns as f64,
                RepValue::Rate { msgs_per_s } => *msgs_per_s,
            });
            let b = v.iter().map(|r| match r {
                RepValue::Latency { p99_ns, .. } => *p99_ns as f64,
                RepValue::Rate { .. } => 0.0,
            });
            (median_f(a.collect()), median_f(b.collect()))
        };
        Self {
            id: m.id,
            label: m.label,
            kind: m.kind,
            size: m.size,
            ice: Some(summary(&ice.0)),
            ours: Some(summary(&ours.0)),
            reps: [ice.0.clone(), ours.0.clone()],
            via: [ice.1.clone(), ours.1.clone()],
            note: (!m.blocking).then_some(
                "ours: a spinning subscription (SubscriptionOptions::spin 1 s): the receiving thread polls the rings",
            ),
        }
    }

    fn ratio(&self) -> Option<f64> {
        Some(self.ours?.0 / self.ice?.0)
    }

    fn cell(&self, v: Option<(f64, f64)>) -> String {
        match (v, self.kind) {
            (None, _) => "–".into(),
            (Some((m, p99)), Kind::RoundTrip) => format!("{:.1} µs (p99 {:.1})", m / 1e3, p99 / 1e3),
            (Some((r, _)), Kind::OneWay) => {
                format!("{:.0} k msg/s = {:.2} GB/s", r / 1e3, r * self.size as f64 / 1e9)
            }
        }
    }

    fn verdict(&self) -> String {
        match (self.ratio(), self.kind) {
            (None, _) => String::new(),
            (Some(r), Kind::RoundTrip) if r <= 1.0 => format!("{r:.2}x (at or ahead)"),
            (Some(r), Kind::RoundTrip) => format!("{r:.2}x (slower)"),
            (Some(r), Kind::OneWay) if r >= 1.0 => format!("{r:.2} (at or ahead)"),
            (Some(r), Kind::OneWay) => format!("{r:.2} (behind)"),
        }
    }

    fn json(&self) -> Value {
        let reps = |v: &[RepValue]| -> Vec<Value> {
            v.iter()
                .map(|r| match r {
                    RepValue::Latency { median_ns, p99_ns } => json!({"median_ns": median_ns, "p99_ns": p99_ns}),
                    RepValue::Rate { msgs_per_s } => json!({"msgs_per_s": msgs_per_s}),
                })
                .collect()
        };
        let sys = |v: Option<(f64, f64)>, r: &[RepValue], via: &Value| match (v, self.kind) {
            (None, _) => Value::Null,
            (Some((m, p99)), Kind::RoundTrip) => {
                json!({"median_ns": m, "p99_ns": p99, "reps": reps(r), "via": via})
            }
            (Some((rate, _)), Kind::OneWay) => json!({
                "msgs_per_s": rate,
                "gb_per_s": rate * self.size as f64 / 1e9,
                "reps": reps(r),
                "via": via,
            }),
        };
        json!({
            "id": self.id,
            "label": self.label,
            "size": self.size,
            "better": if self.kind == Kind::RoundTrip { "lower" } else { "higher" },
            "iceoryx2": sys(self.ice, &self.reps[0], &self.via[0]),
            "ours": sys(self.ours, &self.reps[1], &self.via[1]),
            "ours_over_iceoryx2": self.ratio(),
            "note": self.note,
        })
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "| measure | iceoryx2 | ours | ours ÷ iceoryx2 |\n|---|---|---|---|"
    );
    for r in rows {
        let via = r.via[1]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join("+"))
            .filter(|s| !s.is_empty())
            .map(|s| format!(" [{s}]"))
            .unwrap_or_default();
        println!(
            "| {} | {} | {}{via} | {} |",
            r.label,
            r.cell(r.ice),
            r.cell(r.ours),
            r.verdict()
        );
    }
    println!(
        "\nLatency: medians of per-repetition medians (p99: median of per-repetition p99s); \
         ≤ 1.0 is at or ahead of iceoryx2.\nThroughput: median of per-repetition rates; \
         ≥ 1.0 is at or ahead. [ ]: how our messages travelled."
    );
    for r in rows.iter().filter_map(|r| r.note.map(|n| (r.label, n))) {
        println!("note, {}: {}", r.0, r.1);
    }
}

// ---------------------------------------------------------------------------------------
// Machine, load, placement, cleanup

fn allowed_cpus() -> Res<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(err("sched_getaffinity"))?;
    Ok((0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect())
}

/// A suffix unique enough for one run's names: time and pid mixed.
fn run_suffix() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let x = t ^ (u64::from(std::process::id()) << 32);
    (x ^ (x >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15) as u32
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "?".into());
    let online = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let allowed = allowed_cpus().map(|c| c.len()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    json!({
        "cpu": model,
        "cpus_online": online,
        "cpus_allowed": allowed,
        "kernel": kernel,
        "summary": format!("{model}, {online} CPUs ({allowed} allowed), Linux {kernel}"),
    })
}

/// Aggregate (busy, total) jiffies from `/proc/stat`.
fn read_proc_stat() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

fn busy_fraction(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (a?, b?);
    (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64)
}

struct LoadSample {
    busy: Option<f64>,
    loadavg: String,
}

impl LoadSample {
    fn describe(&self) -> String {
        format!(
            "{} of all CPUs busy over 1 s (others' work), loadavg {}",
            self.busy.map_or("?".into(), |b| format!("{:.0} %", b * 100.0)),
            self.loadavg
        )
    }
}

/// The machine's load from others, sampled for a second before we start.
fn load_sample() -> LoadSample {
    let a = read_proc_stat();
    std::thread::sleep(Duration::from_secs(1));
    let b = read_proc_stat();
    LoadSample { busy: busy_fraction(a, b), loadavg: loadavg() }
}

fn load_sample_now() -> String {
    format!("loadavg {}", loadavg())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Removes what dead iceoryx2 nodes left behind (a child killed mid-run) and counts the
/// services of this run that still exist (there should be none: every child drops its
/// ports, services and node, and the last owner removes a service).
fn ice_cleanup(run_id: &str) -> String {
    use iceoryx2::prelude::*;
    let node = match ice::node() {
        Ok(n) => n,
        Err(e) => return format!("could not check ({e})"),
    };
    let cleaned = node.try_cleanup_dead_nodes();
    let prefix = format!("ipc-pubsub-peers/{run_id}/");
    let mut left = 0usize;
    let listed = ipc::Service::list(node.config(), |d| {
        if d.static_details.name().as_str().starts_with(&prefix) {
            left += 1;
        }
        CallbackProgression::Continue
    });
    match listed {
        Ok(()) => format!("{left} services (dead-node cleanup: {cleaned:?})"),
        Err(e) => format!("could not list services ({e:?}); dead-node cleanup: {cleaned:?}"),
    }
}
