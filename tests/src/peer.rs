//! `ipc-test-node peer`: one node of a group on a chosen driver, driven by commands on stdin and
//! reporting its events as JSON lines on stdout. This is the test-side driver abstraction of
//! the conformance suite (`tests/conformance.rs`): every scenario is written once against it
//! and run with std nodes, calloop nodes, an outside driver, and mixes of them.
//!
//! ```text
//! ipc-test-node peer --driver std|calloop --group G --name N
//!                    [--keepalive-ms MS] [--heartbeat-ms MS] [--grace-ms MS] [--announce T]... [--subscribe T]...
//! ```
//!
//! What a node under test speaks (the command line after `--driver`, the commands on stdin,
//! the lines on stdout) is the *peer protocol*, documented for driver authors in
//! `ipc_proto::guide` (`ipc-proto/src/guide/peer_protocol.md`): `announce T`, `retract T`,
//! `subscribe T`, `unsubscribe T`, `publisher T inline|fresh|pooled|auto`,
//! `subscription T block|oldest|newest DEPTH [SPIN_US]`, `publish T SIZE COUNT` (COUNT
//! messages of SIZE bytes, see [`payload`]), `leave`; out: `started`, the topology lines of
//! `ipc-pubsub node` (with their `seq`), `synced`, `became_hub`, ..., `message`,
//! `published`, `failed`, and `left` last. A driver outside this workspace is a [`Driver::External`] program that speaks
//! it ([`Driver::outside`]).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use ipc_proto::Event;
use ipc_proto::data::{PublisherOptions, SendMode, SubscriptionOptions};
use serde_json::{Value, json};

/// The environment variable that names an outside driver's executable (an absolute path) for
/// the conformance suite: `IPC_CONFORMANCE_DRIVER=/path/to/exe cargo test -p ipc-tests --test
/// conformance`.
pub const DRIVER_ENV: &str = "IPC_CONFORMANCE_DRIVER";

/// Which driver a peer runs.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Driver {
    /// `ipc-driver-std`: an I/O thread, blocking calls (`ipc-test-node peer --driver std`).
    Std,
    /// `ipc-driver-calloop`: the node inside a calloop loop, commands from another source
    /// (`ipc-test-node peer --driver calloop`).
    Calloop,
    /// A program of its own that speaks the peer protocol (`ipc_proto::guide`): started as
    /// `PROGRAM --group G --name N [--keepalive-ms MS] [--heartbeat-ms MS] [--grace-ms MS] [--announce T]...
    /// [--subscribe T]...`, commands on its stdin, JSON lines on its stdout.
    External(&'static Path),
}

impl Driver {
    /// The outside driver under test: the program [`DRIVER_ENV`] names or, when it is unset,
    /// the guide's example driver (`ipc-proto/examples/poll_driver.rs`, which this crate
    /// builds as `ipc-poll-node`). Panics if the variable names no executable file.
    pub fn outside() -> Self {
        static PATH: OnceLock<PathBuf> = OnceLock::new();
        Self::External(PATH.get_or_init(|| {
            let Some(path) = std::env::var_os(DRIVER_ENV).filter(|p| !p.is_empty()) else {
                return crate::built("ipc-poll-node");
            };
            let path = PathBuf::from(path);
            assert!(
                path.is_absolute() && path.is_file(),
                "{DRIVER_ENV}={} is not an absolute path to an executable (cargo runs tests in \
                 the package's directory, so a relative path would be read from there)",
                path.display()
            );
            path
        }))
    }

    /// The `--driver` value of `ipc-test-node peer`, or the program's path.
    pub fn name(self) -> String {
        match self {
            Self::Std => "std".into(),
            Self::Calloop => "calloop".into(),
            Self::External(p) => p.display().to_string(),
        }
    }

    /// The program to start, and the arguments that come before the peer protocol's.
    pub fn command(self) -> (PathBuf, Vec<String>) {
        match self {
            Self::Std | Self::Calloop => {
                let args = ["peer".into(), "--driver".into(), self.name()];
                (crate::exe(), args.into())
            }
            Self::External(p) => (p.to_path_buf(), Vec::new()),
        }
    }
}

/// The payload of message `index` with `len` bytes: the index (little-endian) in the first 8
/// bytes, then a pattern of both, so that any corruption or mix-up shows in [`fnv1a64`].
pub fn payload(index: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|j| (index as usize).wrapping_mul(31).wrapping_add(j) as u8)
        .collect();
    let head = index.to_le_bytes();
    let n = len.min(8);
    v[..n].copy_from_slice(&head[..n]);
    v
}

