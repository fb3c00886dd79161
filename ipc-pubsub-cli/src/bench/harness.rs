//! The harness of `bench payload`: pinned child processes and their reports (the numbers
//! they compute are in [`measure`](super::measure)).
//!
//! # Processes
//! A measurement runs in a *team* of fresh processes: one sender and zero or more receivers,
//! each this very executable re-executed as `ipc-pubsub bench-child ROLE ...` (a hidden
//! subcommand), never a bare `fork()` of this process. [`Harness::run`] starts the receivers
//! first, then the sender, and waits until all of them have exited:
//! - **Pinning.** Every child pins itself with `sched_setaffinity` before it allocates or
//!   touches anything. [`Placement::CrossCore`] (the default) puts the sender on the first CPU
//!   this process may use and every receiver on the second; [`Placement::SameCore`] puts them
//!   all on the first. On the 2-vCPU dev VM these are cores 0 and 1, as in `BENCH.md`.
//! - **Wiring.** The harness creates one socketpair per receiver ([`Wiring`]), and each child
//!   inherits its ends: their close-on-exec flag is cleared in the child only, between `fork`
//!   and `exec`, and their numbers go on the command line (`--fd N`). The parent closes its
//!   copies once the children run, so a receiver sees end of stream when the sender exits.
//!   A team can also get a fresh random group name (`--group`), for children that find each
//!   other through the pub/sub layer.
//! - **Reports.** A child prints one JSON line, its [`ChildReport`], on stdout and exits 0.
//!   Timing happens inside the children, with [`Instant`]: per sample for round trips
//!   (into a preallocated vector, summarised in the child), over the whole timed section
//!   for throughput. The warm-up (round trips, or messages fully acknowledged) comes first and
//!   is not timed.
//! - **Always reaped.** Children get `PR_SET_PDEATHSIG = SIGKILL` (so they die with this
//!   process even if it is SIGKILLed), and the guard that holds them kills and reaps whatever
//!   still runs when it is dropped: after an error, a timeout, a panic, or SIGINT/SIGTERM,
//!   which arrive through a self-pipe and end any wait at once ([`CliError::Interrupted`]).
//!   A child that fails makes the whole measurement fail with its stderr.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::measure::{CpuSample, LatencySummary};
use crate::children::{TempGroup, die_with_parent};
use crate::{CliError, Result};

/// How long one repetition (all of its processes) may take before it counts as hung.
const REP_TIMEOUT: Duration = Duration::from_secs(120);

/// Lines of a failed child's stderr quoted in the error.
const STDERR_LINES: usize = 12;

/// "Idle" for [`Harness::wait_idle`]: less than this share of all CPUs busy...
pub(super) const IDLE_BUSY_PERCENT: f64 = 4.0;
/// ... for this long in a row.
pub(super) const IDLE_QUIET: Duration = Duration::from_secs(3);
/// How often [`Harness::wait_idle`] looks.
const IDLE_STEP: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------------------
// Placement

/// Where the children of a team run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Placement {
    /// Sender on the first CPU this process may use, receivers on the second.
    CrossCore,
    /// Sender and receivers all on the first CPU.
    SameCore,
}

/// The CPUs the children of a team pin themselves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) struct Cores {
    pub(super) sender: usize,
    pub(super) receiver: usize,
}

impl Cores {
    /// The cores for `placement`, among the CPUs in this process's affinity mask.
    pub(super) fn for_placement(placement: Placement) -> Result<Self> {
        let set = sched_getaffinity(Pid::from_raw(0)).map_err(io::Error::from)?;
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect();
        Self::pick(placement, &cpus)
    }

    fn pick(placement: Placement, cpus: &[usize]) -> Result<Self> {
        match (placement, cpus) {
            (_, []) => Err(CliError::Failed(
                "no CPU in this process's affinity mask".into(),
            )),
            (Placement::SameCore, [first, ..]) => Ok(Self {
                sender: *first,
                receiver: *first,
            }),
            (Placement::CrossCore, [first, second, ..]) => Ok(Self {
                sender: *first,
                receiver: *second,
            }),
            (Placement::CrossCore, [_]) => Err(CliError::Failed(
                "--placement cross-core needs two CPUs, and this process may use one; try \
                 --placement same-core"
                    .into(),
            )),
        }
    }
}

