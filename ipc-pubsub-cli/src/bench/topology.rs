//! `bench topology`: what the topology layer costs and how fast it heals, measured with
//! `ipc-pubsub node` children of this executable.
//!
//! - **failover**: in a group of 16, the time from SIGKILL of the hub's process to the moment
//!   the last survivor prints `node_left` for it (and, for comparison, `synced` with the new
//!   hub), over `--trials` trials, each in a fresh group;
//! - **convergence**: the time from starting 64 nodes at once until every one of them sees all
//!   64 (spawning included);
//! - **idle CPU**: the CPU time (utime + stime from `/proc/<pid>/stat`) that a converged group
//!   of 16 burns in 5 s, summed over its processes, as a percentage of one core; and the same
//!   from the scheduler's nanosecond run times (`/proc/<pid>/task/*/schedstat`), since utime
//!   and stime count whole 10 ms ticks.
//!
//! A line's time is its `ts`, when the child wrote it (on this process's monotonic clock, see
//! `children::written_at`): pipe latency and this process's delay in reading are not
//! counted. Percentiles are nearest-rank.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use clap::Args;
use ipc_proto::NodeId;
use nix::sys::signal::Signal;
use serde::Serialize;

use super::{Machine, build, machine, progress};
use crate::children::{Fleet, SeenKind, random_group};
use crate::json::Line;
use crate::{CliError, Result, Timing};

/// Nodes in the failover and idle groups.
const GROUP: usize = 16;
/// Nodes started at once for the convergence measurement.
const CROWD: usize = 64;
/// How long the idle group is watched.
const IDLE: Duration = Duration::from_secs(5);
/// How long any one phase may take before the benchmark gives up.
const DEADLINE: Duration = Duration::from_secs(60);

/// Options of `bench topology`.
#[derive(Debug, Args)]
pub(crate) struct TopologyArgs {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Failover trials, each in a fresh group of 16.
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) trials: u32,

    #[command(flatten)]
    timing: Timing,
}

/// The `--json` document of `bench topology`.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    build: &'static str,
    keepalive_ms: Option<u64>,
    grace_ms: Option<u64>,
    failover: Failover,
    convergence: Convergence,
    idle: Idle,
}

#[derive(Debug, Serialize)]
struct Failover {
    nodes: usize,
    trials: usize,
    /// SIGKILL of the hub until the last survivor's `node_left` for it.
    node_left_ms: Stats,
    /// SIGKILL of the hub until the last survivor's `synced` with the new hub.
    synced_ms: Stats,
}

