//! The `ipc-pubsub` command line, run as a process.
//!
//! Every test uses its own random group, waits on conditions (lines read with generous
//! deadlines, never fixed sleeps), and kills every process it starts, also when it fails:
//! [`Proc`] kills and reaps its process when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use ipc_os::rendezvous::GroupDir;
use ipc_pubsub_cli::TempGroup;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// Generous: everything here takes milliseconds on an idle machine.
const WAIT: Duration = Duration::from_secs(20);

/// A fresh group, its directory removed when dropped (after the test's processes, made
/// after it).
fn group() -> TempGroup {
    TempGroup::new("t").expect("OS randomness")
}

enum Out {
    Line(String),
    Stderr(String),
    /// One of the two pipes closed.
    Closed,
}

/// A process of `ipc-pubsub`, killed and reaped when dropped.
struct Proc {
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Out>,
    open_pipes: usize,
    stdout: Vec<String>,
    stderr: String,
}

fn forward(pipe: impl Read, tx: Sender<Out>, wrap: fn(String) -> Out) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        if tx.send(wrap(line)).is_err() {
            return;
        }
    }
    let _ = tx.send(Out::Closed);
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        Self::spawn_io(args, false)
    }

    /// [`spawn`](Self::spawn), with a pipe to its stdin ([`write_line`](Self::write_line)).
    fn spawn_io(args: &[&str], piped_stdin: bool) -> Self {
        Self::start(
            Command::new(env!("CARGO_BIN_EXE_ipc-pubsub")),
            args,
            piped_stdin,
        )
    }

    /// [`spawn`](Self::spawn) under valgrind's memcheck: exit code [`MEMCHECK_FAILED`] on an
    /// invalid read or write, a use of uninitialised memory or a definite leak, each told on
    /// stderr.
    fn under_valgrind(args: &[&str]) -> Self {
        let mut valgrind = Command::new("valgrind");
        valgrind
            .args([
                "--tool=memcheck",
                "--quiet",
                &format!("--error-exitcode={MEMCHECK_FAILED}"),
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
            ])
            .arg(env!("CARGO_BIN_EXE_ipc-pubsub"));
        Self::start(valgrind, args, false)
    }

    fn start(mut command: Command, args: &[&str], piped_stdin: bool) -> Self {
        let mut child = command
            .args(args)
            .env_remove("IPC_PUBSUB_GROUP")
            .env_remove("RUST_LOG")
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ipc-pubsub");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let tx2 = tx.clone();
        thread::spawn(move || forward(out, tx, Out::Line));
        thread::spawn(move || forward(err, tx2, Out::Stderr));
        Self {
            stdin: child.stdin.take(),
            child,
            rx,
            open_pipes: 2,
            stdout: Vec::new(),
            stderr: String::new(),
        }
    }

    /// `ipc-pubsub --group GROUP node --name NAME EXTRA...`.
    fn node(group: &str, name: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--group", group, "node", "--name", name];
        args.extend_from_slice(extra);
        Self::spawn(&args)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("a pid"));
        kill(pid, signal).expect("signal the process");
    }

    /// Takes one message; `false` at the deadline.
    fn pump(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(Out::Line(l)) => self.stdout.push(l),
            Ok(Out::Stderr(l)) => {
                self.stderr.push_str(&l);
                self.stderr.push('\n');
            }
            Ok(Out::Closed) => self.open_pipes -= 1,
            Err(_) => return false,
        }
        true
    }

    /// Reads stdout until a JSON line satisfies `pred`; panics with what was seen at the
    /// deadline.
    fn wait_json(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut checked = 0;
        loop {
            for l in &self.stdout[checked..] {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nstderr: {}", self.stderr));
                if pred(&v) {
                    return v;
                }
            }
            checked = self.stdout.len();
            assert!(
                self.open_pipes > 0 && self.pump(deadline),
                "no {what} within {WAIT:?}; stdout: {:#?}\nstderr: {}",
                self.stdout,
                self.stderr
            );
        }
    }

    /// Writes `line` and a newline to its stdin.
    fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("started with spawn_io");
        writeln!(stdin, "{line}").expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Reads until a stdout line equals `line`.
    fn wait_line(&mut self, line: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stdout.iter().any(|l| l == line) {
            assert!(
                self.open_pipes > 0 && self.pump(deadline),
                "no line {line:?} within {WAIT:?}; stdout: {:#?}\nstderr: {}",
                self.stdout,
                self.stderr
            );
        }
    }

    /// Reads until stderr contains `needle`.
    fn wait_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stderr.contains(needle) {
            assert!(
                self.open_pipes > 0 && self.pump(deadline),
                "no {needle:?} on stderr within {WAIT:?}; stderr: {}",
                self.stderr
            );
        }
    }

    /// Waits until the process has closed its pipes (it exits), then reaps it.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        while self.open_pipes > 0 {
            assert!(
                self.pump(deadline),
                "still running after {timeout:?}; stdout: {:#?}\nstderr: {}",
                self.stdout,
                self.stderr
            );
        }
        self.child.wait().expect("reap")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event(v: &Value) -> &str {
    v["event"].as_str().unwrap_or_default()
}

/// Processes other than us whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("procfs").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

#[test]
fn status_of_a_group_that_does_not_run_fails_with_a_message() {
    let g = group();
    let mut p = Proc::spawn(&["--group", &g, "status"]);
    let status = p.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "stderr: {}", p.stderr);
    assert!(
        p.stderr
            .contains(&format!("no group named \"{g}\" is running")),
        "stderr: {}",
        p.stderr
    );
    assert!(p.stdout.is_empty(), "{:?}", p.stdout);
}