/// The index a [`payload`] carries (`0` below 8 bytes).
pub fn index_of(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .map_or(0, |h| u64::from_le_bytes(h.try_into().expect("8 bytes")))
}

/// FNV-1a, 64 bits: the one `ipc-pubsub sub` prints.
pub use ipc_pubsub_cli::fnv1a64;

/// The line of a topology event, named as `ipc-pubsub node` names it.
pub fn topology_line(e: &Event) -> Value {
    match e {
        Event::NodeJoined { info, seq } => json!({
            "event": "node_joined", "node": info.id.to_string(), "name": info.name,
            "pid": info.pid, "uid": info.uid, "seq": seq.to_string(),
        }),
        Event::NodeLeft { node, .. } => json!({"event": "node_left", "node": node.to_string()}),
        Event::TopicAnnounced {
            node,
            topic,
            mime,
            seq,
        } => json!({
            "event": "topic_announced", "node": node.to_string(), "topic": topic, "mime": mime,
            "seq": seq.to_string(),
        }),
        Event::TopicRetracted { node, topic } => {
            json!({"event": "topic_retracted", "node": node.to_string(), "topic": topic})
        }
        Event::Subscribed { node, topic, seq } => json!({
            "event": "subscribed", "node": node.to_string(), "topic": topic,
            "seq": seq.to_string(),
        }),
        Event::Unsubscribed { node, topic } => {
            json!({"event": "unsubscribed", "node": node.to_string(), "topic": topic})
        }
        Event::HubChanged { node, term } => {
            json!({"event": "hub_changed", "node": node.to_string(), "term": term.0})
        }
    }
}

/// The line telling messages of a publisher that will not come: `ipc-pubsub sub`'s (`lost` is
/// their count).
pub fn lost_line(l: &ipc_proto::data::Loss) -> Value {
    json!({"event": "lost", "topic": &*l.topic, "node": l.publisher.to_string(),
        "first": l.first, "last": l.last, "lost": l.count, "reason": l.reason.name()})
}

/// The line of a received message: `ipc-pubsub sub`'s keys (`topic`, `node`, `seq`, `len`,
/// `fnv1a64`, `via`) after `"event": "message"`, then the test payload's `index`.
pub fn message_line(
    topic: &str,
    publisher: ipc_proto::NodeId,
    seq: u64,
    bytes: &[u8],
    via: &str,
) -> Value {
    json!({
        "event": "message", "topic": topic, "node": publisher.to_string(), "seq": seq,
        "len": bytes.len(), "fnv1a64": format!("{:016x}", fnv1a64(bytes)), "via": via,
        "index": index_of(bytes),
    })
}

/// Writes one line to stdout, whole, and flushes it.
pub(crate) fn emit(v: &Value) {
    static OUT: Mutex<()> = Mutex::new(());
    let _guard = OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn simple(name: &str) -> Value {
    json!({ "event": name })
}

/// A command from stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Command {
    Announce(String),
    Retract(String),
    Subscribe(String),
    Unsubscribe(String),
    Publisher(String, SendMode),
    Subscription(String, SubscriptionOptions),
    Publish {
        topic: String,
        size: usize,
        count: u64,
    },
    Leave,
}

impl Command {
    fn parse(line: &str) -> Result<Self, String> {
        let w: Vec<&str> = line.split_whitespace().collect();
        let topic = || w.get(1).map(|t| (*t).to_string()).ok_or("a topic");
        let num = |i: usize| -> Result<u64, String> {
            w.get(i)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("a number at word {i}"))
        };
        Ok(match w.first().copied() {
            Some("announce") => Self::Announce(topic()?),
            Some("retract") => Self::Retract(topic()?),
            Some("subscribe") => Self::Subscribe(topic()?),
            Some("unsubscribe") => Self::Unsubscribe(topic()?),
            Some("publisher") => {
                let mode = match w.get(2).copied() {
                    Some("inline") => SendMode::Inline,
                    Some("fresh") => SendMode::Fresh,
                    Some("pooled") => SendMode::Pooled,
                    Some("auto") | None => SendMode::Auto,
                    Some(m) => return Err(format!("unknown mode {m}")),
                };
                Self::Publisher(topic()?, mode)
            }
            Some("subscription") => {
                let depth = u32::try_from(num(3)?).map_err(|e| e.to_string())?;
                let spin = match w.get(4) {
                    Some(_) => Some(Duration::from_micros(num(4)?)),
                    None => None,
                };
                let options = match w.get(2).copied() {
                    Some("block") => SubscriptionOptions {
                        depth,
                        ..SubscriptionOptions::block(Duration::from_secs(30))
                    },
                    Some("oldest") => SubscriptionOptions::drop_oldest(depth),
                    Some("newest") => SubscriptionOptions::drop_newest(depth),
                    p => return Err(format!("unknown policy {p:?}")),
                };
                Self::Subscription(topic()?, SubscriptionOptions { spin, ..options })
            }
            Some("publish") => Self::Publish {
                topic: topic()?,
                size: usize::try_from(num(2)?).map_err(|e| e.to_string())?,
                count: num(3)?,
            },
            Some("leave") => Self::Leave,
            other => return Err(format!("unknown command {other:?}")),
        })
    }
}