#[derive(Debug, Serialize)]
struct Stats {
    median: f64,
    p99: f64,
    min: f64,
    max: f64,
    samples: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct Convergence {
    nodes: usize,
    /// From the first spawn until every node sees every node.
    ms: f64,
    /// How long starting the processes took (one after the other, from this thread).
    spawn_ms: f64,
    /// From the last spawn until every node sees every node.
    after_spawn_ms: f64,
    /// `node_joined` lines printed in all (nodes² when nothing is reported twice).
    node_joined_lines: usize,
}

#[derive(Debug, Serialize)]
struct Idle {
    nodes: usize,
    seconds: f64,
    /// CPU time of all the nodes' processes (utime + stime, counted in clock ticks), as a
    /// percentage of one core.
    cpu_percent: f64,
    /// The busiest process's share.
    busiest_percent: f64,
    /// The same from the scheduler's nanosecond run time of every thread
    /// (`/proc/<pid>/task/*/schedstat`), where the kernel has it: ticks are 10 ms.
    cpu_percent_schedstat: Option<f64>,
    /// Lines the nodes printed while idle (0: nothing changed).
    lines: usize,
}

/// Runs `bench topology`.
pub(super) fn run(args: &TopologyArgs) -> Result<()> {
    let machine = machine();
    let build = build();
    progress(&format!(
        "bench topology on {} ({} cores), {}; {build} build",
        machine.cpu, machine.cores, machine.kernel
    ));
    if cfg!(debug_assertions) {
        progress("warning: a debug build; use `cargo run --release` for numbers worth quoting");
    }
    let mut fleet = Fleet::new(args.timing.to_args(), false)?;
    let failover = failover(&mut fleet, args.trials as usize)?;
    let convergence = convergence(&mut fleet)?;
    let idle = idle(&mut fleet)?;
    let report = Report {
        machine,
        build,
        keepalive_ms: args.timing.keepalive_ms,
        grace_ms: args.timing.grace_ms,
        failover,
        convergence,
        idle,
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

/// Starts `n` nodes at once in a fresh group and waits until each sees all `n` and follows
/// the same hub. Returns the group, the children's indices, when spawning began and ended,
/// and when the group converged.
fn start_group(fleet: &mut Fleet, n: usize, prefix: &str) -> Result<StartedGroup> {
    let group = random_group("bench")?;
    let first = fleet.children().len();
    let began = Instant::now();
    for i in 0..n {
        fleet.spawn(&group, &format!("{prefix}{i:02}"), &[])?;
    }
    let spawned = Instant::now();
    let members: Vec<usize> = (first..first + n).collect();
    let mut converged = spawned;
    let mut joined_lines = 0;
    let what = format!("{n} nodes to see each other");
    let deadline = Instant::now() + DEADLINE;
    while !converged_on_one_hub(fleet, &members, n) {
        let seen = fleet.next(deadline, &what)?;
        match seen.what {
            SeenKind::Line(Line::NodeJoined { .. }) => joined_lines += 1,
            SeenKind::Exited(status) => {
                return Err(CliError::Failed(format!(
                    "{} exited ({status}) while the group formed",
                    fleet.child(seen.child).name
                )));
            }
            SeenKind::Line(_) => {}
        }
        converged = seen.at;
    }
    Ok(StartedGroup {
        members,
        began,
        spawned,
        converged,
        joined_lines,
    })
}

struct StartedGroup {
    members: Vec<usize>,
    began: Instant,
    spawned: Instant,
    converged: Instant,
    joined_lines: usize,
}

fn converged_on_one_hub(fleet: &Fleet, members: &[usize], n: usize) -> bool {
    let hub = fleet.child(members[0]).mirror.hub;
    members.iter().all(|&i| {
        let m = &fleet.child(i).mirror;
        m.synced && m.nodes.len() == n && m.hub == hub
    })
}

fn failover(fleet: &mut Fleet, trials: usize) -> Result<Failover> {
    let mut left_ms = Vec::with_capacity(trials);
    let mut synced_ms = Vec::with_capacity(trials);
    for trial in 1..=trials {
        let g = start_group(fleet, GROUP, &format!("f{trial:02}n"))?;
        let old: NodeId = fleet
            .child(g.members[0])
            .mirror
            .hub
            .expect("converged on a hub");
        let hub = fleet
            .by_node(old)
            .ok_or_else(|| CliError::Failed("the hub is none of the nodes".into()))?;
        let survivors: Vec<usize> = g.members.iter().copied().filter(|&i| i != hub).collect();
        let killed = Instant::now();
        fleet.signal(hub, Signal::SIGKILL)?;
        let t = fleet.await_takeover(old, &survivors, killed, killed + DEADLINE, |_, _| {})?;
        let (l, s) = (ms(t.last_left()), ms(t.last_synced()));
        progress(&format!(
            "failover trial {trial}/{trials}: last node_left {l:.1} ms, last synced {s:.1} ms \
             (group formed in {:.0} ms)",
            ms(g.converged - g.began)
        ));
        left_ms.push(l);
        synced_ms.push(s);
        fleet.kill_all();
    }
    Ok(Failover {
        nodes: GROUP,
        trials,
        node_left_ms: Stats::of(left_ms),
        synced_ms: Stats::of(synced_ms),
    })
}

fn convergence(fleet: &mut Fleet) -> Result<Convergence> {
    let g = start_group(fleet, CROWD, "c")?;
    let c = Convergence {
        nodes: CROWD,
        ms: ms(g.converged - g.began),
        spawn_ms: ms(g.spawned - g.began),
        after_spawn_ms: ms(g.converged.saturating_duration_since(g.spawned)),
        node_joined_lines: g.joined_lines,
    };
    progress(&format!(
        "convergence: {CROWD} nodes see each other {:.0} ms after the first spawn, {:.0} ms \
         after the last",
        c.ms, c.after_spawn_ms
    ));
    fleet.kill_all();
    Ok(c)
}

fn idle(fleet: &mut Fleet) -> Result<Idle> {
    let g = start_group(fleet, GROUP, "i")?;
    let pids: Vec<u32> = g.members.iter().map(|&i| fleet.child(i).pid).collect();
    let before = cpu_ticks(&pids)?;
    let before_ns = run_time_ns(&pids);
    let t0 = Instant::now();
    let until = t0 + IDLE;
    // The measurement window: read whatever the nodes print until it ends (they should
    // print nothing; a node that exits is a failure).
    let mut lines = 0;
    while let Some(seen) = fleet.poll(until)? {
        match seen.what {
            SeenKind::Line(_) => lines += 1,
            SeenKind::Exited(status) => {
                return Err(CliError::Failed(format!(
                    "{} exited ({status}) while idle",
                    fleet.child(seen.child).name
                )));
            }
        }
    }
    let after = cpu_ticks(&pids)?;
    let after_ns = run_time_ns(&pids);
    let seconds = t0.elapsed().as_secs_f64();
    let hz = clock_ticks_per_second() as f64;
    let percent = |ticks: u64| round3(ticks as f64 / hz / seconds * 100.0);
    let deltas: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
    let idle = Idle {
        nodes: GROUP,
        seconds: round3(seconds),
        cpu_percent: percent(deltas.iter().sum()),
        busiest_percent: percent(deltas.iter().copied().max().unwrap_or(0)),
        cpu_percent_schedstat: before_ns
            .zip(after_ns)
            .map(|(b, a)| round3((a - b) as f64 / 1e9 / seconds * 100.0)),
        lines,
    };
    progress(&format!(
        "idle: {GROUP} nodes used {:.2} % of one core over {seconds:.1} s (schedstat: {})",
        idle.cpu_percent,
        idle.cpu_percent_schedstat
            .map_or_else(|| "n/a".into(), |p| format!("{p:.3} %"))
    ));
    fleet.terminate(
        g.members.iter().copied(),
        Instant::now() + DEADLINE,
        |_, _| {},
    )?;
    Ok(idle)
}

/// utime + stime of each process, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> Result<Vec<u64>> {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            parse_cpu_ticks(&stat)
                .ok_or_else(|| CliError::Failed(format!("cannot parse /proc/{pid}/stat: {stat:?}")))
        })
        .collect()
}

