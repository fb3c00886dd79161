//! `bench topology`: what the topology layer costs and how fast it heals, measured with
//! `ipc-pubsub node` children of this executable.
//!
//! - **failover** (issue 17's measurement): in a group of `--nodes` (16), the time from
//!   SIGKILL of one node's process until the last survivor prints `node_left` for it, over
//!   `--kills` kills (20) each in a fresh group: first with the hub killed (also until the last
//!   survivor is `synced` with the new hub), then with a spoke killed. Every `node_left` a
//!   survivor prints for a node that is still alive is a flap, counted from the kill until
//!   `--settle-ms` after the last survivor saw the victim leave. The whole series runs twice,
//!   with pidfds allowed and with `IPC_PUBSUB_NO_PIDFD=1` in the children's environment
//!   (`--pidfd on|off|both`), printed side by side: the difference is what the grace costs;
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

use clap::{Args, ValueEnum};
use ipc_os::pidfd::{NO_PIDFD_ENV, PeerProcess, PidFd};
use ipc_proto::NodeId;
use nix::sys::signal::Signal;
use serde::Serialize;

use super::{Machine, build, machine, progress};
use crate::children::{Fleet, Seen, SeenKind, TempGroup};
use crate::json::Line;
use crate::{CliError, Result, Timing};

/// Nodes in the idle group.
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

    /// Kills of each kind (hub, spoke) per pidfd setting, each in a fresh group.
    #[arg(long, alias = "trials", default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) kills: u32,

    /// Nodes in each failover group.
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u32).range(3..=256))]
    pub(crate) nodes: u32,

    /// Which failover series to run: with pidfds allowed (`on`), with `IPC_PUBSUB_NO_PIDFD=1`
    /// in the children's environment (`off`), or both, side by side.
    #[arg(long, value_enum, default_value_t = PidfdSetting::Both)]
    pub(crate) pidfd: PidfdSetting,

    /// After the last survivor saw the victim leave, keep watching for this long for flaps
    /// (a survivor reporting a live node left).
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub(crate) settle_ms: u64,

    /// Only the failover series: no convergence and no idle CPU measurement.
    #[arg(long)]
    pub(crate) failover_only: bool,

    #[command(flatten)]
    timing: Timing,
}

/// Which failover series `bench topology` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PidfdSetting {
    /// Both, pidfds allowed first.
    Both,
    /// Pidfds allowed (`IPC_PUBSUB_NO_PIDFD` removed from the children's environment).
    On,
    /// `IPC_PUBSUB_NO_PIDFD=1` in the children's environment.
    Off,
}

impl PidfdSetting {
    /// The series to run: whether pidfds are switched off in each.
    fn series(self) -> &'static [bool] {
        match self {
            Self::Both => &[false, true],
            Self::On => &[false],
            Self::Off => &[true],
        }
    }
}

/// The `--json` document of `bench topology`.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    build: &'static str,
    keepalive_ms: Option<u64>,
    grace_ms: Option<u64>,
    /// Whether this process can open a pidfd for a socket's peer: `"available"`, or why not.
    pidfd_host: String,
    settle_ms: u64,
    failover: Vec<Failover>,
    convergence: Option<Convergence>,
    idle: Option<Idle>,
}

/// One failover series: hub kills, then spoke kills, with one pidfd setting.
#[derive(Debug, Serialize)]
struct Failover {
    /// `IPC_PUBSUB_NO_PIDFD=1` was in the children's environment.
    no_pidfd: bool,
    nodes: usize,
    kills: usize,
    hub: HubKills,
    spoke: SpokeKills,
}

#[derive(Debug, Serialize)]
struct HubKills {
    /// SIGKILL of the hub until the last survivor's `node_left` for it.
    node_left_ms: Stats,
    /// SIGKILL of the hub until the last survivor's `synced` with the new hub.
    synced_ms: Stats,
    /// `node_left` lines survivors printed for live nodes, over all kills.
    flaps: usize,
}

