//! Two groups on this host, each with its bridge process, the bridges linked by Zenoh (peer
//! mode, TCP on 127.0.0.1, explicit endpoints, no multicast scouting): as a user runs them.
//!
//! Group A's hub is a process of its own (this test binary, run again as `child_hub`), so the
//! test can `kill -9` it; `ipc-pubsub status` runs the same way (`child_cli`). Every child is
//! killed when the test ends, however it ends.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipc_bridge_zenoh::{MAX_ATTACHMENT, Meta, PLAIN_MIME, STATS_TOPIC, fnv1a, peer_config};
use ipc_driver_std::{Node, Policy, Publisher, Subscription, SubscriptionOptions};
use ipc_pubsub_cli::TempGroup;
use zenoh::Wait;

const BRIDGE: &str = env!("CARGO_BIN_EXE_ipc-pubsub-zenoh");
const HUB_ENV: &str = "IPC_BRIDGE_ZENOH_TEST_HUB_GROUP";
const CLI_ENV: &str = "IPC_BRIDGE_ZENOH_TEST_CLI_ARGS";
/// The counters a bridge sets on its node, in order.
const COUNTERS: [&str; 8] = [
    "exported",
    "exported_bytes",
    "export_dropped",
    "imported",
    "imported_bytes",
    "import_dropped",
    "refused",
    "echoes",
];
const MIME: &str = "application/x-bridge-test";
const TOPIC: &str = "data";
const WARM: &[u8] = b"warm-";
/// Generous: a loaded 2-core CI machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Not a test on its own: group A's hub, when the test below runs this binary as a child with
/// `HUB_ENV` set. It joins, says so, and stays until killed (or its stdin closes).
#[test]
fn child_hub() {
    let Ok(group) = std::env::var(HUB_ENV) else {
        return;
    };
    let node = Node::builder("hub-a").group(group).join().expect("joins");
    println!("child-ready {} hub={}", node.id(), node.is_hub());
    std::io::stdout().flush().expect("stdout");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Not a test on its own: the `ipc-pubsub` command line, when a test runs this binary as a
/// child with `CLI_ENV` set to its arguments (separated by newlines). Exits with its code.
#[test]
fn child_cli() {
    let Ok(args) = std::env::var(CLI_ENV) else {
        return;
    };
    let args = std::iter::once("ipc-pubsub")
        .chain(args.lines())
        .map(Into::into);
    let code = ipc_pubsub_cli::run(args);
    std::io::stdout().flush().expect("stdout");
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// `ipc-pubsub --group GROUP ARGS...` in a child process: its stdout from its first `{` (for
/// `--json`) or from its first `group ` (a table), after libtest's own words. Panics unless it
/// exits 0. It cannot hang: `status` waits 1.5 s for the hub and 1 s per node at most.
fn cli(group: &str, args: &[&str]) -> String {
    let mut all = vec!["--group", group];
    all.extend_from_slice(args);
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args(["--exact", "child_cli", "--nocapture", "--test-threads=1"])
        .env(CLI_ENV, all.join("\n"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "ipc-pubsub {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = if args.contains(&"--json") {
        text.find('{')
    } else {
        text.find("group ")
    };
    let start = start.unwrap_or_else(|| panic!("ipc-pubsub {args:?} printed nothing: {text}"));
    text[start..].to_owned()
}

#[test]
fn status_shows_the_bridge_counters() {
    let group = TempGroup::new("bridge-status").expect("OS randomness");
    let prefix = format!("ipc/{}", unique("status"));
    let endpoint = free_endpoint();
    let mut procs = Procs::default();
    let bridge = procs.spawn(
        "bridge",
        Command::new(BRIDGE).args([
            "run",
            "--group",
            &group,
            "--name",
            "the-bridge",
            "--key-prefix",
            &prefix,
            "--import",
            "**",
            "--listen",
            &endpoint,
        ]),
    );
    let ready = bridge.wait_line(|l| l.contains("\"event\":\"ready\""));
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("JSON");
    let id = ready["node"].as_str().expect("a node id").to_owned();

    let app = Node::builder("app").group(&group).join().expect("joins");
    let sub = app.subscription("t", options(64)).expect("subscription");
    let stats = app.subscription(STATS_TOPIC, options(8)).expect("stats");
    let peer = zenoh::open(peer_config(&[], &[&endpoint]).expect("config"))
        .wait()
        .expect("a zenoh session");
    let key = format!("{prefix}/t");
    wait_until("a sample reaches the group", || {
        peer.put(&key, b"hello".to_vec()).wait().expect("put");
        sub.recv_timeout(Duration::from_millis(200))
            .is_ok_and(|m| *m == *b"hello")
    });
    // One refused (an attachment of no known version), then one that ends the imports.
    peer.put(&key, b"x".to_vec())
        .attachment(vec![9, 9, 9])
        .wait()
        .expect("put");
    peer.put(&key, b"bye".to_vec()).wait().expect("put");
    while *sub.recv_timeout(PATIENCE).expect("the bridge imports") != *b"bye" {}

    // Nothing moves any more: `status` must show what the bridge counted, exactly as it
    // publishes it on the stats topic (the same snapshot, set each second).
    let deadline = Instant::now() + PATIENCE;
    let (shown, published) = loop {
        let published = wait_stats(&stats, &id, |s| s["refused"] == 1);
        let doc: serde_json::Value =
            serde_json::from_str(&cli(&group, &["status", "--json"])).expect("status JSON");
        let node = doc["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["node"] == id.as_str())
            .unwrap_or_else(|| panic!("the bridge is listed: {doc}"))
            .clone();
        assert_eq!(node["name"], "the-bridge", "{node}");
        let shown = node["counters"].clone();
        if shown == published || Instant::now() > deadline {
            break (shown, published);
        }
    };
    assert_eq!(shown, published, "status shows what the bridge counted");
    // Every counter (serde_json's map sorts them; the table below checks their order).
    let mut names: Vec<&str> = shown
        .as_object()
        .expect("an object of counters")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = COUNTERS;
    names.sort_unstable();
    want.sort_unstable();
    assert_eq!(names, want, "every counter");
    assert_eq!(shown["refused"], 1, "{shown}");
    assert_eq!(shown["exported"], 0, "nothing to export: {shown}");
    assert_eq!(shown["exported_bytes"], 0, "{shown}");
    assert_eq!(shown["echoes"], 0, "{shown}");
    let imported = shown["imported"].as_u64().expect("a number");
    assert!(imported >= 2, "hello and bye at least: {shown}");
    // Every imported sample is a "hello" (5 bytes) but the last, "bye" (3).
    assert_eq!(
        shown["imported_bytes"].as_u64(),
        Some(5 * (imported - 1) + 3),
        "{shown}"
    );
    // The app node set none: it has no `counters`.
    let doc: serde_json::Value =
        serde_json::from_str(&cli(&group, &["status", "--json"])).expect("status JSON");
    let app_id = app.id().to_string();
    let app_json = doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == app_id.as_str())
        .expect("the app is listed");
    assert!(app_json.get("counters").is_none(), "{app_json}");

    // The table: one per node with counters, after the others.
    let table = cli(&group, &["status"]);
    let head = format!("application counters of {id} the-bridge:");
    let at = table
        .find(&head)
        .unwrap_or_else(|| panic!("no table for the bridge: {table}"));
    let rows: Vec<Vec<&str>> = table[at..]
        .lines()
        .skip(1)
        .take(1 + COUNTERS.len())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["COUNTER", "VALUE"], "{table}");
    for (row, name) in rows[1..].iter().zip(COUNTERS) {
        assert_eq!(row[0], name, "{table}");
        assert_eq!(row[1], shown[name].to_string(), "{table}");
    }
    assert!(
        !table.contains(&format!("application counters of {app_id}")),
        "{table}"
    );
    assert_eq!(procs.terminate("bridge"), Some(0));
}

#[test]
fn a_group_reaches_another_through_zenoh_and_survives_a_kill_of_its_hub() {
    let new = |what| TempGroup::new(what).expect("OS randomness");
    let (group_a, group_b) = (new("bridge-a"), new("bridge-b"));
    let prefix = format!("ipc/{}", unique("test"));
    let endpoint = free_endpoint();
    let mut procs = Procs::default();

    let hub = procs.spawn(
        "hub-a",
        Command::new(std::env::current_exe().expect("own path"))
            .args(["--exact", "child_hub", "--nocapture", "--test-threads=1"])
            .env(HUB_ENV, group_a.name()),
    );
    // libtest prints "test child_hub ... " before the test's own output, on the same line.
    let line = hub.wait_line(|l| l.contains("child-ready "));
    let line = &line[line.find("child-ready ").expect("found")..];
    assert!(
        line.ends_with("hub=true"),
        "the first node is the hub: {line}"
    );
    let hub_id = line.split(' ').nth(1).expect("an id").to_owned();

    let bridge = |group: &str, name: &str, more: &[&str]| {
        let mut cmd = Command::new(BRIDGE);
        cmd.args([
            "run",
            "--group",
            group,
            "--name",
            name,
            "--key-prefix",
            &prefix,
        ])
        .args(["--export", "**"])
        .args(more);
        cmd
    };
    let bridge_a = procs.spawn(
        "bridge-a",
        &mut bridge(
            &group_a,
            "bridge-a",
            &["--import", "**", "--listen", &endpoint],
        ),
    );
    let bridge_b = procs.spawn(
        "bridge-b",
        &mut bridge(
            &group_b,
            "bridge-b",
            &["--import", "**", "--connect", &endpoint],
        ),
    );
    // A second bridge in group B that only exports: it must not send what bridge B
    // published in group B back to Zenoh, or group A would get echoes (and B duplicates).
    let bridge_b2 = procs.spawn(
        "bridge-b2",
        &mut bridge(&group_b, "bridge-b2", &["--connect", &endpoint]),
    );
    let [id_a, id_b, id_b2] = [&bridge_a, &bridge_b, &bridge_b2].map(|b| {
        let ready = b.wait_line(|l| l.contains("\"event\":\"ready\""));
        let v: serde_json::Value = serde_json::from_str(&ready).expect("JSON");
        v["node"].as_str().expect("a node id").to_owned()
    });

    let app_a = Node::builder("app-a")
        .group(&group_a)
        .join()
        .expect("joins A");
    assert_eq!(
        app_a.hub().map(|h| h.node.to_string()),
        Some(hub_id.clone())
    );
    let publisher = app_a.publisher(TOPIC, MIME).expect("publisher");
    let echoes = app_a
        .subscription(TOPIC, options(64))
        .expect("subscription");
    let stats_a = app_a.subscription(STATS_TOPIC, options(8)).expect("stats");
    let app_b = Node::builder("app-b")
        .group(&group_b)
        .join()
        .expect("joins B");
    let sub_b = app_b
        .subscription(TOPIC, options(64))
        .expect("subscription");
    let stats_b = app_b.subscription(STATS_TOPIC, options(8)).expect("stats");

    round(&publisher, &sub_b, &app_b, 1);

    procs.kill("hub-a");
    wait_until("group A has a new hub", || {
        app_a.hub().is_some_and(|h| h.node.to_string() != hub_id)
    });
    assert!(procs.running("bridge-a"), "bridge A survived its hub");
    round(&publisher, &sub_b, &app_b, 2);

    // None echoed: group A saw only its own publisher's messages, and no message came twice
    // to group B.
    while let Ok(m) = echoes.try_recv() {
        assert_eq!(m.publisher(), app_a.id(), "an echo in group A");
    }
    while let Ok(m) = sub_b.try_recv() {
        assert!(
            m.starts_with(WARM),
            "a message came twice: {} bytes",
            m.len()
        );
    }
    // The bridges' own counters: B exported nothing (what it imported is not sent back), A
    // imported nothing.
    let a = wait_stats(&stats_a, &id_a, |s| s["exported"].as_u64() >= Some(4));
    assert_eq!(a["imported"], 0, "bridge A took something back: {a}");
    let b = wait_stats(&stats_b, &id_b, |s| s["imported"].as_u64() >= Some(4));
    assert_eq!(b["exported"], 0, "bridge B sent something back: {b}");
    assert_eq!(b["refused"], 0, "{b}");
    while stats_b.try_recv().is_ok() {} // B2's next counters, not older ones
    let b2 = wait_stats(&stats_b, &id_b2, |_| true);
    assert_eq!(
        b2["exported"], 0,
        "bridge B2 re-exported bridge B's imports: {b2}"
    );

    // A SIGTERM stops a bridge cleanly: exit 0 and its counters.
    for name in ["bridge-a", "bridge-b", "bridge-b2"] {
        let code = procs.terminate(name);
        assert_eq!(code, Some(0), "{name} exits 0 on SIGTERM");
    }
    let stopped = bridge_b.wait_line(|l| l.contains("\"event\":\"stopped\""));
    assert!(stopped.contains("\"imported\":"), "{stopped}");
}

/// The bench runs end to end and reports its ratios (a smoke test: no figure is checked).
#[test]
fn bench_reports_bridge_against_bare_zenoh() {
    let out = Command::new(BRIDGE)
        .args(["bench", "--seconds", "1", "--round-trips", "20"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for line in [
        "latency 64 B RTT p50",
        "throughput 4 KiB",
        "throughput 1 MiB",
    ] {
        let found = stdout.lines().find(|l| l.starts_with(line));
        assert!(
            found.is_some_and(|l| l.contains("x ")),
            "no ratio for {line}: {stdout}"
        );
    }
}

#[test]
fn bad_patterns_and_endpoints_exit_with_their_codes() {
    let group = TempGroup::new("bridge-usage").expect("OS randomness");
    let status = |args: &[&str]| {
        Command::new(BRIDGE)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("runs")
            .code()
    };
    assert_eq!(status(&["run", "--frobnicate"]), Some(2), "unknown flag");
    assert_eq!(
        status(&["run", "--group", &group, "--export", "a//b/"]),
        Some(2),
        "a pattern that is no key expression"
    );
    assert_eq!(
        status(&["run", "--group", &group, "--listen", "nonsense"]),
        Some(4),
        "an endpoint Zenoh refuses"
    );
}

#[test]
fn malformed_samples_are_refused_counted_and_survived() {
    let group = TempGroup::new("bridge-refuse").expect("OS randomness");
    let prefix = format!("ipc/{}", unique("refuse"));
    let endpoint = free_endpoint();
    let mut procs = Procs::default();
    let bridge = procs.spawn(
        "bridge",
        Command::new(BRIDGE).args([
            "run",
            "--group",
            &group,
            "--key-prefix",
            &prefix,
            "--import",
            "**",
            "--max-payload",
            "1024",
            "--listen",
            &endpoint,
        ]),
    );
    let ready = bridge.wait_line(|l| l.contains("\"event\":\"ready\""));
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("JSON");
    let id = ready["node"].as_str().expect("a node id");

    let app = Node::builder("app").group(&group).join().expect("joins");
    let sub = app.subscription("t", options(64)).expect("subscription");
    let stats = app.subscription(STATS_TOPIC, options(8)).expect("stats");
    // A plain Zenoh peer: what any program on the network can send.
    let peer = zenoh::open(peer_config(&[], &[&endpoint]).expect("config"))
        .wait()
        .expect("a zenoh session");
    let key = format!("{prefix}/t");
    let put = |payload: &[u8], attachment: Option<Vec<u8>>| {
        let mut put = peer.put(&key, payload.to_vec());
        if let Some(a) = attachment {
            put = put.attachment(a);
        }
        put.wait().expect("put");
    };
    wait_until("a plain sample reaches the group", || {
        put(b"hello", None);
        sub.recv_timeout(Duration::from_millis(200))
            .is_ok_and(|m| *m == *b"hello")
    });
    assert_eq!(
        app.declared_type(
            app.view()
                .nodes()
                .keys()
                .copied()
                .find(|n| n.to_string() == id)
                .expect("the bridge"),
            "t"
        )
        .as_deref(),
        Some(PLAIN_MIME)
    );
    put(b"x", Some(vec![9, 9, 9])); // no such version
    put(b"x", Some(vec![1; MAX_ATTACHMENT + 1])); // too long
    put(&[0; 2048], None); // over --max-payload
    let mut cut = Meta::new([1; 16], 1, 1, "text/plain").encode();
    cut.pop(); // ends early
    put(b"x", Some(cut));
    put(
        b"bye",
        Some(Meta::new([1; 16], 7, 3, "text/plain").encode()),
    );
    loop {
        let m = sub
            .recv_timeout(PATIENCE)
            .expect("the bridge still imports");
        if *m == *b"bye" {
            break;
        }
        assert_eq!(*m, *b"hello", "only good samples reach the group");
    }
    let counters = wait_stats(&stats, id, |s| s["refused"].as_u64() >= Some(4));
    assert_eq!(counters["refused"], 4, "{counters}");
    assert!(procs.running("bridge"));

    // The group's topology, as liveliness tokens a remote tool can query.
    app.announce("out", "text/plain").expect("announces");
    let token = format!("{prefix}/topology/{}/publishes/out", app.id());
    wait_until("the topology is declared in Zenoh", || {
        let replies = peer
            .liveliness()
            .get(format!("{prefix}/topology/**"))
            .wait()
            .expect("a liveliness query");
        let mut keys = Vec::new();
        while let Ok(reply) = replies.recv() {
            if let Ok(sample) = reply.result() {
                keys.push(sample.key_expr().to_string());
            }
        }
        keys.contains(&token)
    });
    app.retract("out").expect("retracts");
}

/// One warm-up until the whole path works (links in both groups, Zenoh matching, bridge B's
/// publisher), then a 64 B and a 1 MiB message, each checked to arrive once and intact.
fn round(publisher: &Publisher, sub: &Subscription, node_b: &Node, round: u8) {
    let deadline = Instant::now() + PATIENCE;
    let mut n = 0u32;
    'warm: loop {
        let mut warm = WARM.to_vec();
        warm.extend_from_slice(format!("{round}-{n}").as_bytes());
        publisher.publish(&warm).expect("publishes");
        n += 1;
        while let Ok(m) = sub.recv_timeout(Duration::from_millis(200)) {
            if m.starts_with(WARM) {
                break 'warm;
            }
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: nothing reached group B"
        );
    }
    let small = payload(64, round);
    let big = payload(1 << 20, round + 100);
    publisher.publish(&small).expect("publishes 64 B");
    publisher.publish(&big).expect("publishes 1 MiB");
    let want: HashMap<usize, u64> = [(small.len(), fnv1a(&small)), (big.len(), fnv1a(&big))].into();
    let mut got: HashMap<usize, u32> = HashMap::new();
    while got.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = sub
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("round {round}: got {got:?} of 64 B and 1 MiB: {e}"));
        if m.starts_with(WARM) {
            continue;
        }
        let hash = want
            .get(&m.len())
            .unwrap_or_else(|| panic!("unexpected {} bytes", m.len()));
        assert_eq!(
            fnv1a(&m),
            *hash,
            "round {round}: {} bytes arrived changed, or came again",
            m.len()
        );
        assert_eq!(
            node_b.declared_type(m.publisher(), TOPIC).as_deref(),
            Some(MIME),
            "the mime travelled"
        );
        *got.entry(m.len()).or_default() += 1;
    }
    assert!(got.values().all(|&c| c == 1), "{got:?}");
}

/// `len` bytes from a seeded xorshift, starting with 0xff (never "warm-").
fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(seed);
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    out[0] = 0xff;
    out
}

