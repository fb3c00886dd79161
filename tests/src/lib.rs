//! Helpers for multi-process tests: children that are always killed, their JSON lines read with
//! deadlines, and fresh group names.
//!
//! Every test gets its own random group name, waits on conditions with generous deadlines (never
//! on fixed sleeps), and kills every child it starts, also when it fails: [`Child`] kills and
//! reaps its process when dropped, which a panicking test does too.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use ipc_pubsub_cli::TempGroup;
pub use serde_json::Value;

pub mod attack;
pub mod doc_peer;
pub mod held;
pub mod peer;

/// A generous deadline for anything that should take milliseconds on an idle machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// A group no other test uses: its name, and its directory removed when it is dropped.
/// Made before the test's children, it is dropped after them, once they are killed: the
/// data sockets and hub lock of nodes killed with SIGKILL would otherwise stay, a directory
/// per test and run.
pub fn group() -> TempGroup {
    TempGroup::new("t").expect("OS randomness")
}

/// The test node executable (the `ipc-pubsub` command line plus test roles), which cargo
/// builds next to the test binaries: `target/<profile>/ipc-test-node`, tests being in
/// `target/<profile>/deps/`.
pub fn exe() -> std::path::PathBuf {
    built("ipc-test-node")
}

/// An executable of this crate, next to the test binaries.
pub(crate) fn built(name: &str) -> std::path::PathBuf {
    let test = std::env::current_exe().expect("the test's own path");
    let dir = test.parent().and_then(|d| {
        if d.ends_with("deps") {
            d.parent()
        } else {
            Some(d)
        }
    });
    let exe = dir.expect("a target directory").join(name);
    assert!(
        exe.exists(),
        "{} is missing: build it with `cargo test -p ipc-tests`",
        exe.display()
    );
    exe
}

/// A child process of a test: killed and reaped when dropped; its stdout read as JSON lines.
pub struct Child {
    pub name: String,
    proc: Option<std::process::Child>,
    lines: Receiver<(Value, Instant)>,
    /// Every line read so far, in order.
    pub seen: Vec<Value>,
    /// When each line of [`seen`](Self::seen) arrived (read from the pipe by this process, at
    /// or after the child wrote it), by index.
    pub arrived: Vec<Instant>,
    stderr: Arc<Mutex<String>>,
    /// Closed when stderr reaches its end.
    stderr_end: Receiver<()>,
    stdin: Option<std::process::ChildStdin>,
}

impl Child {
    /// Starts `ipc-test-node` with `args`, named `name` in messages.
    pub fn spawn(name: &str, args: &[&str]) -> Self {
        Self::spawn_program(name, &exe(), args, false)
    }

    /// Starts `program` with `args`; with `piped_stdin`, [`send`](Self::send) writes to it.
    pub fn spawn_program(
        name: &str,
        program: &std::path::Path,
        args: &[&str],
        piped_stdin: bool,
    ) -> Self {
        Self::spawn_program_env(name, program, args, piped_stdin, &[])
    }

