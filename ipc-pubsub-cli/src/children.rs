//! `ipc-pubsub node` child processes for `demo` and `bench`: start them, read their JSON lines
//! with deadlines, and always reap them.
//!
//! A [`Fleet`] owns every child it starts. Dropping it (on success, on error, on a panic)
//! kills the children that are still running with SIGKILL and waits for them, so nothing is
//! left behind. Each child also gets `PR_SET_PDEATHSIG = SIGKILL`, so even a fleet that never
//! drops (its process was SIGKILLed) takes its children with it. The kernel sends that signal
//! when the *thread* that started the child exits, so start children from the thread that
//! owns the fleet, and keep the fleet on it.
//!
//! Each child's stdout is read by a thread of its own, which timestamps every line as it
//! arrives and forwards it to one channel; SIGINT and SIGTERM of this process arrive on the
//! same channel. So [`Fleet::next`] waits on everything at once, up to a deadline, and a
//! Ctrl-C ends any wait at once (with [`CliError::Interrupted`], whose unwinding then reaps the
//! children). Nothing here sleeps for a fixed time.
//!
//! The fleet keeps a [`Mirror`] of the group per child, rebuilt from the child's lines, so
//! callers wait on conditions like "every child sees 16 nodes".

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ipc_proto::NodeId;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::json::{self, Line};
use super::{CliError, Result};

/// A private group with a fresh random name (`PREFIX-` and 16 random hex digits) for nodes
/// that the process making it starts (`demo`, `bench`, and the project's multi-process
/// tests). Dropped once those nodes are gone (declare it before the `Fleet`, the handles
/// or the child processes that run them, so that it drops after them), it removes the
/// group's directory from this user's private runtime directory: its lock file and whatever
/// sockets a killed node left. Else every run would leave one directory per group behind (a
/// full `bench payload` makes hundreds, a `cargo test` of the workspace about 180). Nobody
/// else knows the name, so nobody else uses it. It reads as its name (`&group` is a `&str`).
pub struct TempGroup(String);

