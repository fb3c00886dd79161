//! `pub`, `sub` and `bus`: payloads from the command line.
//!
//! - `pub TOPIC` joins the group as a node, publishes `--count` messages (a generated payload
//!   of `--size` bytes, a file, or a text), waits until every subscriber has them, and
//!   leaves. A status line goes to stderr every second and at the end, with how many
//!   subscribers the messages reached (from the node's per-link counters); `--json` adds a
//!   line per message on stdout: `{"event":"published",..,"subscribers":..,"dropped":..}`.
//! - `sub TOPIC` joins, subscribes, and prints one JSON line per message on stdout, flushed at
//!   once: `{"topic":..,"node":"<16 hex>","seq":..,"len":..,"fnv1a64":"<16 hex>","via":..,"ts":..}`.
//! - `bus NAME` joins bus channel NAME: every line on stdin goes to every other member, every
//!   other member's line comes out on stdout; never its own.
//!
//! Each runs until it is done or SIGINT/SIGTERM arrives, then leaves the group gracefully.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ipc_proto::wire::{DataStats, Policy};
use ipc_proto::{NodeId, View};
use serde::Serialize;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::json::{self, Hex};
use super::stream::DEFAULT_MIME;
use super::{CliError, Result, Timing};
use crate::GroupArgs;
use ipc_driver_std::{
    DEFAULT_MAX_PAYLOAD, Incoming, Loss, Message, Node, PublisherOptions, RecvError, SendMode,
    SubscriptionOptions,
};

/// How long `pub` waits for `--wait-subscribers`, and for its subscribers to have everything
/// before it leaves.
const WAIT: Duration = Duration::from_secs(10);

/// How often a blocked command looks at the signal flag.
const TICK: Duration = Duration::from_millis(100);

/// How long a `Block` subscriber of `sub` or `bus` lets a publisher wait for room.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest line `bus` reads from stdin; a longer one is cut there (the rest is the next line).
const MAX_LINE: usize = 1 << 20;

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ModeArg {
    /// Inline up to 4 KiB (a ring's slot), then pooled; in a group open to other uids, inline
    /// up to 16 KiB, then fresh.
    Auto,
    /// In the link's ring or socket record (up to 16 KiB).
    Inline,
    /// A fresh sealed memfd per message.
    Fresh,
    /// A reused pool segment.
    Pooled,
}

impl From<ModeArg> for SendMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Auto => Self::Auto,
            ModeArg::Inline => Self::Inline,
            ModeArg::Fresh => Self::Fresh,
            ModeArg::Pooled => Self::Pooled,
        }
    }
}

/// Options of `pub`.
#[derive(Debug, Args)]
pub(super) struct PubArgs {
    /// The topic.
    pub(super) topic: String,

    /// Bytes of the generated payload, whose byte i is (i * 31 + 7) mod 256 [default: 64].
    #[arg(long, value_name = "N", conflicts_with_all = ["file", "data"])]
    pub(super) size: Option<usize>,

    /// Messages to publish; 0 publishes until SIGINT or SIGTERM.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(super) count: u64,

    /// Messages per second [default: as fast as the subscribers take them].
    #[arg(long, value_name = "HZ", value_parser = parse_rate)]
    pub(super) rate: Option<f64>,

    /// How payloads travel.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    pub(super) mode: ModeArg,

    /// The payload: this file's contents.
    #[arg(long, value_name = "PATH", conflicts_with = "data")]
    pub(super) file: Option<PathBuf>,

    /// The payload: this text's UTF-8 bytes (no newline added).
    #[arg(long, value_name = "TEXT")]
    pub(super) data: Option<String>,

    /// First wait (up to 10 s) until N other nodes subscribe to the topic.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) wait_subscribers: usize,

    /// The payload type announced with the topic.
    #[arg(long, value_name = "MIME", default_value = DEFAULT_MIME)]
    pub(super) mime: String,