#[derive(Debug, Serialize)]
struct SpokeKills {
    /// SIGKILL of a spoke until the last survivor's `node_left` for it.
    node_left_ms: Stats,
    /// `node_left` lines survivors printed for live nodes, over all kills.
    flaps: usize,
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
    let pidfd_host = pidfd_host()?;
    progress(&format!(
        "pidfds for socket peers on this host: {pidfd_host}"
    ));
    let mut fleet = Fleet::new(args.timing.to_args(), false)?;
    let plan = Plan {
        nodes: args.nodes as usize,
        kills: args.kills as usize,
        settle: Duration::from_millis(args.settle_ms),
    };
    let mut failover = Vec::new();
    for &no_pidfd in args.pidfd.series() {
        fleet.set_env(NO_PIDFD_ENV, no_pidfd.then_some("1"));
        failover.push(series(&mut fleet, &plan, no_pidfd)?);
    }
    fleet.set_env(NO_PIDFD_ENV, None);
    let (convergence, idle) = if args.failover_only {
        (None, None)
    } else {
        (Some(convergence(&mut fleet)?), Some(idle(&mut fleet)?))
    };
    let report = Report {
        machine,
        build,
        keepalive_ms: args.timing.keepalive_ms,
        grace_ms: args.timing.grace_ms,
        pidfd_host,
        settle_ms: args.settle_ms,
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

/// Whether this process gets a pidfd for the peer of a socketpair (itself): `"available"`, or
/// why not. The children run the same executable on the same kernel.
fn pidfd_host() -> Result<String> {
    let (a, _b) = ipc_os::socket::socketpair_seqpacket()?;
    Ok(match PidFd::open_peer(&a) {
        PeerProcess::Watch(_) => "available".into(),
        PeerProcess::AlreadyExited => "unavailable (this process reads as exited)".into(),
        PeerProcess::Unavailable(why) => format!("unavailable ({why})"),
    })
}

/// The shape of every failover series.
struct Plan {
    nodes: usize,
    kills: usize,
    settle: Duration,
}

/// One failover series: `plan.kills` hub kills, then as many spoke kills.
fn series(fleet: &mut Fleet, plan: &Plan, no_pidfd: bool) -> Result<Failover> {
    let label = if no_pidfd {
        format!("{NO_PIDFD_ENV}=1")
    } else {
        "pidfds allowed".to_string()
    };
    let mut hub_left = Vec::with_capacity(plan.kills);
    let mut hub_synced = Vec::with_capacity(plan.kills);
    let mut hub_flaps = 0;
    for kill in 1..=plan.kills {
        let k = kill_hub(fleet, plan, kill)?;
        progress(&format!(
            "{label}: hub kill {kill}/{}: last node_left {:.1} ms, last synced {:.1} ms, \
             {} flaps (group formed in {:.0} ms)",
            plan.kills, k.left_ms, k.synced_ms, k.flaps, k.formed_ms
        ));
        hub_left.push(k.left_ms);
        hub_synced.push(k.synced_ms);
        hub_flaps += k.flaps;
    }
    let mut spoke_left = Vec::with_capacity(plan.kills);
    let mut spoke_flaps = 0;
    for kill in 1..=plan.kills {
        let k = kill_spoke(fleet, plan, kill)?;
        progress(&format!(
            "{label}: spoke kill {kill}/{}: last node_left {:.1} ms, {} flaps (group formed \
             in {:.0} ms)",
            plan.kills, k.left_ms, k.flaps, k.formed_ms
        ));
        spoke_left.push(k.left_ms);
        spoke_flaps += k.flaps;
    }
    Ok(Failover {
        no_pidfd,
        nodes: plan.nodes,
        kills: plan.kills,
        hub: HubKills {
            node_left_ms: Stats::of(hub_left),
            synced_ms: Stats::of(hub_synced),
            flaps: hub_flaps,
        },
        spoke: SpokeKills {
            node_left_ms: Stats::of(spoke_left),
            flaps: spoke_flaps,
        },
    })
}

/// What one kill measured.
struct Kill {
    left_ms: f64,
    synced_ms: f64,
    flaps: usize,
    formed_ms: f64,
}

/// Counts flaps: `node_left` lines that survivors print for nodes other than `victim`.
struct Flaps<'a> {
    victim: NodeId,
    survivors: &'a [usize],
    count: usize,
}

impl Flaps<'_> {
    fn see(&mut self, seen: &Seen) {
        if let SeenKind::Line(Line::NodeLeft { node }) = &seen.what
            && node.0 != self.victim
            && self.survivors.contains(&seen.child)
        {
            self.count += 1;
        }
    }