impl TempGroup {
    /// A fresh name; nothing is created yet (the first node does that). Fails only without
    /// OS randomness.
    pub fn new(prefix: &str) -> io::Result<Self> {
        let r = getrandom::u64().map_err(|e| io::Error::other(format!("no OS randomness: {e}")))?;
        Ok(Self(format!("{prefix}-{r:016x}")))
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TempGroup {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TempGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&TempGroup> for String {
    fn from(group: &TempGroup) -> Self {
        group.0.clone()
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        // Resolving the directory makes it if no node did; removed right after either way.
        if let Ok(dir) = ipc_os::rendezvous::GroupDir::private(&self.0)
            && let Err(e) = dir.remove_all()
        {
            let path = dir.paths().dir().display();
            tracing::debug!(%path, error = %e, "cannot remove a group's directory");
        }
    }
}

/// Makes the process that `cmd` starts get SIGKILL when the thread that starts it exits
/// (`PR_SET_PDEATHSIG`), and fail to start if this process is already gone by then.
///
/// The kernel sends the signal when the *thread* that forked the child exits, so start
/// children from a thread that outlives them (the main thread, for the CLI). The setting
/// survives `exec`.
pub(super) fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before `exec`, where only
    // async-signal-safe calls are allowed. It makes two system calls, prctl(2) and
    // getppid(2), and allocates nothing (an `io::Error` from an errno is not boxed).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died before the prctl: then nobody would reap us.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Lines of a child's stdout and stderr kept to explain a failure.
const KEEP_LINES: usize = 8;

/// What the reader threads and the signal thread report.
enum Msg {
    Line {
        child: usize,
        at: Instant,
        text: String,
    },
    Eof {
        child: usize,
        at: Instant,
    },
    Signal(i32),
}

/// Something a child did, as [`Fleet::next`] returns it.
#[derive(Debug)]
pub(super) struct Seen {
    /// The child's index in the fleet.
    pub(super) child: usize,
    /// When the child wrote the line (its `ts`, see [`written_at`]), or when its stdout
    /// closed.
    pub(super) at: Instant,
    pub(super) what: SeenKind,
}

#[derive(Debug)]
pub(super) enum SeenKind {
    /// A JSON line; already applied to the child's [`Mirror`].
    Line(Line),
    /// The child closed its stdout and has been reaped.
    Exited(ExitStatus),
}

/// How the survivors of a hub's death took over; see [`Fleet::await_takeover`].
#[derive(Debug)]
pub(super) struct Takeover {
    pub(super) survivors: Vec<Survivor>,
    /// The node that runs the new hub.
    pub(super) new_hub: NodeId,
}

/// One survivor of a hub's death.
#[derive(Debug)]
pub(super) struct Survivor {
    pub(super) child: usize,
    /// When it printed `node_left` for the old hub.
    pub(super) left: Duration,
    /// When it printed `synced` with the new hub.
    pub(super) synced: Duration,
}

impl Takeover {
    /// When the last survivor saw the old hub leave.
    pub(super) fn last_left(&self) -> Duration {
        self.survivors
            .iter()
            .map(|s| s.left)
            .max()
            .unwrap_or_default()
    }

    /// When the last survivor synced with the new hub.
    pub(super) fn last_synced(&self) -> Duration {
        self.survivors
            .iter()
            .map(|s| s.synced)
            .max()
            .unwrap_or_default()
    }
}

/// A group as one child's lines describe it.
#[derive(Debug, Default)]
pub(super) struct Mirror {
    pub(super) nodes: BTreeMap<NodeId, Member>,
    /// The hub of the last `synced` line.
    pub(super) hub: Option<NodeId>,
    /// Whether the child is synced with [`hub`](Self::hub): since that `synced`, no
    /// `hub_lost` came.
    pub(super) synced: bool,
}

/// When a line read at `read` was written: its `ts` (the child's wall clock, Unix
/// microseconds) moved onto this process's monotonic clock, so that pipe latency and the time
/// this process took to get to the line are not counted. `read` if the line has no `ts`, or if
/// the wall clock disagrees with the monotonic one by more than [`CLOCK_SLACK`] (it was
/// stepped).
fn written_at(text: &str, read: Instant) -> Instant {
    #[derive(serde::Deserialize)]
    struct Stamp {
        ts: Option<u64>,
    }
    let Ok(Stamp { ts: Some(ts) }) = serde_json::from_str::<Stamp>(text) else {
        return read;
    };
    let (now, wall) = (Instant::now(), json::now_micros());
    let Some(ago) = wall.checked_sub(ts).map(Duration::from_micros) else {
        return read;
    };
    match now.checked_sub(ago) {
        Some(at) if at <= read && read.duration_since(at) <= CLOCK_SLACK => at,
        _ => read,
    }
}

/// The most a line's `ts` may precede its reading before [`written_at`] distrusts it.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// One node of a [`Mirror`].
#[derive(Debug, Default)]
pub(super) struct Member {
    pub(super) name: String,
    pub(super) pid: u32,
    pub(super) publishes: BTreeMap<String, String>,
    pub(super) subscribes: BTreeSet<String>,
}

impl Mirror {
    fn apply(&mut self, line: &Line) {
        match line {
            Line::NodeJoined {
                node, name, pid, ..
            } => {
                let m = self.nodes.entry(node.0).or_default();
                m.name.clone_from(name);
                m.pid = *pid;
            }
            Line::NodeLeft { node } => {
                self.nodes.remove(&node.0);
            }
            Line::TopicAnnounced {
                node, topic, mime, ..
            } => {
                if let Some(m) = self.nodes.get_mut(&node.0) {
                    m.publishes.insert(topic.clone(), mime.clone());
                }
            }
            Line::TopicRetracted { node, topic } => {
                if let Some(m) = self.nodes.get_mut(&node.0) {
                    m.publishes.remove(topic);
                }
            }
            Line::Subscribed { node, topic, .. } => {
                if let Some(m) = self.nodes.get_mut(&node.0) {
                    m.subscribes.insert(topic.clone());
                }
            }
            Line::Unsubscribed { node, topic } => {
                if let Some(m) = self.nodes.get_mut(&node.0) {
                    m.subscribes.remove(topic);
                }
            }
            Line::Synced { hub, .. } => {
                self.hub = Some(hub.0);
                self.synced = true;
            }
            Line::HubLost => self.synced = false,
            Line::Started { .. }
            | Line::HubChanged { .. }
            | Line::BecameHub
            | Line::HubUnresponsive
            | Line::HubResponsive
            | Line::HubClosed { .. }
            | Line::HubAbsent
            | Line::Lagged { .. }
            | Line::Doc { .. }
            | Line::DocState { .. }
            | Line::DocPatched { .. }
            | Line::DocVersionsLost { .. }
            | Line::Other { .. } => {}
        }
    }

    /// How many topic roles (announcements and subscriptions) all nodes hold together.
    pub(super) fn roles(&self) -> usize {
        self.nodes
            .values()
            .map(|m| m.publishes.len() + m.subscribes.len())
            .sum()
    }
}

/// One `ipc-pubsub node` process.
#[derive(Debug)]
pub(super) struct Child {
    pub(super) name: String,
    pub(super) pid: u32,
    /// From its `started` line.
    pub(super) node: Option<NodeId>,
    /// The group as its lines describe it.
    pub(super) mirror: Mirror,
    /// Once it has exited and been reaped.
    pub(super) status: Option<ExitStatus>,
    /// How many lines it printed.
    pub(super) lines: usize,
    /// Killed by [`Fleet::kill_all`]: its remaining output is ignored.
    killed: bool,
    proc: std::process::Child,
    /// The threads reading its stdout and stderr, joined once it is reaped (an exited
    /// thread's stack stays mapped until it is joined, and slows every later `fork`).
    readers: Vec<JoinHandle<()>>,
    recent: VecDeque<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Child {
    /// Whether it is still running (or at least not reaped yet).
    pub(super) fn is_running(&self) -> bool {
        self.status.is_none()
    }

    /// Waits for the process to exit, then for its readers, which end with its pipes.
    fn reap(&mut self) -> io::Result<ExitStatus> {
        let status = self.proc.wait()?;
        self.status = Some(status);
        for t in self.readers.drain(..) {
            let _ = t.join();
        }
        Ok(status)
    }
}

/// The children of one `demo` or `bench` run, their output, and this process's SIGINT and
/// SIGTERM; see the [module docs](self).
pub(super) struct Fleet {
    exe: PathBuf,
    /// Arguments every child gets after `node --name NAME`.
    common: Vec<String>,
    /// Environment variables set (`Some`) or removed (`None`) for every child started from now.
    env: Vec<(String, Option<String>)>,
    echo_stderr: bool,
    children: Vec<Child>,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    signals: Handle,
    signal_thread: Option<JoinHandle<()>>,
}

impl Fleet {
    /// A fleet of this executable's `node` command, each child started with `common` extra
    /// arguments. With `echo_stderr`, children log at debug level and their logs are copied
    /// to this process's stderr, prefixed by their names; otherwise their last lines are only
    /// shown when something fails.
    pub(super) fn new(common: Vec<String>, echo_stderr: bool) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let (tx, rx) = mpsc::channel();
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let to_main = tx.clone();
        let signal_thread = thread::Builder::new()
            .name("ipc-pubsub-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if to_main.send(Msg::Signal(signal)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            exe,
            common,
            env: Vec::new(),
            echo_stderr,
            children: Vec::new(),
            tx,
            rx,
            signals: handle,
            signal_thread: Some(signal_thread),
        })
    }

    /// Sets (`Some`) or removes (`None`) the environment variable `key` for every child
    /// started from now on; children already running keep what they had.
    pub(super) fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.map(str::to_string)));
    }

    /// Starts `ipc-pubsub --group GROUP node --name NAME EXTRA...`; returns its index.
    ///
    /// Children have `PR_SET_PDEATHSIG = SIGKILL`: call this from the thread that owns the
    /// fleet (see the [module docs](self)).
    pub(super) fn spawn(&mut self, group: &str, name: &str, extra: &[String]) -> Result<usize> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["--group", group, "node", "--name", name])
            .args(&self.common)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        if self.echo_stderr {
            cmd.arg("-v");
        }
        die_with_parent(&mut cmd);
        let mut proc = cmd.spawn()?;
        let index = self.children.len();
        let stdout = proc.stdout.take().expect("stdout is piped");
        let stderr = proc.stderr.take().expect("stderr is piped");
        let kept = Arc::new(Mutex::new(VecDeque::new()));
        // In the fleet before anything else can fail, so that it is killed whatever happens.
        self.children.push(Child {
            name: name.to_string(),
            pid: proc.id(),
            node: None,
            mirror: Mirror::default(),
            status: None,
            lines: 0,
            killed: false,
            proc,
            readers: Vec::new(),
            recent: VecDeque::new(),
            stderr: Arc::clone(&kept),
        });
        let tx = self.tx.clone();
        let out = thread::Builder::new()
            .name(format!("ipc-pubsub-out:{name}"))
            .spawn(move || read_stdout(index, stdout, &tx))?;
        self.children[index].readers.push(out);
        let echo = self.echo_stderr.then(|| name.to_string());
        let err = thread::Builder::new()
            .name(format!("ipc-pubsub-err:{name}"))
            .spawn(move || read_stderr(stderr, &kept, echo.as_deref()))?;
        self.children[index].readers.push(err);
        Ok(index)
    }

    /// Every child started so far, by index.
    pub(super) fn children(&self) -> &[Child] {
        &self.children
    }

    /// One child.
    pub(super) fn child(&self, index: usize) -> &Child {
        &self.children[index]
    }

    /// The index of the child whose node is `id`.
    pub(super) fn by_node(&self, id: NodeId) -> Option<usize> {
        self.children.iter().position(|c| c.node == Some(id))
    }

    /// The name of node `id` as the children know it: the child's own name, or the name in
    /// any child's mirror, or the id.
    pub(super) fn name_of(&self, id: NodeId) -> String {
        if let Some(c) = self.by_node(id) {
            return self.children[c].name.clone();
        }
        self.children
            .iter()
            .find_map(|c| c.mirror.nodes.get(&id).map(|m| m.name.clone()))
            .unwrap_or_else(|| id.to_string())
    }

    /// Sends `signal` to a child that has not been reaped (so its pid is still its own).
    pub(super) fn signal(&self, index: usize, signal: Signal) -> Result<()> {
        let c = &self.children[index];
        if c.is_running() {
            let pid = Pid::from_raw(i32::try_from(c.pid).expect("pids fit in pid_t"));
            nix::sys::signal::kill(pid, signal).map_err(io::Error::from)?;
        }
        Ok(())
    }

    /// The next thing a child did, waiting until `deadline`. A timeout is an error too;
    /// `what` says what the caller waited for.
    pub(super) fn next(&mut self, deadline: Instant, what: &str) -> Result<Seen> {
        self.poll(deadline)?.ok_or_else(|| {
            CliError::Failed(format!("timed out waiting for {what}\n{}", self.report()))
        })
    }

    /// The next thing a child did, or `None` once `deadline` has passed. A line that is not
    /// an event, or a signal to this process, is an error.
    pub(super) fn poll(&mut self, deadline: Instant) -> Result<Option<Seen>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (child, mut at, what) = match self.rx.recv_timeout(left) {
                Ok(Msg::Line { child, at, text }) => (child, at, Some(text)),
                Ok(Msg::Eof { child, at }) => (child, at, None),
                Ok(Msg::Signal(s)) => {
                    let name = if s == SIGINT { "SIGINT" } else { "SIGTERM" };
                    return Err(CliError::Interrupted(name));
                }
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => unreachable!("the fleet holds a sender"),
            };
            let c = &mut self.children[child];
            if c.killed {
                // What a child killed by `kill_all` still had in the pipe.
                continue;
            }
            let what = match what {
                Some(text) => {
                    let line = Line::parse(&text).map_err(|e| {
                        CliError::Failed(format!(
                            "{} printed {text:?}, which is not an event: {e}",
                            c.name
                        ))
                    })?;
                    at = written_at(&text, at);
                    if c.recent.len() == KEEP_LINES {
                        c.recent.pop_front();
                    }
                    c.recent.push_back(text);
                    c.lines += 1;
                    if let Line::Started { node, .. } = &line {
                        c.node = Some(node.0);
                    }
                    c.mirror.apply(&line);
                    SeenKind::Line(line)
                }
                // Its stdout closes when the process exits: reaping takes no time.
                None => SeenKind::Exited(c.reap()?),
            };
            return Ok(Some(Seen { child, at, what }));
        }
    }

    /// Reads what the children do until `done` holds for the fleet, passing each event to
    /// `seen`; fails at `deadline`.
    pub(super) fn wait_until(
        &mut self,
        deadline: Instant,
        what: &str,
        mut seen: impl FnMut(&Self, &Seen),
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<()> {
        while !done(self) {
            let s = self.next(deadline, what)?;
            seen(self, &s);
        }
        Ok(())
    }

    /// After the hub's node `old` died, reads what the children do (passing it to `seen`)
    /// until every one of `survivors` has printed `node_left` for `old` and `synced` with one
    /// and the same new hub; fails at `deadline`. Times are from `since`.
    pub(super) fn await_takeover(
        &mut self,
        old: NodeId,
        survivors: &[usize],
        since: Instant,
        deadline: Instant,
        mut seen: impl FnMut(&Self, &Seen),
    ) -> Result<Takeover> {
        let mut left = vec![None; survivors.len()];
        let mut synced = vec![None; survivors.len()];
        while left.iter().any(Option::is_none) || synced.iter().any(Option::is_none) {
            let s = self.next(deadline, "every survivor to follow a new hub")?;
            seen(self, &s);
            let Some(k) = survivors.iter().position(|&i| i == s.child) else {
                continue;
            };
            let after = s.at.saturating_duration_since(since);
            match &s.what {
                SeenKind::Line(Line::NodeLeft { node }) if node.0 == old => left[k] = Some(after),
                SeenKind::Line(Line::Synced { hub, .. }) if hub.0 != old => {
                    synced[k] = Some((after, hub.0));
                }
                SeenKind::Exited(status) => {
                    return Err(CliError::Failed(format!(
                        "{} exited ({status}) during the failover",
                        self.children[s.child].name
                    )));
                }
                SeenKind::Line(_) => {}
            }
        }
        let new_hub = synced[0].expect("waited for it").1;
        if let Some((_, other)) = synced.iter().flatten().find(|(_, h)| *h != new_hub) {
            return Err(CliError::Failed(format!(
                "the survivors follow different hubs: {new_hub} and {other}"
            )));
        }
        let survivors = survivors
            .iter()
            .zip(left.into_iter().zip(synced))
            .map(|(&child, (l, s))| Survivor {
                child,
                left: l.expect("waited for it"),
                synced: s.expect("waited for it").0,
            })
            .collect();
        Ok(Takeover { survivors, new_hub })
    }

    /// Sends SIGTERM to the children at `indices` and waits until they have exited, passing what
    /// they (and the others) print to `seen`. Returns the children that did not exit with 0.
    pub(super) fn terminate(
        &mut self,
        indices: impl IntoIterator<Item = usize> + Clone,
        deadline: Instant,
        seen: impl FnMut(&Self, &Seen),
    ) -> Result<Vec<usize>> {
        for i in indices.clone() {
            self.signal(i, Signal::SIGTERM)?;
        }
        let waiting: Vec<usize> = indices.into_iter().collect();
        self.wait_until(deadline, "children to exit after SIGTERM", seen, |f| {
            waiting.iter().all(|&i| !f.children[i].is_running())
        })?;
        Ok(waiting
            .into_iter()
            .filter(|&i| !self.children[i].status.is_some_and(|s| s.success()))
            .collect())
    }

    /// Kills (SIGKILL) and reaps every child that is still running; what they still had to
    /// say is discarded.
    pub(super) fn kill_all(&mut self) {
        for c in &mut self.children {
            if c.status.is_none() {
                c.killed = true;
                let _ = c.proc.kill();
                let _ = c.reap();
            }
        }
    }

    /// What each running child printed last, for an error message.
    pub(super) fn report(&self) -> String {
        let mut out = String::new();
        for c in self.children.iter().filter(|c| c.is_running()) {
            let _ = writeln!(out, "  {} (pid {}), last lines:", c.name, c.pid);
            for l in &c.recent {
                let _ = writeln!(out, "    {l}");
            }
            let err = c.stderr.lock().unwrap_or_else(PoisonError::into_inner);
            for l in err.iter() {
                let _ = writeln!(out, "    stderr: {l}");
            }
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Reaping joins each child's readers, which end with its pipes.
        self.kill_all();
        self.signals.close();
        if let Some(t) = self.signal_thread.take() {
            let _ = t.join();
        }
    }
}

fn read_stdout(child: usize, stdout: std::process::ChildStdout, tx: &Sender<Msg>) {
    for line in BufReader::new(stdout).lines() {
        let at = Instant::now();
        let Ok(text) = line else { break };
        if tx.send(Msg::Line { child, at, text }).is_err() {
            return;
        }
    }
    let _ = tx.send(Msg::Eof {
        child,
        at: Instant::now(),
    });
}

fn read_stderr(
    stderr: std::process::ChildStderr,
    kept: &Mutex<VecDeque<String>>,
    echo: Option<&str>,
) {
    for line in BufReader::new(stderr).lines() {
        let Ok(text) = line else { break };
        if let Some(name) = echo {
            eprintln!("{name}| {text}");
        }
        let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == KEEP_LINES {
            kept.pop_front();
        }
        kept.push_back(text);
    }
}

#[cfg(test)]
mod tests {
    use super::super::json::Hex;
    use super::*;

    fn id(raw: u64) -> Hex {
        Hex(NodeId::new(raw).expect("non-zero"))
    }

    #[test]
    fn a_line_counts_from_its_ts() {
        let read = Instant::now();
        let line = |ts: u64| format!(r#"{{"event":"became_hub","ts":{ts}}}"#);
        let at = written_at(&line(json::now_micros() - 20_000), read);
        let early = read.duration_since(at);
        assert!(
            early >= Duration::from_millis(19) && early < Duration::from_millis(500),
            "{early:?}"
        );
        // No ts, a ts from the future or from long ago: the time of reading.
        assert_eq!(written_at(r#"{"event":"became_hub"}"#, read), read);
        assert_eq!(
            written_at(&line(json::now_micros() + 10_000_000), read),
            read
        );
        assert_eq!(
            written_at(&line(json::now_micros() - 10_000_000), read),
            read
        );
    }

    #[test]
    fn a_mirror_follows_the_lines() {
        let mut m = Mirror::default();
        let lines = [
            Line::HubChanged {
                node: id(1),
                term: 1,
            },
            Line::NodeJoined {
                node: id(1),
                name: "a".into(),
                pid: 10,
                uid: 0,
                seq: "1.1".into(),
            },
            Line::NodeJoined {
                node: id(2),
                name: "b".into(),
                pid: 20,
                uid: 0,
                seq: "1.2".into(),
            },
            Line::TopicAnnounced {
                node: id(1),
                topic: "t".into(),
                mime: "x/y".into(),
                seq: "1.3".into(),
            },
            Line::Subscribed {
                node: id(2),
                topic: "t".into(),
                seq: "1.4".into(),
            },
            Line::Synced {
                hub: id(1),
                term: 1,
            },
        ];
        for l in &lines {
            m.apply(l);
        }
        assert_eq!(
            (m.nodes.len(), m.roles(), m.hub, m.synced),
            (2, 2, Some(id(1).0), true)
        );
        m.apply(&Line::HubLost);
        assert!(!m.synced);
        m.apply(&Line::NodeLeft { node: id(1) });
        assert_eq!((m.nodes.len(), m.roles()), (1, 1));
        m.apply(&Line::Unsubscribed {
            node: id(2),
            topic: "t".into(),
        });
        assert_eq!(m.roles(), 0);
        assert_eq!(m.nodes[&id(2).0].name, "b");
    }
}
