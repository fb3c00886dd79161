//! Hostile peers of the same uid: floods of idle connections, silent connections, sparse
//! payloads of any size, and a stream of refused connections. A node stays alive, keeps
//! serving its members, keeps its memory and descriptors bounded, and logs a bounded number
//! of lines.
//!
//! Every test uses its own random group, waits on conditions with generous deadlines (never
//! on fixed sleeps), and kills every process it starts, also when it fails: [`Proc`] kills and
//! reaps its process when dropped.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use ipc_driver_std::{Node, SubscriptionOptions};
use ipc_os::memfd::{SealSet, Segment};
use ipc_os::poll::{Events, Interest, Poller, Token};
use ipc_os::rendezvous::GroupDir;
use ipc_os::socket::{self, Recv, Sent};
use ipc_proto::Limits;
use ipc_proto::wire::{DataFrame, MessageHeader, encode_data};
use ipc_pubsub_cli::TempGroup;
use serde_json::Value;

/// Generous: everything here takes milliseconds to seconds on an idle machine.
const WAIT: Duration = Duration::from_secs(30);

/// A fresh group, its directory removed when dropped (after the test's processes, made
/// after it).
fn group() -> TempGroup {
    TempGroup::new("t").expect("OS randomness")
}

/// A process of `ipc-pubsub` (under `sh` to lower its descriptor limit), killed and reaped
/// when dropped; its stdout lines and stderr lines collected.
struct Proc {
    child: std::process::Child,
    rx: Receiver<(bool, String)>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Proc {
    /// `ipc-pubsub ARGS`, with at most `nofile` open descriptors if set.
    fn spawn(args: &[&str], nofile: Option<u32>) -> Self {
        let exe = env!("CARGO_BIN_EXE_ipc-pubsub");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = cmd
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
        thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((true, l)).is_err() {
                    return;
                }
            }
        });
        thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx2.send((false, l)).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            rx,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// Collects what the process wrote so far.
    fn drain(&mut self) {
        while let Ok((out, l)) = self.rx.try_recv() {
            if out {
                self.stdout.push(l);
            } else {
                self.stderr.push(l);
            }
        }
    }

    /// Waits until `pred` holds for what the process wrote; panics at the deadline.
    fn wait(&mut self, what: &str, mut pred: impl FnMut(&[String], &[String]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.drain();
            if pred(&self.stdout, &self.stderr) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} within {WAIT:?}\nstdout: {:#?}\nstderr: {:#?}",
                self.stdout,
                self.stderr
            );
            if let Ok((out, l)) = self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                if out {
                    self.stdout.push(l);
                } else {
                    self.stderr.push(l);
                }
            }
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's data address in its group.
#[derive(Clone)]
struct Target {
    group: String,
    addr: String,
}

impl Target {
    fn connect(&self) -> std::io::Result<OwnedFd> {
        GroupDir::private(&self.group)
            .expect("the group's directory")
            .connect_data(&self.addr)
    }
}

/// The data address of the node named `name` in `node`'s view, once it is there.
fn data_addr(node: &Node, name: &str) -> Target {
    let view = node
        .wait_view(WAIT, |v| v.nodes().values().any(|n| n.info.name == name))
        .expect("the node joins");
    let n = view
        .nodes()
        .values()
        .find(|n| n.info.name == name)
        .expect("listed");
    Target {
        group: node.group().to_string(),
        addr: n.info.data_addr.clone(),
    }
}

/// Connects to `target`, waiting while its backlog is full.
fn connect(target: &Target, deadline: Instant) -> OwnedFd {
    loop {
        match target.connect() {
            Ok(fd) => return fd,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the backlog stayed full");
                thread::yield_now();
            }
            Err(e) => panic!("connect: {e}"),
        }
    }
}