    /// Watches what the children print until `plan.settle` has passed, counting flaps; a
    /// survivor that exits is a failure.
    fn settle(&mut self, fleet: &mut Fleet, plan: &Plan) -> Result<()> {
        let until = Instant::now() + plan.settle;
        while let Some(seen) = fleet.poll(until)? {
            if let SeenKind::Exited(status) = seen.what
                && self.survivors.contains(&seen.child)
            {
                return Err(CliError::Failed(format!(
                    "{} exited ({status}) after a kill",
                    fleet.child(seen.child).name
                )));
            }
            self.see(&seen);
        }
        Ok(())
    }
}

/// Forms a fresh group of `plan.nodes`, kills its hub, and times the takeover.
fn kill_hub(fleet: &mut Fleet, plan: &Plan, kill: usize) -> Result<Kill> {
    let g = start_group(fleet, plan.nodes, &format!("h{kill:02}n"))?;
    let old = current_hub(fleet, &g)?;
    let hub = fleet
        .by_node(old)
        .ok_or_else(|| CliError::Failed("the hub is none of the nodes".into()))?;
    let survivors: Vec<usize> = g.members.iter().copied().filter(|&i| i != hub).collect();
    let mut flaps = Flaps {
        victim: old,
        survivors: &survivors,
        count: 0,
    };
    let killed = Instant::now();
    fleet.signal(hub, Signal::SIGKILL)?;
    let t = fleet.await_takeover(old, &survivors, killed, killed + DEADLINE, |_, s| {
        flaps.see(s);
    })?;
    flaps.settle(fleet, plan)?;
    let k = Kill {
        left_ms: ms(t.last_left()),
        synced_ms: ms(t.last_synced()),
        flaps: flaps.count,
        formed_ms: ms(g.converged - g.began),
    };
    fleet.kill_all();
    Ok(k)
}

/// Forms a fresh group of `plan.nodes`, kills one of its spokes (a different one each kill),
/// and times until every survivor has seen it leave.
fn kill_spoke(fleet: &mut Fleet, plan: &Plan, kill: usize) -> Result<Kill> {
    let g = start_group(fleet, plan.nodes, &format!("s{kill:02}n"))?;
    let hub = current_hub(fleet, &g)?;
    let spokes: Vec<usize> = g
        .members
        .iter()
        .copied()
        .filter(|&i| fleet.child(i).node != Some(hub))
        .collect();
    let victim = spokes[kill % spokes.len()];
    let node = fleet
        .child(victim)
        .node
        .ok_or_else(|| CliError::Failed("a node printed no `started` line".into()))?;
    let survivors: Vec<usize> = g.members.iter().copied().filter(|&i| i != victim).collect();
    let mut flaps = Flaps {
        victim: node,
        survivors: &survivors,
        count: 0,
    };
    let mut left = vec![None; survivors.len()];
    let killed = Instant::now();
    fleet.signal(victim, Signal::SIGKILL)?;
    let deadline = killed + DEADLINE;
    while left.iter().any(Option::is_none) {
        let s = fleet.next(deadline, "every survivor to see the killed spoke leave")?;
        flaps.see(&s);
        let Some(k) = survivors.iter().position(|&i| i == s.child) else {
            continue;
        };
        match &s.what {
            SeenKind::Line(Line::NodeLeft { node: n }) if n.0 == node => {
                left[k] = Some(s.at.saturating_duration_since(killed));
            }
            SeenKind::Exited(status) => {
                return Err(CliError::Failed(format!(
                    "{} exited ({status}) after a spoke was killed",
                    fleet.child(s.child).name
                )));
            }
            SeenKind::Line(_) => {}
        }
    }
    flaps.settle(fleet, plan)?;
    let last = left.into_iter().flatten().max().unwrap_or_default();
    let k = Kill {
        left_ms: ms(last),
        synced_ms: 0.0,
        flaps: flaps.count,
        formed_ms: ms(g.converged - g.began),
    };
    fleet.kill_all();
    Ok(k)
}

/// The hub a converged group follows.
fn current_hub(fleet: &Fleet, g: &StartedGroup) -> Result<NodeId> {
    fleet
        .child(g.members[0])
        .mirror
        .hub
        .ok_or_else(|| CliError::Failed("a converged group has no hub".into()))
}