/// Pins the calling thread (a child's only thread) to `core`.
fn pin(core: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(core)
        .map_err(|e| CliError::Failed(format!("CPU {core} does not exist: {e}")))?;
    sched_setaffinity(Pid::from_raw(0), &set)
        .map_err(|e| CliError::Failed(format!("cannot pin to CPU {core}: {e}")))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Teams (parent side)

/// The sockets that connect the sender with each receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wiring {
    /// None; the children find each other some other way (see [`Team::group`]).
    Nothing,
    /// One blocking `SOCK_SEQPACKET` socketpair per receiver.
    SeqPacket,
    /// One non-blocking `SOCK_SEQPACKET` socketpair per receiver, as
    /// [`ipc_os::socket::socketpair_seqpacket`] makes them (for `ipc_os::socket` record I/O).
    SeqPacketNonBlocking,
    /// One blocking `SOCK_STREAM` socketpair per receiver.
    Stream,
}

impl Wiring {
    /// A connected pair: the sender's end, then the receiver's. `None` for [`Self::Nothing`].
    fn pair(self) -> Result<Option<(OwnedFd, OwnedFd)>> {
        let blocking = |kind| {
            socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC)
                .map_err(io::Error::from)
        };
        Ok(match self {
            Self::Nothing => None,
            Self::SeqPacket => Some(blocking(SockType::SeqPacket)?),
            Self::SeqPacketNonBlocking => Some(ipc_os::socket::socketpair_seqpacket()?),
            Self::Stream => Some(blocking(SockType::Stream)?),
        })
    }
}

/// The parameters of one repetition, passed to every child of its team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) struct Case {
    /// Bytes per message.
    pub(super) size: usize,
    /// Timed messages (round trips, copies).
    pub(super) msgs: u64,
    /// Untimed messages before them.
    pub(super) warmup: u64,
    /// Messages a sender may have unacknowledged per receiver (and slots of a pool).
    pub(super) window: u32,
    /// Receivers (0 for a lone process such as `memcpy`).
    pub(super) receivers: usize,
    /// Messages per second for a paced series; 0: as fast as the receivers take them.
    pub(super) hz: u32,
}

/// One sender and its receivers, as [`Harness::run`] starts them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Team<'a> {
    /// The sender's role (`bench-child ROLE`), pinned to [`Cores::sender`].
    pub(super) sender: &'a str,
    /// Every receiver's role, pinned to [`Cores::receiver`]; receiver `i` gets `--index i`.
    pub(super) receiver: &'a str,
    /// How the sender and each receiver are connected.
    pub(super) wiring: Wiring,
    /// Whether to pass a fresh random `--group` name to every child.
    pub(super) group: bool,
    pub(super) case: Case,
    /// Extra `--opt KEY=VALUE` pairs for every child.
    pub(super) opts: &'a [(&'a str, &'a str)],
}

/// What the children of a team reported.
#[derive(Debug)]
pub(super) struct Reports {
    pub(super) sender: ChildReport,
    /// By receiver index.
    pub(super) receivers: Vec<ChildReport>,
}

/// Starts teams of child processes; see the [module docs](self).
pub(super) struct Harness {
    exe: PathBuf,
    cores: Cores,
    interrupts: Interrupts,
}

impl Harness {
    /// A harness for this executable, with children placed as `placement` says.
    pub(super) fn new(placement: Placement) -> Result<Self> {
        Ok(Self {
            exe: std::env::current_exe()?,
            cores: Cores::for_placement(placement)?,
            interrupts: Interrupts::new()?,
        })
    }

    /// The CPUs the children use.
    pub(super) fn cores(&self) -> Cores {
        self.cores
    }

    /// Fails with [`CliError::Interrupted`] if SIGINT or SIGTERM arrived.
    pub(super) fn check_interrupted(&self) -> Result<()> {
        match self.interrupts.fired() {
            Some(name) => Err(CliError::Interrupted(name)),
            None => Ok(()),
        }
    }