fn send(fd: &OwnedFd, record: &[u8], with: &[std::os::fd::BorrowedFd<'_>]) {
    assert_eq!(
        socket::send_record(fd.as_fd(), record, with).expect("send"),
        Sent::Complete
    );
}

/// Whether the other end has closed the link (reading what it sent meanwhile).
fn is_closed(fd: &OwnedFd) -> bool {
    let mut buf = vec![0; 1 << 16];
    loop {
        let mut got = Vec::new();
        match socket::recv_record(fd.as_fd(), &mut buf, &mut got, 4) {
            Ok(Recv::Closed) | Err(_) => return true,
            Ok(Recv::Data { .. }) => {}
            Ok(Recv::WouldBlock) => return false,
        }
    }
}

/// Waits until the other end closes the link; `false` at the deadline.
fn closed_by(fd: &OwnedFd, deadline: Instant) -> bool {
    let poller = Poller::new().expect("epoll");
    poller
        .add(fd.as_fd(), Token(0), Interest::READABLE)
        .expect("watch");
    let mut events = Events::with_capacity(2);
    loop {
        if is_closed(fd) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        poller.wait(&mut events, Some(left)).expect("wait");
    }
}

/// Raises this process's soft limit of open files to its hard limit (the floods need
/// thousands of sockets); returns the new soft limit.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit").0
}

fn json(line: &str) -> Option<Value> {
    serde_json::from_str(line).ok()
}

/// The `status --json` guard row of `node` in `group`.
fn guard_row(group: &str, node: &str) -> Option<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_ipc-pubsub"))
        .args(["--group", group, "status", "--json"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run status");
    let status: Value = serde_json::from_slice(&out.stdout).ok()?;
    status["guards"]
        .as_array()?
        .iter()
        .find(|g| g["node"] == node)
        .cloned()
}

#[test]
fn a_flood_of_idle_connections_past_the_fd_limit_leaves_the_node_serving() {
    let soft = raise_nofile();
    let flood = 2000.min(soft.saturating_sub(200) as usize);
    assert!(flood >= 1000, "this process may open only {soft} files");
    let g = group();
    // The victim: a subscriber that may open 64 files, started first (it runs the hub).
    let mut victim = Proc::spawn(&["--group", &g, "sub", "t"], Some(64));
    let publisher = Node::builder("pub").group(&g).join().expect("join");
    let victim_addr = data_addr(&publisher, "sub");
    let victim_id = publisher
        .view()
        .nodes()
        .values()
        .find(|n| n.info.name == "sub")
        .map(|n| n.info.id)
        .expect("the victim");
    let p = publisher.publisher("t", "text/plain").expect("publisher");
    // The publisher's data link to the victim is up before the flood.
    let mut sent = 0u64;
    let mut publish_until_seen = |victim: &mut Proc, what: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            sent += 1;
            p.publish(format!("m{sent}").as_bytes()).expect("publish");
            let seq = sent;
            victim.drain();
            if victim
                .stdout
                .iter()
                .filter_map(|l| json(l))
                .any(|v| v["seq"].as_u64() >= Some(seq.saturating_sub(5)))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the victim printed nothing recent\nstdout: {:#?}\nstderr: {:#?}",
                victim.stdout,
                victim.stderr
            );
            thread::sleep(Duration::from_millis(20));
        }
    };
    publish_until_seen(&mut victim, "before the flood");

    // An attacker connects as fast as the victim's backlog takes connections, and holds every
    // one without a word: far more than the victim may hold files. (The backlog is short, so
    // the victim takes a few dozen every couple of seconds, as the silent ones expire.)
    let flooding = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = Arc::clone(&stop);
        let victim_addr = victim_addr.clone();
        thread::spawn(move || {
            let mut idle: Vec<OwnedFd> = Vec::new();
            while !stop.load(Ordering::Relaxed) && idle.len() < flood {
                match victim_addr.connect() {
                    Ok(fd) => idle.push(fd),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("connect: {e}"),
                }
            }
            idle
        })
    };

    // While flooded: the existing link carries messages, and the hub serves a new member.
    publish_until_seen(&mut victim, "during the flood");
    let late = Node::builder("late")
        .group(&g)
        .join()
        .expect("a new member joins");
    publisher
        .wait_view(WAIT, |v| v.nodes().values().any(|n| n.info.name == "late"))
        .expect("the hub announced the new member");
    // The victim ran out of descriptors and paused instead of stopping; silent connections
    // were closed at their deadline, freeing descriptors.
    victim.wait(
        "a paused accept and an expired handshake in the log",
        |_, err| {
            err.iter().any(|l| l.contains("pausing the listeners"))
                && err.iter().any(|l| l.contains("no handshake within"))
        },
    );
    assert!(victim.is_running(), "the victim is alive");
    // Two rounds of expiries at least, then the attacker stops and lets go.
    victim.wait("a second round of expired handshakes", |_, err| {
        err.iter()
            .filter(|l| l.contains("no handshake within"))
            .count()
            >= 2
            || err.iter().any(|l| l.contains("more peers refused"))
    });
    stop.store(true, Ordering::Relaxed);
    let idle = attacker.join().expect("the attacker");
    let flooded = idle.len();
    eprintln!(
        "{flooded} idle connections in {:?} against a node limited to 64 files",
        flooding.elapsed()
    );
    assert!(flooded > 3 * 64, "only {flooded} connections got through");
    drop(idle);
    drop(late);
    publish_until_seen(&mut victim, "after the flood");
    assert!(victim.is_running(), "the victim is alive");
    // `status` reports what the victim refused.
    let id = format!("{victim_id}");
    let deadline = Instant::now() + WAIT;
    let row = loop {
        if let Some(row) = guard_row(&g, &id) {
            break row;
        }
        assert!(Instant::now() < deadline, "no guard row for {id}");
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!("the victim's refusals: {row}");
    assert!(row["accept_paused"].as_u64() >= Some(1), "{row}");
    assert!(row["handshake_expired"].as_u64() >= Some(1), "{row}");
    victim.drain();
    assert!(
        !victim.stderr.iter().any(|l| l.contains("I/O thread stops")),
        "{:#?}",
        victim.stderr
    );
    let warnings = victim.stderr.iter().filter(|l| l.contains("WARN")).count();
    assert!(
        warnings <= 50,
        "{warnings} warnings for {flooded} connections: {:#?}",
        victim.stderr
    );
}