#[test]
fn node_prints_started_then_its_own_join_and_leaves_on_sigterm() {
    let g = group();
    let mut node = Proc::node(
        &g,
        "solo",
        &["--announce", "news=text/plain", "--subscribe", "weather"],
    );
    let started = node.wait_json("started line", |_| true);
    assert_eq!(event(&started), "started", "the first line");
    let id = started["node"].as_str().expect("a node id").to_string();
    assert_eq!(id.len(), 16, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(started["pid"], node.pid());
    assert_eq!(started["name"], "solo");
    assert_eq!(started["group"], g.name());

    let joined = node.wait_json("its own node_joined", |v| {
        event(v) == "node_joined" && v["node"] == id.as_str()
    });
    assert_eq!(joined["name"], "solo");
    assert_eq!(joined["pid"], node.pid());
    let seq = joined["seq"].as_str().expect("a seq");
    assert!(
        seq.split_once('.')
            .is_some_and(|(t, c)| t.parse::<u64>().is_ok() && c.parse::<u64>().is_ok()),
        "seq is term.counter: {seq}"
    );
    node.wait_json("became_hub", |v| event(v) == "became_hub");
    node.wait_json("synced", |v| {
        event(v) == "synced" && v["hub"] == id.as_str()
    });
    let announced = node.wait_json("topic_announced", |v| event(v) == "topic_announced");
    assert_eq!(
        (&announced["topic"], &announced["mime"]),
        (&Value::from("news"), &Value::from("text/plain"))
    );
    node.wait_json("subscribed", |v| {
        event(v) == "subscribed" && v["topic"] == "weather"
    });

    let asked = Instant::now();
    node.signal(Signal::SIGTERM);
    let status = node.wait_exit(WAIT);
    assert!(status.success(), "{status}; stderr: {}", node.stderr);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "a lone node leaves within a second or so, took {:?}",
        asked.elapsed()
    );
    assert!(node.stderr.is_empty(), "no warnings: {}", node.stderr);
}