    /// Waits until the CPUs have been less than [`IDLE_BUSY_PERCENT`] busy for [`IDLE_QUIET`]
    /// in a row (BENCH.md's rule before each section), but at most `max`. Returns whether
    /// they were; fails on SIGINT or SIGTERM.
    pub(super) fn wait_idle(&self, max: Duration) -> Result<bool> {
        let deadline = Instant::now() + max;
        let mut quiet = Duration::ZERO;
        let Some(mut prev) = CpuSample::now() else {
            return Ok(false);
        };
        while quiet < IDLE_QUIET {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.interrupts.sleep(IDLE_STEP);
            self.check_interrupted()?;
            let Some(cur) = CpuSample::now() else {
                return Ok(false);
            };
            quiet = match prev.busy_percent(&cur) {
                Some(busy) if busy < IDLE_BUSY_PERCENT => quiet + IDLE_STEP,
                _ => Duration::ZERO,
            };
            prev = cur;
        }
        Ok(true)
    }

    /// Runs one repetition: starts the team's receivers, then its sender, waits until every
    /// one has exited 0, and returns their reports. Any failure kills and reaps the rest.
    pub(super) fn run(&self, team: &Team<'_>) -> Result<Reports> {
        self.check_interrupted()?;
        // Declared before `running`: its directory goes after the children.
        let group = if team.group {
            Some(TempGroup::new("bench")?)
        } else {
            None
        };
        let group = group.as_ref().map(TempGroup::name);
        let mut sender_ends = Vec::new();
        let mut receiver_ends = Vec::new();
        for _ in 0..team.case.receivers {
            if let Some((s, r)) = team.wiring.pair()? {
                sender_ends.push(s);
                receiver_ends.push(r);
            }
        }
        let mut running = Running::default();
        for i in 0..team.case.receivers {
            let fds = receiver_ends
                .get(i)
                .map(std::slice::from_ref)
                .unwrap_or(&[]);
            let cmd = self.command(team, team.receiver, self.cores.receiver, i, fds, group);
            running.spawn(team.receiver, cmd, fds)?;
        }
        let cmd = self.command(team, team.sender, self.cores.sender, 0, &sender_ends, group);
        running.spawn(team.sender, cmd, &sender_ends)?;
        // Our copies would keep every connection open after its children exit.
        drop(sender_ends);
        drop(receiver_ends);
        let mut reports = running.wait(Instant::now() + REP_TIMEOUT, &self.interrupts)?;
        let sender = reports.pop().expect("the sender was started last");
        Ok(Reports {
            sender,
            receivers: reports,
        })
    }

