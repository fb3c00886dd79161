//! The `ipc-pubsub` command line, run as a process.
//!
//! Every test uses its own random group, waits on conditions (lines read with generous
//! deadlines, never fixed sleeps), and kills every process it starts, also when it fails:
//! [`Proc`] kills and reaps its process when dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// Generous: everything here takes milliseconds on an idle machine.
const WAIT: Duration = Duration::from_secs(20);

fn group() -> String {
    format!("t-{:016x}", getrandom::u64().expect("OS randomness"))
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_ipc-pubsub"))
            .args(args)
            .env_remove("IPC_PUBSUB_GROUP")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
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
    assert_eq!(started["group"], g.as_str());

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
    assert_eq!(doc["group"], g.as_str());
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
fn the_demo_succeeds_and_leaves_nothing_running() {
    let mut demo = Proc::spawn(&["demo"]);
    let status = demo.wait_exit(Duration::from_secs(60));
    let out = demo.stdout.join("\n");
    assert!(status.success(), "{status}\n{out}\nstderr: {}", demo.stderr);
    assert!(out.contains("failover took"), "{out}");
    assert!(out.contains("every node exited with status 0"), "{out}");
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
}

#[test]
fn bench_payload_quick_prints_every_baseline_row() {
    let mut bench = Proc::spawn(&["bench", "payload", "--quick"]);
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
}