    /// Print one JSON line per message on stdout: its seq, and how many subscribers it was
    /// sent to and dropped for.
    #[arg(long)]
    pub(super) json: bool,

    #[command(flatten)]
    pub(super) timing: Timing,
}

/// `--policy` of `sub` and `bus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum PolicyArg {
    /// Lossless: publishers wait for room (up to 2 s each time).
    Block,
    /// Keep the newest messages.
    DropOldest,
    /// Keep the oldest messages.
    DropNewest,
}

/// The queue options of `sub` and `bus`.
#[derive(Debug, Clone, Args)]
pub(super) struct QueueArgs {
    /// What happens when this subscriber's queue is full.
    #[arg(long, value_enum, default_value_t = PolicyArg::Block)]
    pub(super) policy: PolicyArg,

    /// Messages the queue holds.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) depth: u32,

    /// The largest payload taken, in bytes: a larger one is refused before it is mapped,
    /// and its publisher's link closed.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_PAYLOAD)]
    pub(super) max_payload: u64,
}

impl QueueArgs {
    fn options(&self) -> SubscriptionOptions {
        let policy = match self.policy {
            PolicyArg::Block => SubscriptionOptions::block(BLOCK_TIMEOUT).policy,
            PolicyArg::DropOldest => Policy::DropOldest,
            PolicyArg::DropNewest => Policy::DropNewest,
        };
        SubscriptionOptions {
            policy,
            depth: self.depth,
            max_payload: self.max_payload,
            ..SubscriptionOptions::default()
        }
    }
}

/// Options of `sub`.
#[derive(Debug, Args)]
pub(super) struct SubArgs {
    /// The topic.
    pub(super) topic: String,

    /// Exit after N messages [default: run until SIGINT or SIGTERM].
    #[arg(long, value_name = "N")]
    pub(super) count: Option<u64>,

    /// Poll the shared-memory rings for up to US microseconds for each message before
    /// sleeping: the lowest latency, but it keeps a CPU core busy while it polls: all the time
    /// while messages come at least that often, and US of every 100 ms while none come (all
    /// of it from 100000 up). 0 never polls: every message that finds the subscription
    /// waiting wakes it. Without: the driver's choice, up to 10 µs and only while messages
    /// come that soon; idle, it idles at 0 % CPU.
    #[arg(long, value_name = "US")]
    pub(super) spin_us: Option<u64>,

    #[command(flatten)]
    pub(super) queue: QueueArgs,

    #[command(flatten)]
    pub(super) timing: Timing,
}

/// Options of `bus`.
#[derive(Debug, Args)]
pub(super) struct BusArgs {
    /// The channel's name (the topic `bus:NAME`).
    pub(super) name: String,

    #[command(flatten)]
    pub(super) queue: QueueArgs,

    #[command(flatten)]
    pub(super) timing: Timing,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("not a positive rate: {s:?}")),
    }
}

/// 64-bit FNV-1a of `bytes`, as `sub` prints it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The generated payload of `pub --size N`.
pub(super) fn generated(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

fn mode_name(mode: SendMode) -> &'static str {
    match mode {
        SendMode::Inline => "inline",
        SendMode::Fresh => "fresh",
        SendMode::Pooled => "pooled",
        _ => "auto",
    }
}

/// The next message, waiting at most [`TICK`]; an error once the subscription has closed
/// (its node stopped), which ends the wait before the tick.
fn next<T>(recv: impl FnOnce(Duration) -> std::result::Result<T, RecvError>) -> Result<Option<T>> {
    match recv(TICK) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.is_final() => Err(CliError::Failed("the node stopped".into())),
        Err(_) => Ok(None),
    }
}

/// A flag raised by SIGINT or SIGTERM (from now on, they no longer end the process).
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(flag)
}

fn join(group: &GroupArgs, name: &str, timing: &Timing) -> Result<Node> {
    Ok(timing.apply(group.builder(name)).join()?)
}