/// Large payloads travel inline too when a publisher asks for `inline`.
fn publisher_options(mode: SendMode) -> PublisherOptions {
    PublisherOptions {
        mode,
        inline_max: if mode == SendMode::Inline {
            128 << 10
        } else {
            ipc_proto::data::DEFAULT_INLINE_MAX
        },
        ..PublisherOptions::default()
    }
}

/// Parsed `peer` arguments.
#[derive(Debug)]
struct Args {
    driver: Driver,
    group: String,
    name: String,
    keepalive: Option<Duration>,
    heartbeat: Option<Duration>,
    grace: Option<Duration>,
    announce: Vec<String>,
    subscribe: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        driver: Driver::Std,
        group: String::new(),
        name: "peer".into(),
        keepalive: None,
        heartbeat: None,
        grace: None,
        announce: Vec::new(),
        subscribe: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        let ms = |v: String| -> Result<Duration, String> {
            v.parse()
                .map(Duration::from_millis)
                .map_err(|e| format!("{e}"))
        };
        match flag.as_str() {
            "--driver" => {
                a.driver = match value()?.as_str() {
                    "std" => Driver::Std,
                    "calloop" => Driver::Calloop,
                    d => return Err(format!("unknown driver {d}")),
                }
            }
            "--group" => a.group = value()?,
            "--name" => a.name = value()?,
            "--keepalive-ms" => a.keepalive = Some(ms(value()?)?),
            "--heartbeat-ms" => a.heartbeat = Some(ms(value()?)?),
            "--grace-ms" => a.grace = Some(ms(value()?)?),
            "--announce" => a.announce.push(value()?),
            "--subscribe" => a.subscribe.push(value()?),
            f => return Err(format!("unknown argument {f}")),
        }
    }
    if a.group.is_empty() {
        return Err("--group is required".into());
    }
    Ok(a)
}

/// Runs `ipc-test-node peer <args>`.
pub fn main(args: &[String]) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ipc-test-node peer: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match a.driver {
        Driver::Std => std_peer::run(a),
        Driver::Calloop => calloop_peer::run(a),
        Driver::External(_) => unreachable!("parse_args makes std or calloop"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc-test-node peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn started(node: ipc_proto::NodeId, a: &Args) {
    emit(&json!({
        "event": "started", "node": node.to_string(), "name": a.name,
        "pid": std::process::id(), "group": a.group, "driver": a.driver.name(),
    }));
}

/// Stdin, line by line, on a thread of its own: `None` at the end.
fn stdin_lines(mut send: impl FnMut(Option<String>) -> bool + Send + 'static) {
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if !line.trim().is_empty() && !send(Some(line)) {
                return;
            }
        }
        send(None);
    });
}

mod std_peer {
    use super::*;
    use ipc_driver_std::{EventKinds, Incoming, Node, NodeEvent, NodeWithEvents, Publisher};

    fn line(e: &NodeEvent) -> Option<Value> {
        Some(match e {
            NodeEvent::Topology(t) => topology_line(t),
            NodeEvent::Synced { hub, term } => {
                json!({"event": "synced", "hub": hub.to_string(), "term": term.0})
            }
            NodeEvent::BecameHub => simple("became_hub"),
            NodeEvent::HubLost => simple("hub_lost"),
            NodeEvent::HubUnresponsive => simple("hub_unresponsive"),
            NodeEvent::HubResponsive => simple("hub_responsive"),
            NodeEvent::HubClosed(r) => json!({"event": "hub_closed", "reason": r.to_string()}),
            NodeEvent::HubAbsent => simple("hub_absent"),
            _ => return None,
        })
    }

