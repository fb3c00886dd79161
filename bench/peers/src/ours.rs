//! Our children: `ipc-driver-std` nodes in a fresh group per repetition, publishers with the
//! default options (`SendMode::Auto`: inline up to 16 KiB, pooled above it in a group open
//! only to this uid) and lossless subscriptions (`Block`, depth `window`).
//!
//! Blocking mode receives with `Subscription::recv` and the default options (the receiving
//! thread sleeps; the node's I/O thread takes each message from the ring and hands it over).
//! Spin mode uses a spinning subscription (`SubscriptionOptions::spin`, [`SPIN`]): the
//! receiving thread polls the rings itself, as iceoryx2's busy-wait `receive()` loop does.

use std::time::{Duration, Instant};

use ipc_driver_std::{Message, Node, Publisher, Subscription, SubscriptionOptions};

use crate::common::{Case, Control, Payload, Report, Res, checksum, err};

const SETUP: Duration = Duration::from_secs(30);
/// How long a lossless publisher may wait for room, and a receiver for a message.
const WAIT: Duration = Duration::from_secs(60);
const MIME: &str = "application/octet-stream";

fn join(case: &Case, name: &str) -> Res<Node> {
    Node::builder(name).group(case.name.as_str()).join().map_err(err("join"))
}

/// How long a spinning subscription polls before it sleeps: longer than any gap between
/// two messages of a run, so that it never sleeps during one.
const SPIN: Duration = Duration::from_secs(1);

fn lossless(node: &Node, topic: &str, case: &Case, blocking: bool) -> Res<Subscription> {
    let options = SubscriptionOptions {
        depth: case.window as u32,
        // Blocking: the driver's choice, as an application with default options has it.
        spin: if blocking { None } else { Some(SPIN) },
        ..SubscriptionOptions::block(WAIT)
    };
    node.subscription(topic, options).map_err(err("subscription"))
}

fn publisher(node: &Node, topic: &str) -> Res<Publisher> {
    node.publisher(topic, MIME).map_err(err("publisher"))
}

/// Waits until another node subscribes to `topic`.
fn wait_subscriber(node: &Node, topic: &str) -> Res<()> {
    let me = node.id();
    node.wait_view(SETUP, |v| {
        v.nodes()
            .values()
            .any(|n| n.info.id != me && n.subscribes.contains_key(topic))
    })
    .map(|_| ())
    .map_err(err("waiting for the subscriber"))
}

/// The next message (a spinning subscription polls for it, see [`lossless`]).
fn next(sub: &Subscription) -> Res<Message> {
    sub.recv_timeout(WAIT).map_err(err("recv"))
}

/// Round trip, initiator: publishes on `ping`, waits for the echo on `pong`.
pub fn ping(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = join(case, "peers-ping")?;
    let back = lossless(&node, "pong", case, blocking)?;
    let to = publisher(&node, "ping")?;
    wait_subscriber(&node, "ping")?;
    let payload = Payload::new(case.size);
    let mut msg = vec![0u8; case.size];
    let mut report = Report::default();
    let mut samples = Vec::with_capacity(case.msgs as usize);
    for seq in 0..case.all() {
        let t = Instant::now();
        payload.write_to(&mut msg, seq);
        to.publish(&msg).map_err(err("publish"))?;
        let m = next(&back)?;
        let sum = checksum(&m);
        report.count_via(m.via().name());
        drop(m);
        let dt = t.elapsed();
        if sum != payload.sum(seq) {
            return Err(format!("ours: echo {seq} differs"));
        }
        if seq >= case.warmup {
            samples.push(dt.as_nanos() as u64);
        }
        report.checksum = report.checksum.wrapping_add(sum);
        report.msgs += 1;
    }
    report.samples = samples;
    ctl.ack()?;
    Ok(report)
}

/// Round trip, echo: every message on `ping` back on `pong`.
pub fn echo(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = join(case, "peers-echo")?;
    let from = lossless(&node, "ping", case, blocking)?;
    let to = publisher(&node, "pong")?;
    wait_subscriber(&node, "pong")?;
    let mut report = Report::default();
    while report.msgs < case.all() {
        let m = next(&from)?;
        to.publish(&m).map_err(err("publish"))?;
        drop(m);
        report.msgs += 1;
    }
    // Leaving before the initiator has the last echo could lose it.
    ctl.wait_ack()?;
    Ok(report)
}

/// One-way, publisher: per message a loan (the buffer for inline, the pool segment for
/// pooled), the payload written into it in place, `send`.
pub fn send(case: &Case, ctl: &mut Control, _blocking: bool) -> Res<Report> {
    let node = join(case, "peers-pub")?;
    let to = publisher(&node, "bench")?;
    wait_subscriber(&node, "bench")?;
    let payload = Payload::new(case.size);
    let mut report = Report::default();
    let one = |seq: u64, report: &mut Report| -> Res<()> {
        let mut loan = to.loan(case.size).map_err(err("loan"))?;
        payload.write_to(&mut loan, seq);
        to.send(loan).map_err(err("send"))?;
        report.checksum = report.checksum.wrapping_add(payload.sum(seq));
        report.msgs += 1;
        Ok(())
    };
    for seq in 0..case.warmup {
        one(seq, &mut report)?;
    }
    ctl.wait_ack()?;
    let t = Instant::now();
    for seq in case.warmup..case.all() {
        one(seq, &mut report)?;
    }
    ctl.wait_ack()?;
    report.secs = Some(t.elapsed().as_secs_f64());
    Ok(report)
}

/// One-way, subscriber: checks the length and checksums every byte of every message in place
/// (in the mapping for pooled ones, no copy), then drops it (a pooled range goes back).
pub fn recv(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = join(case, "peers-sub")?;
    let from = lossless(&node, "bench", case, blocking)?;
    let mut report = Report::default();
    if case.warmup == 0 {
        ctl.ack()?;
    }
    while report.msgs < case.all() {
        let m = next(&from)?;
        if m.len() != case.size {
            return Err(format!("ours: message of {} B, expected {}", m.len(), case.size));
        }
        report.checksum = report.checksum.wrapping_add(checksum(&m));
        report.count_via(m.via().name());
        drop(m);
        report.msgs += 1;
        if report.msgs == case.warmup || report.msgs == case.all() {
            ctl.ack()?;
        }
    }
    ctl.until_closed()?;
    Ok(report)
}