/// Starts `n` nodes at once in a fresh group and waits until each sees all `n` and follows
/// the same hub. Returns the group, the children's indices, when spawning began and ended,
/// and when the group converged.
fn start_group(fleet: &mut Fleet, n: usize, prefix: &str) -> Result<StartedGroup> {
    let group = TempGroup::new("bench")?;
    let first = fleet.children().len();
    let began = Instant::now();
    for i in 0..n {
        fleet.spawn(group.name(), &format!("{prefix}{i:02}"), &[])?;
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
        _group: group,
        members,
        began,
        spawned,
        converged,
        joined_lines,
    })
}

struct StartedGroup {
    /// Its directory goes when this drops: after the caller's `fleet.kill_all()`.
    _group: TempGroup,
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
    let mut out = String::new();
    out.push_str("ipc-pubsub bench topology\n");
    out.push_str(&format!(
        "  machine    {} ({} cores), {}\n",
        r.machine.cpu, r.machine.cores, r.machine.kernel
    ));
    out.push_str(&format!(
        "  build      {}; keepalive {}, grace {}\n",
        r.build,
        timing(r.keepalive_ms, 2000),
        timing(r.grace_ms, 200)
    ));
    out.push_str(&format!("  pidfds     {} on this host\n\n", r.pidfd_host));
    if let Some(first) = r.failover.first() {
        out.push_str(&failover_table(&r.failover, first, r.settle_ms));
    }
    if let Some(c) = &r.convergence {
        out.push_str(&format!(
            "\nconvergence: {n} nodes started at once\n  every node sees all {n}: {:.0} ms after \
             the first spawn, {:.0} ms after the last (spawning took {:.0} ms)\n  node_joined \
             lines: {} ({n}² = {})\n",
            c.ms,
            c.after_spawn_ms,
            c.spawn_ms,
            c.node_joined_lines,
            c.nodes * c.nodes,
            n = c.nodes,
        ));
    }
    if let Some(i) = &r.idle {
        out.push_str(&format!(
            "\nidle CPU: {} converged nodes for {:.1} s\n  utime+stime: {:.2} % of one core for \
             all {} processes (busiest {:.2} %; 10 ms ticks)\n",
            i.nodes, i.seconds, i.cpu_percent, i.nodes, i.busiest_percent
        ));
        if let Some(p) = i.cpu_percent_schedstat {
            out.push_str(&format!(
                "  schedstat:   {p:.3} % of one core for all {} processes (nanosecond run \
                 times)\n",
                i.nodes
            ));
        }
        out.push_str(&format!("  lines printed while idle: {}\n", i.lines));
    }
    out
}

/// The failover series side by side: one column (median / p99 in ms, or a count) per series.
fn failover_table(series: &[Failover], first: &Failover, settle_ms: u64) -> String {
    const NAME: usize = 44;
    const COL: usize = 24;
    let mut out = format!(
        "failover: SIGKILL of one node of {}, {} kills of each kind per column, each in a fresh \
         group;\n  flaps: node_left for a live node, until {settle_ms} ms after the last \
         survivor's node_left for the victim\n",
        first.nodes, first.kills
    );
    let head = |f: &Failover| {
        if f.no_pidfd {
            format!("{NO_PIDFD_ENV}=1")
        } else {
            "pidfds allowed".to_string()
        }
    };
    let stats = |s: &Stats| format!("{:.1} / {:.1}", s.median, s.p99);
    let mut row = |name: &str, cell: &dyn Fn(&Failover) -> String| {
        out.push_str(&format!("  {name:<NAME$}"));
        for f in series {
            out.push_str(&format!(" {:>COL$}", cell(f)));
        }
        out.push('\n');
    };
    row("ms from the kill until (median / p99)", &head);
    row("hub killed: last survivor synced, new hub", &|f| {
        stats(&f.hub.synced_ms)
    });
    row("hub killed: last survivor's node_left", &|f| {
        stats(&f.hub.node_left_ms)
    });
    row("hub killed: flaps", &|f| f.hub.flaps.to_string());
    row("spoke killed: last survivor's node_left", &|f| {
        stats(&f.spoke.node_left_ms)
    });
    row("spoke killed: flaps", &|f| f.spoke.flaps.to_string());
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