    pub(super) fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
        let mut b = Node::builder(&a.name).group(&a.group);
        if let Some(k) = a.keepalive {
            b = b.keepalive(k);
        }
        if let Some(h) = a.heartbeat {
            b = b.heartbeat(h);
        }
        if let Some(g) = a.grace {
            b = b.grace(g);
        }
        let NodeWithEvents { node, events } =
            b.join_timeout(None).join_with_events(EventKinds::ALL)?;
        started(node.id(), &a);
        let printer = thread::spawn(move || {
            for e in events {
                if let Some(v) = line(&e) {
                    emit(&v);
                }
            }
        });
        for t in &a.announce {
            node.announce(t, "application/octet-stream")?;
        }
        for t in &a.subscribe {
            node.subscribe(t)?;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        stdin_lines(move |l| tx.send(l).is_ok());
        let mut publishers: HashMap<String, (Publisher, u64)> = HashMap::new();
        let mut readers = Vec::new();
        while let Ok(Some(text)) = rx.recv() {
            let cmd = match Command::parse(&text) {
                Ok(c) => c,
                Err(e) => {
                    emit(&json!({"event": "failed", "command": text, "error": e}));
                    continue;
                }
            };
            let result: Result<(), ipc_driver_std::DriverError> = match cmd {
                Command::Announce(t) => node.announce(&t, "application/octet-stream"),
                Command::Retract(t) => node.retract(&t),
                Command::Subscribe(t) => node.subscribe(&t),
                Command::Unsubscribe(t) => node.unsubscribe(&t),
                Command::Publisher(t, mode) => node
                    .publisher_with(&t, "application/octet-stream", publisher_options(mode))
                    .map(|p| {
                        publishers.insert(t, (p, 0));
                    }),
                Command::Subscription(t, options) => node.subscription(&t, options).map(|s| {
                    readers.push(thread::spawn(move || {
                        while let Ok(item) = s.recv_incoming() {
                            emit(&match item {
                                Incoming::Message(m) => message_line(
                                    m.topic(),
                                    m.publisher(),
                                    m.seq(),
                                    &m,
                                    m.via().name(),
                                ),
                                Incoming::Lost(l) => lost_line(&l),
                            });
                        }
                    }));
                }),
                Command::Publish { topic, size, count } => match publishers.get_mut(&topic) {
                    Some((p, next)) => (|| {
                        for _ in 0..count {
                            let mut loan = p.loan(size)?;
                            loan.copy_from_slice(&payload(*next, size));
                            p.send(loan)?;
                            *next += 1;
                        }
                        emit(&json!({"event": "published", "topic": topic, "count": count}));
                        Ok(())
                    })(),
                    None => {
                        emit(&json!({"event": "failed", "command": text, "error": "no publisher"}));
                        continue;
                    }
                },
                Command::Leave => break,
            };
            if let Err(e) = result {
                emit(&json!({"event": "failed", "command": text, "error": e.to_string()}));
            }
        }
        drop(publishers);
        node.leave()?;
        let _ = printer.join();
        for r in readers {
            let _ = r.join();
        }
        emit(&simple("left"));
        Ok(())
    }
}

mod calloop_peer {
    use super::*;
    use calloop::channel::{self, Channel};
    use calloop::{Dispatcher, EventLoop};
    use ipc_driver_calloop::{DriverError, Node, NodeEvent, NodeSource};

    /// A `publish` command in progress: what is left of it.
    struct Pending {
        topic: String,
        size: usize,
        left: u64,
        count: u64,
    }

    #[derive(Default)]
    struct State {
        commands: VecDeque<String>,
        eof: bool,
        left: bool,
        next_index: HashMap<String, u64>,
        pending: VecDeque<Pending>,
    }

    fn on_event(event: NodeEvent, _node: &mut Node, state: &mut State) {
        let v = match event {
            NodeEvent::Topology(t) => topology_line(&t),
            NodeEvent::Synced { hub, term } => {
                json!({"event": "synced", "hub": hub.to_string(), "term": term.0})
            }
            NodeEvent::BecameHub => simple("became_hub"),
            NodeEvent::HubLost => simple("hub_lost"),
            NodeEvent::HubUnresponsive => simple("hub_unresponsive"),
            NodeEvent::HubResponsive => simple("hub_responsive"),
            NodeEvent::HubClosed(r) => json!({"event": "hub_closed", "reason": r.to_string()}),
            NodeEvent::HubAbsent => simple("hub_absent"),
            NodeEvent::Message(m) => {
                message_line(m.topic(), m.publisher(), m.seq(), &m, m.via().name())
            }
            NodeEvent::Lost(l) => lost_line(&l),
            NodeEvent::Failed { command, error } => {
                json!({"event": "failed", "command": command, "error": error.to_string()})
            }
            NodeEvent::Left => {
                state.left = true;
                return;
            }
            _ => return,
        };
        emit(&v);
    }