/// `pub`.
pub(super) fn publish(group: &GroupArgs, args: &PubArgs) -> Result<()> {
    let stop = stop_flag()?;
    let payload = match (&args.file, &args.data) {
        (Some(path), _) => std::fs::read(path)
            .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", path.display())))?,
        (None, Some(text)) => text.as_bytes().to_vec(),
        (None, None) => generated(args.size.unwrap_or(64)),
    };
    let node = join(group, "pub", &args.timing)?;
    let options = PublisherOptions {
        mode: args.mode.into(),
        ..PublisherOptions::default()
    };
    let publisher = node.publisher_with(&args.topic, &args.mime, options)?;
    // A subscriber's link sends nothing of the topic until the group has this node's
    // announcement: wait for it, so that the counters `Reach` reads move with the messages.
    let me = node.id();
    node.wait_view(WAIT, |v| {
        v.nodes()
            .values()
            .any(|n| n.info.id == me && n.publishes.contains_key(&args.topic))
    })?;
    if args.wait_subscribers > 0 {
        wait_subscribers(&node, &args.topic, args.wait_subscribers, WAIT)?;
    }
    let started = Instant::now();
    let mut shown = started;
    let mut sent = 0u64;
    let mut reach = Reach::default();
    let mut out = io::stdout().lock();
    let status = |sent: u64, reach: &Reach, done: bool| {
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
        eprintln!(
            "pub: {} {sent} message(s) of {} B on {:?} via {} in {secs:.3} s ({rate:.0}/s){}",
            if done { "sent" } else { "sending:" },
            payload.len(),
            args.topic,
            mode_name(publisher.mode_for(payload.len())),
            reach.summary(sent),
        );
    };
    while (args.count == 0 || sent < args.count) && !stop.load(Ordering::Relaxed) {
        if let Some(rate) = args.rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            let left = due.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                thread::sleep(left.min(TICK));
                continue;
            }
        }
        publisher.publish(&payload)?;
        sent += 1;
        // The node's I/O thread handles requests in order: its counters include this message.
        let (subscribers, dropped) = reach.message(&args.topic, &node.data_stats()?);
        if args.json {
            let line = PublishedLine {
                topic: &args.topic,
                seq: sent,
                len: payload.len(),
                subscribers,
                dropped,
            };
            match json::write_line(&mut out, &line) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                r => r?,
            }
        }
        if shown.elapsed() >= Duration::from_secs(1) {
            shown = Instant::now();
            status(sent, &reach, false);
        }
    }
    drain(&node)?;
    settle(&node, &args.topic, sent);
    // Everything is sent (or dropped) now: the totals are complete.
    reach.update(&args.topic, &node.data_stats()?);
    status(sent, &reach, true);
    drop(publisher);
    node.leave()?;
    Ok(())
}

/// One line of `pub --json`: a message published.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename = "published")]
struct PublishedLine<'a> {
    topic: &'a str,
    seq: u64,
    len: usize,
    subscribers: u64,
    dropped: u64,
}

/// Which subscribers `pub`'s messages reached, from the node's per-link counters
/// ([`Node::data_stats`]: per subscriber and topic, messages sent, dropped, and in flight),
/// read after every message and once everything is sent. The driver tells no more: which
/// links one `publish` went to shows only as these counters moving.
#[derive(Debug, Default)]
struct Reach {
    /// Per subscriber: the counters last read, and what `pub` made of them since it started
    /// (a link that closes keeps its totals here).
    links: BTreeMap<NodeId, Link>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Link {
    /// Messages, dropped, in flight: as last read.
    seen: (u64, u64, u64),
    /// Messages sent, as the counters grew.
    sent: u64,
    /// Messages dropped for it, as the counters grew.
    dropped: u64,
    /// Messages [`Reach::message`] saw reach it (sent, or queued on a link still being set
    /// up): a link that closes before its queued messages show as sent still counts them.
    reached: u64,
}

impl Link {
    /// Messages it got, as far as the counters tell.
    fn got(&self) -> u64 {
        self.sent.max(self.reached)
    }
}

impl Reach {
    /// Takes in the counters read right after publishing a message; returns to how many
    /// subscribers it went (sent, or queued: the link's in-flight count grew), and for how
    /// many a message was dropped.
    fn message(&mut self, topic: &str, stats: &DataStats) -> (u64, u64) {
        let (mut reached, mut dropped) = (0, 0);
        for (link, (s, d, queued)) in self.update(topic, stats) {
            if s > 0 || queued {
                link.reached += 1;
                reached += 1;
            }
            dropped += u64::from(d > 0);
        }
        (reached, dropped)
    }