    fn command(
        &self,
        team: &Team<'_>,
        role: &str,
        core: usize,
        index: usize,
        fds: &[OwnedFd],
        group: Option<&str>,
    ) -> Command {
        let c = &team.case;
        let mut cmd = Command::new(&self.exe);
        if let Some(g) = group {
            cmd.args(["--group", g]);
        }
        cmd.args(["bench-child", role])
            .args(["--core", &core.to_string()])
            .args(["--index", &index.to_string()])
            .args(["--receivers", &c.receivers.to_string()])
            .args(["--size", &c.size.to_string()])
            .args(["--msgs", &c.msgs.to_string()])
            .args(["--warmup", &c.warmup.to_string()])
            .args(["--window", &c.window.to_string()])
            .args(["--hz", &c.hz.to_string()]);
        for fd in fds {
            cmd.args(["--fd", &fd.as_raw_fd().to_string()]);
        }
        for (k, v) in team.opts {
            cmd.arg("--opt").arg(format!("{k}={v}"));
        }
        cmd.env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

/// Lets the process that `cmd` starts inherit `fds` under their current numbers.
///
/// Every fd of ours is close-on-exec; the flag belongs to the descriptor table, which the
/// child gets a copy of at `fork`, so clearing it there leaves our own table alone and hands
/// exactly these fds (and no fd of another team) to the child.
fn inherit(cmd: &mut Command, fds: &[OwnedFd]) {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    if raw.is_empty() {
        return;
    }
    // SAFETY: the closure runs in the forked child before `exec`, where only
    // async-signal-safe calls are allowed: it calls fcntl(2) and reads `raw`, which was
    // allocated before the fork, and allocates nothing (an `io::Error` from an errno is not
    // boxed). The fds are open: their `OwnedFd`s outlive `spawn`.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &raw {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// One started child.
struct Proc {
    role: String,
    child: std::process::Child,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    out: Vec<u8>,
    err: Vec<u8>,
    reaped: bool,
}

impl Proc {
    fn stderr_tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.err);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(STDERR_LINES);
        lines[from..]
            .iter()
            .map(|l| format!("\n    {} stderr: {l}", self.role))
            .collect()
    }
}

/// The children of one team: killed (SIGKILL) and reaped when dropped, unless already reaped.
#[derive(Default)]
struct Running {
    procs: Vec<Proc>,
}

impl Running {
    fn spawn(&mut self, role: &str, mut cmd: Command, fds: &[OwnedFd]) -> Result<()> {
        die_with_parent(&mut cmd);
        inherit(&mut cmd, fds);
        let mut child = cmd.spawn()?;
        self.procs.push(Proc {
            role: role.to_string(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            out: Vec::new(),
            err: Vec::new(),
            reaped: false,
        });
        Ok(())
    }

    /// Reads every child's stdout and stderr until both close, reaps it, and returns the
    /// reports in start order. Fails as soon as one child fails, at `deadline`, or on a
    /// signal.
    fn wait(&mut self, deadline: Instant, interrupts: &Interrupts) -> Result<Vec<ChildReport>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            for p in &mut self.procs {
                if p.reaped || p.stdout.is_some() || p.stderr.is_some() {
                    continue;
                }
                let status = p.child.wait()?;
                p.reaped = true;
                if !status.success() {
                    if let Some(name) = interrupts.fired() {
                        return Err(CliError::Interrupted(name));
                    }
                    if status.signal() == Some(SIGINT) {
                        return Err(CliError::Interrupted("SIGINT"));
                    }
                    return Err(CliError::Failed(format!(
                        "bench-child {} exited ({status}){}",
                        p.role,
                        p.stderr_tail()
                    )));
                }
            }
            if self.procs.iter().all(|p| p.reaped) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let tails: String = self.procs.iter().map(Proc::stderr_tail).collect();
                return Err(CliError::Failed(format!(
                    "a repetition took longer than {REP_TIMEOUT:?}{tails}"
                )));
            }
            let ready = self.poll(left, interrupts)?;
            if let Some(name) = interrupts.fired() {
                return Err(CliError::Interrupted(name));
            }
            for (i, is_err) in ready {
                let p = &mut self.procs[i];
                let (pipe, into): (&mut dyn Read, _) = match (is_err, &mut p.stdout, &mut p.stderr)
                {
                    (false, Some(out), _) => (out, &mut p.out),
                    (true, _, Some(err)) => (err, &mut p.err),
                    _ => continue,
                };
                match pipe.read(&mut buf) {
                    Ok(0) => {
                        if is_err {
                            p.stderr = None;
                        } else {
                            p.stdout = None;
                        }
                    }
                    Ok(n) => into.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.procs
            .iter()
            .map(|p| {
                let text = String::from_utf8_lossy(&p.out);
                let line = text.lines().rev().find(|l| !l.trim().is_empty());
                line.and_then(|l| serde_json::from_str(l).ok())
                    .ok_or_else(|| {
                        CliError::Failed(format!(
                            "bench-child {} printed no report: {text:?}{}",
                            p.role,
                            p.stderr_tail()
                        ))
                    })
            })
            .collect()
    }

    /// Waits until a pipe or a signal pipe is readable (or closed); returns the readable
    /// pipes as (child, is-stderr).
    fn poll(&self, left: Duration, interrupts: &Interrupts) -> Result<Vec<(usize, bool)>> {
        let mut which = Vec::new();
        let mut fds = Vec::new();
        for (i, p) in self.procs.iter().enumerate() {
            if let Some(out) = &p.stdout {
                which.push((i, false));
                fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
            }
            if let Some(err) = &p.stderr {
                which.push((i, true));
                fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
            }
        }
        for (pipe, _) in &interrupts.pipes {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
        }
        let timeout = PollTimeout::try_from(left.min(Duration::from_secs(60)))
            .expect("60 s fits a poll timeout");
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e).into()),
        }
        Ok(which
            .into_iter()
            .zip(&fds)
            .filter(|(_, fd)| fd.any().unwrap_or(true))
            .map(|(w, _)| w)
            .collect())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if !p.reaped {
                let _ = p.child.kill();
                let _ = p.child.wait();
                p.reaped = true;
            }
        }
    }
}