    /// Publishes what the pending commands still owe, until a `Block` subscriber is full.
    fn drain_pending(node: &mut Node, state: &mut State) {
        while let Some(p) = state.pending.front_mut() {
            while p.left > 0 {
                let index = state.next_index.entry(p.topic.clone()).or_insert(0);
                let sent = node.loan(&p.topic, p.size).and_then(|mut loan| {
                    loan.copy_from_slice(&payload(*index, p.size));
                    node.send(loan)
                });
                match sent {
                    Ok(()) => {
                        *index += 1;
                        p.left -= 1;
                    }
                    // Try again after a Room event (or any other wakeup).
                    Err(DriverError::Full(_)) => return,
                    Err(e) => {
                        emit(
                            &json!({"event": "failed", "command": "publish", "error": e.to_string()}),
                        );
                        p.left = 0;
                    }
                }
            }
            emit(&json!({"event": "published", "topic": p.topic, "count": p.count}));
            state.pending.pop_front();
        }
    }

    fn execute(node: &mut Node, state: &mut State, text: &str) {
        let cmd = match Command::parse(text) {
            Ok(c) => c,
            Err(e) => {
                emit(&json!({"event": "failed", "command": text, "error": e}));
                return;
            }
        };
        let result = match cmd {
            Command::Announce(t) => node.announce(&t, "application/octet-stream"),
            Command::Retract(t) => node.retract(&t),
            Command::Subscribe(t) => node.subscribe(&t),
            Command::Unsubscribe(t) => node.unsubscribe(&t),
            Command::Publisher(t, mode) => {
                node.open_publisher(&t, "application/octet-stream", publisher_options(mode))
            }
            Command::Subscription(t, options) => node.open_subscription(&t, options),
            Command::Publish { topic, size, count } => {
                state.pending.push_back(Pending {
                    topic,
                    size,
                    left: count,
                    count,
                });
                Ok(())
            }
            Command::Leave => {
                node.leave();
                Ok(())
            }
        };
        if let Err(e) = result {
            emit(&json!({"event": "failed", "command": text, "error": e.to_string()}));
        }
    }

    pub(super) fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
        let mut event_loop: EventLoop<'static, State> = EventLoop::try_new()?;
        let mut b = NodeSource::builder(&a.name).group(&a.group);
        if let Some(k) = a.keepalive {
            b = b.keepalive(k);
        }
        if let Some(h) = a.heartbeat {
            b = b.heartbeat(h);
        }
        if let Some(g) = a.grace {
            b = b.grace(g);
        }
        let mut source = b.join()?;
        started(source.node().id(), &a);
        for t in &a.announce {
            source.node().announce(t, "application/octet-stream")?;
        }
        for t in &a.subscribe {
            source.node().subscribe(t)?;
        }
        // Commands run from outside the node's callback, through its dispatcher: the path an
        // application takes from its other event sources.
        let node = Dispatcher::new(source, on_event);
        let handle = event_loop.handle();
        handle.register_dispatcher(node.clone())?;
        let (tx, lines): (_, Channel<Option<String>>) = channel::channel();
        stdin_lines(move |l| tx.send(l).is_ok());
        handle.insert_source(lines, |e, (), state: &mut State| match e {
            channel::Event::Msg(Some(line)) => state.commands.push_back(line),
            channel::Event::Msg(None) | channel::Event::Closed => state.eof = true,
        })?;
        let mut state = State::default();
        let mut leaving = false;
        while !state.left {
            event_loop.dispatch(None, &mut state)?;
            let mut source = node.as_source_mut();
            let n = source.node();
            while let Some(text) = state.commands.pop_front() {
                execute(n, &mut state, &text);
            }
            drain_pending(n, &mut state);
            if (state.eof || n.is_leaving()) && !leaving {
                leaving = true;
                n.leave();
            }
        }
        emit(&simple("left"));
        Ok(())
    }
}