    /// Takes in fresh counters; per link of `topic`, the messages sent and dropped since the
    /// last read, and whether its in-flight count grew.
    fn update(&mut self, topic: &str, stats: &DataStats) -> Vec<(&mut Link, (u64, u64, bool))> {
        let mut moved = BTreeMap::new();
        for t in &stats.published {
            let Some(peer) = t.peer.filter(|_| t.topic == topic) else {
                continue;
            };
            let link = self.links.entry(peer).or_default();
            // Counters start again from 0 on a new link to the same subscriber.
            let delta = |now: u64, was: u64| if now >= was { now - was } else { now };
            let (s, d) = (
                delta(t.messages, link.seen.0),
                delta(t.dropped, link.seen.1),
            );
            let queued = t.in_flight > link.seen.2;
            link.seen = (t.messages, t.dropped, t.in_flight);
            link.sent += s;
            link.dropped += d;
            moved.insert(peer, (s, d, queued));
        }
        self.links
            .iter_mut()
            .filter_map(|(n, l)| Some((l, moved.get(n).copied()?)))
            .collect()
    }

    /// The end of a status line: to whom `sent` messages went.
    fn summary(&self, sent: u64) -> String {
        let reached = self.links.values().filter(|l| l.got() > 0).count();
        let mut text = if reached == 0 {
            ", no subscriber reached".to_string()
        } else {
            format!(" to {reached} subscriber(s)")
        };
        let short: Vec<String> = self
            .links
            .iter()
            .filter(|(_, l)| l.got() > 0 && (l.got() < sent || l.dropped > 0))
            .map(|(n, l)| match l.dropped {
                0 => format!("{n}: {} of {sent}", l.got()),
                d => format!("{n}: {} of {sent}, {d} dropped", l.got()),
            })
            .collect();
        if !short.is_empty() {
            let _ = write!(text, " ({})", short.join("; "));
        }
        text
    }
}

/// Waits until nothing this node published is in flight: every subscriber has its messages
/// (for pooled ones: has dropped them), so leaving loses nothing.
fn drain(node: &Node) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = node.data_stats()?;
        if stats.published.iter().all(|t| t.in_flight == 0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "subscribers did not take every message within {WAIT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// How long [`settle`] waits at most.
const SETTLE: Duration = Duration::from_secs(1);

/// Waits (up to [`SETTLE`]) until every subscriber of `topic` has counters for it, if any
/// message was sent: a link has them once it has sent or dropped a message of the topic, and
/// until then the messages queued on it are in nobody's counters, [`drain`]'s included. A
/// subscriber that came after the last message never gets any: it costs that second.
fn settle(node: &Node, topic: &str, sent: u64) {
    let deadline = Instant::now() + SETTLE;
    while sent > 0 && Instant::now() < deadline {
        let (Ok(stats), view) = (node.data_stats(), node.view()) else {
            return;
        };
        let counted = |n: NodeId| {
            stats
                .published
                .iter()
                .any(|t| t.topic == topic && t.peer == Some(n))
        };
        let waiting = view.nodes().values().any(|n| {
            n.info.id != node.id() && n.subscribes.contains_key(topic) && !counted(n.info.id)
        });
        if !waiting {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// One line of `sub`.
#[derive(Debug, Serialize)]
struct MessageLine<'a> {
    topic: &'a str,
    node: Hex,
    seq: u64,
    len: usize,
    fnv1a64: String,
    via: &'static str,
}

impl<'a> MessageLine<'a> {
    fn of(m: &'a Message) -> Self {
        Self {
            topic: m.topic(),
            node: Hex(m.publisher()),
            seq: m.seq(),
            len: m.len(),
            fnv1a64: format!("{:016x}", fnv1a64(m)),
            via: m.via().name(),
        }
    }
}

/// A line of `sub` telling messages that will not come, in their place.
#[derive(Debug, Serialize)]
struct LostLine<'a> {
    event: &'static str,
    topic: &'a str,
    node: Hex,
    first: u64,
    last: u64,
    lost: u64,
    reason: &'static str,
}

impl<'a> LostLine<'a> {
    fn of(l: &'a Loss) -> Self {
        Self {
            event: "lost",
            topic: &l.topic,
            node: Hex(l.publisher),
            first: l.first,
            last: l.last,
            lost: l.count,
            reason: l.reason.name(),
        }
    }
}

/// `sub`.
pub(super) fn subscribe(group: &GroupArgs, args: &SubArgs) -> Result<()> {
    let stop = stop_flag()?;
    let node = join(group, "sub", &args.timing)?;
    let mut options = args.queue.options();
    if let Some(us) = args.spin_us {
        options = options.spin(Duration::from_micros(us));
    }
    let sub = node.subscription(&args.topic, options)?;
    let mut out = io::stdout().lock();
    let mut got = 0u64;
    while args.count.is_none_or(|n| got < n) && !stop.load(Ordering::Relaxed) {
        let Some(item) = next(|t| sub.recv_incoming_timeout(t))? else {
            continue;
        };
        let written = match &item {
            Incoming::Message(m) => {
                got += 1;
                json::write_line(&mut out, &MessageLine::of(m))
            }
            Incoming::Lost(l) => json::write_line(&mut out, &LostLine::of(l)),
        };
        if let Err(e) = written {
            // Whoever read our stdout is gone: nothing left to do.
            if e.kind() == io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
    }
    drop(sub);
    node.leave()?;
    Ok(())
}

/// `bus`.
pub(super) fn bus(group: &GroupArgs, args: &BusArgs) -> Result<()> {
    let stop = stop_flag()?;
    let node = join(group, "bus", &args.timing)?;
    let bus = Arc::new(node.bus(&args.name, args.queue.options())?);
    let topic = ipc_driver_std::bus_topic(&args.name);
    // Stdin is read on a thread of its own; its end does not end the command.
    let sender = Arc::clone(&bus);
    thread::Builder::new()
        .name("bus-stdin".into())
        .spawn(move || -> io::Result<()> {
            let mut stdin = io::stdin().lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = io::Read::take(&mut stdin, MAX_LINE as u64).read_until(b'\n', &mut line)?;
                if n == 0 {
                    return Ok(());
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                sender.send(&line).map_err(io::Error::other)?;
            }
        })?;
    let mut out = io::stdout().lock();
    let mut members = usize::MAX;
    while !stop.load(Ordering::Relaxed) {
        let others = others_on(&node.view(), node.id(), &topic);
        if others != members {
            members = others;
            eprintln!("bus: {others} other member(s) on {:?}", args.name);
        }
        let Some(m) = next(|t| bus.recv_timeout(t))? else {
            continue;
        };
        out.write_all(&m)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    drop(out);
    // The stdin reader may be blocked in a read: it ends with the process.
    drop(bus);
    node.leave()?;
    Ok(())
}

/// Nodes other than `me` subscribed to `topic`.
fn others_on(view: &View, me: NodeId, topic: &str) -> usize {
    view.nodes()
        .values()
        .filter(|n| n.info.id != me && n.subscribes.contains_key(topic))
        .count()
}

/// Waits until `count` nodes other than `node` subscribe to `topic`.
pub(super) fn wait_subscribers(
    node: &Node,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Result<()> {
    node.wait_view(timeout, |v| others_on(v, node.id(), topic) >= count)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // From the FNV reference (Fowler, Noll, Vo): "" and "a".
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_generated_payload_is_the_documented_pattern() {
        let p = generated(300);
        assert_eq!(p.len(), 300);
        assert_eq!(&p[..3], &[7, 38, 69]);
        assert_eq!(p[256], p[0]);
    }

    fn stats(links: &[(u64, u64, u64, u64)]) -> DataStats {
        DataStats {
            published: links
                .iter()
                .map(
                    |&(peer, messages, dropped, in_flight)| ipc_proto::wire::TopicStats {
                        topic: "t".into(),
                        peer: NodeId::new(peer),
                        messages,
                        dropped,
                        missed: 0,
                        in_flight,
                    },
                )
                .chain([ipc_proto::wire::TopicStats {
                    topic: "other".into(),
                    peer: NodeId::new(9),
                    messages: 5,
                    dropped: 0,
                    missed: 0,
                    in_flight: 0,
                }])
                .collect(),
            ..DataStats::default()
        }
    }

    #[test]
    fn reach_counts_the_subscribers_each_message_went_to() {
        let mut r = Reach::default();
        assert_eq!(r.message("t", &stats(&[])), (0, 0));
        assert_eq!(r.summary(1), ", no subscriber reached");
        assert_eq!(r.message("t", &stats(&[(1, 1, 0, 0)])), (1, 0));
        assert_eq!(
            r.message("t", &stats(&[(1, 2, 0, 0), (2, 1, 0, 0)])),
            (2, 0)
        );
        assert_eq!(
            r.summary(3),
            " to 2 subscriber(s) (0000000000000001: 2 of 3; 0000000000000002: 1 of 3)"
        );
        // Subscriber 2 drops one; subscriber 1's link closes and comes back from 0.
        assert_eq!(
            r.message("t", &stats(&[(1, 1, 0, 0), (2, 1, 1, 0)])),
            (1, 1)
        );
        assert_eq!(
            r.summary(4),
            " to 2 subscriber(s) (0000000000000001: 3 of 4; 0000000000000002: 1 of 4, 1 dropped)"
        );
        // A message queued on a link still being set up reaches it; it is sent later.
        let mut late = Reach::default();
        assert_eq!(late.message("t", &stats(&[(1, 0, 0, 1)])), (1, 0));
        assert_eq!(late.message("t", &stats(&[(1, 2, 0, 0)])), (1, 0));
        assert_eq!(late.summary(2), " to 1 subscriber(s)");
        // Queued twice, then the subscriber left with both before they showed as sent.
        let mut gone = Reach::default();
        gone.message("t", &stats(&[(1, 0, 0, 1)]));
        gone.message("t", &stats(&[(1, 0, 0, 2)]));
        gone.update("t", &stats(&[]));
        assert_eq!(gone.summary(2), " to 1 subscriber(s)");
        let mut all = Reach::default();
        all.message("t", &stats(&[(1, 2, 0, 0), (2, 2, 0, 0)]));
        assert_eq!(all.summary(2), " to 2 subscriber(s)");
    }

    #[test]
    fn queue_options_follow_the_flags() {
        let q = QueueArgs {
            policy: PolicyArg::DropNewest,
            depth: 3,
            max_payload: DEFAULT_MAX_PAYLOAD,
        };
        assert_eq!(q.options(), SubscriptionOptions::drop_newest(3));
        let b = QueueArgs {
            policy: PolicyArg::Block,
            depth: 64,
            max_payload: 1 << 20,
        };
        assert_eq!(
            b.options(),
            SubscriptionOptions::block(BLOCK_TIMEOUT).max_payload(1 << 20)
        );
    }
}