/// The run time of every thread of the processes, in nanoseconds (the first field of
/// `/proc/<pid>/task/<tid>/schedstat`); `None` if the kernel does not keep it.
fn run_time_ns(pids: &[u32]) -> Option<u64> {
    let mut total = 0;
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// Fields 14 and 15 of `/proc/<pid>/stat`, counted after the command name, which is in
/// parentheses and may itself contain spaces and parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> i64 {
    // SAFETY: sysconf(3) has no preconditions; it only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz } else { 100 }
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Stats {
    fn of(samples: Vec<f64>) -> Self {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least p % of the samples at or below it.
        let rank = |p: f64| {
            let n = sorted.len();
            let r = ((p / 100.0) * n as f64).ceil() as usize;
            sorted[r.clamp(1, n) - 1]
        };
        Self {
            median: rank(50.0),
            p99: rank(99.0),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            samples,
        }
    }
}

fn table(r: &Report) -> String {
    let timing = |v: Option<u64>, default: u64| {
        v.map_or_else(
            || format!("{default} ms (default)"),
            |ms| format!("{ms} ms"),
        )
    };
    let f = &r.failover;
    let c = &r.convergence;
    let i = &r.idle;
    let row = |name: &str, s: &Stats| {
        format!(
            "  {name:<30} {:>9.1} {:>9.1} {:>9.1} {:>9.1}\n",
            s.median, s.p99, s.min, s.max
        )
    };
    let mut out = String::new();
    out.push_str("ipc-pubsub bench topology\n");
    out.push_str(&format!(
        "  machine    {} ({} cores), {}\n",
        r.machine.cpu, r.machine.cores, r.machine.kernel
    ));
    out.push_str(&format!(
        "  build      {}; keepalive {}, grace {}\n\n",
        r.build,
        timing(r.keepalive_ms, 2000),
        timing(r.grace_ms, 200)
    ));
    out.push_str(&format!(
        "failover: SIGKILL of the hub of {} nodes, {} trials, each in a fresh group\n",
        f.nodes, f.trials
    ));
    out.push_str(&format!(
        "  {:<30} {:>9} {:>9} {:>9} {:>9}\n",
        "ms from the kill until", "median", "p99", "min", "max"
    ));
    out.push_str(&row("the last survivor's node_left", &f.node_left_ms));
    out.push_str(&row("the last survivor's synced", &f.synced_ms));
    out.push_str(&format!(
        "\nconvergence: {n} nodes started at once\n  every node sees all {n}: {:.0} ms after the \
         first spawn, {:.0} ms after the last (spawning took {:.0} ms)\n  node_joined lines: {} \
         ({n}² = {})\n",
        c.ms,
        c.after_spawn_ms,
        c.spawn_ms,
        c.node_joined_lines,
        c.nodes * c.nodes,
        n = c.nodes,
    ));
    out.push_str(&format!(
        "\nidle CPU: {} converged nodes for {:.1} s\n  utime+stime: {:.2} % of one core for all {} \
         processes (busiest {:.2} %; 10 ms ticks)\n",
        i.nodes, i.seconds, i.cpu_percent, i.nodes, i.busiest_percent
    ));
    if let Some(p) = i.cpu_percent_schedstat {
        out.push_str(&format!(
            "  schedstat:   {p:.3} % of one core for all {} processes (nanosecond run times)\n",
            i.nodes
        ));
    }
    out.push_str(&format!("  lines printed while idle: {}\n", i.lines));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (ipc (pub) sub) S 1 4242 4242 0 -1 4194560 1234 0 0 0 17 5 0 0 20 0 3 0 \
                    123456 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn stats_use_nearest_rank() {
        let s = Stats::of((1..=20).rev().map(f64::from).collect());
        assert_eq!((s.median, s.p99, s.min, s.max), (10.0, 20.0, 1.0, 20.0));
        assert_eq!(s.samples.len(), 20);
        let one = Stats::of(vec![7.0]);
        assert_eq!(
            (one.median, one.p99, one.min, one.max),
            (7.0, 7.0, 7.0, 7.0)
        );
    }
}