/// SIGINT and SIGTERM, each turned into a byte on a pipe of its own (the self-pipe trick),
/// so that a wait on the children's pipes ends when one arrives. Unregistered when dropped.
struct Interrupts {
    pipes: Vec<(UnixStream, &'static str)>,
    ids: Vec<SigId>,
}

impl Interrupts {
    fn new() -> Result<Self> {
        let mut me = Self {
            pipes: Vec::new(),
            ids: Vec::new(),
        };
        for (signal, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            let (read, write) = UnixStream::pair()?;
            read.set_nonblocking(true)?;
            me.ids
                .push(signal_hook::low_level::pipe::register(signal, write)?);
            me.pipes.push((read, name));
        }
        Ok(me)
    }

    /// Sleeps for `d`, or until a signal arrives.
    fn sleep(&self, d: Duration) {
        let mut fds: Vec<PollFd<'_>> = self
            .pipes
            .iter()
            .map(|(pipe, _)| PollFd::new(pipe.as_fd(), PollFlags::POLLIN))
            .collect();
        let timeout = PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX);
        // EINTR (a signal) ends the sleep early, which is what we want.
        let _ = poll(&mut fds, timeout);
    }

    /// The name of a signal that has arrived, if any; its bytes are consumed, and once one
    /// has fired the benchmark ends, so a later call need not see it again.
    fn fired(&self) -> Option<&'static str> {
        let mut buf = [0u8; 16];
        self.pipes
            .iter()
            .find(|(pipe, _)| matches!((&*pipe).read(&mut buf), Ok(n) if n > 0))
            .map(|(_, name)| *name)
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Children (child side)

/// Options of the hidden `bench-child` subcommand: one process of a `bench payload` team.
/// The harness writes these command lines; people do not.
#[derive(Debug, Args)]
pub(crate) struct ChildArgs {
    /// What this process does (`seqpacket-ping`, `fresh-recv`, ...).
    role: String,
    /// The CPU to pin this process to.
    #[arg(long)]
    core: usize,
    /// Receiver index (0 for the sender).
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Receivers in the team.
    #[arg(long, default_value_t = 0)]
    receivers: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 0)]
    size: usize,
    /// Timed messages.
    #[arg(long, default_value_t = 0)]
    msgs: u64,
    /// Untimed messages first.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Unacknowledged messages allowed per receiver.
    #[arg(long, default_value_t = 8)]
    window: u32,
    /// Messages per second of a paced series (0: not paced).
    #[arg(long, default_value_t = 0)]
    hz: u32,
    /// An inherited socket, by number (repeatable; one per receiver for a sender).
    #[arg(long = "fd", value_name = "N")]
    fds: Vec<RawFd>,
    /// A role-specific option (repeatable).
    #[arg(long = "opt", value_name = "KEY=VALUE", value_parser = parse_opt)]
    opts: Vec<(String, String)>,
}

fn parse_opt(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// What a child role is given: its [`Case`] and sockets.
#[derive(Debug)]
pub(super) struct ChildCtx {
    /// The CPU it is pinned to.
    pub(super) core: usize,
    /// Receiver index (0 for the sender).
    pub(super) index: usize,
    /// The repetition's parameters.
    pub(super) case: Case,
    /// The group name the team got (`Team::group`), else the CLI's `--group` default.
    pub(super) group: String,
    /// Inherited sockets, in order: one per receiver for a sender, one for a receiver.
    pub(super) fds: Vec<OwnedFd>,
    opts: Vec<(String, String)>,
}

impl ChildCtx {
    /// A role-specific option (`--opt KEY=VALUE`), parsed.
    pub(super) fn opt<T: FromStr>(&self, key: &str) -> Result<Option<T>> {
        self.opts
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| {
                v.parse()
                    .map_err(|_| CliError::Failed(format!("bad --opt {key}={v}")))
            })
            .transpose()
    }

    /// The one inherited socket of a receiver.
    pub(super) fn take_fd(&mut self) -> Result<OwnedFd> {
        match self.fds.len() {
            1 => Ok(self.fds.pop().expect("one fd")),
            n => Err(CliError::Failed(format!("expected one --fd, got {n}"))),
        }
    }
}