fn options(depth: u32) -> SubscriptionOptions {
    SubscriptionOptions {
        policy: Policy::DropOldest,
        depth,
        ..SubscriptionOptions::default()
    }
}

/// The first counters published on `stats` by node `id` that satisfy `pred`.
fn wait_stats(
    stats: &Subscription,
    id: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = stats
            .recv_timeout(left)
            .expect("the bridge publishes its counters");
        let v: serde_json::Value = serde_json::from_slice(&m).expect("counters are JSON");
        if m.publisher().to_string() == id && pred(&v) {
            return v;
        }
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{what}-{}-{nanos:x}", std::process::id())
}

fn free_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    format!(
        "tcp/127.0.0.1:{}",
        listener.local_addr().expect("bound").port()
    )
}

/// A child's stdout, line by line.
struct Lines(mpsc::Receiver<String>, String);

impl Lines {
    fn wait_line(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("{}: no such line ({e})", self.1),
            }
        }
    }
}

/// The test's children: each is killed and reaped when this is dropped, even on a panic.
#[derive(Default)]
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> Lines {
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.0.push((name.to_owned(), child));
        Lines(rx, name.to_owned())
    }

    fn child(&mut self, name: &str) -> &mut Child {
        let (_, child) = self
            .0
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("a child of that name");
        child
    }

    /// `kill -9`, and reaped.
    fn kill(&mut self, name: &str) {
        let child = self.child(name);
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
    }

    fn running(&mut self, name: &str) -> bool {
        self.child(name).try_wait().expect("try_wait").is_none()
    }

    /// SIGTERM, and its exit code once it exits.
    fn terminate(&mut self, name: &str) -> Option<i32> {
        let child = self.child(name);
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "{name} did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