#[test]
fn watch_and_status_show_a_running_node() {
    let g = group();
    let mut node = Proc::node(&g, "cam", &["--announce", "frames"]);
    let id = node.wait_json("started", |v| event(v) == "started")["node"]
        .as_str()
        .expect("id")
        .to_string();
    node.wait_json("announced", |v| event(v) == "topic_announced");

    let mut watch = Proc::spawn(&["--group", &g, "watch"]);
    watch.wait_json("the node's join", |v| {
        event(v) == "node_joined" && v["node"] == id.as_str()
    });
    watch.wait_json("the node's topic", |v| {
        event(v) == "topic_announced" && v["mime"] == "application/octet-stream"
    });
    watch.wait_json("synced", |v| {
        event(v) == "synced" && v["hub"] == id.as_str()
    });

    let mut status = Proc::spawn(&["--group", &g, "status", "--json"]);
    assert!(status.wait_exit(WAIT).success(), "{}", status.stderr);
    let doc: Value = serde_json::from_str(&status.stdout.join("\n")).expect("one JSON document");
    assert_eq!(doc["group"], g.name());
    assert_eq!(doc["hub"]["node"], id.as_str());
    assert_eq!(doc["hub"]["pid"], node.pid());
    assert_eq!(doc["nodes"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["nodes"][0]["announces"][0]["topic"], "frames");

    // The node leaving shows in the watcher; SIGINT ends the watcher with 0.
    node.signal(Signal::SIGTERM);
    assert!(node.wait_exit(WAIT).success());
    watch.wait_json("the node's leave", |v| {
        event(v) == "node_left" && v["node"] == id.as_str()
    });
    watch.signal(Signal::SIGINT);
    assert!(watch.wait_exit(WAIT).success(), "{}", watch.stderr);
}

#[test]
fn status_shows_the_hubs_keepalive_figures_and_bad_figures_are_a_usage_error() {
    let g = group();
    // A heartbeat above half the limit: refused before anything starts, exit 2.
    let mut bad = Proc::node(
        &g,
        "bad",
        &["--keepalive-ms", "1000", "--heartbeat-ms", "600"],
    );
    assert_eq!(bad.wait_exit(WAIT).code(), Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("heartbeat interval"), "{}", bad.stderr);

    let timing = ["--keepalive-ms", "3000", "--heartbeat-ms", "250"];
    let mut hub = Proc::node(&g, "hub", &timing);
    hub.wait_json("started", |v| event(v) == "started");
    hub.wait_json("hub", |v| event(v) == "synced");
    let mut status = Proc::spawn(&["--group", &g, "status"]);
    assert!(status.wait_exit(WAIT).success(), "{}", status.stderr);
    let want =
        "keepalive (the hub's): a heartbeat every 250 ms, a member silent for 3000 ms is expelled";
    assert_eq!(
        status.stdout.get(1).map(String::as_str),
        Some(want),
        "{:?}",
        status.stdout
    );
    let doc = status_json(&g);
    assert_eq!(doc["hub"]["heartbeat_ms"], 250, "{doc}");
    assert_eq!(doc["hub"]["keepalive_ms"], 3000, "{doc}");
    hub.signal(Signal::SIGTERM);
    assert!(hub.wait_exit(WAIT).success(), "{}", hub.stderr);
}

/// A fresh, empty runtime directory (mode 0700) for a process started with
/// [`Proc::in_runtime_dir`]: its private groups live in `ipc-pubsub/` inside it. Removed when
/// dropped.
struct RuntimeDir(std::path::PathBuf);

impl RuntimeDir {
    fn new() -> Self {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("ipc-test-rt-{}", group()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .expect("a fresh runtime directory");
        Self(path)
    }

    /// What is left in its groups' directory (none if that was never made).
    fn groups(&self) -> Vec<String> {
        match std::fs::read_dir(self.0.join("ipc-pubsub")) {
            Ok(entries) => entries
                .map(|e| {
                    e.expect("a directory entry")
                        .file_name()
                        .to_string_lossy()
                        .into()
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot read the groups' directory: {e}"),
        }
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Proc {
    /// [`spawn`](Self::spawn) with `XDG_RUNTIME_DIR` set to `dir`.
    fn in_runtime_dir(dir: &RuntimeDir, args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ipc-pubsub"));
        command.env("XDG_RUNTIME_DIR", &dir.0);
        Self::start(command, args, false)
    }
}

#[test]
fn the_demo_succeeds_and_leaves_nothing_running() {
    let runtime = RuntimeDir::new();
    let mut demo = Proc::in_runtime_dir(&runtime, &["demo"]);
    let status = demo.wait_exit(Duration::from_secs(60));
    let out = demo.stdout.join("\n");
    assert!(status.success(), "{status}\n{out}\nstderr: {}", demo.stderr);
    assert!(out.contains("failover took"), "{out}");
    assert!(out.contains("every node exited with status 0"), "{out}");
    assert!(
        out.contains("9 messages, 24.8 MiB in all, every checksum right"),
        "{out}"
    );
    let group = out
        .split_whitespace()
        .find(|w| w.starts_with("demo-"))
        .expect("the demo names its group")
        .trim_end_matches('.');
    assert_eq!(processes_mentioning(group), Vec::<String>::new(), "{out}");
    let sockets = std::fs::read_to_string("/proc/net/unix").expect("procfs");
    assert!(
        !sockets.contains(group),
        "a socket of the demo's group is still bound"
    );
    assert_eq!(
        runtime.groups(),
        Vec::<String>::new(),
        "the demo's group directory is removed"
    );
}

/// Used from a script, as the README shows: a subscriber and a publisher meet in a group of
/// their own, exchange messages and exit; the group's directory goes with the last of them.
/// A `status` of a group that does not run leaves none either.
#[test]
fn nodes_run_from_a_script_leave_no_group_directory() {
    let runtime = RuntimeDir::new();
    let mut sub =
        Proc::in_runtime_dir(&runtime, &["--group", "script", "sub", "t", "--count", "3"]);
    let mut publisher = Proc::in_runtime_dir(
        &runtime,
        &[
            "--group",
            "script",
            "pub",
            "t",
            "--count",
            "3",
            "--wait-subscribers",
            "1",
        ],
    );
    assert!(publisher.wait_exit(WAIT).success(), "{}", publisher.stderr);
    assert!(sub.wait_exit(WAIT).success(), "{}", sub.stderr);
    assert_eq!(sub.stdout.len(), 3, "{:?}", sub.stdout);
    assert_eq!(
        runtime.groups(),
        Vec::<String>::new(),
        "the last one out removed it"
    );
    let mut status = Proc::in_runtime_dir(&runtime, &["--group", "none", "status"]);
    assert_eq!(status.wait_exit(WAIT).code(), Some(1), "{}", status.stderr);
    assert_eq!(runtime.groups(), Vec::<String>::new(), "the observer's too");
}

#[test]
fn bench_topology_reports_both_pidfd_series() {
    let mut bench = Proc::spawn(&[
        "bench",
        "topology",
        "--json",
        "--kills",
        "1",
        "--nodes",
        "4",
        "--settle-ms",
        "50",
        "--failover-only",
    ]);
    let status = bench.wait_exit(Duration::from_secs(300));
    let out = bench.stdout.join("\n");
    assert!(
        status.success(),
        "{status}\n{out}\nstderr: {}",
        bench.stderr
    );
    let doc: Value = serde_json::from_str(&out).expect("one JSON document");
    assert!(doc["pidfd_host"].is_string(), "{out}");
    assert_eq!(doc["settle_ms"], 50);
    assert!(
        doc["convergence"].is_null() && doc["idle"].is_null(),
        "{out}"
    );
    let series = doc["failover"].as_array().expect("failover series");
    // Pidfds allowed first, then switched off in the children.
    let off: Vec<&Value> = series.iter().map(|s| &s["no_pidfd"]).collect();
    assert_eq!(off, [&Value::Bool(false), &Value::Bool(true)], "{out}");
    for s in series {
        assert_eq!((&s["nodes"], &s["kills"]), (&4.into(), &1.into()), "{out}");
        for kind in ["hub", "spoke"] {
            let k = &s[kind];
            assert_eq!(
                k["node_left_ms"]["samples"].as_array().map(Vec::len),
                Some(1)
            );
            assert_eq!(k["flaps"], 0, "{kind}: a live node reported left\n{out}");
        }
        assert!(s["hub"]["synced_ms"]["median"].is_number(), "{out}");
    }
}

#[test]
fn bench_payload_quick_prints_every_row() {
    let runtime = RuntimeDir::new();
    let mut bench = Proc::in_runtime_dir(&runtime, &["bench", "payload", "--quick"]);
    // About 10 s in a release build; generous for a debug build on a busy machine.
    let status = bench.wait_exit(Duration::from_secs(600));
    let out = bench.stdout.join("\n");
    assert!(
        status.success(),
        "{status}\n{out}\nstderr: {}",
        bench.stderr
    );
    // A row is the series id, an optional `*` (the better stream copy), then a number.
    let rows = |id: &str| {
        out.lines()
            .filter(|l| {
                let mut words = l.split_whitespace().filter(|w| *w != "*");
                words.next() == Some(id) && words.next().is_some_and(|w| w.parse::<f64>().is_ok())
            })
            .count()
    };
    assert_eq!(rows("seqpacket_pingpong"), 1, "{out}");
    assert_eq!(rows("shm_ring_spin"), 1, "4 KiB only\n{out}");
    assert!(out.contains("shm_ring_spin / uds_stream_copy"), "{out}");
    assert_eq!(rows("shm_ring_pingpong"), 1, "64 B only\n{out}");
    assert!(
        out.contains("shm_ring_pingpong / shm_spin_pingpong"),
        "{out}"
    );
    assert!(out.contains("pubsub.rtt_spin / shm_ring_pingpong"), "{out}");
    for id in [
        "uds_stream_copy.default",
        "uds_stream_copy.sndbuf_4m",
        "memcpy",
        "fresh_memfd",
        "pooled_raw",
        "fresh_memfd.4recv",
        "pooled_raw.4recv",
    ] {
        assert_eq!(
            rows(id),
            4,
            "{id}: one row per size (4 KiB to 16 MiB)\n{out}"
        );
    }
    assert!(out.contains("pooled_raw / fresh_memfd"), "{out}");
    for id in ["paced_raw.30hz", "paced_raw.1khz"] {
        assert_eq!(rows(id), 2, "{id}: 64 B and 1 MiB\n{out}");
    }
    // Ours: the round trip, and every size each series supports.
    for (id, sizes) in [
        ("pubsub.rtt", 1),
        ("pubsub.inline", 4),
        ("pubsub.fresh", 4),
        ("pubsub.pooled", 6),
        ("pubsub.inline.4recv", 4),
        ("pubsub.fresh.4recv", 4),
        ("pubsub.pooled.4recv", 6),
        ("pubsub.paced.30hz", 2),
        ("pubsub.paced.1khz", 2),
        // The key rows again with rings off (a repetition fails if a process of these maps a
        // ring, or one of the ringed series' does not).
        ("pubsub.rtt.no_rings", 1),
        ("pubsub.inline.no_rings", 1),
        ("pubsub.pooled.no_rings", 2),
    ] {
        assert_eq!(rows(id), sizes, "{id}\n{out}");
    }
    for pair in [
        "pubsub.rtt / pubsub.rtt.no_rings",
        "pubsub.inline / pubsub.inline.no_rings",
        "pubsub.pooled / pubsub.pooled.no_rings",
    ] {
        assert!(out.contains(pair), "{pair}\n{out}");
    }
    assert!(out.contains("pubsub.rtt / seqpacket_pingpong"), "{out}");
    assert!(out.contains("pubsub.pooled / memcpy"), "{out}");
    assert!(out.contains("pubsub.paced.1khz / paced_raw.1khz"), "{out}");
    // Every repetition ran in a group of its own: none is left behind.
    assert_eq!(runtime.groups(), Vec::<String>::new());
}

/// The payload of `pub --size N`, as its help documents it.
fn generated(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

fn fnv_hex(bytes: &[u8]) -> String {
    format!("{:016x}", ipc_pubsub_cli::fnv1a64(bytes))
}

/// Checks `sub`'s lines: `payloads.len()` messages in order from one publisher, each with its
/// length, FNV-1a and mode.
fn check_messages(sub: &Proc, topic: &str, payloads: &[Vec<u8>], via: &str) {
    let lines: Vec<Value> = sub
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), payloads.len(), "{:#?}", sub.stdout);
    let publisher = lines[0]["node"].as_str().expect("a node id");
    assert!(
        publisher.len() == 16
            && publisher
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{publisher}"
    );
    for (i, (line, payload)) in lines.iter().zip(payloads).enumerate() {
        assert_eq!(line["topic"], topic, "{line}");
        assert_eq!(line["node"], publisher, "one publisher: {line}");
        assert_eq!(line["seq"], i as u64 + 1, "in order: {line}");
        assert_eq!(line["len"], payload.len(), "{line}");
        assert_eq!(line["fnv1a64"], fnv_hex(payload).as_str(), "{line}");
        assert_eq!(line["via"], via, "{line}");
    }
}

/// `--group G pub t --count 3 --mode MODE --wait-subscribers 1 PAYLOAD...`: three messages
/// to the one subscriber of `t`.
fn pub_three<'a>(group: &'a str, mode: &'a str, payload: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--group",
        group,
        "pub",
        "t",
        "--count",
        "3",
        "--mode",
        mode,
        "--wait-subscribers",
        "1",
    ];
    args.extend_from_slice(payload);
    args
}

#[test]
fn pub_reaches_sub_intact_in_every_mode() {
    let file = std::env::temp_dir().join(format!("ipc-pubsub-cli-{}", group()));
    let from_file: Vec<u8> = (0..200_003u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &from_file).expect("write the payload file");
    let file_arg = file.to_str().expect("a UTF-8 path").to_string();
    let cases: Vec<(&str, Vec<&str>, Vec<u8>)> = vec![
        ("inline", vec!["--size", "1000"], generated(1000)),
        (
            "inline",
            vec!["--data", "hello, bus"],
            b"hello, bus".to_vec(),
        ),
        ("fresh", vec!["--size", "100000"], generated(100_000)),
        ("pooled", vec!["--size", "1048579"], generated(1_048_579)),
        ("pooled", vec!["--file", &file_arg], from_file.clone()),
    ];
    for (mode, payload_args, payload) in &cases {
        let g = group();
        let mut sub = Proc::spawn(&["--group", &g, "sub", "t", "--count", "3"]);
        let args = pub_three(&g, mode, payload_args);
        let mut publisher = Proc::spawn(&args);
        let status = publisher.wait_exit(WAIT);
        assert!(status.success(), "pub {args:?}: {}", publisher.stderr);
        assert!(
            publisher.stderr.contains("pub: sent 3 message(s)")
                && publisher.stderr.contains(" to 1 subscriber(s)"),
            "a final status line: {}",
            publisher.stderr
        );
        let status = sub.wait_exit(WAIT);
        assert!(status.success(), "sub: {}", sub.stderr);
        check_messages(&sub, "t", &vec![payload.clone(); 3], mode);
    }
    let _ = std::fs::remove_file(&file);
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The exit code memcheck gives a program it found at fault ([`Proc::under_valgrind`]).
const MEMCHECK_FAILED: i32 = 99;

/// As people run their programs to check or profile them: under valgrind's memcheck, in every
/// payload mode (the pooled and fresh ones map memory the peer writes; inline and pooled ones
/// go through the shared-memory rings). Nodes crashed there once, as soon as they mapped a
/// ring (SIGSEGV: rustix read the vDSO valgrind keeps to itself). Skipped, saying so, without
/// valgrind; `.ci/run` installs it.
#[test]
fn pub_and_sub_run_clean_under_valgrind() {
    if !on_path("valgrind") {
        eprintln!(
            "SKIPPED pub_and_sub_run_clean_under_valgrind: `valgrind` is not installed \
             (apt-get install -y valgrind; .ci/run installs it)"
        );
        return;
    }
    // Valgrind translates the program before it runs: slower than WAIT allows for.
    let slow = WAIT * 6;
    for (mode, size) in [("inline", 1000), ("fresh", 100_000), ("pooled", 100_000)] {
        let g = group();
        let mut sub = Proc::under_valgrind(&["--group", &g, "sub", "t", "--count", "3"]);
        let size_arg = size.to_string();
        let args = pub_three(&g, mode, &["--size", &size_arg]);
        let mut publisher = Proc::under_valgrind(&args);
        let status = publisher.wait_exit(slow);
        assert!(
            status.success(),
            "{mode}: pub under memcheck: {status}: {}",
            publisher.stderr
        );
        let status = sub.wait_exit(slow);
        assert!(
            status.success(),
            "{mode}: sub under memcheck: {status}: {}",
            sub.stderr
        );
        check_messages(&sub, "t", &vec![generated(size); 3], mode);
    }
}

#[test]
fn a_spinning_sub_gets_what_pub_sends_and_a_bad_spin_is_a_usage_error() {
    // Whole microseconds only: refused before anything starts, with exit code 2.
    for bad in ["200us", "0.5", "fast"] {
        let g = group();
        let mut sub = Proc::spawn(&["--group", &g, "sub", "t", "--spin-us", bad]);
        assert_eq!(
            sub.wait_exit(WAIT).code(),
            Some(2),
            "{bad:?}: {}",
            sub.stderr
        );
        let says = format!("invalid value '{bad}' for '--spin-us <US>'");
        assert!(sub.stderr.contains(&says), "{says}: {}", sub.stderr);
        assert!(sub.stdout.is_empty(), "{:#?}", sub.stdout);
        assert_no_hub_socket(&g);
    }
    for (mode, size) in [("inline", 1000), ("pooled", 200_000)] {
        let g = group();
        let sub_line = format!("--group {g} sub t --count 20 --spin-us 200");
        let sub_args: Vec<&str> = sub_line.split(' ').collect();
        let mut sub = Proc::spawn(&sub_args);
        let pub_line = format!(
            "--group {g} pub t --count 20 --size {size} --mode {mode} --wait-subscribers 1"
        );
        let args: Vec<&str> = pub_line.split(' ').collect();
        let mut publisher = Proc::spawn(&args);
        assert!(publisher.wait_exit(WAIT).success(), "{}", publisher.stderr);
        assert!(sub.wait_exit(WAIT).success(), "sub: {}", sub.stderr);
        check_messages(&sub, "t", &vec![generated(size); 20], mode);
    }
}

#[test]
fn pub_says_how_many_subscribers_each_message_reached() {
    let g = group();
    let mut subs = [
        Proc::spawn(&["--group", &g, "sub", "t", "--count", "2"]),
        Proc::spawn(&["--group", &g, "sub", "t", "--count", "2"]),
    ];
    let args = [
        "--group",
        &g,
        "pub",
        "t",
        "--count",
        "2",
        "--json",
        "--wait-subscribers",
        "2",
    ];
    let mut publisher = Proc::spawn(&args);
    assert!(publisher.wait_exit(WAIT).success(), "{}", publisher.stderr);
    let lines: Vec<Value> = publisher
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{:#?}", publisher.stdout);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(event(line), "published", "{line}");
        assert_eq!(line["topic"], "t", "{line}");
        assert_eq!(line["seq"], i as u64 + 1, "{line}");
        assert_eq!(line["len"], 64, "{line}");
        // A link still being set up shows a message only once it is sent (see CLI.md).
        let subscribers = line["subscribers"].as_u64().expect("a number");
        assert!(subscribers <= 2, "{line}");
        assert_eq!(line["dropped"], 0, "{line}");
        assert!(line["ts"].as_u64().is_some(), "{line}");
    }
    // Both subscribers are reached. The final per-subscriber split can still undercount a
    // message that was queued on a link being set up (about 1 run in 12 says "1 of 2" for a
    // subscriber that got both): the driver does not report per-message delivery yet, which
    // the loss-reporting issue changes. What each subscriber got is checked just below.
    assert!(
        publisher.stderr.contains("pub: sent 2 message(s) of 64 B")
            && publisher.stderr.contains(" to 2 subscriber(s)"),
        "{}",
        publisher.stderr
    );
    for sub in &mut subs {
        assert!(sub.wait_exit(WAIT).success(), "sub: {}", sub.stderr);
        check_messages(sub, "t", &vec![generated(64); 2], "inline");
    }

    // Nobody listens.
    let mut publisher = Proc::spawn(&["--group", &g, "pub", "nobody", "--json"]);
    assert!(publisher.wait_exit(WAIT).success(), "{}", publisher.stderr);
    let line: Value = serde_json::from_str(&publisher.stdout[0]).expect("JSON");
    assert_eq!(line["subscribers"], 0, "{line}");
    assert!(
        publisher.stderr.contains(", no subscriber reached\n"),
        "{}",
        publisher.stderr
    );
}

#[test]
fn bus_members_see_each_others_lines_never_their_own() {
    let g = group();
    let mut a = Proc::spawn_io(&["--group", &g, "bus", "chat"], true);
    let mut b = Proc::spawn_io(&["--group", &g, "bus", "chat"], true);
    a.wait_stderr("bus: 1 other member(s)");
    b.wait_stderr("bus: 1 other member(s)");
    a.write_line("from a");
    b.wait_line("from a");
    // a's own line, were it delivered to a, came before b's answer: it is delivered locally
    // when published.
    b.write_line("from b");
    a.wait_line("from b");
    assert_eq!(a.stdout, ["from b"], "a: only b's line");
    assert_eq!(b.stdout, ["from a"], "b: only a's line");
    for p in [&mut a, &mut b] {
        p.signal(Signal::SIGTERM);
        let status = p.wait_exit(WAIT);
        assert!(status.success(), "{status}: {}", p.stderr);
    }
}

/// `status --json`, once.
fn status_json(g: &str) -> Value {
    let mut status = Proc::spawn(&["--group", g, "status", "--json"]);
    assert!(status.wait_exit(WAIT).success(), "{}", status.stderr);
    serde_json::from_str(&status.stdout.join("\n")).expect("one JSON document")
}

#[test]
fn status_shows_per_subscriber_counters() {
    let g = group();
    // A long keepalive: the stopped subscriber below must stay a member. The hub runs in a
    // node of its own, started first, so that stopping a subscriber never stops the hub.
    let slow = ["--keepalive-ms", "60000"];
    let mut hub = Proc::node(&g, "hub", &slow);
    hub.wait_json("the hub", |v| event(v) == "became_hub");
    let mut fast = Proc::spawn(&[&["--group", &g, "sub", "t"][..], &slow].concat());
    let mut stalled = Proc::spawn(
        &[
            &[
                "--group",
                &g,
                "sub",
                "t",
                "--policy",
                "drop-newest",
                "--depth",
                "1",
            ][..],
            &slow,
        ]
        .concat(),
    );
    let publisher = Proc::spawn(
        &[
            &[
                "--group",
                &g,
                "pub",
                "t",
                "--count",
                "0",
                "--rate",
                "50",
                "--size",
                "10000",
                "--mode",
                "pooled",
                "--wait-subscribers",
                "2",
            ][..],
            &slow,
        ]
        .concat(),
    );
    // The stalled subscriber is stopped after its first message and never gives another
    // range back: pooled messages stay in flight until released, so with a depth of 1 the
    // publisher drops the rest for it.
    stalled.wait_json("a first message", |_| true);
    stalled.signal(Signal::SIGSTOP);
    fast.wait_json("a few messages", |v| v["seq"].as_u64() >= Some(5));
    let deadline = Instant::now() + WAIT;
    let doc = loop {
        let doc = status_json(&g);
        let links = doc["links"].as_array().cloned().unwrap_or_default();
        let dropped = links.iter().any(|l| l["dropped"].as_u64() > Some(0));
        let received = links.iter().any(|l| l["received"].as_u64() >= Some(5));
        if links.len() == 2 && dropped && received {
            break doc;
        }
        assert!(Instant::now() < deadline, "no such counters: {doc:#}");
    };
    let links = doc["links"].as_array().expect("links");
    let (to_stalled, to_fast): (Vec<&Value>, Vec<&Value>) =
        links.iter().partition(|l| l["dropped"].as_u64() > Some(0));
    let (to_stalled, to_fast) = (to_stalled[0], to_fast[0]);
    assert_eq!(to_stalled["publisher"], to_fast["publisher"], "{doc:#}");
    assert_eq!(to_stalled["topic"], "t");
    assert_eq!(
        to_stalled["in_flight"], 1,
        "the one range it holds: {doc:#}"
    );
    assert!(to_stalled["sent"].as_u64() >= Some(1), "{doc:#}");
    assert!(
        to_stalled["received"].is_null(),
        "a stopped node cannot answer: {doc:#}"
    );
    assert_eq!(
        doc["unanswered"].as_array().map(Vec::len),
        Some(1),
        "{doc:#}"
    );
    assert_eq!(to_fast["dropped"], 0, "{doc:#}");
    // The two ends are asked one after the other, while messages flow: no order between them.
    assert!(to_fast["sent"].as_u64() >= Some(5), "{doc:#}");
    assert!(to_fast["received"].as_u64() >= Some(5), "{doc:#}");
    assert_eq!(to_fast["missed"], 0, "{doc:#}");
    // The human form has the same table.
    let mut table = Proc::spawn(&["--group", &g, "status"]);
    assert!(table.wait_exit(WAIT).success(), "{}", table.stderr);
    let text = table.stdout.join("\n");
    assert!(
        text.contains("data links:") && text.contains("SENT  DROPPED  IN-FLIGHT"),
        "{text}"
    );
    stalled.signal(Signal::SIGCONT);
    drop(publisher);
}

// ---- doc: never the group's hub unless --create ----

/// `ipc-pubsub --group G doc c ARGS...`, run to its end; its exit code, stdout and stderr.
fn doc(g: &str, args: &[&str]) -> (Option<i32>, Vec<String>, String) {
    let mut all = vec!["--group", g, "doc", "c"];
    all.extend_from_slice(args);
    let mut p = Proc::spawn(&all);
    let status = p.wait_exit(WAIT);
    (
        status.code(),
        std::mem::take(&mut p.stdout),
        p.stderr.clone(),
    )
}

/// Nothing runs in group `g`: no process of it, nobody holds the hub's lock, and `status`
/// finds nothing.
fn assert_nothing_runs(g: &str) {
    assert_eq!(processes_mentioning(g), Vec::<String>::new());
    let dir = GroupDir::private(g).expect("dir");
    assert!(!dir.hub_claimed().expect("probe the lock"), "a hub runs");
    let mut status = Proc::spawn(&["--group", g, "status"]);
    assert_eq!(status.wait_exit(WAIT).code(), Some(1), "{}", status.stderr);
}

/// No hub socket in group `g`'s directory (one killed with SIGKILL leaves its own).
fn assert_no_hub_socket(g: &str) {
    let hub = GroupDir::private(g).expect("dir").paths().hub_socket();
    assert!(!hub.exists(), "{} left behind", hub.display());
}

fn no_group_message(g: &str) -> String {
    format!("ipc-pubsub: no group named \"{g}\" is running (start a node, or pass --create)")
}

#[test]
fn doc_on_a_group_that_does_not_run_fails_and_starts_nothing() {
    let g = group();
    for args in [
        &["get"][..],
        &["patch", r#"{"$inc": {"n": 1}}"#],
        &["watch"],
        &["get", "--default", r#"{"n": 5}"#],
    ] {
        let (code, stdout, stderr) = doc(&g, args);
        assert_eq!(code, Some(1), "{args:?}: {stdout:?} {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout:?}");
        assert!(stderr.contains(&no_group_message(&g)), "{args:?}: {stderr}");
        assert_nothing_runs(&g);
        assert_no_hub_socket(&g);
    }
}

#[test]
fn doc_with_create_starts_the_group_as_before() {
    let g = group();
    let (code, stdout, stderr) = doc(&g, &["patch", r#"{"$inc": {"n": 1}}"#, "--create"]);
    assert_eq!((code, stdout), (Some(0), vec!["1".to_string()]), "{stderr}");
    // It left, and the group with it.
    assert_nothing_runs(&g);
    assert_no_hub_socket(&g);
    let (code, stdout, stderr) = doc(&g, &["get", "--create", "--default", r#"{"n": 5}"#]);
    assert_eq!(
        (code, stdout),
        (Some(0), vec![r#"{"n":5}"#.to_string()]),
        "{stderr}"
    );

    // A watcher that starts the group; a writer without --create joins it.
    let mut watch = Proc::spawn(&["--group", &g, "doc", "c", "watch", "--create"]);
    watch.wait_json("doc_state", |v| event(v) == "doc_state");
    let (code, stdout, stderr) = doc(&g, &["patch", r#"{"$set": {"a": "x"}}"#]);
    assert_eq!((code, stdout), (Some(0), vec!["1".to_string()]), "{stderr}");
    let line = watch.wait_json("doc_patched", |v| event(v) == "doc_patched");
    assert_eq!(line["value"], serde_json::json!({"a": "x"}), "{line}");
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait_exit(WAIT).code(), Some(0), "{}", watch.stderr);
    assert_nothing_runs(&g);
}

#[test]
fn doc_joins_a_running_group_and_never_becomes_its_hub() {
    let g = group();
    let mut node = Proc::node(&g, "n", &[]);
    node.wait_json("synced", |v| event(v) == "synced");
    let (code, stdout, stderr) = doc(&g, &["patch", r#"{"$inc": {"n": 1}}"#]);
    assert_eq!((code, stdout), (Some(0), vec!["1".to_string()]), "{stderr}");
    let (code, stdout, stderr) = doc(&g, &["get"]);
    assert_eq!(
        (code, stdout),
        (Some(0), vec![r#"{"n":1}"#.to_string()]),
        "{stderr}"
    );

    // A watcher, then the only node that may run the hub dies: the watcher does not take over.
    let mut watch = Proc::spawn(&["--group", &g, "doc", "c", "--keepalive-ms", "500", "watch"]);
    let state = watch.wait_json("doc_state", |v| event(v) == "doc_state");
    assert_eq!(state["value"], serde_json::json!({"n": 1}), "{state}");
    node.signal(Signal::SIGKILL);
    assert_eq!(watch.wait_exit(WAIT).code(), Some(1), "{}", watch.stderr);
    assert!(
        watch
            .stderr
            .contains(&format!("no group named \"{g}\" is running any more")),
        "{}",
        watch.stderr
    );
    // Nobody serves the document any more: no leftover hub answers.
    let (code, stdout, stderr) = doc(&g, &["get"]);
    assert_eq!(code, Some(1), "{stdout:?} {stderr}");
    assert!(stderr.contains(&no_group_message(&g)), "{stderr}");
    drop(node);
    assert_nothing_runs(&g);
}

#[test]
fn doc_watch_follows_a_failover_to_another_node() {
    let g = group();
    let mut a = Proc::node(&g, "a", &[]);
    a.wait_json("became_hub", |v| event(v) == "became_hub");
    let mut b = Proc::node(&g, "b", &[]);
    b.wait_json("synced", |v| event(v) == "synced");
    let mut watch = Proc::spawn(&["--group", &g, "doc", "c", "watch"]);
    watch.wait_json("doc_state", |v| event(v) == "doc_state");
    a.signal(Signal::SIGKILL);
    b.wait_json("became_hub", |v| event(v) == "became_hub");
    // The watcher reaches b's hub and sees a patch made through it.
    let (code, stdout, stderr) = doc(&g, &["patch", r#"{"$set": {"k": 2}}"#]);
    assert_eq!(code, Some(0), "{stdout:?} {stderr}");
    let line = watch.wait_json("the patch", |v| v["value"]["k"] == 2);
    assert!(
        ["doc_patched", "doc_state"].contains(&event(&line)),
        "{line}"
    );
    watch.signal(Signal::SIGTERM);
    assert_eq!(watch.wait_exit(WAIT).code(), Some(0), "{}", watch.stderr);
}

#[test]
fn doc_refuses_bad_json_and_empty_updates_with_exit_1() {
    let g = group();
    for (args, needle) in [
        (
            &["patch", "{not json"][..],
            "ipc-pubsub: the update is not JSON: ",
        ),
        (&["patch", "{}"], "ipc-pubsub: invalid update: "),
        (
            &["patch", r#"{"$set": {}}"#],
            "ipc-pubsub: invalid update: ",
        ),
        (&["patch", r#"{"n": 1}"#], "ipc-pubsub: invalid update: "),
        (
            &["get", "--default", "[1,"],
            "ipc-pubsub: --default is not JSON: ",
        ),
        (
            &["get", "--create", "--default", "[1,"],
            "ipc-pubsub: --default is not JSON: ",
        ),
        (&["patch", "{}", "--create"], "ipc-pubsub: invalid update: "),
    ] {
        let (code, stdout, stderr) = doc(&g, args);
        assert_eq!(code, Some(1), "{args:?}: {stdout:?} {stderr}");
        assert!(stderr.starts_with(needle), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout:?}");
    }
    assert_nothing_runs(&g);
}

/// Checks a subscriber's lines per publisher: messages and `lost` lines in increasing seq
/// order, never twice, and no hole that no `lost` line tells. Returns, summed over publishers,
/// (messages, lost, the lost lines' reasons).
fn check_order_and_losses(sub: &Proc, who: &str) -> (u64, u64, Vec<String>) {
    use std::collections::BTreeMap;
    // publisher -> (first seq seen, last seq seen, messages, lost)
    let mut seen: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    let mut reasons = Vec::new();
    for l in &sub.stdout {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        let node = v["node"].as_str().expect("a publisher").to_string();
        let (first, last, n, lost) = if event(&v) == "lost" {
            reasons.push(v["reason"].as_str().expect("a reason").to_string());
            let n = v["lost"].as_u64().expect("an integer `lost`");
            (v["first"].as_u64(), v["last"].as_u64(), n, true)
        } else {
            (v["seq"].as_u64(), v["seq"].as_u64(), 1, false)
        };
        let (first, last) = (first.expect("first"), last.expect("last"));
        assert!(
            first <= last && n >= 1 && n <= last - first + 1,
            "{who}: a line that is no range: {l}"
        );
        let e = seen.entry(node).or_insert((first, first - 1, 0, 0));
        assert!(
            first > e.1,
            "{who}: seq goes back from {} at {l}\nstderr: {}",
            e.1,
            sub.stderr
        );
        e.1 = last;
        if lost {
            e.3 += n;
        } else {
            e.2 += 1;
        }
    }
    let mut total = (0, 0, reasons);
    for (node, (first, last, messages, lost)) in seen {
        assert_eq!(
            messages + lost,
            last - first + 1,
            "{who}: from {node}, {messages} messages + {lost} lost over seqs {first}..={last}: \
             a hole nobody told"
        );
        total.0 += messages;
        total.1 += lost;
    }
    total
}

/// The issue's reproduction, from a script: a fast and a slow `sub` of a `pub --count 0`; the
/// slow one is stopped past the keepalive (expelled), then resumed. Under every policy, each
/// subscriber's seqs only go forward and every missing message is told by a `lost` line; the
/// slow one is told of its expulsion; under `Block` the fast one loses nothing.
fn stalled_subscriber_under_every_policy(mode: &str, size: &str) {
    for policy in ["block", "drop-oldest", "drop-newest"] {
        let g = group();
        let timing = ["--keepalive-ms", "1000"];
        let mut hub = Proc::node(&g, "hub", &timing);
        // The subscribers are spokes: the one stopped must not be the hub.
        hub.wait_json("became_hub", |v| event(v) == "became_hub");
        let sub = || {
            let mut args = vec!["--group", &g, "sub", "t", "--policy", policy];
            args.extend(timing);
            Proc::spawn(&args)
        };
        let mut fast = sub();
        let mut slow = sub();
        let mut args = vec![
            "--group",
            &g,
            "pub",
            "t",
            "--size",
            size,
            "--count",
            "0",
            "--rate",
            "2000",
            "--mode",
            mode,
            "--wait-subscribers",
            "2",
        ];
        args.extend(timing);
        let mut publisher = Proc::spawn(&args);
        let at_least = |n: u64| move |v: &Value| v["seq"].as_u64().is_some_and(|s| s >= n);
        slow.wait_json("messages before the stop", at_least(200));
        slow.signal(Signal::SIGSTOP);
        // The scenario: stopped for three keepalives (not a wait for a condition).
        thread::sleep(Duration::from_secs(3));
        slow.signal(Signal::SIGCONT);
        let expelled = slow.wait_json("a loss told after the expulsion", |v| {
            event(v) == "lost" && v["reason"] == "expelled"
        });
        let after = expelled["last"].as_u64().expect("last") + 200;
        slow.wait_json("messages after the expulsion", at_least(after));
        fast.wait_json("messages as long", at_least(after));
        assert_eq!(publisher.child.try_wait().ok().flatten(), None, "pub runs");
        // Under `Block` nothing more is lost once the slow one is back: `status` must count
        // what its `lost` lines tell (and nothing for the fast one).
        let status = (policy == "block").then(|| status_json(&g));
        publisher.signal(Signal::SIGTERM);
        publisher.wait_exit(WAIT);
        for p in [&mut fast, &mut slow] {
            p.signal(Signal::SIGTERM);
            p.wait_exit(WAIT);
        }
        let (m, lost, _) = check_order_and_losses(&fast, &format!("fast ({policy}, {mode})"));
        if policy == "block" {
            assert_eq!(lost, 0, "fast ({mode}) under block lost {lost} of {m}");
        }
        let (m, lost, reasons) = check_order_and_losses(&slow, &format!("slow ({policy}, {mode})"));
        if let Some(status) = status {
            let mut counted: Vec<u64> = status["links"]
                .as_array()
                .expect("links")
                .iter()
                .map(|l| l["lost"].as_u64().expect("a subscriber's lost"))
                .collect();
            counted.sort_unstable();
            assert_eq!(
                counted,
                [0, lost],
                "status agrees with the lines: {status:#}"
            );
        }
        assert!(
            lost > 0 && reasons.iter().any(|r| r == "expelled"),
            "slow ({policy}, {mode}): {m} messages, {lost} lost, reasons {reasons:?}"
        );
        assert!(
            slow.stderr.contains("expelled"),
            "the slow subscriber logs its expulsion: {}",
            slow.stderr
        );
    }
}

#[test]
fn a_stalled_subscriber_is_told_what_it_lost_inline() {
    stalled_subscriber_under_every_policy("inline", "1024");
}

#[test]
fn a_stalled_subscriber_is_told_what_it_lost_pooled() {
    stalled_subscriber_under_every_policy("pooled", "65536");
}