/// What a child prints as its one JSON line.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct ChildReport {
    /// Messages (round trips, copies) handled, warm-up included.
    pub(super) msgs: u64,
    /// Messages in the timed section.
    #[serde(default)]
    pub(super) timed: u64,
    /// Seconds of the timed section, for throughput.
    #[serde(default)]
    pub(super) secs: Option<f64>,
    /// The timed section's per-sample round-trip times, summarised.
    #[serde(default)]
    pub(super) latency: Option<LatencySummary>,
    /// [`checksum`](super::measure::checksum) of every payload handled, added up (wrapping):
    /// what a sender sent, what a receiver read.
    #[serde(default)]
    pub(super) checksum: Option<u64>,
    /// Pub/sub roles: the shared-memory rings mapped in this process after its links carried
    /// messages (at the end of the warm-up or of the run), which the repetition checks against
    /// the rings it asked for.
    #[serde(default)]
    pub(super) ring_mappings: Option<usize>,
    /// The CPU the process ran on when it finished (filled in by the harness).
    #[serde(default)]
    pub(super) cpu: Option<usize>,
}

/// A child role: what `bench-child ROLE` runs once pinned.
pub(super) type RoleFn = fn(&mut ChildCtx) -> Result<ChildReport>;

/// `bench-child`: pins this process, adopts the inherited sockets, runs the role and prints
/// its report. `roles` maps a role name to its function.
pub(super) fn child_main(
    group: &str,
    args: &ChildArgs,
    roles: fn(&str) -> Option<RoleFn>,
) -> Result<()> {
    let run = roles(&args.role)
        .ok_or_else(|| CliError::Failed(format!("no bench-child role {:?}", args.role)))?;
    pin(args.core)?;
    let mut ctx = ChildCtx {
        core: args.core,
        index: args.index,
        case: Case {
            size: args.size,
            msgs: args.msgs,
            warmup: args.warmup,
            window: args.window,
            receivers: args.receivers,
            hz: args.hz,
        },
        group: group.to_string(),
        fds: adopt(&args.fds)?,
        opts: args.opts.clone(),
    };
    let mut report = run(&mut ctx)?;
    report.cpu = sched_getcpu().ok();
    if report.cpu.is_some_and(|cpu| cpu != ctx.core) {
        return Err(CliError::Failed(format!(
            "pinned to CPU {}, but ran on CPU {:?}",
            ctx.core, report.cpu
        )));
    }
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, &report).map_err(io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Takes ownership of the sockets the harness handed down (see [`inherit`]).
fn adopt(raw: &[RawFd]) -> Result<Vec<OwnedFd>> {
    let mut seen = BTreeSet::new();
    raw.iter()
        .map(|&fd| {
            // Distinct, not stdio, and open (procfs lists exactly the open fds): the
            // conditions the SAFETY argument below needs.
            let open = std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok();
            if fd < 3 || !seen.insert(fd) || !open {
                return Err(CliError::Failed(format!(
                    "--fd {fd} is not an inherited socket"
                )));
            }
            // SAFETY: the harness cleared this fd's close-on-exec flag for us and passed its
            // number; it is open (checked above), nothing else in this process knows or owns
            // the number, and each number is adopted once (checked above).
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_picks_cores_from_the_affinity_mask() {
        let cross = Cores::pick(Placement::CrossCore, &[2, 5, 7]).expect("two cpus");
        assert_eq!((cross.sender, cross.receiver), (2, 5));
        let same = Cores::pick(Placement::SameCore, &[2, 5]).expect("one cpu");
        assert_eq!((same.sender, same.receiver), (2, 2));
        assert!(Cores::pick(Placement::CrossCore, &[0]).is_err());
        assert!(Cores::pick(Placement::SameCore, &[]).is_err());
    }

    #[test]
    fn options_are_key_value_pairs() {
        assert_eq!(parse_opt("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_opt("ab").is_err());
        let ctx = ChildCtx {
            core: 0,
            index: 0,
            case: Case {
                size: 1,
                msgs: 1,
                warmup: 0,
                window: 8,
                receivers: 1,
                hz: 0,
            },
            group: "g".into(),
            fds: Vec::new(),
            opts: vec![("sndbuf".into(), "4096".into()), ("x".into(), "y".into())],
        };
        assert_eq!(ctx.opt::<usize>("sndbuf").expect("parses"), Some(4096));
        assert_eq!(ctx.opt::<usize>("none").expect("absent"), None);
        assert!(ctx.opt::<usize>("x").is_err());
    }
}