    /// As [`spawn_program`](Self::spawn_program), with `env` added to the child's environment.
    pub fn spawn_program_env(
        name: &str,
        program: &std::path::Path,
        args: &[&str],
        piped_stdin: bool,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(program);
        command.envs(env.iter().copied());
        if args.first() == Some(&"as-uid") {
            // Another user has a runtime directory of its own, not ours.
            command.env_remove("XDG_RUNTIME_DIR");
        }
        let mut proc = command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the test node");
        let stdin = proc.stdin.take();
        let (tx, lines) = mpsc::channel();
        let stdout = proc.stdout.take().expect("piped");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send((v, at)).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = proc.stderr.take().expect("piped");
        let sink = Arc::clone(&stderr);
        let (end, stderr_end) = mpsc::channel::<()>();
        thread::spawn(move || {
            let _end = end;
            let mut buf = [0; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            name: name.into(),
            proc: Some(proc),
            lines,
            seen: Vec::new(),
            arrived: Vec::new(),
            stderr,
            stderr_end,
            stdin,
        }
    }

    /// Starts a peer on `driver` (`ipc-test-node peer --driver ..`, or an outside driver's
    /// program) in `group` with `extra` arguments, and waits for its `started` line. Commands
    /// go in with [`send`](Self::send); closing its stdin ([`close_stdin`](Self::close_stdin))
    /// makes it leave. An outside driver's path is part of the child's name in messages.
    pub fn peer(driver: peer::Driver, group: &str, name: &str, extra: &[&str]) -> Self {
        Self::peer_env(driver, group, name, extra, &[])
    }

    /// As [`peer`](Self::peer), with `env` added to the peer's environment (for example
    /// `IPC_PUBSUB_NO_PIDFD=1`, which every driver honours).
    pub fn peer_env(
        driver: peer::Driver,
        group: &str,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let (program, mut args) = driver.command();
        args.extend(["--group", group, "--name", name].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown = match driver {
            peer::Driver::External(p) => format!("{name} [{}]", p.display()),
            _ => name.to_string(),
        };
        let mut c = Self::spawn_program_env(&shown, &program, &args, true, env);
        c.wait_for(WAIT, |v| event(v) == "started");
        c
    }

    /// Writes one command line to the child's stdin.
    pub fn send(&mut self, command: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("a child with piped stdin");
        writeln!(stdin, "{command}").expect("write to the child's stdin");
        stdin.flush().expect("flush the child's stdin");
    }

    /// Closes the child's stdin: a peer leaves the group and exits.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Starts `ipc-test-node node --name <name>` in `group` with `extra` arguments, and waits
    /// for its `started` line.
    pub fn node(group: &str, name: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--group", group, "node", "--name", name];
        args.extend_from_slice(extra);
        let mut c = Self::spawn(name, &args);
        c.wait_for(WAIT, |v| event(v) == "started");
        c
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("running").id()
    }

    /// The node id this child printed in its `started` line.
    pub fn node_id(&self) -> String {
        self.seen
            .iter()
            .find(|v| event(v) == "started")
            .and_then(|v| v["node"].as_str())
            .expect("a started line")
            .to_string()
    }

    /// Reads lines until one satisfies `pred`, and returns it; panics with everything seen at
    /// the deadline.
    pub fn wait_for(&mut self, timeout: Duration, mut pred: impl FnMut(&Value) -> bool) -> Value {
        // Lines already seen count too.
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        self.next_matching(timeout, pred).unwrap_or_else(|| {
            panic!(
                "{}: nothing matched within {timeout:?}; saw {:#?}\nstderr: {}",
                self.name,
                self.seen,
                self.stderr()
            )
        })
    }

    /// Reads lines until at least `n` lines seen (from the start) satisfy `pred`, and returns
    /// all of those; panics with everything seen at the deadline.
    pub fn wait_count(
        &mut self,
        timeout: Duration,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let matching: Vec<Value> = self.seen.iter().filter(|v| pred(v)).cloned().collect();
            if matching.len() >= n {
                return matching;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.next_matching(left, |_| true).is_none() {
                panic!(
                    "{}: {} of {n} lines within {timeout:?}; saw {:#?}\nstderr: {}",
                    self.name,
                    matching.len(),
                    self.seen,
                    self.stderr()
                );
            }
        }
    }

    /// Reads lines until a new one satisfies `pred`; `None` at the deadline.
    pub fn next_matching(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((v, at)) => {
                    self.seen.push(v.clone());
                    self.arrived.push(at);
                    if pred(&v) {
                        return Some(v);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Reads whatever lines arrive within `d` (to collect late events before asserting that
    /// some did *not* happen; the wait is bounded and never what a test waits *for*).
    pub fn drain_for(&mut self, d: Duration) {
        let _ = self.next_matching(d, |_| false);
    }

    /// Lines seen with this `event` field.
    pub fn events(&self, name: &str) -> Vec<&Value> {
        self.seen.iter().filter(|v| event(v) == name).collect()
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal the child");
    }

    /// Stops the child with SIGSTOP and waits until every one of its threads is stopped
    /// (`/proc/<pid>/task/*/stat` says `T`): `kill` returns before the stop has taken effect,
    /// and a thread of a busy child may still finish what it was doing.
    pub fn stop(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.pid());
        let stopped = || {
            std::fs::read_dir(&tasks).is_ok_and(|dir| {
                dir.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                        // `pid (comm) S ...`: the state follows the last ')'.
                        stat.rsplit_once(')')
                            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
                    })
                })
            })
        };
        let deadline = std::time::Instant::now() + WAIT;
        while !stopped() {
            assert!(
                std::time::Instant::now() < deadline,
                "child {} did not stop within {WAIT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// Sends SIGTERM and waits for the child to exit; returns its exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(timeout)
    }

    /// Waits for the child to exit on its own; `None` (and the child killed) at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let mut p = self.proc.take()?;
        loop {
            if let Ok(Some(status)) = p.try_wait() {
                // Collect what it printed before exiting, on stderr too.
                while let Ok((v, at)) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(v);
                    self.arrived.push(at);
                }
                let _ = self.stderr_end.recv_timeout(Duration::from_secs(2));
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = p.kill();
                let _ = p.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The node ids a child's events say are in the group now.
pub fn members(c: &Child) -> std::collections::BTreeSet<String> {
    let mut set = std::collections::BTreeSet::new();
    for v in &c.seen {
        let node = v["node"].as_str().unwrap_or_default().to_string();
        match event(v) {
            "node_joined" => {
                set.insert(node);
            }
            "node_left" => {
                set.remove(&node);
            }
            _ => {}
        }
    }
    set
}

/// Waits until every child sees exactly `ids` in the group.
pub fn converge(children: &mut [&mut Child], ids: &std::collections::BTreeSet<String>) {
    for c in children.iter_mut() {
        if members(c) == *ids {
            continue;
        }
        let deadline = Instant::now() + WAIT;
        while members(c) != *ids {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                c.next_matching(left, |_| true).is_some(),
                "{} sees {:?}, not {ids:?}; saw {:#?}\nstderr: {}",
                c.name,
                members(c),
                c.seen,
                c.stderr()
            );
        }
    }
}

/// The node ids of `children`.
pub fn ids(children: &[&Child]) -> std::collections::BTreeSet<String> {
    children.iter().map(|c| c.node_id()).collect()
}

/// Waits until `cond` holds, failing after [`WAIT`]: for state read in this process (a node's
/// view, its counters); children's lines have [`Child::wait_for`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A node id as the test nodes print it (16 hex digits).
pub fn node_id(hex: &str) -> ipc_proto::NodeId {
    u64::from_str_radix(hex, 16)
        .ok()
        .and_then(ipc_proto::NodeId::new)
        .unwrap_or_else(|| panic!("not a node id: {hex}"))
}

/// The `event` field of a line.
pub fn event(v: &Value) -> &str {
    v["event"].as_str().unwrap_or("")
}

/// Whether a line is `event` about `node`.
pub fn is(v: &Value, name: &str, node: &str) -> bool {
    event(v) == name && v["node"].as_str() == Some(node)
}

/// Raw `SOCK_SEQPACKET` peers, for feeding a node bad input.
pub mod raw {
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use ipc_os::poll::{Events, Interest, Poller, Token};
    use ipc_os::rendezvous::{self, GroupDir};
    use ipc_os::socket::{self, Recv, Sent};

    use crate::WAIT;

    /// The hub socket of private group `group`.
    pub fn hub_socket(group: &str) -> PathBuf {
        let dir = GroupDir::private(group).expect("group directory");
        dir.paths().hub_socket()
    }

    /// The data socket a node of private group `group` published as `addr`.
    pub fn data_socket(group: &str, addr: &str) -> PathBuf {
        let dir = GroupDir::private(group).expect("group directory");
        dir.paths().resolve_data_addr(addr).expect("a data address")
    }

    /// Connects to the socket at `path`, with room to send records larger than any a node
    /// accepts.
    pub fn connect(path: &Path) -> OwnedFd {
        let fd = rendezvous::connect(path).expect("connect");
        socket::set_send_buffer(fd.as_fd(), 1 << 20).expect("SO_SNDBUF");
        fd
    }

    /// Sends one record, whole.
    pub fn send(fd: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
        assert_eq!(
            socket::send_record(fd.as_fd(), bytes, fds).expect("send"),
            Sent::Complete
        );
    }

    /// Waits until the other end closes the link; returns what it sent before (a goodbye,
    /// say) and how long it took.
    pub fn closed(fd: &OwnedFd) -> (Vec<u8>, Duration) {
        let start = Instant::now();
        let poller = Poller::new().expect("epoll");
        poller
            .add(fd.as_fd(), Token(0), Interest::READABLE)
            .expect("watch");
        let mut events = Events::with_capacity(4);
        let mut buf = vec![0; 1 << 17];
        let mut got = Vec::new();
        loop {
            let left = WAIT.saturating_sub(start.elapsed());
            assert!(!left.is_zero(), "the link was not closed within {WAIT:?}");
            poller.wait(&mut events, Some(left)).expect("wait");
            loop {
                let mut fds = Vec::new();
                match socket::recv_record(fd.as_fd(), &mut buf, &mut fds, 0) {
                    Ok(Recv::Data { len, .. }) => got.extend_from_slice(&buf[..len]),
                    Ok(Recv::Closed) | Err(_) => return (got, start.elapsed()),
                    Ok(Recv::WouldBlock) => break,
                }
            }
        }
    }
}