#[test]
fn silent_connections_are_capped_and_closed_at_their_deadline() {
    let g = group();
    let limits = Limits {
        max_pending: 4,
        handshake_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let node = Node::builder("n")
        .group(&g)
        .limits(limits)
        .join()
        .expect("join");
    let target = data_addr(&node, "n");
    let start = Instant::now();
    let deadline = start + WAIT;
    let links: Vec<OwnedFd> = (0..10).map(|_| connect(&target, deadline)).collect();
    // Six are closed at once (too many pending), four at the deadline: all of them.
    for (i, l) in links.iter().enumerate() {
        assert!(closed_by(l, deadline), "link {i} is still open");
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    let guard = node.data_stats().expect("stats").guard;
    assert_eq!(guard.pending_refused, 6, "{guard:?}");
    assert_eq!(guard.handshake_expired, 4, "{guard:?}");
    // A link that says Hello in time stays: it speaks for a real node of this process
    // (the node checks the claim against its view: same uid and pid).
    let other = Node::builder("other").group(&g).join().expect("join");
    let oid = other.id();
    node.wait_view(WAIT, |v| v.node(oid).is_some())
        .expect("the node sees the other");
    let hello = encode_data(
        &DataFrame::Hello {
            publisher: oid,
            rings: false,
        },
        &[],
    );
    let greeted = connect(&target, deadline);
    send(&greeted, &hello, &[]);
    assert!(!closed_by(
        &greeted,
        Instant::now() + Duration::from_millis(1500)
    ));
}

/// Resident and mapped memory of this process, in kB: (VmRSS, largest mapping).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let largest = maps
        .lines()
        .filter_map(|l| {
            let (range, _) = l.split_once(' ')?;
            let (a, b) = range.split_once('-')?;
            let a = u64::from_str_radix(a, 16).ok()?;
            let b = u64::from_str_radix(b, 16).ok()?;
            l.contains("memfd:").then_some((b - a) >> 10)
        })
        .max()
        .unwrap_or(0);
    (rss, largest)
}

#[test]
fn a_sparse_fresh_payload_past_the_maximum_is_refused_before_mapping() {
    let g = group();
    let sub = Node::builder("sub").group(&g).join().expect("join");
    let subscription = sub
        .subscription("t", SubscriptionOptions::default())
        .expect("subscribe");
    let target = data_addr(&sub, "sub");
    // The link speaks for a real publisher of this process, which announced the topic (the
    // subscriber checks both against its view); only the payload is hostile.
    let p = Node::builder("pub").group(&g).join().expect("join");
    let _publisher = p.publisher("t", "x").expect("publisher");
    let pid_ = p.id();
    sub.wait_view(WAIT, |v| {
        v.node(pid_).is_some_and(|n| n.publishes.contains_key("t"))
    })
    .expect("the subscriber sees the publisher's topic");
    let deadline = Instant::now() + WAIT;
    let link = connect(&target, deadline);
    let hello = encode_data(
        &DataFrame::Hello {
            publisher: pid_,
            rings: false,
        },
        &[],
    );
    let bind = encode_data(
        &DataFrame::Topic {
            id: 1,
            topic: "t".into(),
        },
        &[],
    );
    send(&link, &hello, &[]);
    send(&link, &bind, &[]);
    let before = memory();
    // 4 GiB, sealed, sparse: it costs its sender nothing.
    let len = 4u64 << 30;
    let seg = Segment::create("sparse", usize::try_from(len).expect("64-bit")).expect("memfd");
    seg.seal(SealSet::SHRINK | SealSet::GROW | SealSet::WRITE)
        .expect("seal");
    let fd = seg.into_fd();
    let header = MessageHeader { topic: 1, seq: 1 };
    send(
        &link,
        &encode_data(&DataFrame::Fresh { header, len }, &[]),
        &[fd.as_fd()],
    );
    assert!(closed_by(&link, deadline), "the subscriber closed the link");
    let after = memory();
    eprintln!(
        "sparse fresh payload of {len} bytes: VmRSS {} -> {} kB, largest memfd mapping {} -> {} kB",
        before.0, after.0, before.1, after.1
    );
    assert!(after.1 < 1 << 20, "a mapping of {} kB", after.1);
    assert!(
        after.0 < before.0 + (256 << 10),
        "RSS {} -> {} kB",
        before.0,
        after.0
    );
    let stats = sub.data_stats().expect("stats");
    assert_eq!(stats.guard.oversized, 1, "{stats:?}");
    assert!(subscription.try_recv().is_err(), "nothing delivered");
}

#[test]
fn two_thousand_refused_connections_log_a_bounded_number_of_lines() {
    raise_nofile();
    let g = group();
    let mut victim = Proc::spawn(&["--group", &g, "sub", "t"], None);
    let observer = Node::builder("watch").group(&g).join().expect("join");
    let target = data_addr(&observer, "sub");
    let deadline = Instant::now() + WAIT * 2;
    // Each sends garbage, which the victim refuses as a protocol violation.
    for i in 0..2000 {
        let link = connect(&target, deadline);
        send(&link, b"\x05\0\0\0garbage", &[]);
        assert!(closed_by(&link, deadline), "connection {i} stayed open");
    }
    // The burst, then one summary once the interval is over.
    victim.wait("the summary of the refusals", |_, err| {
        err.iter().any(|l| l.contains("more peers refused"))
    });
    assert!(victim.is_running());
    let warnings: Vec<&String> = victim
        .stderr
        .iter()
        .filter(|l| l.contains("WARN"))
        .collect();
    eprintln!(
        "2000 refused connections: {} warning lines, the last: {:?}",
        warnings.len(),
        warnings.last()
    );
    assert!(
        warnings.len() <= 20,
        "{} lines: {warnings:#?}",
        warnings.len()
    );
}
